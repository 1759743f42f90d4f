"""Running a batch of scenes: the jobs, and the executors that run them.

* :class:`InProcessExecutor` (the default): scene after scene in this process.
* :class:`~dreamer.batch.ray_executor.RayExecutor` (``--executor ray``): one scene per Ray worker
  at a time, on a local Ray instance or a cluster; Ray is an optional extra (``pip install -e ".[ray]"``).

Both write the same per-scene folders, byte for byte, and both rely on the scene's own
checkpoints (:func:`dreamer.pipeline.run_scene`) to continue an interrupted batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dreamer.lazy import lazy_exports

__all__ = ["SceneJob", "run_job", "Executor", "InProcessExecutor", "BatchInterrupted", "ExecutorUnavailable",
           "add_executor_arguments", "make_executor"]

# Imported on first use, so that the command line's options (dreamer.batch.options) are read
# without the jobs' imports (torch and the models' libraries).
_HOMES = {"SceneJob": "dreamer.batch.jobs", "run_job": "dreamer.batch.jobs",
          "add_executor_arguments": "dreamer.batch.options", "make_executor": "dreamer.batch.options",
          **{name: "dreamer.batch.executors" for name in
             ("Executor", "InProcessExecutor", "BatchInterrupted", "ExecutorUnavailable")}}

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from dreamer.batch.executors import BatchInterrupted, Executor, ExecutorUnavailable, InProcessExecutor
    from dreamer.batch.jobs import SceneJob, run_job
    from dreamer.batch.options import add_executor_arguments, make_executor


__getattr__, __dir__ = lazy_exports(__name__, _HOMES, __all__)
