"""Timings and accuracy figures of alignment/ (prints; not a test): ``python bench/bench_alignment.py``.

* fit_scale + seam correction (align_depth) + stretched_pixels on a 512x512 view, 50% hole.
* dedup_mask with 2M existing and 250k new points.
* harmonic vs screened-Poisson seam interpolation on a low-frequency distortion.
* how much a view's own points are thinned by the voxel merge, per cell_factor.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch

# The checkout this script is in, before any installed copy (a worktree measures its own code).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alignment import align_depth, dedup_mask, fit_scale, seam_correction, stretched_pixels


def _best(fn, repeat: int = 5) -> float:
    fn()  # warm-up (allocator, first-call overheads)
    best = math.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _view(h: int = 512, w: int = 512, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float64) + 0.5, torch.arange(w, dtype=torch.float64) + 0.5, indexing="ij"
    )
    ref = 2.0 + 1.5 * yy / h + 0.3 * torch.sin(xx / 40.0)
    ref = torch.where((xx - 150) ** 2 + (yy - 300) ** 2 < 60**2, ref * 0.6, ref)  # an object in front
    distortion = torch.exp(0.15 * torch.sin(2 * math.pi * 0.7 * xx / w) + 0.1 * yy / h)
    est = ref / distortion / 2.5 * (1 + 0.01 * torch.randn(h, w, generator=g, dtype=torch.float64))
    # A 50% hole: a strip at the right border (camera moved left) and a disocclusion blob.
    hole = (xx > 0.62 * w) | ((xx - 0.35 * w) ** 2 / (0.2 * w) ** 2 + (yy - 0.45 * h) ** 2 / (0.3 * h) ** 2 < 1)
    return ref.float(), est.float(), ~hole, hole, xx, yy


def bench_align() -> None:
    ref, est, known, hole, _, _ = _view()
    threads = torch.get_num_threads()
    print(f"512x512 view, hole {float(hole.float().mean()):.1%} of the pixels ({threads} torch threads)")
    t_fit = _best(lambda: fit_scale(est, ref, known))
    fit = fit_scale(est, ref, known)
    log_ratio = torch.log(ref.double() / fit.apply(est).double())
    t_seam = _best(lambda: seam_correction(log_ratio, known, hole))
    t_align = _best(lambda: align_depth(est, ref, known, hole))
    out = align_depth(est, ref, known, hole)
    composite = torch.where(known, ref, out.depth)
    t_edges = _best(lambda: stretched_pixels(composite))
    print(f"  fit_scale          {t_fit * 1e3:7.1f} ms")
    print(f"  seam_correction    {t_seam * 1e3:7.1f} ms")
    print(f"  align_depth (all)  {t_align * 1e3:7.1f} ms  (fit + log-ratio + seam + seam stats)")
    print(f"  stretched_pixels   {t_edges * 1e3:7.1f} ms")
    print(f"  total align_depth + stretched_pixels: {(t_align + t_edges) * 1e3:.1f} ms")


def bench_seam_accuracy() -> None:
    ref, est, known, hole, _, _ = _view()
    print("seam accuracy on the same view (median / 95th percentile relative depth error in the hole):")
    rows = [("global scale only", dict(seam=False))]
    rows += [("harmonic (decay=None)", dict())]
    rows += [(f"screened, decay={d:g} px", dict(decay=d)) for d in (16.0, 64.0, 256.0)]
    for name, kw in rows:
        out = align_depth(est, ref, known, hole, **kw)
        err = ((out.depth - ref).abs() / ref)[hole].double()
        q = torch.quantile(err[torch.randperm(len(err))[:100000]], torch.tensor([0.5, 0.95], dtype=torch.float64))
        print(
            f"  {name:26s} median {float(q[0]):.4f}  p95 {float(q[1]):.4f}  "
            f"seam jump {out.seam_jump_before:.4f} -> {out.seam_jump_after:.4f}"
        )


def _cloud(n_existing: int, n_new: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ex = torch.rand(n_existing, 3, generator=g) * torch.tensor([20.0, 10.0, 20.0])
    ex_r = (1 + 9 * torch.rand(n_existing, generator=g)) / 583.0
    half = n_new // 2
    pick = torch.randint(0, n_existing, (half,), generator=g)
    new = torch.cat(
        [
            ex[pick] + 0.3 * ex_r[pick, None] * torch.randn(half, 3, generator=g),  # re-visits
            torch.rand(n_new - half, 3, generator=g) * torch.tensor([20.0, 10.0, 20.0]) + torch.tensor([0, 0, 20.0]),
        ]
    )
    new_r = torch.cat([ex_r[pick], (1 + 9 * torch.rand(n_new - half, generator=g)) / 583.0])
    return ex, ex_r, new, new_r


def bench_dedup() -> None:
    ex, ex_r, new, new_r = _cloud(2_000_000, 250_000)
    t = _best(lambda: dedup_mask(ex, ex_r, new, new_r), repeat=3)
    keep = dedup_mask(ex, ex_r, new, new_r)
    print(
        f"dedup_mask 2M existing + 250k new (5 levels, uniform in a box: the worst case for the box filter): "
        f"{t * 1e3:.1f} ms, kept {int(keep.sum())} of {len(new)}"
    )


def bench_thinning() -> None:
    """Fraction of a view's own points kept by the merge when nothing exists yet."""
    h = w = 512
    f = 583.0
    v, u = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    for name, z in (
        ("fronto-parallel wall at z=3", torch.full((h, w), 3.0)),
        ("slanted plane z=2..6", 2.0 + 4.0 * u / w),
    ):
        xyz = torch.stack([(u - w / 2) / f * z, (v - h / 2) / f * z, z], -1).reshape(-1, 3)
        r = (z / f).reshape(-1)
        fracs = []
        for cf in (0.5, 1.0, 2.0):
            keep = dedup_mask(xyz[:0], r[:0], xyz, r, cell_factor=cf)
            fracs.append(f"cell_factor {cf:g}: {float(keep.float().mean()):.0%}")
        print(f"  own points kept, {name}: " + ", ".join(fracs))


if __name__ == "__main__":
    bench_align()
    bench_seam_accuracy()
    bench_dedup()
    print("voxel merge of a single new view into an empty cloud:")
    bench_thinning()
