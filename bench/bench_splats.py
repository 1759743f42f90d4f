"""Benchmark of the Gaussian splat stage on the procedural world (prints figures; not a test).

    python bench/bench_splats.py                  # CPU, 128x128, a few thousand Gaussians
    python bench/bench_splats.py --iterations 300 --threads 1
    python bench/bench_splats.py --only speed     # just the rasterizer speed
    python bench/bench_splats.py --only refine    # the refine step: four settings, near and far
    python bench/bench_splats.py --only coverage  # the offline demo's videos: empty pixels per frame
    python bench/bench_splats.py --only coverage --presets llff --coverage-runs refine  # one row

1. Quality. A scene is made from the world's ground truth: five views around the first camera
   (yaw -24..24 degrees) at 128x128; the cloud lifts each view at 64x64 (so a few thousand
   points) where the cloud does not cover it yet. Splats are trained on it (the dreamed views
   plus the +-5 degree extra views re-rendered from the cloud) with the masked loss and, for
   comparison, with holes trained as black (``masked=False``, the original method). Both, the
   initial splats and the raw point render are scored against the world's true images on
   held-out cameras (between and beside the training views): PSNR and SSIM over the whole
   image, and over the pixels the point cloud covers.
2. Speed: seconds per training iteration; the CPU rasterizer's forward and backward time for
   20k Gaussians at 256x256.
3. With CUDA: the same training at 512x512 through gsplat's kernels, iterations per second and
   peak GPU memory, and the CPU rasterizer against gsplat's on one scene.
4. The refine step (``--only refine``), four settings trained on the same scene in one run: the
   baseline, + depth supervision (the views' depth maps), + progressive refinement (the refine
   step as ``--refine`` runs it: the completion pass dreams the repair cameras where the cloud
   has holes, then those where the repaired render disagrees with the cloud's (a nearer surface
   the cloud lacks, lifted where the depth is nearer), with the demo's backends: the world's
   inpainter and its depth estimator with errors; then repaired novel views join training,
   further out each round; the repair model is the world's imperfect refiner: 70% of the way to
   the truth, blurred, noisy), and both. A fifth row shows the repaired views alone, without the
   completion pass. Scored on held-out cameras near the training views (between and beside them)
   and far from them (20-21 degrees of turn from the nearest training camera, and moved: orbits
   of the middle camera by 44 degrees of yaw or 18-21 of elevation, about 1 m at the 3 m pivot,
   most also 0.3 m forward): PSNR, SSIM, the splats' depth AbsRel (expected depth where alpha >
   0.5, against the true z-depth; also away from depth edges, where any splat render blends two
   surfaces) and coverage (pixels with alpha > 0.99). LPIPS is not printed: it needs a
   pretrained network (AlexNet/VGG weights) that is not available offline here.
5. Coverage (``--only coverage``): the offline demo (``--models synthetic``, ``lookaround``) at
   a small size, with and without ``--refine``, its splats rendered along every render preset
   (each preset the scene's render path in turn, so the completion pass sees it): the fraction
   of each frame covered (alpha > 0.99), worst frame and frames below 99.9%.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dreamer.cameras import Camera  # noqa: E402
from dreamer.render import lift, render_points  # noqa: E402
from dreamer.scene import DreamResult, DreamView  # noqa: E402
from dreamer.splats import Gaussians, SplatConfig, rasterize, train_gaussians  # noqa: E402
from dreamer.splats.losses import masked_psnr, masked_ssim  # noqa: E402
from dreamer.trajectories import orbit_camera  # noqa: E402
from dreamer.worlds import ProceduralWorld  # noqa: E402

PIVOT = 3.0
TRAIN_YAWS = (-24.0, -12.0, 0.0, 12.0, 24.0)
HELD_OUT = ((-18.0, 3.0), (-6.0, -3.0), (6.0, 4.0), (18.0, -2.0), (30.0, 0.0), (0.0, 8.0))


def world_result(world: ProceduralWorld, size: int, lift_size: int, device: str = "cpu") -> DreamResult:
    """Ground-truth views at ``size`` and a cloud lifted from ``lift_size`` renders of the same
    cameras, each view adding the pixels the cloud does not cover yet (the dream loop without
    its errors)."""
    first = world.first_camera(size, size, device=device)
    views, points = [], None
    for yaw in TRAIN_YAWS:
        cam = orbit_camera(first, PIVOT, yaw, 0.0) if yaw else first
        truth = world.render(cam)
        small = cam.resized(lift_size, lift_size)
        low = world.render(small)
        new_low = torch.ones(lift_size, lift_size, dtype=torch.bool, device=device) if points is None \
            else ~render_points(points, small).covered
        new = lift(low.image, low.depth, small, new_low)
        points = new if points is None else points.cat(new)
        mask = torch.nn.functional.interpolate(new_low[None, None].float(), size=(size, size))[0, 0] > 0.5
        views.append(DreamView(cam, truth.image, truth.depth, mask))
    return DreamResult(points, views)


def held_out_cameras(result: DreamResult) -> list[Camera]:
    first = result.views[TRAIN_YAWS.index(0.0)].camera
    return [orbit_camera(first, PIVOT, y, p) for y, p in HELD_OUT]


def score(render_fn, cams, truths, covers) -> dict:
    ps, ss, pc, sc = [], [], [], []
    for cam, truth, cov in zip(cams, truths, covers):
        img = render_fn(cam)
        ps.append(masked_psnr(img, truth))
        ss.append(float(masked_ssim(img, truth)))
        pc.append(masked_psnr(img, truth, cov))
        sc.append(float(masked_ssim(img, truth, cov)))
    return {"psnr": statistics.mean(ps), "ssim": statistics.mean(ss), "psnr_cov": statistics.mean(pc),
            "ssim_cov": statistics.mean(sc)}


def bench_quality(args) -> None:
    world = ProceduralWorld(args.seed)
    t0 = time.perf_counter()
    result = world_result(world, args.size, args.lift_size)
    print(f"scene: {len(result.views)} views at {args.size}x{args.size}, {len(result.points)} points "
          f"(lifted at {args.lift_size}x{args.lift_size}), built in {time.perf_counter() - t0:.1f} s")
    cams = held_out_cameras(result)
    truths = [world.render(c).image for c in cams]
    covers = [render_points(result.points, c).covered for c in cams]
    print(f"held-out cameras: {len(cams)}; point-cloud coverage of them: "
          f"{statistics.mean(float(c.float().mean()) for c in covers):.3f}")
    rows = {"points (render_points)": score(lambda c: render_points(result.points, c).image, cams, truths, covers)}
    init = Gaussians.from_points(result.points, sh_degree=3)
    rows["splats at init"] = score(lambda c: init.render(c)[0], cams, truths, covers)
    it = args.iterations
    if args.readme_schedule:  # SplatConfig's own schedule, as the README's first command trains
        base = dict(iterations=it, device="cpu", log_every=10**9, seed=args.seed)
    else:
        base = dict(iterations=it, device="cpu", sh_degree_interval=max(it // 4, 1), refine_start_iter=it // 4,
                    refine_every=max(it // 10, 1), refine_stop_iter=int(it * 0.8), log_every=10**9, seed=args.seed)
    if args.init_cell is not None:
        base["init_cell"] = args.init_cell
    if args.init_flat_levels is not None:
        base["init_flat_levels"] = args.init_flat_levels
    if args.init_flat_tolerance is not None:
        base["init_flat_tolerance"] = args.init_flat_tolerance
    for name, masked in (("splats, masked loss", True), ("splats, holes as black", False)):
        history: list = []
        t = time.perf_counter()
        g = train_gaussians(result, SplatConfig(masked=masked, **base), history=history)
        dt = time.perf_counter() - t
        rows[name] = score(lambda c, g=g: g.render(c)[0], cams, truths, covers)
        rows[name].update(sec_per_it=dt / it, gaussians=len(g),
                          train_loss=statistics.mean(h["loss"] for h in history[-20:]))
    print(f"\nheld-out quality after {it} iterations (mean over cameras; 'covered' = pixels the cloud covers)")
    print(f"{'':26s} {'PSNR':>7s} {'SSIM':>7s} {'PSNR cov':>9s} {'SSIM cov':>9s} {'s/iter':>7s} {'Gaussians':>9s}")
    for name, r in rows.items():
        extra = f" {r['sec_per_it']:7.3f} {r['gaussians']:9d}" if "sec_per_it" in r else ""
        print(f"{name:26s} {r['psnr']:7.2f} {r['ssim']:7.4f} {r['psnr_cov']:9.2f} {r['ssim_cov']:9.4f}{extra}")


# Far held-out cameras: (orbit yaw, elevation, move forward as a fraction of the pivot depth) around
# the middle training camera. Each turns 20-21 degrees from its nearest training camera, and
# the orbit moves it (about 1 m at the 3 m pivot), plus the forward move.
FAR = ((44.0, 0.0, 0.1), (-44.0, 0.0, 0.1), (0.0, 20.0, 0.1), (12.0, -20.0, 0.1), (-12.0, 21.0, 0.0),
       (-34.0, -18.0, 0.1))


def far_cameras(result: DreamResult) -> list[Camera]:
    from dreamer.splats.repair import dolly_camera

    first = result.views[TRAIN_YAWS.index(0.0)].camera
    return [dolly_camera(orbit_camera(first, PIVOT, y, e), d * PIVOT) for y, e, d in FAR]


def depth_edges(depth: torch.Tensor, ratio: float = 0.05) -> torch.Tensor:
    """Pixels [H,W] within one pixel of a depth discontinuity (neighbours differing by more than
    ``ratio`` in depth): there a splat render's expected depth blends two surfaces."""
    from dreamer.render import dilate

    log_d = depth.clamp_min(1e-9).log()
    edge = torch.zeros_like(depth, dtype=torch.bool)
    jump_x = (log_d[:, 1:] - log_d[:, :-1]).abs() > ratio
    jump_y = (log_d[1:] - log_d[:-1]).abs() > ratio
    edge[:, 1:] |= jump_x
    edge[:, :-1] |= jump_x
    edge[1:] |= jump_y
    edge[:-1] |= jump_y
    return dilate(edge, 1)


def score_full(g, cams, truths) -> dict:
    """PSNR, SSIM, depth AbsRel (where alpha > 0.5; and there, away from depth edges) and
    coverage (alpha > 0.99) of splats ``g``."""
    ps, ss, ar, ar_in, cov = [], [], [], [], []
    for cam, t in zip(cams, truths):
        rgb, d, a = g.render(cam)
        ps.append(masked_psnr(rgb, t.image))
        ss.append(float(masked_ssim(rgb, t.image)))
        err = (d - t.depth).abs() / t.depth
        m = a > 0.5
        ar.append(float(err[m].mean()) if m.any() else float("nan"))
        m &= ~depth_edges(t.depth)
        ar_in.append(float(err[m].mean()) if m.any() else float("nan"))
        cov.append(float((a > 0.99).float().mean()))
    out = {k: statistics.mean(v) for k, v in (("psnr", ps), ("ssim", ss), ("abs_rel", ar), ("abs_rel_in", ar_in),
                                               ("coverage", cov))}
    return {**out, "abs_rel_each": ar}


def bench_refine(args) -> None:
    from dreamer.backends.synthetic import WorldDepthEstimator, WorldInpainter, WorldRefiner
    from dreamer.pipeline.settings import RefineConfig
    from dreamer.scene import DreamConfig
    from dreamer.scene.completion import complete_scene
    from dreamer.splats.repair import camera_offset
    from dreamer.splats.train import repair_cameras

    world = ProceduralWorld(args.seed)
    result = world_result(world, args.size, args.lift_size)
    result = DreamResult(result.points, result.views, DreamConfig())
    near, far = held_out_cameras(result), far_cameras(result)
    turns = [min(camera_offset(c, v.camera, 1e9) for v in result.views) for c in far]  # pure turn at a far pivot
    print(f"\nrefine step: {len(result.views)} views at {args.size}x{args.size}, {len(result.points)} points; "
          f"{len(near)} near and {len(far)} far held-out cameras (far: {min(turns):.0f}-{max(turns):.0f} degrees "
          f"of turn from the nearest training camera, and moved)")
    truths_near = [world.render(c) for c in near]
    truths_far = [world.render(c) for c in far]
    it = args.iterations
    base = dict(iterations=it, device="cpu", sh_degree_interval=max(it // 4, 1), refine_start_iter=it // 4,
                refine_every=max(it // 10, 1), refine_stop_iter=int(it * 0.8), log_every=10**9, seed=args.seed,
                repair_start=max(it // 5, 1), repair_every=max(it // 5, 1), repair_rounds=4,
                repair_views=args.repair_views, repair_angle=args.repair_angle)
    refiner = WorldRefiner(world, seed=args.seed)

    t = time.perf_counter()
    cams = [c for ring in repair_cameras(result, SplatConfig(**base)) for c in ring]
    rc = RefineConfig()
    state = complete_scene(result, cams, inpainter=WorldInpainter(world),
                           depth_estimator=WorldDepthEstimator(world, seed=args.seed), max_views=args.complete_views,
                           refiner=refiner, suspect_views=args.suspect_views,
                           suspect_threshold=rc.complete_suspect_threshold, suspect_color=rc.complete_suspect_color,
                           suspect_nearer=rc.complete_suspect_nearer)
    completed = state.result
    nearer = sum(int(v.stats.get("suspect_nearer", 0)) for v in completed.views)
    print(f"completion pass over the {len(cams)} repair cameras: {len(completed.views) - len(result.views)} views "
          f"dreamed ({len(state.suspect_dreamed)} of them for their disagreement with the repaired render, "
          f"{nearer} pixels nearer than the cloud lifted), {len(completed.points) - len(result.points)} points added "
          f"({time.perf_counter() - t:.0f} s)")
    runs = [("baseline", result, 0.0, False), ("+ depth supervision", result, args.depth_weight, False),
            ("+ progressive refinement", completed, 0.0, True), ("+ both", completed, args.depth_weight, True),
            ("(repaired views alone)", result, 0.0, True)]
    rows = {}
    for name, scene, dw, repair in runs:
        t = time.perf_counter()
        # The refine step's transmittance barrier comes with the repaired views, as --refine sets it.
        ow, floor = (args.opaque_weight, args.min_scale_px) if repair else (0.0, 0.0)
        g = train_gaussians(scene, SplatConfig(depth_weight=dw, opaque_weight=ow, min_scale_px=floor, **base),
                            refiner=refiner if repair else None)
        rows[name] = (score_full(g, near, truths_near), score_full(g, far, truths_far), time.perf_counter() - t)
        print(f"  trained {name}: {len(g)} Gaussians, {rows[name][2]:.0f} s", flush=True)
    print(f"\nheld-out quality after {it} iterations (means over cameras; depth weight {args.depth_weight}; "
          f"with the repaired views the transmittance barrier at {args.opaque_weight}, the size floor at "
          f"{args.min_scale_px} px, the completion's disagreement views {args.suspect_views}; "
          f"LPIPS not measured: no pretrained LPIPS network offline)")
    print("AbsRel: the splats' expected depth against the true z-depth where alpha > 0.5; 'inner': the same away "
          "from depth edges (1 px bands where the truth jumps by > 5%)")
    print(f"{'':26s} {'near PSNR':>9s} {'SSIM':>6s} {'AbsRel':>7s} {'inner':>6s} {'cover':>6s}   {'far PSNR':>8s} "
          f"{'SSIM':>6s} {'AbsRel':>7s} {'inner':>6s} {'cover':>6s}")
    for name, (n, f, _) in rows.items():
        print(f"{name:26s} {n['psnr']:9.2f} {n['ssim']:6.3f} {n['abs_rel']:7.3f} {n['abs_rel_in']:6.3f} "
              f"{n['coverage']:6.3f}   {f['psnr']:8.2f} {f['ssim']:6.3f} {f['abs_rel']:7.3f} {f['abs_rel_in']:6.3f} "
              f"{f['coverage']:6.3f}")
    (bn, bf, _), (n, f, _) = rows["baseline"], rows["+ both"]
    print(f"with both: far PSNR {f['psnr'] - bf['psnr']:+.2f} dB, near PSNR {n['psnr'] - bn['psnr']:+.2f} dB, "
          f"depth AbsRel x{n['abs_rel'] / bn['abs_rel']:.2f} near, x{f['abs_rel'] / bf['abs_rel']:.2f} far "
          f"(inner: x{n['abs_rel_in'] / bn['abs_rel_in']:.2f} near, x{f['abs_rel_in'] / bf['abs_rel_in']:.2f} far)")
    print("with both, AbsRel per far camera (orbit yaw, elevation): " + ", ".join(
        f"({y:+.0f}, {e:+.0f}) {a:.3f}" for (y, e, _), a in zip(FAR, f["abs_rel_each"])))


PRESETS = ("llff", "back_and_forth", "headbanging")


def bench_coverage(args) -> None:
    import tempfile

    from dreamer.backends.model_sets import ModelConfig, build_backends
    from dreamer.pipeline import SceneConfigs, run_scene
    from dreamer.pipeline.settings import RefineConfig, SceneConfig
    from dreamer.io import read_json

    size, it = args.coverage_size, args.coverage_iterations
    splats = SplatConfig(iterations=it, sh_degree_interval=max(it // 4, 1), refine_start_iter=it // 4,
                         refine_every=max(it // 10, 1), refine_stop_iter=int(it * 0.8), repair_start=max(it // 5, 1),
                         repair_every=max(it // 5, 1), log_every=10**9, checkpoint_every=10**6)
    print(f"\ncoverage of the offline demo's videos (lookaround at {size}x{size}, {it} splat iterations): "
          f"fraction of each frame with alpha > 0.99")
    print(f"{'':12s} {'preset':16s} {'frames':>6s} {'worst':>8s} {'mean':>8s} {'< 99.9%':>8s} {'views':>6s}")
    with tempfile.TemporaryDirectory() as tmp:
        for refine in [r == "refine" for r in args.coverage_runs]:
            for preset in args.presets:
                configs = SceneConfigs(scene=SceneConfig(width=size, height=size, trajectory="lookaround",
                                                         render_trajectory=preset),
                                       models=ModelConfig(models="synthetic"), splats=splats,
                                       refine=RefineConfig(refine=refine))
                t = time.perf_counter()
                # One folder per setting: the dream is reused for every preset (and, without the
                # refine step, the splats too: only the video changes).
                out = Path(tmp) / ("refine" if refine else "plain")
                run_scene(configs, out, build_backends(configs.models))
                m = read_json(out / "metrics.json")["splats"]
                cover = read_json(out / "metrics.json").get("refine", {})
                frames = m["video_frames"]
                below = m["video_frames_below_999"]
                views = len(read_json(out / "cameras.json")["cameras"])
                done = f"{time.perf_counter() - t:.0f} s"
                if refine:
                    done += f", completion: {cover.get('completion_views')} views"
                print(f"{'--refine' if refine else 'plain':12s} {preset:16s} {frames:6d} "
                      f"{m['video_coverage_min']:8.4f} {m['video_coverage_mean']:8.4f} {below:8d} {views:6d}"
                      f"   ({done})",
                      flush=True)


def speed_scene(n: int, size: int, seed: int = 0) -> tuple[list[torch.Tensor], Camera]:
    """About ``n`` Gaussians from a lift of the world (footprint-sized), seen by a camera at
    ``size`` x ``size`` a little off the lifting camera."""
    world = ProceduralWorld(seed)
    side = int(round(n**0.5))
    cam_lift = world.first_camera(side, side)
    truth = world.render(cam_lift)
    g = Gaussians.from_points(lift(truth.image, truth.depth, cam_lift), sh_degree=3)
    gen = torch.Generator().manual_seed(seed)
    sh = g.sh.clone()
    sh[:, 1:] = torch.randn(sh[:, 1:].shape, generator=gen) * 0.05
    params = [g.means, g.quats, g.scales, g.opacities, sh]
    cam = orbit_camera(world.first_camera(size, size), PIVOT, 4.0, 2.0)
    return params, cam


def bench_speed(args) -> None:
    params, cam = speed_scene(args.speed_gaussians, args.speed_size)
    n = params[0].shape[0]
    print(f"\nCPU rasterizer: {n} Gaussians at {args.speed_size}x{args.speed_size}, SH degree 3 "
          f"(torch threads: {torch.get_num_threads()})")
    fw, bw, pairs = [], [], 0
    for _ in range(args.repeats + 1):
        leaves = [p.detach().clone().requires_grad_(True) for p in params]
        t = time.perf_counter()
        out = rasterize(*leaves, cam)
        t1 = time.perf_counter()
        (out.rgb.sum() + out.depth.sum() * 0.01).backward()
        t2 = time.perf_counter()
        fw.append(t1 - t)
        bw.append(t2 - t1)
        pairs = out.info["n_pairs"]
    fw, bw = fw[1:], bw[1:]  # the first run warms up
    print(f"  forward  {statistics.median(fw):.3f} s (min {min(fw):.3f}),  backward {statistics.median(bw):.3f} s "
          f"(min {min(bw):.3f}),  {pairs / 1e6:.2f} M pixel-Gaussian pairs")
    with torch.no_grad():
        t = time.perf_counter()
        for _ in range(args.repeats):
            rasterize(*params, cam)
        print(f"  render without gradients {(time.perf_counter() - t) / args.repeats:.3f} s")


def bench_cuda(args) -> None:
    if not torch.cuda.is_available():
        print("\nCUDA: no GPU here; gsplat figures skipped")
        return
    from dreamer.splats.reference import rasterize_reference

    dev = "cuda"
    params, cam = speed_scene(20000, 256)
    cpu = rasterize(*params, cam, backend="torch")
    gpu = rasterize(*[p.to(dev) for p in params], cam.to(dev), backend="gsplat")
    print(f"\ngsplat CUDA vs CPU rasterizer (20k Gaussians, 256x256): max |rgb| diff "
          f"{float((gpu.rgb.cpu() - cpu.rgb).abs().max()):.2e}, "
          f"alpha {float((gpu.alpha.cpu() - cpu.alpha).abs().max()):.2e}")
    small = [p[:500] for p in params]
    ref = rasterize_reference(*small, cam.resized(64, 64))
    g64 = rasterize(*[p.to(dev) for p in small], cam.resized(64, 64).to(dev), backend="gsplat")
    print(f"gsplat CUDA vs brute force (500 Gaussians, 64x64): max |rgb| diff "
          f"{float((g64.rgb.cpu().double() - ref[0]).abs().max()):.2e}")
    world = ProceduralWorld(args.seed)
    result = world_result(world, 512, 256, device=dev)
    torch.cuda.reset_peak_memory_stats()
    it = args.gpu_iterations
    t = time.perf_counter()
    g = train_gaussians(result, SplatConfig(iterations=it, device=dev, log_every=10**9))
    torch.cuda.synchronize()
    dt = time.perf_counter() - t
    cams = held_out_cameras(result)
    truths = [world.render(c).image for c in cams]
    covers = [render_points(result.points, c).covered for c in cams]
    r = score(lambda c: g.render(c)[0], cams, truths, covers)
    print(f"gsplat CUDA training at 512x512: {len(result.points)} points -> {len(g)} Gaussians, {it / dt:.1f} it/s "
          f"(incl. setup), peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB, held-out PSNR "
          f"{r['psnr']:.2f} dB, SSIM {r['ssim']:.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["quality", "speed", "cuda", "refine", "coverage"], default=None)
    ap.add_argument("--size", type=int, default=128, help="training / evaluation image size")
    ap.add_argument("--lift-size", type=int, default=64, help="resolution the cloud is lifted at")
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--gpu-iterations", type=int, default=3000)
    ap.add_argument("--speed-gaussians", type=int, default=20000)
    ap.add_argument("--speed-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--depth-weight", type=float, default=0.3, help="refine bench: depth supervision weight")
    ap.add_argument("--opaque-weight", type=float, default=None,
                    help="refine bench: the transmittance barrier's weight in the runs with repaired views (default: "
                         "the refine step's, RefineConfig.refine_opaque_weight)")
    ap.add_argument("--min-scale-px", type=float, default=None,
                    help="refine bench: the Gaussians' size floor in the runs with repaired views (default: the refine "
                         "step's, RefineConfig.refine_min_scale_px)")
    ap.add_argument("--repair-views", type=int, default=8, help="refine bench: repaired views per round")
    ap.add_argument("--repair-angle", type=float, default=None,
                    help="refine bench: spread of the last round (default: SplatConfig.repair_angle)")
    ap.add_argument("--complete-views", type=int, default=12, help="refine bench: most views the completion dreams")
    ap.add_argument("--suspect-views", type=int, default=None,
                    help="refine bench: most views the completion dreams for their disagreement with the repaired "
                         "render (default: the refine step's, RefineConfig.complete_suspect_views; 0: off)")
    ap.add_argument("--coverage-size", type=int, default=48, help="coverage bench: image size of the demo")
    ap.add_argument("--coverage-iterations", type=int, default=600, help="coverage bench: splat iterations")
    ap.add_argument("--presets", nargs="+", choices=PRESETS, default=list(PRESETS),
                    help="coverage bench: the render presets (default: all)")
    ap.add_argument("--coverage-runs", nargs="+", choices=["plain", "refine"], default=["plain", "refine"],
                    help="coverage bench: without and/or with --refine (default: both)")
    ap.add_argument("--readme-schedule", action="store_true",
                    help="train with SplatConfig's default schedule (only --iterations set), as the README's first "
                         "command does (no densification or SH above degree 0 before iteration 500)")
    ap.add_argument("--init-cell", type=float, default=None,
                    help="SplatConfig.init_cell (footprints per cell of the initial Gaussians; 0: one per point)")
    ap.add_argument("--init-flat-levels", type=int, default=None,
                    help="SplatConfig.init_flat_levels (flat regions merge to up to 2**this times coarser cells)")
    ap.add_argument("--init-flat-tolerance", type=float, default=None,
                    help="SplatConfig.init_flat_tolerance (colour spread of the points merged in a flat region)")
    args = ap.parse_args()
    from dreamer.pipeline.settings import RefineConfig

    if args.opaque_weight is None:
        args.opaque_weight = RefineConfig().refine_opaque_weight
    if args.suspect_views is None:
        args.suspect_views = RefineConfig().complete_suspect_views
    if args.repair_angle is None:
        args.repair_angle = SplatConfig().repair_angle
    if args.min_scale_px is None:
        args.min_scale_px = RefineConfig().refine_min_scale_px
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CUDA {torch.cuda.is_available()}")
    if args.only in (None, "quality"):
        bench_quality(args)
    if args.only in (None, "speed"):
        bench_speed(args)
    if args.only in (None, "cuda"):
        bench_cuda(args)
    if args.only in (None, "refine"):
        bench_refine(args)
    if args.only in (None, "coverage"):
        bench_coverage(args)


if __name__ == "__main__":
    main()
