"""Smooth camera paths through keyframes: positions linear or Catmull-Rom, rotations slerp, focal lengths geometric."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from dreamer.cameras import Camera
from dreamer.checks import check_int
from dreamer.trajectories.rotations import (
    _matrix_from_quat,
    _quat_from_matrix,
    _rigid,
    _slerp,
)


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
        check_int(c, f"frames of segment {i}", min=1)
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
