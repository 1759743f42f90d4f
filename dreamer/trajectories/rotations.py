"""Rotations of the presets (yaw, pitch, orbits), quaternions and slerp, and single-camera moves.

Float64 numpy inside, float32 torch cameras outside. Axes as in :mod:`dreamer.cameras`: a
positive yaw turns right, a positive pitch tilts up."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from dreamer.cameras import Camera, rotation_x, rotation_y
from dreamer.checks import check_number
from dreamer.trajectories.base import _apply, _check_first


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



# ------------------------------------------------------------------------------------------------
# Single-camera helpers
# ------------------------------------------------------------------------------------------------
def rotate_camera(camera: Camera, yaw: float = 0.0, pitch: float = 0.0) -> Camera:
    """``camera`` turned in place about its own centre: ``yaw`` degrees right, then ``pitch`` up."""
    _check_first(camera)
    rel = _rigid(_yaw_pitch(check_number(yaw, "yaw"), check_number(pitch, "pitch")))
    return _apply(camera, [rel])[0]


def orbit_camera(camera: Camera, pivot_depth: float, yaw: float = 0.0, elevation: float = 0.0) -> Camera:
    """``camera`` moved around the point at z-depth ``pivot_depth`` on its optical axis, looking at it.

    A positive ``yaw`` (degrees) moves it to its right, a positive ``elevation`` up; the pivot
    stays at the principal point at distance ``pivot_depth``. (The original code's +-5 degree
    "hemisphere" training views are ``orbit_camera(cam, center_depth, +-5, 0)`` and ``(.., 0, +-5)``.)
    """
    _check_first(camera)
    pd = check_number(pivot_depth, "pivot_depth", min=0, open_min=True)
    rel = _orbit_rel(check_number(yaw, "yaw"), check_number(elevation, "elevation"), pd)
    return _apply(camera, [rel])[0]


# ------------------------------------------------------------------------------------------------
# Quaternions and slerp
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
