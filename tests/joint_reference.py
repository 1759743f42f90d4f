"""Reference for tests/test_joint.py: the joint refinement as it was before it was batched.

The same algorithm as :mod:`alignment.joint` (same samples, pairs, robust Gauss-Newton, prior,
clamp, fade and acceptance test), written pair by pair: each pair of views projected, sampled
and accumulated into the normal matrix on its own. Slow; kept only so that the fast version can
be checked against it on fixed cases. Its original module text follows.

Joint adjustment of every view's depth distortion against all the views that overlap it.

The dream loop aligns each new view to the geometry that exists when it is dreamed. Far from
that overlap the view's smooth distortion is extrapolated, and the next view is aligned to the
extrapolated part: errors compound along the trajectory (drift). But every view's depth
*estimate* covers its whole image, so every pair of views that overlap observes the same
surface twice, and views dreamed later constrain the ones dreamed before them. This module
fits all views at once, like a bundle adjustment of depth distortions:

* Each view k has a log-depth correction ``c_k(x, y) = B(x, y) . theta_k``, a polynomial of
  low degree in normalized image coordinates (``B`` as in :mod:`alignment.trend`; the constant
  term is the view's log scale). Its aligned depth is ``estimate_k * exp(c_k)``.
* For every ordered pair (k, j), pixels sampled on a grid in view k are lifted with their
  aligned depth and projected into view j. The residual is the log of the point's z in view j
  minus view j's aligned log-depth there (bilinear). Points that view j sees occluded, or that
  fall on a depth edge, get residuals far outside the noise and Tukey weight 0.
* Gauss-Newton on the stacked coefficients (a few rounds; each is one small dense solve),
  with the Jacobian of the lifted point's depth in view j, the shift of its projection along
  the epipolar line (translating cameras), and view j's correction. Views in ``fixed`` keep
  their coefficients (the first view: the gauge, it sets the scene's scale).
* A weak prior keeps each view near its initial coefficients where the pairs leave it
  undetermined.

Pure tensor code: cameras are given as intrinsics ``K`` [N,3,3] and ``c2w`` [N,4,4] (OpenCV
axes, see ``dreamer/cameras.py`` and ``docs/architecture.md``).

(Longer than this project's usual 500 lines: :func:`joint_log_corrections` is one Gauss-Newton
loop with robust reweighting, a prior and an acceptance test whose steps share their state; cut
into modules, a reader would lose the order of the steps. The fields are in
:mod:`alignment.fields`.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F
from torch import Tensor

from dreamer.checks import check_map, check_mask
from alignment.scale import _robust_sigma, _tukey
from alignment.fields import FieldBasis
from alignment.trend import design_matrix

__all__ = ["JointFit", "joint_log_corrections", "view_disagreement", "bend_evidence"]

# Samples whose aligned log-depth changes by more than this per pixel in the other view lie on
# a depth edge: their bilinear sample mixes two surfaces.
_EDGE_LOG_STEP = 0.05
# Tukey widths shrink over the first rounds: the initial coefficients carry the drift this
# fit removes, so the first round must not reject the very pairs that reveal it.
_ANNEAL = (4.0, 2.0, 1.0)
# Fewest samples that make a pair of views count as overlapping.
_MIN_PAIR_SAMPLES = 16
# Whole-image disagreement: a point more than this (log units) behind another view's surface is
# hidden there; residuals are capped at this (an occluded or wrong point counts once, whatever its size).
_HIDDEN = 0.2
_CAP = 0.2
# Prior on a view's variation while only levels are fitted (to estimate the distortion).
_LEVELS_ONLY = 1e-4
# The estimated distortion prior is kept within these bounds (log units).
_DISTORTION_BOUNDS = (2e-3, 0.1)



@dataclass(frozen=True)
class JointFit:
    """The result of :func:`joint_log_corrections`.

    Attributes:
        coeffs: [N,P] float64 coefficients of each view's log-depth correction in ``basis``
            (a view whose refinement was not accepted keeps its initial coefficients).
        basis: the :class:`alignment.fields.FieldBasis` of the corrections.
        clamp: [N,2] float64, each view's correction is clamped to [lo, hi], the range it takes
            on the pixels that another view sees (its support): no extrapolation beyond it.
        residual_before: median |log residual| over the pair samples with the initial coefficients.
        residual_after: the same with the returned coefficients.
        samples: pair samples with non-zero weight in the last round.
        agreement_before: [N] float64, each view's whole-image disagreement with the initial
            coefficients (:func:`view_disagreement`; NaN for a view no other view sees).
        agreement_after: [N] the same with the returned coefficients (never above ``before``).
        accepted: per view, whether its refined coefficients were kept.
        rounds: Gauss-Newton rounds that ran.
        level: [N] float64, each view's mean correction on its support.
        weights: per view, None or [H,W] float64: away from its support a view's correction
            returns to its level, ``level + (c - level) * weight``, with a weight fading from 1
            over ``fade`` of the image's larger side. Where no other view sees a view, its
            correction is an extrapolation: it keeps only the part (the level) that the whole
            overlap supports.
        distortion: the prior on each view's variation that was used (estimated or given).
    """

    coeffs: Tensor
    basis: FieldBasis
    clamp: Tensor
    residual_before: float
    residual_after: float
    samples: int
    agreement_before: Tensor
    agreement_after: Tensor
    accepted: tuple[bool, ...]
    rounds: int
    level: Tensor
    weights: tuple
    distortion: float

    @property
    def degree(self) -> int:
        """The polynomial degree (polynomial bases only; kept for callers of the polynomial API)."""
        return self.basis.size

    def field(self, k: int, height: int, width: int) -> Tensor:
        """View ``k``'s log-depth correction [height, width] (float64): clamped to its support's
        range, and returning to its level away from the support (see ``weights``)."""
        f = self.basis.field(self.coeffs[k], height, width).clamp(float(self.clamp[k, 0]), float(self.clamp[k, 1]))
        w = self.weights[k]
        if w is None:
            return f
        if tuple(w.shape) != (height, width):
            w = F.interpolate(w[None, None], size=(height, width), mode="bilinear", align_corners=False)[0, 0]
        return self.level[k] + (f - self.level[k]) * w.to(f)


def _basis_at(basis: FieldBasis, u: Tensor, v: Tensor, width: int, height: int) -> Tensor:
    """Basis [n,P] float64 at continuous pixel coordinates (centres at +0.5)."""
    x = (u.double() / width * 2 - 1).cpu().numpy()
    y = (v.double() / height * 2 - 1).cpu().numpy()
    return torch.from_numpy(basis.matrix(x, y))


def _sample(grid_map: Tensor, u: Tensor, v: Tensor, mode: str = "bilinear") -> Tensor:
    """Samples of a [H,W] map ([n]) or of a [C,H,W] stack of maps ([C,n]) at continuous pixel
    coordinates (centres at +0.5), bilinear or nearest."""
    stack = grid_map if grid_map.dim() == 3 else grid_map[None]
    H, W = stack.shape[-2:]
    g = torch.stack([u / W * 2 - 1, v / H * 2 - 1], dim=-1).to(stack.dtype)
    out = F.grid_sample(stack[None], g[None, None], mode=mode, padding_mode="border", align_corners=False)[0, :, 0]
    return out if grid_map.dim() == 3 else out[0]


def _check_inputs(log_depths, valid, K, c2w, init, fixed, basis):
    n = len(log_depths)
    if n == 0:
        raise ValueError("joint_log_corrections needs at least one view")
    if len(valid) != n or len(fixed) != n:
        raise ValueError(f"got {n} log-depth maps, {len(valid)} valid masks and {len(fixed)} fixed flags")
    if tuple(K.shape) != (n, 3, 3) or tuple(c2w.shape) != (n, 4, 4):
        raise ValueError(f"K must be [{n},3,3] and c2w [{n},4,4], got {tuple(K.shape)} and {tuple(c2w.shape)}")
    if tuple(init.shape) != (n, basis.n_terms):
        raise ValueError(f"init must be [{n},{basis.n_terms}] for {basis}, got {tuple(init.shape)}")
    for i, (L, m) in enumerate(zip(log_depths, valid)):
        check_map(L, f"log_depths[{i}]")
        check_mask(m, f"valid[{i}]", shape=tuple(L.shape))
        if not bool(torch.isfinite(L[m]).all()):
            raise ValueError(f"log_depths[{i}] must be finite on valid[{i}]")


class _Views:
    """The views' log-depths, cameras and grid samples, in float64 on the CPU."""

    def __init__(self, log_depths, valid, K, c2w, samples_per_view: int):
        self.n = len(log_depths)
        self.K = K.detach().double().cpu()
        self.c2w = c2w.detach().double().cpu()
        self.w2c = torch.linalg.inv(self.c2w)
        self.L = [x.detach().double().cpu() for x in log_depths]
        self.V = [m.detach().cpu() for m in valid]
        # Invalid pixels: a large value, so a bilinear sample touching one is an outlier.
        self.L_safe = [torch.where(m, x, torch.full_like(x, 1e3)) for x, m in zip(self.L, self.V)]
        self.strides = [max(1, int(round((x.shape[0] * x.shape[1] / samples_per_view) ** 0.5))) for x in self.L]
        self.samples = [self.grid(k, samples_per_view) for k in range(self.n)]
        self._maps: dict = {}

    def grid(self, k: int, count: int):
        """(log-depth [n], world ray directions [n,3] with camera z = 1, u [n], v [n]) of view k's
        valid pixel centres on a regular grid of about ``count`` pixels."""
        H, W = self.L[k].shape
        stride = max(1, int(round((H * W / count) ** 0.5)))
        vv, uu = torch.meshgrid(torch.arange(stride // 2, H, stride), torch.arange(stride // 2, W, stride),
                                indexing="ij")
        keep = self.V[k][vv, uu]
        vv, uu = vv[keep], uu[keep]
        u, v = uu.double() + 0.5, vv.double() + 0.5
        K = self.K[k]
        d_cam = torch.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], torch.ones_like(u)], -1)
        return self.L[k][vv, uu], d_cam @ self.c2w[k, :3, :3].T, u, v

    def project(self, k: int, log_z: Tensor, dirs: Tensor, j: int):
        """View k's points (log z-depth ``log_z`` along ``dirs``) in view j: (index of those
        inside j's image, their z in j, u, v, camera-j coordinates, z_k)."""
        z_k = torch.exp(log_z)
        X = self.c2w[k, :3, 3] + z_k[:, None] * dirs
        pc = X @ self.w2c[j, :3, :3].T + self.w2c[j, :3, 3]
        zj = pc[:, 2]
        Hj, Wj = self.L[j].shape
        zs = zj.clamp_min(1e-9)
        u = self.K[j, 0, 0] * pc[:, 0] / zs + self.K[j, 0, 2]
        v = self.K[j, 1, 1] * pc[:, 1] / zs + self.K[j, 1, 2]
        ok = (zj > 1e-9) & (u > 1.0) & (u < Wj - 1.0) & (v > 1.0) & (v < Hj - 1.0)
        idx = torch.nonzero(ok).squeeze(1)
        return idx, zj[idx], u[idx], v[idx], pc[idx], z_k[idx]

    def maps(self, j: int, extra: Tensor | None = None) -> Tensor:
        """[3,H,W]: view j's log-depth (plus ``extra`` [H,W]) and its central differences along
        u and v (one bilinear sample of these is a sample of the log-depth and its slope)."""
        if extra is None and j in self._maps:
            return self._maps[j]
        L = self.L_safe[j] if extra is None else self.L_safe[j] + extra
        pad = F.pad(L[None, None], (1, 1, 1, 1), mode="replicate")[0, 0]
        out = torch.stack([L, (pad[1:-1, 2:] - pad[1:-1, :-2]) / 2, (pad[2:, 1:-1] - pad[:-2, 1:-1]) / 2])
        if extra is None:
            self._maps[j] = out
        return out

    def off_edges(self, j: int, u: Tensor, v: Tensor, extra: Tensor | None = None):
        """Whether view j's log-depth (plus ``extra`` [H,W]) is smooth at (u, v): a bilinear sample
        on a depth edge mixes two surfaces. Returns (smooth, log-depth there, gu, gv)."""
        Lj, gu, gv = _sample(self.maps(j, extra), u, v)
        return (gu.abs() < _EDGE_LOG_STEP) & (gv.abs() < _EDGE_LOG_STEP), Lj, gu, gv


def _pixel_noise(log_depth: Tensor, valid: Tensor) -> float:
    """Robust standard deviation of a log-depth map's pixel noise: from second differences along
    rows (a slope cancels; the median ignores edges), which have 6 times the noise variance."""
    d2 = log_depth[:, 2:] - 2 * log_depth[:, 1:-1] + log_depth[:, :-2]
    ok = valid[:, 2:] & valid[:, 1:-1] & valid[:, :-2]
    if not bool(ok.any()):
        return 0.0
    return float(d2[ok].abs().median()) / (0.6745 * math.sqrt(6.0))


def _distortion_from_data(residuals: np.ndarray, views: "_Views", sigma_floor: float) -> float:
    """The prior on a view's variation, from the data: the pair residuals left after fitting a
    level per view, less what the two views' pixel noise explains (residuals compare two
    noisy pixels: twice the noise variance)."""
    total = _robust_sigma(residuals, sigma_floor) ** 2
    noise = float(np.median([_pixel_noise(L, V) for L, V in zip(views.L, views.V)])) ** 2
    lo, hi = _DISTORTION_BOUNDS
    return float(np.clip(math.sqrt(max(total - 2 * noise, 0.0)), lo, hi))


def bend_evidence(log_depths: Sequence[Tensor], valid: Sequence[Tensor], K: Tensor, c2w: Tensor, *,
                  samples_per_view: int = 4096, cap: float = _CAP) -> float:
    """How well a bend (a quadratic over the image) extrapolates the views' disagreements.

    For every pair of overlapping views (k, j), the residuals of view k's samples in view j
    (after removing their median: the pair's relative scale) are split into thirds by their
    image column in view k. A quadratic in view k's image coordinates fitted on one outer third
    predicts the other outer third; so does a constant (the fitting third's median). Returns the
    ratio of the two prediction errors (mean capped absolute error), pooled over pairs and both
    sides: well below 1 when each view's error is a bend (the difference of two bends is a bend,
    and extrapolates), about 1 or above when it is local (waves, objects), NaN without pairs.
    """
    views = _Views(log_depths, valid, K, c2w, samples_per_view)
    quad, const = 0.0, 0.0
    for k in range(views.n):
        lk, dirs, u0, v0 = views.samples[k]
        H, W = views.L[k].shape
        for j in range(views.n):
            if j == k:
                continue
            idx, zj, u, v, _, _ = views.project(k, lk, dirs, j)
            if idx.numel() < 4 * _MIN_PAIR_SAMPLES:
                continue
            smooth, Lj, _, _ = views.off_edges(j, u, v)
            idx, zj, u, v, Lj = idx[smooth], zj[smooth], u[smooth], v[smooth], Lj[smooth]
            if idx.numel() < 4 * _MIN_PAIR_SAMPLES:
                continue
            r = (torch.log(zj) - Lj).numpy()
            r = r - np.median(r)
            keep = np.abs(r) < cap
            x = (u0[idx].numpy() / W * 2 - 1)[keep]
            y = (v0[idx].numpy() / H * 2 - 1)[keep]
            r = r[keep]
            if r.size < 4 * _MIN_PAIR_SAMPLES:
                continue
            lo, hi = np.quantile(x, [1 / 3, 2 / 3])
            for a, b in ((x <= lo, x > hi), (x > hi, x <= lo)):
                if a.sum() < _MIN_PAIR_SAMPLES or b.sum() < _MIN_PAIR_SAMPLES:
                    continue
                A = design_matrix(x[a], y[a], 2)
                beta = np.linalg.lstsq(A, r[a], rcond=None)[0]
                quad += float(np.minimum(np.abs(r[b] - design_matrix(x[b], y[b], 2) @ beta), cap).sum())
                const += float(np.minimum(np.abs(r[b] - np.median(r[a])), cap).sum())
    return quad / const if const > 0 else float("nan")


def view_disagreement(log_depths: Sequence[Tensor], valid: Sequence[Tensor], K: Tensor, c2w: Tensor,
                      fields: Sequence[Tensor], *, samples_per_view: int = 16384,
                      hidden: float = _HIDDEN, cap: float = _CAP) -> Tensor:
    """How much each view's corrected depth disagrees with the other views, over its whole image.

    View k's corrected log-depth is ``log_depths[k] + fields[k]`` ([H_k,W_k] each). Every valid
    pixel of view k on a regular grid (about ``samples_per_view``) is lifted and projected into
    every other view j; where it lands inside j's image, off j's depth edges, and not more than
    ``hidden`` (log units) behind j's surface (it would be hidden there), the residual is the log
    of its depth in j minus j's corrected log-depth. The disagreement of view k is the mean of
    ``min(|residual|, cap)`` over all those (pixel, view) pairs: every pixel that another view
    sees counts, not only a pair's sampled overlap. Returns [N] float64 (NaN for a view that no
    other view sees).
    """
    views = _Views(log_depths, valid, K, c2w, samples_per_view)
    F_ = [f.detach().double().cpu() for f in fields]
    out = torch.full((views.n,), float("nan"), dtype=torch.float64)
    for k in range(views.n):
        lk, dirs, u0, v0 = views.samples[k]
        log_z = lk + _sample(F_[k], u0, v0)
        total, count = 0.0, 0
        for j in range(views.n):
            if j == k:
                continue
            idx, zj, u, v, _, _ = views.project(k, log_z, dirs, j)
            if idx.numel() == 0:
                continue
            smooth, Lj, _, _ = views.off_edges(j, u, v, F_[j])
            r = torch.log(zj) - Lj
            seen = smooth & (r < hidden)
            total += float(r[seen].abs().clamp_max(cap).sum())
            count += int(seen.sum())
        if count >= _MIN_PAIR_SAMPLES:
            out[k] = total / count
    return out


def joint_log_corrections(
    log_depths: Sequence[Tensor],
    valid: Sequence[Tensor],
    K: Tensor,
    c2w: Tensor,
    init: Tensor,
    fixed: Sequence[bool],
    *,
    basis: FieldBasis = FieldBasis("poly", 2),
    samples_per_view: int = 4096,
    iterations: int = 5,
    tukey_c: float = 4.685,
    sigma_floor: float = 2e-3,
    distortion: float | None = None,
    level: float = 1.0,
    fade: float = 0.1,
    accept: bool = True,
) -> JointFit:
    """Fit every view's log-depth correction so that all overlapping views agree.

    Args:
        log_depths: per view, [H_k,W_k] log of the (pre-aligned) z-depth (read where ``valid``).
        valid: per view, [H_k,W_k] bool, pixels whose depth may be used.
        K: [N,3,3] intrinsics; c2w: [N,4,4] camera-to-world (OpenCV axes).
        init: [N,P] initial coefficients in ``basis`` (zeros: the depths as given).
        fixed: per view, True to keep its coefficients at ``init`` (at least one view, the
            gauge: without one, the scene's scale is free).
        basis: the :class:`alignment.fields.FieldBasis` of each view's correction.
        samples_per_view: pixels sampled (on a regular grid) in each view.
        iterations: the most Gauss-Newton rounds.
        tukey_c: Tukey width in robust standard deviations of the pooled residuals.
        sigma_floor: the smallest robust standard deviation (log units).
        distortion, level: the prior (log units; :meth:`FieldBasis.prior_precision`) of a
            view's correction away from ``init``: its variation across the image, and its
            level. It decides what the pairs leave open: two views that overlap only measure
            the difference of their corrections there, and a chain of views measures their
            levels only together with how each varies across its image. A small
            ``distortion`` and a large ``level`` resolve that as a scale per view (the drift
            of a long trajectory) and split the rest evenly between the views. ``distortion``
            None estimates it from the data (:func:`_distortion_from_data`): too large a value
            lets pixel noise in the overlaps tilt every view a little, and along a chain of
            views those tilts add up to a drift of the levels.
        fade: away from the pixels that other views see, a view's correction returns to its
            mean over them within about this fraction of the image's larger side.
        accept: keep a view's refined coefficients only if its whole-image disagreement
            (:func:`view_disagreement`) is not larger than with ``init``. Views that get worse
            are fixed at ``init`` one at a time (the worst first) and the others refitted, until
            none gets worse.

    Returns:
        A :class:`JointFit`. A round in which no pair keeps enough samples ends the fit (the
        coefficients found so far are kept).
    """
    _check_inputs(log_depths, valid, K, c2w, init, fixed, basis)
    if not any(fixed):
        raise ValueError("at least one view must be fixed (it sets the scale of the scene)")
    if not ((distortion is None or distortion > 0) and level > 0):
        raise ValueError(f"distortion (or None) and level must be > 0, got {distortion} and {level}")
    views = _Views(log_depths, valid, K, c2w, samples_per_view)
    n_views = views.n
    P = basis.n_terms
    init64 = init.detach().double().cpu().clone()
    prior = torch.from_numpy(basis.prior_precision(_LEVELS_ONLY if distortion is None else distortion, level))

    def design(k: int, u: Tensor, v: Tensor) -> Tensor:
        """View k's basis [n,P] at pixel coordinates (u, v)."""
        return _basis_at(basis, u, v, views.L[k].shape[1], views.L[k].shape[0])

    basis_k = [design(k, s[2], s[3]) for k, s in enumerate(views.samples)]

    def pair_terms(theta: Tensor, k: int, j: int, jacobian: bool):
        """Residuals of view k's samples seen in view j, their Jacobians, and where they are in
        both views (or None: no overlap)."""
        lk, dirs, u_k, v_k = views.samples[k]
        Bk = basis_k[k]
        idx, zj, u, v, pcs, zk = views.project(k, lk + Bk @ theta[k], dirs, j)
        smooth, Lj, gu, gv = views.off_edges(j, u, v)
        idx, zj, u, v, pcs, zk, Lj, gu, gv = (t[smooth] for t in (idx, zj, u, v, pcs, zk, Lj, gu, gv))
        if idx.numel() < _MIN_PAIR_SAMPLES:
            return None
        Bj = design(j, u, v)
        r = torch.log(zj) - (Lj + Bj @ theta[j])
        where = (idx, u, v)
        if not jacobian:
            return r, None, None, where
        # d r / d log z_k: the point moves along view k's ray, pc = t' + z_k w (w = R dirs); its
        # depth in view j changes, and its projection slides along the epipolar line over view
        # j's depth map (zero for a pure rotation).
        w = dirs[idx] @ views.w2c[j, :3, :3].T
        du = views.K[j, 0, 0] * zk * (w[:, 0] * zj - pcs[:, 0] * w[:, 2]) / zj**2
        dv = views.K[j, 1, 1] * zk * (w[:, 1] * zj - pcs[:, 1] * w[:, 2]) / zj**2
        a = zk * w[:, 2] / zj - (gu * du + gv * dv)
        return r, a[:, None] * Bk[idx], -Bj, where

    # Pairs that overlap (checked once, at the initial coefficients).
    free0 = [not f for f in fixed]
    pairs, residuals = [], []
    for k in range(n_views):
        for j in range(n_views):
            if j != k and (free0[k] or free0[j]):
                terms = pair_terms(init64, k, j, jacobian=False)
                if terms is not None:
                    pairs.append((k, j))
                    residuals.append(terms[0])
    nan = torch.full((n_views,), float("nan"), dtype=torch.float64)
    unclamped = torch.tensor([[-math.inf, math.inf]] * n_views, dtype=torch.float64)
    if not pairs:
        return JointFit(init64.to(init.device), basis, unclamped, float("nan"), float("nan"), 0, nan, nan,
                        tuple(False for _ in range(n_views)), 0, torch.zeros(n_views, dtype=torch.float64),
                        tuple(None for _ in range(n_views)), float("nan") if distortion is None else distortion)
    r_all = torch.cat(residuals).numpy()
    med_before = float(np.median(np.abs(r_all)))
    sigma0 = _robust_sigma(r_all, sigma_floor)

    last_lin: list = []

    # Cameras that share one centre (a pan, a turn) see a point at the same pixel whatever its
    # depth, and its depth in view j is its depth in view k times a factor: the residuals are
    # exactly linear in the coefficients, and one linearization serves the whole fit.
    centres = views.c2w[:, :3, 3]
    one_centre = bool(((centres - centres[:1]).norm(dim=1) <= 1e-9 * (1 + centres.norm(dim=1))).all())

    def linearize(theta: Tensor, free: list[bool]) -> list:
        """Each pair's residuals, Jacobians and sample positions at ``theta`` (pairs with a free view)."""
        if one_centre and last_lin:
            kept = [(i, e) for i, e in enumerate(last_lin[0]) if free[e[0]] or free[e[1]]]
            moved = linear_residuals(theta)
            lin = [(k, j, moved[i], Jk, Jj, where) for i, (k, j, _, Jk, Jj, where) in kept]
            last_lin[:] = [lin, theta.clone()]
            return lin
        lin = []
        for k, j in pairs:
            if not (free[k] or free[j]):
                continue
            terms = pair_terms(theta, k, j, jacobian=True)
            if terms is not None:
                r, Jk, Jj, where = terms
                lin.append((k, j, r, Jk, Jj, where))
        last_lin[:] = [lin, theta.clone()]
        return lin

    def linear_residuals(theta: Tensor) -> list[Tensor]:
        """The pairs' residuals at ``theta``, to first order about the last linearization."""
        lin, theta0 = last_lin
        d = theta - theta0
        return [r + Jk @ d[k] + Jj @ d[j] for k, j, r, Jk, Jj, _ in lin]

    def gauss_newton(theta: Tensor, free: list[bool]) -> tuple[Tensor, float, int]:
        """Robust Gauss-Newton on the free views; (coefficients, last sigma, rounds run).

        The pairs are projected once, at the start: the residuals are linear in the coefficients
        about there (exactly so for rotating cameras, whose projections do not move with depth;
        to first order along the epipolar lines of translating ones), so each IRLS round is
        only weighted normal equations. Callers run it again from its result (the fit with the
        prior, the refits of the acceptance test), which re-linearizes."""
        sigma, rounds = sigma0, 0
        keep_free = torch.tensor(free).repeat_interleave(P)
        if not any(free):
            return theta, sigma, 0
        lin = linearize(theta, free)
        if not lin:  # every pair lost its overlap at these coefficients: stop here
            return theta, sigma, 0
        theta0 = theta.clone()
        # Each pair's Jacobian over the coefficients of both its views, [n, 2P].
        blocks = [(torch.cat([Jk, Jj], 1), r0, k, j) for k, j, r0, Jk, Jj, _ in lin]
        for it in range(iterations):
            c = tukey_c * _ANNEAL[min(it, len(_ANNEAL) - 1)]
            Hm = torch.zeros(n_views * P, n_views * P, dtype=torch.float64)
            g = torch.zeros(n_views * P, dtype=torch.float64)
            d = theta - theta0
            residuals = []
            # IRLS: weights from the current residuals, their scale from the previous round's.
            for J, r0, k, j in blocks:
                r = r0 + J @ torch.cat([d[k], d[j]])
                residuals.append(r)
                JW = J * (torch.from_numpy(_tukey(r.numpy(), sigma, c)) / sigma**2)[:, None]
                A, b = JW.T @ J, JW.T @ r
                sk, sj = slice(k * P, (k + 1) * P), slice(j * P, (j + 1) * P)
                Hm[sk, sk] += A[:P, :P]
                Hm[sj, sj] += A[P:, P:]
                Hm[sk, sj] += A[:P, P:]
                Hm[sj, sk] += A[P:, :P]
                g[sk] += b[:P]
                g[sj] += b[P:]
            rounds += 1
            sigma = _robust_sigma(torch.cat(residuals).numpy(), sigma_floor)
            for k in range(n_views):
                s = slice(k * P, (k + 1) * P)
                Hm[s, s] += prior
                g[s] += prior @ (theta[k] - init64[k])
            step = torch.zeros(n_views * P, dtype=torch.float64)
            A, b = Hm[keep_free][:, keep_free], -g[keep_free]
            try:
                step[keep_free] = torch.linalg.solve(A, b)
            except RuntimeError:  # singular despite the prior (degenerate input): least squares
                step[keep_free] = torch.linalg.lstsq(A, b[:, None]).solution[:, 0]
            theta = theta + step.reshape(n_views, P)
        return theta, sigma, rounds

    def limits(theta: Tensor, free: list[bool]) -> tuple[Tensor, Tensor, list[Tensor | None]]:
        """For each free view: the range of its correction on its support (the pixels that
        another view sees), its mean there (its level), and the weight [H,W] with which its
        variation around that level is kept elsewhere (1 on the support, fading with the
        distance from it); None for a view without support."""
        seen = [torch.zeros(views.L[k].shape, dtype=torch.bool) for k in range(n_views)]
        # Where the pairs' samples fell at the last linearization (the same positions as at
        # ``theta`` for rotating cameras, a fraction of a pixel away for translating ones).
        placed = [(k, j, where) for k, j, _, _, _, where in last_lin[0]] if last_lin else []
        for k, j, (idx, u, v) in placed:
            seen[k][(views.samples[k][3][idx] - 0.5).long(), (views.samples[k][2][idx] - 0.5).long()] = True
            Hj, Wj = views.L[j].shape
            seen[j][v.long().clamp(0, Hj - 1), u.long().clamp(0, Wj - 1)] = True
        clamp, level, weights = unclamped.clone(), torch.zeros(n_views, dtype=torch.float64), []
        for k in range(n_views):
            H, W = views.L[k].shape
            if not (free[k] and bool(seen[k].any())):
                weights.append(None)
                continue
            # Samples are a grid, and none lie on depth edges: the support is what they cover, gaps closed.
            r = max(2 * views.strides[k], round(0.02 * max(H, W)))
            near = F.max_pool2d(seen[k][None, None].float(), 2 * r + 1, stride=1, padding=r)[0, 0] > 0
            f = basis.field(theta[k], H, W)
            vals = f[near & views.V[k]]
            if vals.numel() == 0:
                weights.append(None)
                continue
            clamp[k, 0], clamp[k, 1] = float(vals.min()), float(vals.max())
            level[k] = float(vals.mean())
            dist = torch.from_numpy(ndi.distance_transform_edt(~near.numpy()))
            weights.append(torch.exp(-dist / (fade * max(H, W))))
        return clamp, level, weights

    def fields(theta: Tensor, lim) -> list[Tensor]:
        clamp, level, weights = lim
        out = []
        for k in range(n_views):
            H, W = views.L[k].shape
            f = basis.field(theta[k], H, W).clamp(float(clamp[k, 0]), float(clamp[k, 1]))
            if weights[k] is not None:
                f = level[k] + (f - level[k]) * weights[k]
            out.append(f)
        return out

    def disagreement(theta: Tensor, lim) -> Tensor:
        return view_disagreement(views.L, views.V, views.K, views.c2w, fields(theta, lim),
                                 samples_per_view=samples_per_view)

    no_limits = (unclamped, torch.zeros(n_views, dtype=torch.float64), [None] * n_views)
    free = list(free0)
    theta, sigma, rounds = gauss_newton(init64.clone(), free)
    if distortion is None:  # the fit above allowed levels only: what is left beyond noise is distortion
        residuals = linear_residuals(theta) if last_lin else []
        distortion = _LEVELS_ONLY
        if residuals:
            distortion = _distortion_from_data(torch.cat(residuals).numpy(), views, sigma_floor)
            prior = torch.from_numpy(basis.prior_precision(distortion, level))
            theta, sigma, more = gauss_newton(theta, free)
            rounds += more
    lim = limits(theta, free)
    before = disagreement(init64, no_limits)
    after = disagreement(theta, lim)
    while accept:
        worse = [k for k in range(n_views) if free[k] and after[k] == after[k] and after[k] > before[k]]
        if not worse:
            break
        k = max(worse, key=lambda i: float(after[i] - before[i]))
        free[k] = False
        theta[k] = init64[k]
        theta, sigma, more = gauss_newton(theta, free)
        rounds += more
        lim = limits(theta, free)
        after = disagreement(theta, lim)

    final = linear_residuals(theta) if last_lin else []
    r_all = torch.cat(final).numpy() if final else np.zeros(0)
    med_after = float(np.median(np.abs(r_all))) if r_all.size else float("nan")
    n_used = int((_tukey(r_all, sigma, tukey_c) > 0).sum())
    clamp, level, weights = lim
    return JointFit(coeffs=theta.to(init.device), basis=basis, clamp=clamp, residual_before=med_before,
                    residual_after=med_after, samples=n_used, agreement_before=before, agreement_after=after,
                    accepted=tuple(free), rounds=rounds, level=level, weights=tuple(weights), distortion=distortion)
