"""The pure-torch pieces of splatting that the CPU rasterizer needs: covariances, projection, SH.

Our own code, with the signatures and conventions of gsplat's public CUDA wrappers
(``gsplat.quat_scale_to_covar_preci``, ``gsplat.fully_fused_projection``,
``gsplat.spherical_harmonics``) so that the CPU path and gsplat's CUDA path agree (pinhole camera,
EWA splatting with gsplat's 1.3x field-of-view clamp of the Jacobian, ``eps2d`` blur, radii of
3.33 standard deviations, real spherical harmonics up to degree 4 in gsplat's order). Nothing
here imports gsplat, whose private modules move between releases. Differentiable; any device.

Conventions: quaternions ``w x y z`` (normalized here), linear scales, ``viewmats`` are
world-to-camera [C,4,4], ``Ks`` pixels [C,3,3], pixel centres at +0.5.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["quat_to_rotmat", "quat_scale_to_covar_preci", "fully_fused_projection", "project_gaussians",
           "spherical_harmonics"]


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices [...,3,3] of quaternions [...,4] (``w x y z``, normalized here)."""
    q = quats / quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, -1).reshape(q.shape[:-1] + (3, 3))


def _upper_triangle(m: Tensor) -> Tensor:
    """[...,3,3] -> [...,6] (xx, xy, xz, yy, yz, zz), symmetrized."""
    sym = 0.5 * (m + m.transpose(-1, -2))
    return torch.stack([sym[..., 0, 0], sym[..., 0, 1], sym[..., 0, 2], sym[..., 1, 1], sym[..., 1, 2],
                        sym[..., 2, 2]], -1)


def quat_scale_to_covar_preci(quats: Tensor, scales: Tensor, compute_covar: bool = True,
                              compute_preci: bool = True, triu: bool = False) -> tuple[Tensor | None, Tensor | None]:
    """3D covariances ``R S S R^T`` and precisions ``R S^-1 S^-1 R^T`` [...,3,3] (or their upper
    triangles [...,6] with ``triu``) of Gaussians with rotations ``quats`` [...,4] and scales
    ``scales`` [...,3]. Either may be skipped (None)."""
    if quats.shape[-1:] != (4,) or scales.shape != quats.shape[:-1] + (3,):
        raise ValueError(f"quats must be [...,4] and scales [...,3] with the same leading shape, got "
                         f"{tuple(quats.shape)} and {tuple(scales.shape)}")
    R = quat_to_rotmat(quats)
    covars = precis = None
    if compute_covar:
        M = R * scales[..., None, :]
        covars = M @ M.transpose(-1, -2)
        covars = _upper_triangle(covars) if triu else covars
    if compute_preci:
        P = R / scales[..., None, :]
        precis = P @ P.transpose(-1, -2)
        precis = _upper_triangle(precis) if triu else precis
    return covars, precis


def fully_fused_projection(means: Tensor, covars: Tensor, viewmats: Tensor, Ks: Tensor, width: int, height: int,
                           eps2d: float = 0.3, near_plane: float = 0.01, far_plane: float = 1e10,
                           calc_compensations: bool = False
                           ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
    """Project Gaussians ``means`` [N,3] / ``covars`` [N,3,3] into ``C`` pinhole cameras.

    Returns ``(radii [C,N,2] int32, means2d [C,N,2], depths [C,N], conics [C,N,3], compensations
    [C,N] or None)``: pixel centres of the means, camera z-depths, the inverse of the 2D
    covariance ``J Sigma_cam J^T + eps2d I`` as (a, b, c) of ``[[a, b], [b, c]]``, and the radii
    (3.33 standard deviations along x and y, rounded up; 0 for Gaussians outside (near, far) in
    depth or whose box misses the image). ``J`` is evaluated at the mean clamped to 1.3 times
    the field of view, so Gaussians far outside the image do not blow up. ``compensations``:
    ``sqrt(det(cov2d) / det(cov2d + eps2d I))`` (antialiased opacity), when asked for.
    """
    R = viewmats[:, :3, :3]  # [C,3,3]
    t = viewmats[:, :3, 3]  # [C,3]
    means_c = torch.einsum("cij,nj->cni", R, means) + t[:, None, :]  # [C,N,3]
    covars_c = torch.einsum("cij,njk,clk->cnil", R, covars, R)  # R Sigma R^T, [C,N,3,3]

    x, y, z = means_c.unbind(-1)
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]  # [C,1]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    half_x, half_y = 0.5 * width / fx, 0.5 * height / fy  # tangents of half the field of view
    x_lo, x_hi = -(cx / fx + 0.3 * half_x), (width - cx) / fx + 0.3 * half_x
    y_lo, y_hi = -(cy / fy + 0.3 * half_y), (height - cy) / fy + 0.3 * half_y
    tx = z * torch.clamp(x / z, min=x_lo, max=x_hi)
    ty = z * torch.clamp(y / z, min=y_lo, max=y_hi)
    zero = torch.zeros_like(z)
    J = torch.stack([fx / z, zero, -fx * tx / (z * z), zero, fy / z, -fy * ty / (z * z)], -1)
    J = J.reshape(z.shape + (2, 3))  # [C,N,2,3]
    cov2d = J @ covars_c @ J.transpose(-1, -2)  # [C,N,2,2]
    means2d = torch.einsum("cij,cnj->cni", Ks[:, :2, :3], means_c) / z[..., None]

    det_blurless = cov2d[..., 0, 0] * cov2d[..., 1, 1] - cov2d[..., 0, 1] * cov2d[..., 1, 0]
    cov2d = cov2d + eps2d * torch.eye(2, dtype=means.dtype, device=means.device)
    det = (cov2d[..., 0, 0] * cov2d[..., 1, 1] - cov2d[..., 0, 1] * cov2d[..., 1, 0]).clamp(min=1e-10)
    compensations = torch.sqrt(torch.clamp(det_blurless / det, min=0.0)) if calc_compensations else None
    conics = torch.stack([cov2d[..., 1, 1] / det, -0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0]) / det,
                          cov2d[..., 0, 0] / det], -1)

    radius = torch.ceil(3.33 * torch.sqrt(torch.stack([cov2d[..., 0, 0], cov2d[..., 1, 1]], -1)))
    keep = (det > 0) & (z > near_plane) & (z < far_plane)
    keep &= ((means2d[..., 0] + radius[..., 0] > 0) & (means2d[..., 0] - radius[..., 0] < width)
             & (means2d[..., 1] + radius[..., 1] > 0) & (means2d[..., 1] - radius[..., 1] < height))
    radius = torch.where(keep[..., None], radius, torch.zeros_like(radius))
    return radius.int(), means2d, z, conics, compensations


def project_gaussians(means: Tensor, quats: Tensor, scales: Tensor, viewmat: Tensor, K: Tensor, width: int,
                      height: int, eps2d: float = 0.3, near_plane: float = 0.01,
                      far_plane: float = 1e10) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`quat_scale_to_covar_preci` then :func:`fully_fused_projection` for one camera, in
    fewer and cheaper operations (the CPU rasterizer's projection).

    The 2D covariance is ``T T^T`` with ``T = J R_view R S`` ([2,3] per Gaussian: the Jacobian's
    two rows applied to the scaled rotation), so the 3D covariance is never formed.
    ``viewmat`` [4,4] world-to-camera, ``K`` [3,3]. Returns ``(radii [N,2] int32, means2d [N,2],
    depths [N], conics [N,3])`` as :func:`fully_fused_projection` for that one camera.
    """
    R_view, t = viewmat[:3, :3], viewmat[:3, 3]
    means_c = means @ R_view.T + t
    x, y, z = means_c.unbind(-1)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    half_x, half_y = 0.5 * width / fx, 0.5 * height / fy
    x_lo, x_hi = -(cx / fx + 0.3 * half_x), (width - cx) / fx + 0.3 * half_x
    y_lo, y_hi = -(cy / fy + 0.3 * half_y), (height - cy) / fy + 0.3 * half_y
    inv_z = 1.0 / z
    # J = [[fx/z, 0, -fx tx/z^2], [0, fy/z, -fy ty/z^2]] with tx / z, ty / z clamped to 1.3x the field of view.
    jx = fx * inv_z
    jy = fy * inv_z
    jxz = -jx * torch.clamp(x * inv_z, min=x_lo, max=x_hi)
    jyz = -jy * torch.clamp(y * inv_z, min=y_lo, max=y_hi)
    M = torch.matmul(R_view, quat_to_rotmat(quats)) * scales[:, None, :]  # [N,3,3]: rows x, y, z of the camera
    T0 = jx[:, None] * M[:, 0] + jxz[:, None] * M[:, 2]
    T1 = jy[:, None] * M[:, 1] + jyz[:, None] * M[:, 2]
    c00 = (T0 * T0).sum(-1) + eps2d
    c11 = (T1 * T1).sum(-1) + eps2d
    c01 = (T0 * T1).sum(-1)
    det = (c00 * c11 - c01 * c01).clamp(min=1e-10)
    conics = torch.stack([c11 / det, -c01 / det, c00 / det], -1)
    means2d = torch.stack([fx * x * inv_z + cx, fy * y * inv_z + cy], -1)
    with torch.no_grad():
        radius = torch.ceil(3.33 * torch.sqrt(torch.stack([c00, c11], -1)))
        keep = (det > 0) & (z > near_plane) & (z < far_plane)
        keep &= ((means2d[:, 0] + radius[:, 0] > 0) & (means2d[:, 0] - radius[:, 0] < width)
                 & (means2d[:, 1] + radius[:, 1] > 0) & (means2d[:, 1] - radius[:, 1] < height))
        radii = torch.where(keep[:, None], radius, torch.zeros_like(radius)).int()
    return radii, means2d, z, conics


def _sh_bases(num_bases: int, dirs: Tensor) -> Tensor:
    """Real spherical harmonics [...,num_bases] (1, 4, 9, 16 or 25) at unit directions [...,3],
    in gsplat's (and 3DGS's) order, written as polynomials in x, y, z (Sloan's recurrences in
    the azimuthal terms C_m = Re (x + iy)^m, S_m = Im (x + iy)^m)."""
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, 0.28209479177387814)]
    if num_bases > 1:
        a = 0.48860251190291992
        out += [-a * y, a * z, -a * x]
    if num_bases > 4:
        z2 = z * z
        c1, s1 = x * x - y * y, 2 * x * y
        b = -1.0925484305920792 * z
        out += [0.54627421529603959 * s1, b * y, 0.94617469575756008 * z2 - 0.31539156525252005, b * x,
                0.54627421529603959 * c1]
    if num_bases > 9:
        c2, s2 = x * c1 - y * s1, x * s1 + y * c1
        p3 = z * (1.8658816629505769 * z2 - 1.1195289977703462)
        c = -2.2852289973223288 * z2 + 0.45704579946446577
        b = 1.4453057213202771 * z
        a = -0.59004358992664352
        out += [a * s2, b * s1, c * y, p3, c * x, b * c1, a * c2]
    if num_bases > 16:
        c3, s3 = x * c2 - y * s2, x * s2 + y * c2
        p2 = 0.94617469575756008 * z2 - 0.31539156525252005
        d = z * (-4.6833258049010249 * z2 + 2.0071396306718676)
        c = 3.3116114351514601 * z2 - 0.47308734787878004
        b = -1.7701307697799304 * z
        a = 0.62583573544917614
        p4 = 1.9843134832984430 * z * p3 - 1.0062305898749053 * p2
        out += [a * s3, b * s2, c * s1, d * y, p4, d * x, c * c1, b * c2, a * c3]
    if len(out) != num_bases:
        raise ValueError(f"spherical harmonics of degree 0..4 have 1, 4, 9, 16 or 25 bases, asked for {num_bases}")
    return torch.stack(out, -1)


def spherical_harmonics(degrees_to_use: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """Colours [...,3] of SH coefficients ``coeffs`` [...,K,3] seen from directions ``dirs``
    [...,3] (any length; normalized here), using the bases of degree <= ``degrees_to_use``
    (``(degrees_to_use + 1)^2 <= K``; higher coefficients are ignored). No +0.5 offset, no clamp."""
    num_bases = (int(degrees_to_use) + 1) ** 2
    if coeffs.shape[-1:] != (3,) or coeffs.shape[-2] < num_bases or coeffs.shape[:-2] != dirs.shape[:-1]:
        raise ValueError(f"coeffs must be [...,K,3] with K >= {num_bases} for degree {degrees_to_use} and the "
                         f"leading shape of dirs {tuple(dirs.shape)}, got {tuple(coeffs.shape)}")
    unit = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    bases = _sh_bases(num_bases, unit)
    return (bases[..., None] * coeffs[..., :num_bases, :]).sum(-2)
