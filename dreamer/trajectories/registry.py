"""Every preset by name."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable

from dreamer.cameras import Camera
from dreamer.trajectories.base import Trajectory
from dreamer.trajectories.presets import (
    backward,
    forward,
    lookaround,
    lookdown,
    moveright,
    orbit,
    rotate360,
)
from dreamer.trajectories.render_paths import back_and_forth, headbanging, llff

# ------------------------------------------------------------------------------------------------
# Registry
# ------------------------------------------------------------------------------------------------
PRESETS: dict[str, Callable[..., Trajectory]] = {
    "lookaround": lookaround,
    "lookdown": lookdown,
    "rotate360": rotate360,
    "forward": forward,
    "backward": backward,
    "moveright": moveright,
    "orbit": orbit,
    "back_and_forth": back_and_forth,
    "llff": llff,
    "headbanging": headbanging,
}
"""Every preset by name: ``PRESETS[name](first, center_depth, **params) -> Trajectory``."""

GENERATION_PRESETS: tuple[str, ...] = ("lookaround", "lookdown", "rotate360", "forward", "backward",
                                       "moveright", "orbit")
"""Presets meant for dreaming (few views, each overlapping earlier ones); all render too."""

RENDER_PRESETS: tuple[str, ...] = ("back_and_forth", "llff", "headbanging")
"""Presets meant for fly-through videos (many smooth frames)."""


def is_trajectory_file(name: str) -> bool:
    """Whether a trajectory setting names a file (``*.json``, or any existing file) rather than a
    preset: the one rule the run, its checks and the presets' camera count follow."""
    try:
        return name.endswith(".json") or Path(name).is_file()
    except OSError:  # a name no file can have (too long for the file system): a preset's, refused as one
        return False


def make_trajectory(name: str, first: Camera, center_depth: float, **params: Any) -> Trajectory:
    """Build the preset ``name`` (a key of :data:`PRESETS`) with keyword ``params``.

    Raises:
        ValueError: an unknown name (the message lists the valid ones) or a parameter the preset
            does not take (the message lists the ones it does).
    """
    fn = PRESETS.get(name)
    if fn is None:
        raise ValueError(f"unknown trajectory preset {name!r}; valid names: {', '.join(PRESETS)}")
    allowed = [p for p in inspect.signature(fn).parameters if p not in ("first", "center_depth")]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"preset {name!r} takes no parameter {', '.join(map(repr, unknown))}; "
                         f"its parameters: {', '.join(allowed)}")
    return fn(first, center_depth, **params)
