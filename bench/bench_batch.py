"""Benchmark of a batch on Ray workers: scenes per minute with 1 and 2 workers, and model loads.

Starts a local Ray instance with 2 CPUs (no dashboard) and runs the same batch of tiny-model
scenes (the real diffusers / transformers classes with tiny random weights, so loading is real)
three times into fresh folders: in this process (the default executor, one torch thread, as a
baseline), then on 1 Ray worker, then on 2. Each worker holds 1 CPU and runs torch on 1 thread.
Prints, for each run:

* scenes per minute over the whole run (wall clock, including the workers' start-up: a new
  process importing torch and building the models);
* scenes per minute once warm: the scenes finished after each worker's first one, over the time
  since (no start-up, no model loading);
* how many models each worker process loaded (3 whatever its number of scenes: the inpainting
  and text-to-image pipelines and the depth model);

and the ratio 2 workers : 1 worker of both rates, measured in the same run, with the machine's
load average (other processes compete for the same cores).

    flock /tmp/dreamer-heavy.lock python bench/bench_batch.py             # 8 scenes, a few minutes on 2 cores
    flock /tmp/dreamer-heavy.lock python bench/bench_batch.py --scenes 16 --size 192
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

# The checkout this script is in, before any installed copy (a worktree measures its own code).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dreamer.batch import InProcessExecutor, SceneJob
from dreamer.pipeline import configs_from_flat

PROMPTS = ["a reading room", "a cave", "a forest", "a harbour", "a kitchen", "a library", "a desert", "a hall"]


def jobs_for(root: Path, args) -> list[SceneJob]:
    jobs = []
    for i in range(args.scenes):
        configs = configs_from_flat({"models": "tiny", "prompt": PROMPTS[i % len(PROMPTS)], "seed": i,
                                     "views": args.views, "steps": args.steps, "width": args.size,
                                     "height": args.size})  # no splats: the default base has none
        jobs.append(SceneJob(f"s{i:03d}", root / f"s{i:03d}", configs))
    return jobs


def run(executor, jobs) -> float:
    """Seconds of the whole run."""
    t0 = time.perf_counter()
    outcomes = executor.run(jobs)
    seconds = time.perf_counter() - t0
    failed = [o for o in outcomes if o.status != "done"]
    if failed:
        raise SystemExit(f"{len(failed)} scene(s) did not finish: {failed[0].error}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--size", type=int, default=128, help="image width and height (a multiple of 8)")
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5, help="denoising steps per view")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import ray

    from dreamer.batch.ray_executor import RayExecutor, RayOptions

    print(f"batch: {args.scenes} tiny-model scenes, {args.size}x{args.size}, {args.views} views, "
          f"{args.steps} steps, no splats; load average before: {os.getloadavg()[0]:.1f}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        root = Path(tmp)
        torch.set_num_threads(1)  # as each Ray worker (1 CPU each)
        rows.append(("in-process", run(InProcessExecutor(quiet=True), jobs_for(root / "inprocess", args)), None))
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
        try:
            for workers in (1, 2):
                executor = RayExecutor(RayOptions(workers=workers, cpus_per_scene=1, gpus_per_scene=0), quiet=True)
                seconds = run(executor, jobs_for(root / f"ray{workers}", args))
                t = executor.finish_times  # warm: after each worker's first scene
                warm = 60 * (len(t) - workers) / (t[-1] - t[workers - 1]) if len(t) > workers else float("nan")
                rows.append((f"ray, {workers} worker(s)", seconds, (warm, executor.worker_loads)))
        finally:
            ray.shutdown()
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    print(f"{'executor':20s} {'seconds':>8s} {'scenes/min':>11s} {'warm scenes/min':>16s}  model loads per worker")
    for label, seconds, ray_part in rows:
        warm, loads = ray_part if ray_part else (None, None)
        warm_text = "-" if warm is None else f"{warm:.1f}"
        per_worker = "-" if loads is None else ", ".join(str(n) for n in loads.values())
        print(f"{label:20s} {seconds:8.1f} {60 * args.scenes / seconds:11.1f} {warm_text:>16s}  {per_worker}")
    (one, (warm1, _)), (two, (warm2, _)) = [(r[1], r[2]) for r in rows[1:]]
    print(f"2 workers : 1 worker, scenes per minute: {one / two:.2f} over the whole run, {warm2 / warm1:.2f} warm "
          f"(same run, 2 CPUs)")


if __name__ == "__main__":
    main()
