"""Benchmark of the dream loop's geometry on the procedural world (ground truth known).

Prints, for the lookaround, rotate360 and forward trajectories, with the depth estimator's
errors switched on (a scale per view drawn from 0.5-2, +-10 % smooth distortion, 1 % noise):

* AbsRel of the new pixels' depth against the truth, before and after alignment;
* the median relative depth jump across the seam, before and after alignment;
* the mean distance of the points to the true surface (absolute and relative to the extent);
* the point count after the trajectory and after running the same trajectory a second time;
* the seconds of the view-by-view loop and of the joint refinement that follows it (all views'
  depth corrections re-fitted together, the cloud rebuilt; ``--no-refine`` skips it).

Then the speed of the geometry of one view at 512x512 over a cloud of about 2M points (render,
hole masks, alignment, stretched pixels, lift, merge), against a griddata re-projection of the
same cloud (the original research code's renderer) measured in the same run.

    python bench/bench_dream.py            # 512x512, a few minutes on 2 cores
    python bench/bench_dream.py --size 256 # quicker
    python bench/bench_dream.py --no-refine --skip-speed  # the loop alone, to see the drift
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace

import numpy as np
import torch

from alignment import align_depth, dedup_mask, stretched_pixels
from dreamer.backends.synthetic import WorldDepthEstimator, WorldInpainter
from dreamer.cameras import DEFAULT_FOCAL_512, Camera, project_points, rotation_y
from dreamer.scene import DreamConfig, dream
from dreamer.scene.metrics import world_metrics
from dreamer.pointcloud import PointCloud
from dreamer.scene.joint_refinement import refine_scene
from dreamer.render import clean_coverage, lift, render_points
from dreamer.trajectories import center_depth_from, make_trajectory
from dreamer.worlds import ProceduralWorld


def accuracy(world: ProceduralWorld, size: int, trajectory: str, seed: int, kind: str = "bend",
             refine: bool = True) -> dict:
    first = Camera.from_focal(DEFAULT_FOCAL_512 * size / 512, size, size)
    truth0 = world.render(first)
    estimator = WorldDepthEstimator(world, scale_range=(0.5, 2.0), distortion=0.10, noise=0.01, seed=seed,
                                    distortion_kind=kind)
    traj = make_trajectory(trajectory, first, center_depth_from(truth0.depth))
    cams = traj.cameras
    backends = dict(inpainter=WorldInpainter(world), depth_estimator=estimator)
    config = DreamConfig(seed=seed, joint_refinement=refine)

    # The first view is an RGBD photo (true depth) so the scene has the world's scale.
    t0 = time.time()
    result = dream(truth0.image, cams, "", **backends, config=replace(config, joint_refinement=False),
                   depth=truth0.depth)
    t1 = time.time()
    if refine:
        result = refine_scene(result)
    t2 = time.time()
    m = world_metrics(result, world, estimator)
    # Then the trajectory again on the finished scene: every view is revisited and must add
    # (almost) nothing.
    again = dream(truth0.image, cams + cams[1:], "", **backends, config=config, depth=truth0.depth, resume=result)
    m["points_first_pass"] = len(result.points)
    m["points_second_pass"] = len(again.points)
    m["seconds_loop"] = t1 - t0
    m["seconds_refine"] = t2 - t1
    m["cameras"] = len(cams)
    return m


def big_cloud(world: ProceduralWorld, size: int, target: int) -> PointCloud:
    """About ``target`` points: the world lifted from a ring of cameras (a stand-in dreamed cloud)."""
    clouds = []
    n = 0
    yaw = 0.0
    while n < target:
        c2w = torch.eye(4)
        c2w[:3, :3] = rotation_y(yaw)
        cam = Camera.from_focal(DEFAULT_FOCAL_512 * size / 512, size, size, c2w)
        r = world.render(cam)
        pc = lift(r.image, r.depth, cam)
        clouds.append(pc)
        n += len(pc)
        yaw += 40.0
    out = clouds[0]
    for c in clouds[1:]:
        out = out.cat(c)
    return out.select(torch.arange(min(target, len(out))))


def geometry_step(points: PointCloud, camera: Camera, estimated: torch.Tensor, image: torch.Tensor) -> int:
    render = render_points(points, camera)
    render, masks = clean_coverage(render, close_px=1, grow_px=3)
    aligned = align_depth(estimated, render.depth, masks.known, masks.hole)
    full = torch.where(masks.hole, aligned.depth, render.depth)
    lift_mask = masks.hole & ~stretched_pixels(full, threshold=0.08)
    new = lift(image, full, camera, lift_mask)
    keep = dedup_mask(points.xyz, points.radius, new.xyz, new.radius)
    return int(keep.sum())


def griddata_reprojection(points: PointCloud, camera: Camera) -> np.ndarray:
    """The research code's renderer: project, then scipy griddata (linear), no depth test."""
    from scipy.interpolate import griddata

    uv, z = project_points(points.xyz, camera)
    ok = ((z > 0) & (uv[:, 0] >= -1) & (uv[:, 0] <= camera.width + 1) & (uv[:, 1] >= -1)
          & (uv[:, 1] <= camera.height + 1))
    uv = uv[ok].numpy().astype(np.float64)
    rgb = points.rgb[ok].numpy()
    gu, gv = np.meshgrid(np.arange(camera.width) + 0.5, np.arange(camera.height) + 0.5)
    return griddata(uv, rgb, (gu, gv), method="linear")


def speed(world: ProceduralWorld, size: int, n_points: int, repeats: int) -> dict:
    cloud = big_cloud(world, size, n_points)
    c2w = torch.eye(4)
    c2w[:3, :3] = rotation_y(20.0)
    c2w[:3, 3] = torch.tensor([0.2, 0.0, 0.3])
    cam = Camera.from_focal(DEFAULT_FOCAL_512 * size / 512, size, size, c2w)
    truth = world.render(cam)
    est = WorldDepthEstimator(world, seed=1).estimate(truth.image, camera=cam)
    geometry_step(cloud, cam, est, truth.image)  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        geometry_step(cloud, cam, est, truth.image)
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    griddata_reprojection(cloud, cam)
    grid = time.perf_counter() - t
    ours = float(np.median(times))
    return {"points": len(cloud), "ours_s": ours, "griddata_s": grid, "speedup": grid / ours}


def fmt(x: float) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=512, help="image size of the accuracy runs")
    ap.add_argument("--speed-points", type=int, default=2_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--trajectories", nargs="+", default=["lookaround", "rotate360", "forward"])
    ap.add_argument("--distortion-kind", choices=["bend", "waves"], default="bend",
                    help="shape of the estimator's smooth distortion (see dreamer/backends/synthetic.py)")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--no-refine", action="store_true", help="view-by-view alignment only (no joint refinement)")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    world = ProceduralWorld()

    print(f"accuracy on the procedural world, {args.size}x{args.size}, depth errors: scale 0.5-2, "
          f"distortion +-10% ({args.distortion_kind}), noise 1%, "
          f"{'view-by-view alignment only' if args.no_refine else 'with the joint refinement'}")
    header = (f"{'trajectory':12s} {'views':>5s} {'AbsRel raw':>10s} {'AbsRel aligned':>14s} "
              f"{'seam raw':>9s} {'seam aligned':>12s} {'pt-surf/extent':>14s} {'points 1x':>10s} "
              f"{'points 2x':>10s} {'ratio':>6s} {'loop s':>7s} {'refine s':>8s}")
    print(header)
    for name in args.trajectories:
        m = accuracy(world, args.size, name, args.seed, args.distortion_kind, refine=not args.no_refine)
        ratio = m["points_second_pass"] / m["points_first_pass"]
        print(f"{name:12s} {m['cameras']:5d} {fmt(m['abs_rel_unaligned']):>10s} {fmt(m['abs_rel_aligned']):>14s} "
              f"{fmt(m['seam_jump_unaligned_median']):>9s} {fmt(m['seam_jump_median']):>12s} "
              f"{fmt(m['point_to_surface_rel_extent']):>14s} {m['points_first_pass']:10d} "
              f"{m['points_second_pass']:10d} {ratio:6.3f} {m['seconds_loop']:7.1f} {m['seconds_refine']:8.1f}")

    if args.skip_speed:
        return
    s = speed(world, 512, args.speed_points, args.repeats)
    print(f"\ngeometry per view at 512x512 over {s['points']} points: ours {s['ours_s']:.3f} s "
          f"(render + masks + align + stretch + lift + merge), griddata re-projection {s['griddata_s']:.3f} s, "
          f"speed-up {s['speedup']:.1f}x")


if __name__ == "__main__":
    main()
