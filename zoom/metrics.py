"""Quality figures of a zoom stack that need no human and no weights (stacks [N,C,H,W]).

* agreement error: :func:`zoom.stack.consistency_error` on the per-level predictions before the
  final render (how much the paste had to overwrite);
* :func:`seam_ratio`: gradient magnitude on a 2-px ring around each paste boundary over the same
  on nearby rings (about 1: no visible frame; much larger: a seam);
* :func:`finest_band_energy`: mean square of each level's finest Laplacian band (sharpness; the
  ratio joint / independent guards against blending blur).
"""

from __future__ import annotations

import torch
from torch import Tensor

from zoom.pyramid import upsample
from zoom.stack import box_downsample, check_p, check_stack

__all__ = ["gradient_magnitude", "square_ring", "seam_ratio", "finest_band_energy"]


def gradient_magnitude(x: Tensor) -> Tensor:
    """``|dx| + |dy|`` by forward differences, averaged over channels: [...,C,H,W] -> [...,H,W]
    (the last row / column repeat their neighbours' difference as 0)."""
    dx = torch.zeros_like(x)
    dy = torch.zeros_like(x)
    dx[..., :, :-1] = (x[..., :, 1:] - x[..., :, :-1]).abs()
    dy[..., :-1, :] = (x[..., 1:, :] - x[..., :-1, :]).abs()
    return (dx + dy).mean(dim=-3)


def square_ring(height: int, width: int, inner: float, outer: float, device=None) -> Tensor:
    """Bool [H,W]: pixels whose centre lies at chessboard distance in ``[inner, outer)`` from
    the image centre, measured in pixels (a centred tile of side ``t`` spans distance < t/2)."""
    ys = torch.arange(height, device=device, dtype=torch.float32) + 0.5 - height / 2
    xs = torch.arange(width, device=device, dtype=torch.float32) + 0.5 - width / 2
    d = torch.maximum(ys.abs()[:, None] * (width / height), xs.abs()[None, :])
    # distance in units of the horizontal side so that a centred tile of H/r x W/r is a square
    return (d >= inner) & (d < outer)


def seam_ratio(levels: Tensor, *, p: int = 2, ring: int = 1, gap: int = 2) -> Tensor:
    """Per level with a pasted centre (i < N-1): mean gradient on the ring of ``2*ring`` px that
    straddles the boundary of the centre ``1/p`` tile, over the mean gradient on two rings of the
    same width ``gap`` px inside and outside it -> [N-1].

    Forward differences across the boundary land on the pixels just inside or outside it, so
    the straddling ring holds every difference between pasted and surrounding pixels.
    """
    check_stack(levels, "levels")
    p = check_p(p)
    n, _, h, w = levels.shape
    half = w / (2 * p)  # half side of the pasted tile, in horizontal pixels
    if half - gap - 2 * ring < 0 or half + gap + 2 * ring > w / 2:
        raise ValueError(f"images of {h}x{w} are too small for seam rings around a 1/{p} tile")
    seam = square_ring(h, w, half - ring, half + ring, levels.device)
    near = (square_ring(h, w, half - ring - gap - ring, half - ring - gap + ring, levels.device)
            | square_ring(h, w, half + ring + gap - ring, half + ring + gap + ring, levels.device))
    out = []
    for i in range(n - 1):
        g = gradient_magnitude(levels[i].float())
        out.append(g[seam].mean() / g[near].mean().clamp_min(1e-12))
    return torch.stack(out) if out else levels.new_zeros(0)


def finest_band_energy(levels: Tensor, *, p: int = 2) -> Tensor:
    """Mean square of each level's finest Laplacian band ``x - U_p(D_p(x))`` -> [N]."""
    check_stack(levels, "levels")
    p = check_p(p)
    x = levels.float()
    band = x - upsample(box_downsample(x, p), p)
    return band.pow(2).flatten(1).mean(dim=1)
