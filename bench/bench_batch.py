"""Benchmark of a batch on Ray workers: scenes per minute with 1 and 2 workers, and model loads.

Starts a local Ray instance with 2 CPUs (no dashboard) and runs the same batch of tiny-model
scenes (the real diffusers / transformers classes with tiny random weights, so loading is real)
three times into fresh folders: in this process (the default executor, one torch thread, as a
baseline), then on 1 Ray worker, then on 2. Each worker holds 1 CPU and runs torch on 1 thread.
Prints the seconds and scenes per minute of each (wall clock, including the workers' start-up:
importing torch and building the models), the ratio 2 workers : 1 worker measured in the same
run, and how many models each worker process loaded (3 per worker whatever its number of scenes:
the inpainting and text-to-image pipelines and the depth model).

    flock /tmp/dreamer-heavy.lock python bench/bench_batch.py             # 8 scenes, a minute or two on 2 cores
    flock /tmp/dreamer-heavy.lock python bench/bench_batch.py --scenes 16 --size 192
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch

from dreamer.batch import InProcessExecutor, SceneJob
from dreamer.pipeline import configs_from_flat

PROMPTS = ["a reading room", "a cave", "a forest", "a harbour", "a kitchen", "a library", "a desert", "a hall"]


def jobs_for(root: Path, args) -> list[SceneJob]:
    jobs = []
    for i in range(args.scenes):
        configs = configs_from_flat({"models": "tiny", "prompt": PROMPTS[i % len(PROMPTS)], "seed": i,
                                     "views": args.views, "steps": args.steps, "width": args.size,
                                     "height": args.size, "no_splats": True})
        jobs.append(SceneJob(f"s{i:03d}", root / f"s{i:03d}", configs))
    return jobs


def timed(executor, jobs) -> float:
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
          f"{args.steps} steps, no splats")
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        root = Path(tmp)
        torch.set_num_threads(1)  # as each Ray worker (1 CPU each)
        inprocess = timed(InProcessExecutor(quiet=True), jobs_for(root / "inprocess", args))
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
        try:
            rows = [("in-process", inprocess, None)]
            for workers in (1, 2):
                executor = RayExecutor(RayOptions(workers=workers, cpus_per_scene=1, gpus_per_scene=0), quiet=True)
                seconds = timed(executor, jobs_for(root / f"ray{workers}", args))
                rows.append((f"ray, {workers} worker(s)", seconds, executor.worker_loads))
        finally:
            ray.shutdown()
    print(f"{'executor':22s} {'seconds':>8s} {'scenes/min':>11s}  model loads per worker")
    for label, seconds, loads in rows:
        per_worker = "-" if loads is None else ", ".join(str(n) for n in loads.values())
        print(f"{label:22s} {seconds:8.1f} {60 * args.scenes / seconds:11.1f}  {per_worker}")
    one, two = rows[1][1], rows[2][1]
    print(f"scenes per minute, 2 workers : 1 worker = {one / two:.2f} "
          f"(same run; 2 CPUs shared with whatever else runs)")


if __name__ == "__main__":
    main()
