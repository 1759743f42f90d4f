"""The whole zoom of a dreamed scene: level cameras, level images, lifting."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from torch import Tensor

from dreamer.deepzoom.config import DeepZoomConfig, ProgressFn
from dreamer.deepzoom.levels import LocalFrame, level_cameras, level_prompts, zoom_point
from dreamer.deepzoom.lifting import ZoomLevelStats, lift_zoom_levels
from dreamer.deepzoom.sampling import level_images
from dreamer.pointcloud import PointCloud
from dreamer.render import clean_coverage, render_points
from dreamer.scene.result import DreamResult
from dreamer.splats.lod import LevelsOfDetail

__all__ = ["DeepZoomResult", "zoom_scene"]


@dataclass
class DeepZoomResult:
    """The zoomed scene.

    ``result``: the scene with the multi-resolution ``points`` and its views followed by one
    view per lifted level and then the dolly views (train splats on it). ``lod``: the levels of detail of those points
    (one entry each). ``cameras``: the N level cameras. ``images`` [N,H,W,3]: the zoom stack.
    ``photo`` [H,W,3]: the scene's render at level 0 and ``photo_mask`` [H,W] the pixels it
    covers. ``point`` [3] (float64): the world point at the zoom centre, the origin of
    :attr:`frame`. ``prompts``: one per level. ``stats``: per lifted level. ``view_index``: the
    zoomed view. ``p``: the zoom factor per level. ``dolly_levels``: the levels that got a dolly
    view (:mod:`dreamer.deepzoom.dolly`; the last ``len(dolly_levels)`` views of ``result``) and
    ``dolly_stats`` the stats of every level's dolly camera.
    """

    result: DreamResult
    lod: LevelsOfDetail
    cameras: list
    images: Tensor
    photo: Tensor
    photo_mask: Tensor
    point: Tensor
    prompts: list[str]
    stats: list[ZoomLevelStats]
    view_index: int
    p: int = 2
    seconds: dict = field(default_factory=dict)
    dolly_levels: list[int] = field(default_factory=list)
    dolly_stats: list = field(default_factory=list)

    @property
    def points(self) -> PointCloud:
        return self.result.points

    @property
    def frame(self) -> LocalFrame:
        """The local frame centred on the zoom point."""
        return LocalFrame(self.point)

    @property
    def magnification(self) -> float:
        """How many times the deepest level magnifies the view."""
        return float(self.p) ** (len(self.cameras) - 1)

    def fly_in_cameras(self, frames: int, *, frame: LocalFrame | None = None) -> list:
        """The fly-in of this zoom (:func:`~dreamer.deepzoom.flyin.fly_in_cameras`): from the
        zoomed view itself to the deepest magnification, re-centred on the zoom point during
        the first level; in ``frame`` when given (else the world frame)."""
        from dreamer.deepzoom.flyin import fly_in_cameras

        start = self.result.views[self.view_index].camera
        return fly_in_cameras(start, self.point, frames=frames, zoom=self.magnification, frame=frame,
                              end_K=self.cameras[0].K, recenter_zoom=float(self.p))

    def finest(self) -> tuple[PointCloud, LevelsOfDetail]:
        """The points no finer level covers (and their levels of detail): one resolution per
        region, the finest there is."""
        keep = self.lod.lod_out == 0
        return self.points.select(keep), self.lod.select(keep)


def zoom_scene(result: DreamResult, config: DeepZoomConfig, *, depth_estimator, world=None, pipeline=None,
               inpainter=None, scene_prompt: str = "", on_progress: ProgressFn | None = None) -> DeepZoomResult:
    """Zoom into view ``config.zoom_view`` of ``result`` and lift the levels into its cloud.

    Level images come from ``world`` (synthetic oracle) when given, else from ``pipeline``
    (see :func:`level_images`; the scene's render at level 0 guides level 0 where it has points).
    With ``inpainter`` (the scene's) and ``config.zoom_dolly_views`` every level ``i >= 1`` also
    gets a dolly view (:mod:`dreamer.deepzoom.dolly`): the fly-in camera of the same
    magnification, dreamed on the zoomed cloud (only where it repaints something). The dream
    loop's geometry settings (``result.config``) are used for rendering and alignment.
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
    base, masks = clean_coverage(base, close_px=dcfg.close_px, grow_px=0)
    photo = base.image.float()
    point = zoom_point(view.camera, view.depth, config.zoom_center)
    images = level_images(cams, prompts, world=world, pipeline=pipeline, photo=photo, photo_mask=masks.known,
                          p=config.zoom_p, steps=config.zoom_steps, guidance=config.zoom_guidance,
                          seed=config.zoom_seed, supersample=config.zoom_supersample, on_progress=on_progress)
    times["level_images"] = time.perf_counter() - t
    t = time.perf_counter()
    points, lod, views, stats = lift_zoom_levels(result.points, cams, images, depth_estimator=depth_estimator,
                                                 dream_config=dcfg, replace_tolerance=config.zoom_replace_tolerance,
                                                 view=(view.camera, view.depth), prompts=prompts,
                                                 on_progress=on_progress)
    times["lift"] = time.perf_counter() - t
    dolly_levels = list(range(1, config.zoom_levels)) if inpainter is not None and config.zoom_dolly_views else []
    dolly_stats: list = []
    if dolly_levels:
        from dreamer.deepzoom.dolly import dolly_level_cameras, dream_dolly_views

        t = time.perf_counter()
        dolly_cams = dolly_level_cameras(view.camera, point, cams, config.zoom_p, dolly_levels)
        points, lod, dolly, dolly_stats = dream_dolly_views(
            points, lod, dolly_cams, dolly_levels, inpainter=inpainter, depth_estimator=depth_estimator,
            dream_config=dcfg, edge_px=config.zoom_dolly_edge_px, prompts=[prompts[i] for i in dolly_levels],
            seed=config.zoom_seed, on_progress=on_progress)
        views = views + dolly
        dolly_levels = [st.level for st in dolly_stats if st.repainted_fraction > 0]
        times["dolly"] = time.perf_counter() - t
    zoomed = DreamResult(points, list(result.views) + views, result.config)
    return DeepZoomResult(zoomed, lod, cams, images, photo, masks.known, point, prompts, stats, k, config.zoom_p,
                          times, dolly_levels, dolly_stats)
