"""tests/forked.py: the child's exit code as subprocess would report it."""

import os
import signal
import sys

from forked import run_in_fork


def _fail():
    raise RuntimeError("boom")


def _killed():
    os.kill(os.getpid(), signal.SIGKILL)  # the child's own pid, read in the child


def test_a_forked_run_reports_its_exit_like_a_process(tmp_path):
    log = tmp_path / "log"
    assert run_in_fork(log, lambda: None) == 0
    assert run_in_fork(log, lambda: 5) == 5
    assert run_in_fork(log, sys.exit) == 0  # sys.exit() is a success
    assert run_in_fork(log, sys.exit, 3) == 3
    assert run_in_fork(log, sys.exit, "a message") == 1
    assert run_in_fork(log, _fail) == 70 and "RuntimeError: boom" in log.read_text()
    assert run_in_fork(log, _killed) == -signal.SIGKILL
