"""alignment.denoise: an estimate's pixel noise removed, depth edges and noise-free maps kept."""

import pytest
import torch

from alignment.denoise import denoise_depth, pixel_noise

H, W = 64, 80


def _scene():
    """A slanted wall with a box in front of it (a 40% depth step)."""
    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    wall = 3.0 + 0.02 * xx + 0.01 * yy
    box = (xx >= 30) & (xx < 55) & (yy >= 20) & (yy < 45)
    return torch.where(box, wall * 0.6, wall), box


def _noisy(truth, level, seed=0):
    g = torch.Generator().manual_seed(seed)
    return truth * (1 + level * torch.randn(truth.shape, generator=g, dtype=torch.float64))


def _rel(a, b):
    return ((a - b).abs() / b)


def test_the_noise_level_is_measured_on_the_map():
    truth, _ = _scene()
    for level in (0.005, 0.01, 0.02):
        assert abs(pixel_noise(torch.log(_noisy(truth, level))) / level - 1) < 0.15
    assert pixel_noise(torch.log(truth)) < 1e-4  # a slope is not noise


def test_pixel_noise_is_reduced_and_the_depth_edge_stays_sharp():
    truth, box = _scene()
    noisy = _noisy(truth, 0.01)
    out = denoise_depth(noisy, radius=1)
    assert float(_rel(out, truth).mean()) < 0.8 * float(_rel(noisy, truth).mean())
    assert float(_rel(denoise_depth(noisy, radius=2), truth).mean()) < 0.5 * float(_rel(noisy, truth).mean())
    # The pixels on both sides of the box's outline are not pulled toward the other surface.
    edge = box ^ torch.roll(box, 1, dims=1)
    edge |= box ^ torch.roll(box, -1, dims=1)
    assert float(_rel(out, truth)[edge].max()) < 0.05
    assert float(_rel(out, truth)[edge].mean()) < float(_rel(noisy, truth)[edge].mean()) * 1.1


def test_a_map_without_pixel_noise_is_returned_as_it_is():
    truth, _ = _scene()
    f = truth.float()
    assert denoise_depth(f) is f
    noisy = _noisy(truth, 0.01).float()
    assert denoise_depth(noisy, radius=0) is noisy
    assert denoise_depth(noisy).dtype == torch.float32


def test_bad_settings_are_refused():
    truth, _ = _scene()
    with pytest.raises(ValueError, match="radius"):
        denoise_depth(truth, radius=-1)
    with pytest.raises(ValueError, match="strength"):
        denoise_depth(truth, strength=0.0)


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_the_filter_with_shared_pair_weights_matches_the_plain_one_bit_for_bit(radius):
    """Weights computed once per pair of opposite offsets give exactly the filter that computes
    every offset's weights on its own, at the border (replicated) too."""
    from alignment.denoise import _filtered, _filtered_reference

    truth, _ = _scene()
    L = torch.log(_noisy(truth, 0.02, seed=radius))
    for image in (L, L[:, :17], L[5:9]):  # a tall, a narrow and a flat one too
        assert torch.equal(_filtered(image, radius, 0.03), _filtered_reference(image, radius, 0.03))
    assert not torch.equal(_filtered(L, radius, 0.03), L)
