"""Readable reference implementations of the z-buffer render and the coverage clean-up.

:func:`dreamer.render.render_points` and :func:`dreamer.render.clean_coverage` are the fast paths
(frustum culling before any per-point work, one scatter per footprint size, pinholes filled from
their own neighbourhoods only); these are the straightforward versions they are tested against
(tests/test_render.py): every point and every pixel takes part in every step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dreamer.cameras import Camera, project_points
from dreamer.pointcloud import PointCloud
from dreamer.render import _EMPTY, _INDEX_BITS, HoleMasks, PointRender, dilate, erode

__all__ = ["render_points_reference", "clean_coverage_reference", "dilate_reference"]


def render_points_reference(
    points: PointCloud,
    camera: Camera,
    *,
    splat_scale: float = 1.5,
    max_splat_px: float = 32.0,
    near: float = 1e-4,
    background: float = 0.0,
) -> PointRender:
    """Render ``points`` into ``camera`` with a z-buffer. Nearer points win.

    A point covers the pixels whose centres lie within ``h = max(0.5, 0.5 * splat_scale * r_px)``
    of its projection (per axis), where ``r_px = radius * f / z`` is its footprint in this camera;
    ``h`` is capped at ``max_splat_px``. With ``splat_scale`` in [1, 2) a view re-rendered into its
    own camera covers exactly the pixels it came from; larger footprints (a camera moving closer)
    grow the splats so a near cloud has no pinholes.
    """
    if splat_scale <= 0:
        raise ValueError(f"splat_scale must be > 0, got {splat_scale}")
    H, W = camera.height, camera.width
    device = points.device
    cam = camera.to(device)
    image = torch.full((H, W, 3), float(background), device=device, dtype=points.rgb.dtype)
    depth = torch.zeros(H, W, device=device, dtype=points.xyz.dtype)
    index = torch.full((H, W), -1, device=device, dtype=torch.int64)
    if len(points) == 0:
        return PointRender(image, depth, torch.zeros(H, W, dtype=torch.bool, device=device), index)
    if len(points) >= 2**_INDEX_BITS:
        raise ValueError(f"render_points supports up to 2^31 points, got {len(points)}")

    uv, z = project_points(points.xyz, cam)
    f = math.sqrt(cam.fx * cam.fy)
    zc = z.clamp_min(near)
    half = (0.5 * splat_scale * points.radius * f / zc).clamp(0.5, max_splat_px)
    u, v = uv[:, 0], uv[:, 1]
    # Pixel i (centre i + 0.5) is covered when |i + 0.5 - u| <= half.
    u0 = torch.ceil(u - half - 0.5).clamp_min(0)
    u1 = torch.floor(u + half - 0.5).clamp_max(W - 1)
    v0 = torch.ceil(v - half - 0.5).clamp_min(0)
    v1 = torch.floor(v + half - 0.5).clamp_max(H - 1)
    keep = (z > near) & torch.isfinite(u) & torch.isfinite(v) & (u1 >= u0) & (v1 >= v0)
    idx = torch.nonzero(keep).squeeze(1)
    if idx.numel() == 0:
        return PointRender(image, depth, torch.zeros(H, W, dtype=torch.bool, device=device), index)
    u0, u1, v0, v1 = (t[idx].long() for t in (u0, u1, v0, v1))
    wu, wv = u1 - u0 + 1, v1 - v0 + 1
    side = torch.maximum(wu, wv)
    zbits = z[idx].float().contiguous().view(torch.int32).long()
    key = (zbits << _INDEX_BITS) | idx

    best = torch.full((H * W,), _EMPTY, device=device, dtype=torch.int64)
    # Group points by the side of their pixel box so each group expands to a dense [n, s*s] block.
    for s in torch.unique(side).tolist():
        g = torch.nonzero(side == s).squeeze(1)
        off = torch.arange(s, device=device)
        du = off.repeat(s)  # [s*s]
        dv = off.repeat_interleave(s)
        pu = u0[g, None] + du
        pv = v0[g, None] + dv
        ok = (du < wu[g, None]) & (dv < wv[g, None])
        pix = (pv * W + pu)[ok]
        k = key[g, None].expand(-1, s * s)[ok]
        best.scatter_reduce_(0, pix, k, reduce="amin")

    covered = best != _EMPTY
    winner = best[covered] & ((1 << _INDEX_BITS) - 1)
    flat_img = image.view(-1, 3)
    flat_img[covered] = points.rgb[winner]
    depth.view(-1)[covered] = z[winner]
    index.view(-1)[covered] = winner
    return PointRender(image, depth, covered.view(H, W), index)



def clean_coverage_reference(render: PointRender, *, close_px: int = 1,
                             grow_px: int = 2) -> tuple[PointRender, HoleMasks]:
    """Close pinholes of a render's coverage and grow its holes by a margin.

    Pinholes (gaps that a morphological closing of the coverage with a (2*close_px+1) square
    fills) take the colour and depth of their nearest neighbour in depth (the front surface wins,
    as in the z-buffer). The hole is what remains uncovered; the inpaint mask is the hole dilated
    by ``grow_px`` so the inpainter sees a margin around it.
    """
    if close_px < 0 or grow_px < 0:
        raise ValueError(f"close_px and grow_px must be >= 0, got {close_px}, {grow_px}")
    covered = render.covered
    closed = erode(dilate(covered, close_px), close_px) if close_px > 0 else covered.clone()
    closed |= covered
    pinholes = closed & ~covered
    image, depth = render.image.clone(), render.depth.clone()
    if pinholes.any():
        H, W = depth.shape
        big = torch.finfo(depth.dtype).max
        d = torch.where(covered, depth, torch.full_like(depth, big))
        # Search neighbours at growing radius until every pinhole found a covered one.
        todo = pinholes.clone()
        for r in range(1, close_px + 1):
            kk = 2 * r + 1
            padded = F.pad(d[None, None], (r, r, r, r), value=big)  # outside the image never wins
            patches = F.unfold(padded, kk)[0]  # [kk*kk, H*W]
            best, arg = patches.min(0)
            sel = todo.view(-1) & (best < big)
            if sel.any():
                dy = arg // kk - r
                dx = arg % kk - r
                ys = torch.arange(H, device=d.device).repeat_interleave(W) + dy
                xs = torch.arange(W, device=d.device).repeat(H) + dx
                src = (ys * W + xs)[sel]
                depth.view(-1)[sel] = render.depth.view(-1)[src]
                image.view(-1, 3)[sel] = render.image.view(-1, 3)[src]
                todo.view(-1)[sel] = False
            if not todo.any():
                break
        closed &= ~todo  # any pinhole left without a neighbour stays a hole
        pinholes &= ~todo
    hole = ~closed
    inpaint = dilate(hole, grow_px) if grow_px > 0 else hole.clone()
    fixed = PointRender(image, depth, closed, render.index)
    return fixed, HoleMasks(known=closed, hole=hole, inpaint=inpaint, pinholes=pinholes)


def dilate_reference(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Binary dilation of a bool [H,W] mask by a (2r+1)^2 square: one max-pool over the square."""
    if radius <= 0:
        return mask.clone()
    x = mask[None, None].float()
    return F.max_pool2d(x, 2 * radius + 1, stride=1, padding=radius)[0, 0] > 0.5
