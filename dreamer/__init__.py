"""Dream infinite 3D scenes view by view."""

from dreamer.cameras import Camera
from dreamer.pointcloud import PointCloud

__all__ = ["Camera", "PointCloud"]
