"""Training views on the fly-in's own path: what the dolly sees that the zoom stack does not.

The levels of a zoom stack are pure zooms from the zoomed view's centre (:func:`level_cameras`):
nested crops of one another, what a Powers-of-Ten sampler needs. The fly-in is a dolly: its
camera moves towards the zoom point, so a nearer surface shifts against a farther one
(parallax). Around every silhouette the dolly sees background that no level shows (it was
behind the nearer surface from the view's centre) and a contour seen from elsewhere, and
splats trained on the levels alone are worst there.

For each level ``i >= 1`` the dolly camera of the same magnification
(:func:`dolly_level_cameras`: on the fly-in path, where the zoom point is magnified ``p^i``
times, so the level's points are drawn at one pixel each) is dreamed like a view of the dream
loop (:func:`dream_dolly_view`): the multi-resolution cloud is rendered there (the level of
detail that camera shows), the holes and a band of ``edge_px`` pixels around the render's depth
edges are repainted by the scene's inpainter, the new pixels' estimated depth is filtered and
aligned as in the dream loop and the holes lifted as points of level ``i``. The completed image
and its depth become a training view of the zoomed scene's splats. At the target's depth a dolly
camera and its level camera see the same thing (the same magnification about the same centre):
only the parallax differs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from dreamer.cameras import Camera
from dreamer.checks import check_int
from dreamer.deepzoom.config import ProgressFn
from dreamer.deepzoom.flyin import dolly_cameras
from dreamer.deepzoom.lifting import check_points_lod, render_lod_points
from dreamer.pointcloud import PointCloud
from dreamer.render import check_depth, clean_coverage, dilate, lift
from dreamer.scene.result import DreamView
from dreamer.splats.lod import LevelsOfDetail

__all__ = ["DollyViewStats", "dolly_level_cameras", "dream_dolly_view", "dream_dolly_views"]

log = logging.getLogger(__name__)


@dataclass
class DollyViewStats:
    """One dolly view: its level, the fractions of its pixels repainted (holes plus the band
    around depth edges) and holes, the points it lifted and its estimate's rim pixels peeled."""

    level: int
    repainted_fraction: float = 0.0
    hole_fraction: float = 0.0
    new_points: int = 0
    rim_pixels: int = 0


def dolly_level_cameras(view_camera: Camera, point: Tensor, level_cameras: Sequence[Camera], p: int,
                        levels: Sequence[int]) -> list[Camera]:
    """The fly-in cameras (:func:`~dreamer.deepzoom.flyin.fly_in_cameras` from ``view_camera``
    towards the zoom ``point``, ending with the intrinsics of ``level_cameras[0]``) at which the
    zoom point is magnified ``p^i`` times, for each level ``i`` of ``levels``: where the fly-in's
    screen resolution at the zoom point matches level ``i``'s."""
    check_int(p, "p", min=2)
    n = len(level_cameras)
    for i in levels:
        check_int(i, "level", min=0)
        if i >= n:
            raise ValueError(f"level {i} is out of range for a zoom of {n} levels")
    return dolly_cameras(view_camera, point, [float(p) ** i for i in levels], end_K=level_cameras[0].K,
                         recenter_zoom=float(p))


def dream_dolly_view(points: PointCloud, lod: LevelsOfDetail, camera: Camera, *, level: int, inpainter,
                     depth_estimator, dream_config=None, edge_px: int = 2, prompt: str = "",
                     generator: torch.Generator | None = None, repaint_only: bool = True
                     ) -> tuple[PointCloud, LevelsOfDetail, DreamView | None, DollyViewStats]:
    """Dream the dolly camera ``camera`` on top of the multi-resolution cloud (``points`` and its
    levels of detail ``lod``).

    The cloud is rendered at the level of detail ``camera`` shows (:func:`render_lod_points`,
    pinholes closed as in the dream loop). The holes and every pixel within ``edge_px`` of a
    depth edge of the render (``alignment.stretched_pixels``: where a surface seen from the
    view's centre meets one behind it, which this camera sees from elsewhere) are repainted by
    ``inpainter``; the rest keeps the render. The completed image's depth is estimated, filtered
    (:func:`dreamer.scene.loop.filter_estimate`: pixel noise, rims around objects) and aligned to
    the render's depth on the pixels kept, as the dream loop does, and the holes
    are lifted as points of level ``level`` (fading in as their footprint grows from half a pixel
    to one, like the level's own points).

    Returns the cloud with the new points, its levels of detail, a :class:`DreamView` (the
    completed image, its depth: the render's where kept, the aligned estimate where repainted;
    mask: the lifted pixels; ``loss_mask``: with ``repaint_only`` the repainted pixels, else
    None) or None when nothing needs repainting, and the view's stats.
    """
    from alignment import stretched_pixels
    from dreamer.backends import inpaint_weight
    from dreamer.scene.loop import DreamConfig, align_view, filter_estimate

    cfg = dream_config if dream_config is not None else DreamConfig()
    if not isinstance(camera, Camera):
        raise TypeError(f"camera must be a dreamer.Camera, got {type(camera).__name__}")
    check_points_lod(points, lod)
    check_int(level, "level", min=1)
    check_int(edge_px, "edge_px", min=0)
    cam = camera.to(points.device)
    lod = lod.to(points.device)
    stats = DollyViewStats(level=level)

    render = render_lod_points(points, lod, cam, splat_scale=cfg.splat_scale, max_splat_px=cfg.max_splat_px)
    render, masks = clean_coverage(render, close_px=cfg.close_px, grow_px=0)
    known, hole = masks.known, masks.hole
    rendered_depth = torch.where(known, render.depth, torch.zeros_like(render.depth))
    # Depth edges of the render, both sides: the far side is what stretched_pixels marks, the
    # dilation reaches the near side's contour too.
    filled = torch.where(known, render.depth, render.depth[known].max() if known.any() else torch.ones(()))
    edges = stretched_pixels(filled.clamp_min(1e-6), threshold=cfg.stretch_threshold) & known
    repaint = hole | (dilate(edges, edge_px) if edge_px > 0 else edges)
    stats.repainted_fraction = float(repaint.float().mean())
    stats.hole_fraction = float(hole.float().mean())
    if not repaint.any():  # the cloud shows this camera whole: nothing to learn from it
        return points, lod, None, stats

    completed = inpainter.inpaint(render.image, repaint, prompt, camera=cam, generator=generator)
    weight = inpaint_weight(inpainter, repaint).to(render.image.device)
    completed = torch.where(weight[..., None] > 0, completed.to(render.image), render.image).clamp(0.0, 1.0)
    estimated = depth_estimator.estimate(completed, camera=cam).to(completed)
    check_depth(estimated, cam, "estimated depth of the dolly view")
    # The dream loop's filter, before the alignment: pixel noise and the rims around objects.
    estimated, stats.rim_pixels = filter_estimate(estimated, completed, cfg)
    kept = known & ~repaint
    if int(kept.sum()) >= cfg.min_overlap_pixels:
        aligned = align_view(estimated, rendered_depth, kept, repaint, cfg).depth
    else:
        log.warning("dolly view of level %d: only %d rendered pixels are kept; keeping the estimate's scale",
                    level, int(kept.sum()))
        aligned = estimated
    depth = torch.where(kept, rendered_depth, aligned).clamp_min(1e-6)
    lift_mask = hole & ~stretched_pixels(depth, threshold=cfg.stretch_threshold)
    new = lift(completed, depth, cam, lift_mask)
    stats.new_points = len(new)
    new_lod = LevelsOfDetail(torch.full((len(new),), level, dtype=torch.long, device=points.device),
                             new.radius.clone(), torch.zeros_like(new.radius))
    # The splats learn from the repainted pixels only: the rest re-renders the cloud, which the
    # level images teach better (the splats would copy the points' blocky footprints).
    view = DreamView(cam, completed, depth, lift_mask, prompt, vars(stats).copy(),
                     loss_mask=repaint if repaint_only else None)
    return points.cat(new), lod.cat(new_lod), view, stats


def dream_dolly_views(points: PointCloud, lod: LevelsOfDetail, cameras: Sequence[Camera], levels: Sequence[int], *,
                      inpainter, depth_estimator, dream_config=None, edge_px: int = 2,
                      prompts: Sequence[str] | None = None, seed: int = 0, on_progress: ProgressFn | None = None
                      ) -> tuple[PointCloud, LevelsOfDetail, list[DreamView], list[DollyViewStats]]:
    """:func:`dream_dolly_view` for each of ``cameras`` (one per level of ``levels``, e.g. from
    :func:`dolly_level_cameras`), coarsest first, each on top of the previous ones; the
    inpainting generator of the ``k``-th camera is seeded with ``seed + k``. Returns the cloud,
    its levels of detail, the views (only the cameras where something was repainted; their
    stats say which level each belongs to) and the stats of every camera."""
    if len(cameras) != len(levels):
        raise ValueError(f"got {len(cameras)} dolly cameras for {len(levels)} levels")
    if prompts is not None and len(prompts) != len(levels):
        raise ValueError(f"got {len(prompts)} prompts for {len(levels)} dolly views")
    views, all_stats = [], []
    for k, (cam, level) in enumerate(zip(cameras, levels)):
        g = torch.Generator(device="cpu").manual_seed(seed + k)
        points, lod, view, stats = dream_dolly_view(points, lod, cam, level=level, inpainter=inpainter,
                                                    depth_estimator=depth_estimator, dream_config=dream_config,
                                                    edge_px=edge_px, prompt=prompts[k] if prompts else "",
                                                    generator=g)
        if view is not None:
            views.append(view)
        all_stats.append(stats)
        log.info("dolly view of level %d: %.1f %% repainted, +%d points", level, 100 * stats.repainted_fraction,
                 stats.new_points)
        if on_progress:
            on_progress("zoom dolly views", k + 1, len(cameras))
    return points, lod, views, all_stats
