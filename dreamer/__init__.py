"""Dream infinite 3D scenes view by view, then lift them into Gaussian splats.

The public names are imported on first use, so that ``import dreamer.checks`` or
``python -m dreamer.run --help`` do not pay for torch-heavy modules they do not need.
The data flow and where each stage lives: ``docs/architecture.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dreamer.lazy import lazy_exports

__all__ = ["Camera", "PointCloud", "dream", "DreamConfig", "DreamResult", "DreamView",
           "train_gaussians", "SplatConfig", "Gaussians"]

_HOMES = {
    "Camera": "dreamer.cameras",
    "PointCloud": "dreamer.pointcloud",
    "dream": "dreamer.scene.loop",
    "DreamConfig": "dreamer.scene.loop",
    "DreamResult": "dreamer.scene.result",
    "DreamView": "dreamer.scene.result",
    "train_gaussians": "dreamer.splats",
    "SplatConfig": "dreamer.splats",
    "Gaussians": "dreamer.splats",
}

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from dreamer.cameras import Camera
    from dreamer.pointcloud import PointCloud
    from dreamer.scene.loop import DreamConfig, dream
    from dreamer.scene.result import DreamResult, DreamView
    from dreamer.splats import Gaussians, SplatConfig, train_gaussians


__getattr__, __dir__ = lazy_exports(__name__, _HOMES, __all__)
