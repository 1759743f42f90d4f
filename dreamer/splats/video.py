"""Fly-through videos of trained splats: RGB and colour-mapped depth along a camera path.

Frames are rendered and encoded a chunk at a time (``chunk`` frames), so memory stays flat
however long the path is. Videos are H.264 MP4s (yuv420p) written by imageio-ffmpeg (its bundled
ffmpeg) at the cameras' own size (an odd side gets one more row or column:
:func:`dreamer.io.even_sides`), plus a small animated GIF preview. Every file is written under a
temporary name and renamed when complete, so an interrupted render never leaves a truncated
video under the final name.

Depth is shown as inverse depth (near = bright) normalized between robust percentiles
measured on a few low-resolution frames spread over the path, so the colours mean the same
distance in every frame; or, with ``depth_per_frame`` (a path whose depths change by orders of
magnitude, such as a deep zoom's fly-in), between the percentiles of each frame itself.

Every frame's coverage (the fraction of its pixels where the splats are opaque, alpha >
:data:`COVERED_ALPHA`) is measured on the way and returned: a frame with empty pixels shows
the background there. With a ``refiner`` (the refine step's optional video pass), every frame is
also repaired, with the previous repaired frame as reference, into ``{name}_repaired.mp4``.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from dreamer.cameras import Camera
from dreamer.progress import ProgressFn

__all__ = ["render_video", "VideoFiles", "colorize_depth", "depth_range", "frame_depth_range", "COVERED_ALPHA"]

log = logging.getLogger(__name__)


COVERED_ALPHA = 0.99
"""A pixel counts as covered by the splats where their accumulated opacity exceeds this."""

# Anchors of the depth colour map, from far (dark) to near (bright): navy, purple, magenta,
# orange, pale yellow. Interpolated linearly in RGB.
_DEPTH_ANCHORS = torch.tensor([
    [0.02, 0.02, 0.10],
    [0.25, 0.05, 0.45],
    [0.70, 0.15, 0.45],
    [0.97, 0.50, 0.15],
    [0.99, 0.95, 0.65],
])


@dataclass
class VideoFiles:
    """The files :func:`render_video` wrote and how many frames each video has."""

    rgb: Path
    depth: Path | None
    preview: Path | None
    frames: int
    coverage: list[float] = field(default_factory=list)
    """Per frame: the fraction of pixels with alpha > :data:`COVERED_ALPHA`."""
    repaired: Path | None = None
    """The repaired fly-through (with a refiner), else None."""


def colorize_depth(depth: Tensor, near: float, far: float, valid: Tensor | None = None) -> Tensor:
    """z-depth [H,W] -> colour [H,W,3] in [0,1]: inverse depth mapped from ``far`` (dark) to
    ``near`` (bright); pixels outside ``valid`` (bool [H,W]) or with depth <= 0 are black."""
    if not 0 < near < far:
        raise ValueError(f"need 0 < near < far, got {near}, {far}")
    d = depth.detach().float()
    ok = d > 0 if valid is None else (valid & (d > 0))
    inv = 1.0 / d.clamp_min(1e-12)
    t = ((inv - 1.0 / far) / (1.0 / near - 1.0 / far)).clamp(0.0, 1.0)
    anchors = _DEPTH_ANCHORS.to(d.device)
    x = t * (len(anchors) - 1)
    i0 = x.floor().long().clamp(0, len(anchors) - 2)
    f = (x - i0.float())[..., None]
    rgb = anchors[i0] * (1 - f) + anchors[i0 + 1] * f
    return rgb * ok[..., None]


def depth_range(gaussians, cameras: Sequence[Camera], *, samples: int = 5, max_side: int = 96,
                alpha_min: float = 0.5) -> tuple[float, float]:
    """(near, far) for the depth colour map: the 2nd and 98th percentiles of the rendered depth
    (where alpha >= ``alpha_min``) over ``samples`` frames spread along the path, rendered at
    most ``max_side`` pixels wide."""
    idx = sorted({round(i * (len(cameras) - 1) / max(samples - 1, 1)) for i in range(samples)})
    vals = []
    for i in idx:
        cam = cameras[i]
        s = min(1.0, max_side / max(cam.width, cam.height))
        small = cam.resized(max(1, round(cam.width * s)), max(1, round(cam.height * s))) if s < 1 else cam
        _, d, a = gaussians.render(small)
        sel = (a >= alpha_min) & (d > 0)
        if sel.any():
            vals.append(d[sel].float().cpu())
    if not vals:
        return 0.1, 10.0
    allv = torch.cat(vals)
    if allv.numel() > 200_000:
        allv = allv[torch.randperm(allv.numel(), generator=torch.Generator().manual_seed(0))[:200_000]]
    near, far = float(torch.quantile(allv, 0.02)), float(torch.quantile(allv, 0.98))
    if not far > near:
        near, far = near * 0.9, near * 1.1 + 1e-6
    return max(near, 1e-6), far


def frame_depth_range(depth: Tensor, alpha: Tensor, *, alpha_min: float = 0.5) -> tuple[float, float]:
    """(near, far) of one frame: the 2nd and 98th percentiles of its depth [H,W] where alpha [H,W]
    >= ``alpha_min`` (a narrow range is widened to +-10 %)."""
    sel = (alpha >= alpha_min) & (depth > 0)
    if not sel.any():
        return 0.1, 10.0
    vals = depth[sel].float().cpu()
    near, far = float(torch.quantile(vals, 0.02)), float(torch.quantile(vals, 0.98))
    if not far > 1.2 * near:
        mid = 0.5 * (near + far)
        near, far = mid / 1.1, mid * 1.1
    return max(near, 1e-12), far


def _check_cameras(cameras: Sequence[Camera]) -> tuple[int, int]:
    if cameras is None or len(cameras) == 0:
        raise ValueError("render_video needs at least one camera (got zero frames)")
    for i, c in enumerate(cameras):
        if not isinstance(c, Camera):
            raise TypeError(f"cameras[{i}] must be a Camera, got {type(c).__name__}")
        if c.width <= 0 or c.height <= 0:
            raise ValueError(f"cameras[{i}] has zero size {c.width}x{c.height}")
    size = (cameras[0].width, cameras[0].height)
    for i, c in enumerate(cameras):
        if (c.width, c.height) != size:
            raise ValueError(f"every frame of a video must have one size: cameras[0] is {size[0]}x{size[1]}, "
                             f"cameras[{i}] is {c.width}x{c.height}")
    return size


def _to_uint8(img: Tensor) -> np.ndarray:
    return (img.detach().float().clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)


def render_video(
    gaussians,
    cameras: Sequence[Camera],
    out_dir: str | Path,
    *,
    name: str = "video",
    fps: float = 30.0,
    depth: bool = True,
    preview: bool = True,
    preview_frames: int = 48,
    preview_side: int = 256,
    chunk: int = 8,
    depth_limits: tuple[float, float] | None = None,
    depth_per_frame: bool = False,
    background: Tensor | None = None,
    quality: float = 8.0,
    on_progress: ProgressFn | None = None,
    refiner=None,
    reference: Tensor | None = None,
    seed: int = 0,
) -> VideoFiles:
    """Render ``gaussians`` along ``cameras`` into ``out_dir``.

    Writes ``{name}.mp4`` (RGB), ``{name}_depth.mp4`` (colour-mapped depth, when ``depth``) and
    ``{name}_preview.gif`` (at most ``preview_frames`` frames spread over the path, at most
    ``preview_side`` pixels wide, when ``preview``).

    Args:
        gaussians: a :class:`dreamer.splats.Gaussians` (anything with ``render(camera)``).
        cameras: the path, one camera per frame, all of one size.
        out_dir: output folder (created).
        name: file stem (no path separators), e.g. the trajectory's name.
        fps: frames per second of the videos.
        chunk: frames rendered before they are encoded (memory bound).
        depth_limits: (near, far) z-depth of the depth colour map; default measured
            (:func:`depth_range`).
        depth_per_frame: map each frame's depth between its own percentiles
            (:func:`frame_depth_range`) instead of one range for the whole path.
        background: RGB [3] behind the splats (default black).
        quality: imageio-ffmpeg quality, 0 (worst) to 10 (best).
        on_progress: called as ``on_progress("video", frames_done, frames)`` (and, with a
            refiner, ``on_progress("repair video", frames_done, frames)``).
        refiner: a :class:`~dreamer.backends.Refiner`: also write ``{name}_repaired.mp4``,
            every frame repaired with the previous repaired frame as reference (the first with
            ``reference``, e.g. the first dreamed view); frame i's generator is seeded with
            ``seed + i``.
    Returns:
        :class:`VideoFiles`.
    """
    import imageio.v2 as imageio
    import imageio.v3 as iio

    from dreamer.io import VIDEO_WRITER_ARGS, atomic_path, even_sides

    W, H = _check_cameras(cameras)
    if not isinstance(name, str) or not name.strip() or any(ch in name for ch in "/\\\0") or name in (".", ".."):
        raise ValueError(f"name must be a plain file stem (no path separators), got {name!r}")
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be a positive number, got {fps}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = len(cameras)
    if depth_limits is not None:
        near, far = depth_limits
    else:
        near, far = depth_range(gaussians, cameras) if depth and not depth_per_frame else (1, 2)
    rgb_path = out_dir / f"{name}.mp4"
    repaired_path = out_dir / f"{name}_repaired.mp4" if refiner is not None else None
    coverage: list[float] = []
    previous = reference
    depth_path = out_dir / f"{name}_depth.mp4" if depth else None
    preview_path = out_dir / f"{name}_preview.gif" if preview else None
    keep = set(np.linspace(0, n - 1, min(preview_frames, n)).round().astype(int).tolist()) if preview else set()
    ps = min(1.0, preview_side / max(W, H))
    preview_size = (max(1, round(W * ps)), max(1, round(H * ps)))
    small: list[np.ndarray] = []
    writer_args = dict(VIDEO_WRITER_ARGS, fps=fps, quality=quality)

    with contextlib.ExitStack() as stack:
        tmp_rgb = stack.enter_context(atomic_path(rgb_path))
        writers = [stack.enter_context(imageio.get_writer(tmp_rgb, **writer_args))]
        tmp_depth = stack.enter_context(atomic_path(depth_path)) if depth_path else None
        depth_writer = None
        if tmp_depth is not None:
            depth_writer = stack.enter_context(imageio.get_writer(tmp_depth, **writer_args))
            writers.append(depth_writer)
        repaired_writer = None
        if repaired_path is not None:
            tmp_repaired = stack.enter_context(atomic_path(repaired_path))
            repaired_writer = stack.enter_context(imageio.get_writer(tmp_repaired, **writer_args))
            writers.append(repaired_writer)
        for start in range(0, n, chunk):
            frames = []
            for i in range(start, min(start + chunk, n)):
                rgb, d, a = gaussians.render(cameras[i], background=background)
                lo, hi = frame_depth_range(d, a) if depth and depth_per_frame and depth_limits is None else (near, far)
                coverage.append(float((a > COVERED_ALPHA).float().mean()))
                fixed = None
                if refiner is not None:
                    g = torch.Generator().manual_seed(int(seed) + i)
                    fixed = refiner.refine(rgb.detach().float().clamp(0, 1), reference=previous, camera=cameras[i],
                                           generator=g)
                    previous = fixed
                frames.append((i, _to_uint8(rgb), _to_uint8(colorize_depth(d, lo, hi, a > 1e-3)) if depth else None,
                               None if fixed is None else _to_uint8(fixed)))
            for i, rgb8, d8, fixed8 in frames:
                writers[0].append_data(even_sides(rgb8))
                if d8 is not None:
                    depth_writer.append_data(even_sides(d8))
                if fixed8 is not None:
                    repaired_writer.append_data(even_sides(fixed8))
                if i in keep:
                    from PIL import Image

                    small.append(np.asarray(Image.fromarray(rgb8).resize(preview_size, Image.BILINEAR)))
            if on_progress is not None:
                on_progress("video", min(start + chunk, n), n)
                if refiner is not None:
                    on_progress("repair video", min(start + chunk, n), n)
        for w in writers:  # finish encoding before the temporary files are renamed
            w.close()
    if preview_path is not None and small:
        with atomic_path(preview_path) as tmp:
            iio.imwrite(tmp, np.stack(small), extension=".gif", duration=1000.0 / fps * max(1.0, n / len(small)),
                        loop=0)
    log.info("video: %d frames of %dx%d -> %s%s", n, W, H, rgb_path,
             f" (+ {depth_path.name})" if depth_path else "")
    return VideoFiles(rgb_path, depth_path, preview_path, n, coverage, repaired_path)
