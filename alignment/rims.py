"""Rims: pixels beside an occlusion edge that a depth model gives the wrong side's depth.

Learned depth models (like stereo matchers) draw a foreground object a pixel or more too wide
("foreground fattening"): along its silhouette, background pixels get the object's depth. Lifted,
those pixels make a rim of background colour floating at the object's depth around every
silhouette; no correction of the view's depth removes it (each rim pixel is off by the edge's
whole step), and a later view's seam meets the rim instead of the wall behind it.

The picture says where the edge is. :func:`peel_rims`: at each depth jump (the discontinuity test
of alignment/edges.py, which flags the far pixel of a jump and not the slope of a grazing plane),
the near-side pixel next to the jump takes the far side's depth when its colour is nearer the far
side's than the near side's (mean colours of the two sides in the window around it, split at the
middle of the jump, the far side's distance at most ``ratio`` times the near side's). Repeated
``passes`` times, so a rim of that many pixels is peeled from the outside in. Each side must fill
a fifth of the window: an isolated outlier pixel is no edge, and its colour says nothing.

Colour is evidence, not proof: a textured surface can look like its neighbour. Counted against the
truth on the 45 views of bench/bench_dream.py's three trajectories at 64 px: on estimates that do not
fatten (a scale error, a compressed range), about 3 pixels a view are peeled wrongly at ``ratio``
0.5, a quarter fewer than at 0.7, which finds 6% more of the rims of a 1-pixel fattening and 14% more
of a 2-pixel one. The loop's known pixels cannot referee:
where the cloud's render shows an edge, its splats widen the nearer surface by a fraction of a
pixel, and on a translating orbit it shows the wall through an object no earlier view saw, so the
render "confirmed" rims on estimates that had none.

Pure tensor code: depth maps [H,W] > 0, images [H,W,3] in [0, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from alignment.edges import stretched_pixels
from dreamer.checks import check_map

__all__ = ["peel_rims"]

# Fraction of the window each side of a jump must fill for a pixel to be judged by its colour.
_MIN_SIDE = 0.2
_NEIGHBOURS_4 = ((0, 1), (0, -1), (1, 0), (-1, 0))


def _shifted(x: Tensor, dy: int, dx: int, fill: float) -> Tensor:
    """out[y, x] = x[y + dy, x + dx], ``fill`` outside the image."""
    H, W = x.shape
    padded = F.pad(x[None, None], (1, 1, 1, 1), value=fill)[0, 0]
    return padded[1 + dy:1 + dy + H, 1 + dx:1 + dx + W]


def _far_neighbour(log_depth: Tensor, far: Tensor, jump: float) -> Tensor:
    """Per pixel, the largest log depth among its 4-neighbours that are flagged far pixels of a jump
    more than ``jump`` (log units) behind it; -inf where none is."""
    best = torch.full_like(log_depth, -math.inf)
    for dy, dx in _NEIGHBOURS_4:
        z_n = _shifted(log_depth, dy, dx, -math.inf)
        f_n = _shifted(far.to(log_depth.dtype), dy, dx, 0.0) > 0
        behind = f_n & (z_n - log_depth > jump)
        best = torch.where(behind & (z_n > best), z_n, best)
    return best


def _window(x: Tensor, ys: Tensor, xs: Tensor, radius: int) -> Tensor:
    """Values of ``x`` [C,H,W] in the (2r+1)^2 window around each (ys, xs), edges replicated: [C,N,K]."""
    k = 2 * radius + 1
    padded = F.pad(x[None], (radius,) * 4, mode="replicate")[0]
    dy, dx = torch.meshgrid(torch.arange(k, device=x.device), torch.arange(k, device=x.device), indexing="ij")
    return padded[:, ys[:, None] + dy.reshape(1, -1), xs[:, None] + dx.reshape(1, -1)]


def _distance_to_mean(own: Tensor, window: Tensor, side: Tensor) -> Tensor:
    """[N]: distance of each colour ``own`` [3,N] to the mean of its window [3,N,K] over ``side`` [N,K]."""
    mean = (window * side).sum(-1) / side.sum(-1).clamp_min(1)
    return (own - mean).norm(dim=0)


def peel_rims(depth: Tensor, image: Tensor, *, threshold: float = 0.08, passes: int = 2, radius: int = 2,
              ratio: float = 0.5) -> tuple[Tensor, Tensor]:
    """(depth with its rims peeled [H,W], bool [H,W] the pixels peeled). See the module docstring.

    ``threshold``: a jump is a relative depth step above this (as alignment/edges.py);
    ``passes``: the widest rim peeled, in pixels; ``radius``: half-size of the colour window;
    ``ratio``: how much nearer the far side's colour must be."""
    check_map(depth, "depth")
    H, W = depth.shape
    if image.ndim != 3 or image.shape[:2] != (H, W) or image.shape[2] != 3:
        raise ValueError(f"image must be [H,W,3] matching the depth {H}x{W}, got {tuple(image.shape)}")
    colour = image.to(device=depth.device, dtype=torch.float32).permute(2, 0, 1)
    jump = math.log1p(threshold)
    k2 = (2 * radius + 1) ** 2
    need = max(1, round(_MIN_SIDE * k2))
    centre = torch.zeros(k2, dtype=torch.bool, device=depth.device)
    centre[k2 // 2] = True
    out, peeled = depth.clone(), torch.zeros_like(depth, dtype=torch.bool)
    for _ in range(passes):
        log_depth = out.clamp_min(1e-12).log()
        far_log = _far_neighbour(log_depth, stretched_pixels(out, threshold=threshold), jump)
        ys, xs = torch.nonzero(torch.isfinite(far_log), as_tuple=True)
        if ys.numel() == 0:
            break
        middle = 0.5 * (log_depth[ys, xs] + far_log[ys, xs])
        z = _window(log_depth[None], ys, xs, radius)[0]                      # [N,K]
        c = _window(colour, ys, xs, radius)                                   # [3,N,K]
        near_side = (z < middle[:, None]) & ~centre
        far_side = z >= middle[:, None]
        own = colour[:, ys, xs]
        take = ((_distance_to_mean(own, c, far_side) < ratio * _distance_to_mean(own, c, near_side))
                & (near_side.sum(-1) >= need) & (far_side.sum(-1) >= need))
        if not take.any():
            break
        ys, xs = ys[take], xs[take]
        out[ys, xs] = far_log[ys, xs].exp().to(out.dtype)
        peeled[ys, xs] = True
    return out, peeled

