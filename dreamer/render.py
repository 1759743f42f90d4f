"""Lift pixels to points and render points back into any camera, with a real depth test.

Both are pure functions of tensors. Rendering is a z-buffered splat: every point covers the
pixels whose centres fall inside its projected footprint (a square of side ``radius * f / z``
pixels, times ``splat_scale``), and the nearest point wins each pixel (the lower index on equal
depths). The winner is found exactly with ``scatter_reduce(amin)`` over 64-bit keys
``(depth bits << 31) | rank`` (rank: the point's place, in index order, among those that reach
the image): positive float32 depths compare like their bit patterns, so the key orders by depth
first. Only points that pass a conservative frustum test are projected and splatted.
Readable references of the render and the coverage clean-up: :mod:`dreamer.render_reference`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from dreamer.checks import check_image, check_map, check_positive
from dreamer.cameras import Camera, camera_points_to_pixels, camera_rays, unproject_depth, world_to_camera_points
from dreamer.pointcloud import BOX_BLOCK, PointCloud, block_bounds, block_points

__all__ = ["PointRender", "lift", "render_points", "dilate", "erode", "clean_coverage", "HoleMasks"]

_INDEX_BITS = 31
_EMPTY = torch.iinfo(torch.int64).max


def _check_image(image: Tensor, camera: Camera, name: str = "image") -> None:
    """Raise unless ``image`` is a float [H,W,3] image of ``camera``'s size."""
    check_image(image, name)
    camera.check_image(image, name)


def check_depth(depth: Tensor, camera: Camera | None = None, name: str = "depth", where: Tensor | None = None) -> None:
    """Raise unless ``depth`` is a float [H,W] map (of ``camera``'s size), finite and > 0 (where ``where``)."""
    check_map(depth, name)
    if camera is not None:
        camera.check_image(depth, name)
    check_positive(depth, name, where=where)


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
    f = math.sqrt(camera.fx * camera.fy)
    if mask is None:
        xyz = unproject_depth(depth, camera)
        radius = depth / f
        return PointCloud(xyz.reshape(-1, 3), image.reshape(-1, 3).to(xyz), radius.reshape(-1).to(xyz))
    # unproject_depth on the masked pixels only (elementwise: the same values as on the whole map)
    origin, dirs = camera_rays(camera)
    d = depth[mask]
    xyz = origin + d[:, None].to(dirs) * dirs[mask]
    return PointCloud(xyz, image[mask].to(xyz), (d / f).to(xyz))


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

    Cost: one pass over all points (a rotation and a conservative frustum test); everything else
    runs on the points that can reach the image. Same result as
    :func:`dreamer.render_reference.render_points_reference`.
    """
    if splat_scale <= 0:
        raise ValueError(f"splat_scale must be > 0, got {splat_scale}")
    H, W = camera.height, camera.width
    device = points.device
    cam = camera.to(device)
    image = torch.full((H, W, 3), float(background), device=device, dtype=points.rgb.dtype)
    depth = torch.zeros(H, W, device=device, dtype=points.xyz.dtype)
    index = torch.full((H, W), -1, device=device, dtype=torch.int64)
    if len(points) >= 2**_INDEX_BITS:
        raise ValueError(f"render_points supports up to 2^31 points, got {len(points)}")

    idx, p = _frustum_points(points.xyz, cam, near, max_splat_px, points.block_bounds)
    if idx.numel() == 0:
        return PointRender(image, depth, torch.zeros(H, W, dtype=torch.bool, device=device), index)
    uv, z = camera_points_to_pixels(p, cam)
    f = math.sqrt(cam.fx * cam.fy)
    half = (0.5 * splat_scale * points.radius.index_select(0, idx) * f / z.clamp_min(near)).clamp(0.5, max_splat_px)
    u, v = uv[:, 0], uv[:, 1]
    # Pixel i (centre i + 0.5) is covered when |i + 0.5 - u| <= half.
    u0 = torch.ceil(u - half - 0.5).clamp_min(0)
    u1 = torch.floor(u + half - 0.5).clamp_max(W - 1)
    v0 = torch.ceil(v - half - 0.5).clamp_min(0)
    v1 = torch.floor(v + half - 0.5).clamp_max(H - 1)
    keep = (z > near) & torch.isfinite(u) & torch.isfinite(v) & (u1 >= u0) & (v1 >= v0)
    sub = torch.nonzero(keep).squeeze(1)  # positions in ``idx``, ascending like the point indices
    if sub.numel() == 0:
        return PointRender(image, depth, torch.zeros(H, W, dtype=torch.bool, device=device), index)
    u0, u1, v0, v1 = (t.index_select(0, sub).long() for t in (u0, u1, v0, v1))
    z = z.index_select(0, sub)
    # Keys carry the position among the kept points; ``idx[sub]`` is ascending, so ties between
    # equal depths go to the lower point index, as with the point index itself.
    key = (z.float().contiguous().view(torch.int32).long() << _INDEX_BITS) | torch.arange(len(sub), device=device)
    best = _zbuffer_min(key, u0, u1, v0, v1, H, W)

    # Every pixel reads its winner (an empty one reads point 0 and is masked out): gathers and
    # selects instead of a scatter into the covered pixels.
    covered = best != _EMPTY
    winner = torch.where(covered, best & ((1 << _INDEX_BITS) - 1), 0)
    point = idx.index_select(0, sub.index_select(0, winner))
    image = torch.where(covered[:, None], points.rgb.index_select(0, point), image.view(-1, 3)).view(H, W, 3)
    depth = torch.where(covered, z.index_select(0, winner).to(depth.dtype), depth.view(-1)).view(H, W)
    index = torch.where(covered, point, index.view(-1)).view(H, W)
    return PointRender(image, depth, covered.view(H, W), index)


# Points go through the camera transform and the frustum test in blocks of this many on the
# CPU: the temporaries stay small (cache-sized, reused by the allocator instead of fresh pages).
_CPU_BLOCK = 1 << 16


def _frustum_points(xyz: Tensor, camera: Camera, near: float, max_splat_px: float,
                    bounds: Callable[[int], tuple[Tensor, Tensor]] | None = None) -> tuple[Tensor, Tensor]:
    """Indices (ascending) of the points that pass :func:`_in_frustum`, and their camera-frame
    coordinates [n,3]. On the CPU, blocks of :data:`BOX_BLOCK` points whose bounding box lies
    wholly outside the frustum are left out before any point of theirs is touched (``bounds``:
    ``bounds(block)`` gives those boxes, :func:`block_bounds` of ``xyz``, when the caller keeps
    them, as :meth:`PointCloud.block_bounds`)."""
    if xyz.is_cuda or len(xyz) <= BOX_BLOCK:
        cand = None
        n = len(xyz)
    else:
        lo, hi = block_bounds(xyz, BOX_BLOCK) if bounds is None else bounds(BOX_BLOCK)
        reach = torch.nonzero(_boxes_may_reach(lo, hi, camera, near, max_splat_px)).squeeze(1)
        cand = block_points(reach, BOX_BLOCK, len(xyz))
        n = len(cand)
    block = n if xyz.is_cuda else _CPU_BLOCK
    idx, pts = [], []
    for start in range(0, n, block):
        at = None if cand is None else cand[start : start + block]
        p = world_to_camera_points(xyz[start : start + block] if at is None else xyz.index_select(0, at), camera)
        i = torch.nonzero(_in_frustum(p, camera, near, max_splat_px)).squeeze(1)
        idx.append(i + start if at is None else at.index_select(0, i))
        pts.append(p.index_select(0, i))
    if not idx:
        return torch.zeros(0, dtype=torch.long, device=xyz.device), xyz.new_zeros(0, 3)
    return torch.cat(idx), torch.cat(pts)


def _boxes_may_reach(lo: Tensor, hi: Tensor, camera: Camera, near: float, max_splat_px: float) -> Tensor:
    """bool [B]: whether any point inside each box ``lo``..``hi`` [B,3] can pass :func:`_in_frustum`.

    The test region is an intersection of half-spaces in the camera frame (z > near and the
    four sides x > a z, ...). A box is out when its 8 corners all lie outside one of them, by
    a margin far above the rounding of the points' own transform (corners in float64).
    """
    m = max_splat_px + 1.0
    corners = torch.stack([torch.where(torch.tensor(bits, dtype=torch.bool, device=lo.device), hi, lo)
                           for bits in _CORNER_BITS], 1).double()  # [B, 8, 3]
    w2c = camera.w2c.to(device=lo.device, dtype=torch.float64)
    p = corners @ w2c[:3, :3].T + w2c[:3, 3]
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    sides = torch.stack([
        z - near,
        x - (-m - camera.cx) / camera.fx * z,
        (camera.width + m - camera.cx) / camera.fx * z - x,
        y - (-m - camera.cy) / camera.fy * z,
        (camera.height + m - camera.cy) / camera.fy * z - y,
    ], 0)  # [5, B, 8]: > 0 inside each half-space
    slack = 1e-4 * (1.0 + p.abs().amax(dim=(1, 2)) + float(w2c[:3, 3].abs().max()))
    scale = 1.0 + max(abs(m + camera.cx) / camera.fx, abs(camera.width + m - camera.cx) / camera.fx,
                      abs(m + camera.cy) / camera.fy, abs(camera.height + m - camera.cy) / camera.fy)
    outside = (sides < -(slack * scale)[None, :, None]).all(dim=2)  # [5, B]: every corner beyond one side
    return ~outside.any(0)


_CORNER_BITS = [(i & 1 != 0, i & 2 != 0, i & 4 != 0) for i in range(8)]


def _in_frustum(p: Tensor, camera: Camera, near: float, max_splat_px: float) -> Tensor:
    """bool [N]: camera-frame points in front of ``near`` whose projection lies within
    ``max_splat_px`` (+ 1 pixel of slack for rounding) of the image: the only ones that can
    cover a pixel. Conservative; the exact footprint test follows on the survivors."""
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    m = max_splat_px + 1.0
    ok = z > near
    t = x / z  # normalised coordinates (z <= near is already out); one buffer for both axes
    ok &= t > (-m - camera.cx) / camera.fx
    ok &= t < (camera.width + m - camera.cx) / camera.fx
    torch.div(y, z, out=t)
    ok &= t > (-m - camera.cy) / camera.fy
    ok &= t < (camera.height + m - camera.cy) / camera.fy
    return ok


# Boxes up to this side are splatted offset by offset; larger ones as one expanded block.
_SMALL_SIDE = 3
# Per-point cost of a group of its own, in scatters (a selection and four gathers): small boxes of
# several sides are splatted as one group when that costs no more.
_GROUP_COST = 6


def _zbuffer_min(key: Tensor, u0: Tensor, u1: Tensor, v0: Tensor, v1: Tensor, H: int, W: int) -> Tensor:
    """int64 [H*W]: the smallest ``key`` among the boxes ``[u0, u1] x [v0, v1]`` covering each
    pixel (``_EMPTY`` where none does).

    Points are grouped by the side ``s`` of their box (small sides together when that is
    cheaper). Small boxes are splatted with one scatter per offset; larger ones expand to a dense
    [n, s*s] block. Either way a box narrower than ``s`` repeats its last column/row, which
    ``amin`` ignores.
    """
    device = key.device
    wu, wv = u1 - u0 + 1, v1 - v0 + 1
    side = torch.maximum(wu, wv)
    base = v0 * W + u0
    best = torch.full((H * W,), _EMPTY, device=device, dtype=torch.int64)
    counts = torch.bincount(side)
    sizes = torch.nonzero(counts).squeeze(1).tolist()
    groups = [(s, None) for s in sizes]  # (side, its largest box side)
    small = [s for s in sizes if s <= _SMALL_SIDE]
    if len(small) > 1:
        # Small boxes of several sides as one group of the largest (a narrower box repeats its
        # last row and column): more scatters, one grouping pass less.
        top, n = small[-1], {s: int(counts[s]) for s in small}
        if sum(n.values()) * top * top <= sum(n[s] * (s * s + _GROUP_COST) for s in small):
            groups = [(top, top)] + [(s, None) for s in sizes if s > top]
    for s, upto in groups:
        g = None if len(groups) == 1 else torch.nonzero(side == s if upto is None else side <= upto).squeeze(1)
        k = key if g is None else key.index_select(0, g)
        b = base if g is None else base.index_select(0, g)
        if s == 1:
            best.scatter_reduce_(0, b, k, reduce="amin")
            continue
        gu = wu if g is None else wu.index_select(0, g)
        gv = wv if g is None else wv.index_select(0, g)
        if s <= _SMALL_SIDE:
            # One scatter per offset of the box, straight from the keys (no [n, s*s] copies).
            cols = [(gu - 1).clamp_(max=j) if j else None for j in range(s)]
            for i in range(s):
                row = b if i == 0 else b + (gv - 1).clamp(max=i) * W
                for col in cols:
                    best.scatter_reduce_(0, row if col is None else row + col, k, reduce="amin")
            continue
        off = torch.arange(s, device=device)
        du = torch.minimum(off[None, :], gu[:, None] - 1)  # [n, s]
        dv = torch.minimum(off[None, :], gv[:, None] - 1) * W
        pix = (b[:, None, None] + dv[:, :, None] + du[:, None, :]).reshape(-1)  # [n * s * s]
        best.scatter_reduce_(0, pix, k[:, None].expand(-1, s * s).reshape(-1), reduce="amin")
    return best


def dilate(mask: Tensor, radius: int) -> Tensor:
    """Binary dilation of a bool [H,W] mask by a (2r+1)^2 square.

    The square is separable: a dilation along the rows, then along the columns, each an OR of
    shifted views whose window doubles per step (log2(2r+1) ORs per axis, on bools).
    """
    if radius <= 0:
        return mask.clone()
    return _dilate_axis(_dilate_axis(mask.bool(), radius, 1), radius, 0)


def _dilate_axis(mask: Tensor, radius: int, dim: int) -> Tensor:
    """out[i] = OR of mask[i - radius .. i + radius] along ``dim`` (outside the image: False)."""
    pad_shape = list(mask.shape)
    pad_shape[dim] = radius
    pad = torch.zeros(pad_shape, dtype=torch.bool, device=mask.device)
    acc = torch.cat([pad, mask, pad], dim)
    width, window = 1, 2 * radius + 1  # acc[i] is the OR of ``width`` consecutive padded values
    while width < window:
        step = min(width, window - width)
        n = acc.shape[dim] - step
        acc = acc.narrow(dim, 0, n) | acc.narrow(dim, step, n)
        width += step
    return acc


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
    pin = torch.nonzero(pinholes.view(-1)).squeeze(1)
    if pin.numel():
        src, found = _front_neighbour(render.depth, covered, pin, close_px)
        depth.view(-1)[pin[found]] = render.depth.view(-1)[src[found]]
        image.view(-1, 3)[pin[found]] = render.image.view(-1, 3)[src[found]]
        lost = pin[~found]  # any pinhole left without a neighbour stays a hole
        closed.view(-1)[lost] = False
        pinholes.view(-1)[lost] = False
    hole = ~closed
    inpaint = dilate(hole, grow_px) if grow_px > 0 else hole.clone()
    fixed = PointRender(image, depth, closed, render.index)
    return fixed, HoleMasks(known=closed, hole=hole, inpaint=inpaint, pinholes=pinholes)


def _front_neighbour(depth: Tensor, covered: Tensor, pixels: Tensor, max_radius: int) -> tuple[Tensor, Tensor]:
    """For flat ``pixels`` [P]: the flat index of the covered pixel of least depth in the
    (2r+1)^2 square around each, for the smallest r <= ``max_radius`` that has one, and whether
    one was found (bool [P]). Ties go to the first pixel in row-major order of the square."""
    H, W = depth.shape
    flat_depth, flat_cov = depth.reshape(-1), covered.reshape(-1)
    ys, xs = pixels // W, pixels % W
    src = torch.zeros_like(pixels)
    found = torch.zeros(len(pixels), dtype=torch.bool, device=pixels.device)
    big = torch.finfo(depth.dtype).max
    for r in range(1, max_radius + 1):
        off = torch.arange(-r, r + 1, device=pixels.device)
        ny = (ys[:, None] + off[None, :])[:, :, None].expand(-1, -1, 2 * r + 1)  # [P, kk, kk]
        nx = (xs[:, None] + off[None, :])[:, None, :].expand(-1, 2 * r + 1, -1)
        inside = (ny >= 0) & (ny < H) & (nx >= 0) & (nx < W)
        nb = (ny.clamp(0, H - 1) * W + nx.clamp(0, W - 1)).reshape(len(pixels), -1)
        d = torch.where(inside.reshape(len(pixels), -1) & flat_cov[nb], flat_depth[nb], big)
        best, arg = d.min(1)
        new = ~found & (best < big)
        src = torch.where(new, nb.gather(1, arg[:, None]).squeeze(1), src)
        found |= new
        if bool(found.all()):
            break
    return src, found
