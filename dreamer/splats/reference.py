"""A brute-force reference rasterizer: readable, slow, float64. Tests hold the fast paths to it.

Nothing here is shared with :mod:`dreamer.splats.rasterizer` except gsplat's SH evaluation: the
projection (EWA splatting with gsplat's conventions) is written out again, and compositing walks
every Gaussian front to back over every pixel with the per-pixel rules of gsplat's CUDA kernel,
no boxes, no tiles, no pair lists.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dreamer.cameras import Camera
from dreamer.splats.rasterizer import ALPHA_THRESHOLD, MAX_ALPHA, TRANSMITTANCE_MIN, sh_degree_from_bases

__all__ = ["rasterize_reference", "quat_to_rotmat"]


def quat_to_rotmat(q: Tensor) -> Tensor:
    """Rotation matrices [N,3,3] of quaternions [N,4] (w x y z, normalized here)."""
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


@torch.no_grad()
def rasterize_reference(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    sh: Tensor,
    camera: Camera,
    *,
    sh_degree: int | None = None,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
) -> tuple[Tensor, Tensor, Tensor]:
    """Render like :func:`dreamer.splats.rasterizer.rasterize`, in float64, one Gaussian at a time.

    Arguments as there. Returns (rgb [H,W,3], expected z-depth [H,W], alpha [H,W]), float64.
    """
    from dreamer.splats.projection import spherical_harmonics as _spherical_harmonics

    f8 = dict(dtype=torch.float64, device=means.device)
    means, quats, scales, opacities, sh = (t.to(**f8) for t in (means, quats, scales, opacities, sh))
    deg = sh_degree_from_bases(sh.shape[1]) if sh_degree is None else sh_degree
    H, W = camera.height, camera.width
    c2w = camera.c2w.to(**f8)
    Rwc, twc = c2w[:3, :3].T, -c2w[:3, :3].T @ c2w[:3, 3]  # world -> camera
    K = camera.K.to(**f8)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]

    # EWA projection: Sigma_cam = R Sigma R^T, cov2d = J Sigma_cam J^T + eps2d I.
    Rg = quat_to_rotmat(quats)
    M = Rg * scales[:, None, :]
    sigma3 = M @ M.transpose(1, 2)
    p = means @ Rwc.T + twc
    s_cam = Rwc @ sigma3 @ Rwc.T
    x, y, z = p.unbind(-1)
    # gsplat clamps the point used for the Jacobian to 1.3x the field of view.
    lim_xp = (W - cx) / fx + 0.3 * (0.5 * W / fx)
    lim_xn = cx / fx + 0.3 * (0.5 * W / fx)
    lim_yp = (H - cy) / fy + 0.3 * (0.5 * H / fy)
    lim_yn = cy / fy + 0.3 * (0.5 * H / fy)
    tx = z * torch.minimum(torch.maximum(x / z, -lim_xn), lim_xp)
    ty = z * torch.minimum(torch.maximum(y / z, -lim_yn), lim_yp)
    zero = torch.zeros_like(z)
    J = torch.stack([torch.stack([fx / z, zero, -fx * tx / z**2], -1),
                     torch.stack([zero, fy / z, -fy * ty / z**2], -1)], -2)
    cov2 = J @ s_cam @ J.transpose(1, 2) + eps2d * torch.eye(2, **f8)
    conic = torch.linalg.inv(cov2)
    u = fx * x / z + cx
    v = fy * y / z + cy
    colors = torch.clamp_min(_spherical_harmonics(deg, means - c2w[:3, 3], sh) + 0.5, 0.0)

    vv, uu = torch.meshgrid(torch.arange(H, **f8) + 0.5, torch.arange(W, **f8) + 0.5, indexing="ij")
    T = torch.ones(H, W, **f8)
    done = torch.zeros(H, W, dtype=torch.bool, device=means.device)
    rgb = torch.zeros(H, W, 3, **f8)
    dep = torch.zeros(H, W, **f8)
    order = torch.argsort(z, stable=True)
    for i in order.tolist():
        if not (near_plane < float(z[i]) < far_plane):
            continue
        dx, dy = u[i] - uu, v[i] - vv
        a, b, c = conic[i, 0, 0], conic[i, 0, 1], conic[i, 1, 1]
        sig = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        alpha = torch.clamp_max(opacities[i] * torch.exp(-sig), MAX_ALPHA)
        use = (sig >= 0) & (alpha >= ALPHA_THRESHOLD) & ~done
        t_next = T * (1.0 - alpha)
        stop = use & (t_next <= TRANSMITTANCE_MIN)
        done |= stop
        use &= ~stop
        wgt = torch.where(use, alpha * T, torch.zeros_like(T))
        rgb += wgt[..., None] * colors[i]
        dep += wgt * z[i]
        T = torch.where(use, t_next, T)
    alpha_img = 1.0 - T
    return rgb, dep / alpha_img.clamp_min(1e-10), alpha_img
