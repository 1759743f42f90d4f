"""Antialiased rasterization (gsplat's ``rasterize_mode="antialiased"``) on the CPU path: the
float64 brute-force reference, gradients, and the property it exists for (tiny Gaussians seen
from afar look like the average of their close-up). gsplat's CUDA kernels are compared in test_splats_cuda.py."""

import pytest
import torch

from dreamer.cameras import Camera
from dreamer.splats import rasterize
from dreamer.splats.reference import rasterize_reference
from test_splats import _cameras, random_scene


def _mixed_scene(n, *, seed, dtype):
    """random_scene with a third of the Gaussians shrunk far below a pixel (where the
    compensation matters) and a third enlarged (where it is about 1)."""
    means, quats, scales, op, sh = random_scene(n, seed=seed, dtype=dtype)
    k = n // 3
    scales = scales.clone()
    scales[:k] *= 0.02
    scales[k:2 * k] *= 1.5
    return [means, quats, scales, op, sh]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cam_name", ["plain", "posed"])
def test_antialiased_cpu_rasterizer_matches_brute_force(dtype, cam_name):
    cam = _cameras()[cam_name]
    params = _mixed_scene(600, seed=4, dtype=dtype)
    out = rasterize(*params, cam, rasterize_mode="antialiased")
    ref = rasterize_reference(*params, cam, rasterize_mode="antialiased")
    for got, want, name in zip((out.rgb, out.depth, out.alpha), ref, ("rgb", "depth", "alpha")):
        err = float((got.double() - want).abs().max())
        assert err <= 1e-5, f"{name}: max error {err:.3g}"
    # The mode changes the image (the comparison above is not the classic one again).
    classic = rasterize_reference(*params, cam)
    assert float((classic[0] - ref[0]).abs().max()) > 0.05
    assert float(classic[2].mean()) > float(ref[2].mean()) + 1e-3  # compensated opacities are lower


def test_antialiased_gradients_match_autograd_and_finite_differences():
    cam = _cameras()["posed"]
    params = [t.double() for t in _mixed_scene(60, seed=7, dtype=torch.float64)]
    weights = torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def loss_of(leaves, analytic=True):
        out = rasterize(*leaves, cam, rasterize_mode="antialiased", analytic_backward=analytic)
        return (out.rgb * weights).sum() + out.alpha.sum()

    grads = {}
    for analytic in (True, False):
        leaves = [p.clone().requires_grad_(True) for p in params]
        loss_of(leaves, analytic).backward()
        grads[analytic] = [leaf.grad for leaf in leaves]
    for a, b in zip(grads[True], grads[False]):
        assert torch.allclose(a, b, atol=1e-8, rtol=1e-6)
    # Central differences on the scales (the compensation depends on them) of a few Gaussians.
    g = grads[True][2]
    for i in torch.argsort(g.abs().sum(1), descending=True)[:4].tolist():
        for axis in range(3):
            h = 1e-6 * float(params[2][i, axis])
            plus, minus = [p.clone() for p in params], [p.clone() for p in params]
            plus[2][i, axis] += h
            minus[2][i, axis] -= h
            fd = (float(loss_of(plus)) - float(loss_of(minus))) / (2 * h)
            assert fd == pytest.approx(float(g[i, axis]), rel=1e-3, abs=1e-6), (i, axis)


def _sparse_plane(n=600, seed=0):
    """``n`` small Gaussians of random colour and opacity scattered over a plane 4 m away."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) - 0.5
    z = 4.0 + 0.05 * torch.rand(n, 1, generator=g)
    means = torch.cat([xy * z / 4.0, z], 1)
    quats = torch.randn(n, 4, generator=g)
    scales = 0.012 * torch.exp(0.3 * torch.randn(n, 3, generator=g))
    op = 0.3 + 0.6 * torch.rand(n, generator=g)
    sh = (torch.rand(n, 1, 3, generator=g) - 0.5) / 0.28209479177387814
    return means, quats, scales, op, sh


def _square_camera(side, f):
    return Camera(torch.tensor([[f, 0.0, side / 2], [0.0, f, side / 2], [0.0, 0.0, 1.0]]), torch.eye(4), side, side)


@pytest.mark.parametrize("mode", ["antialiased", "classic"])
def test_far_render_is_the_mipmap_of_a_near_render_only_when_antialiased(mode):
    """Zooming out 8x must look like averaging 8 x 8 pixels of the close-up (a mipmap). Near,
    the Gaussians span about 3 pixels; far, a third of a pixel, where classic rasterization
    dilates each one to a whole opaque pixel (everything too bright and too solid) and the
    antialiased mode keeps each one's integrated weight."""
    params = _sparse_plane()
    near = rasterize(*params, _square_camera(128, 512.0), rasterize_mode=mode).rgb
    far = rasterize(*params, _square_camera(16, 64.0), rasterize_mode=mode).rgb
    mipmap = torch.nn.functional.avg_pool2d(near.permute(2, 0, 1)[None], 8)[0].permute(1, 2, 0)
    err = float((far - mipmap).abs().mean())
    if mode == "antialiased":
        assert err < 0.05, err
    else:  # the failure the mode exists for (measured: ~0.32 against ~0.03 antialiased)
        assert err > 0.2, err


def test_bad_rasterize_mode():
    cam = _cameras()["plain"]
    with pytest.raises(ValueError, match="rasterize_mode"):
        rasterize(*random_scene(5, seed=0), cam, rasterize_mode="mip")
    with pytest.raises(ValueError, match="rasterize_mode"):
        rasterize_reference(*random_scene(5, seed=0), cam, rasterize_mode="mip")
