"""Jobs and sessions: each visitor's folders and Stop flag, one job per visitor at a time, a time
limit per job, progress, and readable messages for whatever goes wrong.

A job is bounded three ways: by the form's limits (views, size, iterations, frames; checked
before it starts, see :mod:`apps.inputs`), by ``--max-job-minutes`` (checked at every progress
step), and by Stop. Work that reports no progress (reading and checking the inputs, loading the
models) runs in a helper thread that the job waits for while watching the Stop flag and the
clock (:meth:`Jobs.stoppable`): a stopped job gives its queue slot back at once, and the helper's
bounded work finishes in the background and is dropped.
"""

from __future__ import annotations

import contextvars
import logging
import shutil
import threading
import time
import zipfile
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from apps.inputs import InputError, safe_session_id

__all__ = ["RunCancelled", "JobTooLong", "Sessions", "ProgressBridge", "Jobs", "friendly", "zip_folder"]

log = logging.getLogger("apps.jobs")


class RunCancelled(Exception):
    """Raised from the progress hook when the visitor pressed Stop."""


class JobTooLong(Exception):
    """Raised from the progress hook when the job ran past the app's time limit."""


class Sessions:
    """Per-visitor bookkeeping the app itself needs: folders, the Stop flag, whether a job runs.

    (The visitor's scenes live in ``gr.State``; this holds only what a second event of the same
    session must reach while a job runs.)"""

    def __init__(self, root: Path):
        self.root = root
        self._lock = threading.Lock()
        self._cancel: dict[str, threading.Event] = {}
        self._busy: set[str] = set()

    def folder(self, session: str) -> Path:
        path = self.root / "sessions" / session
        path.mkdir(parents=True, exist_ok=True)
        return path

    def new_run(self, session: str, kind: str) -> Path:
        """A fresh folder ``<kind>-NNN`` for one run of this session."""
        base = self.folder(session)
        with self._lock:
            n = 1 + sum(1 for p in base.glob(f"{kind}-*") if p.is_dir())
            while (base / f"{kind}-{n:03d}").exists():
                n += 1
            run = base / f"{kind}-{n:03d}"
            run.mkdir(parents=True)
        return run

    def cancel_flag(self, session: str, *, reset: bool = False) -> threading.Event:
        with self._lock:
            flag = self._cancel.setdefault(session, threading.Event())
            if reset:
                flag.clear()
            return flag

    def claim(self, session: str) -> bool:
        """Mark the session busy; False when one of its jobs runs already."""
        with self._lock:
            if session in self._busy:
                return False
            self._busy.add(session)
            return True

    def release(self, session: str) -> None:
        with self._lock:
            self._busy.discard(session)

    def forget(self, session: str, *, delete: bool) -> None:
        with self._lock:
            self._cancel.pop(session, None)
        if delete:
            shutil.rmtree(self.root / "sessions" / session, ignore_errors=True)


class ProgressBridge:
    """``on_progress(stage, done, total)`` -> ``gr.Progress``; raises :class:`RunCancelled` after
    Stop and :class:`JobTooLong` past ``deadline`` (``time.monotonic()`` seconds)."""

    def __init__(self, progress: Callable | None, cancel: threading.Event, stages: dict[str, tuple[float, float]],
                 deadline: float = float("inf")):
        self.progress, self.cancel, self.stages, self.deadline = progress, cancel, stages, deadline
        self.fraction = 0.0
        self.stage = "starting"

    def check(self, stage: str) -> None:
        if self.cancel.is_set():
            raise RunCancelled(stage)
        if time.monotonic() > self.deadline:
            raise JobTooLong(stage)

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.check(stage)
        self.stage = stage
        lo, hi = self.stages.get(stage, (self.fraction, self.fraction))
        self.fraction = lo + (hi - lo) * (done / total if total else 1.0)
        if self.progress is not None:
            self.progress(min(self.fraction, 1.0), desc=f"{stage}: {done}/{total}")


def zip_folder(folder: Path, target: Path) -> Path:
    """Zip ``folder`` into ``target`` without resume state (checkpoints, ``.pt`` files, the
    extensions' caches, the splat stages' folders, whose result is the scene's gaussians.ply
    under another name), written under a temporary name."""
    tmp = target.with_suffix(".zip.part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder)
            if not path.is_file() or "checkpoint" in rel.parts or "splats" in rel.parts[:-1] \
                    or path.suffix == ".pt" or rel.parts[:2] == ("extensions", "base") or path.name.startswith("."):
                continue
            zf.write(path, Path(folder.name) / rel)
    tmp.replace(target)
    return target


def friendly(e: BaseException, run: Path | None, max_minutes: float) -> str:
    """The message a visitor sees for an exception from a job."""
    from dreamer.backends.loading import ModelNotAvailable

    where = f" The server's log has the details (run {run.name})." if run is not None else ""
    if isinstance(e, RunCancelled):
        return f"Stopped during '{e.args[0] if e.args else 'the run'}' (you pressed Stop). Change the settings " \
               f"or press the button again."
    if isinstance(e, JobTooLong):
        return f"Stopped during '{e.args[0] if e.args else 'the run'}': a job may run {max_minutes:g} minutes here. " \
               f"Choose fewer views, a smaller size or fewer iterations."
    if isinstance(e, ModelNotAvailable):
        return f"The models of this set are not available here. {str(e).strip()}"
    if isinstance(e, InputError):
        return str(e)
    if isinstance(e, (ValueError, FileNotFoundError)):
        return f"The settings were refused: {e}"
    if type(e).__name__ == "OutOfMemoryError":
        return "The GPU ran out of memory: choose a smaller size or fewer views and try again."
    return f"The run failed ({type(e).__name__}: {e}).{where}"


class Job:
    """One running job: its session, folder (or None), Stop flag and deadline."""

    def __init__(self, jobs: "Jobs", session: str, run: Path | None, cancel: threading.Event, deadline: float):
        self.jobs, self.session, self.run, self.cancel, self.deadline = jobs, session, run, cancel, deadline

    def bridge(self, progress: Callable | None, stages: dict[str, tuple[float, float]]) -> ProgressBridge:
        return ProgressBridge(progress, self.cancel, stages, self.deadline)

    def stoppable(self, fn: Callable[[], Any], what: str) -> Any:
        """``fn()``, run in a helper thread while this job watches Stop and its deadline; raises
        :class:`RunCancelled` / :class:`JobTooLong` (leaving ``fn`` to finish on its own) or
        whatever ``fn`` raised."""
        done = threading.Event()
        box: dict[str, Any] = {}

        def target():
            try:
                box["value"] = fn()
            except BaseException as e:  # noqa: BLE001 - handed to the job's thread
                box["error"] = e
            finally:
                done.set()

        context = contextvars.copy_context()
        threading.Thread(target=context.run, args=(target,), daemon=True, name=f"dreamer-{what}").start()
        check = ProgressBridge(None, self.cancel, {}, self.deadline)
        while not done.wait(0.05):
            check.check(what)
        if "error" in box:
            raise box["error"]
        return box["value"]


class Jobs:
    """Runs the visitors' jobs: one at a time per visitor, each with a deadline and Stop."""

    def __init__(self, root: Path, max_minutes: float):
        self.sessions = Sessions(root)
        self.max_minutes = float(max_minutes)

    @staticmethod
    def session_of(request) -> str:
        return safe_session_id(getattr(request, "session_hash", None))

    def run(self, request, kind: str, work: Callable[[Job], Any], *, new_folder: bool = True):
        """Run ``work(job)`` for the visitor of ``request``; every failure becomes a ``gr.Error``
        with a readable message and the app stays usable."""
        session = self.session_of(request)
        if not self.sessions.claim(session):
            raise gr.Error("One of your jobs is running already: wait for it to finish or press Stop.",
                           print_exception=False)
        job = None
        try:
            cancel = self.sessions.cancel_flag(session, reset=True)
            run = self.sessions.new_run(session, kind) if new_folder else None
            job = Job(self, session, run, cancel, time.monotonic() + 60.0 * self.max_minutes)
            return work(job)
        except gr.Error:
            raise
        except BaseException as e:  # noqa: BLE001 - every failure becomes a message, the app lives on
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            run = job.run if job is not None else None
            if not isinstance(e, (RunCancelled, JobTooLong, InputError)):
                log.exception("%s job in %s failed", kind, run)
            raise gr.Error(friendly(e, run, self.max_minutes), print_exception=False) from None
        finally:
            self.sessions.release(session)

    def stop(self, request) -> str:
        self.sessions.cancel_flag(self.session_of(request)).set()
        return "Stopping at the next step..."
