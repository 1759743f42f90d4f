"""The 3D zoom tab's handlers: fly into one of the visitor's scenes (a copy of it): zoom into a
view, lift the levels into the scene's points, train splats on them, render the fly-in."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import gradio as gr

from apps.inputs import InputError, check_number, check_prompt_lines, check_scene_request, check_seed
from apps.jobs import Job, zip_folder
from apps.scene_tab import SceneTab

__all__ = ["Zoom3DTab"]

ZOOM3D_STAGES = {"dream": (0.0, 0.05), "splat views": (0.05, 0.1), "splats": (0.1, 0.55), "video": (0.55, 0.6),
                 "zoom levels": (0.6, 0.75), "zoom lift": (0.75, 0.8)}


class Zoom3DTab:
    """Handlers of the 3D zoom tab."""

    def __init__(self, scenes: SceneTab):
        self.scenes = scenes
        self.settings, self.jobs, self.files = scenes.settings, scenes.jobs, scenes.files

    def own_scene(self, state, scene, request) -> Path:
        try:
            return self.scenes.own_scene(state, scene, request)
        except InputError as e:
            if str(e).startswith("Generate a scene"):
                raise InputError(f"{e}: the 3D zoom flies into one of your scenes") from None
            raise

    def check(self, view, u, v, levels, p, prompts, steps, seed, frames) -> dict:
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
            "zoom_view": check_number(view, "View", 0, 2 * lim.max_views, integer=True),
            "u": check_number(u, "Zoom point x", 0.0, 1.0), "v": check_number(v, "Zoom point y", 0.0, 1.0),
            "zoom_levels": levels, "zoom_p": p, "zoom_prompts": tuple(lines) or None,
            "zoom_steps": check_number(steps, "Steps", 1, 150, integer=True),
            "zoom_seed": check_seed(seed),
            "zoom_fly_frames": check_number(frames, "Fly-in frames", 8, 600, integer=True),
        }

    def generate(self, scene, view, u, v, levels, p, prompts, steps, seed, frames, state, request, progress):
        """Copy the chosen scene, zoom into a view, lift the levels, retrain, fly in."""
        try:
            checked = self.check(view, u, v, levels, p, prompts, steps, seed, frames)
            source = self.own_scene(state, scene, request)
        except InputError as e:
            raise gr.Error(str(e), print_exception=False) from None

        def work(job: Job):
            from dreamer.backends.model_sets import build_backends
            from dreamer.io import read_json
            from dreamer.pipeline import SceneConfigs, configs_from_flat, run_scene

            run = job.run
            shutil.copytree(source, run, dirs_exist_ok=True)  # the scene stays as it was
            base = SceneConfigs.from_dict(read_json(run / "config.json"))
            from dreamer.pipeline.extend import list_extensions

            views = len(list((run / "views").glob("[0-9][0-9][0-9].png")))
            extensions = list_extensions(run)
            views = extensions[0].views_before if extensions else views  # it zooms the scene's own views
            if checked["zoom_view"] >= views:
                raise InputError(f"View must be between 0 and {views - 1} for {source.name} (the views it was "
                                 f"generated with, not those of Dream here), got {checked['zoom_view']}")
            flat = {k: val for k, val in checked.items() if k.startswith("zoom_")}
            flat["zoom_center"] = (checked["u"] * base.scene.width, checked["v"] * base.scene.height)
            configs = configs_from_flat(flat, base)
            # The command line's checks (the zoom view and point), within the app's limits, before the models load.
            check_scene_request(configs, run, self.settings.limits)
            bridge = job.bridge(progress, ZOOM3D_STAGES)
            t0 = time.time()
            backends = job.stoppable(lambda: build_backends(configs.models), "loading the models")
            run_scene(configs, run, backends, on_progress=bridge, name=run.name)
            zoom = run / "zoom"
            levels = sorted(zoom.glob("level_*.png"))
            fly = next((f for f in (zoom / "fly_in.mp4", zoom / "fly_in_points.mp4") if f.exists()), None)
            flat_video = zoom / "zoom_2d.mp4"
            archive = zip_folder(run, run.parent / f"{run.name}.zip")
            downloads = [f for f in (zoom / "gaussians.ply", zoom / "points.ply", zoom / "cameras.json",
                                     zoom / "zoom.json", archive) if f.exists()]
            status = (f"**{run.name}**: {len(levels)} levels (p = {checked['zoom_p']}) into view "
                      f"{checked['zoom_view']} of {source.name}, lifted into the scene, in {time.time() - t0:.1f} s.")
            hand = self.files.hand
            gallery = [(hand(job.session, f), f"level {i}") for i, f in enumerate(levels)]
            viewer = self.scenes.splats_spec(job.session, zoom / "gaussians.ply", zoom / "cameras.json")
            return (hand(job.session, fly), hand(job.session, flat_video if flat_video.exists() else None), gallery,
                    viewer, self.files.hand_all(job.session, downloads), status)

        return self.jobs.run(request, "zoom3d", work)

    @staticmethod
    def scene_choices(state):
        names = [Path(p).name for p in (state or {}).get("scenes", [])]
        return gr.update(choices=names, value=names[-1] if names else None)

    def view_image(self, scene, view, state, request):
        """The chosen view of the chosen scene (to click the zoom point on); None if there is none."""
        try:
            path = self.own_scene(state, scene, request)
            n = check_number(view, "View", 0, 2 * self.settings.limits.max_views, integer=True)
        except InputError:
            return None
        image = path / "views" / f"{n:03d}.png"
        return self.files.hand(self.jobs.session_of(request), image) if image.exists() else None
