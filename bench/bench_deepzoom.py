"""Benchmark of the 3D deep zoom on the procedural world, judged on the whole fly-in.

A scene is dreamed on the procedural world (the first view is an RGBD photo of the world, then
the oracle inpainter and a depth estimator with errors: a scale per camera drawn from 0.5-2,
+-10 % smooth distortion, 1 % noise), view 0 is zoomed about ``--center`` with ``--levels``
levels (11 at p = 2: 1024x), the levels are the world's band-limited renders (the oracle stack)
and each is lifted into the cloud. Splats are trained on the zoomed scene twice, classic
(gsplat's classic mode, no 3D filter) and antialiased (gsplat's antialiased mode and
Mip-Splatting's 3D filter), both with levels of detail, in the zoom point's local frame. Then a
continuous fly-in (a dolly from the view to the deepest magnification) is rendered from each,
and every frame is compared with the world's own render of that camera (supersampled 2x2,
band-limited: the ground truth at every scale).

Printed:

* per level: PSNR of the point render at the level's camera with and without the zoom, and of
  both splat models;
* per model, over the fly-in frames, for the splats alone and over the gap-free point render of
  each frame (what ``fly_in.mp4`` shows): min and median PSNR and SSIM, the zoom of the worst
  frame, the flicker (mean absolute change between consecutive frames minus the truth's: max and
  median), the temporal error (mean absolute difference between the render's frame-to-frame
  change and the truth's: max and median) and the smallest coverage (pixels with alpha >= 0.5);
* times. Ground-truth frames are cached (``--cache``), so a rerun renders only the splats;
* the lifted geometry: per level and dolly view, its flying points (the dream loop's measure,
  ``dreamer.scene.metrics.flying_points``), the pixels lifted onto another surface than their
  ray's (depth more than 5 % from the world's) and onto no surface of their pixel (no quarter of
  its area within 5 %: a pixel across a silhouette may take either side's depth).

``--family`` takes the depth estimator of a named error family instead (the dream's and the
zoom's; dreamer/backends/synthetic.py ERROR_FAMILIES, e.g. ``fatten``: objects drawn a pixel
too wide). ``--lift-table`` prints only the lifted geometry, for each of ``--family`` and
``--seeds``, with the zoom's depth estimates filtered as the dream loop's are (pixel noise,
rims: ``filter_estimate``) and unfiltered (the zoom given ``rim_width`` 0 and
``denoise_radius`` 0); the dream is the same in both.

    python bench/bench_deepzoom.py                         # 128 px, 11 levels at p = 2 (1024x)
    python bench/bench_deepzoom.py --levels 6 --p 4        # 1024x at p = 4
    python bench/bench_deepzoom.py --size 64 --levels 7 --iters 300 --frames 25   # a quick look
    python bench/bench_deepzoom.py --size 64 --levels 11 --iters 300 --frames 25 --strip docs/deepzoom_strip.png
                                                           # the README's figures and picture
    python bench/bench_deepzoom.py --lift-table --family scale fatten mixed --seeds 0 1 2
                                                           # the lifted geometry, filtered or not
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import math
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

# The checkout this script is in, before any installed copy (a worktree measures its own code).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dreamer.backends.synthetic import ERROR_FAMILIES, WorldDepthEstimator, WorldInpainter
from dreamer.cameras import DEFAULT_FOCAL_512, Camera
from dreamer.deepzoom import (DeepZoomConfig, SplatsOverPoints, fly_in_metrics, fly_in_near_plane, fly_in_zooms, psnr,
                              render_fly_in_points, train_zoom_splats, zoom_metrics, zoom_scene)
from dreamer.scene import dream
from dreamer.splats import SplatConfig
from dreamer.trajectories import center_depth_from, make_trajectory
from dreamer.worlds import ProceduralWorld


def truth_frames(world: ProceduralWorld, cameras, cache: Path | None, supersample: int = 2) -> list[torch.Tensor]:
    """The world's renders of ``cameras``, cached on disk by camera and by a small render of the
    world itself (so a change to the world's code never reads stale frames)."""
    out = []
    probe = b""
    if cache is not None and cameras:
        probe = world.render(cameras[0].resized(16, 16), supersample=1).image.float().cpu().numpy().tobytes()
    for cam in cameras:
        key = hashlib.sha256()
        for t in (cam.K, cam.c2w):
            key.update(t.detach().cpu().numpy().tobytes())
        key.update(f"{world.seed} {cam.width} {cam.height} {supersample}".encode())
        key.update(probe)
        path = cache / f"{key.hexdigest()[:24]}.pt" if cache is not None else None
        if path is not None and path.exists():
            out.append(torch.load(path))
            continue
        img = world.render(cam, supersample=supersample).image.float().cpu()
        if path is not None:
            torch.save(img, path)
        out.append(img)
    return out


def save_strip(path: Path, zooms, truths, renders, marks=(1, 4, 32, 256, 1024), scale: int = 1) -> None:
    """A PNG: the truth (top) and the render (bottom) at the frames nearest to ``marks``, each
    pixel drawn as a ``scale`` x ``scale`` block (no interpolation: the pixels stay visible)."""
    from dreamer.io import save_image

    cols = []
    for m in marks:
        if m > zooms[-1] * 1.01:
            continue
        j = min(range(len(zooms)), key=lambda i: abs(math.log(zooms[i] / m)))
        cols.append(torch.cat([truths[j], torch.ones(2, truths[j].shape[1], 3), renders[j].cpu()], 0))
        cols.append(torch.ones(cols[-1].shape[0], 2, 3))
    strip = torch.cat(cols[:-1], 1).clamp(0, 1)
    if scale > 1:
        strip = strip.repeat_interleave(scale, 0).repeat_interleave(scale, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(path, strip)
    print(f"  strip of frames at {', '.join(f'{m}x' for m in marks if m <= zooms[-1] * 1.01)} -> {path}")


# A lifted pixel whose depth is this far (relative) from the truth along its ray sits on another
# surface: a depth edge of the world is a step of 8 % or more (the dream loop's stretch threshold).
WRONG_SURFACE = 0.05


def make_estimator(world: ProceduralWorld, family: str, seed: int) -> WorldDepthEstimator:
    """The bench's own estimator (``bench``: scale 0.5-2, +-10 % bend, 1 % noise) or a named family."""
    if family == "bench":
        return WorldDepthEstimator(world, seed=seed)
    return WorldDepthEstimator.family(world, family, seed=seed)


def dream_scene(args, seed: int, family: str):
    """(world, estimator, dreamed result) of ``args``'s scene on world ``seed``."""
    size = args.size
    world = ProceduralWorld(seed=seed)
    first = Camera.from_focal(DEFAULT_FOCAL_512 * size / 512, size, size)
    truth0 = world.render(first, supersample=2)  # band-limited like every truth frame
    estimator = make_estimator(world, family, seed)
    params = {"distance": args.forward} if args.trajectory in ("forward", "backward", "moveright") else {}
    traj = make_trajectory(args.trajectory, first, center_depth_from(truth0.depth), n=args.views, **params)
    result = dream(truth0.image, traj.cameras, "", inpainter=WorldInpainter(world), depth_estimator=estimator,
                   depth=truth0.depth)
    return world, estimator, result


def zoom(args, world, estimator, result, *, filtered: bool = True):
    """The zoom of ``args`` on ``result``; ``filtered`` False: the zoom's depth estimates keep
    their pixel noise and rims (the scene's settings with rim_width and denoise_radius 0)."""
    if not filtered:
        cfg = dataclasses.replace(result.config, rim_width=0.0, denoise_radius=0)
        result = dataclasses.replace(result, config=cfg)
    center = tuple(c * args.size for c in args.center)
    config = DeepZoomConfig(zoom_levels=args.levels, zoom_p=args.p, zoom_center=center,
                            zoom_dolly_views=args.dolly_views)
    return zoom_scene(result, config, depth_estimator=estimator, world=world, inpainter=WorldInpainter(world))


def lifted_geometry(world: ProceduralWorld, zoomed, n_views: int) -> list[dict]:
    """Per lifted view of ``zoomed`` (the levels, then the dolly views; ``n_views``: the scene's
    own views before them): its kind and level, the pixels it lifted, its flying points (farther
    than three footprints from every true surface, within two pixels of a true occlusion edge:
    :func:`dreamer.scene.metrics.flying_points`, as bench/bench_flying.py counts the loop's) and
    its pixels lifted onto another surface than their ray's (depth off by more than
    :data:`WRONG_SURFACE`) and onto no surface of their pixel (:func:`stray_pixels`)."""
    from dreamer.scene.metrics import flying_points

    rows = []
    n_levels = len(zoomed.cameras) - 1
    for k, view in enumerate(zoomed.result.views[n_views:]):
        truth = world.depth(view.camera).to(view.depth)
        rel = ((view.depth - truth).abs() / truth)[view.mask]
        rows.append({"kind": "level" if k < n_levels else "dolly", "level": int(view.stats["level"]),
                     "lifted": int(view.mask.sum()), "flying": flying_points(view, world)["flying"],
                     "wrong": int((rel > WRONG_SURFACE).sum()), "stray": int(stray_pixels(world, view).sum())})
    return rows


def stray_pixels(world: ProceduralWorld, view, sub: int = 4) -> Tensor:
    """bool [H,W]: the view's lifted pixels whose depth is no surface's within the pixel: fewer
    than a quarter of its ``sub`` x ``sub`` sub-rays meet a surface within :data:`WRONG_SURFACE`
    of it (a pixel across a silhouette, its colour a mix, may take either side's depth)."""
    cam = view.camera
    H, W = cam.height, cam.width
    fine = world.depth(cam.resized(W * sub, H * sub)).to(view.depth)
    fine = fine.view(H, sub, W, sub).permute(0, 2, 1, 3).reshape(H, W, sub * sub)
    agree = ((fine - view.depth[..., None]).abs() / fine <= WRONG_SURFACE).float().mean(-1)
    return view.mask & (agree < 0.25)


GEOMETRY_LEGEND = ("flying: > 3 footprints off every surface, at an edge; other surface: depth > {:g} % off "
                   "the truth of the pixel's ray; no surface: within {:g} % of the truth of under a quarter of "
                   "the pixel's 4x4 sub-rays").format(100 * WRONG_SURFACE, 100 * WRONG_SURFACE)


def print_geometry(rows: list[dict]) -> None:
    print(f"\n  lifted pixels ({GEOMETRY_LEGEND}):")
    print(f"  {'view':>9} {'lifted':>7} {'flying':>6} {'other surface':>13} {'no surface':>10}")
    for r in rows:
        print(f"  {r['kind']:>7}{r['level']:2d} {r['lifted']:7d} {r['flying']:6d} {r['wrong']:13d} {r['stray']:10d}")


def _sum(rows: list[dict], key: str, kind: str | None = None) -> int:
    """The sum of ``key`` over ``rows`` (of :func:`lifted_geometry`), of one kind or all."""
    return sum(r[key] for r in rows if kind is None or r["kind"] == kind)


def lift_table(args) -> None:
    """The lifted geometry of the zoom for each family and seed, unfiltered and filtered."""
    print(f"{args.size}x{args.size}, {args.views} views ({args.trajectory}), zoom p={args.p}, {args.levels} levels "
          f"about ({args.center[0]:g}, {args.center[1]:g}) of the view; the lifted pixels of the levels and "
          f"dolly views ({GEOMETRY_LEGEND}), the zoom's estimates unfiltered -> filtered")
    print(f"  {'':22} {'flying':^27} {'other surface':^27} {'no surface':^27}")
    print(f"  {'family':>9} {'seed':>4} {'lifted':>7} " + " ".join(f"{k:^13}" for k in ["levels", "dolly"] * 3)
          + f" {'rims peeled':>11}")
    keys = [(key, kind) for key in ("flying", "wrong", "stray") for kind in ("level", "dolly")]
    totals: dict[str, list[int]] = {}
    for family in args.family:
        for seed in args.seeds:
            world, estimator, result = dream_scene(args, seed, family)
            rows, peeled = {}, 0
            for filtered in (False, True):
                zoomed = zoom(args, world, estimator, result, filtered=filtered)
                rows[filtered] = lifted_geometry(world, zoomed, len(result.views))
                if filtered:
                    peeled = sum(s.rim_pixels for s in zoomed.stats) + sum(s.rim_pixels for s in zoomed.dolly_stats)
            figures = [_sum(rows[True], "lifted")]
            figures += [_sum(rows[f], key, kind) for key, kind in keys for f in (False, True)]
            t = totals.setdefault(family, [0] * len(figures))
            for j, v in enumerate(figures):
                t[j] += v
            print(f"  {family:>9} {seed:4d} " + _cells(figures) + f" {peeled:11d}")
    print("  all seeds:")
    for family, figures in totals.items():
        print(f"  {family:>9} {'':4} " + _cells(figures))


def _cells(figures: list[int]) -> str:
    """The lifted count, then each (unfiltered, filtered) pair as 'a -> b'."""
    pairs = [f"{a:5d} -> {b:<4d}" for a, b in zip(figures[1::2], figures[2::2])]
    return f"{figures[0]:7d} " + " ".join(pairs)


def run(args) -> None:
    t_all = time.perf_counter()
    size = args.size
    t0 = time.perf_counter()
    world, estimator, result = dream_scene(args, args.seed, args.family[0])
    t_dream = time.perf_counter() - t0
    center = tuple(c * size for c in args.center)
    t0 = time.perf_counter()
    zoomed = zoom(args, world, estimator, result, filtered=args.zoom_filter)
    t_zoom = time.perf_counter() - t0
    print(f"world seed {args.seed}: {size}x{size}, {args.views} views ({args.trajectory}) dreamed in {t_dream:.0f} s; "
          f"zoom p={args.p}, {args.levels} levels ({zoomed.magnification:.0f}x) "
          f"about ({center[0]:.0f}, {center[1]:.0f}) "
          f"in {t_zoom:.0f} s; {len(result.points)} points before, {len(zoomed.points)} after "
          f"({int((zoomed.lod.lod_out == 0).sum())} in the finest level of each region)")
    for st in zoomed.dolly_stats:
        if not st.repainted_fraction:
            continue
        print(f"  dolly view of level {st.level} ({args.p ** st.level}x on the fly-in path): "
              f"{100 * st.repainted_fraction:.1f} % repainted ({100 * st.hole_fraction:.1f} % holes), "
              f"+{st.new_points} points")
    print_geometry(lifted_geometry(world, zoomed, len(result.views)))

    zooms = fly_in_zooms(args.frames, zoomed.magnification)
    frame = zoomed.frame
    world_cams = zoomed.fly_in_cameras(args.frames)
    local_cams = zoomed.fly_in_cameras(args.frames, frame=frame)
    cache = Path(args.cache).expanduser() if args.cache else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    truths = truth_frames(world, world_cams, cache)
    t_truth = time.perf_counter() - t0

    # Points: the level cameras and the fly-in.
    level_rows = zoom_metrics(zoomed, result.points, truth=zoomed.images)
    local_points = frame.points(zoomed.points)
    pts_frames = [render_fly_in_points(local_points, zoomed.lod, c) for c in local_cams]
    pts = fly_in_metrics([r.image for r in pts_frames], truths, zooms, [r.covered.float() for r in pts_frames])

    base = SplatConfig(iterations=max(args.iters, 1), sh_degree=0, densify=args.densify,
                       refine_start_iter=min(100, args.iters),
                       refine_stop_iter=int(0.8 * args.iters), refine_every=max(1, args.iters // 10),
                       extra_views=args.extra_views, log_every=10**9, device="cpu")
    models, renders, times, composited = {}, {}, {}, {}
    near = fly_in_near_plane(local_cams, [0.0, 0.0, 0.0], base.near_plane)
    for mode in args.modes:
        t0 = time.perf_counter()
        splats = train_zoom_splats(zoomed, base, antialiased=mode == "antialiased")
        times[mode] = time.perf_counter() - t0
        outs = [splats.render_local(c, near_plane=near) for c in local_cams]
        renders[mode] = [o[0].cpu() for o in outs]
        models[mode] = (splats, fly_in_metrics(renders[mode], truths, zooms, [o[2].cpu() for o in outs]))
        # What fly_in.mp4 shows: the splats over the gap-free point render of each frame.
        over = SplatsOverPoints(splats.gaussians, local_points, zoomed.lod, near)
        composited[mode] = fly_in_metrics([over.render(c)[0].cpu() for c in local_cams], truths, zooms)

    print(f"\n  {'level':>5} {'zoom':>6} {'points w/o':>10} {'points':>7} " + " ".join(f"{m:>12}" for m in args.modes))
    for row, cam in zip(level_rows, zoomed.cameras):
        i = row["level"]
        vals = [psnr(models[m][0].render(cam)[0].cpu(), zoomed.images[i]) for m in args.modes]
        print(f"  {i:5d} {args.p ** i:6d} {row['psnr_without']:10.2f} {row['psnr_with']:7.2f} "
              + " ".join(f"{v:12.2f}" for v in vals))

    print(f"\n  fly-in: {args.frames} frames from 1x to {zoomed.magnification:.0f}x, truth change per frame "
          f"median {torch.tensor(pts.truth_change).median():.4f}")
    print(f"  {'render':>23} {'PSNR min':>9} {'median':>7} {'worst at':>9} {'SSIM min':>9} {'median':>7} "
          f"{'flicker max':>11} {'median':>7} {'temp.err max':>12} {'median':>7} {'coverage min':>12} "
          f"{'train s':>8} {'Gaussians':>9}")
    rows = [("points", pts, float("nan"), len(zoomed.points))]
    for m in args.modes:
        rows += [(m, models[m][1], times[m], len(models[m][0])),
                 (f"{m} over points", composited[m], times[m], len(models[m][0]))]
    for name, met, secs, n in rows:
        s = met.summary()
        print(f"  {name:>23} {s['psnr_min']:9.2f} {s['psnr_median']:7.2f} {s['worst_zoom']:8.1f}x "
              f"{s['ssim_min']:9.3f} {s['ssim_median']:7.3f} {s['flicker_max']:11.4f} {s['flicker_median']:7.4f} "
              f"{s['temporal_error_max']:12.4f} {s['temporal_error_median']:7.4f} {s['coverage_min']:12.4f} "
              f"{secs:8.0f} {n:9d}")
    print(f"\n  targets: every frame >= {args.min_psnr:g} dB, median >= {args.median_psnr:g} dB, "
          f"flicker (change beyond the truth's) <= {args.flicker_margin:g}")
    for name, met, _, _ in rows:
        s = met.summary()
        checks = [s["psnr_min"] >= args.min_psnr, s["psnr_median"] >= args.median_psnr,
                  s["flicker_max"] <= args.flicker_margin]
        print(f"  {name:>23}: {'met' if all(checks) else 'NOT met'} (min {s['psnr_min']:.2f} dB at "
              f"{s['worst_zoom']:.1f}x, median {s['psnr_median']:.2f} dB, flicker max {s['flicker_max']:.4f})")
    if "classic" in models and "antialiased" in models:
        pc, pa = models["classic"][1].psnr, models["antialiased"][1].psnr
        worst = min(range(len(zooms)), key=lambda j: min(pc[j], pa[j]))
        print(f"  antialiased - classic: {min(pa) - min(pc):+.2f} dB at each one's worst frame, "
              f"{pa[worst] - pc[worst]:+.2f} dB at the worse of the two ({zooms[worst]:.1f}x)")
    if args.per_frame:
        print(f"\n  {'frame':>5} {'zoom':>8} {'truth chg':>9} {'points PSNR':>11} "
              + " ".join(f"{m + ' PSNR':>17} {'flicker':>8}" for m in args.modes))
        for j, z in enumerate(zooms):
            cells = []
            for m in args.modes:
                met = models[m][1]
                fl = met.flicker[j - 1] if j else float("nan")
                cells.append(f"{met.psnr[j]:17.2f} {fl:8.4f}")
            tc = pts.truth_change[j - 1] if j else float("nan")
            print(f"  {j:5d} {z:8.1f} {tc:9.4f} {pts.psnr[j]:11.2f} " + " ".join(cells))
    if args.save_frames:
        from dreamer.io import save_image

        folder = Path(args.save_frames)
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(len(zooms)):
            row = [truths[j]] + [renders[m][j] for m in args.modes] + [pts_frames[j].image.cpu()]
            save_image(folder / f"frame_{j:03d}.png", torch.cat(row, 1).clamp(0, 1))
    if args.strip:
        mode = "antialiased" if "antialiased" in renders else args.modes[0]
        save_strip(Path(args.strip), zooms, truths, renders[mode], scale=args.strip_scale)
    print(f"\n  times: dream {t_dream:.0f} s, zoom {t_zoom:.0f} s, truth frames {t_truth:.0f} s, "
          f"training {' + '.join(f'{times[m]:.0f}' for m in args.modes)} s; total {time.perf_counter() - t_all:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=128, help="image side in pixels")
    ap.add_argument("--levels", type=int, default=11, help="zoom levels including the view (11 at p = 2: 1024x)")
    ap.add_argument("--p", type=int, default=2, help="zoom factor per level")
    ap.add_argument("--views", type=int, default=3, help="dreamed views")
    ap.add_argument("--trajectory", default="forward", help="trajectory preset of the dream")
    ap.add_argument("--forward", type=float, default=0.3,
                    help="forward / backward / moveright presets: step as a fraction of the centre depth")
    ap.add_argument("--center", type=float, nargs=2, default=(0.5, 0.6),
                    help="zoom centre as fractions of the image width and height")
    ap.add_argument("--seed", type=int, default=0, help="world seed")
    ap.add_argument("--family", nargs="+", default=["bench"], choices=["bench", *ERROR_FAMILIES],
                    help="depth estimator: the bench's own (scale 0.5-2, +-10%% bend, 1%% noise) or a named error "
                         "family; several only with --lift-table")
    ap.add_argument("--lift-table", action="store_true",
                    help="print only the lifted geometry, the zoom's estimates unfiltered and filtered, for each "
                         "--family and --seeds")
    ap.add_argument("--zoom-filter", action=argparse.BooleanOptionalAction, default=True,
                    help="filter the zoom's depth estimates as the dream loop's (--no-zoom-filter: rim_width and "
                         "denoise_radius 0 in the zoom only)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="world seeds of --lift-table")
    ap.add_argument("--frames", type=int, default=41, help="fly-in frames")
    ap.add_argument("--iters", type=int, default=1500, help="splat training iterations (0: the points only)")
    ap.add_argument("--densify", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--extra-views", action=argparse.BooleanOptionalAction, default=False,
                    help="train on extra views re-rendered from the points around each view")
    ap.add_argument("--dolly-views", action=argparse.BooleanOptionalAction, default=True,
                    help="train on a dolly view per level (the fly-in camera of the level's magnification)")
    ap.add_argument("--modes", nargs="+", default=["classic", "antialiased"], choices=["classic", "antialiased"])
    ap.add_argument("--min-psnr", type=float, default=28.0, help="target: the worst fly-in frame's PSNR (dB)")
    ap.add_argument("--median-psnr", type=float, default=32.0, help="target: the median fly-in frame's PSNR (dB)")
    ap.add_argument("--flicker-margin", type=float, default=0.002,
                    help="target: the largest frame-to-frame change beyond the truth's (mean absolute, [0,1] scale)")
    ap.add_argument("--per-frame", action="store_true", help="print every frame's figures")
    ap.add_argument("--save-frames", default="", help="folder for every frame: truth, each model, points")
    ap.add_argument("--strip", default="", help="write a strip of frames (truth above, render below) to this PNG")
    ap.add_argument("--strip-scale", type=int, default=3, help="pixel size of the strip (nearest neighbour)")
    ap.add_argument("--cache", default="~/.cache/dreamer/bench_deepzoom",
                    help="folder of cached truth frames ('' = none)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.iters == 0:
        args.modes = []  # points only
    torch.set_num_threads(args.threads)
    if args.lift_table:
        lift_table(args)
        return
    if len(args.family) != 1:
        ap.error("give one --family (several only with --lift-table)")
    run(args)


if __name__ == "__main__":
    main()
