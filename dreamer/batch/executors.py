"""The executor interface and the default one: scene after scene in this process."""

from __future__ import annotations

from typing import Protocol, Sequence

from dreamer.batch.jobs import SceneJob, run_job
from dreamer.pipeline import SceneOutcome
from dreamer.progress import StageBars

__all__ = ["Executor", "InProcessExecutor", "BatchInterrupted", "ExecutorUnavailable"]


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the batch; ``running`` names the scenes that were cut short (a rerun continues them)."""

    def __init__(self, running: Sequence[str]):
        super().__init__(", ".join(running))
        self.running = list(running)


class Executor(Protocol):
    """Runs every job and returns one outcome per job, in the jobs' order.

    A failing scene is a "failed" outcome, never an exception; Ctrl-C raises
    :class:`BatchInterrupted` once the executor has stopped its work.
    """

    def run(self, jobs: Sequence[SceneJob]) -> list[SceneOutcome]: ...


class InProcessExecutor:
    """Scene after scene in this process, with one progress bar per stage (``quiet``: none)."""

    def __init__(self, *, quiet: bool = False):
        self.quiet = quiet

    def run(self, jobs: Sequence[SceneJob]) -> list[SceneOutcome]:
        outcomes = []
        for job in jobs:
            bars = StageBars(job.name, enabled=not self.quiet)
            try:
                outcomes.append(run_job(job, on_progress=bars))
            except KeyboardInterrupt:
                raise BatchInterrupted([job.name]) from None
            finally:
                bars.close()
        return outcomes


class ExecutorUnavailable(RuntimeError):
    """The executor cannot run here (no cluster to reach, resources no scene fits in); a usage problem."""
