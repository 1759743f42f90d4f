"""The zoom stage's files: the stack, the multi-resolution cloud, splats, 2D zoom and fly-in videos."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from dreamer.deepzoom.config import DeepZoomConfig, ProgressFn
from dreamer.deepzoom.flyin import SplatsOverPoints, fly_in_near_plane, render_points_video
from dreamer.deepzoom.stage import DeepZoomResult
from dreamer.deepzoom.training import ZoomSplats

__all__ = ["write_zoom_outputs", "write_zoom_splat_outputs"]


def write_zoom_outputs(zoomed: DeepZoomResult, config: DeepZoomConfig, out: str | Path,
                       extra: dict | None = None) -> dict[str, Any]:
    """Write the zoom stage's files into ``out`` (a folder): ``level_XX.png`` (the stack),
    ``photo.png`` (the scene's render at level 0), ``points.ply`` (the multi-resolution cloud,
    the finest level of each region), ``cameras.json`` (the level cameras), ``zoom_2d.mp4`` (the
    2D zoom through the stack), ``fly_in_points.mp4`` (the dolly rendered from the points, each
    frame from the level of detail that matches it, with no gaps) and ``zoom.json`` (stats of the
    levels and of the dolly views, plus ``extra``). Returns what was written to ``zoom.json``."""
    from dreamer.io import save_image, write_json
    from dreamer.pipeline.exports import write_cameras_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(zoomed.images):
        save_image(out / f"level_{i:02d}.png", img)
    save_image(out / "photo.png", zoomed.photo)
    zoomed.finest()[0].save_ply(out / "points.ply")
    write_cameras_json(out / "cameras.json", zoomed.cameras)
    if config.zoom_video_seconds_per_level > 0:
        from zoom.video import write_zoom_video

        write_zoom_video(out / "zoom_2d.mp4", zoomed.images, p=config.zoom_p, fps=config.zoom_fps,
                         seconds_per_level=config.zoom_video_seconds_per_level)
    fly = []
    if config.zoom_fly_frames:
        frame = zoomed.frame
        fly = zoomed.fly_in_cameras(config.zoom_fly_frames, frame=frame)
        render_points_video(frame.points(zoomed.points), fly, out / "fly_in_points.mp4", fps=config.zoom_fps,
                            lod=zoomed.lod)
    info = {
        "view": zoomed.view_index,
        "point": zoomed.point.tolist(),
        "prompts": zoomed.prompts,
        "points": len(zoomed.points),
        "points_finest": int((zoomed.lod.lod_out == 0).sum()),
        "magnification": zoomed.magnification,
        "fly_in_frames": len(fly),
        "seconds": zoomed.seconds,
        "levels": [asdict(s) for s in zoomed.stats],
        "dolly_views": [asdict(s) for s in zoomed.dolly_stats],
        "config": config.to_dict(),
        **(extra or {}),
    }
    write_json(out / "zoom.json", info)
    return info


def write_zoom_splat_outputs(splats: ZoomSplats, zoomed: DeepZoomResult, config: DeepZoomConfig, out: str | Path, *,
                             near_plane: float = 0.01, export: tuple[str, ...] = ("ply",), spz_version: int = 4,
                             on_progress: ProgressFn | None = None) -> dict[str, Any]:
    """Write the splats of a zoomed scene into ``out``: ``gaussians.ply`` (the finest level of
    each region: what standard viewers show), ``gaussians_lod.ply`` (every level with its
    level-of-detail properties), ``gaussians.spz`` with ``"spz"`` in ``export`` (:meth:`ZoomSplats.save`)
    and, with fly-in frames, ``fly_in.mp4`` (the dolly rendered from
    the splats in the zoom point's local frame, over the gap-free point render of each frame:
    :class:`~dreamer.deepzoom.flyin.SplatsOverPoints`), ``fly_in_depth.mp4`` (each frame's depth mapped
    between its own percentiles, as depths shrink a thousandfold on the way) and a preview GIF.
    Returns the files written."""
    from dreamer.splats.video import render_video

    out = Path(out)
    files: dict[str, Any] = {k: str(v) for k, v in splats.save(out, export=export, spz_version=spz_version).items()}
    if config.zoom_fly_frames:
        frame = splats.frame
        cams = zoomed.fly_in_cameras(config.zoom_fly_frames, frame=frame)
        # The camera ends p^(N-1) times nearer the zoom point (the local origin): pull the near
        # plane in with it.
        near = fly_in_near_plane(cams, [0.0, 0.0, 0.0], near_plane)
        frames = SplatsOverPoints(splats.gaussians, frame.points(zoomed.points), zoomed.lod, near)
        video = render_video(frames, cams, out, name="fly_in", fps=config.zoom_fps, depth_per_frame=True,
                             on_progress=on_progress)
        files.update(fly_in=str(video.rgb), fly_in_depth=str(video.depth))
    return files
