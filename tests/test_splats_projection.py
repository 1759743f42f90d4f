"""Our pure-torch splatting pieces (dreamer/splats/projection.py): independent checks of the math,
and agreement with gsplat's own pure-torch versions where this gsplat still ships them."""

import importlib
import math

import pytest
import torch

from dreamer.splats.projection import (
    _sh_bases,
    fully_fused_projection,
    project_gaussians,
    quat_scale_to_covar_preci,
    quat_to_rotmat,
    spherical_harmonics,
)
from dreamer.splats.reference import quat_to_rotmat as reference_rotmat


def _gaussians(n=200, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g, dtype=dtype) * torch.tensor([1.5, 1.5, 0.5], dtype=dtype) + \
        torch.tensor([0.0, 0.0, 3.0], dtype=dtype)
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.rand(n, 3, generator=g, dtype=dtype) * 0.2 + 0.01
    return means, quats, scales


def _camera(dtype=torch.float64):
    K = torch.tensor([[60.0, 0.0, 33.0], [0.0, 62.0, 30.0], [0.0, 0.0, 1.0]], dtype=dtype)
    angle = 0.3
    R = torch.tensor([[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]],
                     dtype=dtype)
    w2c = torch.eye(4, dtype=dtype)
    w2c[:3, :3], w2c[:3, 3] = R, torch.tensor([0.1, -0.2, 0.3], dtype=dtype)
    return w2c, K


def _numeric_jacobian(f, x, h=1e-6):
    """Central differences, column by column (float64)."""
    cols = [(f(x + h * e) - f(x - h * e)) / (2 * h) for e in torch.eye(len(x), dtype=x.dtype)]
    return torch.stack(cols, -1)


def test_rotations_and_covariances():
    _, quats, scales = _gaussians()
    R = quat_to_rotmat(quats)
    assert torch.allclose(R, reference_rotmat(quats), atol=1e-12)
    assert torch.allclose(R @ R.transpose(-1, -2), torch.eye(3, dtype=R.dtype).expand_as(R), atol=1e-12)
    assert torch.allclose(torch.linalg.det(R), torch.ones(len(R), dtype=R.dtype), atol=1e-12)
    covar, preci = quat_scale_to_covar_preci(quats, scales)
    assert torch.allclose(covar @ preci, torch.eye(3, dtype=R.dtype).expand_as(R), atol=1e-8)
    assert torch.allclose(torch.linalg.eigvalsh(covar), (scales ** 2).sort(-1).values, atol=1e-12)
    tri, _ = quat_scale_to_covar_preci(quats, scales, compute_preci=False, triu=True)
    assert torch.allclose(tri, covar[:, [0, 0, 0, 1, 1, 2], [0, 1, 2, 1, 2, 2]])


def test_projection_is_the_ewa_linearization():
    """means2d, depth and the 2D covariance against a direct evaluation of the pinhole model and
    its Jacobian (for Gaussians inside the field of view, where the Jacobian is not clamped)."""
    means, quats, scales = _gaussians()
    w2c, K = _camera()
    covar, _ = quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    radii, means2d, depths, conics, comp = fully_fused_projection(means, covar, w2c[None], K[None], 64, 60,
                                                                 eps2d=0.3, calc_compensations=True)
    assert radii.shape == (1, 200, 2) and radii.dtype == torch.int32 and comp.shape == (1, 200)
    p = means @ w2c[:3, :3].T + w2c[:3, 3]
    assert torch.allclose(depths[0], p[:, 2])
    uv = (p @ K.T)[:, :2] / p[:, 2:]
    assert torch.allclose(means2d[0], uv)
    inside = (uv[:, 0] > 0) & (uv[:, 0] < 64) & (uv[:, 1] > 0) & (uv[:, 1] < 60)
    assert inside.sum() > 50
    for i in torch.nonzero(inside).flatten()[:20].tolist():
        J = _numeric_jacobian(lambda q: (q @ K.T)[:2] / q[2], p[i])
        cov2 = J @ w2c[:3, :3] @ covar[i] @ w2c[:3, :3].T @ J.T + 0.3 * torch.eye(2, dtype=J.dtype)
        inv = torch.linalg.inv(cov2)
        assert torch.allclose(conics[0, i], torch.stack([inv[0, 0], inv[0, 1], inv[1, 1]]), rtol=1e-6)
        expected = [math.ceil(3.33 * math.sqrt(cov2[0, 0])), math.ceil(3.33 * math.sqrt(cov2[1, 1]))]
        assert radii[0, i].tolist() == expected
        assert torch.allclose(comp[0, i] ** 2, torch.linalg.det(cov2 - 0.3 * torch.eye(2, dtype=J.dtype))
                              / torch.linalg.det(cov2))
    behind = means.clone()
    behind[:, 2] = -1.0
    assert (fully_fused_projection(behind, covar, torch.eye(4, dtype=K.dtype)[None], K[None], 64, 60)[0] == 0).all()


def test_fused_projection_equals_the_two_steps():
    """project_gaussians (the rasterizer's: no 3D covariance formed) gives the outputs and the
    gradients of quat_scale_to_covar_preci + fully_fused_projection, inside and far outside the
    field of view (where the Jacobian is clamped) and behind the camera."""
    means, quats, scales = _gaussians(300, seed=5)
    means[:40, 0] += 6.0  # beside the view: clamped Jacobian, radius 0
    means[40:50, 2] = -1.0  # behind
    w2c, K = _camera()
    g = torch.Generator().manual_seed(1)
    w_m, w_c, w_d = (torch.randn(*s, generator=g, dtype=torch.float64) for s in ((300, 2), (300, 3), (300,)))
    results = []
    for fused in (False, True):
        inputs = [t.clone().requires_grad_(True) for t in (means, quats, scales)]
        if fused:
            radii, means2d, depths, conics = project_gaussians(*inputs, w2c, K, 64, 60, eps2d=0.3)
        else:
            covar, _ = quat_scale_to_covar_preci(inputs[1], inputs[2], compute_preci=False)
            radii, means2d, depths, conics, _ = fully_fused_projection(inputs[0], covar, w2c[None], K[None], 64, 60,
                                                                      eps2d=0.3)
            radii, means2d, depths, conics = radii[0], means2d[0], depths[0], conics[0]
        ((means2d * w_m).sum() + (conics * w_c).sum() + (depths * w_d).sum()).backward()
        results.append((radii, means2d.detach(), depths.detach(), conics.detach(), *(t.grad for t in inputs)))
    assert torch.equal(results[0][0], results[1][0])
    assert (results[1][0][40:50] == 0).all() and (results[1][0][50:] > 0).any()
    for a, b in zip(results[0][1:], results[1][1:]):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_spherical_harmonics_are_orthonormal_and_degree_zero_is_the_dc_term():
    g = torch.Generator().manual_seed(1)
    # Fibonacci lattice: near-uniform directions, so a plain average integrates over the sphere.
    m = 20_000
    i = torch.arange(m, dtype=torch.float64) + 0.5
    zc = 1 - 2 * i / m
    phi = math.pi * (3 - math.sqrt(5)) * i
    dirs = torch.stack([(1 - zc ** 2).sqrt() * phi.cos(), (1 - zc ** 2).sqrt() * phi.sin(), zc], -1)
    bases = _sh_bases(25, dirs)
    gram = 4 * math.pi * bases.T @ bases / m
    assert torch.allclose(gram, torch.eye(25, dtype=torch.float64), atol=1e-3)
    # spherical_harmonics is the coefficients' combination of those bases
    coeffs = torch.randn(m, 25, 3, generator=g, dtype=torch.float64)
    assert torch.allclose(spherical_harmonics(4, 3.0 * dirs, coeffs), (bases[..., None] * coeffs).sum(1))
    coeffs = torch.randn(10, 16, 3, generator=g)
    dc = spherical_harmonics(0, torch.randn(10, 3, generator=g), coeffs)
    assert torch.allclose(dc, 0.28209479177387814 * coeffs[:, 0])
    with pytest.raises(ValueError, match="K >= 25"):
        spherical_harmonics(4, torch.randn(10, 3), coeffs)


def test_agrees_with_gsplats_own_torch_functions_when_present():
    try:
        impl = importlib.import_module("gsplat.cuda._torch_impl")
    except ImportError:
        pytest.skip("this gsplat has no gsplat.cuda._torch_impl (nothing of ours depends on it)")
    means, quats, scales = _gaussians(dtype=torch.float32)
    w2c, K = _camera(torch.float32)
    ours = quat_scale_to_covar_preci(quats, scales)
    theirs = impl._quat_scale_to_covar_preci(quats, scales)
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    ours = fully_fused_projection(means, ours[0], w2c[None], K[None], 64, 60, calc_compensations=True)
    theirs = impl._fully_fused_projection(means, theirs[0], w2c[None], K[None], 64, 60, calc_compensations=True)
    assert torch.equal(ours[0], theirs[0])
    for a, b in zip(ours[1:], theirs[1:]):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)
    coeffs = torch.randn(200, 25, 3)
    for degree in range(5):
        reference = impl._spherical_harmonics(degree, means, coeffs)
        assert torch.allclose(spherical_harmonics(degree, means, coeffs), reference,
                              atol=1e-5)


def test_cpu_rendering_needs_no_private_gsplat_module(monkeypatch):
    """gsplat's private pure-torch module may move or vanish between releases: the CPU rasterizer
    and the float64 reference render without it (and agree)."""
    import sys

    from dreamer.cameras import Camera
    from dreamer.splats.rasterizer import rasterize
    from dreamer.splats.reference import rasterize_reference

    monkeypatch.setitem(sys.modules, "gsplat.cuda._torch_impl", None)  # importing it now fails
    means, quats, scales = _gaussians(n=30, dtype=torch.float32)
    cam = Camera.from_fov(60.0, 24, 20)
    opac = torch.full((30,), 0.6)
    sh = torch.randn(30, 4, 3, generator=torch.Generator().manual_seed(2)) * 0.3
    out = rasterize(means, quats, scales * 3, opac, sh, cam, backend="torch")
    rgb, depth, alpha = rasterize_reference(means, quats, scales * 3, opac, sh, cam)
    assert float(alpha.max()) > 0.1
    assert torch.allclose(out.rgb.double(), rgb, atol=1e-4) and torch.allclose(out.alpha.double(), alpha, atol=1e-4)
