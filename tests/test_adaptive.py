"""alignment.adaptive: a correction chosen per view on held-out overlap pixels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from alignment import seam_jump
from alignment.adaptive import GlobalCorrection, _bands, align_adaptive

H, W = 72, 96


def _coords():
    return torch.meshgrid(torch.arange(H, dtype=torch.float64) + 0.5, torch.arange(W, dtype=torch.float64) + 0.5,
                          indexing="ij")


def _room():
    """z-depth of a slanted floor-like surface with a box in front of it (a depth edge)."""
    yy, xx = _coords()
    depth = 1.5 + 3.0 * (1 - yy / H) + 0.4 * torch.sin(xx / 11.0)
    box = (xx > 30) & (xx < 50) & (yy > 20) & (yy < 50)
    return torch.where(box, torch.full_like(depth, 1.2), depth), box


def _strip_hole(width: int = 34):
    """The hole a pan leaves: a strip at the right border."""
    hole = torch.zeros(H, W, dtype=torch.bool)
    hole[:, W - width:] = True
    return ~hole, hole


def _noise(seed: int, level: float = 0.01):
    return 1 + level * torch.randn(H, W, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _rel(a, b, m):
    return float(((a[m] - b[m]).abs() / b[m]).mean())


def test_a_scale_error_is_fitted_with_a_scale():
    truth, _ = _room()
    known, hole = _strip_hole()
    est = truth * 0.45 * _noise(0)
    out = align_adaptive(est, truth, known, hole)
    assert out.model == "scale"
    assert _rel(out.depth, truth, hole) < 0.0095  # the noise (0.8% mean) and no more
    assert out.scores["scale"] <= min(v for k, v in out.scores.items() if not k.startswith("seam")) * 1.03


def test_an_affine_error_in_disparity_is_recognised_and_removed():
    truth, _ = _room()
    known, hole = _strip_hole()
    est = 1.0 / (0.8 / truth + 0.12)  # far pixels much too close: no scale fits near and far
    out = align_adaptive(est, truth, known, hole)
    assert out.model == "disparity"
    assert _rel(out.depth, truth, hole) < 2e-3
    scale_only = align_adaptive(est, truth, known, hole, models=("scale",))
    assert _rel(scale_only.depth, truth, hole) > 5 * _rel(out.depth, truth, hole)


def test_a_compressed_depth_range_is_recognised_and_removed():
    truth, _ = _room()
    known, hole = _strip_hole()
    est = 0.6 * truth ** 0.7  # a relative model's compressed range: a power law, not affine in depth or disparity
    out = align_adaptive(est, truth, known, hole)
    assert out.model == "power"
    # log t = (log e - log 0.6) / 0.7: the correction log t - log e is a + b log e with these a, b
    assert out.global_correction.params == pytest.approx((-math.log(0.6) / 0.7, 1 / 0.7 - 1), rel=1e-6)
    assert _rel(out.depth, truth, hole) < 1e-6
    g = out.global_correction
    assert g == GlobalCorrection.from_dict(g.to_dict())
    assert torch.allclose(g.log_field(est)[hole], out.correction[hole])
    without = align_adaptive(est, truth, known, hole, models=("scale", "depth", "disparity"))
    assert _rel(without.depth, truth, hole) > 10 * _rel(out.depth, truth, hole) + 1e-3
    # A plain scale error is not taken for a power law (the simpler model wins within the tolerance).
    assert align_adaptive(truth * 0.45 * _noise(0), truth, known, hole).model == "scale"


@pytest.mark.parametrize("model", ["power", "depth", "disparity"])
def test_a_flat_overlap_is_not_fitted_with_a_model_that_flattens_the_hole(model):
    """Over a wall of one depth the noise is all that varies, and a model that maps every depth to
    one value fits it exactly: d = s e^0, d = s e + t with s near 0 and t the wall's depth (seen
    in a deep zoom's dolly view: s = 1e-5), or 1/d = a/e + b with a near 0. As a candidate it
    would put an object in the hole at the wall's depth."""
    known, hole = _strip_hole()
    yy, xx = _coords()
    truth = torch.full((H, W), 3.0, dtype=torch.float64)
    obj = hole & (yy > 20) & (yy < 50) & (xx > W - 25)
    truth[obj] = 1.5
    for seed in range(4):
        noise = _noise(seed)
        est = 0.5 * truth * noise
        # The reference follows the estimate's noise a little (d = 3 n^0.05): exactly the
        # flattening map's slope, so its fit is not refused by the sign of a noisy scale.
        reference = truth * noise ** 0.05
        out = align_adaptive(est, reference, known, hole, models=("scale", model))
        assert out.model == "scale"
        assert _rel(out.depth, truth, obj) < 0.012


def test_the_choice_is_never_worse_on_the_held_out_pixels_than_the_scale():
    truth, _ = _room()
    known, hole = _strip_hole()
    yy, xx = _coords()
    for seed, wave in enumerate((0.6, 1.1, 1.4)):
        est = truth * 1.8 * (1 + 0.1 * torch.cos(2 * math.pi * wave * xx / W + seed)) * _noise(seed)
        out = align_adaptive(est, truth, known, hole, models=("scale", "depth", "disparity", "power", "tilt", "bend"))
        assert out.scores[out.model] <= out.scores["scale"]
        assert out.band_pixels > 0


def test_a_trend_is_clamped_where_it_extrapolates():
    truth, _ = _room()
    known, hole = _strip_hole(40)
    yy, xx = _coords()
    est = truth * torch.exp(0.2 * ((xx / W) ** 2))  # a bend that grows into the hole
    out = align_adaptive(est, truth, known, hole, models=("bend",), seam_reaches=())
    g = out.global_correction
    assert g.model == "bend"
    c = g.log_field(est)
    assert float(c[hole].min()) >= g.lo - 1e-12 and float(c[hole].max()) <= g.hi + 1e-12
    assert torch.allclose(out.correction[hole], c[hole])
    assert g == GlobalCorrection.from_dict(g.to_dict())


def test_the_seam_correction_stays_on_its_surface():
    """A box in front of a wall, each with its own error (monocular models err object by object);
    the hole cuts through both. Across the depth edge the correction does not mix the two."""
    truth, box = _room()
    hole = torch.zeros(H, W, dtype=torch.bool)
    hole[:, 40:62] = True  # through the box and the wall beside and behind it
    known = ~hole
    est = truth * torch.where(box, torch.full_like(truth, 1.12), torch.full_like(truth, 0.9))
    cut = align_adaptive(est, truth, known, hole, edges=True, seam_reaches=(None,))
    mixed = align_adaptive(est, truth, known, hole, edges=False, seam_reaches=(None,))
    on_box, off_box = hole & box, hole & ~box
    assert _rel(cut.depth, truth, on_box) < 0.01 and _rel(cut.depth, truth, off_box) < 0.01
    assert _rel(mixed.depth, truth, hole) > 2 * _rel(cut.depth, truth, hole)
    assert cut.seam_edges and not mixed.seam_edges


def test_the_new_depth_meets_the_reference_at_the_seam():
    truth, _ = _room()
    known, hole = _strip_hole()
    yy, xx = _coords()
    est = truth * 0.7 * (1 + 0.08 * torch.sin(2 * math.pi * xx / W))
    out = align_adaptive(est, truth, known, hole)
    natural = seam_jump(truth, truth, known, hole)  # the surface's own slope across the seam
    assert out.seam_jump_after < natural + 0.002 and out.seam_jump_before > natural + 0.05
    inner = known.clone()
    inner[:, W - 40:] = False  # off the ring (where the reference is median-filtered)
    assert torch.allclose(out.depth[inner], truth[inner], rtol=1e-9)  # known pixels keep the reference


def test_held_out_bands_lie_next_to_the_hole():
    known, hole = _strip_hole(16)
    folds = _bands(known, hole, 2)
    assert len(folds) == 2
    (b1, f1), (b2, f2) = folds
    cols = lambda m: np.nonzero(m.numpy().any(0))[0]  # noqa: E731
    assert cols(b1).max() == W - 17 and cols(f1).max() < cols(b1).min()  # the band touches the hole, the fit is beyond
    assert 15 <= len(cols(b1)) <= 16  # about as deep as the hole
    assert cols(b2).max() < cols(b1).min() and cols(f2).max() < cols(b2).min()
    assert _bands(known, torch.zeros((H, W), dtype=torch.bool), 1) == []


def test_given_alignment_only_closes_the_seam():
    truth, _ = _room()
    known, hole = _strip_hole()
    est = truth * 1.03
    out = align_adaptive(est, truth, known, hole, fit_global=False, seam_reaches=(0.05,))
    assert out.model == "given"
    far = hole.clone()
    far[:, : W - 20] = False
    assert _rel(out.depth, est, far) < 0.002  # far from the seam: the given depth
    natural = seam_jump(truth, truth, known, hole)
    assert out.seam_jump_after - natural < 0.25 * (out.seam_jump_before - natural)  # a short reach meets it nearly


def test_bad_inputs_are_refused():
    truth, _ = _room()
    known, hole = _strip_hole()
    with pytest.raises(ValueError, match="models"):
        align_adaptive(truth, truth, known, hole, models=("cubic",))
    with pytest.raises(ValueError, match="models"):
        align_adaptive(truth, truth, known, hole, models=())
    with pytest.raises(ValueError, match="seam_reaches"):
        align_adaptive(truth, truth, known, hole, seam_reaches=(0.0,))
    with pytest.raises(ValueError, match="edges"):
        align_adaptive(truth, truth, known, hole, edges="yes")
    with pytest.raises(ValueError, match="disjoint"):
        align_adaptive(truth, truth, known, known)
    with pytest.raises(ValueError, match="<= 0"):
        align_adaptive(-truth, truth, known, hole)


def test_the_global_fit_reads_every_known_pixel_and_only_seam_anchors_are_restricted():
    # A translating camera sees faces the cloud never held: there the rendered reference is the
    # background behind them (too far). Here a third of the known pixels are such, and the pixels
    # allowed as seam anchors (away from depth edges) are mostly those: fitted on the anchors
    # alone, the scale would follow the wrong majority.
    truth, _ = _room()
    known, hole = _strip_hole()
    yy, xx = _coords()
    see_through = known & (xx > 10) & (xx < 40)
    reference = torch.where(see_through, truth * 1.6, truth)
    seam_known = known & ((xx < 45) | (yy < 8))
    assert int((seam_known & see_through).sum()) > 0.5 * int(seam_known.sum())
    est = truth * 0.7 * _noise(3)
    out = align_adaptive(est, reference, known, hole, seam_known=seam_known)
    assert _rel(out.depth, truth, hole) < 0.02
    restricted = align_adaptive(est, reference, seam_known, hole)
    assert _rel(restricted.depth, truth, hole) > 0.2


def test_hole_depths_on_the_holes_box_are_the_whole_images():
    """The distance of hole pixels to the known ones, taken on the hole's box, equals the whole
    image's transform: holes inside, at each border and corner, scattered, and with pixels in
    neither mask (then the whole image is used)."""
    from alignment.adaptive import _hole_depths
    from alignment.kernels import distance_to

    g = torch.Generator().manual_seed(0)
    H, W = 40, 56
    cases = []
    for y0, y1, x0, x1 in ((10, 20, 15, 30), (0, 12, 5, 20), (30, 40, 0, 56), (0, 40, 50, 56), (0, 40, 0, 55)):
        hole = torch.zeros(H, W, dtype=torch.bool)
        hole[y0:y1, x0:x1] = True
        hole &= torch.rand(H, W, generator=g) < 0.9  # ragged, with known islands
        cases.append((~hole, hole))
    scattered = torch.rand(H, W, generator=g) < 0.05
    cases.append((~scattered, scattered))
    neither = torch.rand(H, W, generator=g) < 0.2
    cases.append((~cases[0][1] & ~neither, cases[0][1] & ~neither))
    for known, hole in cases:
        assert torch.equal(_hole_depths(known, hole), distance_to(known)[hole])
