"""Benchmark of the deep zoom on the procedural world (ground truth known at every zoom level).

A scene is dreamed along a short lookaround (the first view is an RGBD photo of the world, then
the oracle inpainter and a depth estimator with errors: a scale per camera drawn from 0.5-2,
+-10 % smooth distortion, 1 % noise). Then view 0 is zoomed about its centre, the levels are the
world's band-limited renders (the oracle stack), and each is lifted into the cloud. Printed per
world seed and zoom level:

* PSNR of the point render at the level's camera against the world's render (supersampled),
  with and without the zoom, and the median footprint (pixels of that camera) of the points that
  win the z-buffer;
* points added and coarse points replaced, the time to lift the level;
* point counts before and after; Gaussian counts (initialized from the points: one per point);
  with ``--gs-iters N`` also the Gaussians after N training iterations on the scene with and
  without the zoom, and their PSNR at each level camera (slow on a CPU).

    python bench/bench_deepzoom.py                       # 128 px, 5 levels, seeds 0-2
    python bench/bench_deepzoom.py --size 64 --levels 4  # the test's setting
    python bench/bench_deepzoom.py --gs-iters 300        # plus splats (minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from dreamer.backends.synthetic import WorldDepthEstimator, WorldInpainter
from dreamer.cameras import DEFAULT_FOCAL_512, Camera
from dreamer.deepzoom import DeepZoomConfig, psnr, zoom_metrics, zoom_scene
from dreamer.scene import dream
from dreamer.trajectories import center_depth_from, make_trajectory
from dreamer.worlds import ProceduralWorld


def run(seed: int, size: int, levels: int, p: int, views: int, gs_iters: int) -> None:
    world = ProceduralWorld(seed=seed)
    first = Camera.from_focal(DEFAULT_FOCAL_512 * size / 512, size, size)
    truth0 = world.render(first)
    estimator = WorldDepthEstimator(world, seed=seed)
    traj = make_trajectory("lookaround", first, center_depth_from(truth0.depth), n=views)
    t0 = time.perf_counter()
    result = dream(truth0.image, traj.cameras, "", inpainter=WorldInpainter(world), depth_estimator=estimator,
                   depth=truth0.depth)
    t_dream = time.perf_counter() - t0
    config = DeepZoomConfig(zoom_levels=levels, zoom_p=p)
    t0 = time.perf_counter()
    zoomed = zoom_scene(result, config, depth_estimator=estimator, world=world)
    t_zoom = time.perf_counter() - t0
    metrics = zoom_metrics(zoomed, result.points, world)

    print(f"\nworld seed {seed}: {size}x{size}, {views} views dreamed in {t_dream:.1f} s; zoom p={p}, {levels} levels "
          f"in {t_zoom:.1f} s (level images {zoomed.seconds['level_images']:.1f} s, "
          f"lift {zoomed.seconds['lift']:.1f} s)")
    print(f"  {'level':>5} {'focal':>8} {'PSNR without':>13} {'PSNR with':>10} {'fp px w/o':>9} {'fp px with':>10} "
          f"{'+points':>8} {'-coarse':>8} {'lift s':>7}")
    stats = {s.level: s for s in zoomed.stats}
    for m, cam in zip(metrics, zoomed.cameras):
        s = stats.get(m["level"])
        extra = f"{s.new_points:8d} {s.removed_points:8d} {s.seconds:7.2f}" if s else f"{'(the view)':>25}"
        print(f"  {m['level']:5d} {cam.fx:8.1f} {m['psnr_without']:13.2f} {m['psnr_with']:10.2f} "
              f"{m.get('footprint_px_without', math.nan):9.2f} {m.get('footprint_px_with', math.nan):10.2f} {extra}")
    print(f"  points: {len(result.points)} before, {len(zoomed.points)} after "
          f"(Gaussians initialized: {len(result.points)} before, {len(zoomed.points)} after)")

    if gs_iters > 0:
        from dreamer.splats import SplatConfig, train_gaussians

        cfg = SplatConfig(iterations=gs_iters, refine_start_iter=min(100, gs_iters), refine_stop_iter=gs_iters,
                          refine_every=max(1, gs_iters // 5), sh_degree=0, log_every=10**9)
        t0 = time.perf_counter()
        g_without = train_gaussians(result, cfg)
        t1 = time.perf_counter()
        g_with = train_gaussians(zoomed.result, cfg)
        t2 = time.perf_counter()
        print(f"  Gaussians after {gs_iters} iterations: {len(g_without)} without the zoom ({t1 - t0:.0f} s), "
              f"{len(g_with)} with it ({t2 - t1:.0f} s)")
        for i, cam in enumerate(zoomed.cameras):
            truth = world.render(cam, supersample=2).image
            a = psnr(g_without.render(cam)[0].cpu(), truth)
            b = psnr(g_with.render(cam)[0].cpu(), truth)
            print(f"  level {i}: splat PSNR without {a:.2f}, with {b:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--levels", type=int, default=5)
    ap.add_argument("--p", type=int, default=2)
    ap.add_argument("--views", type=int, default=3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--gs-iters", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for seed in args.seeds:
        run(seed, args.size, args.levels, args.p, args.views, args.gs_iters)


if __name__ == "__main__":
    main()
