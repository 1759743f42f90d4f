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
   point's, off its depth edges), the median log-difference of the samples that land on one
   segment of the other view is one *link*: how much higher segment g of view k sits than
   segment h of view j;
3. every segment's error is modelled as its view's level plus an error of its own,
   ``a(k, g) = level(k) + e(k, g)``, and all links are fitted at once by least squares, with a
   small prior on the errors of their own (they are independent, zero-mean surface by surface).
   The prior decides what the links cannot: how much of a view's disagreement is its level
   (shared by all its segments) and how much its segments' own. Each segment then moves by
   ``-(level + e)``: every segment of a surface several views see ends at one depth, and a
   surface only one view sees moves with its view's level. Views in ``fixed`` (the gauge)
   have level and errors 0: they do not move, and the surfaces they see end where they are.

This is the two-way model (view level + per-surface error) that a chain of views needs: fitted
link by link or pixel by pixel, a view's level is decided by its one or two largest surfaces, and
their errors add up along a chain of views (a full turn drifted by -5 to -9%); here every
surface each view shares with the others counts once, and all views are solved together.

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

# A link's samples (one segment of a view on one segment of another): fewer say nothing.
_MIN_SAMPLES = 8
# Priors against one link of weight 1: a segment's own error is small next to what a link
# measures (8+ samples' median), a view's level only a tie-breaker for views without links.
_OWN_PRIOR = 0.1
_LEVEL_PRIOR = 1e-3


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
                    fixed: Sequence[bool], *, tolerance: float = 0.2, samples_per_view: int = 4096,
                    edge_step: float = 0.05, min_fraction: float = 0.02, own_prior: float = _OWN_PRIOR,
                    level_prior: float = _LEVEL_PRIOR) -> list[Tensor]:
    """Per view, the [H_k,W_k] float64 log-depth offset that moves each of its segments to the
    views' consensus and the rest of the view with its level (the module docstring gives the
    method); 0 on views in ``fixed``.

    ``log_depths``: per view [H_k,W_k] log z-depth (read where ``valid``, bool [H_k,W_k]).
    ``tolerance``: a point farther than this (log units) from the other view's surface is not
    the same surface there (hidden, or a free-space conflict). ``min_fraction``: segments
    smaller than this fraction of the image are left to their view's level (too few samples).
    ``own_prior`` and ``level_prior``: weights of the priors (per unknown, against one link of
    weight 1) that keep a segment's own error and a view's level at 0 unless links say otherwise.
    """
    n = len(log_depths)
    if not (len(valid) == n == len(fixed) and tuple(K.shape) == (n, 3, 3) and tuple(c2w.shape) == (n, 4, 4)):
        raise ValueError(f"segment_offsets needs one valid mask, fixed flag, K and c2w per log-depth map ({n}), "
                         f"got {len(valid)}, {len(fixed)}, {tuple(K.shape)}, {tuple(c2w.shape)}")
    if not (tolerance > 0 and own_prior > 0 and level_prior > 0):
        raise ValueError(f"tolerance and the priors must be > 0, got {tolerance}, {own_prior}, {level_prior}")
    base = [x.detach().double().cpu() for x in log_depths]
    labels = [segment_labels(x, m, edge_step=edge_step,
                             min_pixels=max(16, int(min_fraction * x.numel()))) for x, m in zip(base, valid)]
    views = _Views(base, valid, K, c2w, samples_per_view)
    kp, jp = views.pairs(views.logz)
    zj, u, v, _, _, inside = views.project_pairs(views.logz, kp, jp)
    smooth, Lj, _, _ = views.sample_pairs(jp, u, v)
    r = torch.log(zj.clamp_min(1e-12)) - Lj
    same = inside & smooth & (r.abs() < tolerance)
    seg = torch.stack([labels[k][views.rows[k], views.cols[k]] for k in range(n)]) * views.has  # [N,n]
    # The segment of view j each sample lands on (nearest pixel; 0 where it is not the same surface).
    H, W = views.Hm, views.Wm
    padded = torch.zeros(n, H, W, dtype=torch.long)
    for j in range(n):
        padded[j, : labels[j].shape[0], : labels[j].shape[1]] = labels[j]
    row = v.floor().long().clamp(0, H - 1)
    col = u.floor().long().clamp(0, W - 1)
    seg_j = padded[jp[:, None], row, col] * same

    # Unknowns: a level per free view, then an own error per segment of a free view.
    free = [k for k in range(n) if not fixed[k]]
    level_of = {k: i for i, k in enumerate(free)}
    own_of: dict[tuple[int, int], int] = {}
    for k in free:
        for g in torch.unique(labels[k]).tolist():
            if g > 0:
                own_of[(k, g)] = len(free) + len(own_of)
    m = len(free) + len(own_of)
    if m == 0:
        return [torch.zeros_like(x) for x in base]
    A = torch.zeros(m, m, dtype=torch.float64)
    b = torch.zeros(m, dtype=torch.float64)
    A[: len(free), : len(free)] += level_prior * torch.eye(len(free), dtype=torch.float64)
    A[len(free):, len(free):] += own_prior * torch.eye(m - len(free), dtype=torch.float64)
    # One link: (level_k + e_kg) - (level_j + e_jh) = median; fixed views' unknowns are 0. Each
    # row touches at most four unknowns: their indices and signs (sign 0 pads).
    index, sign, medians = [], [], []
    for p, g, h, median in _link_medians(seg[kp], seg_j, r, same):
        at, by = [0, 0, 0, 0], [0.0, 0.0, 0.0, 0.0]
        for slot, (view, segment, s) in enumerate(((int(kp[p]), g, 1.0), (int(jp[p]), h, -1.0))):
            if view in level_of:
                at[2 * slot:2 * slot + 2] = level_of[view], own_of[(view, segment)]
                by[2 * slot:2 * slot + 2] = s, s
        index.append(at)
        sign.append(by)
        medians.append(median)
    if index:
        at, by = torch.tensor(index), torch.tensor(sign, dtype=torch.float64)
        A.index_put_((at[:, :, None].expand(-1, 4, 4), at[:, None, :].expand(-1, 4, 4)),
                     by[:, :, None] * by[:, None, :], accumulate=True)
        b.index_add_(0, at.reshape(-1), (by * torch.tensor(medians, dtype=torch.float64)[:, None]).reshape(-1))
    solution = torch.linalg.solve(A, b)
    offsets = []
    for k in range(n):
        if k not in level_of:
            offsets.append(torch.zeros_like(base[k]))
            continue
        own = torch.zeros(int(labels[k].max()) + 1, dtype=torch.float64)
        for g in range(1, own.numel()):
            if (k, g) in own_of:
                own[g] = solution[own_of[(k, g)]]
        offsets.append(-(solution[level_of[k]] + own[labels[k]]))
    return offsets


def _link_medians(seg: Tensor, seg_j: Tensor, r: Tensor, same: Tensor) -> list[tuple[int, int, int, float]]:
    """For each pair p (its samples' segments ``seg`` [p,n] in the first view and ``seg_j`` [p,n]
    in the second, residuals ``r`` [p,n], usable where ``same``) and each pair of segments (g, h),
    both > 0, with at least :data:`_MIN_SAMPLES` usable samples: (p, g, h, the lower median of
    those residuals, as ``Tensor.median``), in increasing order of (p, g, h). All in one sort."""
    use = same & (seg > 0) & (seg_j > 0)
    p_idx, i_idx = torch.nonzero(use, as_tuple=True)
    if p_idx.numel() == 0:
        return []
    segs = int(max(int(seg.max()), int(seg_j.max()))) + 1
    key = (p_idx * segs + seg[p_idx, i_idx]) * segs + seg_j[p_idx, i_idx]
    vals = r[p_idx, i_idx]
    order = torch.argsort(vals, stable=True)
    order = order[torch.argsort(key[order], stable=True)]  # by key, then by residual
    key, vals = key[order], vals[order]
    groups, counts = torch.unique_consecutive(key, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    enough = counts >= _MIN_SAMPLES
    groups, medians = groups[enough], vals[(starts + (counts - 1) // 2)[enough]]
    g_h = groups % (segs * segs)
    return list(zip((groups // (segs * segs)).tolist(), (g_h // segs).tolist(), (g_h % segs).tolist(),
                    medians.tolist()))
