"""Edge-preserving removal of a depth estimate's pixel noise, at the level the estimate shows.

A depth model's map is smooth except at depth edges, plus, for some models and pictures, pixel
noise: independent errors of a percent or two from one pixel to the next. That noise is no
distortion a correction can remove (it has no structure to fit), yet it lands in the lifted
points and in the step across every seam. So the loop filters the estimate first, in log depth:
each pixel becomes a weighted mean of its neighbours within ``radius``, a neighbour's weight
falling with its distance (Gaussian, sigma ``radius / 2``) and with its log-depth difference
(Gaussian, sigma ``strength`` times the noise level). The noise level is measured on the map
itself, from second differences along rows (a slope cancels; their median ignores edges), so a
map without pixel noise (a smooth network output) is left as it is, and depth edges, whose steps
are many noise levels high, are never blurred.

Pure tensor code: depth maps [H,W], float, > 0 where used.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamer.checks import check_map

__all__ = ["pixel_noise", "denoise_depth"]

# Below this noise level (log units, 0.1%) a map is taken as noise-free and returned unchanged.
_NOISE_FLOOR = 1e-3


def pixel_noise(log_depth: Tensor, valid: Tensor | None = None) -> float:
    """Robust standard deviation of a log-depth map's pixel noise [H,W]: second differences
    along rows have 6 times the noise variance (a slope cancels, the median ignores edges and
    curvature). ``valid``: bool [H,W] pixels to read (None: all). 0.0 when nothing is read."""
    d2 = log_depth[:, 2:] - 2 * log_depth[:, 1:-1] + log_depth[:, :-2]
    if valid is not None:
        ok = valid[:, 2:] & valid[:, 1:-1] & valid[:, :-2]
        d2 = d2[ok]
    if d2.numel() == 0:
        return 0.0
    return float(d2.abs().median()) / (0.6745 * math.sqrt(6.0))


def denoise_depth(depth: Tensor, *, radius: int = 2, strength: float = 2.5) -> Tensor:
    """``depth`` [H,W] (> 0) with its pixel noise filtered out, depth edges kept (the module
    docstring gives the filter). Same dtype and device; unchanged when the measured noise is
    below 0.1% or ``radius`` is 0."""
    check_map(depth, "depth")
    if int(radius) != radius or radius < 0:
        raise ValueError(f"radius must be an integer >= 0, got {radius}")
    if not (strength > 0 and math.isfinite(strength)):
        raise ValueError(f"strength must be a finite number > 0, got {strength}")
    if radius == 0 or min(depth.shape) < 3:
        return depth
    L = torch.log(depth.double().clamp_min(1e-12))
    sigma = pixel_noise(L)
    if sigma < _NOISE_FLOOR:
        return depth
    return torch.exp(_filtered(L, radius, strength * sigma)).to(depth.dtype)


def _filtered(L: Tensor, radius: int, tonal_sigma: float) -> Tensor:
    """The filter of the module docstring on a log-depth map ``L`` [H,W] (float64).

    A neighbour pair's weight is symmetric: the weight of q in p's mean equals that of p in q's
    ((a - b)^2 and (b - a)^2 are the same float). So the weights are computed once per pair of
    opposite offsets, on the replicate-padded map, and read at both ends; the sums run in the
    order of :func:`_filtered_reference`, which this matches bit for bit.
    """
    H, W = L.shape
    r = radius
    pad = F.pad(L[None, None], (r, r, r, r), mode="replicate")[0, 0]
    spatial = 2.0 * (r / 2.0) ** 2
    tonal = 2.0 * tonal_sigma ** 2
    pair: dict = {}  # (dy, dx) with (dy, dx) > (0, 0): weights on the padded grid, and where they start
    for dy in range(0, r + 1):
        for dx in range(-r, r + 1):
            if (dy, dx) <= (0, 0):
                continue
            # Pixels p + r and p + r - d of the padded grid, for p in the image: rows y0..y1.
            y0, y1 = r - dy, r + H
            x0, x1 = r + min(0, -dx), r + W + max(0, -dx)
            a = pad[y0:y1, x0:x1]
            b = pad[y0 + dy:y1 + dy, x0 + dx:x1 + dx]
            pair[dy, dx] = (torch.exp(-(dy * dy + dx * dx) / spatial - (b - a) ** 2 / tonal), y0, x0)
    total = torch.zeros_like(L)
    weight = torch.zeros_like(L)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            shifted = pad[r + dy:r + dy + H, r + dx:r + dx + W]
            if (dy, dx) == (0, 0):
                w = torch.exp(-(dy * dy + dx * dx) / spatial - (shifted - L) ** 2 / tonal)
            elif (dy, dx) > (0, 0):
                grid, y0, x0 = pair[dy, dx]
                w = grid[r - y0:r - y0 + H, r - x0:r - x0 + W]
            else:
                grid, y0, x0 = pair[-dy, -dx]
                w = grid[r + dy - y0:r + dy - y0 + H, r + dx - x0:r + dx - x0 + W]
            total += w * shifted
            weight += w
    return total / weight


def _filtered_reference(L: Tensor, radius: int, tonal_sigma: float) -> Tensor:
    """:func:`_filtered` written plainly: every offset's weights computed on their own."""
    H, W = L.shape
    pad = F.pad(L[None, None], (radius, radius, radius, radius), mode="replicate")[0, 0]
    total = torch.zeros_like(L)
    weight = torch.zeros_like(L)
    spatial = 2.0 * (radius / 2.0) ** 2
    tonal = 2.0 * tonal_sigma ** 2
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            shifted = pad[radius + dy:radius + dy + H, radius + dx:radius + dx + W]
            w = torch.exp(-(dy * dy + dx * dx) / spatial - (shifted - L) ** 2 / tonal)
            total += w * shifted
            weight += w
    return total / weight
