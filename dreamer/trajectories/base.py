"""The trajectory container, its errors, and the helpers every preset and file reader shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from dreamer.cameras import Camera
from dreamer.checks import check_number


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


# ------------------------------------------------------------------------------------------------
# Parameter validation
# ------------------------------------------------------------------------------------------------
def _check_first(first: Camera) -> None:
    if not isinstance(first, Camera):
        raise TypeError(f"first must be a Camera, got {type(first).__name__}")


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
    d = check_number(distance, name)
    return d * center_depth if relative else d


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
    fraction = check_number(fraction, "fraction", min=0, open_min=True)
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
