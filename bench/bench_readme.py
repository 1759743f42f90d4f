"""The README's commands, timed: the figures the README states, measured the way a user runs them.

Runs each documented command as a subprocess (the same ``python -m ...`` line, with ``--out``
pointed at a fresh temporary folder), one after another, and prints per command the wall time,
the CPU time of the process and its children, and the machine's load average before it started
(a time in the README must be measured on a quiet machine: above a load of about 0.5 on 2 cores
the figure is inflated). For the scene folders it prints what they cost on disk: the splats
(``gaussians.ply``), the finished dream (``checkpoint/``), the rest, the total, and the total of
the same command run with ``--keep-checkpoints``.

    python bench/bench_readme.py                 # every command (about 15 minutes on 2 cores)
    python bench/bench_readme.py --only demo points
    python bench/bench_readme.py --tests         # also the tests: the README's command (python -m pytest -q
                                                 # -n 2) and its quick loop (-m "not slow")
    python bench/bench_readme.py --tests-only    # only the tests
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The checkout this script is in, before any installed copy (a worktree measures its own code).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dreamer.pipeline.folder import disk_usage, format_bytes

ROOT = Path(__file__).resolve().parents[1]

# name -> the README's command line (its --out is replaced by a temporary folder).
COMMANDS: dict[str, list[str]] = {
    "demo": ["-m", "dreamer.run", "--models", "synthetic"],
    "demo256": ["-m", "dreamer.run", "--models", "synthetic", "--width", "256", "--height", "256"],
    "points": ["-m", "dreamer.run", "--models", "synthetic", "--trajectory", "lookaround", "--no-splats"],
    "tiny": ["-m", "dreamer.run", "--models", "tiny", "--prompt", "a reading room"],
    "batch": ["-m", "dreamer.run", "--batch", "examples/batch.yaml"],
    "zoom": ["-m", "zoom.run", "--models", "tiny", "--prompts", "a galaxy", "a solar system", "a planet",
             "--p", "2"],
    "deepzoom": ["-m", "dreamer.run", "--models", "synthetic", "--views", "3", "--zoom-levels", "5", "--zoom-p", "2",
                 "--width", "256", "--height", "256", "--gs-iters", "100", "--render-frames", "24"],
}
# The scene folders whose disk use the README tabulates (also run with --keep-checkpoints).
DISK = ("demo", "demo256")


def _cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(argv: list[str], out: Path) -> tuple[float, float, float, int]:
    """Wall seconds, CPU seconds, the load average before, and the exit status of one command."""
    load = os.getloadavg()[0]
    cpu0, t0 = _cpu_children(), time.perf_counter()
    done = subprocess.run([sys.executable, *argv, "--out", str(out)], cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    wall, cpu = time.perf_counter() - t0, _cpu_children() - cpu0
    if done.returncode != 0:
        print(f"  exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
    return wall, cpu, load, done.returncode


def disk_parts(folder: Path) -> dict[str, int]:
    total = disk_usage(folder)
    ply = (folder / "gaussians.ply").stat().st_size if (folder / "gaussians.ply").exists() else 0
    ckpt = disk_usage(folder / "checkpoint") if (folder / "checkpoint").exists() else 0
    return {"splats": ply, "checkpoint": ckpt, "rest": total - ply - ckpt, "total": total}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=sorted(COMMANDS), help="run only these commands")
    ap.add_argument("--tests", action="store_true", help="also time the test suite and its quick loop")
    ap.add_argument("--tests-only", action="store_true", help="time the test suite and its quick loop, no command")
    args = ap.parse_args()
    args.tests = args.tests or args.tests_only
    names = [] if args.tests_only else (args.only or list(COMMANDS))
    print(f"{os.cpu_count()} CPUs; times are wall clock, CPU is the command's processes together\n")
    print(f"{'command':<10} {'wall':>8} {'CPU':>8} {'load before':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        disks = {}
        for name in names:
            out = Path(tmp) / name
            wall, cpu, load, code = run(COMMANDS[name], out)
            print(f"{name:<10} {wall:7.0f}s {cpu:7.0f}s {load:12.2f}" + ("" if code == 0 else "  FAILED"), flush=True)
            if name in DISK and code == 0:
                keep = Path(tmp) / f"{name}-keep"
                run([*COMMANDS[name], "--keep-checkpoints"], keep)
                disks[name] = (disk_parts(out), disk_usage(keep))
        if args.tests:
            # the CPU time misses Ray's own processes (not children of the test run)
            for name, extra in (("tests", []), ("quick", ["-m", "not slow"])):
                load = os.getloadavg()[0]
                cpu0, t0 = _cpu_children(), time.perf_counter()
                code = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider",
                                       *extra], cwd=ROOT, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL).returncode
                print(f"{name:<10} {time.perf_counter() - t0:7.0f}s {_cpu_children() - cpu0:7.0f}s {load:12.2f}"
                      + ("" if code == 0 else "  FAILED"), flush=True)
        if disks:
            print("\ndisk      splats (gaussians.ply)  finished dream (checkpoint/)  the rest   total   "
                  "with --keep-checkpoints")
            for name, (parts, keep) in disks.items():
                print(f"{name:<10} {format_bytes(parts['splats']):>20} {format_bytes(parts['checkpoint']):>28} "
                      f"{format_bytes(parts['rest']):>10} {format_bytes(parts['total']):>7} {format_bytes(keep):>12}")


if __name__ == "__main__":
    main()
