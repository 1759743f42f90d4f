"""How the app is served (one object per process) and the choices its forms offer."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from apps.inputs import Limits

__all__ = ["AppSettings", "MODEL_SETS", "ZOOM_MODEL_SETS", "SCENE_TRAJECTORIES", "GPU_QUEUE", "FILES_QUEUE",
           "SCENE_EXAMPLES", "SCENE_VIEWER_ID", "ZOOM3D_VIEWER_ID", "SCENE_FORM_DEFAULTS", "scene_form_defaults"]

MODEL_SETS = ("default", "tiny", "synthetic")
ZOOM_MODEL_SETS = ("default", "tiny")
SCENE_TRAJECTORIES = ("lookaround", "lookdown", "rotate360", "forward", "backward", "moveright", "orbit")
GPU_QUEUE = "gpu"
"""The concurrency group of every job that runs models (scene, zoom, 3D zoom, Dream here)."""
FILES_QUEUE = "files"
"""The concurrency group of quick jobs that only move files (Undo)."""
SCENE_VIEWER_ID = "scene-viewer"
ZOOM3D_VIEWER_ID = "zoom3d-viewer"

# prompt, photo, depth, negative, trajectory, trajectory file, views, steps, guidance, seed, gaussian iterations,
# model set, size, video frames: offline models and small sizes (the splats take the time on a CPU:
# about 10 s for the 64 px ones, a minute or two for the 96 px one on a busy 2-core machine)
SCENE_EXAMPLES = (
    ("", None, None, "", "lookaround", None, 4, 10, 7.5, 0, 100, "synthetic", 96, 24),
    ("", None, None, "", "orbit", None, 3, 10, 7.5, 1, 60, "synthetic", 64, 24),
    ("a cozy reading room", None, None, "", "lookaround", None, 2, 2, 7.5, 0, 50, "tiny", 64, 16),
)


# The Scene form's starting values, by what ``--preset auto`` of dreamer.run picks for the
# preselected model set on this machine (dreamer.pipeline.presets): the real settings on a GPU;
# on a CPU a scene that is done in a few minutes (about 2 for the procedural world on a quiet
# 2-core machine); the plumbing with the tiny models. Anyone may raise them before pressing Generate.
SCENE_FORM_DEFAULTS = {
    "full": {"views": 6, "iterations": 1000, "size": 512, "frames": 120, "steps": 30},
    "quick": {"views": 4, "iterations": 200, "size": 128, "frames": 48, "steps": 20},
    "plumbing": {"views": 2, "iterations": 30, "size": 64, "frames": 16, "steps": 2},
}


def scene_form_defaults(models: str, device: str = "auto") -> dict:
    """The Scene form's starting values for the model set ``models`` on ``device`` (``auto``: the
    GPU when there is one): see :data:`SCENE_FORM_DEFAULTS`."""
    from dreamer.pipeline.presets import auto_preset

    return dict(SCENE_FORM_DEFAULTS[auto_preset(models, device)])


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
    max_job_minutes: float = 60.0
    """Longest a job may run (reading its inputs included); then it stops with a message."""
    showcase: bool = False
    """Run the first Scene example when a page opens (to make the README's screenshot)."""
    keep_outputs: bool = False
    """Keep a visitor's folder after they close the page (default: delete it)."""
    limits: Limits = field(default_factory=Limits)
    """What one request may ask for."""
