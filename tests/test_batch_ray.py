"""Batches on Ray (``--executor ray``): the same folders as in-process, workers that die, Ctrl-C.

One local Ray instance (2 CPUs, no dashboard) serves the module; the in-process reference of the
batch is made once. The Ctrl-C test's command starts its own instance; it runs beside the other
tests (the ``interrupted_run`` fixture) rather than after them. Outputs are compared byte for
byte, except ``run.log`` (timestamps) and the checkpoints, whose zip records are named after a
random temporary file: those are compared by their loaded contents.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from dreamer.run import main

SMALL = ["--width", "64", "--height", "64", "--no-splats", "-q"]
SCENES = [
    {"name": "first", "models": "synthetic", "views": 2},
    {"name": "victim", "models": "synthetic", "views": 6},  # killed after view 2, then after view 4
    {"name": "third", "models": "synthetic", "views": 2, "trajectory": "forward"},
    {"name": "fourth", "models": "synthetic", "views": 3, "world_seed": 3},
]


def run_cli(*args):
    return main([*map(str, args)])


def _write_batch(path: Path, scenes) -> Path:
    path.write_text("\n".join(json.dumps(s) for s in scenes) + "\n")
    return path


def _same(x, y) -> bool:
    """Equal values, tensors compared exactly, inside dicts, lists and tuples too."""
    if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
        return isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and torch.equal(x, y)
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
        return type(x) is type(y) and len(x) == len(y) and all(_same(u, v) for u, v in zip(x, y))
    return x == y


def _assert_same_scene(a: Path, b: Path) -> None:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name != "run.log")
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file() and p.name != "run.log")
    assert files_a == files_b, f"{a.name}: other files"
    assert any(f.parts[0] == "views" for f in files_a) and Path("points.ply") in files_a
    for f in files_a:
        if f.parts[0] == "checkpoint":
            x = torch.load(a / f, weights_only=True)
            y = torch.load(b / f, weights_only=True)
            assert x.keys() == y.keys(), f"{a.name}/{f}"
            for k in x:
                assert _same(x[k], y[k]), f"{a.name}/{f}: {k}"
        else:
            assert (a / f).read_bytes() == (b / f).read_bytes(), f"{a.name}/{f}"


@pytest.fixture(scope="module")
def ray_instance(request):
    if HAVE_PROC and any(getattr(item, "obj", None) is test_ctrl_c_stops_the_workers_and_the_local_instance
                         for item in request.session.items):
        request.getfixturevalue("interrupted_run")  # started first, so that it runs beside the tests below
    import ray  # here, not at collection: a second that every pytest worker would pay

    # a small object store: the scenes hand Ray only their jobs and outcomes (starts ~1 s sooner)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", object_store_memory=80 * 1024**2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The batch run in-process: the outputs every Ray run must reproduce."""
    root = tmp_path_factory.mktemp("reference")
    batch = _write_batch(root / "scenes.jsonl", SCENES)
    assert run_cli("--batch", batch, "--out", root / "runs", *SMALL) == 0
    return batch, root / "runs"


def _kill_when_running(folder: Path, after_view: int, killed: list, start: int = 1) -> threading.Thread:
    """Kill (SIGKILL) the Ray worker that dreams ``folder`` once it checkpointed view ``after_view``
    in the ``start``-th run of the scene (run.log keeps the lines of earlier runs). The worker's pid
    comes from the line it writes into the scene's run.log when it starts it."""

    def watch():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            log = folder / "run.log"
            if (folder / "checkpoint" / f"view_{after_view:03d}.pt").exists() and log.exists():
                found = re.findall(r"attempt 1 on Ray worker .*:(\d+)", log.read_text())
                if len(found) >= start:
                    pid = int(found[-1])
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
            time.sleep(0.005)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_ray_batch_writes_the_same_folders_as_in_process_through_killed_workers(ray_instance, reference, tmp_path,
                                                                                capsys):
    """On two workers without retries, the scene of a worker killed mid-scene fails and the others
    finish; the same command on one worker with a retry resumes it, and when that worker is killed
    too, a new one takes over and resumes it again. Every folder ends as the in-process run's
    (the three scenes that ran uninterrupted on Ray, and the victim)."""
    batch, expected = reference
    out = tmp_path / "runs"
    killed: list = []
    watcher = _kill_when_running(out / "victim", after_view=2, killed=killed)
    code = run_cli("--batch", batch, "--out", out, "--executor", "ray", "--retries", 0, *SMALL)
    watcher.join(timeout=5)
    text = capsys.readouterr().out
    assert killed, "the victim's worker was never found"
    assert code == 1 and "3 done" in text and "1 failed" in text and "worker died" in text
    assert "on 2 worker(s)" in text
    assert not (out / "victim" / "DONE").exists() and (out / "victim" / "checkpoint" / "view_002.pt").exists()
    for scene in SCENES:
        if scene["name"] != "victim":
            _assert_same_scene(out / scene["name"], expected / scene["name"])
    # the same command again: the others are skipped, the victim continues from its checkpoint; its
    # worker is killed again and replaced, and the second attempt continues from the newer one
    watcher = _kill_when_running(out / "victim", after_view=4, killed=killed, start=2)
    assert run_cli("--batch", batch, "--out", out, "--executor", "ray", "--workers", 1, "--retries", 1, *SMALL) == 0
    watcher.join(timeout=5)
    assert len(killed) == 2, "the victim's second worker was never found"
    text = capsys.readouterr().out
    assert "1 done" in text and "3 skipped" in text and "1 worker(s) died and were replaced" in text
    log = (out / "victim" / "run.log").read_text()
    assert "attempt 2 on Ray worker" in log and log.count("resuming after") == 2
    _assert_same_scene(out / "victim", expected / "victim")


@pytest.mark.slow
def test_workers_load_the_models_once_for_all_their_scenes(ray_instance, tmp_path, capsys):
    scenes = [{"name": f"t{i}", "models": "tiny", "steps": 2, "views": 2, "prompt": p}
              for i, p in enumerate(["a room", "a hall"])]
    batch = _write_batch(tmp_path / "tiny.jsonl", scenes)
    assert run_cli("--batch", batch, "--out", tmp_path / "ray", "--executor", "ray", "--workers", 1, *SMALL) == 0
    text = capsys.readouterr().out
    # one worker, two scenes: the inpainting and text-to-image pipelines and the depth model, once
    assert re.search(r"models loaded per worker: [^=\s]+=3\n", text), text
    assert run_cli("--batch", batch, "--out", tmp_path / "inprocess", *SMALL) == 0
    for scene in scenes:
        _assert_same_scene(tmp_path / "ray" / scene["name"], tmp_path / "inprocess" / scene["name"])


@pytest.mark.slow  # starts the Ray instance (4 s)
def test_a_scene_that_fits_no_machine_is_a_usage_error(ray_instance, tmp_path, capsys):
    batch = _write_batch(tmp_path / "b.jsonl", SCENES[:1])
    code = run_cli("--batch", batch, "--out", tmp_path / "r", "--executor", "ray", "--gpus-per-scene", 1, *SMALL)
    err = capsys.readouterr().err
    assert code == 2 and "asks for 1 CPU(s) and 1 GPU(s)" in err and "0 GPU(s)" in err
    assert not (tmp_path / "r").exists()


def test_without_ray_the_executor_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    batch = _write_batch(tmp_path / "b.jsonl", SCENES[:1])
    assert run_cli("--batch", batch, "--out", tmp_path / "r", "--executor", "ray", *SMALL) == 2
    err = capsys.readouterr().err
    assert 'pip install -e ".[ray]"' in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_the_progress_boards_process_imports_no_torch():
    """Ray starts the board's process by importing the board's module: beside the workers (torch and the
    pipeline, about 2.5 s of CPU each) it must stay light."""
    code = ("import sys, dreamer.batch.progress_board; "
            "print(sorted(m for m in ('torch', 'numpy', 'dreamer.pipeline') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    assert out.strip() == "[]"


def test_ray_options_need_the_ray_executor(tmp_path, capsys):
    batch = _write_batch(tmp_path / "b.jsonl", SCENES[:1])
    assert run_cli("--batch", batch, "--out", tmp_path / "r", "--gpus-per-scene", 1, *SMALL) == 2
    assert "--gpus-per-scene only apply with --executor ray" in capsys.readouterr().err


def _descendants(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            pass
    return kids + [d for k in kids for d in _descendants(k)]


LONG_SCENES = [{"name": f"long{i}", "models": "synthetic", "views": 20} for i in range(2)]


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory):
    """The command of the Ctrl-C test, with its own local Ray instance: started with the module's
    Ray instance (the ``ray_instance`` fixture asks for it when the test is selected) and sent SIGINT
    by a thread once its first scene checkpointed view 2. Its instance, worker and scene take 13 s
    of wall time, most of it in Ray's processes; they pass beside the module's other tests instead
    of after them (the module alone: 40 -> 33 s)."""
    root = tmp_path_factory.mktemp("interrupted")
    batch = _write_batch(root / "long.jsonl", LONG_SCENES)
    out = root / "runs"
    cmd = [sys.executable, "-m", "dreamer.run", "--batch", str(batch), "--out", str(out), "--executor", "ray",
           "--workers", "1", *SMALL]
    stdout, stderr = open(root / "stdout.txt", "w"), open(root / "stderr.txt", "w")
    # From a terminal the command gets Ctrl-C's default action; a test run started as a background
    # job (``nohup ... &``, a script's ``&``) has SIGINT ignored, the command would inherit that and
    # Python would never raise KeyboardInterrupt in it. A handled signal is reset to the default at exec.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    run = {"proc": proc, "out": out, "stdout": root / "stdout.txt", "stderr": root / "stderr.txt"}

    def interrupt():
        deadline = time.monotonic() + 120
        while not (out / "long0" / "checkpoint" / "view_002.pt").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                return  # never interrupted: the test says so
            time.sleep(0.02)
        run["started"] = _descendants(proc.pid)  # Ray's own processes and the worker
        proc.send_signal(signal.SIGINT)

    run["thread"] = threading.Thread(target=interrupt, daemon=True)
    run["thread"].start()
    yield run
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    stdout.close()
    stderr.close()


HAVE_PROC = Path("/proc/self/task").exists()


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_PROC, reason="finds the Ray processes through /proc")
def test_ctrl_c_stops_the_workers_and_the_local_instance(interrupted_run):
    """The command's own local Ray instance (no --ray-address): SIGINT mid-scene exits 130 with
    the rerun hint, and every process it started (Ray's and the workers) is gone."""
    run = interrupted_run
    proc = run["proc"]
    run["thread"].join(timeout=130)
    assert "started" in run, (proc.poll(), run["stdout"].read_text()[-1000:], run["stderr"].read_text()[-2000:])
    started = run["started"]
    assert started  # Ray's own processes and the worker
    proc.wait(timeout=60)
    out_text, err = run["stdout"].read_text(), run["stderr"].read_text()
    assert proc.returncode == 130, (out_text[-1000:], err[-2000:])
    assert "interrupted: rerun the same command to continue long0 where it stopped" in err
    assert "Traceback" not in err
    assert "Token authentication" not in err  # Ray's notice about its own local instance is dropped
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in started) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in started if Path(f"/proc/{pid}").exists()]
    assert not (run["out"] / "long0" / "DONE").exists()
