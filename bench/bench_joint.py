"""Joint refinement: seconds of today's algorithm against the old one on the same scene.

One dream loop (today's code, joint refinement off) makes a fixed scene: the procedural world,
the synthetic depth estimator of one error family, one trajectory, an RGBD first view. The
scene (its cloud, views, raw estimates and cameras) is written to a temporary file. Then
``refine_scene`` runs on it twice, each in its own process with one torch thread:

* today's code (this checkout);
* the old algorithm: the tree of ``--reference`` (default: the commit before the refinement
  was rewritten, a degree-2 polynomial per view fitted on every pair's samples, no prior, no
  acceptance test per view), extracted with ``git archive`` into a temporary folder;
* today's algorithm before its fit was batched: the tree of ``--previous`` (the same fit,
  pair by pair; ``--previous ''`` skips it).

For each it prints the refinement's CPU time of the process (the whole ``refine_scene``: fit,
per-surface consensus and rebuild), the CPU time of the fit alone (the calls of
``joint_log_corrections`` and, today, ``bend_evidence``), its wall time, and the result against the
world's truth (AbsRel of the new pixels, systematic seam step, point-to-surface distance relative
to the world's extent). Each tree runs ``--repeats`` times, each in a fresh process, the trees in
turn (so a busy spell of a shared machine hits all of them); the times are medians. Then the
whole refinement's speed-up of today's code against each older tree, as a ratio of those
medians. Needs git and the repository's history.

    python bench/bench_joint.py                              # 96x96, bend, rotate360 (16 views), 3 repeats
    python bench/bench_joint.py --size 64 --family waves --trajectory lookaround
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The last commit of the old joint refinement (degree-2 polynomial per view).
REFERENCE = "8878098"
# The last commit before the fit was batched (today's algorithm, each pair of views on its own).
PREVIOUS = "4289fa4"

# Runs in a child process against whichever tree is on PYTHONPATH (module paths of both layouts).
_WORKER = r"""
import json, sys, time, dataclasses, torch
torch.set_num_threads(1)
try:
    from dreamer.scene.loop import DreamConfig
    import dreamer.scene.joint_refinement as refine
    from dreamer.scene.metrics import world_metrics
    from dreamer.scene.result import DreamResult, DreamView
except ImportError:
    from dreamer.dream import DreamConfig
    import dreamer.refine as refine
    from dreamer.metrics import world_metrics
    from dreamer.scene import DreamResult, DreamView
refine_scene = refine.refine_scene
fit_cpu = [0.0]

def timed(fn):
    def run(*args, **kwargs):
        c = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            fit_cpu[0] += time.process_time() - c
    return run

# The fit (every view's correction, jointly) apart from the rebuild of the cloud.
for name in ("joint_log_corrections", "bend_evidence"):
    if hasattr(refine, name):
        setattr(refine, name, timed(getattr(refine, name)))
from dreamer.cameras import Camera
from dreamer.pointcloud import PointCloud
from dreamer.worlds import ProceduralWorld

data = torch.load(sys.argv[1])
views = [DreamView(Camera(v["K"], v["c2w"], v["width"], v["height"]), v["image"], v["depth"], v["mask"],
                   "", dict(v["stats"]), v["estimate"]) for v in data["views"]]
points = PointCloud(data["xyz"], data["rgb"], data["radius"])
result = DreamResult(points, views, DreamConfig(seed=data["seed"], joint_refinement=True))
t0, c0 = time.perf_counter(), time.process_time()
refined = refine_scene(result)
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
m = world_metrics(refined, ProceduralWorld())
print(json.dumps({"cpu_s": cpu, "wall_s": wall, "fit_cpu_s": fit_cpu[0], "abs_rel": m["abs_rel_aligned"],
                  "seam": m.get("seam_step_median", m["seam_jump_median"]),
                  "pt_surf": m["point_to_surface_rel_extent"], "changed": refined is not result}))
"""


def make_scene(path: Path, size: int, family: str, trajectory: str, seed: int) -> dict:
    import torch

    from dreamer.backends.synthetic import WorldDepthEstimator, WorldInpainter
    from dreamer.cameras import DEFAULT_FOCAL_512, Camera
    from dreamer.scene.loop import DreamConfig, dream
    from dreamer.scene.metrics import world_metrics
    from dreamer.trajectories import center_depth_from, make_trajectory
    from dreamer.worlds import ProceduralWorld

    world = ProceduralWorld()
    first = Camera.from_focal(DEFAULT_FOCAL_512 * size / 512, size, size)
    truth = world.render(first)
    cams = make_trajectory(trajectory, first, center_depth_from(truth.depth)).cameras
    est = WorldDepthEstimator.family(world, family, seed=seed)
    result = dream(truth.image, cams, "", inpainter=WorldInpainter(world), depth_estimator=est, depth=truth.depth,
                   config=DreamConfig(seed=seed, joint_refinement=False))
    # Stats are plain numbers in both versions; the loop's chosen correction is kept for today's code.
    views = [{"K": v.camera.K, "c2w": v.camera.c2w, "width": v.camera.width, "height": v.camera.height,
              "image": v.image, "depth": v.depth, "mask": v.mask, "estimate": v.estimate, "stats": v.stats}
             for v in result.views]
    torch.save({"views": views, "xyz": result.points.xyz, "rgb": result.points.rgb, "radius": result.points.radius,
                "seed": seed}, path)
    m = world_metrics(result, world)
    return {"views": len(cams), "points": len(result.points), "abs_rel": m["abs_rel_aligned"],
            "seam": m["seam_step_median"], "pt_surf": m["point_to_surface_rel_extent"]}


def refine_in(tree: Path, scene: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _WORKER, str(scene)], cwd=tree, env=env, capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"refinement in {tree} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _median_row(runs: list[dict]) -> dict:
    """One row from repeated runs of a tree: the times' medians; the result of the first run
    (the refinement is deterministic: every run gives it)."""
    row = dict(runs[0])
    for key in ("cpu_s", "wall_s", "fit_cpu_s"):
        row[key] = statistics.median(r[key] for r in runs)
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=96, help="image size (small: the old algorithm is slow)")
    ap.add_argument("--family", default="bend", help="error family of the synthetic depth estimator")
    ap.add_argument("--trajectory", default="rotate360")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reference", default=REFERENCE, help="commit of the old algorithm")
    ap.add_argument("--previous", default=PREVIOUS, help="commit of today's algorithm before the batched fit "
                    "('' skips it)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per tree (fresh processes); times are medians")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_joint_") as tmp:
        tmp = Path(tmp)
        trees = {}
        previous = "unbatched" if args.previous == PREVIOUS else "previous"
        for name, commit in ((f"old ({args.reference})", args.reference),
                             (f"{previous} ({args.previous})", args.previous)):
            if not commit:
                continue
            trees[name] = tmp / commit
            trees[name].mkdir()
            archive = subprocess.run(["git", "-C", str(REPO), "archive", commit], capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", str(trees[name])], input=archive.stdout, check=True)
        scene = tmp / "scene.pt"
        s = make_scene(scene, args.size, args.family, args.trajectory, args.seed)
        print(f"joint refinement, {args.size}x{args.size}, family {args.family}, {args.trajectory} "
              f"({s['views']} views, {s['points']} points), one torch thread per process")
        print(f"{'':26s} {'CPU s':>8s} {'fit CPU s':>9s} {'wall s':>8s} {'AbsRel new':>10s} {'seam step':>9s} "
              f"{'pt-surf':>8s}")
        print(f"{'loop only (no refinement)':26s} {'':>8s} {'':>9s} {'':>8s} {100 * s['abs_rel']:9.2f}% "
              f"{100 * s['seam']:8.2f}% {100 * s['pt_surf']:7.2f}%")
        trees["today"] = REPO
        runs: dict[str, list[dict]] = {name: [] for name in trees}
        for _ in range(max(1, args.repeats)):
            for name, tree in trees.items():
                runs[name].append(refine_in(tree, scene))
        rows = {name: _median_row(r) for name, r in runs.items()}
        for name, r in rows.items():
            note = "" if r["changed"] else "  (refinement not applied)"
            print(f"{name:26s} {r['cpu_s']:8.2f} {r['fit_cpu_s']:9.2f} {r['wall_s']:8.2f} {100 * r['abs_rel']:9.2f}% "
                  f"{100 * r['seam']:8.2f}% {100 * r['pt_surf']:7.2f}%{note}")
        new = rows["today"]
        print(f"medians of {max(1, args.repeats)} runs per tree; CPU s of each run, today: "
              + ", ".join(f"{r['cpu_s']:.2f}" for r in runs["today"]))
        for name, base in rows.items():
            if name != "today":
                print(f"whole refinement, today vs {name}: {base['cpu_s'] / new['cpu_s']:.2f}x CPU, "
                      f"{base['wall_s'] / new['wall_s']:.2f}x wall (the fit alone "
                      f"{base['fit_cpu_s'] / new['fit_cpu_s']:.2f}x CPU)")


if __name__ == "__main__":
    main()
