"""Running a batch of scenes: the jobs, and the executors that run them.

* :class:`InProcessExecutor` (the default): scene after scene in this process.
* :class:`~dreamer.batch.ray_executor.RayExecutor` (``--executor ray``): one scene per Ray worker
  at a time, on a local Ray instance or a cluster; Ray is an optional extra (``pip install -e ".[ray]"``).

Both write the same per-scene folders, byte for byte, and both rely on the scene's own
checkpoints (:func:`dreamer.pipeline.run_scene`) to continue an interrupted batch.
"""

from dreamer.batch.executors import BatchInterrupted, Executor, ExecutorUnavailable, InProcessExecutor
from dreamer.batch.jobs import SceneJob, run_job
from dreamer.batch.options import add_executor_arguments, make_executor

__all__ = ["SceneJob", "run_job", "Executor", "InProcessExecutor", "BatchInterrupted", "ExecutorUnavailable",
           "add_executor_arguments", "make_executor"]
