"""Render presets: smooth camera paths with many frames for fly-through videos (frame 0 is the first camera)."""

from __future__ import annotations

import math

import numpy as np

from dreamer.cameras import Camera
from dreamer.checks import check_int, check_number
from dreamer.trajectories.base import Trajectory, _apply, _check_first, _distance
from dreamer.trajectories.rotations import _orbit_rel, _rigid, _yaw_pitch


# ------------------------------------------------------------------------------------------------
# Render presets (smooth paths, many frames; frame 0 is the first camera)
# ------------------------------------------------------------------------------------------------
def back_and_forth(first: Camera, center_depth: float, *, n: int = 201, distance: float = 0.5,
                   relative: bool = True) -> Trajectory:
    """Dolly in and back out along +z of the first camera, easing at both ends.

    The offset is ``distance * (1 - cos(2 pi i / (n-1))) / 2``: it starts and ends at ``first``
    and peaks at ``distance`` ahead in the middle frame.

    Args:
        first, center_depth: as for every preset.
        n: number of frames (>= 2).
        distance: the deepest point (> 0), a fraction of ``center_depth`` when ``relative``.
        relative: see ``distance``.
    """
    _check_first(first)
    cd = check_number(center_depth, "center_depth", min=0, open_min=True)
    n = check_int(n, "n", min=2)
    check_number(distance, "distance", min=0, open_min=True)
    d = _distance(distance, cd, relative)
    rels = [np.eye(4)] + [_rigid(t=(0.0, 0.0, d * 0.5 * (1.0 - math.cos(2.0 * math.pi * i / (n - 1)))))
                          for i in range(1, n)]
    return Trajectory(_apply(first, rels))


def llff(first: Camera, center_depth: float, *, n: int = 400, angle: float = 5.0, rounds: int = 2,
         pivot_depth: float | None = None) -> Trajectory:
    """A small spiral orbit around a pivot in front of the camera, looking at it (LLFF style).

    The orbit direction turns ``rounds`` times while its radius eases from 0 to ``angle``
    degrees during the first round and then stays: frame 0 is ``first`` and the motion is smooth.
    The pivot is at z-depth ``pivot_depth`` (default ``center_depth``) on the first optical axis.

    Args:
        first, center_depth: as for every preset.
        n: number of frames (>= 2).
        angle: orbit radius in degrees, in (0, 90).
        rounds: number of turns (>= 1).
        pivot_depth: pivot z-depth (> 0) if not ``center_depth``.
    """
    _check_first(first)
    cd = check_number(center_depth, "center_depth", min=0, open_min=True)
    n = check_int(n, "n", min=2)
    angle = check_number(angle, "angle", min=0, open_min=True)
    if angle >= 90.0:
        raise ValueError(f"angle must be below 90 degrees, got {angle}")
    rounds = check_int(rounds, "rounds", min=1)
    pd = cd if pivot_depth is None else check_number(pivot_depth, "pivot_depth", min=0, open_min=True)
    rels = [np.eye(4)]
    for i in range(1, n):
        s = rounds * i / (n - 1)  # turns so far
        ramp = min(s, 1.0)
        r = angle * ramp * ramp * (3.0 - 2.0 * ramp)  # smoothstep
        phi = 2.0 * math.pi * s
        rels.append(_orbit_rel(r * math.sin(phi), r * math.cos(phi), pd))
    return Trajectory(_apply(first, rels))


def headbanging(first: Camera, center_depth: float, *, n: int = 720, max_yaw: float = 15.0,
                max_pitch: float = 0.0, rounds: int = 2) -> Trajectory:
    """Shake (yaw) and/or nod (pitch) the head in place: rotation only, sinusoidal.

    Frame i has yaw ``max_yaw * sin(2 pi rounds i / n)`` and pitch
    ``max_pitch * sin(4 pi rounds i / n)`` (nodding twice per shake), so frame 0 is ``first``.

    Args:
        first, center_depth: as for every preset (``center_depth`` validated, unused).
        n: number of frames (>= 2).
        max_yaw: largest yaw in degrees, in [0, 180).
        max_pitch: largest pitch in degrees, in [0, 90).
        rounds: number of shakes (>= 1).
    """
    _check_first(first)
    check_number(center_depth, "center_depth", min=0, open_min=True)
    n = check_int(n, "n", min=2)
    max_yaw = check_number(max_yaw, "max_yaw")
    max_pitch = check_number(max_pitch, "max_pitch")
    if not 0.0 <= max_yaw < 180.0 or not 0.0 <= max_pitch < 90.0 or max_yaw == max_pitch == 0.0:
        raise ValueError(f"need max_yaw in [0, 180) and max_pitch in [0, 90), not both 0; "
                         f"got max_yaw={max_yaw}, max_pitch={max_pitch}")
    rounds = check_int(rounds, "rounds", min=1)
    rels = [np.eye(4)]
    for i in range(1, n):
        phi = 2.0 * math.pi * rounds * i / n
        rels.append(_rigid(_yaw_pitch(max_yaw * math.sin(phi), max_pitch * math.sin(2.0 * phi))))
    return Trajectory(_apply(first, rels))
