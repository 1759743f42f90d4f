"""Per-job log files: a scene's ``run.log`` gets the records of its own job only.

Loggers are module-wide (``logging.getLogger(__name__)``), and a handler on the root logger sees
every thread's records: two scenes run at once (the app with ``--concurrency 2``, threads of one
process) would write into each other's logs. :func:`job_log` marks the code it wraps with a
context variable and its handler keeps only the records logged under that mark. Context
variables follow the code that logs (a thread, or an asyncio task), not the logger, so the other
jobs' records never pass the filter. A thread the job starts joins it by running under a copy of
its context (``contextvars.copy_context().run``).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from pathlib import Path
from typing import Iterator

__all__ = ["job_log", "LOG_FORMAT"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_current_job: contextvars.ContextVar[object | None] = contextvars.ContextVar("dreamer_job_log", default=None)


class _OwnJobOnly(logging.Filter):
    """Passes the records logged under one job's mark."""

    def __init__(self, mark: object):
        super().__init__()
        self.mark = mark

    def filter(self, record: logging.LogRecord) -> bool:
        return _current_job.get() is self.mark


@contextlib.contextmanager
def job_log(path: str | Path) -> Iterator[logging.Handler]:
    """Append this job's log records to ``path`` while the block runs (as the root logger's
    level lets them through); a nested job logs to its own file only."""
    mark = object()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(_OwnJobOnly(mark))
    root = logging.getLogger()
    root.addHandler(handler)
    token = _current_job.set(mark)
    try:
        yield handler
    finally:
        _current_job.reset(token)
        root.removeHandler(handler)
        handler.close()
