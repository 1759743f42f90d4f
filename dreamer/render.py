"""Lift pixels to points and render points back into any camera, with a real depth test.

Both are pure functions of tensors. Rendering is a z-buffered splat: every point covers the
pixels whose centres fall inside its projected footprint (a square of side ``radius * f / z``
pixels, times ``splat_scale``), and the nearest point wins each pixel. The winner is found
exactly with one ``scatter_reduce(amin)`` over 64-bit keys ``(depth bits << 31) | point index``:
positive float32 depths compare like their bit patterns, so the key orders by depth first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamer.cameras import Camera, project_points, unproject_depth
from dreamer.pointcloud import PointCloud

__all__ = ["PointRender", "lift", "render_points", "dilate", "erode", "clean_coverage", "HoleMasks"]

_INDEX_BITS = 31
_EMPTY = torch.iinfo(torch.int64).max


def _check_image(image: Tensor, camera: Camera, name: str = "image") -> None:
    if not isinstance(image, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [H,W,3], got {type(image).__name__}")
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"{name} must have shape [H,W,3], got {tuple(image.shape)}")
    if not image.is_floating_point():
        raise ValueError(f"{name} must be a float tensor in [0,1], got dtype {image.dtype}")
    camera.check_image(image, name)


def check_depth(depth: Tensor, camera: Camera | None = None, name: str = "depth", where: Tensor | None = None) -> None:
    """Raise ValueError unless ``depth`` is a float [H,W] map, finite and > 0 (where ``where``)."""
    if not isinstance(depth, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [H,W], got {type(depth).__name__}")
    if depth.ndim != 2:
        raise ValueError(f"{name} must have shape [H,W], got {tuple(depth.shape)}")
    if not depth.is_floating_point():
        raise ValueError(f"{name} must be a float tensor, got dtype {depth.dtype}")
    if camera is not None:
        camera.check_image(depth, name)
    d = depth if where is None else depth[where]
    bad = ~torch.isfinite(d)
    if bad.any():
        raise ValueError(f"{name} has {int(bad.sum())} non-finite values (NaN/inf); depth must be finite")
    nonpos = d <= 0
    if nonpos.any():
        raise ValueError(f"{name} has {int(nonpos.sum())} values <= 0 (min {float(d.min()):.4g}); z-depth must be > 0")


def lift(image: Tensor, depth: Tensor, camera: Camera, mask: Tensor | None = None) -> PointCloud:
    """Pixels -> points. ``image`` [H,W,3], z-depth [H,W], optional bool ``mask`` [H,W] of pixels to lift.

    Each point's radius is its pixel footprint in world units, z / f (f = sqrt(fx fy)).
    """
    _check_image(image, camera)
    if mask is not None:
        camera.check_image(mask, "mask")
        if mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor, got dtype {mask.dtype}")
    check_depth(depth, camera, where=mask)
    xyz = unproject_depth(depth, camera)
    f = math.sqrt(camera.fx * camera.fy)
    radius = depth / f
    if mask is None:
        return PointCloud(xyz.reshape(-1, 3), image.reshape(-1, 3).to(xyz), radius.reshape(-1).to(xyz))
    return PointCloud(xyz[mask], image[mask].to(xyz), radius[mask].to(xyz))


@dataclass
class PointRender:
    """A rendered view: ``image`` [H,W,3], z-depth [H,W] (0 where empty), ``covered`` bool [H,W],
    and ``index`` [H,W] int64 of the winning point (-1 where empty)."""

    image: Tensor
    depth: Tensor
    covered: Tensor
    index: Tensor


def render_points(
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


def dilate(mask: Tensor, radius: int) -> Tensor:
    """Binary dilation of a bool [H,W] mask by a (2r+1)^2 square."""
    if radius <= 0:
        return mask.clone()
    x = mask[None, None].float()
    return F.max_pool2d(x, 2 * radius + 1, stride=1, padding=radius)[0, 0] > 0.5


def erode(mask: Tensor, radius: int) -> Tensor:
    """Binary erosion of a bool [H,W] mask by a (2r+1)^2 square; outside the image counts as set."""
    return ~dilate(~mask, radius)


@dataclass
class HoleMasks:
    """Masks of one rendered view (all bool [H,W]).

    ``known``: pixels with geometry (covered, plus pinholes closed from their neighbours).
    ``hole``: pixels without geometry: the new content, lifted after inpainting.
    ``inpaint``: ``hole`` grown by a margin: what the inpainter is asked to (re)paint.
    ``pinholes``: small gaps closed from their neighbours (part of ``known``).
    """

    known: Tensor
    hole: Tensor
    inpaint: Tensor
    pinholes: Tensor


def clean_coverage(render: PointRender, *, close_px: int = 1, grow_px: int = 2) -> tuple[PointRender, HoleMasks]:
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
