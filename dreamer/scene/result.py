"""What the dream loop hands on: the dreamed views and the merged point cloud."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from dreamer.cameras import Camera
from dreamer.pointcloud import PointCloud

__all__ = ["DreamView", "DreamResult"]


@dataclass
class DreamView:
    """One dreamed view: its camera, the completed ``image`` [H,W,3], the aligned z-``depth``
    [H,W] the loop used, ``mask`` [H,W] (True where the view added new points), its prompt,
    alignment statistics, and the depth model's raw ``estimate`` [H,W] of the whole view
    (None when the view needed none); the joint refinement re-aligns views from it.
    ``loss_mask`` [H,W] (bool): the pixels splats should be trained on (None: every pixel; a
    view whose other pixels only re-render the cloud teaches nothing new there). ``known`` [H,W]
    (bool): the pixels where the view showed the existing cloud, whose surface its new pixels meet
    at the seam (None: not recorded, e.g. the first view)."""

    camera: Camera
    image: Tensor
    depth: Tensor
    mask: Tensor
    prompt: str = ""
    stats: dict = field(default_factory=dict)
    estimate: Tensor | None = None
    loss_mask: Tensor | None = None
    known: Tensor | None = None


@dataclass
class DreamResult:
    """The dreamed scene: the merged ``points``, one :class:`DreamView` per camera, and the
    ``DreamConfig`` that made it."""

    points: PointCloud
    views: list[DreamView]
    config: Any = None
