"""Dream infinite 3D scenes view by view, then lift them into Gaussian splats."""

from dreamer.cameras import Camera
from dreamer.dream import DreamConfig, dream
from dreamer.pointcloud import PointCloud
from dreamer.scene import DreamResult, DreamView
from dreamer.splats import Gaussians, SplatConfig, train_gaussians

__all__ = ["Camera", "PointCloud", "dream", "DreamConfig", "DreamResult", "DreamView",
           "train_gaussians", "SplatConfig", "Gaussians"]
