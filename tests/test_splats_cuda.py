"""gsplat's CUDA rasterizer against our CPU rasterizer: the same image and the same gradients.

These run only where CUDA is available (a GPU machine); on a CPU they are skipped, and the CPU
path is held to the float64 brute-force reference in tests/test_splats.py instead. The first
call on a GPU compiles gsplat's kernels (minutes), then they are cached.
"""

import pytest
import torch

from dreamer.splats import rasterize
from test_splats import _cameras, random_scene

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (gsplat's kernels)")


def _render(params, cam, backend, device):
    leaves = [p.detach().to(device).requires_grad_(True) for p in params]
    out = rasterize(*leaves, cam.to(device), backend=backend)
    return leaves, out


@pytest.mark.parametrize("cam_name", ["plain", "posed"])
def test_cuda_forward_matches_cpu(cam_name):
    cam = _cameras()[cam_name]
    params = random_scene(500, seed=1)
    _, cpu = _render(params, cam, "torch", "cpu")
    _, gpu = _render(params, cam, "gsplat", "cuda")
    assert gpu.info["backend"] == "gsplat"
    for name in ("rgb", "depth", "alpha"):
        a, b = getattr(cpu, name).detach(), getattr(gpu, name).detach().cpu()
        # float32 on both sides; the kernels sum in another order: agreement to ~1e-4.
        err = float((a - b).abs().max())
        assert err < 2e-3, f"{name}: CUDA and CPU differ by up to {err:.3g}"


@pytest.mark.parametrize("cam_name", ["plain", "posed"])
def test_cuda_gradients_match_cpu(cam_name):
    cam = _cameras()[cam_name]
    params = random_scene(300, seed=2)
    weights = torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(3))
    grads = {}
    for backend, device in (("torch", "cpu"), ("gsplat", "cuda")):
        leaves, out = _render(params, cam, backend, device)
        loss = (out.rgb * weights.to(device)).sum() + out.alpha.sum()
        loss.backward()
        grads[backend] = [leaf.grad.detach().cpu() for leaf in leaves]
    for name, a, b in zip(("means", "quats", "scales", "opacities", "sh"), grads["torch"], grads["gsplat"]):
        scale = float(a.abs().max()) + 1e-12
        err = float((a - b).abs().max()) / scale
        assert err < 1e-2, f"d loss / d {name}: CUDA and CPU differ by {err:.3g} of the largest gradient"


def test_cuda_depth_loss_gradients_match_cpu():
    """The refine step's depth supervision trains through the expected depth on both paths."""
    from dreamer.splats.losses import inverse_depth_l1

    cam = _cameras()["posed"]
    params = random_scene(300, seed=4)
    target = 2.0 + torch.rand(64, 64, generator=torch.Generator().manual_seed(5))
    grads = {}
    for backend, device in (("torch", "cpu"), ("gsplat", "cuda")):
        leaves, out = _render(params, cam, backend, device)
        mask = out.alpha.detach() > 0.5
        inverse_depth_l1(out.depth, target.to(device), mask).backward()
        grads[backend] = [leaf.grad.detach().cpu() for leaf in leaves[:4]]
    for name, a, b in zip(("means", "quats", "scales", "opacities"), grads["torch"], grads["gsplat"]):
        scale = float(a.abs().max()) + 1e-12
        err = float((a - b).abs().max()) / scale
        assert scale > 1e-9 and err < 2e-2, f"d depth loss / d {name}: CUDA and CPU differ by {err:.3g}"
