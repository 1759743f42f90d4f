"""Benchmark of our own per-view work (geometry, joint refinement) against a griddata re-projection,
and of the CPU splat stage at the README's first command (prints figures; not a test).

    python bench/bench_geometry.py --cache /tmp/geo      # all three parts; caches the scenes built
    python bench/bench_geometry.py --only geometry       # just the per-view geometry vs griddata
    python bench/bench_geometry.py --only geometry joint --threads 1   # and the joint refinement's share
    python bench/bench_geometry.py --only splats --threads 1

1. Geometry of one view. A stand-in dreamed cloud of about ``--points`` points (the procedural
   world lifted at 512x512 from a ring of cameras) and a new camera inside it. One view of the
   loop runs on it with the model outputs precomputed (:func:`dreamer.scene.loop.dream_view`
   with an inpainter and a depth estimator that return fixed images): render, coverage clean-up,
   alignment, stretched pixels, depth-edge test, lift, merge. The cloud it starts from is held as
   the loop holds it between views (made by an append, so this view's append writes behind its
   points, and with the block bounds of its points known: :func:`grown`); the buffer's occasional
   growth (a copy of the cloud each time it grows by half) is not in the figure. Its wall and CPU
   time (median of ``--repeats``) is split into the time inside ``align_view`` (the alignment
   package's fits) and the rest ("ours": everything the loop does around the models and the
   fits); each piece is also timed on its own. The same cloud re-projected into the same camera
   by scipy's griddata (linear), as the original research code renders, in the same process, is
   the baseline of the ratios.
2. The joint refinement's share per view: a lookaround of ``--joint-views`` views dreamed at
   512x512 on the world (oracle inpainter, depth with errors), then ``refine_scene`` timed; its
   time per dreamed view, and the part inside the joint fit (``joint_log_corrections``) apart.
3. Splats at the README's first command: its scene (lookaround, 21 views at 256x256, the
   synthetic model set's depth errors, joint refinement), then ``train_gaussians`` with the
   default settings: CPU seconds per iteration (median over ``--splat-iterations``) and the
   number of Gaussians, for the default initial merge (fine cells), with flat regions merged to
   cells up to four times coarser (the opt-in ``init_flat_levels`` 2) and for one Gaussian per
   point, and the
   baseline in the same run: the original CPU rasterizer (``ORIGINAL_RASTERIZER``, read from the
   repository's history with git) with one Gaussian per point, and today's speed-up against it.

CPU time is the process's user + system time (all threads): on a shared machine it is steadier
than wall time. Ratios are ours vs griddata measured in this run.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dreamer.scene.joint_refinement as joint_refinement  # noqa: E402
import dreamer.scene.loop as loop  # noqa: E402
from alignment import dedup_mask, seam_jump, stretched_pixels  # noqa: E402
from alignment.denoise import denoise_depth, smooth_depth  # noqa: E402
from dreamer.backends.synthetic import WorldDepthEstimator, WorldInpainter  # noqa: E402
from dreamer.cameras import DEFAULT_FOCAL_512, Camera, rotation_y  # noqa: E402
from dreamer.pointcloud import PointCloud  # noqa: E402
from dreamer.render import clean_coverage, lift, render_points  # noqa: E402
from dreamer.scene import DreamConfig, dream  # noqa: E402
from dreamer.scene.depth_edges import straddling_pixels  # noqa: E402
from dreamer.scene.placement import EDGE_RAMP_RADIUS  # noqa: E402
from dreamer.trajectories import center_depth_from, make_trajectory  # noqa: E402
from dreamer.worlds import ProceduralWorld  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dream import griddata_reprojection  # noqa: E402  (the same baseline as the dream bench)

SIZE = 512


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Clock:
    """Accumulates the wall and CPU seconds spent inside the functions it wraps."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0

    def wrap(self, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            w, c = time.perf_counter(), cpu_seconds()
            try:
                return fn(*args, **kwargs)
            finally:
                self.wall += time.perf_counter() - w
                self.cpu += cpu_seconds() - c
        return timed


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``repeats`` calls (after one warm-up call)."""
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), cpu_seconds()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(cpu_seconds() - c)
    return statistics.median(walls), statistics.median(cpus)


def cached(path: Path | None, build):
    """``build()``, kept in ``path`` (a torch file) when given."""
    if path is not None and path.exists():
        return torch.load(path, weights_only=False)
    value = build()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(value, path)
    return value


# ------------------------------------------------------------------------------------------------
# 1. Geometry of one view
# ------------------------------------------------------------------------------------------------
def build_case(world: ProceduralWorld, target: int) -> dict:
    """About ``target`` points lifted from a ring of 512x512 cameras, a camera inside the ring,
    its true image and a depth estimate with errors."""
    clouds, n, yaw = [], 0, 0.0
    while n < target:
        c2w = torch.eye(4)
        c2w[:3, :3] = rotation_y(yaw)
        cam = Camera.from_focal(DEFAULT_FOCAL_512, SIZE, SIZE, c2w)
        r = world.render(cam)
        clouds.append(lift(r.image, r.depth, cam))
        n += len(clouds[-1])
        yaw += 40.0
    cloud = clouds[0]
    for c in clouds[1:]:
        cloud = cloud.cat(c)
    cloud = cloud.select(torch.arange(min(target, len(cloud))))
    c2w = torch.eye(4)
    c2w[:3, :3] = rotation_y(20.0)
    c2w[:3, 3] = torch.tensor([0.2, 0.0, 0.3])
    cam = Camera.from_focal(DEFAULT_FOCAL_512, SIZE, SIZE, c2w)
    truth = world.render(cam)
    est = WorldDepthEstimator(world, seed=1).estimate(truth.image, camera=cam)
    return {"xyz": cloud.xyz, "rgb": cloud.rgb, "radius": cloud.radius, "c2w": c2w, "image": truth.image,
            "estimate": est}


def grown(points: PointCloud) -> PointCloud:
    """``points`` as the loop holds its cloud from view to view: made by an append (so the next
    append writes behind the points), with the block bounds of its points known (each view's
    render computes those of the points the view before it added)."""
    out = PointCloud.empty().cat(points)
    out.block_bounds()
    return out


class FixedInpainter:
    def __init__(self, image: torch.Tensor):
        self.image = image

    def inpaint(self, image, mask, prompt, *, camera, generator=None):
        return self.image


class FixedDepth:
    def __init__(self, depth: torch.Tensor):
        self.depth = depth

    def estimate(self, image, *, camera):
        return self.depth


def per_view(case: dict, repeats: int) -> dict:
    points = PointCloud(case["xyz"], case["rgb"], case["radius"])
    cam = Camera.from_focal(DEFAULT_FOCAL_512, SIZE, SIZE, case["c2w"])
    image, est = case["image"], case["estimate"]
    config = DreamConfig()
    backends = dict(inpainter=FixedInpainter(image), depth_estimator=FixedDepth(est), config=config)

    # The whole view through the loop's own code, with the time inside align_view set apart.
    align_clock = Clock()
    original_align = loop.align_view
    loop.align_view = align_clock.wrap(original_align)
    try:
        loop.dream_view(grown(points), cam, "", **backends)  # warm-up
        walls, cpus, align_walls, align_cpus = [], [], [], []
        for _ in range(repeats):
            base = grown(points)
            align_clock.wall = align_clock.cpu = 0.0
            w, c = time.perf_counter(), cpu_seconds()
            _, view = loop.dream_view(base, cam, "", **backends)
            walls.append(time.perf_counter() - w)
            cpus.append(cpu_seconds() - c)
            align_walls.append(align_clock.wall)
            align_cpus.append(align_clock.cpu)
    finally:
        loop.align_view = original_align
    out = {
        "points": len(points),
        "lifted": int(view.mask.sum()),
        "view": (statistics.median(walls), statistics.median(cpus)),
        "align": (statistics.median(align_walls), statistics.median(align_cpus)),
        "ours": (statistics.median(w - a for w, a in zip(walls, align_walls)),
                 statistics.median(c - a for c, a in zip(cpus, align_cpus))),
    }

    # The pieces on their own, on the same inputs (the cloud held as in the loop).
    points = grown(points)
    render = render_points(points, cam)
    fixed, masks = clean_coverage(render, close_px=config.close_px, grow_px=config.grow_px)
    aligned = loop.align_view(est, fixed.depth, masks.known, masks.hole, config)
    full = torch.where(masks.hole, aligned.depth, fixed.depth)
    lift_mask = masks.hole & ~stretched_pixels(full, threshold=config.stretch_threshold)
    new = lift(image, full, cam, lift_mask)
    keep = dedup_mask(points.xyz, points.radius, new.xyz, new.radius, merge_within_new=False)
    chain = [grown(points)]

    def append():  # to the latest cloud, as the loop does
        chain[0] = chain[0].cat(new.select(keep))

    out["pieces"] = {
        "render_points": timed(lambda: render_points(points, cam), repeats),
        "clean_coverage": timed(lambda: clean_coverage(render, close_px=config.close_px, grow_px=config.grow_px),
                                repeats),
        "stretched_pixels": timed(lambda: stretched_pixels(full, threshold=config.stretch_threshold), repeats),
        "straddling_pixels": timed(lambda: straddling_pixels(full, radius=EDGE_RAMP_RADIUS,
                                                             threshold=config.stretch_threshold), repeats),
        "lift": timed(lambda: lift(image, full, cam, lift_mask), repeats),
        "dedup_mask": timed(lambda: dedup_mask(points.xyz, points.radius, new.xyz, new.radius,
                                               merge_within_new=False, existing_blocks=points.block_bounds),
                            repeats),
        "seam_jump": timed(lambda: seam_jump(full, fixed.depth, masks.known, masks.hole), repeats),
        "denoise_depth": timed(lambda: denoise_depth(est, radius=config.denoise_radius), repeats),
        "filter_estimate (denoise, rims)": timed(lambda: loop.filter_estimate(est, image, config), repeats),
        "smooth_depth": timed(lambda: smooth_depth(full, masks.hole, radius=config.smooth_radius), repeats),
        "cloud append": timed(append, repeats),
    }
    out["griddata"] = timed(lambda: griddata_reprojection(points, cam), repeats)
    return out


# ------------------------------------------------------------------------------------------------
# 2. Joint refinement per view
# ------------------------------------------------------------------------------------------------
def lookaround_scene(world: ProceduralWorld, size: int, views: int | None):
    """A lookaround dreamed on the world at ``size`` (oracle inpainter, depth with errors), not refined."""
    first = Camera.from_focal(DEFAULT_FOCAL_512 * size / 512, size, size)
    truth = world.render(first)
    cams = make_trajectory("lookaround", first, center_depth_from(truth.depth), n=views).cameras
    estimator = WorldDepthEstimator(world, scale_range=(0.5, 2.0), distortion=0.10, noise=0.01, seed=0)
    return dream(truth.image, cams, "", inpainter=WorldInpainter(world), depth_estimator=estimator,
                 config=DreamConfig(joint_refinement=False), depth=truth.depth)


def joint_share(result) -> dict:
    """Seconds of ``refine_scene`` on ``result``, and of its joint fit."""
    fit_clock = Clock()
    original_fit = joint_refinement.joint_log_corrections
    joint_refinement.joint_log_corrections = fit_clock.wrap(original_fit)
    try:
        w, c = time.perf_counter(), cpu_seconds()
        refined = joint_refinement.refine_scene(result)
        wall, cpu = time.perf_counter() - w, cpu_seconds() - c
    finally:
        joint_refinement.joint_log_corrections = original_fit
    dreamed = len(result.views) - 1
    return {"views": dreamed, "points": len(refined.points), "refine": (wall, cpu),
            "fit": (fit_clock.wall, fit_clock.cpu), "per_view": (wall / dreamed, cpu / dreamed),
            "fit_per_view": (fit_clock.wall / dreamed, fit_clock.cpu / dreamed)}


# ------------------------------------------------------------------------------------------------
# 3. Splats at the README's first command
# ------------------------------------------------------------------------------------------------
def first_command_scene():
    """The scene `python -m dreamer.run --models synthetic --width 256 --height 256` dreams before
    its splat stage: the synthetic model set (default depth errors), the default lookaround and
    dream settings, joint refinement included."""
    from dreamer.backends.model_sets import ModelConfig, build_backends
    from dreamer.pipeline.settings import SceneConfig

    backends = build_backends(ModelConfig(models="synthetic"))
    first = SceneConfig(width=256, height=256).first_camera()
    image = backends.image_generator.generate("", width=256, height=256)
    depth = backends.world.render(first).depth  # the world's "photo" comes with its true depth
    cams = make_trajectory("lookaround", first, center_depth_from(depth)).cameras
    return dream(image, cams, "", inpainter=backends.inpainter, depth_estimator=backends.depth_estimator,
                 config=DreamConfig(), depth=depth)


# The original CPU rasterizer: the last commit that composited sorted per-pixel pair lists (before
# the tile blocks; its projection and SH are today's module's functions of the same names).
ORIGINAL_RASTERIZER = "087d997"


def original_rasterize(commit: str = ORIGINAL_RASTERIZER):
    """The ``rasterize`` of ``dreamer/splats/rasterizer.py`` at ``commit`` (read with ``git show``,
    loaded as a module of its own beside today's package), called as the training loop calls
    today's (classic mode only), or None without git or that commit."""
    import importlib.util
    import subprocess
    import tempfile

    repo = Path(__file__).resolve().parents[1]
    try:
        source = subprocess.run(["git", "-C", str(repo), "show", f"{commit}:dreamer/splats/rasterizer.py"],
                                capture_output=True, check=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    with tempfile.TemporaryDirectory(prefix="bench_rasterizer_") as tmp:  # loaded, the file is not needed
        path = Path(tmp) / f"rasterizer_{commit}.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(f"rasterizer_{commit}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up
        spec.loader.exec_module(module)

    def rasterize(*args, rasterize_mode: str = "classic", **kwargs):
        if rasterize_mode != "classic":
            raise ValueError(f"the rasterizer of {commit} has no {rasterize_mode!r} mode")
        return module.rasterize(*args, **kwargs)

    return rasterize


def splat_iterations(result, iterations: int, rasterize=None, **settings) -> dict:
    """CPU seconds per training iteration (median, the first left out) and the Gaussian count,
    trained with ``rasterize`` instead of today's when given."""
    import dreamer.splats.train as train
    from dreamer.splats import SplatConfig, train_gaussians

    known = {f.name for f in dataclasses.fields(SplatConfig)}
    config = SplatConfig(iterations=iterations, log_every=10**9, **{k: v for k, v in settings.items() if k in known})
    marks: list[tuple[float, float]] = []

    def progress(stage, done, total):
        if stage == "splats":
            marks.append((cpu_seconds(), time.perf_counter()))

    todays = train.rasterize
    train.rasterize = rasterize or todays
    try:
        gaussians = train_gaussians(result, config, progress)
    finally:
        train.rasterize = todays
    cpus = [b[0] - a[0] for a, b in zip(marks[1:], marks[2:])]
    walls = [b[1] - a[1] for a, b in zip(marks[1:], marks[2:])]
    return {"gaussians": len(gaussians), "cpu": statistics.median(cpus), "wall": statistics.median(walls),
            "applied": all(k in known for k in settings)}


def ms(pair: tuple[float, float]) -> str:
    return f"{pair[0] * 1e3:9.1f} ms wall {pair[1] * 1e3:9.1f} ms CPU"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["geometry", "joint", "splats"], nargs="+", default=None,
                    help="the parts to run (default: all); geometry and joint together print the ratio with the "
                         "joint refinement's share per view")
    ap.add_argument("--points", type=int, default=2_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--joint-views", type=int, default=7, help="views of the lookaround refined jointly")
    ap.add_argument("--splat-iterations", type=int, default=12)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--cache", type=Path, default=None, help="folder keeping the built cloud and scenes")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    world = ProceduralWorld()
    cache = (lambda name: None) if args.cache is None else (lambda name: args.cache / name)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    g = view = None
    parts = set(args.only or ("geometry", "joint", "splats"))
    if "geometry" in parts:
        case = cached(cache(f"geometry_{args.points}.pt"), lambda: build_case(world, args.points))
        s = per_view(case, args.repeats)
        g, view = s["griddata"], s["view"]
        print(f"\ngeometry of one view at {SIZE}x{SIZE} over {s['points']:,} points ({s['lifted']:,} pixels lifted), "
              f"median of {args.repeats}:")
        for name, pair in s["pieces"].items():
            print(f"  {name:18s} {ms(pair)}")
        print(f"  {'loop view':18s} {ms(s['view'])}   (dream_view, models precomputed)")
        print(f"  {'  align_view':18s} {ms(s['align'])}   (the alignment fits, inside the view)")
        print(f"  {'  ours':18s} {ms(s['ours'])}   (the view without align_view)")
        print(f"griddata (linear) re-projection of the same points: {ms(g)}")
        print(f"ratio griddata / ours:            wall {g[0] / s['ours'][0]:6.1f}x  CPU {g[1] / s['ours'][1]:6.1f}x")
        print(f"ratio griddata / (ours + align):  wall {g[0] / view[0]:6.1f}x  CPU {g[1] / view[1]:6.1f}x")

    if "joint" in parts:
        scene = cached(cache(f"lookaround{args.joint_views}_{SIZE}.pt"),
                       lambda: lookaround_scene(world, SIZE, args.joint_views))
        j = joint_share(scene)
        print(f"\njoint refinement of a lookaround at {SIZE}x{SIZE} ({j['views']} dreamed views, "
              f"{j['points']:,} points): {ms(j['refine'])} in all, of which the joint fit {ms(j['fit'])}")
        print(f"  per dreamed view: {ms(j['per_view'])}, of which the joint fit {ms(j['fit_per_view'])}")
        if g is not None:
            whole = (view[0] + j["per_view"][0], view[1] + j["per_view"][1])
            print(f"ratio griddata / (ours + align + joint refinement per view): wall {g[0] / whole[0]:6.1f}x  "
                  f"CPU {g[1] / whole[1]:6.1f}x")

    if "splats" in parts:
        scene = cached(cache("first_command_scene.pt"), first_command_scene)
        print(f"\nsplats at the README's first command (256x256, {len(scene.views)} views, "
              f"{len(scene.points):,} points), {args.splat_iterations} iterations, median:")
        original = original_rasterize()
        rows = {}
        for label, raster, settings in (
                (f"original ({ORIGINAL_RASTERIZER})", original, {"init_cell": 0.0}),
                ("today, one per point", None, {"init_cell": 0.0}),
                ("today, flat regions merged", None, {"init_flat_levels": 2}),
                ("today (default)", None, {})):
            if label.startswith("original") and original is None:
                print(f"  {label:26s} (skipped: needs git and the repository's history)")
                continue
            r = rows[label] = splat_iterations(scene, args.splat_iterations, raster, **settings)
            if not r["applied"]:
                print(f"  {label:26s} (this version has no such setting)")
                continue
            print(f"  {label:26s} {r['gaussians']:9,} Gaussians  {r['cpu']:.3f} s CPU / iteration  "
                  f"({r['wall']:.3f} s wall)", flush=True)
        flat, today = rows.get("today, flat regions merged"), rows["today (default)"]
        if flat is not None and flat["applied"]:
            print(f"flat regions merged to coarser cells (opt-in): {flat['gaussians'] / today['gaussians']:.2f}x the "
                  f"Gaussians of the default, {today['cpu'] / flat['cpu']:.2f}x less CPU per iteration")
        base = rows.get(f"original ({ORIGINAL_RASTERIZER})")
        if base is not None:
            today = rows["today (default)"]
            print(f"today vs the original rasterizer with one Gaussian per point: "
                  f"{base['cpu'] / today['cpu']:.2f}x CPU, {base['wall'] / today['wall']:.2f}x wall per iteration; "
                  f"the rasterizer alone (one per point "
                  f"both): {base['cpu'] / rows['today, one per point']['cpu']:.2f}x CPU")


if __name__ == "__main__":
    main()
