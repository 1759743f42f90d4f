"""alignment.stitch: the new depth meets the cloud's pixel by pixel at the seam, and only there."""

import pytest
import torch

from alignment.stitch import stitch_seam


def _seam_case(H=24, W=24):
    """A flat surface at depth 2; the left half known (the cloud's render), the right half new."""
    truth = torch.full((H, W), 2.0, dtype=torch.float64)
    known = torch.zeros(H, W, dtype=torch.bool)
    known[:, :12] = True
    return truth, known, ~known


def test_an_offset_of_the_cloud_is_met_at_the_seam_and_fades_within_the_reach():
    truth, known, hole = _seam_case()
    reference = torch.where(known, truth * 1.03, 0.0)  # the cloud's render, 3% too far
    out = stitch_seam(truth, reference, known, hole, reach=2)
    ratio = (out / truth)[:, 12:].log() / torch.log(torch.tensor(1.03, dtype=torch.float64))
    assert torch.allclose(ratio[:, 0], torch.ones(24, dtype=torch.float64))  # next to the seam: all of it
    assert torch.allclose(ratio[:, 1], torch.full((24,), 0.5, dtype=torch.float64))  # then half
    assert torch.equal(out[:, 14:], truth[:, 14:])  # beyond the reach: the aligned depth as it was
    assert torch.equal(out[known], truth[known])  # known pixels are not the stitch's to change


def test_pixel_level_errors_of_the_cloud_are_followed_and_depth_edges_are_kept():
    truth, known, hole = _seam_case()
    g = torch.Generator().manual_seed(0)
    err = 1 + 0.03 * (2 * torch.rand(24, 24, generator=g, dtype=torch.float64) - 1)  # +-3% per pixel
    reference = torch.where(known, truth * err, 0.0)
    out = stitch_seam(truth, reference, known, hole, reach=2)
    step_before = (truth[:, 12] - reference[:, 11]).abs().median()
    step_after = (out[:, 12] - reference[:, 11]).abs().median()
    assert step_after < 0.5 * step_before
    # A real depth edge at the seam (the cloud's surface 30% farther): nothing to stitch.
    far = torch.where(known, truth * 1.3, 0.0)
    assert torch.equal(stitch_seam(truth, far, known, hole, reach=2), truth)


def test_off_and_bad_settings():
    truth, known, hole = _seam_case()
    reference = torch.where(known, truth * 1.03, 0.0)
    assert torch.equal(stitch_seam(truth, reference, known, hole, reach=0), truth)
    with pytest.raises(ValueError, match="reach"):
        stitch_seam(truth, reference, known, hole, reach=-1)
    with pytest.raises(ValueError, match="tolerance"):
        stitch_seam(truth, reference, known, hole, tolerance=0.0)


def test_neighbour_sums_are_the_cross_convolution_to_the_bit():
    """The stitch's 4-neighbour sums (shifted adds) give what a convolution with the 3x3 cross
    gives, to the bit, on values of very different sizes and signs (the order of the sums kept)."""
    import torch.nn.functional as F

    from alignment.stitch import _neighbour_sums

    g = torch.Generator().manual_seed(0)
    m = torch.randn(37, 53, generator=g, dtype=torch.float64) * torch.exp(3 * torch.randn(37, 53, generator=g,
                                                                                            dtype=torch.float64))
    cross = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)[None, None]
    assert torch.equal(_neighbour_sums(m), F.conv2d(m[None, None], cross, padding=1)[0, 0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_rebuilds_seam_step_has_the_filtered_maps_noise_not_the_estimates(seed):
    """The refinement's last steps (dreamer.scene.joint_refinement.finish_depth) on a slanted
    plane whose estimate has 2% pixel noise, against an exact cloud on the left half: the step
    from each known pixel to the new one next to it is off by what the filtered map's own steps
    are off inside the hole, not by the estimate's noise at the known pixel (filtered on the
    hole's side only, the stitch read that noise into the seam: 0.8-1.2% here, 0.2% now)."""
    from dreamer.scene import DreamConfig
    from dreamer.scene.joint_refinement import finish_depth

    H, W = 48, 48
    g = torch.Generator().manual_seed(seed)
    truth = (2.0 + 0.02 * torch.arange(W, dtype=torch.float64)).expand(H, W).clone()
    estimate = truth * (1 + 0.02 * torch.randn(H, W, generator=g, dtype=torch.float64))
    known = torch.zeros(H, W, dtype=torch.bool)
    known[:, :24] = True
    reference = torch.where(known, truth, 0.0)
    out = finish_depth(estimate, reference, known, ~known, DreamConfig())

    def step_error(a, b, p, q):  # rows off the border; columns p (right) and q (left)
        rows = slice(4, -4)
        return (((a[rows, p] - b[rows, q]) - (truth[rows, p] - truth[rows, q])) / truth[rows, q]).abs().median()

    seam = step_error(out, reference, 24, 23)
    inside = step_error(out, out, 30, 29)
    assert seam < 1.5 * inside
    assert seam < 0.004
