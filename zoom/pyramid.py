"""Laplacian pyramids whose reduce is the stack's box downsample, and multi-resolution blending.

Because the pyramid reduces with the same ``D_p`` as the zoom stack, the pyramid of the centre
crop of a coarser level of a *consistent* stack is exactly the coarse part of the pyramid of the
finer level. Averaging bands over observers therefore changes nothing on a consistent stack:
:func:`blend` is a fixed point there (the paper's public re-implementations reduce with a
Gaussian blur plus stride and lose this). Tensors are channels-first, [..., C, H, W].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from zoom import stack as _stack
from zoom.stack import center_crop, check_max_depth, check_p, check_stack, max_paste_depth

__all__ = ["upsample", "laplacian_pyramid", "reconstruct_laplacian", "blend", "replace_low_bands"]


def upsample(x: Tensor, r: int) -> Tensor:
    """Bilinear upsampling by ``r`` (half-pixel centres): [..., H, W] -> [..., r*H, r*W].

    Any expand works for exact reconstruction; bilinear injects averaged coarse bands smoothly
    instead of in r x r blocks.
    """
    h, w = x.shape[-2:]
    lead = x.shape[:-2]
    y = F.interpolate(x.reshape(-1, 1, h, w), scale_factor=r, mode="bilinear", align_corners=False)
    return y.reshape(*lead, h * r, w * r)


def laplacian_pyramid(x: Tensor, levels: int, *, p: int = 2) -> list[Tensor]:
    """Bands of ``x`` [..., H, W], finest first: ``levels - 1`` detail bands of sizes
    ``H/p**m`` and the low-pass residual of size ``H/p**(levels-1)`` last."""
    if levels < 1:
        raise ValueError(f"a pyramid needs at least 1 level, got {levels}")
    bands = []
    g = x
    for _ in range(levels - 1):
        g_next = _stack.box_downsample(g, p)
        bands.append(g - upsample(g_next, p))
        g = g_next
    bands.append(g)
    return bands


def reconstruct_laplacian(bands: list[Tensor], *, p: int = 2) -> Tensor:
    """Inverse of :func:`laplacian_pyramid` (exact up to rounding)."""
    x = bands[-1]
    for band in reversed(bands[:-1]):
        x = band + upsample(x, p)
    return x


def blend(predictions: Tensor, *, p: int = 2, max_depth: int | None = None,
          min_size: int = 2) -> Tensor:
    """Multi-resolution blend of per-level predictions [N,C,H,W] -> [N,C,H,W].

    For level ``i``, with ``K = min(i, max_depth, K_max)``, observer ``k = 0..K`` is the centre
    crop ``C_{p**k}`` of level ``i - k`` (exactly level i's field of view at ``H/p**k``). Band
    ``b`` (size ``H/p**b``) of the output is the mean of band ``b`` over the observers that
    have it (``k <= b``): the finest band comes from level ``i`` alone, the low-pass residual
    from all ``K + 1``. ``K_max`` is the deepest level whose crop is a whole centred block of at
    least ``min_size`` pixels. Finer levels do not enter here; rendering pastes them.

    A consistent stack (``C_p(L_{i-1}) == D_p(L_i)``) comes back unchanged; ``N = 1`` is the
    identity. Computed in the dtype of ``predictions`` (use fp32 or better).
    """
    check_stack(predictions, "predictions")
    p = check_p(p)
    depth = check_max_depth(max_depth)
    n, _, h, w = predictions.shape
    k_max = max_paste_depth(h, w, p, min_size=min_size)
    if depth is not None:
        k_max = min(k_max, depth)
    out = [predictions[0]]
    for i in range(1, n):
        k_top = min(i, k_max)
        if k_top == 0:
            out.append(predictions[i])
            continue
        sums: list[Tensor | None] = [None] * (k_top + 1)
        for k in range(k_top + 1):
            crop = center_crop(predictions[i - k], p ** k) if k else predictions[i]
            for m, band in enumerate(laplacian_pyramid(crop, k_top - k + 1, p=p)):
                b = k + m
                sums[b] = band if sums[b] is None else sums[b] + band
        # band b was seen by observers 0..b
        out.append(reconstruct_laplacian([s / (b + 1) for b, s in enumerate(sums)], p=p))
    return torch.stack(out)


def replace_low_bands(x: Tensor, target: Tensor, keep_bands: int, *, p: int = 2) -> Tensor:
    """``x`` [..., H, W] with every band coarser than its ``keep_bands`` finest ones taken from
    ``target`` (same shape): ``x - low(x) + low(target)``, ``low = U**k D**k`` recursively.

    ``keep_bands = 0`` returns ``target``.
    """
    if x.shape != target.shape:
        raise ValueError(f"x and target must have the same shape, got {tuple(x.shape)} and "
                         f"{tuple(target.shape)}")
    if keep_bands < 0:
        raise ValueError(f"keep_bands must be >= 0, got {keep_bands}")
    if keep_bands == 0:
        return target.clone()
    px = laplacian_pyramid(x, keep_bands + 1, p=p)
    pt = laplacian_pyramid(target, keep_bands + 1, p=p)
    return reconstruct_laplacian(px[:-1] + pt[-1:], p=p)
