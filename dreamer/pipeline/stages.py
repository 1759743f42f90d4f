"""One scene, start to finish, in its own folder: resumable, logged, never stale.

Stages: first view (photo, or text-to-image) -> its depth -> the trajectory -> the dream loop
(checkpoint after every view) -> with the refine step, the completion pass ("complete": dream
the cameras the videos will show where the cloud has holes; checkpoint after every new view) ->
exports -> ground-truth metrics (procedural world only) -> Gaussian splats (with the refine step:
repaired novel views, "repair", and depth supervision) and videos (optionally repaired, "repair
video") -> extensions (:mod:`dreamer.pipeline.extend`) -> deep zoom. The folder keeps
``config.json`` (the resolved settings and their hash): a rerun with the same settings
continues where the last one stopped and a finished scene is skipped; a rerun that changed only
a later stage's settings redoes only that stage (the finished dream, its metrics, splats,
videos and zoom are reloaded when their inputs did not change); a rerun whose dream settings
changed is refused (:class:`~dreamer.pipeline.folder.SettingsChanged`) unless told to start
over (``overwrite``). Checkpoints a finished stage no longer needs are deleted (unless
``keep_checkpoints``). Before anything runs, every input is checked
(:func:`dreamer.pipeline.preflight.check_scene`), and temporaries an interrupted run left behind
are deleted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from dreamer.backends import inpaint_weight
from dreamer.backends.model_sets import Backends
from dreamer.cameras import Camera
from dreamer.io import read_json, remove_temporaries, save_image, write_json
from dreamer.pipeline.checkpoint import drop_loop_files, load_checkpoint, load_finished, save_checkpoint, save_finished
from dreamer.pipeline.exports import write_cameras_json, write_scene
from dreamer.pipeline.extend import EXTENSIONS_DIR
from dreamer.pipeline.folder import (OWNED, SettingsChanged, changed_later_inputs, changed_settings, check_inputs_kept,
                                     check_scene_folder, clear_outputs, disk_usage, format_bytes, has_outputs,
                                     input_digests, largest_entries, publish_file, record_inputs)
from dreamer.pipeline.joblog import job_log
from dreamer.pipeline.limits import Limits
from dreamer.pipeline.preflight import check_scene
from dreamer.pipeline.settings import SceneConfig, SceneConfigs
from dreamer.render import check_depth
from dreamer.scene.loop import ProgressFn, dream, filter_estimate
from dreamer.scene.result import DreamResult
from dreamer.trajectories import (Trajectory, center_depth_from, is_trajectory_file, load_trajectory,
                                  make_trajectory)

__all__ = ["SceneOutcome", "run_scene"]

log = logging.getLogger(__name__)


@dataclass
class SceneOutcome:
    """How one scene ended: ``status`` is "done", "skipped" (already complete) or "failed"."""

    name: str
    out: Path
    status: str
    seconds: float = 0.0
    error: str | None = None
    metrics: dict | None = None
    disk_bytes: int | None = None
    """What the scene's folder takes on disk at the end of the run."""


# The splat files SplatConfig.export can ask for.
_SPLAT_FILES = {"ply": "gaussians.ply", "spz": "gaussians.spz"}


def refuse_changed_settings(out: Path, configs: SceneConfigs, *, batch: bool = False) -> None:
    """Raise :class:`SettingsChanged` when ``out`` holds finished work of other dream settings
    (:func:`~dreamer.pipeline.folder.changed_settings`); the message names the changes and the
    flag that starts the scene over."""
    changed = changed_settings(out, configs)
    if changed is not None:
        what = "such scenes" if batch else "it"
        raise SettingsChanged(f"{out} holds a scene dreamed with other settings ({changed}); rerun with "
                              f"--overwrite to start {what} over (deleting its outputs), or choose another --out")


def _prepare_folder(out: Path, configs: SceneConfigs, restart: bool = False,
                    overwrite: bool = False) -> tuple[str, bool]:
    """Returns (result hash, already done). ``restart`` clears the scene's outputs; so does
    ``overwrite`` when the settings the dream depends on changed, which otherwise raises
    :class:`SettingsChanged`. Other changes (splats, videos, zoom) only redo their own stages."""
    check_scene_folder(out, take_over=restart or overwrite)
    out.mkdir(parents=True, exist_ok=True)
    for tmp in remove_temporaries(out, (*OWNED, EXTENSIONS_DIR)):  # the scene's own folders
        log.info("%s: removed %s, left by an interrupted run", out, tmp.relative_to(out))
    dream_digest, digest = configs.dream_hash(), configs.result_hash()
    cfg_file = out / "config.json"
    if restart:
        check_inputs_kept(out, configs, "--restart")
        log.info("%s: --restart: starting this scene over", out)
        clear_outputs(out)
    elif overwrite and (changed := changed_settings(out, configs)) is not None:
        check_inputs_kept(out, configs, "--overwrite (the settings changed)")
        log.warning("%s: settings changed (%s): --overwrite: starting this scene over", out, changed)
        clear_outputs(out)
    else:
        refuse_changed_settings(out, configs)
    digests = input_digests(configs)  # each input file read once here
    later = changed_later_inputs(out, configs, digests) if has_outputs(out) else None  # before the record is rewritten
    if later is not None:
        log.info("%s: %s: redoing the stages that read it", out, later)
        # The record is rewritten below: a rerun of this one, killed before those stages end, must not skip them.
        (out / "DONE").unlink(missing_ok=True)
    write_json(cfg_file, {"hash": digest, "dream_hash": dream_digest, **configs.to_dict()})
    record_inputs(out, configs, digests)
    done = out / "DONE"
    return digest, later is None and done.exists() and done.read_text().strip() == digest


def _first_view(configs: SceneConfigs, backends: Backends, camera: Camera,
                limits: Limits) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The first image [H,W,3] and, when known, its depth [H,W]."""
    sc = configs.scene
    depth = None
    if sc.image:
        from dreamer.pipeline.inputs import load_depth, load_image

        loaded = load_image(sc.image, sc.width, sc.height, fit=sc.fit, max_pixels=limits.photo_pixels)
        image = loaded.image
        if loaded.outpaint_mask is not None and loaded.outpaint_mask.any():
            g = torch.Generator().manual_seed(configs.dream.seed)
            filled = backends.inpainter.inpaint(image, loaded.outpaint_mask, sc.prompt, camera=camera, generator=g)
            weight = inpaint_weight(backends.inpainter, loaded.outpaint_mask)
            image = torch.where(weight[..., None] > 0, filled, image)
        if sc.depth:
            depth = load_depth(sc.depth, sc.width, sc.height, fit=sc.fit, like=loaded, max_pixels=limits.photo_pixels)
    else:
        if sc.depth:
            raise ValueError("--depth needs --image (the depth map belongs to a photo)")
        if not sc.prompt.strip() and configs.models.models != "synthetic":
            raise ValueError("give --prompt (text to scene) or --image (photo to scene)")
        g = torch.Generator().manual_seed(configs.dream.seed)
        image = backends.image_generator.generate(sc.prompt, width=sc.width, height=sc.height, generator=g)
        world = getattr(backends, "world", None)
        if world is not None:
            # The procedural world's "photo" comes with its true depth (RGBD input), so the
            # scene is in the world's own scale and ground-truth metrics need no global fit.
            depth = world.render(camera).depth
    return image.float(), depth


def _trajectory(sc: SceneConfig, first: Camera, center_depth: float, name: str, n: int | None) -> Trajectory:
    if is_trajectory_file(name):
        return load_trajectory(name, first)
    params = {} if n is None else {"n": n}
    return make_trajectory(name, first, center_depth, **params)


def run_scene(configs: SceneConfigs, out: str | Path, backends: Backends, *,
              on_progress: ProgressFn | None = None, name: str | None = None, limits: Limits = Limits(),
              restart: bool = False, overwrite: bool = False, keep_checkpoints: bool = False) -> SceneOutcome:
    """Dream one scene into ``out``. Errors propagate; the caller decides what a failure means.

    Every input is checked first, within ``limits`` (a bad one raises ValueError / TypeError
    before the folder is touched). ``restart``: clear the scene's outputs and checkpoints first.
    ``overwrite``: start the scene over when ``out`` holds one dreamed with other settings
    (otherwise :class:`~dreamer.pipeline.folder.SettingsChanged` is raised). ``keep_checkpoints``:
    keep the checkpoints of finished stages (the dream loop's per-view files, the splats'
    optimizer state), which are otherwise deleted once the stage's result is saved.
    """
    out = Path(out)
    name = name or out.name
    t0 = time.time()
    check_scene(configs, out, limits)
    if configs.scene.extensions and configs.splats is None:
        raise ValueError("extensions fine-tune the scene's splats: they need the splat stage (drop --no-splats)")
    digest, done = _prepare_folder(out, configs, restart, overwrite)
    if done:
        log.info("%s: already complete (config %s), skipping", name, digest)
        return SceneOutcome(name, out, "skipped", disk_bytes=disk_usage(out))

    with job_log(out / "run.log"):
        result, depth, reused = _dream_stage(configs, out, backends, on_progress, limits, name, keep_checkpoints)
        refine_figures: dict = {}
        completion = None
        if configs.refine.refine and configs.refine.complete:
            result, completion = _complete_stage(configs, result, out, backends, on_progress, depth, refine_figures)
        if _exports_key(out) != completion:  # the completion views were added, changed or dropped
            if (out / "views").is_dir():
                shutil.rmtree(out / "views")
            write_scene(out, result)
            _set_exports_key(out, completion)
            reused = False
        metrics = _metrics_stage(result, out, backends, name, reused)
        if configs.refine.refine:
            metrics = {**(metrics or {}), "refine": refine_figures}
            write_json(out / "metrics.json", metrics)
        if configs.splats is not None:
            splat_figures = _splat_stage(configs, result, out, on_progress, depth, backends, keep_checkpoints)
            metrics = {**(metrics or {}), "splats": splat_figures}
            write_json(out / "metrics.json", metrics)
        if configs.scene.extensions:
            from dreamer.pipeline.extend import apply_extensions

            apply_extensions(configs, out, backends, on_progress=on_progress)
        if configs.zoom.enabled:
            _zoom_stage(configs, result, out, backends, on_progress, keep_checkpoints)
        elif (out / "zoom").exists():  # switched off since the last run: no stale zoom outputs
            shutil.rmtree(out / "zoom")
        (out / "DONE").write_text(digest + "\n")
        size = disk_usage(out)
        log.info("%s: %s on disk (%s)", name, format_bytes(size),
                 ", ".join(f"{n} {format_bytes(b)}" for n, b in largest_entries(out)))
        return SceneOutcome(name, out, "done", time.time() - t0, metrics=metrics, disk_bytes=size)


def _dream_stage(configs: SceneConfigs, out: Path, backends: Backends, on_progress: ProgressFn | None,
                 limits: Limits, name: str, keep_checkpoints: bool) -> tuple[DreamResult, torch.Tensor, bool]:
    """The dreamed scene, its first view's depth, and whether it was reloaded finished (then no
    model runs and no file is rewritten). Otherwise: the first view, the loop (resumed from its
    checkpoint), the exports, then the finished result saved for later reruns."""
    finished = load_finished(out / "checkpoint")
    if finished is not None:
        log.info("%s: the dream is finished (%d views); reusing it", name, len(finished.views))
        result = DreamResult(finished.points, finished.views, configs.dream)
        return result, result.views[0].depth, True

    sc = configs.scene
    first = configs.scene.first_camera()
    resume = load_checkpoint(out / "checkpoint")
    if resume is not None:
        log.info("%s: resuming after %d finished views", name, len(resume.views))
        image, depth = resume.views[0].image, resume.views[0].depth
        depth_estimated = False  # the checkpoint's first view is dreamed already
    else:
        image, depth = _first_view(configs, backends, first, limits)
        depth_estimated = depth is None
        if depth_estimated:
            # Filtered here, as dream() would, so the trajectory is placed from the first view's
            # depth as the checkpoint keeps it (a resumed run places it the same).
            depth = backends.depth_estimator.estimate(image, camera=first)
            check_depth(depth, first, "estimated depth of the first view")
            depth, _ = filter_estimate(depth, image, configs.dream)
    save_image(out / "first_view.png", image)
    (out / "prompt.txt").write_text(sc.prompt + "\n")

    traj = _trajectory(sc, first, center_depth_from(depth), sc.trajectory, sc.views)
    prompts = list(sc.prompts) if sc.prompts else traj.resolved_prompts(sc.prompt)
    if len(prompts) != len(traj.cameras):
        raise ValueError(f"--prompts has {len(prompts)} prompts but the trajectory has {len(traj.cameras)} cameras")
    write_cameras_json(out / "cameras.json", traj.cameras)

    result = dream(
        image, traj.cameras, prompts, inpainter=backends.inpainter, depth_estimator=backends.depth_estimator,
        config=configs.dream, depth=depth, depth_estimated=depth_estimated,
        on_progress=on_progress, resume=resume, on_view=lambda r: save_checkpoint(out / "checkpoint", r),
    )
    write_scene(out, result)
    # Saved after the exports: a run killed before this point dreams nothing again (the loop's
    # checkpoint has every view) but writes the exports again.
    save_finished(out / "checkpoint", result)
    if not keep_checkpoints:
        drop_loop_files(out / "checkpoint")
    return result, depth, False


def _metrics_stage(result: DreamResult, out: Path, backends: Backends, name: str, reused: bool) -> dict | None:
    """Ground-truth metrics on the procedural world (None for other models): those in
    metrics.json when the dream was reloaded finished (their inputs did not change)."""
    world = getattr(backends, "world", None)
    if world is None:
        return None
    metrics = None
    if reused and (out / "metrics.json").is_file():
        try:
            # A figure without data (one camera: no dreamed view) is NaN, written as null.
            metrics = {k: math.nan if v is None else v for k, v in read_json(out / "metrics.json").items()}
        except (ValueError, OSError, AttributeError):
            metrics = None
    if metrics is None:
        from dreamer.scene.metrics import world_metrics

        metrics = world_metrics(result, world, backends.depth_estimator)
        write_json(out / "metrics.json", metrics)
    log.info("%s: AbsRel aligned %.4f (unaligned %.4f), seam jump %.4f, point-to-surface %.4f of extent",
             name, metrics["abs_rel_aligned"], metrics["abs_rel_unaligned"], metrics["seam_jump_median"],
             metrics["point_to_surface_rel_extent"])
    return metrics


def _refiner(configs: SceneConfigs, backends: Backends):
    """The refine step's repair model for this scene's model set (loaded on first use)."""
    from dreamer.backends.model_sets import build_refiner

    return build_refiner(configs.models, configs.refine, world=getattr(backends, "world", None),
                         prompt=configs.scene.prompt)


def _render_path(configs: SceneConfigs, result: DreamResult, depth0: torch.Tensor) -> list[Camera]:
    sc = configs.scene
    return _trajectory(sc, result.views[0].camera, center_depth_from(depth0), sc.render_trajectory,
                       sc.render_frames).cameras


# Which completion pass (its fingerprint) the exports hold the views of; no file: none.
_EXPORTS_MARKER = Path("complete") / "exports.json"


def _exports_key(out: Path) -> str | None:
    try:
        return read_json(out / _EXPORTS_MARKER).get("completion")
    except (ValueError, OSError, AttributeError):
        return None


def _set_exports_key(out: Path, completion: str | None) -> None:
    if completion is None:
        if (out / "complete").exists():  # switched off since the last run: no stale completion views
            shutil.rmtree(out / "complete")
    else:
        write_json(out / _EXPORTS_MARKER, {"completion": completion})


def _complete_stage(configs: SceneConfigs, result: DreamResult, out: Path, backends: Backends,
                    on_progress: ProgressFn | None, depth0: torch.Tensor, figures: dict) -> tuple[DreamResult, str]:
    """The completion pass (:func:`dreamer.scene.completion.complete_scene`) over the render
    path's cameras (``complete_path_frames`` of them, spread evenly) and then, when splats are
    trained, the repair rounds' cameras; resumable from ``complete/`` (a checkpoint after every
    new view and at the end). Returns the completed scene and the fingerprint of the pass's inputs."""
    import numpy as np

    from dreamer.scene.completion import COMPLETION, CompletionState, complete_scene
    from dreamer.splats.train import describe_refiner, repair_cameras

    rc = configs.refine
    path = _render_path(configs, result, depth0)
    keep = sorted(set(np.linspace(0, len(path) - 1, min(rc.complete_path_frames, len(path))).round().astype(int)))
    cameras = [path[i] for i in keep]
    tiers = [0] * len(cameras)
    if configs.splats is not None and rc.complete_repair_cameras:
        extra = [c for ring in repair_cameras(result, rc.splat_config(configs.splats)) for c in ring]
        cameras += extra
        tiers += [1] * len(extra)
    refiner = _refiner(configs, backends) if rc.complete_suspect_views > 0 else None
    suspect = dict(suspect_views=rc.complete_suspect_views, suspect_threshold=rc.complete_suspect_threshold,
                   suspect_color=rc.complete_suspect_color, suspect_nearer=rc.complete_suspect_nearer)
    h = hashlib.sha256(f"{configs.dream_hash()} {rc.complete_threshold} {rc.complete_max_views} "
                       f"{rc.complete_close_px} {tiers} {sorted(suspect.items())} "
                       f"{describe_refiner(refiner)}".encode())
    for cam in cameras:
        h.update(cam.K.detach().cpu().float().numpy().tobytes() + cam.c2w.detach().cpu().float().numpy().tobytes())
    fingerprint = h.hexdigest()[:20]

    folder = out / "complete"
    resume = None
    saved, extra_state = load_checkpoint(folder, with_extra=True)
    if saved is not None and extra_state.get("fingerprint") == fingerprint:
        resume = CompletionState(DreamResult(saved.points.to(result.points.device), saved.views, result.config),
                                 list(extra_state["holes"]), list(extra_state["dreamed"]),
                                 list(extra_state.get("suspects", [])), list(extra_state.get("suspect_dreamed", [])))
        log.info("completion: resuming with %d views dreamed", len(resume.dreamed))
    elif folder.exists():
        shutil.rmtree(folder)

    def checkpoint(state: CompletionState) -> None:
        save_checkpoint(folder, state.result, extra={"fingerprint": fingerprint, **state.to_dict()})

    state = complete_scene(result, cameras, inpainter=backends.inpainter, depth_estimator=backends.depth_estimator,
                           threshold=rc.complete_threshold, max_views=rc.complete_max_views,
                           close_px=rc.complete_close_px, tiers=tiers, resume=resume, on_view=checkpoint,
                           on_progress=on_progress, refiner=refiner, **suspect)
    path_holes = [h for h, t in zip(state.holes, tiers) if t == 0]
    figures.update(completion_cameras=len(cameras), completion_path_cameras=len(path_holes),
                   completion_views=sum(bool(v.stats.get(COMPLETION)) for v in state.result.views),
                   completion_path_largest_hole=max(path_holes),
                   completion_largest_hole=max(state.holes),
                   completion_cameras_over_threshold=sum(h > rc.complete_threshold for h in state.holes),
                   completion_suspect_views=len(state.suspect_dreamed),
                   completion_suspect_lifted=sum(int(v.stats.get("suspect_nearer", 0)) for v in state.result.views))
    return state.result, fingerprint


def _splat_stage(configs: SceneConfigs, result: DreamResult, out: Path, on_progress: ProgressFn | None,
                 depth0: torch.Tensor, backends: Backends, keep_checkpoints: bool = False) -> dict:
    """Train the splats (with the refine step: repaired views and depth supervision), write the
    splat files and the videos; returns the figures for metrics.json."""
    from dreamer.splats import train_gaussians

    rc = configs.refine
    refiner = _refiner(configs, backends) if rc.refine else None
    splat_config = rc.splat_config(configs.splats)
    path = _render_path(configs, result, depth0) if splat_config.path_views > 0 else None
    gaussians = train_gaussians(result, splat_config, on_progress, checkpoint_dir=out / "splats", refiner=refiner,
                                keep_checkpoint=keep_checkpoints, path_cameras=path)
    _save_gaussians(gaussians, out, configs.splats)
    coverage = _render_videos(configs, gaussians, result, out, on_progress, depth0,
                              refiner if rc.refine_video else None)
    figures = {"gaussians": len(gaussians), "depth_weight": splat_config.depth_weight,
               "video_frames": len(coverage), "video_coverage_min": min(coverage),
               "video_coverage_mean": sum(coverage) / len(coverage),
               "video_frames_below_999": sum(c < 0.999 for c in coverage)}
    if refiner is not None:
        done = read_json(out / "splats" / "done.json")
        figures["repaired_views"] = int(done.get("repaired_views", 0))
    log.info("splats: %d Gaussians; fly-through coverage (alpha > 0.99) min %.4f, mean %.4f of each frame",
             len(gaussians), figures["video_coverage_min"], figures["video_coverage_mean"])
    return figures


def _save_gaussians(gaussians, folder: Path, splats) -> None:
    """Write the splat files ``splats.export`` asks for into ``folder`` and remove the others,
    so that no file of an earlier run's settings stays behind. The .ply is the splat stage's own
    result (``folder/splats/gaussians.ply``) under the scene's name: one file on disk."""
    from dreamer.splats.train import RESULT_FILE

    for fmt, name in _SPLAT_FILES.items():
        path = folder / name
        if fmt not in splats.export:
            path.unlink(missing_ok=True)
        elif fmt == "ply":
            publish_file(folder / "splats" / RESULT_FILE, path)
        else:
            gaussians.save_spz(path, version=splats.spz_version)
    sizes = ", ".join(f"{_SPLAT_FILES[f]} {(folder / _SPLAT_FILES[f]).stat().st_size / 1e6:.2f} MB"
                      for f in _SPLAT_FILES if f in splats.export)
    log.info("%s: %d Gaussians: %s", folder, len(gaussians), sizes)


def _stage_key(*parts) -> str:
    """A fingerprint of a stage's inputs (plain values; files named among them count by content)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, default=str).encode())
        if isinstance(part, str) and Path(part).is_file():
            h.update(Path(part).read_bytes())
    return h.hexdigest()[:20]


def _stage_done(marker: Path, key: str, outputs: list[Path]) -> bool:
    """Whether ``marker`` says the stage ran on inputs ``key`` and its ``outputs`` are there."""
    try:
        return read_json(marker).get("key") == key and all(p.exists() for p in outputs)
    except (ValueError, OSError, AttributeError):
        return False


def _render_videos(configs: SceneConfigs, gaussians, result: DreamResult, out: Path,
                   on_progress: ProgressFn | None, depth0: torch.Tensor, refiner=None) -> list[float]:
    """The fly-through videos in ``videos/`` (with ``refiner``, also the repaired one), rendered
    again only when the splats, the render path or the repair model changed (``videos/done.json``
    holds the fingerprint of them and each frame's coverage, which is returned)."""
    from dreamer.splats.train import describe_refiner
    from dreamer.splats.video import render_video

    sc = configs.scene
    stem = Path(sc.render_trajectory).stem
    folder, marker = out / "videos", out / "videos" / "done.json"
    key = _stage_key(read_json(out / "splats" / "done.json").get("fingerprint"), sc.render_trajectory,
                     sc.render_frames, describe_refiner(refiner))
    if _stage_done(marker, key, [folder / f"{stem}.mp4"]):
        coverage = read_json(marker).get("coverage")
        if isinstance(coverage, list) and coverage:
            log.info("videos: unchanged (same splats, render path and repair model); kept")
            return [float(c) for c in coverage]
    if folder.exists():  # no videos of another render path left beside the new ones
        shutil.rmtree(folder)
    files = render_video(gaussians, _render_path(configs, result, depth0), folder, name=stem,
                         on_progress=on_progress, refiner=refiner, reference=result.views[0].image,
                         seed=configs.dream.seed)
    write_json(marker, {"key": key, "coverage": files.coverage})
    return files.coverage


def _zoom_stage(configs: SceneConfigs, result: DreamResult, out: Path, backends: Backends,
                on_progress: ProgressFn | None, keep_checkpoints: bool = False) -> None:
    """Zoom into a view, lift the levels into the cloud, write ``zoom/`` (stack, multi-resolution
    points, 2D zoom and fly-in videos) and, with splats on, train splats on the zoomed scene.
    Skipped when ``zoom/done.json`` says it ran with the same dream, splat and zoom settings."""
    from dreamer.deepzoom import (train_zoom_splats, write_zoom_outputs, write_zoom_splat_outputs, zoom_metrics,
                                  zoom_scene)

    zc = configs.zoom
    folder = out / "zoom"
    marker = folder / "done.json"
    key = _stage_key(configs.dream_hash(), None if configs.splats is None else configs.splats.to_dict(),
                     dataclasses.asdict(zc))
    if _stage_done(marker, key, [folder / "points.ply"]):
        log.info("zoom: unchanged (same dream, splat and zoom settings); kept")
        return
    if folder.exists():  # other zoom settings than last time: keep only the splats' own checkpoint
        for p in folder.iterdir():
            if p.name != "splats":
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    world = getattr(backends, "world", None)
    pipeline = None if world is not None else getattr(backends.image_generator, "pipe", None)
    zoomed = zoom_scene(result, zc, depth_estimator=backends.depth_estimator, world=world, pipeline=pipeline,
                        inpainter=backends.inpainter, scene_prompt=configs.scene.prompt, on_progress=on_progress)
    extra = {}
    if world is not None:
        extra["metrics"] = zoom_metrics(zoomed, result.points, truth=zoomed.images)  # the world's renders
        log.info("zoom: PSNR per level without / with the zoom: %s",
                 [(round(m["psnr_without"], 2), round(m["psnr_with"], 2)) for m in extra["metrics"]])
    write_zoom_outputs(zoomed, zc, folder, extra=extra)
    if configs.splats is not None and zc.zoom_splats:
        splats = train_zoom_splats(zoomed, configs.splats, antialiased=zc.zoom_antialiased, on_progress=on_progress,
                                   checkpoint_dir=folder / "splats", keep_checkpoint=keep_checkpoints)
        write_zoom_splat_outputs(splats, zoomed, zc, folder, near_plane=configs.splats.near_plane,
                                 export=configs.splats.export, spz_version=configs.splats.spz_version,
                                 on_progress=on_progress)
    write_json(marker, {"key": key})
