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

A second, stronger filter (:func:`smooth_depth`) is for a view's final depth, as the joint
refinement rebuilds the cloud from it: each pixel becomes the value at its centre of a plane
fitted by weighted least squares to the log depths of its neighbours, so a slanted surface is not
pulled toward its neighbours' mean and the filter can reach further (three pixels) than the mean
above. The alignment itself keeps the light filter: the joint refinement weighs the views' overlaps by their noise, and
with much less noise it lets the overlaps' small systematic errors tilt the views of a full turn.

Pure tensor code: depth maps [H,W], float, > 0 where used.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from alignment.kernels import lower_median
from dreamer.checks import check_map, check_mask

__all__ = ["pixel_noise", "denoise_depth", "smooth_depth"]

# Below this noise level (log units, 0.1%) a map is taken as noise-free and returned unchanged.
_NOISE_FLOOR = 1e-3
# smooth_depth takes a measured noise level above this (log units, 3%: a depth model's pixel
# noise is a percent or two) as this: more is structure of the map, whose edges must stay.
_NOISE_CAP = 0.03


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
    return lower_median(d2.abs()) / (0.6745 * math.sqrt(6.0))


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


def smooth_depth(depth: Tensor, where: Tensor, *, radius: int = 3, strength: float = 2.0) -> Tensor:
    """``depth`` [H,W] (> 0 on ``where`` and around it) with its pixel noise on ``where`` [H,W] bool
    filtered by local planes (module docstring); other pixels are returned as they are and only
    serve as neighbours. Each pixel's plane is fitted to its neighbours within ``radius`` (spatial
    Gaussian weights, sigma ``radius / 2``), a neighbour counting less the further it lies from
    the plane a light first pass predicts (Gaussian, sigma ``strength`` times the noise measured
    on the whole map, at most 3%): depth edges are kept. Unchanged when that noise is below 0.1% or ``radius`` is 0.
    Same dtype and device."""
    check_map(depth, "depth")
    check_mask(where, "where", shape=tuple(depth.shape))
    if int(radius) != radius or radius < 0:
        raise ValueError(f"radius must be an integer >= 0, got {radius}")
    if not (strength > 0 and math.isfinite(strength)):
        raise ValueError(f"strength must be a finite number > 0, got {strength}")
    H, W = depth.shape
    if radius == 0 or min(H, W) < 3 or not bool(where.any()):
        return depth
    # The box around the pixels to filter, with the margin their windows and the first pass read.
    ys, xs = torch.nonzero(where, as_tuple=True)
    m = int(radius) + 3
    y0, y1 = max(0, int(ys.min()) - m), min(H, int(ys.max()) + m + 1)
    x0, x1 = max(0, int(xs.min()) - m), min(W, int(xs.max()) + m + 1)
    # The noise level of the whole map: a small region to filter may be mostly edges, whose second
    # differences are no noise. A level above _NOISE_CAP is structure (not what the filter is for).
    L = torch.log(depth.double().clamp_min(1e-12))
    sigma = pixel_noise(L)
    if sigma < _NOISE_FLOOR:
        return depth
    sigma = min(sigma, _NOISE_CAP)
    inside = where[y0:y1, x0:x1]
    fitted = _plane_values(L[y0:y1, x0:x1], inside, int(radius), strength * sigma)
    out = depth.clone()
    out[y0:y1, x0:x1][inside] = torch.exp(fitted).to(depth.dtype)
    return out


def _minmod(a: Tensor, b: Tensor) -> Tensor:
    """The smaller of two one-sided slopes where they agree in sign, else 0: next to a depth edge
    a pixel takes the slope of its own side, not the jump."""
    return torch.where(a * b > 0, torch.where(a.abs() < b.abs(), a, b), torch.zeros_like(a))


# Pixels per block of the plane fits (their [neighbours, pixels] temporaries then stay small).
_PLANE_BLOCK = 1 << 15
# Weight of the prior that keeps a plane's slope near the first pass's (one neighbour's worth at one
# pixel's distance): a pixel whose window the range weights empty (an edge, a lone pixel) keeps a
# well-posed fit.
_SLOPE_PRIOR = 1.0


def _plane_values(L: Tensor, where: Tensor, radius: int, tonal_sigma: float) -> Tensor:
    """The local-plane filter of :func:`smooth_depth` on a log-depth map ``L`` [h,w] (float64), at
    the pixels ``where`` (in the order of ``torch.nonzero``): float64 [n]."""
    h, w = L.shape
    r = radius
    # First pass: the light filter, and its slope at every pixel: over two pixels (less noisy than
    # one), one-sided (next to an edge, the slope of the pixel's own side).
    L1 = _filtered(L.float(), 2, tonal_sigma)
    p1 = F.pad(L1[None, None], (2, 2, 2, 2), mode="replicate")[0, 0]
    c = p1[2:-2, 2:-2]
    gx = _minmod(p1[2:-2, 4:] - c, c - p1[2:-2, :-4]) / 2
    gy = _minmod(p1[4:, 2:-2] - c, c - p1[:-4, 2:-2]) / 2
    k = 2 * r + 1
    d = torch.arange(-r, r + 1, dtype=torch.float32, device=L.device)
    dy, dx = d.repeat_interleave(k), d.repeat(k)  # [K] offsets, in unfold's order
    spatial = (-(dx * dx + dy * dy) / (2.0 * (r / 2.0) ** 2))[:, None]
    moments = torch.stack([torch.ones_like(dx), dx, dy, dx * dx, dx * dy, dy * dy])  # [6,K]
    minus_d = -torch.stack([dx, dy], 1)  # [K,2]
    tonal = -1.0 / (2.0 * tonal_sigma ** 2)
    pad = F.pad(L[None, None].float(), (r, r, r, r), mode="replicate")
    out = torch.empty(h, w, dtype=torch.float64, device=L.device)
    rows = max(1, _PLANE_BLOCK // w)
    for y in range(0, h, rows):
        ye = min(h, y + rows)
        base = L1[y:ye].reshape(1, -1)
        v = F.unfold(pad[:, :, y:ye + 2 * r], k)[0] - base  # [K,n]: the neighbours around the first pass
        slopes = torch.stack([gx[y:ye].reshape(-1), gy[y:ye].reshape(-1)])  # [2,n]
        wgt = torch.addmm(v, minus_d, slopes)  # off the first pass's plane
        wgt.square_().mul_(tonal).add_(spatial).exp_()
        S = (moments @ wgt).double()  # [6,n]: sums of w, w dx, w dy, w dx^2, w dx dy, w dy^2
        T = (moments[:3] @ wgt.mul_(v)).double()  # [3,n]: sums of w v, w dx v, w dy v
        # The 3x3 normal equations (slope prior toward the first pass), solved for the intercept
        # by Cramer's rule.
        sx, sy = slopes.double()
        a00, a01, a02 = S[0], S[1], S[2]
        a11, a12, a22 = S[3] + _SLOPE_PRIOR, S[4], S[5] + _SLOPE_PRIOR
        b0, b1, b2 = T[0], T[1] + _SLOPE_PRIOR * sx, T[2] + _SLOPE_PRIOR * sy
        c00 = a11 * a22 - a12 * a12
        c01 = a02 * a12 - a01 * a22
        c02 = a01 * a12 - a02 * a11
        a = (b0 * c00 + b1 * c01 + b2 * c02) / (a00 * c00 + a01 * c01 + a02 * c02)
        out[y:ye] = (base[0].double() + a).view(ye - y, w)
    return out[where]
