""""Dream here" and Undo: extend the visitor's latest scene from where they stand in the viewer.

The viewer's camera (its JSON, read from the page when the button is pressed) gives the pose;
the scene's own intrinsics and size give the rest (:func:`dreamer.pipeline.extend.scene_camera`).
The work itself is :func:`dreamer.pipeline.extend.extend_scene` / ``undo_extension``: the scene
folder records every extension, so the command line reproduces the extended scene.
"""

from __future__ import annotations

import time

import gradio as gr

from apps.inputs import InputError, check_number, check_text
from apps.jobs import Job
from apps.scene_tab import SceneTab
from apps.viewer import camera_from_json

__all__ = ["DreamHere", "EXTEND_STAGES", "MAX_AROUND"]

EXTEND_STAGES = {"dream": (0.0, 0.4), "splat views": (0.4, 0.45), "splats": (0.45, 1.0)}
MAX_AROUND = 4
"""Most extra cameras turned around the visitor's camera in one "Dream here"."""


def _summary(record) -> str:
    return (f"views {record.views_before} → {record.views_after}, points {record.points_before:,} → "
            f"{record.points_after:,}, Gaussians {record.gaussians_before:,} → {record.gaussians_after:,}")


class DreamHere:
    """Handlers of the Dream here and Undo buttons."""

    def __init__(self, scenes: SceneTab):
        self.scenes = scenes
        self.settings, self.jobs = scenes.settings, scenes.jobs

    def check(self, camera, prompt, around, state, request):
        lim = self.settings.limits
        scene = self.scenes.own_scene(state, None, request)
        try:
            viewer_camera = camera_from_json(camera, max_side=lim.max_image_side)
        except ValueError as e:
            raise InputError(str(e)) from None
        prompt = check_text(prompt, "Prompt for the new part", lim.max_prompt_chars)
        around = check_number(around, "Cameras around it", 0, MAX_AROUND, integer=True)
        return scene, viewer_camera, prompt, around

    def extend(self, camera, prompt, around, state, request, progress):
        """Dream the viewer's camera (and ``around`` more turned beside it) on top of the scene,
        fine-tune its splats; returns (viewer, gallery, downloads, status)."""
        try:
            scene, viewer_camera, prompt, around = self.check(camera, prompt, around, state, request)
        except InputError as e:
            raise gr.Error(str(e), print_exception=False) from None

        def work(job: Job):
            from dreamer.backends.model_sets import build_backends
            from dreamer.io import read_json
            from dreamer.pipeline import SceneConfigs
            from dreamer.pipeline.extend import dream_here_cameras, extend_scene, scene_camera

            t0 = time.time()
            bridge = job.bridge(progress, EXTEND_STAGES)
            bridge("dream", 0, 1)
            configs = SceneConfigs.from_dict(read_json(scene / "config.json"))
            backends = job.stoppable(lambda: build_backends(configs.models), "loading the models")
            cameras = dream_here_cameras(scene_camera(scene, viewer_camera.c2w), around=around)
            record = extend_scene(scene, cameras, backends, prompt=prompt or None, on_progress=bridge)
            viewer, _, _, gallery, downloads = self.scenes.outputs(job.session, scene, keep_camera=True)
            status = (f"**{scene.name}**, extension {record.index}: dreamed {record.cameras} camera(s) here in "
                      f"{time.time() - t0:.1f} s ({_summary(record)}). Undo removes it.")
            return viewer, gallery, downloads, status

        return self.jobs.run(request, "dream-here", work, new_folder=False)

    def undo(self, state, request):
        """Remove the scene's last extension; returns (viewer, gallery, downloads, status)."""
        try:
            scene = self.scenes.own_scene(state, None, request)
        except InputError as e:
            raise gr.Error(str(e), print_exception=False) from None

        def work(job: Job):
            from dreamer.pipeline.extend import undo_extension

            record = undo_extension(scene)  # quick, and not to be left half done by Stop
            if record is None:
                raise InputError(f"{scene.name} has no extension to undo")
            viewer, _, _, gallery, downloads = self.scenes.outputs(job.session, scene, keep_camera=True)
            status = f"**{scene.name}**: extension {record.index} undone (views {record.views_after} → " \
                     f"{record.views_before}, Gaussians {record.gaussians_after:,} → {record.gaussians_before:,})."
            return viewer, gallery, downloads, status

        return self.jobs.run(request, "undo", work, new_folder=False)
