"""Run a batch on Ray: a pool of long-lived workers (Ray actors), each dreaming one scene at a time.

Why actors rather than one Ray task per scene: a worker process keeps its models across the scenes
it runs (:func:`dreamer.backends.model_sets.build_backends` caches them per process;
:func:`~dreamer.backends.model_sets.model_loads` counts the loads), and an actor holds its GPU for
its whole life. A plain GPU task can be handed another GPU in a reused process, which is why Ray
runs GPU tasks one call per process by default: that would reload the models for every scene.

Failures: a scene that raises is a failed outcome and is not retried (it would fail again). A
worker that dies (a crash, a killed process, a lost machine) is replaced by a fresh one and its
scene starts again, up to ``retries`` times; the scene's checkpoints make it continue from its
last finished view. Ctrl-C kills the workers and the local Ray instance this process started; a
rerun of the same command continues every unfinished scene.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Sequence

from dreamer.batch.cluster_progress import ClusterProgress
from dreamer.batch.executors import BatchInterrupted, ExecutorUnavailable
from dreamer.batch.jobs import SceneJob
from dreamer.batch.progress_board import ProgressBoard
from dreamer.batch.ray_worker import SceneWorker, WorkerReport
from dreamer.checks import check_number
from dreamer.pipeline import SceneOutcome

__all__ = ["RayOptions", "RayExecutor"]

log = logging.getLogger("dreamer.batch")

_POLL_S = 0.25  # how often the driver looks for finished scenes and progress events


@dataclass(frozen=True)
class RayOptions:
    """Where the workers run and what each one holds."""

    address: str | None = None
    """A running cluster (``ray start --head``'s address or ``ray://HOST:10001``); None starts a
    local Ray instance (or joins the cluster named by ``$RAY_ADDRESS``)."""
    gpus_per_scene: float | None = None
    """GPUs each worker holds; None: 1 when the cluster has GPUs, else 0."""
    cpus_per_scene: float = 1.0
    """CPUs each worker holds; its torch threads are this, rounded down, at least 1."""
    workers: int | None = None
    """Workers at the same time; None: as many as the cluster's resources fit (at most one per scene)."""
    retries: int = 2
    """Times a scene is started again after its worker died."""

    def __post_init__(self):
        check_number(self.cpus_per_scene, "--cpus-per-scene", min=0, open_min=True)  # NaN: a traceback in Ray's sizing
        if self.gpus_per_scene is not None:
            check_number(self.gpus_per_scene, "--gpus-per-scene", min=0)
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}")
        if self.retries < 0:
            raise ValueError(f"--retries must be >= 0, got {self.retries}")


def _short(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]


class RayExecutor:
    """Runs a batch's scenes on Ray workers (see the module docstring for how and why).

    After :meth:`run`, ``worker_loads`` maps each worker (``host:pid``) that finished a scene to
    the number of models its process loaded, ``worker_deaths`` counts the workers that died and
    ``finish_times`` holds when each scene's outcome arrived (``time.perf_counter()``, in order).
    """

    def __init__(self, options: RayOptions | None = None, *, quiet: bool = False, verbose: bool = False):
        self.options = options or RayOptions()
        self.quiet, self.verbose = quiet, verbose
        self.worker_loads: dict[str, int] = {}
        self.worker_deaths = 0
        self.workers = 0
        self.finish_times: list[float] = []

    # -- connecting -------------------------------------------------------------------------
    def _connect(self) -> bool:
        """Join the cluster, or start a local instance; True when this call started one."""
        import ray

        if ray.is_initialized():
            return False
        address = self.options.address or os.environ.get("RAY_ADDRESS") or None
        try:
            if address:
                ray.init(address=address, logging_level=logging.WARNING)
                return False
            cpus = None
            if self.options.workers is not None:  # room for exactly that many workers (logical CPUs)
                cpus = max(os.cpu_count() or 1, math.ceil(self.options.workers * self.options.cpus_per_scene))
            # Ray's notice that token authentication is on says nothing about a local instance this
            # command starts and stops itself; only that notice is dropped.
            logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(
                lambda record: not record.getMessage().startswith("Token authentication is enabled"))
            ray.init(num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING)
            return True
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise ExecutorUnavailable(f"could not start or reach {where}: {_short(e)}") from e

    def _pool_size(self, n_jobs: int) -> tuple[int, float]:
        """(workers, GPUs per worker) for ``n_jobs`` scenes on this cluster."""
        import ray

        total = ray.cluster_resources()
        cpus = self.options.cpus_per_scene
        gpus = self.options.gpus_per_scene
        if gpus is None:
            gpus = 1.0 if total.get("GPU", 0) >= 1 else 0.0
        fit = math.floor(total.get("CPU", 0) / cpus + 1e-9)
        if gpus > 0:
            fit = min(fit, math.floor(total.get("GPU", 0) / gpus + 1e-9))
        if fit < 1:
            raise ExecutorUnavailable(
                f"each scene asks for {cpus:g} CPU(s) and {gpus:g} GPU(s), but the Ray cluster has "
                f"{total.get('CPU', 0):g} CPU(s) and {total.get('GPU', 0):g} GPU(s): lower --cpus-per-scene / "
                f"--gpus-per-scene or add machines")
        workers = self.options.workers or fit
        if workers > fit:
            log.warning("--workers %d: the cluster fits %d at a time; the others wait for resources", workers, fit)
        return max(1, min(workers, n_jobs)), gpus

    # -- running ----------------------------------------------------------------------------
    def run(self, jobs: Sequence[SceneJob]) -> list[SceneOutcome]:
        import ray

        if not jobs:
            return []
        started_here = self._connect()
        actors: list = []
        board = None
        progress = None
        try:
            n_workers, gpus = self._pool_size(len(jobs))
            self.workers = n_workers
            board = ray.remote(ProgressBoard).options(num_cpus=0).remote()
            level = logging.DEBUG if self.verbose else logging.INFO
            console = logging.INFO if self.verbose else logging.WARNING
            threads = max(1, int(self.options.cpus_per_scene))
            worker_cls = ray.remote(SceneWorker).options(num_cpus=self.options.cpus_per_scene, num_gpus=gpus,
                                                         max_restarts=0)

            def new_worker():
                actor = worker_cls.remote(os.getcwd(), board, level, console, threads)
                actors.append(actor)
                return actor

            progress = ClusterProgress(len(jobs), enabled=not self.quiet)
            try:
                outcomes = self._schedule(jobs, n_workers, new_worker, board, progress)
            except KeyboardInterrupt:
                running = sorted(progress.running)
                progress.close()
                raise BatchInterrupted(running) from None
            progress.close()
            print(self._describe(len(jobs)))
            return outcomes
        finally:
            if progress is not None:
                progress.close()
            for actor in actors + ([board] if board is not None else []):
                try:
                    ray.kill(actor)
                except Exception:  # already dead, or the cluster is gone: nothing left to stop
                    pass
            if started_here:
                ray.shutdown()

    def _schedule(self, jobs, n_workers, new_worker, board, progress: ClusterProgress) -> list[SceneOutcome]:
        import ray
        from ray.exceptions import RayError, RayTaskError

        retries = self.options.retries
        pending = deque((i, 1) for i in range(len(jobs)))
        outcomes: list[SceneOutcome | None] = [None] * len(jobs)
        idle: list = []
        inflight: dict[Any, tuple[Any, int, int]] = {}
        while pending or inflight:
            while pending and (idle or len(inflight) < n_workers):
                actor = idle.pop() if idle else new_worker()
                index, attempt = pending.popleft()
                inflight[actor.run.remote(jobs[index], attempt)] = (actor, index, attempt)
                progress.started(jobs[index].name)
            try:
                ready, _ = ray.wait(list(inflight), num_returns=1, timeout=_POLL_S)
                events = ray.get(board.drain.remote())
            except RayError as e:  # the cluster itself is gone: what did not finish is for a rerun
                reason = f"the Ray cluster failed ({_short(e)}); rerun the same command to continue"
                progress.message(reason)
                for index in [i for i, _ in pending] + [i for _, i, _ in inflight.values()]:
                    outcomes[index] = SceneOutcome(jobs[index].name, jobs[index].out, "failed", error=reason)
                break
            for name, stage, done, total in events:
                progress.stage(name, stage, done, total)
            for ref in ready:
                actor, index, attempt = inflight.pop(ref)
                job = jobs[index]
                try:
                    report: WorkerReport = ray.get(ref)
                except RayTaskError as e:  # the scene's own errors come back as outcomes: this is Ray's
                    outcomes[index] = SceneOutcome(job.name, job.out, "failed", error=_short(e))
                    idle.append(actor)
                except RayError as e:  # the worker died; its replacement continues the scene
                    self.worker_deaths += 1
                    try:
                        ray.kill(actor)
                    except Exception:
                        pass
                    if attempt <= retries:
                        pending.appendleft((index, attempt + 1))
                        progress.ended(job.name, None)
                        progress.message(f"{job.name}: its worker died ({_short(e)}); starting it again "
                                         f"(attempt {attempt + 1} of {retries + 1})")
                        continue
                    outcomes[index] = SceneOutcome(job.name, job.out, "failed",
                                                   error=f"its worker died {attempt} time(s); last: {_short(e)}")
                else:
                    outcomes[index] = report.outcome
                    self.worker_loads[report.worker] = report.model_loads
                    idle.append(actor)
                progress.ended(job.name, outcomes[index].status)
                self.finish_times.append(time.perf_counter())
        return [o for o in outcomes if o is not None]

    def _describe(self, n_jobs: int) -> str:
        loads = ", ".join(f"{w}={n}" for w, n in sorted(self.worker_loads.items())) or "none"
        text = f"ray: {n_jobs} scene(s) on {self.workers} worker(s) at a time; models loaded per worker: {loads}"
        if self.worker_deaths:
            text += f"; {self.worker_deaths} worker(s) died and were replaced"
        return text
