"""Run presets: the defaults of the costly settings, chosen for the machine a run is on.

A scene's cost is set by a handful of settings (image size, views, denoising steps, splat
iterations, video frames). Their dataclass defaults are the real settings, meant for a GPU; on a
CPU they take hours. A preset replaces those defaults, and only those a run did not set itself:
an explicit value (a flag, a batch entry, a ``--config`` file) always wins. ``auto`` picks by
the model set and the device:

========  =====================================================  ==================================
preset    settings                                               auto picks it for
========  =====================================================  ==================================
full      the dataclass defaults (512 px, 3000 splat iterations,  a GPU (``default``, ``synthetic``)
          the trajectory's views, the render path's frames)
quick     128 px (256 px with the real diffusion models, which    a CPU (``default``, ``synthetic``)
          make poor images below that), 200 splat iterations,
          48 video frames
plumbing  64 px, 4 views, 2 denoising steps, 30 splat             ``tiny`` models, any device
          iterations, 8 video frames
========  =====================================================  ==================================

With fewer splat iterations the refine step's repair rounds (``repair_start``, ``repair_every``)
come earlier too, so that all of them fall inside the run.

The settings a preset resolved are ordinary settings of the scene: they are saved in its
``config.json`` and hashed like any other, so a rerun that resolves them the same way (or sets
the same values by hand) continues or skips the scene, and one that resolves them differently
(another device) is a change of settings. The preset's name is saved beside them for the record
(not hashed).
"""

from __future__ import annotations

from typing import Any

__all__ = ["PRESETS", "PRESET_CHOICES", "REAL_MODELS_QUICK", "auto_preset", "preset_values", "HELP"]

PRESETS: dict[str, dict[str, Any]] = {
    "full": {},
    "quick": {"width": 128, "height": 128, "iterations": 200, "render_frames": 48, "repair_start": 40,
              "repair_every": 40},
    "plumbing": {"width": 64, "height": 64, "views": 4, "steps": 2, "iterations": 30, "render_frames": 8,
                 "repair_start": 6, "repair_every": 6},
}
"""Each preset's values, by setting name (the dataclass field names)."""

REAL_MODELS_QUICK = {"width": 256, "height": 256}
"""``quick`` for the real diffusion models (``--models default``): Stable Diffusion is trained at
512 px and makes poor images below 256."""

PRESET_CHOICES = ("auto", *PRESETS)

HELP = ("defaults of the costly settings (size, views, steps, splat iterations, video frames) for the machine: "
        "auto (default) is 'quick' on a CPU (128 px, 256 px with --models default; 200 splat iterations, 48 video "
        "frames), 'full' on a GPU (512 px, 3000 iterations, the paths' own views and frames), and 'plumbing' for "
        "--models tiny (64 px, 4 views, 2 steps, 30 iterations, 8 frames); any setting given explicitly wins")


def auto_preset(models: str, device: str = "auto") -> str:
    """The preset ``auto`` stands for: ``plumbing`` for the tiny models, else ``full`` when the
    run's device (``auto``: CUDA when present) is a GPU, ``quick`` otherwise."""
    if models == "tiny":
        return "plumbing"
    from dreamer.backends.loading import resolve_device

    return "full" if resolve_device(device).type == "cuda" else "quick"


def preset_values(name: str, *, models: str, device: str = "auto", trajectory: str = "lookaround",
                  explicit: set[str] = frozenset()) -> tuple[str, dict[str, Any]]:
    """``(preset, values)``: the preset ``name`` stands for (``auto`` resolved) and the values it
    sets, leaving out the settings in ``explicit`` and ``views`` when the trajectory is a file
    (its cameras are its own)."""
    if name not in PRESET_CHOICES:
        raise ValueError(f"--preset must be one of {', '.join(PRESET_CHOICES)}, got {name!r}")
    resolved = auto_preset(models, device) if name == "auto" else name
    values = dict(PRESETS[resolved])
    if resolved == "quick" and models == "default":
        values.update(REAL_MODELS_QUICK)
    values = {k: v for k, v in values.items() if k not in explicit}
    if "views" in values:
        from dreamer.trajectories import is_trajectory_file

        if is_trajectory_file(trajectory):
            del values["views"]
    return resolved, values
