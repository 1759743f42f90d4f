"""alignment/: robust scale fit, seam correction, stretched pixels, multi-resolution merge."""

from __future__ import annotations

import math

import pytest
import torch

import alignment.seam as seam_module
from alignment import (
    align_depth,
    dedup_mask,
    fit_scale,
    footprint_level,
    seam_correction,
    seam_ring,
    stretched_pixels,
)

F512 = 583.0  # the original code's focal length at 512x512 (DEFAULT_FOCAL_512 rounded)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _scene(h: int = 96, w: int = 128, seed: int = 0) -> torch.Tensor:
    """A smooth positive z-depth map [h,w] (slanted plane plus bumps), float64."""
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float64) + 0.5, torch.arange(w, dtype=torch.float64) + 0.5, indexing="ij"
    )
    return 2.0 + 1.5 * yy / h + 0.3 * torch.sin(xx / 9.0) + 0.2 * torch.cos(yy / 7.0 + xx / 13.0)


def _coords(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.meshgrid(
        torch.arange(h, dtype=torch.float64) + 0.5, torch.arange(w, dtype=torch.float64) + 0.5, indexing="ij"
    )


# ----------------------------------------------------------------------------- scale


def test_fit_scale_exact_without_noise():
    ref = _scene()
    mask = torch.rand(ref.shape, generator=_gen(1)) < 0.5
    fit = fit_scale(ref / 2.7, ref, mask)
    assert fit.scale == pytest.approx(2.7, rel=1e-5)
    assert fit.shift == 0.0 and not fit.with_shift
    assert fit.n_pixels == int(mask.sum())
    assert fit.inlier_fraction == 1.0
    assert fit.residual_before == pytest.approx(1 - 1 / 2.7, rel=1e-9)
    assert fit.residual_after < 1e-9


def test_fit_scale_and_shift_exact_without_noise():
    ref = _scene()
    mask = torch.rand(ref.shape, generator=_gen(2)) < 0.5
    est = (ref - 0.4) / 1.8  # ref = 1.8 * est + 0.4
    fit = fit_scale(est, ref, mask, with_shift=True)
    assert fit.with_shift
    assert fit.scale == pytest.approx(1.8, rel=1e-5)
    assert fit.shift == pytest.approx(0.4, abs=1e-5)
    assert fit.residual_after < 1e-9
    assert torch.allclose(fit.apply(est), ref, rtol=1e-9)


def _corrupt(est: torch.Tensor, noise: float, outliers: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Multiplicative pixel noise plus a fraction of gross outliers (factors 1/4..1/1.5 or 1.5..4)."""
    g = _gen(seed)
    noisy = est * (1 + noise * torch.randn(est.shape, generator=g, dtype=est.dtype))
    bad = torch.rand(est.shape, generator=g) < outliers
    factor = torch.exp(torch.empty(est.shape, dtype=est.dtype).uniform_(math.log(1.5), math.log(4.0), generator=g))
    sign = torch.rand(est.shape, generator=g) < 0.5
    factor = torch.where(sign, factor, 1 / factor)
    return torch.where(bad, noisy * factor, noisy), bad


def test_fit_scale_robust_to_noise_and_outliers():
    ref = _scene()
    mask = torch.ones(ref.shape, dtype=torch.bool)
    est, bad = _corrupt(ref / 2.7, noise=0.01, outliers=0.2, seed=3)
    fit = fit_scale(est, ref, mask)
    assert fit.scale == pytest.approx(2.7, rel=2e-3)
    assert fit.inlier_fraction == pytest.approx(1 - float(bad.double().mean()), abs=0.03)
    assert fit.residual_after < 0.01 < fit.residual_before

    est, bad = _corrupt((ref - 0.4) / 1.8, noise=0.01, outliers=0.2, seed=4)
    fit = fit_scale(est, ref, mask, with_shift=True)
    assert fit.with_shift
    assert fit.scale == pytest.approx(1.8, rel=2e-2)
    assert fit.shift == pytest.approx(0.4, abs=0.05)
    assert fit.residual_after < 0.01


def test_fit_scale_reads_only_the_mask():
    ref = _scene()
    mask = torch.zeros(ref.shape, dtype=torch.bool)
    mask[:, :64] = True
    est = ref / 3.0
    est[:, 64:] = float("nan")
    ref = ref.clone()
    ref[:, 64:] = 0.0  # rendered depth is 0 where nothing was rendered
    assert fit_scale(est, ref, mask).scale == pytest.approx(3.0, rel=1e-9)


def test_lower_median_is_torchs_median():
    """kernels.lower_median (numpy's partial sort on the CPU) gives torch's median, the lower middle
    value, to the bit: odd and even counts, ties, float32 and float64, any shape, NaN, no value."""
    from alignment.kernels import lower_median

    g = torch.Generator().manual_seed(0)
    for n in (1, 2, 3, 4, 7, 10, 1001, 4096):
        for x in (torch.randn(n, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g).double(),
                  torch.randn(n, generator=g).abs()):
            assert lower_median(x) == float(x.median())
    x = torch.randn(6, 9, generator=g)[:, 1:7]  # not contiguous
    assert lower_median(x) == float(x.median())
    x[2, 3] = float("nan")
    assert math.isnan(lower_median(x)) and math.isnan(float(x.median()))
    assert math.isnan(lower_median(torch.empty(0)))  # none: NaN, as torch's
    for dtype in (torch.float16, torch.bfloat16):  # (numpy has no bfloat16: torch's own median there)
        x = torch.randn(101, generator=g).to(dtype)
        assert lower_median(x) == float(x.median())


def test_median_is_the_mean_of_the_two_middle_values():
    import numpy as np

    from alignment.kernels import median

    def _median(x, overwrite=False):  # on the array's memory: overwrite reorders x itself
        return median(torch.from_numpy(x), overwrite=overwrite)

    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 4, 7, 10, 1001, 4096):
        for x in (rng.standard_normal(n), rng.integers(0, 3, n).astype(np.float64)):  # ties too
            ordered = np.sort(x)
            expected = 0.5 * (float(ordered[(n - 1) // 2]) + float(ordered[n // 2]))
            kept = x.copy()
            assert _median(x) == expected and np.array_equal(x, kept)  # no reordering without overwrite
            assert _median(x, overwrite=True) == expected


def test_tukey_weights_are_the_biweight():
    import numpy as np

    from alignment.scale import _tukey

    res = np.array([0.0, 0.5, -1.0, 2.0, -3.0, 4.685, float("nan"), float("inf")])
    u = res / 4.685
    expected = np.where(np.abs(u) < 1.0, (1.0 - u * u) ** 2, 0.0)
    assert np.array_equal(_tukey(res, 1.0, 4.685), expected)


def test_fit_scale_float32_on_input_device():
    ref = _scene().float()
    fit = fit_scale(ref * 0.5, ref, torch.ones(ref.shape, dtype=torch.bool))
    assert isinstance(fit.scale, float) and fit.scale == pytest.approx(2.0, rel=1e-6)
    assert fit.apply(ref).dtype == torch.float32


def test_fit_scale_validation():
    ref = _scene()
    mask = torch.ones(ref.shape, dtype=torch.bool)
    with pytest.raises(ValueError, match="shape"):
        fit_scale(ref[:10], ref, mask)
    with pytest.raises(ValueError, match="shape"):
        fit_scale(ref, ref, mask[:10])
    with pytest.raises(ValueError, match="bool"):
        fit_scale(ref, ref, mask.float())
    with pytest.raises(TypeError):
        fit_scale(ref.numpy(), ref, mask)
    with pytest.raises(ValueError, match="float"):
        fit_scale(ref.long(), ref, mask)
    few = torch.zeros_like(mask)
    few[0, :5] = True
    with pytest.raises(ValueError, match=r"at least 32 overlap pixels.*got 5"):
        fit_scale(ref, ref, few)
    bad = ref.clone()
    bad[3, 3] = -1.0
    with pytest.raises(ValueError, match="<= 0"):
        fit_scale(bad, ref, mask)
    bad[3, 3] = float("inf")
    with pytest.raises(ValueError, match="must be finite.*NaN/inf"):
        fit_scale(ref, bad, mask)


def test_fit_scale_shift_undetermined_falls_back_to_scale():
    ref = torch.full((32, 32), 4.0, dtype=torch.float64)  # a wall facing the camera: no spread
    fit = fit_scale(ref / 2.0, ref, torch.ones(32, 32, dtype=torch.bool), with_shift=True)
    assert not fit.with_shift and fit.shift == 0.0
    assert fit.scale == pytest.approx(2.0, rel=1e-9)


# ----------------------------------------------------------------------------- seam


def _disk(h: int, w: int, cy: float, cx: float, r: float) -> torch.Tensor:
    yy, xx = _coords(h, w)
    return (yy - cy) ** 2 + (xx - cx) ** 2 < r * r


def test_identity_when_estimate_equals_reference():
    ref = _scene()
    hole = _disk(*ref.shape, 40, 60, 25) | (_coords(*ref.shape)[1] > 110)
    known = ~hole
    out = align_depth(ref, ref, known, hole)
    assert out.fit.scale == pytest.approx(1.0, abs=1e-12)
    assert torch.equal(out.correction, torch.zeros_like(ref))
    assert torch.allclose(out.depth, ref, rtol=1e-12)
    assert out.seam_jump_before == out.seam_jump_after


def test_seam_meets_reference_exactly_at_the_ring():
    h, w = 96, 128
    ref = _scene(h, w)
    yy, xx = _coords(h, w)
    est = ref / 2.5 * torch.exp(0.2 * torch.sin(xx / 40.0) + 0.1 * yy / h)  # smooth distortion
    hole = _disk(h, w, 48, 70, 30)
    known = ~hole
    out = align_depth(est, ref, known, hole, ring_radius=0)
    ring = seam_ring(known, hole)
    assert torch.allclose(out.depth[ring], ref[ring], rtol=1e-10)
    assert out.seam_jump_before > 0.02
    # What is left is the surface's own change from one pixel to the next.
    own_step = seam_module.seam_jump(ref, ref, known, hole)
    assert out.seam_jump_after <= own_step + 1e-3

    # A pure scale error: with the default ring denoising the correction is exactly the identity.
    out = align_depth(ref / 3.0, ref, known, hole)
    assert torch.allclose(out.depth, ref, rtol=1e-9)


def test_seam_reproduces_linear_distortion_inside_an_enclosed_hole():
    h, w = 96, 128
    ref = _scene(h, w)
    yy, xx = _coords(h, w)
    log_distortion = 0.3 * xx / w - 0.2 * yy / h
    est = ref / 2.0 * torch.exp(log_distortion)
    hole = _disk(h, w, 45, 64, 35)  # does not touch the border
    known = ~hole
    out = align_depth(est, ref, known, hole, ring_radius=0)
    err = ((out.depth - ref).abs() / ref)[hole]
    assert float(err.max()) < 1e-6  # harmonic interpolation reproduces linear fields exactly
    # The ring median (default) bends a linear field slightly where the ring curves.
    out = align_depth(est, ref, known, hole)
    assert float(((out.depth - ref).abs() / ref)[hole].max()) < 1e-3
    plain = align_depth(est, ref, known, hole, seam=False)
    assert float(((plain.depth - ref).abs() / ref)[hole].median()) > 0.03


def test_seam_low_frequency_distortion_with_noise_at_the_border():
    h, w = 96, 128
    ref = _scene(h, w)
    yy, xx = _coords(h, w)
    est = ref / 2.0 * torch.exp(0.15 * torch.sin(2 * math.pi * xx / w * 0.5) + 0.1 * yy / h)
    est = est * (1 + 0.01 * torch.randn(est.shape, generator=_gen(5), dtype=est.dtype))
    hole = _disk(h, w, 48, 64, 28) | (xx > 104)  # an interior hole and a strip at the border
    known = ~hole
    out = align_depth(est, ref, known, hole)
    plain = align_depth(est, ref, known, hole, seam=False)
    err = float(((out.depth - ref).abs() / ref)[hole].median())
    err_plain = float(((plain.depth - ref).abs() / ref)[hole].median())
    assert err < 0.5 * err_plain
    assert out.seam_jump_after < 0.5 * out.seam_jump_before
    assert out.seam_jump_after < 0.015  # the 1% pixel noise of the new pixel itself


def test_decay_fades_the_correction_away_from_the_seam():
    h, w = 64, 160
    known = torch.zeros(h, w, dtype=torch.bool)
    known[:, :16] = True
    hole = ~known
    log_ratio = torch.where(known, torch.tensor(0.2, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64))
    harmonic = seam_correction(log_ratio, known, hole)
    assert torch.allclose(harmonic[hole], torch.full_like(harmonic[hole], 0.2), atol=1e-9)  # constant carries over
    decayed = seam_correction(log_ratio, known, hole, decay=10.0)
    assert decayed[0, 15] == pytest.approx(0.2)  # the ring keeps its value
    assert 0.1 < float(decayed[0, 20]) < 0.2
    assert float(decayed[0, 150].abs()) < 1e-4  # 13 decay lengths away: gone


def test_hole_without_known_neighbours_gets_zero_correction():
    h, w = 40, 40
    known = torch.zeros(h, w, dtype=torch.bool)
    known[:, :10] = True
    hole = torch.zeros(h, w, dtype=torch.bool)
    hole[:, 10:20] = True  # touches known
    hole[:, 25:] = True  # separated from everything by the "neither" band 20..24
    log_ratio = torch.full((h, w), 0.3, dtype=torch.float64)
    c = seam_correction(log_ratio, known, hole)
    assert torch.allclose(c[:, 10:20], torch.full((h, 10), 0.3, dtype=torch.float64))
    assert torch.equal(c[:, 25:], torch.zeros(h, 15, dtype=torch.float64))
    assert torch.equal(c[:, 20:25], torch.zeros(h, 5, dtype=torch.float64))
    # No known pixel at all: nothing to anchor to.
    c = seam_correction(log_ratio, torch.zeros_like(known), hole)
    assert torch.equal(c, torch.zeros_like(c))


def test_ring_median_ignores_an_outlier():
    h, w = 32, 32
    known = torch.zeros(h, w, dtype=torch.bool)
    known[:, :8] = True
    hole = ~known
    log_ratio = torch.full((h, w), 0.1, dtype=torch.float64)
    log_ratio[16, 7] = 2.0  # one wild ring pixel
    c = seam_correction(log_ratio, known, hole, ring_radius=2)
    assert torch.allclose(c[hole], torch.full_like(c[hole], 0.1), atol=1e-9)


def test_multigrid_solve_matches_direct_solve(monkeypatch):
    from alignment_reference import seam as reference_seam  # scipy's sparse LU, kept in tests/

    h, w = 200, 200
    yy, xx = _coords(h, w)
    hole = _disk(h, w, 90, 110, 70) | (xx > 170)
    known = ~hole
    assert int(hole.sum()) > seam_module._COARSEST_MAX  # the multigrid path
    log_ratio = 0.1 * torch.sin(xx / 17.0) + 0.05 * torch.cos(yy / 11.0)
    monkeypatch.setattr(reference_seam, "_DIRECT_MAX", 10**9)
    for decay in (None, 25.0):
        fast = seam_correction(log_ratio, known, hole, decay=decay)
        direct = reference_seam.seam_correction(log_ratio, known, hole, decay=decay)
        assert float((fast - direct).abs().max()) < 1e-6


def test_seam_validation():
    ref = _scene()
    hole = _disk(*ref.shape, 40, 60, 20)
    known = ~hole
    with pytest.raises(ValueError, match="disjoint"):
        align_depth(ref, ref, known, hole | known)
    with pytest.raises(ValueError, match="shape"):
        align_depth(ref, ref[:, :5], known, hole)
    with pytest.raises(ValueError, match="bool"):
        align_depth(ref, ref, known.int(), hole)
    bad = ref.clone()
    bad[hole.nonzero()[0].tolist()] = 0.0
    with pytest.raises(ValueError, match="estimated.*<= 0"):
        align_depth(bad, ref, known, hole)
    with pytest.raises(ValueError, match="reference must be finite on known pixels"):
        align_depth(ref, torch.where(known, torch.nan, ref), known, hole)
    with pytest.raises(ValueError, match="decay"):
        seam_correction(torch.zeros_like(ref), known, hole, decay=0.0)
    with pytest.raises(ValueError, match="non-finite"):
        seam_correction(torch.full_like(ref, float("nan")), known, hole)
    with pytest.raises(ValueError, match="overlap pixels"):
        align_depth(ref, ref, torch.zeros_like(known), ~torch.zeros_like(known))


def test_align_depth_with_shift_and_dtype():
    ref = _scene().float()
    est = (ref - 0.5) / 1.5
    hole = _disk(*ref.shape, 40, 60, 20)
    out = align_depth(est, ref, ~hole, hole, with_shift=True)
    assert out.fit.with_shift and out.fit.scale == pytest.approx(1.5, rel=1e-4)
    assert out.depth.dtype == torch.float32 and out.correction.dtype == torch.float32
    assert torch.allclose(out.depth, ref, rtol=1e-5)


def test_align_depth_falls_back_to_scale_when_the_shift_makes_depth_negative():
    ref = _scene()  # 2..4.2
    est = ref + 5.0  # ref = est - 5: a pure shift
    hole = _disk(*ref.shape, 40, 60, 20)
    est = torch.where(hole, torch.full_like(est, 1.0), est)  # 1.0 - 5 would be negative
    out = align_depth(est, ref, ~hole, hole, with_shift=True)
    assert not out.fit.with_shift
    assert bool((out.depth[hole] > 0).all())


def test_seam_jump_measures_the_step_across_the_seam():
    ref = torch.full((8, 8), 2.0)
    known = torch.zeros(8, 8, dtype=torch.bool)
    known[:, :4] = True
    depth = torch.where(known, ref, torch.full_like(ref, 2.2))
    assert seam_module.seam_jump(depth, ref, known, ~known) == pytest.approx(0.1)
    assert math.isnan(seam_module.seam_jump(depth, ref, known, torch.zeros_like(known)))
    with pytest.raises(ValueError, match="reference"):
        seam_module.seam_jump(depth, torch.zeros_like(ref), known, ~known)


# ----------------------------------------------------------------------------- edges


def _floor_depth(pitch_deg: float, h: int = 512, w: int = 512, f: float = F512, height: float = 1.5):
    """z-depth of a floor ``height`` below a camera pitched down by ``pitch_deg`` (OpenCV axes)."""
    v = torch.arange(h, dtype=torch.float64) + 0.5
    b = (v - h / 2) / f
    th = math.radians(pitch_deg)
    z = height / (b * math.cos(th) + math.sin(th))
    return z[:, None].expand(h, w).clone()


def test_stretched_pixels_flags_the_far_side_of_a_step():
    z = torch.full((32, 48), 2.0)
    z[:, 24:] = 4.0
    m = stretched_pixels(z)
    assert m[:, 24].all()  # the first far pixel
    assert not m[:, :24].any()  # the near side (the object's silhouette) is kept
    assert int(m.sum()) == 32
    # The other way round: the far side is on the left.
    m = stretched_pixels(z.flip(1))
    assert m[:, 23].all() and int(m.sum()) == 32
    # A vertical step is found with 4-neighbours too; dilation grows the rejected band.
    assert torch.equal(stretched_pixels(z, neighbourhood=4), m.flip(1))
    assert int(stretched_pixels(z, dilate=1)[:, 23:26].sum()) == 3 * 32


def test_stretched_pixels_rejects_a_ramp_of_flying_pixels():
    z = torch.full((16, 64), 2.0)
    z[:, 30], z[:, 31], z[:, 32] = 2.5, 3.0, 3.5
    z[:, 33:] = 4.0
    cols = stretched_pixels(z).any(0).nonzero().flatten().tolist()
    assert cols == [30, 31, 32, 33]


def test_stretched_pixels_keeps_a_grazing_floor_and_a_crease():
    # 512 rows at focal 583 (the floor's depth does not change along a row: 64 columns suffice).
    z = _floor_depth(24.5, w=64)  # the horizon is just above the top row: about 1 degree grazing
    step = (z[:-1] - z[1:]).abs() / torch.minimum(z[:-1], z[1:])
    assert float(step.max()) > 0.08  # a first-order test alone would flag its top rows
    assert not stretched_pixels(z.float()).any()
    noisy = z * (1 + 0.01 * torch.randn(z.shape, generator=_gen(6), dtype=z.dtype))
    assert float(stretched_pixels(noisy.float()).double().mean()) < 1e-4
    # A crease (two planes meeting, V-shaped in disparity) is continuous: nothing flagged.
    x = torch.arange(64, dtype=torch.float64) + 0.5
    disp = torch.where(x < 32, 0.5 + 0.01 * x, 0.82 - 0.01 * (x - 32))
    assert not stretched_pixels((1 / disp)[None].expand(32, 64).clone()).any()


def test_stretched_pixels_matches_the_dense_reference():
    """The sparse second-order test gives the dense criterion's answer, borders included."""
    from alignment.edges import _stretched_pixels_reference

    g = _gen(11)
    for shape in ((2, 2), (2, 7), (7, 3), (23, 31)):
        for trial in range(4):
            z = 1.0 + 4.0 * torch.rand(shape, generator=g)
            if trial % 2:  # steps: a third of the pixels pushed far back
                z = torch.where(torch.rand(shape, generator=g) < 0.3, 3.0 * z, z)
            for neighbourhood, span, threshold in ((4, 2, 0.05), (8, 3, 0.08), (8, 2, 0.3), (4, 5, 0.03), (8, 5, 0.1)):
                fast = stretched_pixels(z, threshold=threshold, span=span, neighbourhood=neighbourhood)
                ref = _stretched_pixels_reference(z, threshold=threshold, span=span, neighbourhood=neighbourhood)
                assert torch.equal(fast, ref), (shape, trial, neighbourhood, span, threshold)


def test_stretched_pixels_validation():
    z = torch.ones(8, 8)
    with pytest.raises(ValueError, match=r"\[H,W\]"):
        stretched_pixels(z[None])
    with pytest.raises(ValueError, match="<= 0"):
        stretched_pixels(torch.zeros(8, 8))
    with pytest.raises(ValueError, match="threshold"):
        stretched_pixels(z, threshold=0.0)
    with pytest.raises(ValueError, match="neighbourhood"):
        stretched_pixels(z, neighbourhood=6)
    with pytest.raises(ValueError, match="span"):
        stretched_pixels(z, span=1)


# ----------------------------------------------------------------------------- merge


def _grid_points(n: int, spacing: float, offset=(0.0, 0.0, 0.0)) -> torch.Tensor:
    """n^3 points on a cubic grid (cell centres of a grid of side ``spacing``)."""
    r = (torch.arange(n, dtype=torch.float32) + 0.5) * spacing
    g = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    return g + torch.tensor(offset)


def test_footprint_level_is_exact_at_powers_of_two():
    r = torch.tensor([0.25, 0.2500001, 0.126, 1.0, 3.0, 2.0**-20])
    assert footprint_level(r).tolist() == [-2, -1, -2, 0, 2, -20]
    assert footprint_level(r, cell_factor=2.0).tolist() == [-1, 0, -1, 1, 3, -19]


def test_dedup_same_points_twice_keeps_nothing():
    g = _gen(7)
    xyz = torch.rand(5000, 3, generator=g) * 10
    radius = (1 + 9 * torch.rand(5000, generator=g)) / F512
    assert not dedup_mask(xyz, radius, xyz, radius).any()
    # Within one batch, the first point of each cell wins.
    keep = dedup_mask(xyz[:0], radius[:0], torch.cat([xyz, xyz]), torch.cat([radius, radius]))
    assert not keep[5000:].any()
    again = dedup_mask(xyz[:0], radius[:0], xyz[keep[:5000]], radius[keep[:5000]])
    assert again.all()
    # Lift a view into an empty cloud (thinned to one point per cell), then lift it again.
    first = dedup_mask(xyz[:0], radius[:0], xyz, radius)
    assert not dedup_mask(xyz[first], radius[first], xyz, radius).any()
    # Mixed precision: the same cells whatever the dtype of each side.
    assert not dedup_mask(xyz.double(), radius.double(), xyz, radius).any()


def test_dedup_disjoint_points_are_all_kept():
    existing = _grid_points(10, 0.25)
    new = _grid_points(10, 0.25, offset=(5.0, 0.0, 0.0))
    keep = dedup_mask(existing, torch.full((1000,), 0.2), new, torch.full((1000,), 0.2))
    assert keep.all()
    # Neighbouring cells (one grid, split in two halves along x): all kept.
    left, right = existing[existing[:, 0] < 1.25], existing[existing[:, 0] > 1.25]
    assert dedup_mask(left, torch.full((len(left),), 0.2), right, torch.full((len(right),), 0.2)).all()


def test_dedup_keeps_resolution_levels_apart():
    coarse = _grid_points(4, 1.0)  # radius 1: cells of side 1
    coarse_r = torch.full((64,), 1.0)
    fine = _grid_points(32, 0.125)  # radius 0.1: cells of side 0.125, same region
    fine_r = torch.full((len(fine),), 0.1)
    # New fine detail over an existing coarse region is not merged into the coarse cells.
    assert dedup_mask(coarse, coarse_r, fine, fine_r).all()
    # A fine point exactly at a coarse point's position is still kept: a coarser point does not
    # block finer detail.
    assert dedup_mask(coarse, coarse_r, coarse, torch.full((64,), 0.1)).all()
    # New coarse points over a region already covered finely are dropped.
    assert not dedup_mask(fine, fine_r, coarse, coarse_r).any()
    # Within one batch: kept fine points block coarse points of the same region, not vice versa.
    keep = dedup_mask(fine[:0], fine_r[:0], torch.cat([coarse, fine]), torch.cat([coarse_r, fine_r]))
    assert not keep[:64].any() and keep[64:].all()


def test_dedup_huge_coordinate_spans_fall_back_exactly():
    a = torch.tensor([[-3.0e5, 0.0, 0.0], [3.0e5, 1.0e5, -2.0e5]], dtype=torch.float64)
    r = torch.full((2,), 2.0**-14, dtype=torch.float64)  # cells of 6e-5: spans of ~1e10 per axis
    new = torch.cat([a, a + 1.0])
    keep = dedup_mask(a, r, new, torch.full((4,), 2.0**-14, dtype=torch.float64))
    assert keep.tolist() == [False, False, True, True]


def test_dedup_validation():
    xyz = torch.rand(10, 3)
    r = torch.full((10,), 0.1)
    with pytest.raises(ValueError, match=r"\[N,3\]"):
        dedup_mask(xyz[:, :2], r, xyz, r)
    with pytest.raises(ValueError, match="new_radius"):
        dedup_mask(xyz, r, xyz, r[:5])
    with pytest.raises(ValueError, match="> 0"):
        dedup_mask(xyz, r, xyz, torch.zeros(10))
    with pytest.raises(ValueError, match="non-finite"):
        dedup_mask(xyz, r, torch.full((10, 3), float("nan")), r)
    with pytest.raises(ValueError, match="cell_factor"):
        dedup_mask(xyz, r, xyz, r, cell_factor=0.0)
    with pytest.raises(TypeError):
        dedup_mask(xyz.numpy(), r, xyz, r)
    assert dedup_mask(xyz, r, xyz[:0], r[:0]).shape == (0,)


def test_dedup_fast_path_matches_reference_path(monkeypatch):
    import alignment.merge as merge_module

    g = _gen(8)
    existing = torch.rand(8000, 3, generator=g) * 2
    existing_r = (1 + 15 * torch.rand(8000, generator=g)) / F512
    pick = torch.randint(0, 8000, (1500,), generator=g)
    new = torch.cat([existing[pick] + 0.002 * torch.randn(1500, 3, generator=g), torch.rand(1500, 3, generator=g) * 3])
    new_r = torch.cat([existing_r[pick], (1 + 15 * torch.rand(1500, generator=g)) / F512])
    fast = [dedup_mask(existing, existing_r, new, new_r, merge_within_new=w) for w in (True, False)]
    monkeypatch.setattr(merge_module, "_FIELD_BITS", 0)  # nothing fits: the reference path
    reference = [dedup_mask(existing, existing_r, new, new_r, merge_within_new=w) for w in (True, False)]
    assert torch.equal(fast[0], reference[0]) and torch.equal(fast[1], reference[1])
    assert 0 < int(fast[0].sum()) < int(fast[1].sum()) < len(new)


def test_dedup_merge_within_new_off_keeps_a_views_own_points():
    h = w = 64
    v, u = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    z = torch.full((h, w), 3.0)
    xyz = torch.stack([(u - w / 2) / F512 * z, (v - h / 2) / F512 * z, z], -1).reshape(-1, 3)
    r = (z / F512).reshape(-1)
    thinned = dedup_mask(xyz[:0], r[:0], xyz, r)
    assert 0.2 < float(thinned.float().mean()) < 0.8  # one per cell of 1-2 footprints
    assert dedup_mask(xyz[:0], r[:0], xyz, r, merge_within_new=False).all()
    assert not dedup_mask(xyz, r, xyz, r, merge_within_new=False).any()  # re-lifting: nothing


def test_dedup_box_prefilter_by_blocks_is_exact(monkeypatch):
    """The existing cloud tested block by block (blocks outside the new points' box skipped,
    blocks inside it taken whole) keeps exactly the points of the one-block test."""
    import alignment.merge as merge_module

    g = torch.Generator().manual_seed(3)
    # A cloud in runs of nearby points (as views append them), far and near the new points.
    centres = torch.randn(40, 3, generator=g) * 4
    existing = (centres[:, None, :] + 0.05 * torch.randn(40, 100, 3, generator=g)).reshape(-1, 3)
    existing_r = (1 + 15 * torch.rand(4000, generator=g)) / F512
    pick = torch.randint(0, 300, (800,), generator=g)  # near the first three runs
    new = existing[pick] + 0.01 * torch.randn(800, 3, generator=g)
    new_r = existing_r[pick]
    whole = dedup_mask(existing, existing_r, new, new_r, merge_within_new=False)
    lo, hi = new.min(0).values, new.max(0).values
    for block in (64, 100, 1000):
        monkeypatch.setattr(merge_module, "BOX_BLOCK", block)
        assert torch.equal(dedup_mask(existing, existing_r, new, new_r, merge_within_new=False), whole)
        assert torch.equal(merge_module._inside_box(existing, lo, hi),
                           torch.nonzero(((existing >= lo) & (existing <= hi)).all(1)).squeeze(1))
        b_lo, b_hi = merge_module.block_bounds(existing, block)
        overlap = ((b_hi >= lo) & (b_lo <= hi)).all(1)
        assert 0 < int(overlap.sum()) < len(overlap) or block == 1000  # small blocks were skipped
    assert 0 < int(whole.sum()) < len(new)
