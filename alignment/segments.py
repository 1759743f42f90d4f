"""Per-surface consensus between views: remove the part of a depth error that goes object by object.

Monocular depth models err surface by surface: a chair is 8% too far, the wall behind it 3% too
close, and another picture of the same room gets other offsets. No smooth field over the image
describes that (:mod:`alignment.joint` fits smooth fields), but every surface that several
views see is measured several times, with independent errors. So, after the joint fit:

1. each view's (corrected) depth map is cut into *segments*: connected regions without a depth
   edge (a jump of more than ``edge_step`` in log depth between 4-neighbours), at least
   ``min_pixels`` large;
2. every segment's pixels (on a grid) are lifted and projected into every other view; where
   the other view sees the same surface (its log-depth there within ``tolerance`` of the
   point's, off its depth edges) the median log-difference of the segment's samples is one
   view's opinion of how far the segment is off;
3. each segment moves to the average of its own estimate and where the other views put it (its
   own view counts once, like each other view); a few Jacobi rounds over all views at once,
   since the other views' segments move too. Views in ``fixed`` (the gauge) do not move.

A segment no other view sees keeps its depth: nothing says it is wrong.

Pure tensor code; cameras as intrinsics ``K`` [N,3,3] and ``c2w`` [N,4,4] (OpenCV axes).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.ndimage as ndi
import torch
from torch import Tensor

from alignment.joint import _Views

__all__ = ["segment_labels", "segment_offsets"]

# A pair's samples of one segment: fewer than this say nothing about the segment.
_MIN_SAMPLES = 8


def segment_labels(log_depth: Tensor, valid: Tensor, *, edge_step: float = 0.05, min_pixels: int = 64) -> Tensor:
    """[H,W] int64 segment index per pixel (0: no segment) of a log-depth map [H,W]: connected
    (4-neighbour) valid pixels with no jump above ``edge_step`` to a neighbour; segments smaller
    than ``min_pixels`` and the pixels on an edge get 0."""
    L = log_depth.detach().double().cpu().numpy()
    ok = valid.detach().cpu().numpy().copy()
    jump_x = np.abs(np.diff(L, axis=1)) > edge_step
    jump_y = np.abs(np.diff(L, axis=0)) > edge_step
    edge = np.zeros_like(ok)
    edge[:, 1:] |= jump_x
    edge[:, :-1] |= jump_x
    edge[1:, :] |= jump_y
    edge[:-1, :] |= jump_y
    labels, n = ndi.label(ok & ~edge)
    if n:
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        small = sizes < min_pixels
        small[0] = True
        labels[small[labels]] = 0
    return torch.from_numpy(labels.astype(np.int64))


def segment_offsets(log_depths: Sequence[Tensor], valid: Sequence[Tensor], K: Tensor, c2w: Tensor,
                    fixed: Sequence[bool], *, rounds: int = 3, tolerance: float = 0.2,
                    samples_per_view: int = 4096, edge_step: float = 0.05,
                    min_fraction: float = 0.02) -> list[Tensor]:
    """Per view, the [H_k,W_k] float64 log-depth offset that moves each of its segments to the
    views' consensus (the module docstring gives the method); 0 off segments, on views in
    ``fixed`` and on segments no other view sees.

    ``log_depths``: per view [H_k,W_k] log z-depth (read where ``valid``, bool [H_k,W_k]).
    ``tolerance``: a point farther than this (log units) from the other view's surface is not
    the same surface there (hidden, or a free-space conflict). ``min_fraction``: segments
    smaller than this fraction of the image are left alone (too few samples).
    """
    n = len(log_depths)
    if not (len(valid) == n == len(fixed) and tuple(K.shape) == (n, 3, 3) and tuple(c2w.shape) == (n, 4, 4)):
        raise ValueError(f"segment_offsets needs one valid mask, fixed flag, K and c2w per log-depth map ({n}), "
                         f"got {len(valid)}, {len(fixed)}, {tuple(K.shape)}, {tuple(c2w.shape)}")
    if not (rounds >= 1 and tolerance > 0):
        raise ValueError(f"rounds must be >= 1 and tolerance > 0, got {rounds} and {tolerance}")
    base = [x.detach().double().cpu() for x in log_depths]
    labels = [segment_labels(x, m, edge_step=edge_step,
                             min_pixels=max(16, int(min_fraction * x.numel()))) for x, m in zip(base, valid)]
    offsets = [torch.zeros_like(x) for x in base]
    free = torch.tensor([not f for f in fixed])
    for _ in range(rounds):
        views = _Views([b + o for b, o in zip(base, offsets)], valid, K, c2w, samples_per_view)
        # Every pair (k, j) that may overlap, with k free, in one batch: view k's samples in view j.
        kp, jp = views.pairs(views.logz)
        keep = free[kp]
        kp, jp = kp[keep], jp[keep]
        zj, u, v, _, _, inside = views.project_pairs(views.logz, kp, jp)
        smooth, Lj, _, _ = views.sample_pairs(views.maps(), jp, u, v)
        r = torch.log(zj.clamp_min(1e-12)) - Lj
        same = inside & smooth & (r.abs() < tolerance)
        seg = torch.stack([labels[k][views.rows[k], views.cols[k]] for k in range(n)]) * views.has  # [N,n]
        opinions: dict[tuple[int, int], list[float]] = {}
        for k, s, median in _pair_medians(kp, seg[kp], r, same):
            opinions.setdefault((k, s), []).append(median)
        moves = [torch.zeros_like(x) for x in base]
        for (k, s), ops in opinions.items():
            # The segment's own estimate (offset 0) and where each other view puts it now (its
            # current offset less that view's residual), averaged.
            here = labels[k] == s
            current = float(offsets[k][here][0])
            moves[k][here] = (len(ops) * current - sum(ops)) / (len(ops) + 1) - current
        offsets = [o + m for o, m in zip(offsets, moves)]
    return offsets


def _pair_medians(kp: Tensor, seg: Tensor, r: Tensor, same: Tensor) -> list[tuple[int, int, float]]:
    """For each pair p (view kp[p]'s samples, their segments ``seg`` [p,n], residuals ``r``
    [p,n], usable where ``same``) and each segment s > 0 with at least :data:`_MIN_SAMPLES`
    usable samples: (view, s, the lower median of those residuals, as ``Tensor.median``), pair by
    pair and segment by segment in increasing order. All pairs and segments in one sort."""
    use = same & (seg > 0)
    p_idx, i_idx = torch.nonzero(use, as_tuple=True)
    if p_idx.numel() == 0:
        return []
    key = p_idx * (int(seg.max()) + 1) + seg[p_idx, i_idx]
    vals = r[p_idx, i_idx]
    order = torch.argsort(vals, stable=True)
    order = order[torch.argsort(key[order], stable=True)]  # by key, then by residual
    key, vals = key[order], vals[order]
    groups, counts = torch.unique_consecutive(key, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    enough = counts >= _MIN_SAMPLES
    groups, medians = groups[enough], vals[(starts + (counts - 1) // 2)[enough]]
    segs = int(seg.max()) + 1
    pairs = (groups // segs).tolist()
    return [(int(kp[p]), s, m) for p, s, m in zip(pairs, (groups % segs).tolist(), medians.tolist())]
