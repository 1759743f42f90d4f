"""A zoom video through a rendered stack: a continuous scale from level 0 to level N-1.

Frame at zoom position ``s`` in [0, N-1] (level units; the scale is ``p**s``, so a constant
speed in ``s`` is a constant zoom speed) shows the field of view of level 0 shrunk by ``p**s``:

* the base is level ``i = floor(s)`` magnified by ``p**(s-i)``;
* every finer level ``j > i`` is composited on top at its place, where it is sharper than the
  magnified base, with a feathered border of relative width ``feather * (1 - p**(s-j))``.

The feather shrinks to nothing as level ``j`` grows to fill the frame, so at the hand-off from
level ``i`` to ``i+1`` the frame is exactly level ``i+1`` from both sides: the levels cross-fade
spatially over the border region while the tile grows, with no jump. Sampling is bilinear from
box mipmaps (no aliasing when a level is shown smaller than its resolution).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from zoom.stack import check_p

__all__ = ["zoom_frames", "write_zoom_video"]


def _mipmaps(level: Tensor) -> list[Tensor]:
    """[3,H,W] -> [level, D_2(level), D_4(level), ...] down to >= 2 px (channels first)."""
    out = [level]
    while min(out[-1].shape[-2:]) >= 4 and out[-1].shape[-1] % 2 == 0 and out[-1].shape[-2] % 2 == 0:
        out.append(F.avg_pool2d(out[-1][None], 2)[0])
    return out


def _sample(mips: list[Tensor], grid: Tensor, shrink: float) -> Tensor:
    """Bilinear sample of the mip level that matches a downscale of ``shrink`` -> [3,h,w]."""
    m = 0 if shrink <= 1.0 else min(len(mips) - 1, int(math.floor(math.log2(shrink))))
    src = mips[m][None]
    return F.grid_sample(src, grid[None], mode="bilinear", padding_mode="border", align_corners=False)[0]


def zoom_frames(levels: Tensor, *, p: int = 2, frames_per_level: int = 48, size: tuple[int, int] | None = None,
                feather: float = 0.15) -> Iterator[Tensor]:
    """Frames [h,w,3] (float32 in [0,1]) of a zoom through ``levels`` [N,H,W,3] (a rendered stack).

    ``frames_per_level`` frames per level step, ``(N-1) * frames_per_level + 1`` in all (one
    frame for N = 1). ``size``: (height, width) of the frames (default: the level size).
    """
    p = check_p(p)
    if not isinstance(levels, Tensor) or levels.ndim != 4 or levels.shape[-1] != 3:
        got = tuple(levels.shape) if isinstance(levels, Tensor) else type(levels).__name__
        raise ValueError(f"levels must be a tensor [N,H,W,3], got {got}")
    if frames_per_level < 1:
        raise ValueError(f"frames_per_level must be >= 1, got {frames_per_level}")
    n, H, W, _ = levels.shape
    h, w = size if size is not None else (H, W)
    stack = levels.detach().float().permute(0, 3, 1, 2)
    mips = [_mipmaps(stack[j]) for j in range(n)]
    ys = (torch.arange(h, dtype=torch.float32, device=stack.device) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, dtype=torch.float32, device=stack.device) + 0.5) / w * 2 - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    base_grid = torch.stack([gx, gy], dim=-1)  # [h,w,2], (x, y) as grid_sample wants
    total = (n - 1) * frames_per_level + 1
    for f in range(total):
        s = f / frames_per_level
        i = min(int(math.floor(s)), n - 1)
        scale = p ** (i - s)  # level i coordinates = frame coordinates * scale (<= 1)
        frame = _sample(mips[i], base_grid * scale, (H / h) * scale)
        for j in range(i + 1, n):
            scale_j = p ** (j - s)  # > 1: level j covers the centre 1/scale_j of the frame
            if min(h, w) / scale_j < 2.0:
                break
            grid_j = base_grid * scale_j
            tile = _sample(mips[j], grid_j, (H / h) * scale_j)
            edge = grid_j.abs().amax(dim=-1)  # 0 at the centre, 1 on level j's border
            width = feather * (1.0 - 1.0 / scale_j)
            if width > 1e-6:
                alpha = ((1.0 - edge) / width).clamp(0.0, 1.0)
            else:
                alpha = (edge <= 1.0).float()
            frame = frame + alpha[None] * (tile - frame)
        yield frame.permute(1, 2, 0).clamp(0.0, 1.0)


def write_zoom_video(path: str | Path, levels: Tensor, *, p: int = 2, fps: int = 24,
                     seconds_per_level: float = 2.0, size: tuple[int, int] | None = None,
                     feather: float = 0.15) -> Path:
    """Write the zoom through ``levels`` [N,H,W,3] as an H.264 mp4 (imageio, libx264), atomically.

    Frame sides should be multiples of 16 (otherwise ffmpeg's writer resizes them). A one-level
    stack gives a still clip of ``seconds_per_level``.
    """
    import imageio.v2 as imageio

    from dreamer.io import VIDEO_WRITER_ARGS, atomic_path, even_sides, to_uint8

    if fps < 1 or seconds_per_level <= 0:
        raise ValueError(f"fps must be >= 1 and seconds_per_level > 0, got {fps}, {seconds_per_level}")
    per_level = max(1, int(round(fps * seconds_per_level)))
    frames = zoom_frames(levels, p=p, frames_per_level=per_level, size=size, feather=feather)
    path = Path(path)
    with atomic_path(path) as tmp:
        writer = imageio.get_writer(str(tmp), **VIDEO_WRITER_ARGS, fps=fps)
        try:
            count = 0
            for frame in frames:
                writer.append_data(even_sides(to_uint8(frame)))
                count += 1
            if levels.shape[0] == 1:
                last = even_sides(to_uint8(levels[0]))
                for _ in range(per_level - 1):
                    writer.append_data(last)
        finally:
            writer.close()
    return path
