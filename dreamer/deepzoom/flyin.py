"""The fly-in: a dolly from the zoomed view towards the zoom point, its cameras and videos."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamer.cameras import Camera
from dreamer.checks import check_int
from dreamer.deepzoom.levels import LocalFrame
from dreamer.deepzoom.lifting import render_lod_points
from dreamer.pointcloud import PointCloud
from dreamer.render import PointRender, clean_coverage
from dreamer.splats.lod import LevelsOfDetail

__all__ = ["fly_in_cameras", "dolly_cameras", "fly_in_zooms", "fly_in_near_plane", "NearPlane", "SplatsOverPoints",
           "render_fly_in_points", "render_points_video", "fill_gaps"]


def fly_in_zooms(frames: int, zoom: float) -> list[float]:
    """The magnification of the zoom point in each frame of :func:`fly_in_cameras`:
    ``zoom ** (j / (frames - 1))``."""
    check_int(frames, "frames", min=2)
    return [float(zoom) ** (j / (frames - 1)) for j in range(frames)]


def fly_in_cameras(start: Camera, target: Tensor | Sequence[float], *, frames: int, zoom: float,
                   frame: LocalFrame | None = None, end_K: Tensor | None = None,
                   recenter_zoom: float = 2.0) -> list[Camera]:
    """A dolly of ``frames`` cameras from ``start`` towards the world point ``target`` [3].

    Every camera keeps ``start``'s rotation; its centre moves along the line from ``start``'s
    centre to ``target`` (a real translation: nearer things grow faster, parallax). The distance
    to the target shrinks geometrically, from ``d`` to ``d / zoom``, so the magnification at the
    target grows at a constant rate per frame (:func:`fly_in_zooms`) and the last frame magnifies
    it ``zoom`` times (use ``p^(N-1)``: the deepest level's magnification). The path never
    reaches the target (no near-plane crossing at the end).

    With ``end_K`` [3,3] (the level cameras' intrinsics: the same focal length, the principal
    point that puts the zoom point in the middle of the image) the intrinsics move from
    ``start``'s to ``end_K`` while the magnification grows from 1 to ``recenter_zoom`` (a
    smoothstep in log zoom), then stay: the fly-in starts at the view itself (every pixel of it
    seen) and brings the zoom point to the image centre on the way in.

    The centres are computed in float64. With ``frame`` the cameras are expressed in that local
    frame (pass the zoom point's frame: a camera millimetres from the target then has a centre
    of a few millimetres, exact to ~1e-10 m, where world coordinates would round it to ~1e-7 m).
    """
    check_int(frames, "frames", min=2)
    if not (isinstance(zoom, (int, float)) and math.isfinite(zoom) and zoom >= 1):
        raise ValueError(f"zoom must be a number >= 1, got {zoom!r}")
    return dolly_cameras(start, target, fly_in_zooms(frames, zoom), frame=frame, end_K=end_K,
                         recenter_zoom=recenter_zoom)


def dolly_cameras(start: Camera, target: Tensor | Sequence[float], zooms: Sequence[float], *,
                  frame: LocalFrame | None = None, end_K: Tensor | None = None,
                  recenter_zoom: float = 2.0) -> list[Camera]:
    """The cameras of the dolly of :func:`fly_in_cameras` (same arguments) at which the target
    is magnified ``zooms`` times (each >= 1): the camera whose distance to ``target`` is the
    start's divided by the zoom, its intrinsics part of the way to ``end_K`` as there. A fly-in
    frame of magnification ``s`` is ``dolly_cameras(..., [s])[0]``."""
    if not isinstance(start, Camera):
        raise TypeError(f"start must be a dreamer.Camera, got {type(start).__name__}")
    zooms = [float(z) for z in zooms]
    if not all(math.isfinite(z) and z >= 1 for z in zooms):
        raise ValueError(f"zooms must be numbers >= 1 (magnifications of the target), got {zooms}")
    if not (isinstance(recenter_zoom, (int, float)) and recenter_zoom > 1):
        raise ValueError(f"recenter_zoom must be a number > 1, got {recenter_zoom!r}")
    target = torch.as_tensor(target, dtype=torch.float64).detach().cpu().flatten()
    if target.numel() != 3 or not torch.isfinite(target).all():
        raise ValueError(f"target must be a finite point [3], got {target.tolist()}")
    K0 = start.K.detach().cpu().double()
    K1 = K0 if end_K is None else torch.as_tensor(end_K).detach().cpu().double()
    if K1.shape != (3, 3):
        raise ValueError(f"end_K must be [3,3], got {tuple(K1.shape)}")
    c2w0 = start.c2w.detach().cpu().double()
    offset = target - c2w0[:3, 3]
    d = float(offset.norm())
    if d < 1e-9:
        raise ValueError("the target coincides with the camera centre")
    if float(offset @ c2w0[:3, 2]) <= 0:
        raise ValueError("the target lies behind the start camera")
    anchor = target - (frame.origin if frame is not None else torch.zeros(3, dtype=torch.float64))
    out = []
    for s in zooms:
        c2w = c2w0.clone()
        c2w[:3, 3] = anchor - offset / d * (d / s)
        t = min(max(math.log(s) / math.log(recenter_zoom), 0.0), 1.0)
        t = t * t * (3.0 - 2.0 * t)
        K = K0 + t * (K1 - K0)
        out.append(Camera(K.float().to(start.device), c2w.float().to(start.device), start.width, start.height))
    return out


def fly_in_near_plane(cameras: Sequence[Camera], target: Tensor, default: float = 0.01, *,
                      fraction: float = 0.05) -> float:
    """A near plane for rendering a fly-in: ``default``, or ``fraction`` of the last camera's
    z-depth to ``target`` [3] (in the cameras' frame) when that is smaller, so the zoom point is
    never clipped as the camera arrives (a deep zoom ends far nearer than a scene's usual near
    plane)."""
    if not cameras:
        raise ValueError("fly_in_near_plane needs at least one camera")
    last = cameras[-1]
    c2w = last.c2w.detach().cpu().double()
    t = torch.as_tensor(target, dtype=torch.float64).detach().cpu().flatten()
    z = float((t - c2w[:3, 3]) @ c2w[:3, 2])
    if not z > 0:
        raise ValueError(f"the target is not in front of the last camera (z-depth {z})")
    return min(float(default), fraction * z)


class NearPlane:
    """Gaussians rendered with another near plane: ``render(camera, **kw)`` passes ``near_plane``
    (anything :func:`dreamer.splats.render_video` takes, as it only calls ``render``)."""

    def __init__(self, gaussians, near_plane: float):
        if not (isinstance(near_plane, (int, float)) and near_plane > 0):
            raise ValueError(f"near_plane must be > 0, got {near_plane!r}")
        self.gaussians, self.near_plane = gaussians, float(near_plane)

    def render(self, camera: Camera, **kwargs):
        kwargs.setdefault("near_plane", self.near_plane)
        return self.gaussians.render(camera, **kwargs)

    def __len__(self) -> int:
        return len(self.gaussians)


class SplatsOverPoints:
    """Splats drawn over the gap-free point render of the same frame (:func:`render_fly_in_points`,
    the level of detail that matches the camera): a fly-in frame with no gaps.

    Where the splats are not opaque (slivers no training view saw, Gaussians thinned between
    levels) a black background would show through as dark speckles; here the scene's own points,
    closed and filled, show instead. ``render(camera)`` returns (rgb, depth, alpha) like
    :meth:`dreamer.splats.Gaussians.render`: ``rgb = splats + (1 - alpha) points``, the depth
    blended the same way, alpha 1 everywhere. ``points`` and ``lod``: the cloud (in the cameras'
    frame) and its levels of detail; ``near_plane``: the splats' near plane."""

    def __init__(self, gaussians, points: PointCloud, lod: LevelsOfDetail, near_plane: float, *,
                 splat_scale: float = 1.5, max_splat_px: float = 64.0):
        if not isinstance(points, PointCloud):
            raise TypeError(f"points must be a PointCloud, got {type(points).__name__}")
        if not isinstance(lod, LevelsOfDetail) or len(lod) != len(points):
            raise ValueError(f"lod must be a LevelsOfDetail with one entry per point ({len(points)})")
        self.splats = NearPlane(gaussians, near_plane)
        self.points, self.lod = points, lod
        self.splat_scale, self.max_splat_px = splat_scale, max_splat_px

    def render(self, camera: Camera, *, background=None, **kwargs):
        rgb, depth, alpha = self.splats.render(camera, **kwargs)
        under = render_fly_in_points(self.points, self.lod, camera.to(self.points.device),
                                     splat_scale=self.splat_scale, max_splat_px=self.max_splat_px)
        a = alpha.clamp(0.0, 1.0)
        img = under.image.to(rgb)
        rgb = (rgb + (1.0 - a[..., None]) * img).clamp(0.0, 1.0)
        depth = a * depth + (1.0 - a) * under.depth.to(depth)  # the splats' depth is normalised by alpha
        return rgb, depth, torch.ones_like(alpha)

    def __len__(self) -> int:
        return len(self.splats)


def fill_gaps(render: PointRender) -> PointRender:
    """Every pixel of ``render`` painted: uncovered pixels take, ring by ring from the covered
    ones, the colour and depth of their nearest covered neighbour in depth (3x3, front first).
    For videos: a region no view ever saw (behind an object the camera flies past) shows its
    surroundings smeared instead of black. ``covered`` stays the render's own coverage."""
    image, depth = render.image.clone(), render.depth.clone()
    done = render.covered.clone()
    if done.all() or not done.any():
        return PointRender(image, depth, render.covered, render.index)
    H, W = depth.shape
    big = torch.finfo(depth.dtype).max
    ys = torch.arange(H, device=depth.device).repeat_interleave(W)
    xs = torch.arange(W, device=depth.device).repeat(H)
    while not done.all():
        d = torch.where(done, depth, torch.full_like(depth, big))
        patches = F.unfold(F.pad(d[None, None], (1, 1, 1, 1), value=big), 3)[0]  # [9, H*W]
        best, arg = patches.min(0)
        sel = ~done.view(-1) & (best < big)
        src = ((ys + arg // 3 - 1) * W + xs + arg % 3 - 1)[sel]
        depth.view(-1)[sel] = depth.view(-1)[src]
        image.view(-1, 3)[sel] = image.view(-1, 3)[src]
        done.view(-1)[sel] = True
    return PointRender(image, depth, render.covered, render.index)


def render_fly_in_points(points: PointCloud, lod: LevelsOfDetail, camera: Camera, *, splat_scale: float = 1.5,
                         max_splat_px: float = 64.0, close_px: int = 2, fill: bool = True) -> PointRender:
    """One fly-in frame from the points: the level of detail the camera shows
    (:func:`~dreamer.deepzoom.lifting.render_lod_points`), gaps up to ``close_px`` pixels (rows
    between the points of a level seen on a slant, where the camera's footprint on the surface is
    longer than the level's) closed from their nearest neighbours in depth, and with ``fill``
    what is still uncovered (never seen) painted by :func:`fill_gaps`. ``covered`` says which
    pixels the points (and the closing) cover."""
    r = render_lod_points(points, lod, camera, splat_scale=splat_scale, max_splat_px=max_splat_px)
    if close_px > 0:
        r, _ = clean_coverage(r, close_px=close_px, grow_px=0)
    return fill_gaps(r) if fill else r


def render_points_video(points: PointCloud, cameras: Sequence[Camera], path: str | Path, *, fps: int = 24,
                        lod: LevelsOfDetail | None = None, splat_scale: float = 1.5, max_splat_px: float = 64.0,
                        close_px: int = 2) -> Path:
    """Render ``points`` along ``cameras`` (:func:`render_fly_in_points`; ``lod`` default: one
    level) into an H.264 mp4 at ``path``, atomically. One frame per camera."""
    import imageio.v2 as imageio

    from dreamer.io import VIDEO_WRITER_ARGS, atomic_path, even_sides, to_uint8

    if not cameras:
        raise ValueError("render_points_video needs at least one camera")
    if lod is None:
        lod = LevelsOfDetail.single_level(len(points), device=points.device)
    path = Path(path)
    with atomic_path(path) as tmp:
        writer = imageio.get_writer(str(tmp), **VIDEO_WRITER_ARGS, fps=fps)
        try:
            for cam in cameras:
                r = render_fly_in_points(points, lod, cam.to(points.device), splat_scale=splat_scale,
                                         max_splat_px=max_splat_px, close_px=close_px)
                writer.append_data(even_sides(to_uint8(r.image)))
        finally:
            writer.close()
    return path
