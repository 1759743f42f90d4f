"""Run a function in a forked copy of the test process: the runs the kill -9 tests kill.

A fork starts with what the test process has already imported and warmed up (torch, the pipeline,
the rasterizer's first call), so the run that is killed costs only its own work; a fresh
interpreter spent 2-4 s of CPU on imports and first calls before it reached the kill. The kill is
still the real thing: SIGKILL of a separate process in the middle of its writes, and the parent
only sees the files it left.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable


def run_in_fork(log: Path, target: Callable[..., Any], *args: Any) -> int:
    """``target(*args)`` in a forked child with its stdout and stderr in ``log``; the child's exit code
    (``target``'s int return value, else 0), or -N when signal N ended it, as subprocess reports it.

    The child never returns into pytest: it leaves with ``os._exit``, whatever happens."""
    if not hasattr(os, "fork"):
        raise RuntimeError("run_in_fork needs os.fork (POSIX)")
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            # the test's capture objects stay behind; what the run prints goes to the log
            sys.stdout = open(1, "w", buffering=1, closefd=False)
            sys.stderr = open(2, "w", buffering=1, closefd=False)
            result = target(*args)
            code = result if isinstance(result, int) else 0
        except SystemExit as e:  # as the interpreter exits: None is 0, a message 1
            code = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
