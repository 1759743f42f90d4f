"""The Zoom tab's handlers: prompts per level (and an optional photo) -> a zoom stack and its video."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import gradio as gr

from apps.files import FileDesk
from apps.inputs import (IMAGE_TYPES, InputError, check_number, check_prompt_lines, check_seed, check_upload,
                         copy_upload, upload_message)
from apps.jobs import Job, Jobs
from apps.settings import ZOOM_MODEL_SETS, AppSettings

__all__ = ["ZoomTab"]


class ZoomTab:
    """Handlers of the Zoom tab; the text-to-image pipeline is loaded once and shared."""

    def __init__(self, settings: AppSettings, jobs: Jobs, files: FileDesk):
        self.settings, self.jobs, self.files = settings, jobs, files
        self._lock = threading.Lock()
        self._pipes: dict[str, Any] = {}

    def pipeline(self, models: str):
        """The text-to-image pipeline of the zoom tab, loaded once per process and shared."""
        from dreamer.backends.diffusion import DEFAULT_TEXT2IMG_MODEL, load_diffusers_pipeline

        model = "tiny" if models == "tiny" else DEFAULT_TEXT2IMG_MODEL
        with self._lock:
            if model not in self._pipes:
                # the zoom sampler calls the UNet itself: the pipeline's safety checker never runs
                self._pipes[model] = load_diffusers_pipeline("text2img", model, safety_checker=False)
            return self._pipes[model]

    def check(self, prompts, photo, p, levels, steps, guidance, seed, size, models) -> dict:
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
            "seed": check_seed(seed),
            "size": check_number(size, "Size", 64, 768, integer=True, multiple=16 * p), "models": models,
        }

    @staticmethod
    def read_photo(path: str, size: int):
        """The uploaded photo at the stack's size, read as ``python -m zoom.run --photo`` reads it
        (:func:`dreamer.pipeline.inputs.load_image`: EXIF orientation, 16-bit and other modes, a
        file that does not decode refused), before the model loads; an :class:`InputError` else."""
        from dreamer.pipeline.inputs import load_image

        try:
            return load_image(path, size, size, fit="crop").image
        except ValueError as e:
            raise InputError(upload_message(e, Path(path).parent)) from None

    def generate(self, prompts, photo, p, levels, steps, guidance, seed, size, models, request, progress):
        """Validate, sample the stack with the shared pipeline, write levels and video."""
        try:
            checked = self.check(prompts, photo, p, levels, steps, guidance, seed, size, models)
        except InputError as e:
            raise gr.Error(str(e), print_exception=False) from None

        def work(job: Job):
            from dreamer.io import save_image, write_json
            from zoom.sampler import sample_zoom_stack, seeded_generator
            from zoom.video import write_zoom_video

            run = job.run
            stages = {"sample": (0.0, 0.9), "video": (0.9, 1.0)}
            bridge = job.bridge(progress, stages)
            bridge("loading models", 0, 1)
            photo_file = copy_upload(checked["photo"], run / "inputs", "photo")
            photo = job.stoppable(lambda: self.read_photo(photo_file, checked["size"]), "reading the photo") \
                if photo_file else None
            t0 = time.time()
            pipe = job.stoppable(lambda: self.pipeline(checked["models"]), "loading the models")
            # The CPU generator python -m zoom.run uses: one seed, one stack, on every device and entry point.
            generator = seeded_generator(checked["seed"])

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
            handed = self.files.hand_all(job.session, [*files, video])
            gallery = [(h, f"level {i}: {checked['prompts'][i]}") for i, h in enumerate(handed[:-1])]
            status = f"**{run.name}**: {len(files)} levels (p = {checked['p']}) in {time.time() - t0:.1f} s."
            return gallery, handed[-1], handed, status

        return self.jobs.run(request, "zoom", work)
