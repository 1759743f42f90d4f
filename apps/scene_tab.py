"""The Scene tab's handlers: check the form, dream the scene, hand out what it made.

Layout lives in :mod:`apps.layout`; "Dream here" and Undo in :mod:`apps.dream_here`.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import gradio as gr

from apps.files import FileDesk
from apps.inputs import (DEPTH_TYPES, IMAGE_TYPES, TRAJECTORY_TYPES, InputError, check_flag, check_number,
                         check_scene_request, check_seed, check_text, check_upload, copy_upload)
from apps.jobs import Job, Jobs, zip_folder
from apps.settings import MODEL_SETS, SCENE_TRAJECTORIES, AppSettings
from apps.viewer import viewer_spec

__all__ = ["SceneTab", "SCENE_STAGES"]

# Share of the progress bar each stage of a scene takes (in order); unknown stages keep the bar.
# "refine" is the joint depth refinement; "complete" the refine step's completion pass ("repair",
# during the splats, keeps the bar where it is).
SCENE_STAGES = {"first view": (0.0, 0.05), "dream": (0.05, 0.5), "refine": (0.5, 0.53), "complete": (0.53, 0.57),
                "splat views": (0.57, 0.6), "splats": (0.6, 0.9), "video": (0.9, 1.0)}


class SceneTab:
    """Handlers of the Scene tab, and what the other tabs need to know of a visitor's scenes."""

    def __init__(self, settings: AppSettings, jobs: Jobs, files: FileDesk):
        self.settings, self.jobs, self.files = settings, jobs, files

    # ------------------------------------------------------------------------------------ checks
    def check(self, prompt, photo, depth, negative, trajectory, trajectory_file, views, steps, guidance,
              seed, gs_iters, models, size, frames, refine=False) -> dict:
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
        size = check_number(size, "Size", 64, lim.max_size, integer=True, multiple=8)
        return {
            "prompt": prompt, "negative_prompt": negative, "photo": photo_path, "depth": depth_path,
            "trajectory": trajectory, "trajectory_file": traj_path,
            "views": check_number(views, "Views", 1, lim.max_views, integer=True),
            "steps": check_number(steps, "Steps", 1, 150, integer=True),
            "guidance": check_number(guidance, "Guidance", 0.0, 30.0),
            "seed": check_seed(seed),
            "iterations": check_number(gs_iters, "Gaussian iterations", 10, 30000, integer=True),
            "models": models, "width": size, "height": size,
            "render_frames": check_number(frames, "Video frames", 8, 600, integer=True),
            "refine": check_flag(refine, "Refine"),
        }

    def configs(self, checked: dict, run: Path):
        """Copy the uploads into ``run/inputs`` and build the scene's settings (and read the
        trajectory file and depth map against the first camera: still before any model runs)."""
        from dreamer.pipeline import SceneConfigs, configs_from_flat
        from dreamer.splats import SplatConfig

        inputs = run / "inputs"
        flat = {k: checked[k] for k in ("prompt", "views", "steps", "guidance", "seed", "iterations", "models",
                                        "width", "height", "render_frames", "negative_prompt")}
        flat["refine"] = checked.get("refine", False)
        # "Dream here" fine-tunes the splats for half the scene's iterations.
        flat["extension_iterations"] = max(10, checked["iterations"] // 2)
        flat["export"] = ("ply", "spz")  # the standard 3DGS file and the compressed one, both offered
        flat["image"] = copy_upload(checked["photo"], inputs, "photo")
        flat["depth"] = copy_upload(checked["depth"], inputs, "depth")
        traj = copy_upload(checked["trajectory_file"], inputs, "trajectory")
        flat["trajectory"] = traj or checked["trajectory"]
        if traj:
            flat["views"] = None
        base = dataclasses.replace(SceneConfigs(), splats=SplatConfig())
        configs = configs_from_flat(flat, base)
        check_scene_request(configs, inputs, self.settings.limits)  # the command line's checks
        return configs

    # ------------------------------------------------------------------------------------ the job
    def generate(self, prompt, photo, depth, negative, trajectory, trajectory_file, views, steps, guidance,
                 seed, gs_iters, models, size, frames, state, request, progress, refine=False):
        """Validate, dream, train splats, render videos; returns the tab's outputs."""
        try:
            checked = self.check(prompt, photo, depth, negative, trajectory, trajectory_file, views, steps,
                                 guidance, seed, gs_iters, models, size, frames, refine)
        except InputError as e:
            raise gr.Error(str(e), print_exception=False) from None

        def work(job: Job):
            from dreamer.backends.model_sets import build_backends
            from dreamer.pipeline import run_scene

            bridge = job.bridge(progress, SCENE_STAGES)
            bridge("first view", 0, 1)
            configs = job.stoppable(lambda: self.configs(checked, job.run), "reading the inputs")
            t0 = time.time()
            backends = job.stoppable(lambda: build_backends(configs.models), "loading the models")
            outcome = run_scene(configs, job.run, backends, on_progress=bridge, name=job.run.name)
            metrics = ""
            if outcome.metrics:
                m = outcome.metrics
                metrics = f" Depth error against the procedural world: AbsRel " \
                          f"{m.get('abs_rel_aligned', float('nan')):.3f} after alignment " \
                          f"({m.get('abs_rel_unaligned', float('nan')):.3f} before)."
            views = len(list((job.run / "views").glob("[0-9][0-9][0-9].png")))
            status = f"**{job.run.name}**: {views} views, splats and videos in {time.time() - t0:.1f} s.{metrics}"
            state_out = dict(state or {})
            state_out.update(scene=str(job.run), scenes=list((state or {}).get("scenes", [])) + [str(job.run)])
            return (*self.outputs(job.session, job.run), status, state_out)

        return self.jobs.run(request, "scene", work)

    # ------------------------------------------------------------------------------------ outputs
    def outputs(self, session: str, run: Path, *, keep_camera: bool = False) -> tuple:
        """(viewer spec, video, depth video, gallery, downloads) of the scene in ``run``, handed out."""
        hand = self.files.hand
        views = sorted((run / "views").glob("[0-9][0-9][0-9].png"))
        videos = run / "videos"
        video = next((p for p in sorted(videos.glob("*.mp4")) if not p.stem.endswith("_depth")), None)
        depth_video = next(iter(sorted(videos.glob("*_depth.mp4"))), None)
        gallery = [(hand(session, p), f"view {p.stem}") for p in views]
        return (self.viewer_spec(session, run, keep_camera=keep_camera), hand(session, video),
                hand(session, depth_video), gallery, self.downloads(session, run))

    def viewer_spec(self, session: str, run: Path, *, keep_camera: bool = False) -> str:
        """The viewer's JSON for the splats in ``run`` (its first camera is where the view starts)."""
        return self.splats_spec(session, run / "gaussians.ply", run / "cameras.json", keep_camera=keep_camera)

    def splats_spec(self, session: str, ply: Path, cameras_json: Path, *, keep_camera: bool = False) -> str:
        """The viewer's JSON for the splats ``ply``, starting at the first camera of ``cameras_json``."""
        from dreamer.io import read_json

        if not ply.exists():
            return viewer_spec(None)
        handed = self.files.hand(session, ply)
        cameras = read_json(cameras_json)["cameras"][:1] if cameras_json.exists() else []
        cameras = [{k: c[k] for k in ("c2w", "K", "width", "height")} for c in cameras]
        return viewer_spec(FileDesk.url(handed), cameras, token=Path(handed).parent.name, keep_camera=keep_camera)

    def downloads(self, session: str, run: Path) -> list[str]:
        """The scene's files for the visitor: splats, points, cameras, a zip of the run, and the
        trajectory file of each extension (with which the CLI reproduces the scene)."""
        from dreamer.pipeline.extend import extension_dir, list_extensions

        archive = zip_folder(run, run.parent / f"{run.name}.zip")
        # The compressed splats (gaussians.spz, written because configs() asks for them) go
        # beside the .ply: a twentieth of its size, read by current web viewers.
        files: list = [p for p in (run / "gaussians.ply", run / "gaussians.spz", run / "points.ply",
                                   run / "cameras.json", run / "transforms.json", archive) if p.exists()]
        if (run / "config.json").exists():
            for ext in list_extensions(run):
                files.append((extension_dir(run, ext.index) / "trajectory.json", f"extension_{ext.index:03d}.json"))
        return self.files.hand_all(session, files)

    # ------------------------------------------------------------------------------------ scenes
    def own_scene(self, state, scene: str | None, request) -> Path:
        """The visitor's finished scene named ``scene`` (default: their latest); only scenes this
        session made are reachable, whatever name is sent."""
        folder = self.jobs.sessions.folder(self.jobs.session_of(request))
        runs = {Path(p).name: Path(p) for p in (state or {}).get("scenes", [])}
        name = scene or (Path(state["scene"]).name if (state or {}).get("scene") else None)
        if not runs or name is None:
            raise InputError("Generate a scene in the Scene tab first")
        if name not in runs:
            raise InputError(f"Scene {name!r} is not one of yours; choose one of {', '.join(sorted(runs))}")
        path = runs[name].resolve()
        if path.parent != folder.resolve() or not (path / "DONE").exists():
            raise InputError(f"Scene {name!r} is not finished or no longer here; generate it again")
        return path
