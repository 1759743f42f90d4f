"""Lift zoom levels into the scene's cloud as finer points, coarse points kept as a coarser level
of detail (:mod:`dreamer.splats.lod`)."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Sequence

import torch
from torch import Tensor

from dreamer.cameras import Camera, project_points
from dreamer.deepzoom.config import ProgressFn
from dreamer.pointcloud import PointCloud
from dreamer.render import PointRender, _check_image, check_depth, clean_coverage, erode, lift, render_points
from dreamer.scene.result import DreamView
from dreamer.splats.lod import LevelsOfDetail

__all__ = ["ZoomLevelStats", "lift_zoom_level", "lift_zoom_levels", "render_lod_points", "lod_visible",
           "inherited_depth", "snapped_depth"]

log = logging.getLogger(__name__)


@dataclass
class ZoomLevelStats:
    """What one level did: points lifted, coarse points it covers (they fade out where this level
    fades in), the estimate's rim pixels peeled, the depth fit, seconds."""

    level: int
    new_points: int = 0
    covered_points: int = 0
    known_fraction: float = 0.0
    inherited_fraction: float = 0.0
    snapped_fraction: float = 0.0
    rim_pixels: int = 0
    scale: float = float("nan")
    residual_after: float = float("nan")
    seconds: float = 0.0


def check_points_lod(points: PointCloud, lod: LevelsOfDetail) -> None:
    """Raise unless ``points`` is a PointCloud and ``lod`` its LevelsOfDetail (one entry per point)."""
    if not isinstance(points, PointCloud):
        raise TypeError(f"points must be a PointCloud, got {type(points).__name__}")
    if not isinstance(lod, LevelsOfDetail) or len(lod) != len(points):
        raise ValueError(f"lod must be a LevelsOfDetail with one entry per point ({len(points)}), "
                         f"got {len(lod) if isinstance(lod, LevelsOfDetail) else type(lod).__name__}")


def lod_visible(points: PointCloud, lod: LevelsOfDetail, camera: Camera) -> Tensor:
    """bool [N]: the points a camera shows, the level of detail that carries most weight there
    (weight >= 0.5; the hard-switch version of the Gaussians' cross-fade)."""
    return lod.weights(points.xyz, camera) >= 0.5


def render_lod_points(points: PointCloud, lod: LevelsOfDetail, camera: Camera, *, splat_scale: float = 1.5,
                      max_splat_px: float = 32.0) -> PointRender:
    """:func:`dreamer.render.render_points` of the points ``camera`` shows (:func:`lod_visible`);
    ``index`` refers to ``points``."""
    keep = torch.nonzero(lod_visible(points, lod, camera)).squeeze(1)
    r = render_points(points.select(keep), camera.to(points.device), splat_scale=splat_scale,
                      max_splat_px=max_splat_px)
    index = torch.where(r.index >= 0, keep[r.index.clamp_min(0)], r.index)
    return PointRender(r.image, r.depth, r.covered, index)


def _coarser_corners(camera: Camera, coarser: Camera, coarser_depth: Tensor):
    """For each pixel of ``camera``: the four pixels of ``coarser_depth`` around its position in
    the coarser image (``coarser``: a camera with the same centre and rotation; index pairs
    (rows, columns), clamped into the map), its fractional position between them (u, v) and
    whether all four lie inside the map."""
    if not torch.allclose(camera.c2w, coarser.c2w.to(camera.c2w), atol=1e-6):
        raise ValueError("inherited_depth needs two cameras with the same centre and rotation (pure zooms)")
    H, W = camera.height, camera.width
    dev = coarser_depth.device
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64, device=dev) + 0.5,
                          torch.arange(W, dtype=torch.float64, device=dev) + 0.5, indexing="ij")
    y = (v - camera.cy) / camera.fy
    x = (u - camera.cx - camera.K[0, 1].item() * y) / camera.fx
    uc = coarser.fx * x + coarser.K[0, 1].item() * y + coarser.cx - 0.5  # index coordinates in the coarser map
    vc = coarser.fy * y + coarser.cy - 0.5
    h, w = coarser_depth.shape
    u0, v0 = uc.floor().long(), vc.floor().long()
    inside = (u0 >= 0) & (v0 >= 0) & (u0 + 1 < w) & (v0 + 1 < h)
    fu, fv = (uc - u0).to(coarser_depth.dtype), (vc - v0).to(coarser_depth.dtype)
    u0, v0 = u0.clamp(0, w - 2), v0.clamp(0, h - 2)
    corners = [(v0, u0), (v0, u0 + 1), (v0 + 1, u0), (v0 + 1, u0 + 1)]
    return corners, fu, fv, inside


def snapped_depth(camera: Camera, coarser: Camera, coarser_depth: Tensor, guide: Tensor) -> tuple[Tensor, Tensor]:
    """The z-depth [H,W] of ``camera`` snapped to one of the coarser surfaces around each pixel,
    and where it exists (bool [H,W]).

    Across a silhouette the bilinear reading of :func:`inherited_depth` would put a pixel between
    the two surfaces (a flying pixel). Here a pixel takes, of the four coarser depths around its
    position (``coarser``: a camera with the same centre and rotation), the one nearest to its
    ``guide`` depth [H,W] (the level's own aligned estimate, which knows at the finer resolution
    on which side of the silhouette the pixel lies): a depth of a surface that is there, never
    one in between. It exists where the four coarser depths are valid (> 0, finite).
    """
    corners, _, _, inside = _coarser_corners(camera, coarser, coarser_depth)
    d = coarser_depth
    ok_px = (d > 0) & torch.isfinite(d)
    valid = inside.clone()
    cand = []
    for cv_, cu_ in corners:
        valid &= ok_px[cv_, cu_]
        cand.append(d[cv_, cu_])
    cand = torch.stack(cand)  # [4,H,W]
    pick = (cand - guide.to(cand)[None]).abs().nan_to_num(float("inf")).argmin(0)
    depth = cand.gather(0, pick[None])[0]
    return torch.where(valid, depth, torch.zeros_like(depth)), valid


def inherited_depth(camera: Camera, coarser: Camera, coarser_depth: Tensor, *,
                    stretch_threshold: float = 0.1) -> tuple[Tensor, Tensor]:
    """The z-depth [H,W] of ``camera`` read from ``coarser_depth`` [H',W'] of ``coarser``, a camera
    with the same centre and rotation (a zoom level and the coarser level or view it zooms into),
    and where it holds (bool [H,W]).

    The two cameras share every ray through their common centre, and with one rotation the
    z-depth along a ray is the same in both: a pixel's depth is the coarser map bilinearly
    interpolated at the pixel's position in the coarser image. It holds where the four coarser
    pixels around that position are valid (> 0) and none of them lies on a depth edge
    (``alignment.stretched_pixels``), so no depth is interpolated across a silhouette.
    """
    from alignment import stretched_pixels

    corners, fu, fv, inside = _coarser_corners(camera, coarser, coarser_depth)
    v0, u0 = corners[0]
    d = coarser_depth
    ok_px = (d > 0) & torch.isfinite(d) & ~stretched_pixels(d.clamp_min(1e-12), threshold=stretch_threshold)
    valid = inside.clone()
    for cv_, cu_ in corners:
        valid &= ok_px[cv_, cu_]
    top = d[v0, u0] * (1 - fu) + d[v0, u0 + 1] * fu
    bottom = d[v0 + 1, u0] * (1 - fu) + d[v0 + 1, u0 + 1] * fu
    depth = top * (1 - fv) + bottom * fv
    return torch.where(valid, depth, torch.zeros_like(depth)), valid


def lift_zoom_level(points: PointCloud, camera: Camera, image: Tensor, *, depth_estimator, lod: LevelsOfDetail,
                    dream_config=None, replace_tolerance: float = 0.05, coarser_factor: float = 1.25,
                    level: int = 0, coarser: tuple[Camera, Tensor] | None = None
                    ) -> tuple[PointCloud, LevelsOfDetail, DreamView, ZoomLevelStats]:
    """Lift one zoom level into the cloud.

    Renders the points ``camera`` shows (:func:`render_lod_points`), estimates the depth of
    ``image`` [H,W,3], filters it as the dream loop does (its pixel noise and the rims a depth
    model draws around objects: :func:`dreamer.scene.loop.filter_estimate`, with ``dream_config``'s
    ``denoise_radius`` and ``rim_width``), aligns it to the rendered depth (known pixels: the
    render's coverage; the rest is filled by the seam correction) and lifts every pixel that is not a stretched depth
    edge with the footprint ``z / f_camera`` as a point of level ``level``. With ``coarser``
    (the camera and z-depth map of the level or view this level zooms into) the depth is the
    coarser one along the shared rays wherever it holds (:func:`inherited_depth`; a pure zoom
    sees no parallax, so its image says nothing new about depth, while the estimate's per-pixel
    errors would be as large as the camera's whole distance at the end of a deep fly-in); across
    the coarser map's silhouettes the coarser depth nearest to the aligned estimate
    (:func:`snapped_depth`), and those pixels are lifted even where they are the far side of a
    depth edge; the aligned estimate elsewhere (it fades in as that
    footprint grows from half a pixel to a pixel on screen). Old points that (a) project inside
    the image onto a lifted pixel, (b) lie within ``replace_tolerance`` (relative) of the new
    depth there, (c) are coarser than ``coarser_factor`` times the new point at that pixel and
    (d) are not covered by a finer level yet become covered by this level: they stay, and fade
    out where this level fades in. Pixels next to a stretched depth edge (not lifted) keep their
    coarse points fully, which fill them.

    Returns the new cloud and its levels of detail, a :class:`DreamView` of the level (its image,
    aligned depth and lift mask: a training view for the splats) and the level's stats.
    """
    from alignment import stretched_pixels
    from dreamer.scene.loop import DreamConfig, align_view, filter_estimate

    t0 = time.perf_counter()
    cfg = dream_config if dream_config is not None else DreamConfig()
    if not isinstance(camera, Camera):
        raise TypeError(f"camera must be a dreamer.Camera, got {type(camera).__name__}")
    _check_image(image, camera, "level image")
    check_points_lod(points, lod)
    image = image.to(device=points.device, dtype=torch.float32)
    cam = camera.to(points.device)
    lod = lod.to(points.device)
    stats = ZoomLevelStats(level=level)

    render = render_lod_points(points, lod, cam, splat_scale=cfg.splat_scale, max_splat_px=cfg.max_splat_px)
    render, masks = clean_coverage(render, close_px=cfg.close_px, grow_px=0)
    known, hole = masks.known, masks.hole
    stats.known_fraction = float(known.float().mean())
    estimated = depth_estimator.estimate(image, camera=cam).to(image)
    check_depth(estimated, cam, "estimated depth of the zoom level")
    # As the dream loop does, before the estimate is aligned: its pixel noise filtered and the
    # rims it draws around objects peeled, else a rim pixel's depth guides the snap across a
    # silhouette to the nearer surface and the level lifts background colour at the object's depth.
    estimated, stats.rim_pixels = filter_estimate(estimated, image, cfg)
    if int(known.sum()) >= cfg.min_overlap_pixels:
        aligned = align_view(estimated, render.depth, known, hole, cfg)
        depth = aligned.depth
        stats.scale, stats.residual_after = float(aligned.fit.scale), float(aligned.fit.residual_after)
    else:
        log.warning("zoom level %d: only %d pixels see existing geometry; keeping the estimate's scale",
                    level, int(known.sum()))
        depth = estimated
    snapped = torch.zeros_like(known)
    if coarser is not None:
        prior, holds = inherited_depth(cam, coarser[0].to(points.device), coarser[1].to(depth),
                                       stretch_threshold=cfg.stretch_threshold)
        edge_depth, edge_ok = snapped_depth(cam, coarser[0].to(points.device), coarser[1].to(depth), depth)
        snapped = edge_ok & ~holds
        depth = torch.where(holds, prior, torch.where(snapped, edge_depth, depth))
        stats.inherited_fraction = float(holds.float().mean())
        stats.snapped_fraction = float(snapped.float().mean())
    depth = depth.clamp_min(1e-6)
    stretched = stretched_pixels(depth, threshold=cfg.stretch_threshold)
    # A pixel snapped to a coarser surface sits on that surface, not between two (no streak):
    # lifting it at the level's resolution keeps a silhouette as sharp as the level, where
    # leaving it to the coarser points would draw a halo as wide as their footprint.
    lift_mask = ~stretched | snapped
    new = lift(image, depth, cam, lift_mask)
    new_lod = LevelsOfDetail(torch.full((len(new),), level, dtype=torch.long, device=points.device),
                             new.radius.clone(), torch.zeros_like(new.radius))

    # Which old points does this level cover?
    H, W = cam.height, cam.width
    uv, z = project_points(points.xyz, cam)
    u, v = uv[:, 0], uv[:, 1]
    inside = (z > 1e-6) & (u >= 0) & (u < W) & (v >= 0) & (v < H) & torch.isfinite(u) & torch.isfinite(v)
    inside &= lod.lod_out == 0
    idx = torch.nonzero(inside).squeeze(1)
    lod_out = lod.lod_out.clone()
    if idx.numel():
        pu = u[idx].floor().long().clamp(0, W - 1)
        pv = v[idx].floor().long().clamp(0, H - 1)
        d_new = depth[pv, pu]
        f = math.sqrt(cam.fx * cam.fy)
        near_surface = (z[idx] - d_new).abs() <= replace_tolerance * d_new
        coarser = points.radius[idx] > coarser_factor * d_new / f
        # Keep the coarse points next to pixels this level does not lift (stretched depth edges):
        # their footprints fill those pixels.
        solid = erode(lift_mask, max(1, math.ceil(0.5 * cfg.splat_scale * coarser_factor)))
        covered = solid[pv, pu] & near_surface & coarser
        lod_out[idx[covered]] = (d_new[covered] / f).to(lod_out.dtype)
        stats.covered_points = int(covered.sum())
    merged = points.cat(new)
    merged_lod = LevelsOfDetail(lod.level, lod.lod_in, lod_out).cat(new_lod)
    stats.new_points = len(new)
    stats.seconds = time.perf_counter() - t0
    view = DreamView(cam, image, depth, lift_mask, "", {k: v for k, v in asdict(stats).items()})
    return merged, merged_lod, view, stats


def lift_zoom_levels(points: PointCloud, cameras: Sequence[Camera], images: Tensor, *, depth_estimator,
                     lod: LevelsOfDetail | None = None, dream_config=None, replace_tolerance: float = 0.05,
                     view: tuple[Camera, Tensor] | None = None, prompts: Sequence[str] | None = None,
                     on_progress: ProgressFn | None = None
                     ) -> tuple[PointCloud, LevelsOfDetail, list[DreamView], list[ZoomLevelStats]]:
    """Lift levels ``1..N-1`` of a zoom stack (``cameras`` [N] from :func:`level_cameras`,
    ``images`` [N,H,W,3]) into ``points`` (whose levels of detail are ``lod``; default: all of
    level 0), coarsest first, each on top of the previous ones. Level 0 is the view itself and is
    not lifted. With ``view`` (the zoomed view's camera and z-depth) level 1 inherits the view's
    depth and each deeper level its coarser level's (see :func:`lift_zoom_level`). Returns the
    multi-resolution cloud, its levels of detail, one :class:`DreamView` per lifted level and
    their stats."""
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be a tensor [N,H,W,3], got {getattr(images, 'shape', type(images).__name__)}")
    if images.shape[0] != len(cameras):
        raise ValueError(f"got {images.shape[0]} level images for {len(cameras)} level cameras")
    if lod is None:
        lod = LevelsOfDetail.single_level(len(points), device=points.device)
    views, all_stats = [], []
    n = len(cameras)
    coarser = view
    for i in range(1, n):
        points, lod, lifted, stats = lift_zoom_level(points, cameras[i], images[i], depth_estimator=depth_estimator,
                                                     lod=lod, dream_config=dream_config,
                                                     replace_tolerance=replace_tolerance, level=i, coarser=coarser)
        if prompts is not None:
            lifted.prompt = prompts[i]
        if view is not None:
            coarser = (lifted.camera, lifted.depth)
        views.append(lifted)
        all_stats.append(stats)
        log.info("zoom level %d/%d: +%d points, %d coarse points covered, %.2f s", i, n - 1, stats.new_points,
                 stats.covered_points, stats.seconds)
        if on_progress:
            on_progress("zoom lift", i, n - 1)
    return points, lod, views, all_stats
