"""Zoom-stack math: rendering, noise, blending (see zoom/stack.py and zoom/pyramid.py). No models."""

import math

import pytest
import torch
import torch.nn.functional as F

import zoom
from zoom import blend, consistency_error, render_image, render_noise
from zoom import stack as zstack
from zoom.metrics import finest_band_energy, seam_ratio
from zoom.pyramid import laplacian_pyramid, reconstruct_laplacian, replace_low_bands, upsample
from zoom.stack import (
    box_downsample,
    center_crop,
    max_paste_depth,
    paste_center,
    render_noise_stack,
    render_stack,
    stack_from_image,
)
from zoom.video import zoom_frames


def procedural_image(size: int, dtype=torch.float64) -> torch.Tensor:
    """[3,S,S]: a zone plate plus sinusoids, detail at every scale, values in [0,1]."""
    t = (torch.arange(size, dtype=dtype) + 0.5) / size - 0.5
    y, x = torch.meshgrid(t, t, indexing="ij")
    r2 = x * x + y * y
    zone = 0.5 + 0.5 * torch.cos(math.pi * size * 0.9 * r2)
    a = 0.5 + 0.5 * torch.sin(2 * math.pi * (7 * x + 3 * y))
    b = 0.5 + 0.5 * torch.cos(2 * math.pi * (23 * x - 41 * y))
    return torch.stack([zone, 0.6 * a + 0.4 * zone, 0.5 * b + 0.5 * a])


def algorithm1(stack: torch.Tensor, i: int, p: int, gain: bool = False, max_depth=None) -> torch.Tensor:
    """The paper's Algorithm 1 written directly: ascending j, D_{p^(j-i)} pasted into the centre."""
    x = stack[i].clone()
    last = stack.shape[0] - 1 if max_depth is None else min(stack.shape[0] - 1, i + max_depth)
    for j in range(i + 1, last + 1):
        r = p ** (j - i)
        tile = box_downsample(stack[j], r) * (r if gain else 1)
        x = paste_center(x, tile)
    return x


@pytest.fixture(params=[(2, 4, 32), (4, 3, 32)], ids=["p2", "p4"])
def true_stack(request):
    p, n, h = request.param
    big = procedural_image(h * p ** (n - 1))
    return p, stack_from_image(big, n, p=p)


# ----------------------------------------------------------------------------- T1 rendering
def test_stack_from_image_is_consistent(true_stack):
    p, L = true_stack
    assert L.shape[-1] == 32
    assert consistency_error(L, p=p).max() < 1e-12


def test_render_image_returns_the_true_levels(true_stack):
    p, L = true_stack
    for i in range(L.shape[0]):
        assert (render_image(L, i, p=p) - L[i]).abs().max() < 1e-12
    assert (render_stack(L, p=p) - L).abs().max() < 1e-12


@pytest.mark.parametrize("p", [2, 4])
def test_render_matches_algorithm1_and_is_consistent_for_random_stacks(p):
    n = 5 if p == 2 else 3  # every tile of Algorithm 1 at least 4 px
    g = torch.Generator().manual_seed(1)
    L = torch.rand(n, 3, 64, 64, generator=g, dtype=torch.float64)
    R = render_stack(L, p=p)
    for i in range(n):
        assert torch.equal(render_image(L, i, p=p), R[i])
        assert (R[i] - algorithm1(L, i, p)).abs().max() < 1e-12
        # bounded depth: the truncated recursion is Algorithm 1 with j - i <= max_depth
        assert (render_image(L, i, p=p, max_depth=1) - algorithm1(L, i, p, max_depth=1)).abs().max() < 1e-12
    assert consistency_error(R, p=p).max() < 1e-12
    assert consistency_error(render_stack(L.float(), p=p), p=p).max() < 1e-6
    # the outside of each level is untouched, the centre is the finer level
    assert torch.equal(R[0][:, :2], L[0][:, :2])


def test_render_stays_consistent_when_deep_tiles_are_below_a_pixel():
    # 8 px, p = 2, 6 levels: level 5 would be a 1/4 px tile in level 0 -- the recursion averages it
    L = torch.rand(6, 3, 8, 8, dtype=torch.float64)
    assert consistency_error(render_stack(L), p=2).max() < 1e-12


def test_render_inputs_are_validated():
    L = torch.rand(3, 3, 32, 32)
    with pytest.raises(IndexError):
        render_image(L, 3)
    with pytest.raises(ValueError, match="p must be"):
        render_image(L, 0, p=1)
    with pytest.raises(ValueError, match="shape"):
        render_image(L[0], 0)
    with pytest.raises(ValueError, match="centred"):
        render_image(torch.rand(2, 3, 30, 30), 0)  # 30 - 15 is odd
    with pytest.raises(ValueError, match="float tensor"):
        render_image(L.long(), 0)
    with pytest.raises(ValueError, match="max_depth"):
        render_image(L, 0, max_depth=-1)


def test_max_paste_depth_on_latent_grids():
    assert max_paste_depth(64, 64, 2, min_size=2) == 5  # SD 1.5 latents, p = 2
    assert max_paste_depth(64, 64, 4, min_size=2) == 2  # p = 4
    assert max_paste_depth(8, 8, 2, min_size=2) == 2  # tiny test latents
    assert max_paste_depth(512, 512, 2) == 8


# ----------------------------------------------------------------------------- T2 noise
def _rings(h: int, p: int, n: int) -> list[torch.Tensor]:
    """Masks [H,W] of the regions of level 0 that come from level j = 0..n-1."""
    def centre(r):
        m = torch.zeros(h, h, dtype=torch.bool)
        t, o = h // r, (h - h // r) // 2
        m[o:o + t, o:o + t] = True
        return m

    masks = [centre(p ** j) for j in range(n)]
    return [masks[j] & ~masks[j + 1] if j + 1 < n else masks[j] for j in range(n)]


def _noise_stats(noise_levels: torch.Tensor):
    var = noise_levels.var(dim=(1, 2, 3))
    x = noise_levels
    corr_x = ((x[..., :, 1:] * x[..., :, :-1]).mean(dim=(1, 2, 3))) / var
    corr_y = ((x[..., 1:, :] * x[..., :-1, :]).mean(dim=(1, 2, 3))) / var
    return var, torch.maximum(corr_x.abs(), corr_y.abs())


@pytest.mark.parametrize("p", [2, 4])
def test_render_noise_is_unit_white_gaussian_with_exact_cross_level_identity(p):
    n, h = (4, 32) if p == 2 else (3, 32)
    g = torch.Generator().manual_seed(2)
    E = torch.randn(n, 256, h, h, generator=g, dtype=torch.float64)  # 256 channels = trials
    R = render_noise_stack(E, p=p)
    var, corr = _noise_stats(R)
    assert ((var - 1).abs() < 0.03).all(), var
    assert (corr < 0.02).all(), corr
    # every region of level 0 (from level 0, 1, ...) is unit variance on its own
    for j, ring in enumerate(_rings(h, p, n)):
        v = R[0][:, ring].var()
        assert abs(float(v) - 1) < 0.1, (j, v)
    # exact: C_p(Pi_noise(E, i)) == p * D_p(Pi_noise(E, i+1))
    for i in range(n - 1):
        lhs = center_crop(R[i], p)
        rhs = p * box_downsample(R[i + 1], p)
        assert (lhs - rhs).abs().max() < 1e-12
        assert torch.equal(render_noise(E, i, p=p), R[i])


def _blur_stride(x: torch.Tensor, r: int) -> torch.Tensor:
    """The public re-implementations' downsampler: Gaussian blur (k = (r//2)*2+1, sigma = r/2) + stride."""
    k = (r // 2) * 2 + 1
    t = torch.arange(k, dtype=x.dtype) - k // 2
    g1 = torch.exp(-t * t / (2 * (r / 2) ** 2))
    g1 = g1 / g1.sum()
    kernel = (g1[:, None] * g1[None, :])[None, None]
    h, w = x.shape[-2:]
    lead = x.shape[:-2]
    y = F.conv2d(F.pad(x.reshape(-1, 1, h, w), (k // 2,) * 4, mode="reflect"), kernel)[..., ::r, ::r]
    return y.reshape(*lead, h // r, w // r)


def test_blur_plus_stride_noise_fails_on_purpose(monkeypatch):
    g = torch.Generator().manual_seed(3)
    E = torch.randn(3, 128, 32, 32, generator=g, dtype=torch.float64)
    tile = 2 * _blur_stride(E[1], 2)
    assert abs(float(tile.var()) - 0.5) < 0.05  # variance 0.5 instead of 1
    monkeypatch.setattr(zstack, "box_downsample", _blur_stride)
    R = render_noise_stack(E, p=2)
    var, corr = _noise_stats(R)
    assert (var[:-1] < 0.9).all()  # the same checks as above fail
    assert (corr[:-1] > 0.02).all()


def test_blend_with_gaussian_reduce_is_not_idempotent(monkeypatch):
    p, n = 2, 4
    L = stack_from_image(procedural_image(32 * 8), n, p=p)
    monkeypatch.setattr(zstack, "box_downsample", _blur_stride)
    assert (blend(L, p=p) - L).abs().max() > 0.01


# ----------------------------------------------------------------------------- T3 blend
def test_laplacian_pyramid_round_trip():
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    bands = laplacian_pyramid(x, 4, p=2)
    assert [b.shape[-1] for b in bands] == [32, 16, 8, 4]
    assert (reconstruct_laplacian(bands, p=2) - x).abs().max() < 1e-12


def test_blend_is_a_fixed_point_on_a_consistent_stack(true_stack):
    p, L = true_stack
    assert (blend(L, p=p) - L).abs().max() < 1e-6
    assert (blend(L.float(), p=p) - L.float()).abs().max() < 1e-6
    R = render_stack(torch.rand(5, 4, 32, 32, dtype=torch.float64), p=p)
    assert (blend(R, p=p) - R).abs().max() < 1e-6
    assert (blend(R, p=p, max_depth=1) - R).abs().max() < 1e-6


def test_blend_of_one_level_is_the_identity():
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(blend(x), x)


def test_blend_averages_the_coarsest_band_and_keeps_the_finest_band(true_stack):
    p, L = true_stack
    offsets = torch.tensor([0.3, -0.1, 0.2, 0.05][: L.shape[0]], dtype=L.dtype)
    X = L + offsets[:, None, None, None]
    B = blend(X, p=p)
    k_max = max_paste_depth(32, 32, p, min_size=2)
    for i in range(L.shape[0]):
        k = min(i, k_max)
        expected = offsets[i - k:i + 1].mean()  # a constant lives in the low-pass band only
        assert (B[i] - L[i] - expected).abs().max() < 1e-9
    # the finest band of level i is its own: detail with zero box means added to the deepest level
    # comes back exactly, and the coarser levels do not see it
    g = torch.Generator().manual_seed(5)
    delta = 0.05 * torch.randn(L.shape[1:], generator=g, dtype=L.dtype)
    delta = delta - F.interpolate(box_downsample(delta, p)[None], scale_factor=p, mode="nearest")[0]
    assert box_downsample(delta, p).abs().max() < 1e-12
    X2 = X.clone()
    X2[-1] += delta
    B2 = blend(X2, p=p)
    assert (B2[-1] - B[-1] - delta).abs().max() < 1e-9
    assert (B2[:-1] - B[:-1]).abs().max() == 0


def test_replace_low_bands():
    x = torch.rand(3, 32, 32, dtype=torch.float64)
    t = torch.rand(3, 32, 32, dtype=torch.float64)
    y = replace_low_bands(x, t, 2)
    # y - x lives in the two-times-upsampled low-pass: U(U(D(D(t)) - D(D(x))))
    low = lambda v: box_downsample(v, 4)  # noqa: E731
    expected = upsample(upsample(low(t) - low(x), 2), 2)
    assert (y - x - expected).abs().max() < 1e-12
    assert torch.equal(replace_low_bands(x, t, 0), t)


# ----------------------------------------------------------------------------- T4 noisy oracle
def test_noisy_observations_blend_and_render_to_a_consistent_stack_no_farther_from_truth(true_stack):
    p, L = true_stack
    g = torch.Generator().manual_seed(4)
    colour = 0.1 * torch.randn(L.shape[0], 3, 1, 1, generator=g, dtype=L.dtype)
    X = L + colour + 0.1 * torch.randn(L.shape, generator=g, dtype=L.dtype)
    assert consistency_error(X, p=p).min() > 0.05
    R = render_stack(blend(X, p=p), p=p)
    assert consistency_error(R, p=p).max() < 1e-12
    assert float((R - L).abs().mean()) <= float((X - L).abs().mean())


# ----------------------------------------------------------------------------- metrics & video
def test_seam_ratio_and_sharpness_metrics(true_stack):
    p, L = true_stack
    L = L.float()
    flat = torch.rand(L.shape[0], 3, 1, 1).expand_as(L).contiguous()
    glued = render_stack(flat, p=p)  # flat levels of different colours: a pure frame
    assert (seam_ratio(glued, p=p) > 5).all()
    assert (seam_ratio(L, p=p) < 3).all()
    e = finest_band_energy(L, p=p)
    assert e.shape == (L.shape[0],) and (e > 0).all()
    blurred = F.interpolate(box_downsample(L, p), scale_factor=p, mode="bilinear")
    assert (finest_band_energy(blurred, p=p) < 0.5 * e).all()


def test_zoom_frames_are_continuous_and_end_on_each_level(true_stack):
    p, L = true_stack
    levels = L.float().permute(0, 2, 3, 1)
    frames = list(zoom_frames(levels, p=p, frames_per_level=8))
    assert len(frames) == (L.shape[0] - 1) * 8 + 1
    for i in range(L.shape[0]):
        assert (frames[i * 8] - levels[i]).abs().max() < 1e-5
    # the last frame before a hand-off is (almost) the next level: no jump
    jumps = [float((frames[k + 1] - frames[k]).abs().mean()) for k in range(len(frames) - 1)]
    assert max(jumps) < 4 * (sum(jumps) / len(jumps)) + 1e-3


def test_public_names_keep_their_documented_behaviour():
    # The contract is `from zoom import render_image, render_noise, blend, sample_zoom_stack,
    # consistency_error`; here they are reached through the package top and checked on a stack
    # cut from one image (exactly consistent) and on one that is not.
    big = procedural_image(64)
    stack = stack_from_image(big, 3, p=2)
    assert zoom.consistency_error(stack, p=2).max() < 1e-12
    assert (zoom.blend(stack, p=2) - stack).abs().max() < 1e-12
    for i in range(3):
        assert (zoom.render_image(stack, i, p=2) - stack[i]).abs().max() < 1e-12
    broken = stack.clone()
    broken[1] += 0.1 * torch.randn(broken[1].shape, generator=torch.Generator().manual_seed(0), dtype=broken.dtype)
    assert zoom.consistency_error(broken, p=2).max() > 1e-3
    noise = zoom.render_noise(torch.randn(3, 4, 32, 32, generator=torch.Generator().manual_seed(1)), 0, p=2)
    assert noise.shape == (4, 32, 32) and 0.8 < float(noise.std()) < 1.2
    assert zoom.sample_zoom_stack.__module__ == "zoom.sampler"  # resolved lazily (diffusers on first use)
