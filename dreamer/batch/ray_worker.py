"""The Ray side of a batch: the worker actor that dreams scenes.

It runs in Ray's worker processes; :mod:`dreamer.batch.ray_executor` drives it. The board of
progress events is :mod:`dreamer.batch.progress_board`.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from dataclasses import dataclass

from dreamer.batch.jobs import SceneJob, note_in_log, run_job
from dreamer.pipeline import SceneOutcome

__all__ = ["SceneWorker", "WorkerReport"]


@dataclass
class WorkerReport:
    """What a worker hands back with each scene."""

    outcome: SceneOutcome
    worker: str
    """``host:pid`` of the worker process."""
    model_loads: int
    """Models this worker process has loaded so far (all scenes together)."""


class _Forward:
    """``on_progress`` of a scene on a worker: sends stage events to the driver's board, at most a
    few per second per stage (a stage's first and last events always go)."""

    def __init__(self, board, name: str, interval_s: float = 0.25):
        self.board, self.name, self.interval_s = board, name, interval_s
        self.stage: str | None = None
        self.sent_at = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if stage != self.stage or done >= total or now - self.sent_at >= self.interval_s:
            self.board.report.remote([(self.name, stage, done, total)])
            self.stage, self.sent_at = stage, now


class SceneWorker:
    """A Ray actor that dreams scenes one after another with the models of its own process.

    ``cwd``: the driver's working directory, so that relative paths in the batch (outputs, photos,
    trajectory files) mean what they mean on the driver (when that folder exists on this machine).
    """

    def __init__(self, cwd: str, board, log_level: int, console_level: int, threads: int):
        if os.path.isdir(cwd):
            os.chdir(cwd)
        import torch

        torch.set_num_threads(threads)
        root = logging.getLogger()
        root.setLevel(log_level)  # the scene's run.log gets what the in-process run writes
        handler = logging.StreamHandler(sys.stderr)
        handler.setLevel(console_level)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        self.board = board
        self.identity = f"{socket.gethostname()}:{os.getpid()}"

    def run(self, job: SceneJob, attempt: int) -> WorkerReport:
        from dreamer.backends.model_sets import model_loads

        note_in_log(job.out, f"attempt {attempt} on Ray worker {self.identity}")
        outcome = run_job(job, on_progress=_Forward(self.board, job.name))
        return WorkerReport(outcome, self.identity, model_loads())
