"""Generation presets: the camera paths a scene is dreamed along.

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
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from dreamer.cameras import Camera
from dreamer.checks import check_int, check_number
from dreamer.trajectories.base import (
    Trajectory,
    _apply,
    _check_angles,
    _check_first,
    _distance,
)
from dreamer.trajectories.rotations import _orbit_rel, _rigid, _rot_y, _yaw_pitch


def _outward(mags: Sequence[float]) -> list[float]:
    """[0, +m1, -m1, +m2, -m2, ...]: grow outward from the centre, right (or up) first."""
    out = [0.0]
    for m in mags:
        out += [float(m), -float(m)]
    return out



# ------------------------------------------------------------------------------------------------
# Generation presets
# ------------------------------------------------------------------------------------------------
def _rotation_grid(first: Camera, yaws: Sequence[float], pitch_rows: Sequence[float], n: int | None) -> Trajectory:
    rels = [_rigid(_yaw_pitch(y, p)) for p in pitch_rows for y in _outward(yaws)]
    if n is not None:
        n = check_int(n, "n", min=1)
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
    check_number(center_depth, "center_depth", min=0, open_min=True)
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
    check_number(center_depth, "center_depth", min=0, open_min=True)
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
    check_number(center_depth, "center_depth", min=0, open_min=True)
    if n is None:
        n = max(4, math.ceil(360.0 / (0.5 * first.fov_x) - 1e-9))
    n = check_int(n, "n", min=1)
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
    cd = check_number(center_depth, "center_depth", min=0, open_min=True)
    n = check_int(n, "n", min=1)
    check_number(distance, "distance", min=0, open_min=True)
    return _translation_path(first, (0.0, 0.0, 1.0), n, _distance(distance, cd, relative))


def backward(first: Camera, center_depth: float, *, n: int = 5, distance: float = 0.5,
             relative: bool = True) -> Trajectory:
    """Dolly out: move back along -z of the first camera (reveals new content at every border).

    Args: as :func:`forward`; camera i is ``distance * i/(n-1)`` behind ``first``.
    """
    _check_first(first)
    cd = check_number(center_depth, "center_depth", min=0, open_min=True)
    n = check_int(n, "n", min=1)
    check_number(distance, "distance", min=0, open_min=True)
    return _translation_path(first, (0.0, 0.0, -1.0), n, _distance(distance, cd, relative))


def moveright(first: Camera, center_depth: float, *, n: int = 5, distance: float = 0.5,
              relative: bool = True) -> Trajectory:
    """Truck sideways along +x of the first camera (a negative ``distance`` moves left), no rotation.

    Args: as :func:`forward`, except that ``distance`` may be negative (not zero).
    """
    _check_first(first)
    cd = check_number(center_depth, "center_depth", min=0, open_min=True)
    n = check_int(n, "n", min=1)
    if check_number(distance, "distance") == 0.0:
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
    cd = check_number(center_depth, "center_depth", min=0, open_min=True)
    n = check_int(n, "n", min=1)
    angle = check_number(angle, "angle", min=0, open_min=True)
    if angle >= 180.0:
        raise ValueError(f"angle must be below 180 degrees, got {angle}")
    pd = cd if pivot_depth is None else check_number(pivot_depth, "pivot_depth", min=0, open_min=True)
    if n == 1:
        yaws = [0.0]
    elif symmetric:
        k = n // 2  # steps on the right (the larger side)
        yaws = _outward([angle * j / k for j in range(1, k + 1)])[:n]
    else:
        yaws = [angle * i / (n - 1) for i in range(n)]
    rels = [np.eye(4) if i == 0 else _orbit_rel(y, 0.0, pd) for i, y in enumerate(yaws)]
    return Trajectory(_apply(first, rels))
