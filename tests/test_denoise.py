"""alignment.denoise: an estimate's pixel noise removed, depth edges and noise-free maps kept."""

import math

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
    # Any float map, bfloat16 too (numpy has no such type): torch's median of the second differences.
    L = torch.log(_noisy(truth, 0.02)).to(torch.bfloat16)
    d2 = L[:, 2:] - 2 * L[:, 1:-1] + L[:, :-2]
    assert pixel_noise(L) == float(d2.abs().median()) / (0.6745 * math.sqrt(6.0))


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


# ---------------------------------------------------------------- the local-plane filter (smooth_depth)


def _plain_plane_filter(L, where, radius, tonal_sigma):
    """smooth_depth's filter written plainly: per pixel, its window's weighted least squares with
    torch.linalg.solve (float64 throughout; the same first pass, slopes and weights)."""
    import torch.nn.functional as F
    from alignment.denoise import _SLOPE_PRIOR, _filtered, _minmod

    H, W = L.shape
    L1 = _filtered(L.float(), 2, tonal_sigma).double()
    p1 = F.pad(L1[None, None], (2, 2, 2, 2), mode="replicate")[0, 0]
    c = p1[2:-2, 2:-2]
    gx = _minmod(p1[2:-2, 4:] - c, c - p1[2:-2, :-4]) / 2  # two-pixel one-sided slopes
    gy = _minmod(p1[4:, 2:-2] - c, c - p1[:-4, 2:-2]) / 2
    out = []
    for y, x in zip(*torch.nonzero(where, as_tuple=True)):
        A = torch.diag(torch.tensor([0.0, _SLOPE_PRIOR, _SLOPE_PRIOR], dtype=torch.float64))
        b = torch.tensor([0.0, _SLOPE_PRIOR * gx[y, x], _SLOPE_PRIOR * gy[y, x]], dtype=torch.float64)
        for dy in range(-radius, radius + 1):
            for dx in range(-radius, radius + 1):
                v = L[min(max(y + dy, 0), H - 1), min(max(x + dx, 0), W - 1)] - L1[y, x]
                off = v - gx[y, x] * dx - gy[y, x] * dy
                w = torch.exp(-(dx * dx + dy * dy) / (2 * (radius / 2) ** 2) - off ** 2 / (2 * tonal_sigma ** 2))
                row = torch.tensor([1.0, dx, dy], dtype=torch.float64)
                A += w * torch.outer(row, row)
                b += w * v * row
        out.append(L1[y, x] + torch.linalg.solve(A, b)[0])
    return torch.stack(out)


def test_the_plane_filter_matches_a_plain_per_pixel_least_squares():
    from alignment.denoise import _plane_values

    truth, box = _scene()
    L = torch.log(_noisy(truth, 0.01, seed=3))[10:40, 20:60]  # across the box's outline
    where = torch.zeros_like(L, dtype=torch.bool)
    where[::3, ::2] = True
    where[0, :] = True  # the border row (replicated neighbours) too
    fast = _plane_values(L, where, 3, 0.02)
    assert torch.allclose(fast, _plain_plane_filter(L, where, 3, 0.02), atol=2e-6)  # float32 sums inside


def test_the_plane_filter_keeps_a_linear_log_depth_exactly_and_filters_only_where_asked():
    from alignment.denoise import smooth_depth

    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    ramp = torch.exp(1.0 + 0.03 * xx - 0.02 * yy)  # log depth linear: a plane in the filter's terms
    noise = 1 + 0.01 * torch.randn(ramp.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    bumpy = ramp * noise
    where = torch.zeros(H, W, dtype=torch.bool)
    where[10:50, 20:70] = True
    out = smooth_depth(bumpy, where)
    assert torch.equal(out[~where], bumpy[~where])
    # A plane without noise is a fixed point of every pixel's fit (the filter sees no noise: as is).
    assert smooth_depth(ramp, where) is ramp
    from alignment.denoise import _plane_values
    exact = _plane_values(torch.log(ramp), where, 3, 0.02)
    assert float((exact - torch.log(ramp)[where]).abs().max()) < 1e-5
    # On the noisy slope, the plane removes most of the noise; the light mean filter much less.
    err = float(_rel(out, ramp)[where].mean())
    assert err < 0.45 * float(_rel(bumpy, ramp)[where].mean())
    assert err < 0.6 * float(_rel(denoise_depth(bumpy, radius=1), ramp)[where].mean())


def test_the_plane_filter_keeps_depth_edges():
    from alignment.denoise import smooth_depth

    truth, box = _scene()
    noisy = _noisy(truth, 0.01)
    out = smooth_depth(noisy, torch.ones_like(box))
    assert float(_rel(out, truth).mean()) < 0.4 * float(_rel(noisy, truth).mean())
    edge = box ^ torch.roll(box, 1, dims=1)
    edge |= box ^ torch.roll(box, -1, dims=1)
    assert float(_rel(out, truth)[edge].max()) < 0.05  # not pulled toward the other surface
    assert float(_rel(out, truth)[edge].mean()) < float(_rel(noisy, truth)[edge].mean())


def test_the_plane_filter_refuses_bad_settings():
    from alignment.denoise import smooth_depth

    truth, box = _scene()
    with pytest.raises(ValueError, match="radius"):
        smooth_depth(truth, box, radius=-1)
    with pytest.raises(ValueError, match="strength"):
        smooth_depth(truth, box, strength=float("nan"))
    with pytest.raises(ValueError, match="where"):
        smooth_depth(truth, box[:, :5])
    assert smooth_depth(truth, box, radius=0) is truth
