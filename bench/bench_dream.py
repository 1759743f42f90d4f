"""Benchmark of the dream loop's depth alignment against its peers on the procedural world.

For every error family of the synthetic depth estimator (``ERROR_FAMILIES`` in
dreamer/backends/synthetic.py: an unknown scale per view of 0.4-2.5 and 1% noise, plus smooth
bends, waves of 0.3-1.5 cycles per image, errors per object, an affine error in disparity,
smeared depth edges, a compressed depth range, a fattened foreground, or a mix) and every
trajectory (a pan, an orbit that translates, a full turn), the same dream loop runs once per
alignment method, on the same cameras, the same images (the oracle inpainter) and the same
depth estimates, from an RGBD first view:

* ``as is``: the estimate, unaligned;
* ``Text2Room``: least-squares scale and shift in disparity on the overlap;
* ``LucidDreamer``: the seam residual, pinned to 0 at the image corners, interpolated (griddata);
* ``oracle scale``: the best single scale per view, chosen with the ground truth on the view's
  new pixels: the floor of scale-only methods (not a method: it needs the truth);
* ``ours``: the defaults of ``DreamConfig`` (the loop's alignment, then the joint refinement);
  ``ours, loop only`` without the joint refinement.

For errors per object (families whose errors are only a scale per view and a constant error per
surface, plus pixel noise) it also prints a *two-way bound*: what least squares can reach from
the views alone, given what no method is given: which pixels share a surface (the truth's
surface ids) and each view's exact level on each surface it sees (no pixel noise), the first
view exact. View levels and surface levels are fitted to those per-(view, surface) log errors;
each new pixel (of the oracle run's views) takes its surface's fitted level, or on a surface only
its own view sees, its view's error less the fitted view level. Not a method and not a proof of
a floor, but the oracle-scale floor sits below what the views can tell where this bound does.

(peers: alignment/peers.py). Per method it prints the AbsRel of the new pixels' depth against the
truth (mean over views weighted by their new pixels), the seam error (median error of the depth
step from the pixels that showed the cloud to the new pixels next to them, image border
excluded, counted only where an earlier view lifted the known pixel's true surface: elsewhere
the cloud shows what lies behind a surface no view lifted, for every method alike), the mean
distance of the points to the true
surface relative to the world's extent, and the alignment time per view (for ``ours`` including
the joint refinement's fit, spread over the views). Then ours against the best peer and the
floor, as ratios.

    python bench/bench_dream.py                       # 256x256, every family and trajectory
    python bench/bench_dream.py --families waves --trajectories rotate360
    python bench/bench_dream.py --size 64 --world-seed 3    # another world (layout), same error families
    python bench/bench_dream.py --speed               # also the geometry speed of one 512x512 view

The speed section times the geometry of one view at 512x512 over a cloud of about 2M points
(render, hole masks, alignment, stretched pixels, lift, merge) against a griddata re-projection of
the same cloud (the original research code's renderer), measured in the same run.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

# The checkout this script is in, before any installed copy (a worktree measures its own code).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alignment import dedup_mask, stretched_pixels
from alignment.peers import luciddreamer_depth, oracle_scale_depth, text2room_depth
from dreamer.backends.synthetic import ERROR_FAMILIES, WorldDepthEstimator, WorldInpainter
from dreamer.cameras import DEFAULT_FOCAL_512, Camera, project_points, rotation_y
from dreamer.scene.loop import DreamConfig, align_view, dream
from dreamer.scene.metrics import world_metrics
from dreamer.pointcloud import PointCloud
from dreamer.scene import joint_refinement, loop
from dreamer.scene.joint_refinement import refine_scene
from dreamer.render import clean_coverage, lift, render_points
from dreamer.trajectories import center_depth_from, make_trajectory
from dreamer.worlds import ProceduralWorld

TRAJECTORIES = {"lookaround": dict(n=7), "orbit": dict(n=7), "rotate360": dict()}
PEERS = ("as is", "Text2Room", "LucidDreamer")
METHODS = PEERS + ("oracle scale", "ours, loop only", "ours")


class CachedWorld:
    """The world with its renders kept per camera: every method dreams the same views, so the
    world is ray-cast once per camera, not once per method."""

    def __init__(self, world: ProceduralWorld):
        self.world = world
        self._renders: dict = {}

    def _key(self, camera: Camera) -> bytes:
        return np.round(torch.cat([camera.K.flatten(), camera.c2w.flatten()]).double().numpy(), 6).tobytes() + \
            bytes(f"{camera.width}x{camera.height}", "ascii")

    def render(self, camera: Camera, **kwargs):
        if kwargs:
            return self.world.render(camera, **kwargs)
        key = self._key(camera)
        if key not in self._renders:
            self._renders[key] = self.world.render(camera)
        return self._renders[key]

    def depth(self, camera: Camera) -> torch.Tensor:
        return self.render(camera).depth

    def __getattr__(self, name):
        return getattr(self.world, name)


def aligner(method: str, world: CachedWorld):
    """The loop's alignment for a peer (None: the loop's own)."""
    if method == "as is":
        return lambda e, r, k, h, c: e
    if method == "Text2Room":
        return lambda e, r, k, h, c: text2room_depth(e, r, k)
    if method == "LucidDreamer":
        return lambda e, r, k, h, c: luciddreamer_depth(e, r, k, h)
    if method == "oracle scale":
        return lambda e, r, k, h, c: oracle_scale_depth(e, world.depth(c).to(e), h)
    return None


class Stopwatch:
    """Seconds spent in the functions it wraps (the alignment's share of a run)."""

    def __init__(self):
        self.seconds = 0.0

    def wrap(self, fn):
        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t
        return timed


@contextmanager
def timing(watch: Stopwatch, *places: tuple[object, str]):
    """Wrap ``module.name`` for each (module, name) in ``places`` while the block runs."""
    saved = [(module, name, getattr(module, name)) for module, name in places]
    try:
        for module, name, fn in saved:
            setattr(module, name, watch.wrap(fn))
        yield watch
    finally:
        for module, name, fn in saved:
            setattr(module, name, fn)


def run_method(world: CachedWorld, estimator: WorldDepthEstimator, cams: list[Camera], method: str,
               seed: int) -> dict:
    truth0 = world.render(cams[0])
    ours = method.startswith("ours")
    config = DreamConfig(seed=seed, joint_refinement=False)
    watch = Stopwatch()
    peer = None if ours else aligner(method, world)
    t0 = time.perf_counter()
    # The first view is an RGBD photo (true depth), so the scene has the world's scale.
    with timing(watch, (loop, "align_view")):
        result = dream(truth0.image, cams, "", inpainter=WorldInpainter(world), depth_estimator=estimator,
                       config=config, depth=truth0.depth, aligner=None if peer is None else watch.wrap(peer))
    t_loop = time.perf_counter() - t0
    refine_s = 0.0
    if method == "ours" and DreamConfig().joint_refinement:
        t = time.perf_counter()
        # The refinement's fit and its re-alignment of each view (not the rebuild's render and merge).
        with timing(watch, (joint_refinement, "joint_log_corrections"), (joint_refinement, "bend_evidence"),
                    (joint_refinement, "align_adaptive")):
            result = refine_scene(replace(result, config=replace(config, joint_refinement=True)))
        refine_s = time.perf_counter() - t
    m = world_metrics(result, world)
    m["masks"] = [v.mask for v in result.views]
    m["align_ms_per_view"] = 1000 * watch.seconds / max(1, len(cams) - 1)
    m["seconds"] = t_loop + refine_s
    m["worse_views"] = sum(1 for v in result.views
                           if v.stats.get("joint_disagreement_after", 0.0)
                           > v.stats.get("joint_disagreement_before", 0.0))
    return m


def fmt(x: float, pct: bool = True) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "nan"
    return f"{100 * x:.2f}%" if pct else f"{x:.1f}"


def table(family: str, trajectory: str, n_views: int, rows: dict[str, dict]) -> list[str]:
    out = [f"\n{family} / {trajectory} ({n_views} views)",
           f"{'method':18s} {'AbsRel new':>10s} {'seam step':>9s} {'seam px':>8s} {'pt-surf':>8s} "
           f"{'align ms/view':>13s}"]
    for name, m in rows.items():
        out.append(f"{name:18s} {fmt(m['abs_rel_aligned']):>10s} {fmt(m['seam_step_median']):>9s} "
                   f"{fmt(m['seam_jump_median']):>8s} {fmt(m['point_to_surface_rel_extent']):>8s} "
                   f"{fmt(m['align_ms_per_view'], False):>13s}")
    if "ours" in rows:
        ours = rows["ours"]
        peers = [rows[p] for p in PEERS if p in rows]
        if peers:
            best_abs = min(p["abs_rel_aligned"] for p in peers)
            best_seam = min(p["seam_step_median"] for p in peers)
            out.append(f"best peer / ours: AbsRel {best_abs / ours['abs_rel_aligned']:.2f}x, "
                       f"seam step {best_seam / ours['seam_step_median']:.2f}x (targets >= 1.3x, >= 2x)")
        if "oracle scale" in rows:
            floor = rows['oracle scale']['abs_rel_aligned']
            out.append(f"ours / oracle-scale floor: AbsRel {ours['abs_rel_aligned'] / floor:.2f}x"
                       " (target <= 1.1x)")
    return out


def two_way_bound(world, estimator: WorldDepthEstimator, cams: list[Camera], masks: list[torch.Tensor],
                  min_fraction: float = 0.02) -> float:
    """New-pixel AbsRel of the two-way least-squares bound (module docstring) for an estimator
    whose errors are a scale per view and a constant error per surface; ``masks``: the new
    pixels per view (the first view is the RGBD photo: exact)."""
    n_ids = len(world.object_names)
    ids = [world.render(c).object_id for c in cams]
    errors = [np.zeros(n_ids)] + [np.log(e.scale * (1 + e.object_offsets))
                                  for e in (estimator.errors(c) for c in cams[1:])]
    rows = [(v, s) for v in range(len(cams))
            for s in torch.nonzero(torch.bincount(ids[v].flatten(), minlength=n_ids)
                                   >= min_fraction * ids[v].numel()).flatten().tolist()]
    # Unknowns: a level per view after the first, a level per surface; the first view's rows exact.
    n_levels = len(cams) - 1
    A = np.zeros((len(rows), n_levels + n_ids))
    b = np.array([errors[v][s] for v, s in rows])
    weight = np.array([1e3 if v == 0 else 1.0 for v, _ in rows])
    for i, (v, s) in enumerate(rows):
        if v > 0:
            A[i, v - 1] = 1.0
        A[i, n_levels + s] = 1.0
    ridge = 1e-6 * np.eye(A.shape[1])
    x = np.linalg.lstsq(np.vstack([A * weight[:, None], ridge]),
                        np.concatenate([b * weight, np.zeros(A.shape[1])]), rcond=None)[0]
    level, surface = np.concatenate([[0.0], x[:n_levels]]), x[n_levels:]
    views_of = np.bincount([s for _, s in rows], minlength=n_ids)
    total, count = 0.0, 0
    for v in range(1, len(cams)):
        s = ids[v][masks[v]].numpy()
        err = np.where(views_of[s] > 1, surface[s], errors[v][s] - level[v])
        total += float(np.abs(np.expm1(err)).sum())
        count += len(s)
    return total / max(count, 1)


# ----------------------------------------------------------------------------- speed


def big_cloud(world: ProceduralWorld, size: int, target: int) -> PointCloud:
    """About ``target`` points: the world lifted from a ring of cameras (a stand-in dreamed cloud)."""
    clouds, n, yaw = [], 0, 0.0
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
    depth = align_view(estimated, render.depth, masks.known, masks.hole, DreamConfig()).depth
    full = torch.where(masks.hole, depth, render.depth)
    lift_mask = masks.hole & ~stretched_pixels(full, threshold=0.08)
    new = lift(image, full, camera, lift_mask)
    keep = dedup_mask(points.xyz, points.radius, new.xyz, new.radius)
    return int(keep.sum())


def griddata_reprojection(points: PointCloud, camera: Camera) -> np.ndarray:
    """The research code's renderer: project, then scipy griddata (linear), no depth test."""
    from scipy.interpolate import griddata

    uv, z = project_points(points.xyz, camera)
    ok = ((z > 0) & (uv[:, 0] >= -1) & (uv[:, 0] <= camera.width + 1)
          & (uv[:, 1] >= -1) & (uv[:, 1] <= camera.height + 1))
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256, help="image size of the accuracy runs")
    ap.add_argument("--seed", type=int, default=0, help="seed of the depth errors (and the inpainting generators)")
    ap.add_argument("--world-seed", type=int, default=0, help="seed of the procedural world (its layout)")
    ap.add_argument("--families", nargs="+", default=list(ERROR_FAMILIES), choices=list(ERROR_FAMILIES))
    ap.add_argument("--trajectories", nargs="+", default=list(TRAJECTORIES))
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--speed", action="store_true", help="also time one view's geometry at 512x512")
    ap.add_argument("--speed-points", type=int, default=2_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: steady timings on a shared machine; spinning threads slow everyone)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    world = CachedWorld(ProceduralWorld(seed=args.world_seed))
    first = Camera.from_focal(DEFAULT_FOCAL_512 * args.size / 512, args.size, args.size)
    center = center_depth_from(world.render(first).depth)

    print(f"depth alignment on the procedural world (seed {args.world_seed}), {args.size}x{args.size}, "
          f"error seed {args.seed}, "
          f"RGBD first view, oracle inpainter")
    summary = []
    for family in args.families:
        estimator = WorldDepthEstimator.family(world, family, seed=args.seed)
        for name in args.trajectories:
            cams = make_trajectory(name, first, center, **TRAJECTORIES.get(name, {})).cameras
            rows = {m: run_method(world, estimator, cams, m, args.seed) for m in args.methods}
            print("\n".join(table(family, name, len(cams), rows)), flush=True)
            if family == "objects" and "oracle scale" in rows:
                bound = two_way_bound(world, estimator, cams, rows["oracle scale"]["masks"])
                floor = rows["oracle scale"]["abs_rel_aligned"]
                print(f"two-way bound (true surface ids, exact per-surface levels): AbsRel {fmt(bound)}, "
                      f"{bound / floor:.2f}x the oracle-scale floor", flush=True)
            summary.append((family, name, rows))

    if "ours" in args.methods:
        print("\nsummary: new-pixel AbsRel (systematic seam step) per family and trajectory")
        print(f"{'family':10s} {'trajectory':11s} {'best peer':>17s} {'oracle scale':>17s} {'ours':>17s} "
              f"{'peer/ours':>9s} {'ours/floor':>10s} {'seam peer/ours':>14s}")
        for family, name, rows in summary:
            peers = {p: rows[p] for p in PEERS if p in rows}
            best = min(peers.values(), key=lambda m: m["abs_rel_aligned"]) if peers else None
            best_seam = min(m["seam_step_median"] for m in peers.values()) if peers else float("nan")
            o, f = rows["ours"], rows.get("oracle scale")

            def cell(m):
                return f"{fmt(m['abs_rel_aligned'])} ({fmt(m['seam_step_median'])})" if m else "-"

            print(f"{family:10s} {name:11s} {cell(best):>17s} {cell(f):>17s} {cell(o):>17s} "
                  f"{(best['abs_rel_aligned'] / o['abs_rel_aligned']) if best else float('nan'):9.2f} "
                  f"{(o['abs_rel_aligned'] / f['abs_rel_aligned']) if f else float('nan'):10.2f} "
                  f"{best_seam / o['seam_step_median']:14.2f}")

    if args.speed:
        s = speed(world.world, 512, args.speed_points, args.repeats)
        print(f"\ngeometry per view at 512x512 over {s['points']} points: ours {s['ours_s']:.3f} s "
              f"(render + masks + align + stretch + lift + merge), griddata re-projection {s['griddata_s']:.3f} s, "
              f"speed-up {s['speedup']:.1f}x")


if __name__ == "__main__":
    main()
