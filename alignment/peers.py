"""Other systems' depth alignments, re-implemented from their descriptions, to compare against.

Each takes the new view's estimated z-depth and what the loop knows (the depth rendered from the
existing geometry on ``known`` pixels, the ``hole`` to fill) and returns the depth to lift on the
hole. Shapes: depth maps float [H,W], masks bool [H,W].

* :func:`text2room_depth` -- Text2Room (Hoellein et al., ICCV 2023): a least-squares scale and
  shift of the estimate in *disparity* on the overlap, applied to the whole view.
* :func:`luciddreamer_depth` -- LucidDreamer (Chung et al., 2023): the depth model's metric depth
  (its global scale fit never changes the scale: its parameter receives no gradient), plus an
  additive correction measured on the seam, pinned to 0 at the four image corners and spread
  over the hole by linear scattered-data interpolation (nearest neighbour where linear is
  undefined).
* :func:`oracle_scale` / :func:`oracle_scale_depth` -- not a system: the single scale per view
  that is best on the hole, chosen with the ground truth. No method that applies one scale per
  view can do better; it is the floor the others are measured against.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.interpolate import griddata
from torch import Tensor

from dreamer.checks import check_map, check_mask, check_positive

__all__ = ["text2room_depth", "luciddreamer_depth", "luciddreamer_seam", "oracle_scale", "oracle_scale_depth"]

# Aligned disparities are kept above this fraction of the smallest reference disparity on the
# overlap (depth at most 10x the farthest known depth): a least-squares shift can push far
# pixels' disparity through zero, where depth is undefined.
_MIN_DISPARITY_FRACTION = 0.1


def _check(estimated: Tensor, reference: Tensor, known: Tensor, hole: Tensor | None = None) -> None:
    check_map(estimated, "estimated")
    shape = tuple(estimated.shape)
    check_map(reference, "reference", shape=shape)
    check_mask(known, "known", shape=shape)
    if hole is not None:
        check_mask(hole, "hole", shape=shape)
        if bool((known & hole).any()):
            raise ValueError(f"known and hole must be disjoint; {int((known & hole).sum())} pixels are in both")
    if int(known.sum()) < 2:
        raise ValueError(f"known must hold at least 2 pixels to fit an alignment, got {int(known.sum())}")
    check_positive(reference, "reference", where=known, where_name="known pixels")
    check_positive(estimated, "estimated")


def text2room_depth(estimated: Tensor, reference: Tensor, known: Tensor) -> Tensor:
    """Text2Room's alignment: ``1 / (a / estimated + b)`` with (a, b) the least-squares fit of the
    reference disparity on the known pixels: ``min sum (a / e + b - 1 / r)^2`` (plain, unweighted
    least squares, as described; no robust weights).

    Args:
        estimated: [H,W] z-depth of the new view (finite, > 0 everywhere).
        reference: [H,W] z-depth rendered from the existing geometry (finite, > 0 on ``known``).
        known: [H,W] bool, the overlap.

    Returns:
        [H,W] aligned z-depth (dtype of ``estimated``). Disparities that the shift makes smaller
        than a tenth of the smallest known disparity are clamped there.
    """
    _check(estimated, reference, known)
    e = 1.0 / estimated.double()
    r = 1.0 / reference.double()[known]
    ek = e[known]
    A = torch.stack([ek, torch.ones_like(ek)], 1)
    sol = torch.linalg.lstsq(A, r[:, None]).solution[:, 0]
    disparity = (sol[0] * e + sol[1]).clamp_min(_MIN_DISPARITY_FRACTION * float(r.min()))
    return (1.0 / disparity).to(estimated.dtype)


def luciddreamer_seam(known: Tensor, hole: Tensor) -> Tensor:
    """The seam pixels LucidDreamer measures its correction on: bool [H,W], known pixels where the
    hole mask changes (an 8-neighbour is in the hole: a mask gradient of at least 0.3 on a
    3x3 stencil)."""
    h = hole.detach().cpu().numpy()
    H, W = h.shape
    pad = np.pad(h, 1)
    near = np.zeros_like(h)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            near |= pad[1 + dy:1 + dy + H, 1 + dx:1 + dx + W]
    return torch.from_numpy(near & known.detach().cpu().numpy()).to(known.device)


def luciddreamer_depth(estimated: Tensor, reference: Tensor, known: Tensor, hole: Tensor) -> Tensor:
    """LucidDreamer's alignment: ``estimated + dz`` on the hole, where ``dz`` is the residual
    ``reference - estimated`` on the seam pixels (:func:`luciddreamer_seam`) and 0 at the four
    image corners, interpolated linearly over a Delaunay triangulation of those points (scipy
    ``griddata``), nearest neighbour where linear is undefined.

    The original projects the existing point at a seam pixel onto the new point's ray and takes
    the difference of their camera z; both points lie on that pixel's ray here (the existing one
    is the rendered depth of the same pixel), so that residual is exactly ``reference -
    estimated``. Its scale fit leaves the scale at 1 and is left out.

    Args:
        estimated: [H,W] z-depth of the new view (finite, > 0 everywhere).
        reference: [H,W] rendered z-depth (finite, > 0 on ``known``).
        known, hole: [H,W] bool, disjoint.

    Returns:
        [H,W] z-depth (dtype of ``estimated``): corrected on the hole, ``estimated`` elsewhere.
        Not clamped: a negative correction larger than the estimate gives depth <= 0 (the loop
        clamps what it lifts).
    """
    _check(estimated, reference, known, hole)
    seam = luciddreamer_seam(known, hole)
    out = estimated.detach().double().clone()
    if not bool(hole.any()):
        return out.to(estimated.dtype)
    H, W = estimated.shape
    sy, sx = torch.nonzero(seam, as_tuple=True)
    dz = (reference.double() - estimated.double())[sy, sx].cpu().numpy()
    # Pixel centres; the corners are the corner pixels' centres.
    pts = np.concatenate([np.stack([sx.cpu().numpy() + 0.5, sy.cpu().numpy() + 0.5], 1),
                          [[0.5, 0.5], [W - 0.5, 0.5], [0.5, H - 0.5], [W - 0.5, H - 0.5]]])
    vals = np.concatenate([dz, np.zeros(4)])
    hy, hx = torch.nonzero(hole, as_tuple=True)
    q = np.stack([hx.cpu().numpy() + 0.5, hy.cpu().numpy() + 0.5], 1)
    filled = griddata(pts, vals, q, method="linear")
    bad = ~np.isfinite(filled)
    if bad.any():
        filled[bad] = griddata(pts, vals, q[bad], method="nearest")
    out[hy, hx] += torch.from_numpy(filled).to(out)
    return out.to(estimated.dtype)


def oracle_scale(estimated: Tensor, truth: Tensor, mask: Tensor) -> float:
    """The scale ``s`` minimising the mean relative error ``mean |s e - t| / t`` over ``mask``.

    Exact: ``sum |s e/t - 1| = sum (e/t) |s - t/e|`` is minimised by the weighted median of
    ``t/e`` with weights ``e/t``. Needs the ground truth: a floor for scale-only methods, not an
    alignment. NaN when ``mask`` is empty.
    """
    check_map(estimated, "estimated")
    check_map(truth, "truth", shape=tuple(estimated.shape))
    check_mask(mask, "mask", shape=tuple(estimated.shape))
    if not bool(mask.any()):
        return float("nan")
    check_positive(estimated, "estimated", where=mask, where_name="mask")
    check_positive(truth, "truth", where=mask, where_name="mask")
    ratio = (truth.double()[mask] / estimated.double()[mask]).cpu().numpy()
    weight = 1.0 / ratio
    order = np.argsort(ratio)
    cum = np.cumsum(weight[order])
    i = int(np.searchsorted(cum, 0.5 * cum[-1]))
    return float(ratio[order][min(i, len(ratio) - 1)])


def oracle_scale_depth(estimated: Tensor, truth: Tensor, hole: Tensor) -> Tensor:
    """``estimated`` times :func:`oracle_scale` on ``hole`` (unchanged when the hole is empty)."""
    s = oracle_scale(estimated, truth, hole)
    return estimated if s != s else estimated * s
