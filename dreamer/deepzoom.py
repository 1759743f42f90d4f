"""Deep zoom in 3D: lift a zoom stack into a dreamed scene and fly into it.

Pick a view of a scene and a zoom centre (a pixel). Level ``i`` of the zoom is a camera with the
view's centre of projection and rotation, focal length ``f * p^i`` and a principal point that
puts the zoom centre in the middle of the image (:func:`level_cameras`): the levels are exact
pure zooms of each other, the geometry of a zoom stack (``zoom/``). Level 0 is the view itself,
re-centred on the zoom point; its render from the scene is the photo that fixes the stack.

For each level ``i >= 1`` (:func:`lift_zoom_level`): render the cloud into the level camera,
estimate the depth of the level image, align it to the rendered geometry (``alignment``: robust
scale, smooth trend, seam correction into the holes), lift every pixel as a point with the
finer footprint ``z / (f p^i)`` and remove the coarser points that the level covers (inside
its field of view and within a depth tolerance of its surface); everything else stays. The
cloud becomes multi-resolution: the radii shrink by ``p`` per level towards the zoom point.

Level images come from (:func:`level_images`): the procedural world's band-limited render at
each level camera (``synthetic``, the oracle and ground truth), or the joint zoom sampler
(:func:`zoom.sample_zoom_stack`) with the scene's render at level 0 as its photo (learned and
``tiny`` models).

:func:`fly_in_cameras` makes a dolly from the view towards the zoom point (a real translation:
parallax, not a crop); the camera ends where the zoom point is as magnified as in the deepest
level. :func:`zoom_scene` runs it all on a :class:`~dreamer.scene.DreamResult`; the pipeline's
zoom stage (``--zoom-levels``) calls it and writes the outputs.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from dreamer.cameras import Camera, project_points
from dreamer.checks import check_int, check_number
from dreamer.pointcloud import PointCloud
from dreamer.render import _check_image, check_depth, clean_coverage, erode, lift, render_points
from dreamer.scene.result import DreamResult, DreamView

__all__ = [
    "DeepZoomConfig",
    "ZoomLevelStats",
    "DeepZoomResult",
    "level_cameras",
    "level_prompts",
    "zoom_point",
    "level_images",
    "lift_zoom_level",
    "lift_zoom_levels",
    "zoom_scene",
    "fly_in_cameras",
    "render_points_video",
    "fly_in_near_plane",
    "NearPlane",
    "write_zoom_outputs",
    "zoom_metrics",
    "psnr",
    "DEFAULT_SUFFIXES",
]

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]

DEFAULT_SUFFIXES = ("close-up", "macro photograph, fine detail", "extreme macro photograph",
                    "microscopic detail, extreme close-up")


@dataclass(frozen=True)
class DeepZoomConfig:
    """Settings of the deep-zoom stage. Every name starts with ``zoom_`` so that its command-line
    flag (``--zoom-levels``) never collides with another stage's setting."""

    zoom_levels: int = 0
    """Levels of the zoom stack, level 0 being the chosen view itself (0 = no zoom stage; else >= 2)."""
    zoom_p: int = 2
    """Zoom factor between consecutive levels, an integer >= 2 (the paper uses 2 or 4): level i has
    focal length f * p^i."""
    zoom_view: int = 0
    """Index of the dreamed view to zoom into (negative counts from the last)."""
    zoom_center: tuple[float, ...] | None = None
    """Zoom centre (u, v) in pixels of that view (continuous, pixel centres at +0.5); default the image centre."""
    zoom_prompts: tuple[str, ...] | None = None
    """One prompt per level, widest first; one prompt is repeated with zoom_suffixes; default the scene's prompt."""
    zoom_suffixes: tuple[str, ...] = DEFAULT_SUFFIXES
    """Suffixes appended to a repeated prompt at levels 1, 2, ... (the last one repeats for deeper levels)."""
    zoom_steps: int = 50
    """Denoising steps of the zoom sampler (learned and tiny models)."""
    zoom_guidance: float = 7.5
    """Classifier-free guidance scale of the zoom sampler."""
    zoom_seed: int = 0
    """Seed of the zoom sampler's generator."""
    zoom_supersample: int = 2
    """``synthetic`` only: sub-pixel rays per axis of the world's render at each level (band-limited truth)."""
    zoom_replace_tolerance: float = 0.05
    """A coarse point is replaced by a level when its z-depth is within this fraction of the level's
    depth at its pixel."""
    zoom_fly_frames: int = 48
    """Frames of the fly-in video (the dolly towards the zoom point); 0 = no fly-in video."""
    zoom_fps: int = 24
    """Frames per second of the fly-in and 2D zoom videos."""
    zoom_video_seconds_per_level: float = 1.0
    """Seconds per level of the 2D zoom video of the stack (0 = no 2D zoom video)."""
    zoom_splats: bool = True
    """Train splats on the scene's views plus the zoom levels and render the fly-in with them (needs
    the splat stage on)."""

    def __post_init__(self) -> None:
        if check_int(self.zoom_levels, "zoom_levels", min=0) == 1:
            raise ValueError("zoom_levels must be 0 (off) or an integer >= 2 (level 0 is the view itself), got 1")
        check_int(self.zoom_p, "zoom_p", min=2)
        check_int(self.zoom_view, "zoom_view")
        if self.zoom_center is not None:
            c = tuple(self.zoom_center)
            if len(c) != 2 or not all(isinstance(x, (int, float)) and math.isfinite(x) for x in c):
                raise ValueError(f"zoom_center must be two numbers (u, v) in pixels, got {self.zoom_center!r}")
            object.__setattr__(self, "zoom_center", tuple(float(x) for x in c))
        if self.zoom_prompts is not None:
            prompts = tuple(self.zoom_prompts)
            if not prompts or not all(isinstance(s, str) for s in prompts):
                raise ValueError(f"zoom_prompts must be one or more strings, got {self.zoom_prompts!r}")
            if self.zoom_levels and len(prompts) not in (1, self.zoom_levels):
                raise ValueError(f"zoom_prompts has {len(prompts)} prompts for {self.zoom_levels} levels: "
                                 f"give one prompt or one per level")
            object.__setattr__(self, "zoom_prompts", prompts)
        object.__setattr__(self, "zoom_suffixes", tuple(self.zoom_suffixes))
        if not all(isinstance(s, str) for s in self.zoom_suffixes):
            raise ValueError(f"zoom_suffixes must be strings, got {self.zoom_suffixes!r}")
        for name in ("zoom_steps", "zoom_supersample", "zoom_fps"):
            check_int(getattr(self, name), name, min=1)
        for name in ("zoom_fly_frames", "zoom_seed"):
            check_int(getattr(self, name), name, min=0)
        if self.zoom_fly_frames == 1:
            raise ValueError("zoom_fly_frames must be 0 (no fly-in) or >= 2 (a start and an end)")
        check_number(self.zoom_guidance, "zoom_guidance", min=0)
        check_number(self.zoom_replace_tolerance, "zoom_replace_tolerance", min=0, max=1, open_min=True)
        if self.zoom_replace_tolerance >= 1:
            raise ValueError(f"zoom_replace_tolerance must be in (0, 1), got {self.zoom_replace_tolerance!r}")
        check_number(self.zoom_video_seconds_per_level, "zoom_video_seconds_per_level", min=0)

    @property
    def enabled(self) -> bool:
        return self.zoom_levels > 0

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------------------
# Geometry
# ------------------------------------------------------------------------------------------------
def _check_camera(camera: Camera) -> None:
    if not isinstance(camera, Camera):
        raise TypeError(f"camera must be a dreamer.Camera, got {type(camera).__name__}")


def level_cameras(camera: Camera, center_uv: Sequence[float] | Tensor | None, levels: int, p: int = 2) -> list[Camera]:
    """The cameras of a zoom stack into ``camera`` about the pixel ``center_uv``.

    Level ``i`` (``0 <= i < levels``) keeps ``camera.c2w`` (same centre of projection, same
    rotation) and the image size; its intrinsics are ``fx_i = fx p^i``, ``fy_i = fy p^i`` and
    ``cx_i = W/2 - p^i (c_u - cx)``, ``cy_i = H/2 - p^i (c_v - cy)``. So a point that projects
    to ``(u, v)`` in ``camera`` projects to ``(W/2 + p^i (u - c_u), H/2 + p^i (v - c_v))`` in
    level ``i``: exactly the level-0 projection scaled by ``p^i`` about the zoom centre, which
    sits at the image centre of every level. Level ``i+1`` shows the centre ``1/p`` of level
    ``i`` at ``p`` times the resolution, as a zoom stack does.

    Args:
        camera: the view to zoom into.
        center_uv: (u, v) in pixels (continuous, pixel centres at +0.5); None = the image centre.
        levels: number of levels N >= 1.
        p: zoom factor per level (>= 2, an integer as in ``zoom/``).
    Returns:
        N cameras, widest first.
    """
    _check_camera(camera)
    check_int(levels, "levels", min=1)
    check_int(p, "p", min=2)
    W, H = camera.width, camera.height
    if center_uv is None:
        cu, cv = W / 2.0, H / 2.0
    else:
        c = torch.as_tensor(center_uv, dtype=torch.float64).flatten()
        if c.numel() != 2 or not torch.isfinite(c).all():
            raise ValueError(f"center_uv must be two finite numbers (u, v), got {center_uv!r}")
        cu, cv = float(c[0]), float(c[1])
    if not (0.0 <= cu <= W and 0.0 <= cv <= H):
        raise ValueError(f"zoom centre ({cu}, {cv}) lies outside the {W}x{H} image")
    out = []
    for i in range(levels):
        s = float(p) ** i
        K = camera.K.clone().double()
        K[0, 0] *= s
        K[1, 1] *= s
        K[0, 1] *= s  # a skew scales with the focal length
        K[0, 2] = W / 2.0 - s * (cu - camera.cx)
        K[1, 2] = H / 2.0 - s * (cv - camera.cy)
        out.append(camera.with_K(K.float()))
    return out


def level_prompts(levels: int, prompts: Sequence[str] | str | None, *, scene_prompt: str = "",
                  suffixes: Sequence[str] = DEFAULT_SUFFIXES) -> list[str]:
    """One prompt per level: ``prompts`` as given when it has one per level; a single prompt (or
    the scene's prompt when None) is repeated with ``suffixes[i-1]`` appended at level ``i >= 1``
    (the last suffix for deeper levels)."""
    if isinstance(prompts, str):
        prompts = [prompts]
    if prompts is not None and len(prompts) == levels and levels > 1:
        return list(prompts)
    if prompts is not None and len(prompts) != 1:
        raise ValueError(f"got {len(prompts)} zoom prompts for {levels} levels: give one prompt or one per level")
    base = prompts[0] if prompts is not None else scene_prompt
    out = [base]
    for i in range(1, levels):
        suffix = suffixes[min(i - 1, len(suffixes) - 1)] if suffixes else ""
        out.append(f"{base}, {suffix}" if base and suffix else (base or suffix))
    return out


def zoom_point(camera: Camera, depth: Tensor, center_uv: Sequence[float] | None = None) -> Tensor:
    """The world point [3] seen at the zoom centre: the z-depth map [H,W] of ``camera`` (0 or
    non-finite where empty) read at the pixel under ``center_uv`` (the median of the valid depths
    of its 3x3 neighbourhood, so a pinhole or an edge pixel does not throw it off)."""
    _check_camera(camera)
    camera.check_image(depth, "depth")
    W, H = camera.width, camera.height
    cu, cv = (W / 2.0, H / 2.0) if center_uv is None else (float(center_uv[0]), float(center_uv[1]))
    u = min(max(int(math.floor(cu)), 0), W - 1)
    v = min(max(int(math.floor(cv)), 0), H - 1)
    patch = depth[max(v - 1, 0):v + 2, max(u - 1, 0):u + 2].reshape(-1)
    patch = patch[torch.isfinite(patch) & (patch > 0)]
    if patch.numel() == 0:
        valid = depth[torch.isfinite(depth) & (depth > 0)]
        if valid.numel() == 0:
            raise ValueError("the view has no valid depth: cannot place the zoom point")
        patch = valid
    z = float(patch.median())
    x = (cu - camera.cx) / camera.fx * z
    y = (cv - camera.cy) / camera.fy * z
    p_cam = torch.tensor([x, y, z], dtype=torch.float32, device=camera.device)
    return camera.c2w[:3, :3] @ p_cam + camera.c2w[:3, 3]


# ------------------------------------------------------------------------------------------------
# Level images
# ------------------------------------------------------------------------------------------------
def level_images(cameras: Sequence[Camera], prompts: Sequence[str], *, world=None, pipeline=None,
                 photo: Tensor | None = None, p: int = 2, steps: int = 50, guidance: float = 7.5,
                 seed: int = 0, supersample: int = 2, on_progress: ProgressFn | None = None) -> Tensor:
    """The images [N,H,W,3] (float32 in [0,1]) of the zoom levels.

    With ``world`` (a ``ProceduralWorld``): its render at each level camera, band-limited and
    ``supersample``-d: the oracle answer and the ground truth. Otherwise ``pipeline`` (a diffusers
    text-to-image pipeline, e.g. ``backends.image_generator.pipe``) samples a joint zoom stack
    (:func:`zoom.sample_zoom_stack`) whose level 0 is fixed by ``photo`` [H,W,3] (the scene's
    render at level 0). The cameras must be the pure zooms of :func:`level_cameras`.
    """
    if not cameras:
        raise ValueError("level_images needs at least one camera")
    if len(prompts) != len(cameras):
        raise ValueError(f"got {len(prompts)} prompts for {len(cameras)} levels")
    if world is not None:
        out = []
        for i, cam in enumerate(cameras):
            out.append(world.render(cam, supersample=supersample).image.float())
            if on_progress:
                on_progress("zoom levels", i + 1, len(cameras))
        return torch.stack(out)
    if pipeline is None:
        raise ValueError("level_images needs a world (synthetic models) or a text-to-image pipeline")
    from dreamer.backends.diffusion import pipeline_lock
    from zoom import sample_zoom_stack
    from zoom.sampler import seeded_generator

    cam = cameras[0]
    with pipeline_lock(pipeline):  # the pipeline is shared with the scene's image generator
        res = sample_zoom_stack(pipeline, list(prompts), p=p, steps=steps, guidance=guidance, height=cam.height,
                                width=cam.width, generator=seeded_generator(seed), photo=photo, photo_level=0,
                                on_progress=on_progress)
    return res.levels.detach().float().cpu().clamp(0, 1)


# ------------------------------------------------------------------------------------------------
# Lifting
# ------------------------------------------------------------------------------------------------
@dataclass
class ZoomLevelStats:
    """What one level did: points lifted and replaced, the depth fit, seconds."""

    level: int
    new_points: int = 0
    removed_points: int = 0
    known_fraction: float = 0.0
    scale: float = float("nan")
    residual_after: float = float("nan")
    seconds: float = 0.0


def lift_zoom_level(points: PointCloud, camera: Camera, image: Tensor, *, depth_estimator, dream_config=None,
                    replace_tolerance: float = 0.05, coarser_factor: float = 1.25,
                    level: int = 0) -> tuple[PointCloud, DreamView, ZoomLevelStats]:
    """Lift one zoom level into the cloud.

    Renders ``points`` [N] into ``camera``, estimates the depth of ``image`` [H,W,3], aligns it to
    the rendered depth (known pixels: the render's coverage; the rest is filled by the seam
    correction), lifts every pixel that is not a stretched depth edge with the footprint
    ``z / f_camera``, and removes the old points that (a) project inside the image onto a
    lifted pixel, (b) lie within ``replace_tolerance`` (relative) of the new depth there and
    (c) are coarser than ``coarser_factor`` times the new point at that pixel; pixels next to a
    stretched depth edge (not lifted) keep their coarse points, which fill them. Points behind
    the surface (occluded here), in front of it, outside the field of view or already as fine
    are kept.

    Returns the new cloud, a :class:`DreamView` of the level (its image, aligned depth and lift
    mask: a training view for the splats) and the level's stats.
    """
    from alignment import stretched_pixels
    from dreamer.scene.loop import DreamConfig, align_view

    t0 = time.perf_counter()
    cfg = dream_config if dream_config is not None else DreamConfig()
    _check_camera(camera)
    _check_image(image, camera, "level image")
    if not isinstance(points, PointCloud):
        raise TypeError(f"points must be a PointCloud, got {type(points).__name__}")
    image = image.to(device=points.device, dtype=torch.float32)
    cam = camera.to(points.device)
    stats = ZoomLevelStats(level=level)

    render = render_points(points, cam, splat_scale=cfg.splat_scale, max_splat_px=cfg.max_splat_px)
    render, masks = clean_coverage(render, close_px=cfg.close_px, grow_px=0)
    known, hole = masks.known, masks.hole
    stats.known_fraction = float(known.float().mean())
    estimated = depth_estimator.estimate(image, camera=cam).to(image)
    check_depth(estimated, cam, "estimated depth of the zoom level")
    if int(known.sum()) >= cfg.min_overlap_pixels:
        aligned = align_view(estimated, render.depth, known, hole, cfg)
        depth = aligned.depth
        stats.scale, stats.residual_after = float(aligned.fit.scale), float(aligned.fit.residual_after)
    else:
        log.warning("zoom level %d: only %d pixels see existing geometry; keeping the estimate's scale",
                    level, int(known.sum()))
        depth = estimated
    depth = depth.clamp_min(1e-6)
    stretched = stretched_pixels(depth, threshold=cfg.stretch_threshold)
    lift_mask = ~stretched
    new = lift(image, depth, cam, lift_mask)

    # Which old points does this level replace?
    H, W = cam.height, cam.width
    uv, z = project_points(points.xyz, cam)
    u, v = uv[:, 0], uv[:, 1]
    inside = (z > 1e-6) & (u >= 0) & (u < W) & (v >= 0) & (v < H) & torch.isfinite(u) & torch.isfinite(v)
    idx = torch.nonzero(inside).squeeze(1)
    replace = torch.zeros(len(points), dtype=torch.bool, device=points.device)
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
        replace[idx] = solid[pv, pu] & near_surface & coarser
    kept = points.select(~replace)
    merged = kept.cat(new)
    stats.new_points, stats.removed_points = len(new), int(replace.sum())
    stats.seconds = time.perf_counter() - t0
    view = DreamView(cam, image, depth, lift_mask, "", {k: v for k, v in asdict(stats).items()})
    return merged, view, stats


def lift_zoom_levels(points: PointCloud, cameras: Sequence[Camera], images: Tensor, *, depth_estimator,
                     dream_config=None, replace_tolerance: float = 0.05, prompts: Sequence[str] | None = None,
                     on_progress: ProgressFn | None = None) -> tuple[PointCloud, list[DreamView], list[ZoomLevelStats]]:
    """Lift levels ``1..N-1`` of a zoom stack (``cameras`` [N] from :func:`level_cameras`,
    ``images`` [N,H,W,3]) into ``points``, coarsest first, each on top of the previous ones.
    Level 0 is the view itself and is not lifted. Returns the multi-resolution cloud, one
    :class:`DreamView` per lifted level and their stats."""
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be a tensor [N,H,W,3], got {getattr(images, 'shape', type(images).__name__)}")
    if images.shape[0] != len(cameras):
        raise ValueError(f"got {images.shape[0]} level images for {len(cameras)} level cameras")
    views, all_stats = [], []
    n = len(cameras)
    for i in range(1, n):
        points, view, stats = lift_zoom_level(points, cameras[i], images[i], depth_estimator=depth_estimator,
                                              dream_config=dream_config, replace_tolerance=replace_tolerance,
                                              level=i)
        if prompts is not None:
            view.prompt = prompts[i]
        views.append(view)
        all_stats.append(stats)
        log.info("zoom level %d/%d: +%d points, -%d coarse points, %.2f s", i, n - 1, stats.new_points,
                 stats.removed_points, stats.seconds)
        if on_progress:
            on_progress("zoom lift", i, n - 1)
    return points, views, all_stats


# ------------------------------------------------------------------------------------------------
# The whole stage
# ------------------------------------------------------------------------------------------------
@dataclass
class DeepZoomResult:
    """The zoomed scene.

    ``result``: the scene with the multi-resolution ``points`` and its views followed by one
    view per lifted level (train splats on it). ``cameras``: the N level cameras. ``images``
    [N,H,W,3]: the zoom stack. ``photo`` [H,W,3]: the scene's render at level 0. ``point``
    [3]: the world point at the zoom centre. ``prompts``: one per level. ``stats``: per lifted
    level. ``view_index``: the zoomed view.
    """

    result: DreamResult
    cameras: list[Camera]
    images: Tensor
    photo: Tensor
    point: Tensor
    prompts: list[str]
    stats: list[ZoomLevelStats]
    view_index: int
    seconds: dict = field(default_factory=dict)

    @property
    def points(self) -> PointCloud:
        return self.result.points


def zoom_scene(result: DreamResult, config: DeepZoomConfig, *, depth_estimator, world=None, pipeline=None,
               scene_prompt: str = "", on_progress: ProgressFn | None = None) -> DeepZoomResult:
    """Zoom into view ``config.zoom_view`` of ``result`` and lift the levels into its cloud.

    Level images come from ``world`` (synthetic oracle) when given, else from ``pipeline``
    (see :func:`level_images`). The dream loop's geometry settings (``result.config``) are used
    for rendering and alignment.
    """
    from dreamer.scene.loop import DreamConfig

    if not isinstance(result, DreamResult):
        raise TypeError(f"result must be a DreamResult, got {type(result).__name__}")
    if not isinstance(config, DeepZoomConfig):
        raise TypeError(f"config must be a DeepZoomConfig, got {type(config).__name__}")
    if not config.enabled:
        raise ValueError("zoom_levels is 0: the zoom stage is off")
    n_views = len(result.views)
    k = config.zoom_view
    if not -n_views <= k < n_views:
        raise ValueError(f"zoom_view {k} is out of range for a scene of {n_views} views")
    k %= n_views
    view = result.views[k]
    if isinstance(result.config, DreamConfig):
        dcfg = result.config
    elif isinstance(result.config, dict):  # a config read back from a file
        from dreamer.configs import dataclass_from_dict

        dcfg = dataclass_from_dict(DreamConfig, result.config, strict=False)
    else:
        dcfg = DreamConfig()
    times: dict[str, float] = {}

    t = time.perf_counter()
    cams = level_cameras(view.camera, config.zoom_center, config.zoom_levels, config.zoom_p)
    prompts = level_prompts(config.zoom_levels, config.zoom_prompts, scene_prompt=scene_prompt or view.prompt,
                            suffixes=config.zoom_suffixes)
    base = render_points(result.points, cams[0].to(result.points.device), splat_scale=dcfg.splat_scale,
                         max_splat_px=dcfg.max_splat_px)
    base, _ = clean_coverage(base, close_px=dcfg.close_px, grow_px=0)
    photo = base.image.float()
    point = zoom_point(view.camera, view.depth, config.zoom_center)
    images = level_images(cams, prompts, world=world, pipeline=pipeline, photo=photo, p=config.zoom_p,
                          steps=config.zoom_steps, guidance=config.zoom_guidance, seed=config.zoom_seed,
                          supersample=config.zoom_supersample, on_progress=on_progress)
    times["level_images"] = time.perf_counter() - t
    t = time.perf_counter()
    points, views, stats = lift_zoom_levels(result.points, cams, images, depth_estimator=depth_estimator,
                                            dream_config=dcfg, replace_tolerance=config.zoom_replace_tolerance,
                                            prompts=prompts, on_progress=on_progress)
    times["lift"] = time.perf_counter() - t
    zoomed = DreamResult(points, list(result.views) + views, result.config)
    return DeepZoomResult(zoomed, cams, images, photo, point, prompts, stats, k, times)


# ------------------------------------------------------------------------------------------------
# Fly-in
# ------------------------------------------------------------------------------------------------
def fly_in_cameras(start: Camera, target: Tensor | Sequence[float], *, frames: int, zoom: float) -> list[Camera]:
    """A dolly of ``frames`` cameras from ``start`` towards the world point ``target`` [3].

    Every camera keeps ``start``'s intrinsics and rotation; its centre moves along the line from
    ``start``'s centre to ``target`` (a real translation: nearer things grow faster, parallax).
    The distance to the target shrinks geometrically, from ``d`` to ``d / zoom``, so the
    magnification at the target grows at a constant rate per frame and the last frame magnifies
    it ``zoom`` times (use ``p^(N-1)``: the deepest level's magnification). The path never
    reaches the target (no near-plane crossing at the end).
    """
    _check_camera(start)
    check_int(frames, "frames", min=2)
    if not (isinstance(zoom, (int, float)) and math.isfinite(zoom) and zoom >= 1):
        raise ValueError(f"zoom must be a number >= 1, got {zoom!r}")
    target = torch.as_tensor(target, dtype=torch.float32, device=start.device).flatten()
    if target.numel() != 3 or not torch.isfinite(target).all():
        raise ValueError(f"target must be a finite point [3], got {target.tolist()}")
    c0 = start.center
    offset = target - c0
    d = float(offset.norm())
    if d < 1e-9:
        raise ValueError("the target coincides with the camera centre")
    if float(offset @ start.forward) <= 0:
        raise ValueError("the target lies behind the start camera")
    out = []
    for j in range(frames):
        s = j / (frames - 1)
        dist = d * zoom ** (-s)
        c2w = start.c2w.clone()
        c2w[:3, 3] = target - offset / d * dist
        out.append(start.with_c2w(c2w))
    return out


def fly_in_near_plane(cameras: Sequence[Camera], target: Tensor, default: float = 0.01, *,
                      fraction: float = 0.05) -> float:
    """A near plane for rendering a fly-in: ``default``, or ``fraction`` of the last camera's
    z-depth to ``target`` [3] when that is smaller, so the zoom point is never clipped as the
    camera arrives (a deep zoom ends far nearer than a scene's usual near plane)."""
    if not cameras:
        raise ValueError("fly_in_near_plane needs at least one camera")
    last = cameras[-1]
    z = float((torch.as_tensor(target, dtype=torch.float32, device=last.device) - last.center) @ last.forward)
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


def render_points_video(points: PointCloud, cameras: Sequence[Camera], path: str | Path, *, fps: int = 24,
                        splat_scale: float = 1.5, max_splat_px: float = 64.0) -> Path:
    """Render ``points`` along ``cameras`` (z-buffered point splats, :func:`render_points`) into an
    H.264 mp4 at ``path``, atomically. One frame per camera."""
    import imageio.v2 as imageio

    from dreamer.io import atomic_path, to_uint8

    if not cameras:
        raise ValueError("render_points_video needs at least one camera")
    path = Path(path)
    with atomic_path(path) as tmp:
        writer = imageio.get_writer(str(tmp), format="FFMPEG", fps=fps, codec="libx264", macro_block_size=16)
        try:
            for cam in cameras:
                r = render_points(points, cam.to(points.device), splat_scale=splat_scale, max_splat_px=max_splat_px)
                writer.append_data(to_uint8(r.image))
        finally:
            writer.close()
    return path


def psnr(image: Tensor, truth: Tensor) -> float:
    """PSNR (dB) of ``image`` against ``truth`` (both [H,W,3] in [0,1]); inf when equal."""
    mse = float(((image.float() - truth.float().to(image.device)) ** 2).mean())
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)


def zoom_metrics(zoomed: DeepZoomResult, before: PointCloud, world=None, *, truth: Tensor | None = None,
                 supersample: int = 2, splat_scale: float = 1.5, max_splat_px: float = 32.0) -> list[dict]:
    """Per level camera: PSNR of the point render with the zoom (``zoomed.points``) and without
    it (``before``, the scene's cloud) against the truth, and the median footprint of the winning
    points in that camera's pixels (1 = the level's own resolution).

    The truth is ``truth`` [N,H,W,3] when given (e.g. ``zoomed.images`` of a synthetic run: they
    are the world's renders), else ``world``'s band-limited render (``supersample``)."""
    if truth is None and world is None:
        raise ValueError("zoom_metrics needs the world or the true level images")
    if truth is not None and (not isinstance(truth, Tensor) or truth.ndim != 4
                              or truth.shape[0] != len(zoomed.cameras)):
        raise ValueError(f"truth must be [N,H,W,3] with N = {len(zoomed.cameras)} levels, "
                         f"got {getattr(truth, 'shape', type(truth).__name__)}")
    out = []
    for i, cam in enumerate(zoomed.cameras):
        ref = truth[i] if truth is not None else world.render(cam, supersample=supersample).image
        row: dict[str, Any] = {"level": i}
        for key, pts in (("with", zoomed.points), ("without", before)):
            r = render_points(pts, cam.to(pts.device), splat_scale=splat_scale, max_splat_px=max_splat_px)
            row[f"psnr_{key}"] = psnr(r.image, ref)
            if r.covered.any():
                px = pts.radius[r.index[r.covered]] * math.sqrt(cam.fx * cam.fy) / r.depth[r.covered]
                row[f"footprint_px_{key}"] = float(px.median())
        out.append(row)
    return out


def write_zoom_outputs(zoomed: DeepZoomResult, config: DeepZoomConfig, out: str | Path,
                       extra: dict | None = None) -> dict[str, Any]:
    """Write the zoom stage's files into ``out`` (a folder): ``level_XX.png`` (the stack),
    ``photo.png`` (the scene's render at level 0), ``points.ply`` (the multi-resolution cloud),
    ``cameras.json`` (the level cameras), ``zoom_2d.mp4`` (the 2D zoom through the stack),
    ``fly_in_points.mp4`` (the dolly rendered from the points) and ``zoom.json`` (stats, plus
    ``extra``). Returns what was written to ``zoom.json``."""
    from dreamer.pipeline.exports import write_cameras_json
    from dreamer.io import save_image, write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(zoomed.images):
        save_image(out / f"level_{i:02d}.png", img)
    save_image(out / "photo.png", zoomed.photo)
    zoomed.points.save_ply(out / "points.ply")
    write_cameras_json(out / "cameras.json", zoomed.cameras)
    if config.zoom_video_seconds_per_level > 0:
        from zoom.video import write_zoom_video

        write_zoom_video(out / "zoom_2d.mp4", zoomed.images, p=config.zoom_p, fps=config.zoom_fps,
                         seconds_per_level=config.zoom_video_seconds_per_level)
    fly = []
    if config.zoom_fly_frames:
        fly = fly_in_cameras(zoomed.cameras[0], zoomed.point, frames=config.zoom_fly_frames,
                             zoom=float(config.zoom_p) ** (config.zoom_levels - 1))
        render_points_video(zoomed.points, fly, out / "fly_in_points.mp4", fps=config.zoom_fps)
    info = {
        "view": zoomed.view_index,
        "point": zoomed.point.tolist(),
        "prompts": zoomed.prompts,
        "points": len(zoomed.points),
        "fly_in_frames": len(fly),
        "seconds": zoomed.seconds,
        "levels": [asdict(s) for s in zoomed.stats],
        "config": config.to_dict(),
        **(extra or {}),
    }
    write_json(out / "zoom.json", info)
    return info
