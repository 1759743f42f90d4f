"""How well a zoomed scene matches the truth: per level camera, and along the whole fly-in."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor

from dreamer.deepzoom.lifting import render_lod_points
from dreamer.deepzoom.stage import DeepZoomResult
from dreamer.pointcloud import PointCloud
from dreamer.render import render_points

__all__ = ["psnr", "ssim", "zoom_metrics", "FlyInMetrics", "fly_in_metrics"]


def psnr(image: Tensor, truth: Tensor) -> float:
    """PSNR (dB) of ``image`` against ``truth`` (both [H,W,3] in [0,1]); inf when equal."""
    mse = float(((image.float() - truth.float().to(image.device)) ** 2).mean())
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)


def ssim(image: Tensor, truth: Tensor) -> float:
    """SSIM of ``image`` against ``truth`` (both [H,W,3] in [0,1]; 11-tap Gaussian window)."""
    from dreamer.splats.losses import masked_ssim

    return float(masked_ssim(image.float(), truth.float().to(image.device)))


def zoom_metrics(zoomed: DeepZoomResult, before: PointCloud, world=None, *, truth: Tensor | None = None,
                 supersample: int = 2, splat_scale: float = 1.5, max_splat_px: float = 32.0) -> list[dict]:
    """Per level camera: PSNR of the point render with the zoom (``zoomed.points``, the level of
    detail each camera shows) and without it (``before``, the scene's cloud) against the truth,
    and the median footprint of the winning points in that camera's pixels (1 = the level's own
    resolution).

    The truth is ``truth`` [N,H,W,3] when given (e.g. ``zoomed.images`` of a synthetic run: they
    are the world's renders), else ``world``'s band-limited render (``supersample``)."""
    if truth is None and world is None:
        raise ValueError("zoom_metrics needs the world or the true level images")
    n = len(zoomed.cameras)
    if truth is not None and (not isinstance(truth, Tensor) or truth.ndim != 4 or truth.shape[0] != n):
        raise ValueError(f"truth must be [N,H,W,3] with N = {len(zoomed.cameras)} levels, "
                         f"got {getattr(truth, 'shape', type(truth).__name__)}")
    out = []
    for i, cam in enumerate(zoomed.cameras):
        ref = truth[i] if truth is not None else world.render(cam, supersample=supersample).image
        row: dict[str, Any] = {"level": i}
        for key, pts in (("with", zoomed.points), ("without", before)):
            c = cam.to(pts.device)
            if key == "with":
                r = render_lod_points(pts, zoomed.lod, c, splat_scale=splat_scale, max_splat_px=max_splat_px)
            else:
                r = render_points(pts, c, splat_scale=splat_scale, max_splat_px=max_splat_px)
            row[f"psnr_{key}"] = psnr(r.image, ref)
            if r.covered.any():
                px = pts.radius[r.index[r.covered]] * math.sqrt(cam.fx * cam.fy) / r.depth[r.covered]
                row[f"footprint_px_{key}"] = float(px.median())
        out.append(row)
    return out


@dataclass
class FlyInMetrics:
    """Per-frame agreement of a rendered fly-in with the truth.

    ``zoom`` [F]: the magnification of each frame. ``psnr``, ``ssim`` [F]: against the truth.
    ``coverage`` [F]: the fraction of pixels the render covers (alpha >= 0.5; 1 when not given).
    ``change``, ``truth_change`` [F-1]: mean absolute difference between consecutive frames of
    the render and of the truth; ``flicker`` [F-1] = ``change - truth_change``: how much more the
    render changes from one frame to the next than the truth does (a pop or a shimmer shows as a
    positive spike; a render that changes as smoothly as the truth gives about 0 or less).
    ``temporal_error`` [F-1]: mean absolute difference between the render's frame-to-frame
    change and the truth's (per pixel): a pop shows on both sides of the popped frame, a steady
    error shows not at all.
    """

    zoom: list[float]
    psnr: list[float]
    ssim: list[float]
    coverage: list[float]
    change: list[float]
    truth_change: list[float]
    flicker: list[float]
    temporal_error: list[float]

    def summary(self) -> dict[str, float]:
        """min / median PSNR and SSIM, the zoom of the worst frame (by PSNR), the largest and the
        median flicker, the smallest coverage."""
        p = torch.tensor(self.psnr, dtype=torch.float64)
        s = torch.tensor(self.ssim, dtype=torch.float64)
        worst = int(torch.argmin(p))
        fl = torch.tensor(self.flicker or [0.0], dtype=torch.float64)
        te = torch.tensor(self.temporal_error or [0.0], dtype=torch.float64)
        return {
            "psnr_min": float(p.min()), "psnr_median": float(p.median()), "worst_zoom": self.zoom[worst],
            "worst_frame": worst, "ssim_min": float(s.min()), "ssim_median": float(s.median()),
            "flicker_max": float(fl.max()), "flicker_median": float(fl.median()),
            "temporal_error_max": float(te.max()), "temporal_error_median": float(te.median()),
            "coverage_min": float(min(self.coverage)),
        }

    def to_dict(self) -> dict:
        return {**self.__dict__, "summary": self.summary()}


def fly_in_metrics(frames: Sequence[Tensor], truths: Sequence[Tensor], zooms: Sequence[float],
                   alphas: Sequence[Tensor] | None = None) -> FlyInMetrics:
    """:class:`FlyInMetrics` of rendered ``frames`` [H,W,3] against ``truths`` [H,W,3] (one per
    frame, in [0,1]) at magnifications ``zooms``; ``alphas`` [H,W] give the coverage."""
    if not (len(frames) == len(truths) == len(zooms)) or len(frames) < 1:
        raise ValueError(f"need as many frames, truths and zooms (>= 1), "
                         f"got {len(frames)}, {len(truths)}, {len(zooms)}")
    if alphas is not None and len(alphas) != len(frames):
        raise ValueError(f"got {len(alphas)} alpha maps for {len(frames)} frames")
    frames = [f.float().cpu().clamp(0, 1) for f in frames]
    truths = [t.float().cpu().clamp(0, 1) for t in truths]
    for i, (f, t) in enumerate(zip(frames, truths)):
        if f.shape != t.shape or f.ndim != 3 or f.shape[-1] != 3:
            raise ValueError(f"frame {i} and its truth must both be [H,W,3], got {tuple(f.shape)} and {tuple(t.shape)}")
    change = [float((b - a).abs().mean()) for a, b in zip(frames, frames[1:])]
    truth_change = [float((b - a).abs().mean()) for a, b in zip(truths, truths[1:])]
    coverage = [1.0] * len(frames) if alphas is None else [float((a >= 0.5).float().mean()) for a in alphas]
    return FlyInMetrics(
        zoom=[float(z) for z in zooms],
        psnr=[psnr(f, t) for f, t in zip(frames, truths)],
        ssim=[ssim(f, t) for f, t in zip(frames, truths)],
        coverage=coverage, change=change, truth_change=truth_change,
        flicker=[a - b for a, b in zip(change, truth_change)],
        temporal_error=[float(((f1 - f0) - (t1 - t0)).abs().mean())
                        for f0, f1, t0, t1 in zip(frames, frames[1:], truths, truths[1:])],
    )
