"""The web app: a prompt or a photo in, an explorable 3D scene out; and Powers-of-Ten zooms.

    python -m apps.gradio_app                         # http://127.0.0.1:7860, real models
    python -m apps.gradio_app --models synthetic      # offline: the procedural world, no weights
    python -m apps.gradio_app --port 8000 --concurrency 2 --out runs/app

Tabs: **Scene** (text and/or photo -> dreamed views, Gaussian splats in a 3D viewer, fly-through
and depth videos, downloads) and **Zoom** (prompts per level -> a zoom stack and its video).

Each visitor gets a folder of their own (``<out>/sessions/<session>/``) and per-session state;
the model weights are loaded once per process and shared (:func:`build_backends` caches them).
Work goes through gradio's queue: ``--concurrency`` jobs run at once (default 1, scene and zoom
together), the others see their queue position. Inputs are checked before any work starts;
a failed or cancelled run shows a readable message and the app stays usable.
"""

from __future__ import annotations

import os

# Set before gradio is imported: otherwise it reports usage to outside hosts.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import zipfile  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

import gradio as gr  # noqa: E402

from apps.inputs import (  # noqa: E402
    DEPTH_TYPES,
    IMAGE_TYPES,
    TRAJECTORY_TYPES,
    InputError,
    Limits,
    check_number,
    check_prompt_lines,
    check_text,
    check_upload,
    copy_upload,
    safe_session_id,
)

log = logging.getLogger("apps.gradio_app")

MODEL_SETS = ("default", "tiny", "synthetic")
ZOOM_MODEL_SETS = ("default", "tiny")
SCENE_TRAJECTORIES = ("lookaround", "lookdown", "rotate360", "forward", "backward", "moveright", "orbit")
RENDER_PATHS = ("llff", "back_and_forth", "headbanging")
GPU_QUEUE = "gpu"
# prompt, photo, depth, negative, trajectory, trajectory file, views, steps, guidance, seed, gaussian iterations,
# model set, size, video frames: offline models and small sizes (the splats take the time on a CPU:
# about 10 s for the 64 px ones, a minute or two for the 96 px one on a busy 2-core machine)
SCENE_EXAMPLES = (
    ("", None, None, "", "lookaround", None, 4, 10, 7.5, 0, 100, "synthetic", 96, 24),
    ("", None, None, "", "orbit", None, 3, 10, 7.5, 1, 60, "synthetic", 64, 24),
    ("a cozy reading room", None, None, "", "lookaround", None, 2, 2, 7.5, 0, 50, "tiny", 64, 16),
)  # one concurrency group: scene and zoom jobs share the limit


@dataclass(frozen=True)
class AppSettings:
    """How the app is served; one object per process, no per-visitor state."""

    models: str = "default"
    """Model set preselected in both tabs: ``default``, ``tiny`` or ``synthetic`` (zoom: synthetic -> tiny)."""
    out: Path = Path("runs/app")
    """Root of the visitors' output folders (``<out>/sessions/<session>/``)."""
    concurrency: int = 1
    """Jobs (scene or zoom) that run at the same time; the others wait in the queue."""
    max_queue: int = 32
    """Most jobs waiting in the queue; more are turned away with a message."""
    showcase: bool = False
    """Run the first Scene example when a page opens (to make the README's screenshot)."""
    keep_outputs: bool = False
    """Keep a visitor's folder after they close the page (default: delete it)."""
    limits: Limits = field(default_factory=Limits)
    """What one request may ask for."""


class RunCancelled(Exception):
    """Raised from the progress hook when the visitor pressed Stop."""


class _Sessions:
    """Per-visitor bookkeeping the app itself needs: each session's cancel flag and folder.

    (The visitor's scene lives in ``gr.State``; this only holds what a second event of the same
    session must reach while a run is going: the Stop button's flag.)"""

    def __init__(self, root: Path):
        self.root = root
        self._lock = threading.Lock()
        self._cancel: dict[str, threading.Event] = {}

    def folder(self, session: str) -> Path:
        path = self.root / "sessions" / session
        path.mkdir(parents=True, exist_ok=True)
        return path

    def new_run(self, session: str, kind: str) -> Path:
        """A fresh folder ``<kind>-NNN`` for one run of this session."""
        base = self.folder(session)
        with self._lock:
            n = 1 + sum(1 for p in base.glob(f"{kind}-*") if p.is_dir())
            while (base / f"{kind}-{n:03d}").exists():
                n += 1
            run = base / f"{kind}-{n:03d}"
            run.mkdir(parents=True)
        return run

    def cancel_flag(self, session: str, *, reset: bool = False) -> threading.Event:
        with self._lock:
            flag = self._cancel.setdefault(session, threading.Event())
            if reset:
                flag.clear()
            return flag

    def forget(self, session: str, *, delete: bool) -> None:
        with self._lock:
            self._cancel.pop(session, None)
        if delete:
            shutil.rmtree(self.root / "sessions" / session, ignore_errors=True)


# Share of the progress bar each stage of a scene takes (in order); unknown stages keep the bar.
_SCENE_STAGES = {"first view": (0.0, 0.05), "dream": (0.05, 0.5), "refine": (0.5, 0.55), "splat views": (0.55, 0.6),
                 "splats": (0.6, 0.9), "video": (0.9, 1.0)}


class _ProgressBridge:
    """``on_progress(stage, done, total)`` -> ``gr.Progress``, checking the Stop flag on every call."""

    def __init__(self, progress: Callable | None, cancel: threading.Event, stages: dict[str, tuple[float, float]]):
        self.progress, self.cancel, self.stages = progress, cancel, stages
        self.fraction = 0.0
        self.stage = "starting"

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.cancel.is_set():
            raise RunCancelled(stage)
        self.stage = stage
        lo, hi = self.stages.get(stage, (self.fraction, self.fraction))
        self.fraction = lo + (hi - lo) * (done / total if total else 1.0)
        if self.progress is not None:
            self.progress(min(self.fraction, 1.0), desc=f"{stage}: {done}/{total}")


def _zip_folder(folder: Path, target: Path) -> Path:
    """Zip ``folder`` (without resume checkpoints) into ``target``, written under a temporary name."""
    tmp = target.with_suffix(".zip.part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder)
            if not path.is_file() or rel.parts[0] == "checkpoint" or path.name == "checkpoint.pt":
                continue
            zf.write(path, Path(folder.name) / rel)
    tmp.replace(target)
    return target


def _friendly(e: BaseException, run: Path | None) -> str:
    """The message a visitor sees for an exception from a run."""
    from dreamer.backends.loading import ModelNotAvailable

    where = f" The server's log has the details (run {run.name})." if run is not None else ""
    if isinstance(e, RunCancelled):
        return f"Stopped during '{e.args[0] if e.args else 'the run'}' (you pressed Stop). Change the settings " \
               f"or press Generate again."
    if isinstance(e, ModelNotAvailable):
        return f"The models of this set are not available here. {str(e).strip()}"
    if isinstance(e, InputError):
        return str(e)
    if isinstance(e, (ValueError, FileNotFoundError)):
        return f"The settings were refused: {e}"
    if type(e).__name__ == "OutOfMemoryError":
        return "The GPU ran out of memory: choose a smaller size or fewer views and try again."
    return f"The run failed ({type(e).__name__}: {e}).{where}"


class DreamerApp:
    """The app's handlers: stateless apart from the shared caches and the per-session registry."""

    def __init__(self, settings: AppSettings):
        self.settings = settings
        self.sessions = _Sessions(Path(settings.out).resolve())
        self._zoom_lock = threading.Lock()
        self._zoom_pipes: dict[tuple, Any] = {}

    # -------------------------------------------------------------------------------- helpers
    @staticmethod
    def _session(request) -> str:
        return safe_session_id(getattr(request, "session_hash", None))

    def _zoom_pipeline(self, models: str):
        """The text-to-image pipeline of the zoom tab, loaded once per process and shared."""
        from dreamer.backends.diffusion import DEFAULT_TEXT2IMG_MODEL, load_diffusers_pipeline

        model = "tiny" if models == "tiny" else DEFAULT_TEXT2IMG_MODEL
        with self._zoom_lock:
            if model not in self._zoom_pipes:
                # the zoom sampler calls the UNet itself: the pipeline's safety checker never runs
                self._zoom_pipes[model] = load_diffusers_pipeline("text2img", model, safety_checker=False)
            return self._zoom_pipes[model]

    def _run(self, request, kind: str, work: Callable[[Path, threading.Event], Any]):
        """Run ``work(run_folder, cancel_flag)`` with readable errors; the app stays usable."""

        session = self._session(request)
        cancel = self.sessions.cancel_flag(session, reset=True)
        run = None
        try:
            run = self.sessions.new_run(session, kind)
            return work(run, cancel)
        except gr.Error:
            raise
        except BaseException as e:  # noqa: BLE001 - every failure becomes a message, the app lives on
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            if not isinstance(e, (RunCancelled, InputError)):
                log.exception("%s run in %s failed", kind, run)
            raise gr.Error(_friendly(e, run), print_exception=False) from None

    # -------------------------------------------------------------------------------- scene
    def check_scene(self, prompt, photo, depth, negative, trajectory, trajectory_file, views, steps, guidance,
                    seed, gs_iters, models, size, frames) -> dict:
        """The flat settings of a scene request, or :class:`InputError`; nothing is written."""
        lim = self.settings.limits
        prompt = check_text(prompt, "Prompt", lim.max_prompt_chars)
        negative = check_text(negative, "Negative prompt", lim.max_prompt_chars)
        if models not in MODEL_SETS:
            raise InputError(f"Model set must be one of {', '.join(MODEL_SETS)}, got {models!r}")
        photo_path = check_upload(photo, "Photo", IMAGE_TYPES, lim)
        depth_path = check_upload(depth, "Depth map", DEPTH_TYPES, lim)
        traj_path = check_upload(trajectory_file, "Trajectory file", TRAJECTORY_TYPES, lim)
        if depth_path is not None and photo_path is None:
            raise InputError("Depth map: upload the photo it belongs to as well")
        if not prompt and photo_path is None and models != "synthetic":
            raise InputError("Give a prompt, a photo, or both")
        if traj_path is None and trajectory not in SCENE_TRAJECTORIES:
            raise InputError(f"Trajectory must be one of {', '.join(SCENE_TRAJECTORIES)}, got {trajectory!r}")
        size = check_number(size, "Size", 64, 1024, integer=True, multiple=8)
        return {
            "prompt": prompt, "negative_prompt": negative, "photo": photo_path, "depth": depth_path,
            "trajectory": trajectory, "trajectory_file": traj_path,
            "views": check_number(views, "Views", 1, 64, integer=True),
            "steps": check_number(steps, "Steps", 1, 150, integer=True),
            "guidance": check_number(guidance, "Guidance", 0.0, 30.0),
            "seed": check_number(seed, "Seed", 0, 2**31 - 1, integer=True),
            "iterations": check_number(gs_iters, "Gaussian iterations", 10, 30000, integer=True),
            "models": models, "width": size, "height": size,
            "render_frames": check_number(frames, "Video frames", 8, 600, integer=True),
        }

    def scene_configs(self, checked: dict, run: Path):
        """Copy the uploads into ``run/inputs`` and build the scene's settings (and check the
        trajectory file and depth map against the first camera: still before any model runs)."""
        from dreamer.pipeline import SceneConfigs, configs_from_flat
        from dreamer.splats import SplatConfig

        inputs = run / "inputs"
        flat = {k: checked[k] for k in ("prompt", "views", "steps", "guidance", "seed", "iterations", "models",
                                        "width", "height", "render_frames", "negative_prompt")}
        flat["image"] = copy_upload(checked["photo"], inputs, "photo")
        flat["depth"] = copy_upload(checked["depth"], inputs, "depth")
        traj = copy_upload(checked["trajectory_file"], inputs, "trajectory")
        flat["trajectory"] = traj or checked["trajectory"]
        if traj:
            flat["views"] = None
        base = dataclasses.replace(SceneConfigs(), splats=SplatConfig())
        configs = configs_from_flat(flat, base)
        first = configs.scene.first_camera()
        if traj:
            from dreamer.trajectories import load_trajectory

            try:
                load_trajectory(traj, first)
            except (ValueError, KeyError, TypeError) as e:
                raise InputError(f"Trajectory file: {e}") from None
        if flat["image"]:
            from dreamer.pipeline.inputs import load_depth, load_image

            try:
                loaded = load_image(flat["image"], configs.scene.width, configs.scene.height)
            except ValueError as e:
                raise InputError(f"Photo: {e}".replace(str(inputs) + "/", "")) from None
            if flat["depth"]:
                try:
                    load_depth(flat["depth"], configs.scene.width, configs.scene.height, like=loaded)
                except ValueError as e:
                    raise InputError(f"Depth map: {e}".replace(str(inputs) + "/", "")) from None
        return configs

    def generate_scene(self, prompt, photo, depth, negative, trajectory, trajectory_file, views, steps, guidance,
                       seed, gs_iters, models, size, frames, state, request, progress):
        """Scene tab: validate, dream, train splats, render videos; returns the outputs."""

        try:
            checked = self.check_scene(prompt, photo, depth, negative, trajectory, trajectory_file, views, steps,
                                       guidance, seed, gs_iters, models, size, frames)
        except InputError as e:
            raise gr.Error(str(e), print_exception=False) from None

        def work(run: Path, cancel: threading.Event):
            from dreamer.backends.model_sets import build_backends
            from dreamer.pipeline import run_scene

            configs = self.scene_configs(checked, run)
            bridge = _ProgressBridge(progress, cancel, _SCENE_STAGES)
            bridge("first view", 0, 1)
            t0 = time.time()
            backends = build_backends(configs.models)
            outcome = run_scene(configs, run, backends, on_progress=bridge, name=run.name)
            return self._scene_outputs(run, outcome, time.time() - t0, state)

        return self._run(request, "scene", work)

    def _scene_outputs(self, run: Path, outcome, seconds: float, state):
        views = sorted(p for p in (run / "views").glob("[0-9][0-9][0-9].png"))
        videos = run / "videos"
        video = next((p for p in sorted(videos.glob("*.mp4")) if not p.stem.endswith("_depth")), None)
        depth_video = next(iter(sorted(videos.glob("*_depth.mp4"))), None)
        archive = _zip_folder(run, run.parent / f"{run.name}.zip")
        downloads = [p for p in (run / "gaussians.ply", run / "points.ply", run / "cameras.json",
                                 run / "transforms.json", archive) if p.exists()]
        metrics = ""
        if outcome.metrics:
            m = outcome.metrics
            metrics = f" Depth error against the procedural world: AbsRel {m.get('abs_rel_aligned', float('nan')):.3f}" \
                      f" after alignment ({m.get('abs_rel_unaligned', float('nan')):.3f} before)."
        status = f"**{run.name}**: {len(views)} views, splats and videos in {seconds:.1f} s.{metrics}"
        state = dict(state or {})
        state.update(scene=str(run), scenes=list((state or {}).get("scenes", [])) + [str(run)])
        gallery = [(str(p), f"view {p.stem}") for p in views]
        ply = run / "gaussians.ply"
        return (str(ply) if ply.exists() else None, str(video) if video else None,
                str(depth_video) if depth_video else None, gallery, [str(p) for p in downloads], status, state)

    # -------------------------------------------------------------------------------- zoom
    def check_zoom(self, prompts, photo, p, levels, steps, guidance, seed, size, models) -> dict:
        lim = self.settings.limits
        lines = check_prompt_lines(prompts, "Prompts", lim)
        levels = check_number(levels, "Levels", 1, 8, integer=True)
        if len(lines) > levels:
            raise InputError(f"Prompts: {len(lines)} lines for {levels} levels; give at most one prompt per level")
        # one prompt per level, widest first: the last line serves every deeper level
        lines = lines + [lines[-1]] * (levels - len(lines))
        p = check_number(p, "Zoom factor p", 2, 4, integer=True)
        if p not in (2, 4):
            raise InputError(f"Zoom factor p must be 2 or 4, got {p}")
        if models not in ZOOM_MODEL_SETS:
            raise InputError(f"Zoom models must be one of {', '.join(ZOOM_MODEL_SETS)}, got {models!r}")
        return {
            "prompts": lines, "photo": check_upload(photo, "Photo", IMAGE_TYPES, lim), "p": p, "levels": levels,
            "steps": check_number(steps, "Steps", 1, 150, integer=True),
            "guidance": check_number(guidance, "Guidance", 0.0, 30.0),
            "seed": check_number(seed, "Seed", 0, 2**31 - 1, integer=True),
            "size": check_number(size, "Size", 64, 768, integer=True, multiple=16 * p), "models": models,
        }

    def generate_zoom(self, prompts, photo, p, levels, steps, guidance, seed, size, models, request, progress):
        """Zoom tab: validate, sample the stack with the shared pipeline, write levels and video."""

        try:
            checked = self.check_zoom(prompts, photo, p, levels, steps, guidance, seed, size, models)
        except InputError as e:
            raise gr.Error(str(e), print_exception=False) from None

        def work(run: Path, cancel: threading.Event):
            import torch

            from dreamer.io import load_image_tensor, save_image, write_json
            from zoom.sampler import sample_zoom_stack
            from zoom.video import write_zoom_video

            photo_file = copy_upload(checked["photo"], run / "inputs", "photo")
            photo = load_image_tensor(photo_file) if photo_file else None
            stages = {"sample": (0.0, 0.9), "video": (0.9, 1.0)}
            bridge = _ProgressBridge(progress, cancel, stages)
            bridge("loading models", 0, 1)
            t0 = time.time()
            pipe = self._zoom_pipeline(checked["models"])
            device = pipe.unet.device
            generator = torch.Generator(device="cpu" if device.type == "mps" else device).manual_seed(checked["seed"])

            def on_progress(stage, done, total):
                bridge("sample" if stage not in stages else stage, done, total)

            result = sample_zoom_stack(pipe, checked["prompts"], p=checked["p"], steps=checked["steps"],
                                       guidance=checked["guidance"], height=checked["size"], width=checked["size"],
                                       generator=generator, photo=photo, on_progress=on_progress)
            levels = result.levels.detach().float().cpu()
            files = []
            for i in range(levels.shape[0]):
                path = run / f"level_{i:02d}.png"
                save_image(path, levels[i])
                files.append(path)
            bridge("video", 0, 1)
            video = write_zoom_video(run / "zoom.mp4", levels, p=checked["p"], fps=24, seconds_per_level=1.5)
            bridge("video", 1, 1)
            write_json(run / "config.json", {k: v for k, v in checked.items() if k != "photo"}
                       | {"photo": bool(photo_file), "seconds": time.time() - t0})
            gallery = [(str(f), f"level {i}: {checked['prompts'][i]}") for i, f in enumerate(files)]
            status = f"**{run.name}**: {len(files)} levels (p = {checked['p']}) in {time.time() - t0:.1f} s."
            return gallery, str(video), [str(f) for f in files] + [str(video)], status

        return self._run(request, "zoom", work)

    # -------------------------------------------------------------------------------- 3D zoom
    def _own_scene(self, state, scene: str | None, request) -> Path:
        """The visitor's finished scene named ``scene`` (default: their latest); only scenes this
        session made are reachable, whatever name is sent."""
        folder = self.sessions.folder(self._session(request))
        runs = {Path(p).name: Path(p) for p in (state or {}).get("scenes", [])}
        name = scene or (Path(state["scene"]).name if (state or {}).get("scene") else None)
        if not runs or name is None:
            raise InputError("Generate a scene in the Scene tab first: the 3D zoom flies into one of your scenes")
        if name not in runs:
            raise InputError(f"Scene {name!r} is not one of yours; choose one of {', '.join(sorted(runs))}")
        path = runs[name].resolve()
        if path.parent != folder.resolve() or not (path / "DONE").exists():
            raise InputError(f"Scene {name!r} is not finished or no longer here; generate it again")
        return path

    def check_zoom3d(self, view, u, v, levels, p, prompts, steps, seed, frames) -> dict:
        lim = self.settings.limits
        levels = check_number(levels, "Levels", 2, 8, integer=True)
        lines = check_prompt_lines(prompts, "Prompts", lim, required=False)
        if len(lines) not in (0, 1, levels):
            raise InputError(f"Prompts: {len(lines)} lines for {levels} levels; give none (the scene's prompt), "
                             f"one, or one per level")
        p = check_number(p, "Zoom factor p", 2, 4, integer=True)
        if p not in (2, 4):
            raise InputError(f"Zoom factor p must be 2 or 4, got {p}")
        return {
            "zoom_view": check_number(view, "View", 0, 63, integer=True),
            "u": check_number(u, "Zoom point x", 0.0, 1.0), "v": check_number(v, "Zoom point y", 0.0, 1.0),
            "zoom_levels": levels, "zoom_p": p, "zoom_prompts": tuple(lines) or None,
            "zoom_steps": check_number(steps, "Steps", 1, 150, integer=True),
            "zoom_seed": check_number(seed, "Seed", 0, 2**31 - 1, integer=True),
            "zoom_fly_frames": check_number(frames, "Fly-in frames", 8, 600, integer=True),
        }

    def generate_zoom3d(self, scene, view, u, v, levels, p, prompts, steps, seed, frames, state, request, progress):
        """3D zoom tab: copy the chosen scene, zoom into a view, lift the levels, retrain, fly in."""
        try:
            checked = self.check_zoom3d(view, u, v, levels, p, prompts, steps, seed, frames)
            source = self._own_scene(state, scene, request)
        except InputError as e:
            raise gr.Error(str(e), print_exception=False) from None

        def work(run: Path, cancel: threading.Event):
            from dreamer.backends.model_sets import build_backends
            from dreamer.io import read_json
            from dreamer.pipeline import SceneConfigs, configs_from_flat, run_scene

            shutil.copytree(source, run, dirs_exist_ok=True)  # the scene stays as it was
            base = SceneConfigs.from_dict(read_json(run / "config.json"))
            views = len(list((run / "views").glob("[0-9][0-9][0-9].png")))
            if checked["zoom_view"] >= views:
                raise InputError(f"View must be between 0 and {views - 1} for {source.name}, got {checked['zoom_view']}")
            flat = {k: val for k, val in checked.items() if k.startswith("zoom_")}
            flat["zoom_center"] = (checked["u"] * base.scene.width, checked["v"] * base.scene.height)
            configs = configs_from_flat(flat, base)
            stages = {"dream": (0.0, 0.05), "splat views": (0.05, 0.1), "splats": (0.1, 0.55), "video": (0.55, 0.6),
                      "zoom levels": (0.6, 0.75), "zoom lift": (0.75, 0.8)}
            bridge = _ProgressBridge(progress, cancel, stages)
            t0 = time.time()
            run_scene(configs, run, build_backends(configs.models), on_progress=bridge, name=run.name)
            zoom = run / "zoom"
            levels = sorted(zoom.glob("level_*.png"))
            fly = next((f for f in (zoom / "fly_in.mp4", zoom / "fly_in_points.mp4") if f.exists()), None)
            flat_video = zoom / "zoom_2d.mp4"
            ply = zoom / "gaussians.ply"
            archive = _zip_folder(run, run.parent / f"{run.name}.zip")
            downloads = [f for f in (ply, zoom / "points.ply", zoom / "cameras.json", zoom / "zoom.json", archive)
                         if f.exists()]
            status = (f"**{run.name}**: {len(levels)} levels (p = {checked['zoom_p']}) into view "
                      f"{checked['zoom_view']} of {source.name}, lifted into the scene, in {time.time() - t0:.1f} s.")
            gallery = [(str(f), f"level {i}") for i, f in enumerate(levels)]
            return (str(fly) if fly else None, str(flat_video) if flat_video.exists() else None, gallery,
                    str(ply) if ply.exists() else None, [str(f) for f in downloads], status)

        return self._run(request, "zoom3d", work)

    @staticmethod
    def scene_choices(state):
        names = [Path(p).name for p in (state or {}).get("scenes", [])]
        return gr.update(choices=names, value=names[-1] if names else None)

    def view_image(self, scene, view, state, request):
        """The chosen view of the chosen scene (to click the zoom point on); None if there is none."""
        try:
            path = self._own_scene(state, scene, request)
            n = check_number(view, "View", 0, 63, integer=True)
        except InputError:
            return None
        image = path / "views" / f"{n:03d}.png"
        return str(image) if image.exists() else None

    # -------------------------------------------------------------------------------- session
    def stop(self, request) -> str:
        self.sessions.cancel_flag(self._session(request)).set()
        return "Stopping at the next step..."

    def leave(self, request) -> None:
        self.sessions.forget(self._session(request), delete=not self.settings.keep_outputs)


# ------------------------------------------------------------------------------------ the page
def photo_input(limits: Limits, field_name: str = "Photo", **kwargs) -> gr.Image:
    """A ``gr.Image`` (a file path, as uploaded) that checks the upload - type, file size, pixel
    count, readable - before gradio opens it, and answers a bad one with a readable message.

    (The check wraps the instance's ``preprocess``: a subclass of a gradio component would make
    gradio write a ``.pyi`` stub next to this file.)"""
    image = gr.Image(type="filepath", image_mode=None, **kwargs)
    gradio_preprocess = image.preprocess

    def preprocess(payload):
        if payload is not None and getattr(payload, "path", None):
            try:
                check_upload(payload.path, field_name, IMAGE_TYPES, limits)
            except InputError as e:
                raise gr.Error(str(e), print_exception=False) from None
        return gradio_preprocess(payload)

    image.preprocess = preprocess
    return image


_INTRO = """# dreamer: infinite 3D scenes with deep zoom
Type a prompt or drop in a photo: the scene is dreamed one camera at a time into a consistent 3D
world, lifted into Gaussian splats (drag the 3D view to look around) and flown through.
No weights on this machine? Pick the **synthetic** model set (a procedural world) or **tiny**, or
click an example below."""


def build_app(settings: AppSettings):
    """The gradio Blocks of the app (not launched)."""

    app = DreamerApp(settings)
    zoom_default = settings.models if settings.models in ZOOM_MODEL_SETS else "tiny"
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])  # no web fonts from outside hosts

    with gr.Blocks(title="dreamer", delete_cache=(3600, 24 * 3600)) as demo:
        demo.theme_for_launch = theme
        state = gr.State({})
        gr.Markdown(_INTRO)
        with gr.Tab("Scene"):
            with gr.Row():
                with gr.Column(scale=1):
                    prompt = gr.Textbox(label="Prompt", lines=2, max_length=settings.limits.max_prompt_chars,
                                        placeholder="a cozy reading room with a fireplace")
                    with gr.Row():
                        photo = photo_input(settings.limits, label="Photo (optional)", sources=["upload", "clipboard"],
                                            height=180)
                        depth = gr.File(label="Depth map (optional)",
                                        file_types=list(DEPTH_TYPES), height=120)
                    negative = gr.Textbox(label="Negative prompt", max_length=settings.limits.max_prompt_chars,
                                          value="text, watermark, signature, blurry, low quality, distorted, deformed")
                    with gr.Row():
                        trajectory = gr.Dropdown(list(SCENE_TRAJECTORIES), value="lookaround", label="Trajectory")
                        trajectory_file = gr.File(label="or a trajectory file (.json)", file_types=[".json"],
                                                  height=80)
                    with gr.Row():
                        views = gr.Slider(1, 64, value=6, step=1, label="Views")
                        gs_iters = gr.Slider(10, 30000, value=1000, step=10, label="Gaussian iterations")
                    with gr.Row():
                        steps = gr.Slider(1, 150, value=30, step=1, label="Inpainting steps")
                        guidance = gr.Slider(0, 30, value=7.5, step=0.5, label="Guidance")
                    with gr.Row():
                        seed = gr.Number(value=0, precision=0, minimum=0, maximum=2**31 - 1, label="Seed")
                        models = gr.Dropdown(list(MODEL_SETS), value=settings.models, label="Model set")
                    with gr.Accordion("Size and video", open=False):
                        size = gr.Slider(64, 1024, value=512, step=8, label="Image size (px, square)")
                        frames = gr.Slider(8, 600, value=120, step=1, label="Fly-through frames")
                    with gr.Row():
                        generate = gr.Button("Generate", variant="primary")
                        stop = gr.Button("Stop", variant="stop")
                with gr.Column(scale=2):
                    status = gr.Markdown("")
                    viewer = gr.Model3D(label="The scene (Gaussian splats)", height=420)
                    with gr.Row():
                        video = gr.Video(label="Fly-through", autoplay=True, loop=True)
                        depth_video = gr.Video(label="Depth", autoplay=True, loop=True)
                    gallery = gr.Gallery(label="Dreamed views", columns=6, height=200, format="png")
                    downloads = gr.File(label="Downloads", file_count="multiple", height=120)
            scene_inputs = [prompt, photo, depth, negative, trajectory, trajectory_file, views, steps, guidance, seed,
                            gs_iters, models, size, frames]
            gr.Examples(
                label="Examples (offline models, small sizes: seconds to a minute or two on a CPU)",
                examples=[list(e) for e in SCENE_EXAMPLES],
                inputs=scene_inputs, cache_examples=False,
            )

            def _generate_scene(prompt, photo, depth, negative, trajectory, trajectory_file, views, steps, guidance,
                                seed, gs_iters, models, size, frames, state, request: gr.Request,
                                progress=gr.Progress()):
                return app.generate_scene(prompt, photo, depth, negative, trajectory, trajectory_file, views, steps,
                                          guidance, seed, gs_iters, models, size, frames, state, request, progress)

            generate.click(_generate_scene, inputs=scene_inputs + [state],
                           outputs=[viewer, video, depth_video, gallery, downloads, status, state],
                           api_name="scene", concurrency_id=GPU_QUEUE, concurrency_limit=settings.concurrency)

        with gr.Tab("Zoom"):
            with gr.Row():
                with gr.Column(scale=1):
                    zprompts = gr.Textbox(label="Prompts, one per level (widest first)", lines=5,
                                          placeholder="a galaxy\na solar system\na blue planet\na coastline")
                    zphoto = photo_input(settings.limits, label="Photo of the widest level (optional)",
                                         sources=["upload", "clipboard"], height=180)
                    with gr.Row():
                        zp = gr.Radio([2, 4], value=2, label="Zoom factor p")
                        zlevels = gr.Slider(1, 8, value=4, step=1, label="Levels")
                    with gr.Row():
                        zsteps = gr.Slider(1, 150, value=50, step=1, label="Steps")
                        zguidance = gr.Slider(0, 30, value=7.5, step=0.5, label="Guidance")
                    with gr.Row():
                        zseed = gr.Number(value=0, precision=0, minimum=0, maximum=2**31 - 1, label="Seed")
                        zsize = gr.Slider(64, 768, value=512, step=64, label="Size (px)")
                    zmodels = gr.Dropdown(list(ZOOM_MODEL_SETS), value=zoom_default, label="Model set")
                    with gr.Row():
                        zgenerate = gr.Button("Zoom", variant="primary")
                        zstop = gr.Button("Stop", variant="stop")
                with gr.Column(scale=2):
                    zstatus = gr.Markdown("")
                    zvideo = gr.Video(label="Zoom video", autoplay=True, loop=True)
                    zgallery = gr.Gallery(label="Levels", columns=4, height=260, format="png")
                    zdownloads = gr.File(label="Downloads", file_count="multiple", height=120)
            zoom_inputs = [zprompts, zphoto, zp, zlevels, zsteps, zguidance, zseed, zsize, zmodels]
            gr.Examples(
                label="Examples (tiny random models: plumbing only, fast on a CPU)",
                examples=[["a galaxy\na solar system\na blue planet", None, 2, 3, 4, 7.5, 0, 64, "tiny"]],
                inputs=zoom_inputs, cache_examples=False,
            )

            def _generate_zoom(prompts, photo, p, levels, steps, guidance, seed, size, models, request: gr.Request,
                               progress=gr.Progress()):
                return app.generate_zoom(prompts, photo, p, levels, steps, guidance, seed, size, models, request,
                                         progress)

            zgenerate.click(_generate_zoom, inputs=zoom_inputs, outputs=[zgallery, zvideo, zdownloads, zstatus],
                            api_name="zoom", concurrency_id=GPU_QUEUE, concurrency_limit=settings.concurrency)

        with gr.Tab("3D zoom"):
            gr.Markdown("Fly into one of your scenes: pick a view, click the point to zoom into, and the zoom "
                        "levels are dreamed, lifted into the scene's points and trained into its splats.")
            with gr.Row():
                with gr.Column(scale=1):
                    d_scene = gr.Dropdown([], label="Scene (yours, from the Scene tab)", allow_custom_value=True)
                    d_view = gr.Slider(0, 63, value=0, step=1, label="View")
                    d_image = gr.Image(label="Click the zoom point", type="filepath", interactive=False, height=240)
                    with gr.Row():
                        d_u = gr.Slider(0, 1, value=0.5, step=0.01, label="Zoom point x (0 left, 1 right)")
                        d_v = gr.Slider(0, 1, value=0.5, step=0.01, label="Zoom point y (0 top, 1 bottom)")
                    with gr.Row():
                        d_levels = gr.Slider(2, 8, value=3, step=1, label="Levels")
                        d_p = gr.Radio([2, 4], value=2, label="Zoom factor p")
                    d_prompts = gr.Textbox(label="Prompts (optional): one, or one per level", lines=3)
                    with gr.Row():
                        d_steps = gr.Slider(1, 150, value=30, step=1, label="Steps")
                        d_seed = gr.Number(value=0, precision=0, minimum=0, maximum=2**31 - 1, label="Seed")
                    d_frames = gr.Slider(8, 600, value=48, step=1, label="Fly-in frames")
                    with gr.Row():
                        d_generate = gr.Button("Zoom into the scene", variant="primary")
                        d_stop = gr.Button("Stop", variant="stop")
                with gr.Column(scale=2):
                    d_status = gr.Markdown("")
                    with gr.Row():
                        d_fly = gr.Video(label="Fly-in", autoplay=True, loop=True)
                        d_flat = gr.Video(label="The zoom stack (2D)", autoplay=True, loop=True)
                    d_gallery = gr.Gallery(label="Levels", columns=4, height=200, format="png")
                    d_viewer = gr.Model3D(label="The zoomed scene (Gaussian splats)", height=360)
                    d_downloads = gr.File(label="Downloads", file_count="multiple", height=120)

            def _view_image(scene, view, state, request: gr.Request):
                return app.view_image(scene, view, state, request)

            def _pick(image, evt: gr.SelectData):
                from PIL import Image

                if image is None or evt is None or evt.index is None:
                    return gr.update(), gr.update()
                with Image.open(image) as im:
                    w, h = im.size
                x, y = evt.index[:2]
                return round(min(max((x + 0.5) / w, 0.0), 1.0), 3), round(min(max((y + 0.5) / h, 0.0), 1.0), 3)

            def _generate_zoom3d(scene, view, u, v, levels, p, prompts, steps, seed, frames, state,
                                 request: gr.Request, progress=gr.Progress()):
                return app.generate_zoom3d(scene, view, u, v, levels, p, prompts, steps, seed, frames, state,
                                           request, progress)

            state.change(app.scene_choices, inputs=state, outputs=d_scene, api_name=False, queue=False)
            for trigger in (d_scene.change, d_view.release):
                trigger(_view_image, inputs=[d_scene, d_view, state], outputs=d_image, api_name=False, queue=False)
            d_image.select(_pick, inputs=d_image, outputs=[d_u, d_v], api_name=False, queue=False)
            d_generate.click(_generate_zoom3d,
                             inputs=[d_scene, d_view, d_u, d_v, d_levels, d_p, d_prompts, d_steps, d_seed, d_frames,
                                     state],
                             outputs=[d_fly, d_flat, d_gallery, d_viewer, d_downloads, d_status],
                             api_name="zoom3d", concurrency_id=GPU_QUEUE, concurrency_limit=settings.concurrency)

        if settings.showcase:
            # The first example is run once, now; every page that opens shows its results.
            class _Showcase:
                session_hash = "showcase"

            shown = (*SCENE_EXAMPLES[0], *app.generate_scene(*SCENE_EXAMPLES[0], {}, _Showcase(), None)[:-1])

            def _showcase():
                return shown

            demo.load(_showcase, outputs=scene_inputs + [viewer, video, depth_video, gallery, downloads, status],
                      api_name=False, queue=False)

        def _stop(request: gr.Request):
            return app.stop(request)

        # Stop runs outside the queue: it must reach a session whose job holds the only slot.
        stop.click(_stop, outputs=status, api_name="stop", queue=False)
        zstop.click(_stop, outputs=zstatus, api_name=False, queue=False)
        d_stop.click(_stop, outputs=d_status, api_name=False, queue=False)

        def _leave(request: gr.Request):
            app.leave(request)

        demo.unload(_leave)
    demo.queue(default_concurrency_limit=settings.concurrency, max_size=settings.max_queue)
    demo.dreamer_app = app
    return demo


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m apps.gradio_app", description=__doc__.split("\n\n")[0],
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    ap.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    ap.add_argument("--share", action="store_true", help="also serve through a public gradio.live link")
    ap.add_argument("--models", choices=MODEL_SETS, default="default",
                    help="model set preselected in the page (default: the real models; synthetic/tiny need no weights)")
    ap.add_argument("--concurrency", type=int, default=1, help="jobs that run at once; the rest queue (default 1)")
    ap.add_argument("--max-queue", type=int, default=32, help="most jobs waiting in the queue (default 32)")
    ap.add_argument("--out", type=Path, default=Path("runs/app"), help="root of the visitors' folders")
    ap.add_argument("--keep-outputs", action="store_true", help="keep a visitor's folder after they leave")
    ap.add_argument("--max-upload-mb", type=float, default=25.0, help="largest upload in MB (default 25)")
    ap.add_argument("--showcase", action="store_true",
                    help="run the first Scene example whenever a page opens (for screenshots)")
    ap.add_argument("--preload", action="store_true", help="load the preselected models before serving")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads torch may use (default: torch's own; 1-2 on a shared machine)")
    ap.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.concurrency < 1 or args.max_queue < 1:
        build_parser().error("--concurrency and --max-queue must be >= 1")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    settings = AppSettings(models=args.models, out=args.out, concurrency=args.concurrency, max_queue=args.max_queue,
                           keep_outputs=args.keep_outputs, showcase=args.showcase, limits=Limits(max_upload_mb=args.max_upload_mb))
    if args.preload and args.models != "synthetic":
        from dreamer.backends.model_sets import ModelConfig, build_backends

        log.info("loading the %s models", args.models)
        build_backends(ModelConfig(models=args.models))
    demo = build_app(settings)
    settings.out.mkdir(parents=True, exist_ok=True)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, show_error=True,
                allowed_paths=[str(Path(settings.out).resolve())],
                max_file_size=int(args.max_upload_mb * 1e6), footer_links=["api"],
                theme=demo.theme_for_launch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
