"""Benchmark of the Gaussian splat stage on the procedural world (prints figures; not a test).

    python bench/bench_splats.py                  # CPU, 128x128, a few thousand Gaussians
    python bench/bench_splats.py --iterations 300 --threads 1
    python bench/bench_splats.py --only speed     # just the rasterizer speed

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
          f"{float((gpu.rgb.cpu() - cpu.rgb).abs().max()):.2e}, alpha {float((gpu.alpha.cpu() - cpu.alpha).abs().max()):.2e}")
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
    ap.add_argument("--only", choices=["quality", "speed", "cuda"], default=None)
    ap.add_argument("--size", type=int, default=128, help="training / evaluation image size")
    ap.add_argument("--lift-size", type=int, default=64, help="resolution the cloud is lifted at")
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--gpu-iterations", type=int, default=3000)
    ap.add_argument("--speed-gaussians", type=int, default=20000)
    ap.add_argument("--speed-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--readme-schedule", action="store_true",
                    help="train with SplatConfig's default schedule (only --iterations set), as the README's first "
                         "command does (no densification or SH above degree 0 before iteration 500)")
    ap.add_argument("--init-cell", type=float, default=None,
                    help="SplatConfig.init_cell (footprints per cell of the initial Gaussians; 0: one per point)")
    args = ap.parse_args()
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


if __name__ == "__main__":
    main()
