"""The training views of the splat stage: each dreamed view, and extra views re-rendered from
the point cloud around each dreamed camera (see :mod:`dreamer.splats.train`)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from dreamer.cameras import Camera
from dreamer.pointcloud import PointCloud
from dreamer.scene.result import DreamResult

from dreamer.progress import ProgressFn
from dreamer.splats.config import SplatConfig

log = logging.getLogger(__name__)

__all__ = ["TrainingView", "build_training_views", "scene_scale", "path_view_indices"]


@dataclass
class TrainingView:
    """One training image: ``camera``, ``image`` [H,W,3] in [0,1], ``mask`` [H,W] bool (None =
    every pixel counts), the index of the dreamed view it belongs to (``source``; for a
    pseudo-view the nearest one), whether it is an extra (re-rendered) view, its z-``depth``
    [H,W] where known (0 = unknown pixel; None = no depth), its loss ``weight`` and whether it
    is a repaired pseudo-view (and of which ``round``)."""

    camera: Camera
    image: Tensor
    mask: Tensor | None
    source: int
    extra: bool = False
    depth: Tensor | None = None
    weight: float = 1.0
    pseudo: bool = False
    round: int = -1


# ------------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------------
def _check_result(result: DreamResult) -> None:
    if not isinstance(result, DreamResult):
        raise TypeError(f"result must be a DreamResult, got {type(result).__name__}")
    if not isinstance(result.points, PointCloud) or len(result.points) == 0:
        raise ValueError("the dreamed scene has an empty point cloud: nothing to make Gaussians from")
    if not result.views:
        raise ValueError("the dreamed scene has no views to train on")
    for i, v in enumerate(result.views):
        cam = v.camera
        if not isinstance(cam, Camera):
            raise TypeError(f"view {i}: camera must be a Camera, got {type(cam).__name__}")
        if not isinstance(v.image, Tensor) or v.image.ndim != 3 or v.image.shape[-1] != 3:
            raise ValueError(f"view {i}: image must be a tensor [H,W,3], got {getattr(v.image, 'shape', None)}")
        cam.check_image(v.image, f"view {i} image")
        if not torch.isfinite(v.image).all():
            raise ValueError(f"view {i}: image has non-finite values")


def dream_setting(result: DreamResult, name: str, default: float) -> float:
    """The dream loop's setting ``name`` for ``result`` (its config is a DreamConfig, or its dict
    when read back from a file); ``default`` when it has none."""
    dream = result.config
    value = dream.get(name) if isinstance(dream, dict) else getattr(dream, name, None)
    return default if value is None else float(value)


def _extra_splat_scale(result: DreamResult, config: SplatConfig) -> tuple[float, float]:
    """(splat_scale, max_splat_px) of the extra views' point renders: the settings the dream loop
    rendered its cloud with, unless overridden."""
    splat_scale = config.extra_splat_scale
    if splat_scale is None:
        splat_scale = dream_setting(result, "splat_scale", 1.5) or 1.5
    return splat_scale, dream_setting(result, "max_splat_px", 32.0) or 32.0


def build_training_views(result: DreamResult, config: SplatConfig = SplatConfig(), *,
                         device: torch.device | str | None = None,
                         on_progress: ProgressFn | None = None,
                         path_cameras: list[Camera] | None = None) -> list[TrainingView]:
    """The dreamed views (all pixels valid, or those of a view's ``loss_mask``) and, per dreamed
    view (with ``config.extra_views``), the extra views of ``config.extra_yaws`` /
    ``extra_pitches`` re-rendered from ``result.points`` with their coverage as mask (None with
    ``config.masked`` false). Extra views that no point covers are left out. Then the path views:
    ``config.path_views`` of ``path_cameras`` (spread evenly), each the cloud's render with
    pinholes up to ``config.path_close_px`` closed (:func:`dreamer.render.clean_coverage`),
    masked to that closed coverage. Images and masks
    are put on ``device`` (default: the points' device)."""
    from dreamer.render import render_points
    from dreamer.trajectories import center_depth_from, orbit_camera

    _check_result(result)
    device = torch.device(device) if device is not None else result.points.device
    points = result.points.to(device)
    splat_scale, max_px = _extra_splat_scale(result, config)
    views: list[TrainingView] = []
    n_extra = len(config.extra_yaws) if config.extra_views else 0
    total = len(result.views) * (1 + n_extra)
    f_first = math.sqrt(result.views[0].camera.fx * result.views[0].camera.fy)
    for i, v in enumerate(result.views):
        cam = v.camera.to(device)
        depth = v.depth.to(device=device, dtype=torch.float32) if isinstance(v.depth, Tensor) else None
        loss_mask = getattr(v, "loss_mask", None)
        loss_mask = None if loss_mask is None else loss_mask.to(device=device, dtype=torch.bool)
        views.append(TrainingView(cam, v.image.to(device=device, dtype=torch.float32).clamp(0, 1), loss_mask, i,
                                  depth=depth))
        if n_extra:
            try:
                pivot = center_depth_from(v.depth)
            except (ValueError, TypeError) as e:
                raise ValueError(f"view {i}: cannot find the pivot of its extra views: {e}") from None
            # A view that magnifies the first one (a zoom level) orbits by proportionally smaller
            # angles: the same shift in its own pixels.
            shrink = min(1.0, f_first / math.sqrt(cam.fx * cam.fy))
            for yaw, pitch in zip(config.extra_yaws, config.extra_pitches):
                ecam = orbit_camera(cam, pivot, float(yaw) * shrink, float(pitch) * shrink)
                r = render_points(points, ecam, splat_scale=splat_scale, max_splat_px=max_px)
                if not r.covered.any():
                    log.warning("view %d: the extra view at yaw %g, pitch %g sees no point; left out", i, yaw, pitch)
                    continue
                views.append(TrainingView(ecam, r.image.float().clamp(0, 1), r.covered if config.masked else None,
                                          i, extra=True, depth=torch.where(r.covered, r.depth, 0.0).float()))
        if on_progress is not None:
            on_progress("splat views", (i + 1) * (1 + n_extra), total)
    views += _path_views(points, path_cameras, config, splat_scale, max_px, device)
    return views


def path_view_indices(n_cameras: int, n_views: int) -> list[int]:
    """Indices of ``n_views`` cameras spread evenly over ``n_cameras`` (first and last
    included; all of them when there are fewer)."""
    if n_views <= 0 or n_cameras <= 0:
        return []
    if n_views >= n_cameras:
        return list(range(n_cameras))
    if n_views == 1:
        return [0]
    return sorted({round(k * (n_cameras - 1) / (n_views - 1)) for k in range(n_views)})


def _path_views(points: PointCloud, path_cameras: list[Camera] | None, config: SplatConfig, splat_scale: float,
                max_px: float, device: torch.device) -> list[TrainingView]:
    """The path views of :func:`build_training_views` (source: the first dreamed view)."""
    from dreamer.render import clean_coverage, render_points

    if not path_cameras or config.path_views <= 0:
        return []
    out = []
    for k in path_view_indices(len(path_cameras), config.path_views):
        cam = path_cameras[k]
        if not isinstance(cam, Camera):
            raise TypeError(f"path_cameras[{k}] must be a Camera, got {type(cam).__name__}")
        cam = cam.to(device)
        fixed, masks = clean_coverage(render_points(points, cam, splat_scale=splat_scale, max_splat_px=max_px),
                                      close_px=config.path_close_px, grow_px=0)
        if not masks.known.any():
            log.warning("path camera %d sees no point; left out of training", k)
            continue
        out.append(TrainingView(cam, fixed.image.float().clamp(0, 1), masks.known if config.masked else None, 0,
                                extra=True, depth=torch.where(masks.known, fixed.depth, 0.0).float()))
    return out


def scene_scale(result: DreamResult) -> float:
    """The scene's size for the learning rate of the centres and the densification thresholds:
    1.1 x the larger of the camera centres' spread (their largest distance from their mean,
    INRIA's "cameras extent") and the median distance of the points from that mean. The second
    term matters: the generation paths are often rotation only, with every camera at one place."""
    centres = torch.stack([v.camera.center.detach().double().cpu() for v in result.views])
    mid = centres.mean(0)
    cam_radius = float((centres - mid).norm(dim=1).max())
    pts = float((result.points.xyz.detach().double().cpu() - mid).norm(dim=1).median())
    s = 1.1 * max(cam_radius, pts)
    if not (s > 0 and math.isfinite(s)):
        raise ValueError(f"cannot find the scene scale (got {s}): are all points at the camera centre?")
    return s
