"""Camera trajectories: the presets a scene is dreamed and rendered along, and trajectory files.

A :class:`Trajectory` is a list of :class:`~dreamer.cameras.Camera` plus one optional prompt per
camera (``None`` means "use the scene prompt"). Cameras use the project convention
(dreamer/cameras.py): ``c2w`` [4,4] with OpenCV axes (+x right, +y down, +z forward).

Presets
-------
Every preset is a function ``preset(first, center_depth, **params) -> Trajectory``:

* ``first`` is the camera of the input image. It gives the intrinsics, the image size and the
  base pose; every preset is built as ``first.c2w @ relative`` so it works for any base pose.
  For the generation presets ``cameras[0]`` is ``first`` itself (the loop dreams ``cameras[1:]``);
  the render presets also start at ``first``.
* ``center_depth`` (world units, > 0) is the z-depth of the scene's centre in front of ``first``
  (see :func:`center_depth_from`). Orbits pivot about the point at that depth on the optical axis,
  and translations are fractions of it by default, so a preset suits any scene scale.
* ``n`` always counts all cameras, ``first`` included.

Angle conventions of the parameters: a positive ``yaw`` turns the view to the right, a positive
``pitch`` tilts it up (``lookdown``'s ``down`` is a positive downward tilt); a positive orbit
angle moves the camera to its right around the pivot, a positive elevation moves it up. Yaw turns
about the first camera's vertical axis and pitch about the camera's own x axis afterwards, so the
horizon stays level (no roll).

Generation presets (ordered so that every new view overlaps views already dreamed):
``lookaround`` (21 views), ``lookdown`` (14), ``rotate360`` (10), ``forward``, ``backward``,
``moveright``, ``orbit``. Render presets (smooth, many frames): ``back_and_forth``, ``llff``,
``headbanging``. Any generation preset can be rendered too, and :func:`interpolate_cameras`
turns one into a smooth video path. ``PRESETS`` maps names to functions;
:func:`make_trajectory` looks one up by name.

Trajectory files (JSON)
-----------------------
Explicit cameras (a bare JSON list of camera objects is accepted as well)::

    {
      "convention": "opencv",            # optional; "opengl" for nerfstudio / Blender camera axes
      "width": 512, "height": 512,       # optional defaults for every camera
      "fov": 50.0,                       # optional default intrinsics: one of K, fov, focal
      "cameras": [
        {"c2w": [[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]},
        {"c2w": [...], "fov": 60.0, "prompt": "a window with a view of the sea"},
        {"c2w": [...], "K": [[500,0,256],[0,500,256],[0,0,1]], "width": 512, "height": 512}
      ],
      "prompts": [null, "...", "..."]    # optional, one per camera, instead of per-camera "prompt"
    }

* ``c2w``: camera-to-world 4x4 (rows), rigid (rotation + translation, last row 0 0 0 1), in world
  units. The world frame is the file's own; the first camera is the camera of the input image.
  With ``"convention": "opengl"`` the camera axes are +x right, +y up, +z backward (nerfstudio,
  Blender) and are converted on load.
* Intrinsics, per camera or as top-level defaults, at most one of: ``K`` 3x3 pixels; ``fov``
  horizontal field of view in degrees (square pixels, centred principal point); ``focal`` pixels
  (square pixels, centred principal point). Missing intrinsics come from the top level, else from
  the ``first`` camera given to :func:`load_trajectory` (resized when the image size differs).
  ``width``/``height`` (pixels) default to the top level, else to ``first``'s.
* ``prompt``: a string or null (null = the scene prompt).

Keyframes, interpolated into a smooth path::

    {
      "keyframes": [
        {"c2w": [...], "frames": 30},    # 30 frames from this keyframe up to (not incl.) the next
        {"c2w": [...], "frames": 60, "fov": 40.0},
        {"c2w": [...]}                   # the last keyframe is the last frame
      ],
      "interpolation": "catmull_rom"     # positions: "linear" (default) or "catmull_rom"
    }

Instead of per-segment ``frames``, a top-level ``"frames": N`` gives the total number of frames
(both end keyframes included), spread evenly over the segments. Every keyframe is hit exactly.
Positions are interpolated linearly (or by a uniform Catmull-Rom spline), rotations by quaternion
slerp, focal lengths geometrically (f0^(1-t) * f1^t), principal points linearly; all keyframes
must share one image size. A keyframe's prompt applies to the frames of the segment it starts.
The other top-level keys (``convention``, ``width``, ``height``, ``K``/``fov``/``focal``,
``prompts``) work as for cameras.

A nerfstudio / instant-ngp ``transforms.json`` (``"frames": [{"transform_matrix": ...}]`` with
``fl_x``/``fl_y``/``cx``/``cy``/``w``/``h`` or ``camera_angle_x``; OpenGL axes) is read as well.

Errors raise :class:`TrajectoryFileError` (a ValueError) naming the file, the camera (or
keyframe) index and what is wrong.
"""

from __future__ import annotations

import inspect
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from dreamer.cameras import (
    Camera,
    check_rigid,
    focal_from_fov,
    intrinsics_matrix,
    opencv_to_opengl,
    opengl_to_opencv,
    rotation_x,
    rotation_y,
)

__all__ = [
    "Trajectory",
    "TrajectoryFileError",
    "lookaround",
    "lookdown",
    "rotate360",
    "forward",
    "backward",
    "moveright",
    "orbit",
    "back_and_forth",
    "llff",
    "headbanging",
    "rotate_camera",
    "orbit_camera",
    "interpolate_cameras",
    "trajectory_to_dict",
    "PRESETS",
    "GENERATION_PRESETS",
    "RENDER_PRESETS",
    "make_trajectory",
    "load_trajectory",
    "save_trajectory",
    "center_depth_from",
]


# ------------------------------------------------------------------------------------------------
# The trajectory container
# ------------------------------------------------------------------------------------------------
@dataclass
class Trajectory:
    """Cameras in order plus one prompt per camera.

    Attributes:
        cameras: the cameras, at least one. For a generation trajectory ``cameras[0]`` is the
            camera of the input image and the loop dreams ``cameras[1:]`` in order.
        prompts: one entry per camera: a prompt for that view, or ``None`` for the scene prompt.
            Left out (``None``), every camera uses the scene prompt.
    """

    cameras: list[Camera]
    prompts: list[str | None] = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.cameras = list(self.cameras)
        if not self.cameras:
            raise ValueError("a Trajectory needs at least one camera, got none")
        for i, cam in enumerate(self.cameras):
            if not isinstance(cam, Camera):
                raise TypeError(f"Trajectory.cameras[{i}] must be a Camera, got {type(cam).__name__}")
        if self.prompts is None:
            self.prompts = [None] * len(self.cameras)
        else:
            self.prompts = list(self.prompts)
        if len(self.prompts) != len(self.cameras):
            raise ValueError(
                f"Trajectory has {len(self.cameras)} cameras but {len(self.prompts)} prompts; "
                "give one prompt (or None) per camera"
            )
        for i, p in enumerate(self.prompts):
            if p is not None and not isinstance(p, str):
                raise TypeError(f"Trajectory.prompts[{i}] must be a str or None, got {type(p).__name__}")

    def __len__(self) -> int:
        return len(self.cameras)

    @property
    def c2w(self) -> Tensor:
        """All camera-to-world matrices stacked, [N,4,4] (OpenCV axes)."""
        return torch.stack([c.c2w for c in self.cameras])

    def resolved_prompts(self, scene_prompt: str) -> list[str]:
        """One prompt per camera, ``scene_prompt`` where the trajectory has ``None``."""
        return [scene_prompt if p is None else p for p in self.prompts]


class TrajectoryFileError(ValueError):
    """A trajectory file (or dict) that cannot be read; the message names the source and the camera."""


# ------------------------------------------------------------------------------------------------
# Small geometry helpers (float64 numpy inside, float32 torch cameras outside)
# ------------------------------------------------------------------------------------------------
def _rot_y(deg: float) -> np.ndarray:
    """:func:`dreamer.cameras.rotation_y` in float64 numpy (+ turns +z towards +x: right)."""
    return rotation_y(deg).double().numpy()


def _rot_x(deg: float) -> np.ndarray:
    """:func:`dreamer.cameras.rotation_x` in float64 numpy (+ tilts +z towards -y: up)."""
    return rotation_x(deg).double().numpy()


def _yaw_pitch(yaw: float, pitch: float) -> np.ndarray:
    """Rotation [3,3]: turn right by ``yaw`` deg about the vertical, then tilt up by ``pitch`` deg.

    Same axes as :func:`dreamer.cameras.rotation_y` / :func:`~dreamer.cameras.rotation_x`.
    """
    return _rot_y(yaw) @ _rot_x(pitch)


def _rigid(R: np.ndarray | None = None, t: Sequence[float] | None = None) -> np.ndarray:
    T = np.eye(4)
    if R is not None:
        T[:3, :3] = R
    if t is not None:
        T[:3, 3] = t
    return T


def _orbit_rel(yaw: float, elevation: float, pivot_depth: float) -> np.ndarray:
    """Relative c2w [4,4] of a camera moved around the pivot at (0, 0, pivot_depth), looking at it.

    A positive ``yaw`` (deg) moves the camera to its right, a positive ``elevation`` (deg) up; the
    pivot stays on the optical axis at z-depth ``pivot_depth``.
    """
    R = _yaw_pitch(-yaw, -elevation)
    pivot = np.array([0.0, 0.0, pivot_depth])
    return _rigid(R, pivot - R @ pivot)


def _apply(first: Camera, rels: Sequence[np.ndarray]) -> list[Camera]:
    """Cameras with ``c2w = first.c2w @ rel`` for each relative transform [4,4]; cameras[0] is
    ``first`` itself when ``rels[0]`` is the identity."""
    base = first.c2w.detach().cpu().double().numpy()
    cams = []
    for rel in rels:
        if np.array_equal(rel, np.eye(4)):
            cams.append(first)
            continue
        c2w = torch.from_numpy(base @ rel).to(device=first.device, dtype=torch.float32)
        cams.append(first.with_c2w(c2w))
    return cams


def _outward(mags: Sequence[float]) -> list[float]:
    """[0, +m1, -m1, +m2, -m2, ...]: grow outward from the centre, right (or up) first."""
    out = [0.0]
    for m in mags:
        out += [float(m), -float(m)]
    return out


# ------------------------------------------------------------------------------------------------
# Parameter validation
# ------------------------------------------------------------------------------------------------
def _check_first(first: Camera) -> None:
    if not isinstance(first, Camera):
        raise TypeError(f"first must be a Camera, got {type(first).__name__}")


def _check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _check_finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _check_count(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_angles(name: str, values: Sequence[float], limit: float) -> list[float]:
    try:
        vals = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a sequence of angles in degrees, got {values!r}") from None
    if any(isinstance(v, bool) for v in values):
        raise ValueError(f"{name} must be angles in degrees, got {values!r}")
    if any(not (0.0 < v < limit) for v in vals) or any(b <= a for a, b in zip(vals, vals[1:])):
        raise ValueError(
            f"{name} must be strictly increasing angles in (0, {limit}) degrees (they are mirrored "
            f"to negative values and 0 is always included), got {values!r}"
        )
    return vals


def _distance(distance: float, center_depth: float, relative: bool, name: str = "distance") -> float:
    d = _check_finite(name, distance)
    return d * center_depth if relative else d


# ------------------------------------------------------------------------------------------------
# Generation presets
# ------------------------------------------------------------------------------------------------
def _rotation_grid(first: Camera, yaws: Sequence[float], pitch_rows: Sequence[float], n: int | None) -> Trajectory:
    rels = [_rigid(_yaw_pitch(y, p)) for p in pitch_rows for y in _outward(yaws)]
    if n is not None:
        n = _check_count("n", n)
        if n > len(rels):
            raise ValueError(f"n={n} is more than the {len(rels)} views of the grid; add yaws or pitches")
        rels = rels[:n]
    return Trajectory(_apply(first, rels))


def lookaround(first: Camera, center_depth: float, *, yaws: Sequence[float] = (20.0, 40.0, 60.0),
               pitches: Sequence[float] = (22.5,), n: int | None = None) -> Trajectory:
    """Look around from the first camera's centre: a yaw x pitch grid of rotations (no translation).

    The grid is ``{0, +-yaws} x {0, +-pitches}`` (degrees; positive yaw = right, positive pitch =
    up), 21 views by default like the original (yaw {0, +-20, +-40, +-60} x pitch {0, +-22.5}).
    Order: the pitch-0 row first, growing outward from the centre alternately right and left
    (0, +20, -20, +40, ...), then each pitched row the same way, rows by increasing |pitch|, the
    up row before the down row. So every new view is at most one grid step (max(yaw step,
    pitch step)) from a view already dreamed and overlaps it.

    Args:
        first: the camera of the input image (``cameras[0]``).
        center_depth: scene-centre z-depth (> 0); unused by this rotation-only path but
            validated so all presets share one signature.
        yaws: increasing yaw magnitudes in (0, 180) degrees, mirrored.
        pitches: increasing pitch magnitudes in (0, 90) degrees, mirrored; ``()`` for one row.
        n: keep only the first ``n`` views of that order (None: all).
    Returns:
        ``(2 len(yaws) + 1) * (2 len(pitches) + 1)`` (or ``n``) cameras sharing ``first``'s centre.
    """
    _check_first(first)
    _check_positive("center_depth", center_depth)
    yaws = _check_angles("yaws", yaws, 180.0)
    pitches = _check_angles("pitches", pitches, 90.0)
    return _rotation_grid(first, yaws, _outward(pitches), n)


def lookdown(first: Camera, center_depth: float, *, yaws: Sequence[float] = (20.0, 40.0, 60.0),
             down: float = 22.5, n: int | None = None) -> Trajectory:
    """Look around and down: yaws ``{0, +-yaws}`` x pitch {0, ``down`` degrees downwards}.

    14 rotation-only views by default (7 yaws x 2 rows) like the original. The level row comes
    first (0, +20, -20, ...), then the down-tilted row from its centre outward.

    Args:
        first: the camera of the input image (``cameras[0]``).
        center_depth: scene-centre z-depth (> 0); validated, unused (rotation only).
        yaws: increasing yaw magnitudes in (0, 180) degrees, mirrored.
        down: downward tilt of the second row in (0, 90) degrees.
        n: keep only the first ``n`` views of that order (None: all).
    Returns:
        ``2 * (2 len(yaws) + 1)`` (or ``n``) cameras sharing ``first``'s centre.
    """
    _check_first(first)
    _check_positive("center_depth", center_depth)
    yaws = _check_angles("yaws", yaws, 180.0)
    (down,) = _check_angles("down", (down,), 90.0)
    return _rotation_grid(first, yaws, [0.0, -down], n)


def rotate360(first: Camera, center_depth: float, *, n: int | None = None, order: str = "sweep") -> Trajectory:
    """Turn a full circle about the vertical axis through the first camera: a yaw every 360/n deg.

    With ``n`` None the step is at most half the horizontal field of view, so every view
    overlaps the one before it by half (16 views at the research default FoV of 47.4 deg). The
    original's 10 views leave a 25% overlap at that FoV: too little to pin the new depth down.

    Args:
        first: the camera of the input image (``cameras[0]``, yaw 0).
        center_depth: scene-centre z-depth (> 0); validated, unused (rotation only).
        n: number of views including the first (the last is at yaw ``360 (n-1)/n``); None picks
            it from the field of view (see above).
        order: ``"sweep"`` turns right step by step (0, 36, 72, ...; also a smooth render path),
            ``"alternate"`` grows both ways (0, +36, -36, +72, ...) so the loop closes opposite
            the input image.
    Returns:
        ``n`` cameras sharing ``first``'s centre.
    """
    _check_first(first)
    _check_positive("center_depth", center_depth)
    if n is None:
        n = max(4, math.ceil(360.0 / (0.5 * first.fov_x) - 1e-9))
    n = _check_count("n", n)
    step = 360.0 / n
    if order == "sweep":
        yaws = [i * step for i in range(n)]
    elif order == "alternate":
        yaws = _outward([k * step for k in range(1, n // 2 + 1)])[:n]
    else:
        raise ValueError(f"order must be 'sweep' or 'alternate', got {order!r}")
    return Trajectory(_apply(first, [_rigid(_rot_y(y)) for y in yaws]))


def _translation_path(first: Camera, direction: Sequence[float], n: int, dist: float) -> Trajectory:
    d = np.asarray(direction, dtype=np.float64)
    rels = [_rigid(t=(dist * i / (n - 1)) * d) if i else np.eye(4) for i in range(n)] if n > 1 else [np.eye(4)]
    return Trajectory(_apply(first, rels))


def forward(first: Camera, center_depth: float, *, n: int = 5, distance: float = 0.5,
            relative: bool = True) -> Trajectory:
    """Dolly in along the first camera's viewing direction (+z), evenly spaced, no rotation.

    Args:
        first: the camera of the input image (``cameras[0]``).
        center_depth: scene-centre z-depth (> 0, world units).
        n: number of views including the first.
        distance: how far the last view is from the first (> 0): a fraction of ``center_depth``
            when ``relative`` (0.5 = half way to the scene centre), else world units.
        relative: see ``distance``.
    Returns:
        ``n`` cameras; camera i is ``distance * i/(n-1)`` ahead of ``first``.
    """
    _check_first(first)
    cd = _check_positive("center_depth", center_depth)
    n = _check_count("n", n)
    _check_positive("distance", distance)
    return _translation_path(first, (0.0, 0.0, 1.0), n, _distance(distance, cd, relative))


def backward(first: Camera, center_depth: float, *, n: int = 5, distance: float = 0.5,
             relative: bool = True) -> Trajectory:
    """Dolly out: move back along -z of the first camera (reveals new content at every border).

    Args: as :func:`forward`; camera i is ``distance * i/(n-1)`` behind ``first``.
    """
    _check_first(first)
    cd = _check_positive("center_depth", center_depth)
    n = _check_count("n", n)
    _check_positive("distance", distance)
    return _translation_path(first, (0.0, 0.0, -1.0), n, _distance(distance, cd, relative))


def moveright(first: Camera, center_depth: float, *, n: int = 5, distance: float = 0.5,
              relative: bool = True) -> Trajectory:
    """Truck sideways along +x of the first camera (a negative ``distance`` moves left), no rotation.

    Args: as :func:`forward`, except that ``distance`` may be negative (not zero).
    """
    _check_first(first)
    cd = _check_positive("center_depth", center_depth)
    n = _check_count("n", n)
    if _check_finite("distance", distance) == 0.0:
        raise ValueError("distance must be non-zero")
    return _translation_path(first, (1.0, 0.0, 0.0), n, _distance(distance, cd, relative))


def orbit(first: Camera, center_depth: float, *, n: int = 7, angle: float = 30.0, symmetric: bool = True,
          pivot_depth: float | None = None) -> Trajectory:
    """Move on a horizontal arc around a pivot in front of the first camera, always looking at it.

    The pivot is on the first camera's optical axis at z-depth ``pivot_depth`` (default
    ``center_depth``); every camera keeps it at its principal point at that same distance.

    Args:
        first: the camera of the input image (``cameras[0]``).
        center_depth: scene-centre z-depth (> 0, world units).
        n: number of views including the first.
        angle: the largest orbit angle in degrees, in (0, 180). A positive angle moves the camera
            to its right (it turns left to keep the pivot).
        symmetric: True: views at ``0, +s, -s, +2s, -2s, ...`` reaching ``+-angle`` (grown
            outward from the first view; the right side gets the extra view when n is even).
            False: ``0, s, 2s, ..., angle`` to the right only.
        pivot_depth: pivot z-depth (> 0) if not ``center_depth``.
    Returns:
        ``n`` cameras.
    """
    _check_first(first)
    cd = _check_positive("center_depth", center_depth)
    n = _check_count("n", n)
    angle = _check_positive("angle", angle)
    if angle >= 180.0:
        raise ValueError(f"angle must be below 180 degrees, got {angle}")
    pd = cd if pivot_depth is None else _check_positive("pivot_depth", pivot_depth)
    if n == 1:
        yaws = [0.0]
    elif symmetric:
        k = n // 2  # steps on the right (the larger side)
        yaws = _outward([angle * j / k for j in range(1, k + 1)])[:n]
    else:
        yaws = [angle * i / (n - 1) for i in range(n)]
    rels = [np.eye(4) if i == 0 else _orbit_rel(y, 0.0, pd) for i, y in enumerate(yaws)]
    return Trajectory(_apply(first, rels))


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
    cd = _check_positive("center_depth", center_depth)
    n = _check_count("n", n, 2)
    _check_positive("distance", distance)
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
    cd = _check_positive("center_depth", center_depth)
    n = _check_count("n", n, 2)
    angle = _check_positive("angle", angle)
    if angle >= 90.0:
        raise ValueError(f"angle must be below 90 degrees, got {angle}")
    rounds = _check_count("rounds", rounds)
    pd = cd if pivot_depth is None else _check_positive("pivot_depth", pivot_depth)
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
    _check_positive("center_depth", center_depth)
    n = _check_count("n", n, 2)
    max_yaw = _check_finite("max_yaw", max_yaw)
    max_pitch = _check_finite("max_pitch", max_pitch)
    if not 0.0 <= max_yaw < 180.0 or not 0.0 <= max_pitch < 90.0 or max_yaw == max_pitch == 0.0:
        raise ValueError(f"need max_yaw in [0, 180) and max_pitch in [0, 90), not both 0; "
                         f"got max_yaw={max_yaw}, max_pitch={max_pitch}")
    rounds = _check_count("rounds", rounds)
    rels = [np.eye(4)]
    for i in range(1, n):
        phi = 2.0 * math.pi * rounds * i / n
        rels.append(_rigid(_yaw_pitch(max_yaw * math.sin(phi), max_pitch * math.sin(2.0 * phi))))
    return Trajectory(_apply(first, rels))


# ------------------------------------------------------------------------------------------------
# Single-camera helpers
# ------------------------------------------------------------------------------------------------
def rotate_camera(camera: Camera, yaw: float = 0.0, pitch: float = 0.0) -> Camera:
    """``camera`` turned in place about its own centre: ``yaw`` degrees right, then ``pitch`` up."""
    _check_first(camera)
    rel = _rigid(_yaw_pitch(_check_finite("yaw", yaw), _check_finite("pitch", pitch)))
    return _apply(camera, [rel])[0]


def orbit_camera(camera: Camera, pivot_depth: float, yaw: float = 0.0, elevation: float = 0.0) -> Camera:
    """``camera`` moved around the point at z-depth ``pivot_depth`` on its optical axis, looking at it.

    A positive ``yaw`` (degrees) moves it to its right, a positive ``elevation`` up; the pivot
    stays at the principal point at distance ``pivot_depth``. (The original code's +-5 degree
    "hemisphere" training views are ``orbit_camera(cam, center_depth, +-5, 0)`` and ``(.., 0, +-5)``.)
    """
    _check_first(camera)
    pd = _check_positive("pivot_depth", pivot_depth)
    rel = _orbit_rel(_check_finite("yaw", yaw), _check_finite("elevation", elevation), pd)
    return _apply(camera, [rel])[0]


# ------------------------------------------------------------------------------------------------
# Interpolation: positions linear / Catmull-Rom, rotations slerp, focal lengths geometric
# ------------------------------------------------------------------------------------------------
def _quat_from_matrix(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) of a rotation matrix [3,3] (Shepperd's branch choice)."""
    tr = R[0, 0] + R[1, 1] + R[2, 2]
    if tr > 0.0:
        s = 2.0 * math.sqrt(tr + 1.0)
        q = [0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s]
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = 2.0 * math.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2])
        q = [(R[2, 1] - R[1, 2]) / s, 0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s]
    elif R[1, 1] > R[2, 2]:
        s = 2.0 * math.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2])
        q = [(R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s]
    else:
        s = 2.0 * math.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1])
        q = [(R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s]
    q = np.asarray(q)
    return q / np.linalg.norm(q)


def _matrix_from_quat(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def _slerp(q0: np.ndarray, q1: np.ndarray, t: float) -> np.ndarray:
    """Spherical linear interpolation of unit quaternions along the shorter arc."""
    dot = float(np.dot(q0, q1))
    if dot < 0.0:
        q1, dot = -q1, -dot
    if dot > 0.9995:  # nearly equal: lerp is exact enough and avoids 0/0
        q = q0 + t * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = math.acos(min(dot, 1.0))
    s = math.sin(theta)
    return (math.sin((1.0 - t) * theta) * q0 + math.sin(t * theta) * q1) / s


def _segment_counts(frames: int | Sequence[int], n_segments: int) -> list[int]:
    if isinstance(frames, (int, np.integer)) and not isinstance(frames, bool):
        total = int(frames)
        if total < n_segments + 1:
            raise ValueError(f"a total of {total} frames cannot hit {n_segments + 1} keyframes; "
                             f"need at least {n_segments + 1}")
        base, extra = divmod(total - 1, n_segments)
        return [base + (1 if i < extra else 0) for i in range(n_segments)]
    counts = list(frames)
    if len(counts) != n_segments:
        raise ValueError(f"need one frame count per segment ({n_segments} for {n_segments + 1} keyframes), "
                         f"got {len(counts)}")
    for i, c in enumerate(counts):
        _check_count(f"frames of segment {i}", c)
    return [int(c) for c in counts]


def interpolate_cameras(keyframes: Sequence[Camera], frames: int | Sequence[int], *,
                        position: str = "linear") -> list[Camera]:
    """A smooth camera path through keyframes.

    Args:
        keyframes: at least 2 cameras of one image size.
        frames: either one count per segment (``len(keyframes) - 1`` integers >= 1: the frames from
            keyframe i up to, not including, keyframe i+1), or the total number of frames (an int
            >= ``len(keyframes)``, both end keyframes included) spread evenly over the segments.
        position: ``"linear"`` or ``"catmull_rom"`` (a uniform Catmull-Rom spline through the
            keyframe centres; the end tangents mirror the neighbouring keyframe).
    Returns:
        ``sum(counts) + 1`` cameras. Keyframe j appears unchanged (the same object) at index
        ``sum(counts[:j])``. In between, rotations are slerped (shorter arc), fx and fy
        interpolated geometrically, the principal point linearly; every c2w is rigid.
    """
    keyframes = list(keyframes)
    if len(keyframes) < 2:
        raise ValueError(f"interpolation needs at least 2 keyframes, got {len(keyframes)}")
    for i, cam in enumerate(keyframes):
        if not isinstance(cam, Camera):
            raise TypeError(f"keyframe {i} must be a Camera, got {type(cam).__name__}")
        if (cam.width, cam.height) != (keyframes[0].width, keyframes[0].height):
            raise ValueError(f"keyframes must share one image size: keyframe 0 is "
                             f"{keyframes[0].width}x{keyframes[0].height}, keyframe {i} is {cam.width}x{cam.height}")
    if position not in ("linear", "catmull_rom"):
        raise ValueError(f"position must be 'linear' or 'catmull_rom', got {position!r}")
    counts = _segment_counts(frames, len(keyframes) - 1)
    device = keyframes[0].device
    c2ws = [k.c2w.detach().cpu().double().numpy() for k in keyframes]
    Ks = [k.K.detach().cpu().double().numpy() for k in keyframes]
    P = np.stack([m[:3, 3] for m in c2ws])
    Q = [_quat_from_matrix(m[:3, :3]) for m in c2ws]
    # Padded control points for Catmull-Rom: mirror the neighbour at each end.
    Pp = np.concatenate([2 * P[:1] - P[1:2], P, 2 * P[-1:] - P[-2:-1]])
    out: list[Camera] = []
    for i, k in enumerate(counts):
        out.append(keyframes[i])
        for j in range(1, k):
            t = j / k
            if position == "linear":
                pos = (1 - t) * P[i] + t * P[i + 1]
            else:
                p0, p1, p2, p3 = Pp[i], Pp[i + 1], Pp[i + 2], Pp[i + 3]
                pos = 0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t * t
                             + (3 * p1 - p0 - 3 * p2 + p3) * t ** 3)
            c2w = _rigid(_matrix_from_quat(_slerp(Q[i], Q[i + 1], t)), pos)
            K0, K1 = Ks[i], Ks[i + 1]
            K = (1 - t) * K0 + t * K1
            K[0, 0] = K0[0, 0] ** (1 - t) * K1[0, 0] ** t
            K[1, 1] = K0[1, 1] ** (1 - t) * K1[1, 1] ** t
            out.append(Camera(torch.from_numpy(K).to(device=device, dtype=torch.float32),
                              torch.from_numpy(c2w).to(device=device, dtype=torch.float32),
                              keyframes[0].width, keyframes[0].height))
    out.append(keyframes[-1])
    return out


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


# ------------------------------------------------------------------------------------------------
# Trajectory files
# ------------------------------------------------------------------------------------------------
_INTRINSIC_KEYS = ("K", "fov", "focal")
_CAMERA_KEYS = {"c2w", "width", "height", "prompt", *_INTRINSIC_KEYS}
_TOP_KEYS = {"convention", "width", "height", "prompts", "cameras", "keyframes", "frames", "interpolation",
             "description", *_INTRINSIC_KEYS}


class _Source:
    """Where an error happened: the file (or '<trajectory dict>') and the entry."""

    def __init__(self, name: str) -> None:
        self.name = name

    def error(self, where: str | None, what: str) -> TrajectoryFileError:
        return TrajectoryFileError(f"{self.name}: {where}: {what}" if where else f"{self.name}: {what}")


def _shape_str(a: np.ndarray) -> str:
    return "x".join(map(str, a.shape)) if a.ndim else "a scalar"


def _parse_matrix(value: Any, rows: int, cols: int, key: str, src: _Source, where: str | None) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise src.error(where, f"{key} must be {rows}x{cols} (a list of {rows} rows of {cols} numbers), "
                               f"got {json.dumps(value)[:80]}") from None
    if a.shape != (rows, cols):
        raise src.error(where, f"{key} must be {rows}x{cols} (a list of {rows} rows of {cols} numbers), "
                               f"got {_shape_str(a)}")
    if not np.isfinite(a).all():
        raise src.error(where, f"{key} has non-finite entries")
    return a


def _parse_number(value: Any, key: str, src: _Source, where: str | None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise src.error(where, f"{key} must be a finite number, got {value!r}")
    return float(value)


def _parse_size(value: Any, key: str, src: _Source, where: str | None) -> int:
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or value != int(value) or value <= 0):
        raise src.error(where, f"{key} must be a positive integer (pixels), got {value!r}")
    return int(value)


def _parse_c2w(value: Any, convention: str, src: _Source, where: str) -> Tensor:
    c2w = torch.from_numpy(_parse_matrix(value, 4, 4, "c2w", src, where))
    try:
        check_rigid(c2w, name="c2w")
    except ValueError as e:
        raise src.error(where, f"c2w is non-rigid (expected a rotation and a translation with last row "
                               f"0 0 0 1): {e}") from None
    # Snap the rotation onto SO(3): files written by hand carry a few digits only.
    u, _, vt = np.linalg.svd(c2w[:3, :3].numpy())
    c2w[:3, :3] = torch.from_numpy(u @ vt)
    if convention == "opengl":
        c2w = opengl_to_opencv(c2w)
    return c2w.to(torch.float32)


def _parse_intrinsics(entry: dict, width: int, height: int, src: _Source, where: str | None) -> Tensor | None:
    """K [3,3] from whichever of K / fov / focal the entry has, or None if it has none."""
    given = [k for k in _INTRINSIC_KEYS if k in entry]
    if len(given) > 1:
        raise src.error(where, f"give at most one of K, fov, focal; got {', '.join(given)}")
    if not given:
        return None
    key = given[0]
    if key == "K":
        K = _parse_matrix(entry["K"], 3, 3, "K", src, where)
        if not (K[0, 0] > 0 and K[1, 1] > 0):
            raise src.error(where, f"K needs positive focal lengths, got fx={K[0, 0]}, fy={K[1, 1]}")
        if not np.allclose(K[2], [0.0, 0.0, 1.0]):
            raise src.error(where, f"K must have last row [0, 0, 1], got {K[2].tolist()}")
        return torch.from_numpy(K).to(torch.float32)
    v = _parse_number(entry[key], key, src, where)
    if key == "fov":
        if not 0.0 < v < 180.0:
            raise src.error(where, f"fov must be a horizontal field of view in (0, 180) degrees, got {v}")
        f = focal_from_fov(v, width)
    else:
        if v <= 0:
            raise src.error(where, f"focal must be positive (pixels), got {v}")
        f = v
    return intrinsics_matrix(f, f, width / 2.0, height / 2.0)


class _Defaults:
    """Top-level defaults of a file, falling back to the ``first`` camera."""

    def __init__(self, top: dict, first: Camera | None, src: _Source) -> None:
        self.first, self.src, self.top = first, src, top
        self.width = _parse_size(top["width"], "width", src, None) if "width" in top else None
        self.height = _parse_size(top["height"], "height", src, None) if "height" in top else None

    def size(self, entry: dict, where: str) -> tuple[int, int]:
        out = []
        for key, top in (("width", self.width), ("height", self.height)):
            if key in entry:
                out.append(_parse_size(entry[key], key, self.src, where))
            elif top is not None:
                out.append(top)
            elif self.first is not None:
                out.append(getattr(self.first, key))
            else:
                raise self.src.error(where, f"no {key}: give it per camera or at the top level, "
                                            "or pass a first camera")
        return out[0], out[1]

    def K(self, entry: dict, width: int, height: int, where: str) -> Tensor:
        K = _parse_intrinsics(entry, width, height, self.src, where)
        if K is None:
            K = _parse_intrinsics(self.top, width, height, self.src, "top level")
        if K is None:
            if self.first is None:
                raise self.src.error(where, "no intrinsics: give K, fov or focal per camera or at the top level, "
                                            "or pass a first camera")
            K = self.first.resized(width, height).K.detach().cpu()
        return K


def _parse_entries(entries: Any, kind: str, top: dict, defaults: _Defaults, convention: str,
                   src: _Source, extra_keys: set[str]) -> tuple[list[Camera], list[str | None], list[dict]]:
    if not isinstance(entries, list):
        raise src.error(None, f"'{kind}s' must be a list of {kind} objects, got {type(entries).__name__}")
    if not entries:
        raise src.error(None, f"has zero {kind}s; a trajectory needs at least one camera")
    cams: list[Camera] = []
    prompts: list[str | None] = []
    for i, entry in enumerate(entries):
        where = f"{kind} {i}"
        if not isinstance(entry, dict):
            raise src.error(where, f"must be an object with a 'c2w', got {type(entry).__name__}")
        unknown = sorted(set(entry) - _CAMERA_KEYS - extra_keys)
        if unknown:
            raise src.error(where, f"unknown key(s) {', '.join(map(repr, unknown))}; "
                                   f"allowed: {', '.join(sorted(_CAMERA_KEYS | extra_keys))}")
        if "c2w" not in entry:
            raise src.error(where, "missing 'c2w' (the camera-to-world 4x4 matrix)")
        c2w = _parse_c2w(entry["c2w"], convention, src, where)
        width, height = defaults.size(entry, where)
        K = defaults.K(entry, width, height, where)
        try:
            cam = Camera(K, c2w, width, height)
        except ValueError as e:
            raise src.error(where, str(e)) from None
        if defaults.first is not None:
            cam = cam.to(defaults.first.device)
        prompt = entry.get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            raise src.error(where, f"prompt must be a string or null, got {type(prompt).__name__}")
        cams.append(cam)
        prompts.append(prompt)
    if "prompts" in top:
        plist = top["prompts"]
        if not isinstance(plist, list):
            raise src.error(None, f"'prompts' must be a list (one per {kind}), got {type(plist).__name__}")
        if len(plist) != len(entries):
            raise src.error(None, f"'prompts' has {len(plist)} entries but there are {len(entries)} {kind}s; "
                                  f"give one prompt (or null) per {kind}")
        if any(p is not None for p in prompts):
            raise src.error(None, f"give prompts either per {kind} ('prompt') or as a top-level 'prompts' list, "
                                  "not both")
        for i, p in enumerate(plist):
            if p is not None and not isinstance(p, str):
                raise src.error(f"prompts[{i}]", f"must be a string or null, got {type(p).__name__}")
        prompts = list(plist)
    return cams, prompts, entries


def _parse_keyframes(data: dict, defaults: _Defaults, convention: str, src: _Source) -> Trajectory:
    cams, prompts, entries = _parse_entries(data["keyframes"], "keyframe", data, defaults, convention, src,
                                            {"frames"})
    if len(cams) < 2:
        raise src.error(None, "'keyframes' needs at least 2 keyframes (use 'cameras' for a single camera)")
    interp = data.get("interpolation", "linear")
    if interp not in ("linear", "catmull_rom"):
        raise src.error(None, f"'interpolation' must be 'linear' or 'catmull_rom', got {interp!r}")
    size0 = (cams[0].width, cams[0].height)
    for i, c in enumerate(cams):
        if (c.width, c.height) != size0:
            raise src.error(f"keyframe {i}", f"is {c.width}x{c.height} but keyframe 0 is {size0[0]}x{size0[1]}; "
                                             "keyframes must share one image size")
    per_segment = [i for i, e in enumerate(entries) if "frames" in e]
    if "frames" in data:
        if per_segment:
            raise src.error(f"keyframe {per_segment[0]}", "has 'frames' but the top level gives a total "
                                                          "'frames'; use one or the other")
        total = data["frames"]
        if isinstance(total, bool) or not isinstance(total, int) or total < len(cams):
            raise src.error(None, f"top-level 'frames' (the total, both end keyframes included) must be an "
                                  f"integer >= {len(cams)} (the number of keyframes), got {total!r}")
        counts = _segment_counts(total, len(cams) - 1)
    else:
        if len(entries) - 1 in per_segment:
            raise src.error(f"keyframe {len(entries) - 1}", "is the last keyframe: it ends the path and has no "
                                                            "segment, so it takes no 'frames'")
        missing = [i for i in range(len(entries) - 1) if i not in per_segment]
        if missing:
            raise src.error(f"keyframe {missing[0]}", "has no 'frames' (the number of frames up to the next "
                                                      "keyframe); give it on every keyframe but the last, or a "
                                                      "top-level total 'frames'")
        counts = []
        for i in range(len(entries) - 1):
            c = entries[i]["frames"]
            if isinstance(c, bool) or not isinstance(c, int) or c < 1:
                raise src.error(f"keyframe {i}", f"'frames' must be an integer >= 1, got {c!r}")
            counts.append(c)
    cameras = interpolate_cameras(cams, counts, position=interp)
    frame_prompts: list[str | None] = []
    for i, c in enumerate(counts):
        frame_prompts += [prompts[i]] * c
    frame_prompts.append(prompts[-1])
    return Trajectory(cameras, frame_prompts)


def _parse_transforms_json(data: dict, first: Camera | None, src: _Source) -> Trajectory:
    """nerfstudio / instant-ngp transforms.json: OpenGL camera axes, intrinsics per file or frame."""
    frames = data["frames"]
    if not frames:
        raise src.error(None, "has zero frames; a trajectory needs at least one camera")
    cams = []
    for i, fr in enumerate(frames):
        where = f"camera {i}"
        if not isinstance(fr, dict) or "transform_matrix" not in fr:
            raise src.error(where, "a transforms.json frame needs a 'transform_matrix'")
        c2w = _parse_c2w(fr["transform_matrix"], "opengl", src, where)
        get = lambda k: fr.get(k, data.get(k))  # noqa: E731 - per-frame value over the file's
        w = get("w") if get("w") is not None else (first.width if first is not None else None)
        h = get("h") if get("h") is not None else (first.height if first is not None else None)
        if w is None or h is None:
            raise src.error(where, "no image size: give 'w' and 'h' or pass a first camera")
        w, h = _parse_size(w, "w", src, where), _parse_size(h, "h", src, where)
        if get("fl_x") is not None:
            fx = _parse_number(get("fl_x"), "fl_x", src, where)
            fy = _parse_number(get("fl_y") if get("fl_y") is not None else fx, "fl_y", src, where)
            cx = _parse_number(get("cx"), "cx", src, where) if get("cx") is not None else w / 2.0
            cy = _parse_number(get("cy"), "cy", src, where) if get("cy") is not None else h / 2.0
            K = intrinsics_matrix(fx, fy, cx, cy)
        elif get("camera_angle_x") is not None:
            fov = math.degrees(_parse_number(get("camera_angle_x"), "camera_angle_x", src, where))
            f = focal_from_fov(fov, w)
            K = intrinsics_matrix(f, f, w / 2.0, h / 2.0)
        elif first is not None:
            K = first.resized(w, h).K.detach().cpu()
        else:
            raise src.error(where, "no intrinsics: give fl_x (and fl_y, cx, cy) or camera_angle_x, "
                                   "or pass a first camera")
        try:
            cam = Camera(K, c2w, w, h)
        except ValueError as e:
            raise src.error(where, str(e)) from None
        cams.append(cam if first is None else cam.to(first.device))
    return Trajectory(cams)


def _parse(data: Any, first: Camera | None, src: _Source) -> Trajectory:
    if isinstance(data, list):
        data = {"cameras": data}
    if not isinstance(data, dict):
        raise src.error(None, f"the top level must be an object or a list of cameras, got {type(data).__name__}")
    if isinstance(data.get("frames"), list):
        return _parse_transforms_json(data, first, src)
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise src.error(None, f"unknown top-level key(s) {', '.join(map(repr, unknown))}; "
                              f"allowed: {', '.join(sorted(_TOP_KEYS))}")
    convention = data.get("convention", "opencv")
    if convention not in ("opencv", "opengl"):
        raise src.error(None, f"'convention' must be 'opencv' (+y down, +z forward) or 'opengl' "
                              f"(+y up, +z backward), got {convention!r}")
    defaults = _Defaults(data, first, src)
    if ("cameras" in data) == ("keyframes" in data):
        raise src.error(None, "give exactly one of 'cameras' (a list of cameras) or 'keyframes'"
                        + ("" if "cameras" in data else "; it has neither, so zero cameras"))
    if "cameras" in data:
        for key in ("frames", "interpolation"):
            if key in data:
                raise src.error(None, f"'{key}' only applies to 'keyframes', not to 'cameras'")
        cams, prompts, _ = _parse_entries(data["cameras"], "camera", data, defaults, convention, src, set())
        return Trajectory(cams, prompts)
    return _parse_keyframes(data, defaults, convention, src)


def load_trajectory(source: str | Path | dict | list, first: Camera | None = None) -> Trajectory:
    """Read a trajectory from a JSON file (see the module docstring) or from already-parsed JSON data.

    Args:
        source: a path to a ``.json`` file, or a dict / list as ``json.load`` returns.
        first: the camera of the input image; supplies missing intrinsics and image sizes. The
            file's poses are used as they are (its world frame is the scene's).
    Returns:
        A :class:`Trajectory` with OpenCV-axes cameras (on ``first``'s device when given).
    Raises:
        TrajectoryFileError: bad JSON (with line and column), bad cameras (with the camera index).
        FileNotFoundError: no file at ``source``.
    """
    if first is not None:
        _check_first(first)
    if isinstance(source, (str, Path)):
        src = _Source(str(source))
        text = Path(source).read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise src.error(None, f"not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    elif isinstance(source, (dict, list)):
        src = _Source("<trajectory dict>")
        data = source
    else:
        raise TypeError(f"source must be a path, a dict or a list, got {type(source).__name__}")
    return _parse(data, first, src)


def trajectory_to_dict(trajectory: Trajectory, *, convention: str = "opencv") -> dict:
    """The JSON form :func:`load_trajectory` reads: explicit cameras with K, c2w, size, prompt."""
    if not isinstance(trajectory, Trajectory):
        raise TypeError(f"trajectory must be a Trajectory, got {type(trajectory).__name__}")
    if convention not in ("opencv", "opengl"):
        raise ValueError(f"convention must be 'opencv' or 'opengl', got {convention!r}")
    cams = []
    for cam, prompt in zip(trajectory.cameras, trajectory.prompts):
        c2w = cam.c2w.detach().cpu()
        if convention == "opengl":
            c2w = opencv_to_opengl(c2w)
        entry: dict[str, Any] = {"c2w": c2w.tolist(), "K": cam.K.detach().cpu().tolist(),
                                 "width": cam.width, "height": cam.height}
        if prompt is not None:
            entry["prompt"] = prompt
        cams.append(entry)
    return {"convention": convention, "cameras": cams}


def save_trajectory(path: str | Path, trajectory: Trajectory, *, convention: str = "opencv") -> None:
    """Write ``trajectory`` as JSON (atomically); :func:`load_trajectory` reads it back exactly.

    ``convention="opengl"`` writes nerfstudio / Blender camera axes and says so in the file.
    """
    from dreamer.io import write_json

    write_json(path, trajectory_to_dict(trajectory, convention=convention))


# ------------------------------------------------------------------------------------------------
# Scene-centre depth
# ------------------------------------------------------------------------------------------------
def center_depth_from(depth: Tensor | np.ndarray, fraction: float = 1.0 / 8.0) -> float:
    """The median z-depth of the central patch of a depth map: the ``center_depth`` of the presets.

    The patch is ``max(1, round(H * fraction)) x max(1, round(W * fraction))`` pixels at the
    image centre, computed from the depth map's own size (so any image size works). Only finite,
    positive depths count; if the patch has none, the whole map's are used.

    Args:
        depth: z-depth [H,W] (world units), a tensor or numpy array.
        fraction: patch side as a fraction of the image side, in (0, 1].
    Returns:
        The median depth, a finite float > 0.
    Raises:
        ValueError: wrong shape, or no finite positive depth anywhere.
    """
    if isinstance(depth, Tensor):
        d = depth.detach().cpu().double().numpy()
    elif isinstance(depth, np.ndarray):
        d = depth.astype(np.float64, copy=False)
    else:
        raise TypeError(f"depth must be a torch.Tensor or numpy array [H,W], got {type(depth).__name__}")
    if d.ndim != 2 or d.shape[0] < 1 or d.shape[1] < 1:
        raise ValueError(f"depth must have shape [H,W] with H, W >= 1, got {tuple(d.shape)}")
    fraction = _check_positive("fraction", fraction)
    if fraction > 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    H, W = d.shape
    ph, pw = max(1, min(H, round(H * fraction))), max(1, min(W, round(W * fraction)))
    top, left = (H - ph) // 2, (W - pw) // 2
    patch = d[top:top + ph, left:left + pw]
    vals = patch[np.isfinite(patch) & (patch > 0)]
    if vals.size == 0:
        vals = d[np.isfinite(d) & (d > 0)]
    if vals.size == 0:
        raise ValueError("depth has no finite positive value; cannot find the scene centre")
    return float(np.median(vals))
