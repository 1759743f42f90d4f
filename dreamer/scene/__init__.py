"""The dream loop: grow a point cloud view by view, then refine all views jointly.

* :mod:`~dreamer.scene.loop` -- :func:`dream` and :class:`DreamConfig`: render, inpaint,
  estimate depth, align, lift, merge, for each camera;
* :mod:`~dreamer.scene.placement` -- lift a view's new pixels and merge them into the cloud
  (shared by the loop and the rebuild);
* :mod:`~dreamer.scene.joint_refinement` -- re-fit every view's depth correction against all
  views that overlap it and rebuild the cloud (removes the drift of view-by-view alignment);
* :mod:`~dreamer.scene.result` -- :class:`DreamView` and :class:`DreamResult`, what the loop
  hands on;
* :mod:`~dreamer.scene.metrics` -- accuracy against the procedural world's ground truth.
"""

from dreamer.scene.joint_refinement import refine_scene
from dreamer.scene.loop import DreamConfig, ProgressFn, dream, dream_view
from dreamer.scene.result import DreamResult, DreamView

__all__ = ["DreamConfig", "DreamResult", "DreamView", "ProgressFn", "dream", "dream_view", "refine_scene"]
