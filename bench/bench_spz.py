"""Size and fidelity of the .spz export against the .ply of a trained scene (prints figures; not a test).

    python -m dreamer.run --models synthetic --width 256 --height 256 --gs-iters 200 --render-frames 48 --out runs/demo
    python bench/bench_spz.py runs/demo            # a scene folder with gaussians.ply and cameras.json

For the scene's ``gaussians.ply`` it writes the .spz in versions 3 (gzip) and 4 (zstd) and prints
1. sizes: bytes of each file and the ratio .spz / .ply, with the seconds to write and read;
2. values: the largest difference per attribute between the .ply and the .spz read back
   (our reader; tests/test_splats_transform.py shows splat-transform reads the same values);
3. images: PSNR of the .spz's render against the .ply's render from the scene's cameras
   (``--views`` of them, CPU rasterizer), i.e. what the quantization costs on screen;
4. with splat-transform installed, the size of its own .spz of the same .ply, for comparison.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dreamer.cameras import Camera  # noqa: E402
from dreamer.io import read_json  # noqa: E402
from dreamer.splats import Gaussians  # noqa: E402
from dreamer.splats.losses import masked_psnr  # noqa: E402
from dreamer.splats.spz import load_spz, read_spz_header, save_spz  # noqa: E402


def _splat_transform() -> str | None:
    prefix = Path(os.environ.get("SPLAT_TRANSFORM_DIR", Path.home() / ".cache" / "dreamer" / "splat-transform"))
    exe = prefix / "node_modules" / ".bin" / "splat-transform"
    return str(exe) if exe.exists() and shutil.which("node") else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scene", type=Path, help="a scene folder with gaussians.ply (and cameras.json for the renders)")
    parser.add_argument("--views", type=int, default=4, help="cameras to render for the PSNR (0: none)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ply = args.scene / "gaussians.ply"
    g = Gaussians.load_ply(ply)
    ply_bytes = ply.stat().st_size
    print(f"{ply}: {len(g)} Gaussians, SH degree {g.sh_degree}, {ply_bytes / 1e6:.2f} MB")

    tmp = Path(tempfile.mkdtemp())
    read_back = {}
    print("\nsizes")
    for version in (3, 4):
        path = tmp / f"v{version}.spz"
        t0 = time.perf_counter()
        save_spz(g, path, version=version)
        t1 = time.perf_counter()
        read_back[version] = load_spz(path)
        t2 = time.perf_counter()
        size = path.stat().st_size
        print(f"  spz v{version}: {size / 1e6:.3f} MB = {size / ply_bytes:.3f} of the .ply "
              f"({ply_bytes / size:.1f}x smaller); write {t1 - t0:.2f} s, read {t2 - t1:.2f} s")
    bits = read_spz_header(tmp / "v3.spz").fractional_bits

    back = read_back[3]
    qa = g.quats / g.quats.norm(dim=1, keepdim=True)
    qb = back.quats * torch.where((qa * back.quats).sum(1, keepdim=True) < 0, -1.0, 1.0)
    print(f"\nlargest differences .ply vs .spz (identical in v3 and v4: "
          f"{all(torch.equal(a, b) for a, b in zip(back.params().values(), read_back[4].params().values()))})")
    print(f"  positions   {(g.means - back.means).abs().max():.3g} (fractional bits {bits}: half step "
          f"{2.0 ** -(bits + 1):.3g}; scene extent {g.means.abs().max():.3g})")
    print(f"  opacity     {(g.opacities - back.opacities).abs().max():.3g}")
    print(f"  f_dc        {(g.sh0 - back.sh0).abs().max():.3g}")
    print(f"  log scales  {(g.log_scales - back.log_scales).abs().max():.3g}")
    print(f"  quaternions {(qa - qb).abs().max():.3g} (unit, per component)")
    if g.sh_degree:
        d = (g.shN - back.shN).abs()
        print(f"  SH degree 1 {d[:, :3].max():.3g}, degrees 2+ {d[:, 3:].max():.3g}" if g.sh_degree > 1
              else f"  SH degree 1 {d.max():.3g}")

    cams_file = args.scene / "cameras.json"
    if args.views and cams_file.exists():
        cams = [Camera.from_dict(c) for c in read_json(cams_file)["cameras"]]
        cams = cams[:: max(1, len(cams) // args.views)][: args.views]
        print(f"\nrenders: PSNR of the .spz against the .ply (CPU rasterizer, {len(cams)} of the scene's cameras)")
        for i, cam in enumerate(cams):
            a, _, _ = g.render(cam)
            b, _, _ = back.render(cam)
            print(f"  camera {i}: {masked_psnr(b, a):.2f} dB")

    exe = _splat_transform()
    if exe:
        print("\nsplat-transform 2.7.1's own .spz of the same .ply")
        for version in (3, 4):
            out = tmp / f"theirs_v{version}.spz"
            subprocess.run([exe, "-w", "--spz-version", str(version), str(ply), str(out)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            size = out.stat().st_size
            print(f"  spz v{version}: {size / 1e6:.3f} MB = {size / ply_bytes:.3f} of the .ply")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
