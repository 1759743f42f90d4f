"""Joint adjustment of every view's depth distortion against all the views that overlap it.

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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from alignment._checks import check_map, check_mask
from alignment.scale import _robust_sigma, _tukey
from alignment.trend import design_matrix, n_terms, polynomial_field

__all__ = ["JointFit", "joint_log_corrections"]

# Samples whose aligned log-depth changes by more than this per pixel in the other view lie on
# a depth edge: their bilinear sample mixes two surfaces.
_EDGE_LOG_STEP = 0.05
# Tukey widths shrink over the first rounds: the initial coefficients carry the drift this
# fit removes, so the first round must not reject the very pairs that reveal it.
_ANNEAL = (4.0, 2.0, 1.0)
# Fewest samples that make a pair of views count as overlapping.
_MIN_PAIR_SAMPLES = 16


@dataclass(frozen=True)
class JointFit:
    """The result of :func:`joint_log_corrections`.

    Attributes:
        coeffs: [N,P] float64 polynomial coefficients of each view's log-depth correction.
        degree: the polynomial degree.
        residual_before: median |log residual| over the pair samples with the initial coefficients.
        residual_after: the same with the fitted coefficients.
        samples: pair samples with non-zero weight in the last round.
    """

    coeffs: Tensor
    degree: int
    residual_before: float
    residual_after: float
    samples: int

    def field(self, k: int, height: int, width: int) -> Tensor:
        """View ``k``'s log-depth correction [height, width] (float64)."""
        return polynomial_field(self.coeffs[k], self.degree, height, width)


def _basis(u: Tensor, v: Tensor, width: int, height: int, degree: int) -> Tensor:
    """Basis [n,P] float64 at continuous pixel coordinates (centres at +0.5)."""
    x = (u.double() / width * 2 - 1).cpu().numpy()
    y = (v.double() / height * 2 - 1).cpu().numpy()
    return torch.from_numpy(design_matrix(x, y, degree))


def _sample(grid_map: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """Bilinear samples of a [H,W] map at continuous pixel coordinates (centres at +0.5)."""
    H, W = grid_map.shape
    g = torch.stack([u / W * 2 - 1, v / H * 2 - 1], dim=-1).to(grid_map.dtype)
    return F.grid_sample(grid_map[None, None], g[None, None], mode="bilinear", padding_mode="border",
                         align_corners=False)[0, 0, 0]


def _check_inputs(log_depths, valid, K, c2w, init, fixed, degree):
    n = len(log_depths)
    if n == 0:
        raise ValueError("joint_log_corrections needs at least one view")
    if len(valid) != n or len(fixed) != n:
        raise ValueError(f"got {n} log-depth maps, {len(valid)} valid masks and {len(fixed)} fixed flags")
    if tuple(K.shape) != (n, 3, 3) or tuple(c2w.shape) != (n, 4, 4):
        raise ValueError(f"K must be [{n},3,3] and c2w [{n},4,4], got {tuple(K.shape)} and {tuple(c2w.shape)}")
    if tuple(init.shape) != (n, n_terms(degree)):
        raise ValueError(f"init must be [{n},{n_terms(degree)}] for degree {degree}, got {tuple(init.shape)}")
    for i, (L, m) in enumerate(zip(log_depths, valid)):
        check_map(L, f"log_depths[{i}]")
        check_mask(m, f"valid[{i}]", tuple(L.shape))
        if not bool(torch.isfinite(L[m]).all()):
            raise ValueError(f"log_depths[{i}] must be finite on valid[{i}]")


def joint_log_corrections(
    log_depths: Sequence[Tensor],
    valid: Sequence[Tensor],
    K: Tensor,
    c2w: Tensor,
    init: Tensor,
    fixed: Sequence[bool],
    *,
    degree: int = 2,
    samples_per_view: int = 4096,
    iterations: int = 5,
    tukey_c: float = 4.685,
    sigma_floor: float = 2e-3,
    prior: float = 1e-6,
) -> JointFit:
    """Fit every view's log-depth correction so that all overlapping views agree.

    Args:
        log_depths: per view, [H_k,W_k] log of the estimated z-depth (read where ``valid``).
        valid: per view, [H_k,W_k] bool, pixels whose estimate may be used.
        K: [N,3,3] intrinsics; c2w: [N,4,4] camera-to-world (OpenCV axes).
        init: [N,P] initial coefficients (e.g. those of the sequential alignment).
        fixed: per view, True to keep its coefficients at ``init`` (at least one view, the
            gauge: without one, the scene's scale is free).
        degree: polynomial degree of the corrections (P = (degree+1)(degree+2)/2 terms).
        samples_per_view: pixels sampled (on a regular grid) in each view.
        iterations: Gauss-Newton rounds.
        tukey_c: Tukey width in robust standard deviations of the pooled residuals.
        sigma_floor: the smallest robust standard deviation (log units).
        prior: weight of ``||theta_k - init_k||^2`` relative to view k's total sample weight.

    Returns:
        A :class:`JointFit`.
    """
    _check_inputs(log_depths, valid, K, c2w, init, fixed, degree)
    if not any(fixed):
        raise ValueError("at least one view must be fixed (it sets the scale of the scene)")
    n_views = len(log_depths)
    P = n_terms(degree)
    K = K.detach().double().cpu()
    c2w = c2w.detach().double().cpu()
    w2c = torch.linalg.inv(c2w)
    L = [x.detach().double().cpu() for x in log_depths]
    V = [m.detach().cpu() for m in valid]
    # Invalid pixels: a large value, so a bilinear sample touching one is an outlier.
    L_safe = [torch.where(m, x, torch.full_like(x, 1e3)) for x, m in zip(L, V)]

    # Samples of each view: pixel centres on a regular grid, valid ones only.
    samples = []
    for k in range(n_views):
        H, W = L[k].shape
        stride = max(1, int(round((H * W / samples_per_view) ** 0.5)))
        vv, uu = torch.meshgrid(torch.arange(stride // 2, H, stride), torch.arange(stride // 2, W, stride),
                                indexing="ij")
        keep = V[k][vv, uu]
        vv, uu = vv[keep], uu[keep]
        u, v = uu.double() + 0.5, vv.double() + 0.5
        d_cam = torch.stack([(u - K[k, 0, 2]) / K[k, 0, 0], (v - K[k, 1, 2]) / K[k, 1, 1], torch.ones_like(u)], -1)
        dirs = d_cam @ c2w[k, :3, :3].T  # world rays with camera z = 1
        samples.append((L[k][vv, uu], dirs, _basis(u, v, W, H, degree)))

    theta = init.detach().double().cpu().clone()
    init64 = theta.clone()
    free = torch.tensor([not f for f in fixed])

    def pair_terms(k: int, j: int, jacobian: bool):
        """Residuals of view k's samples seen in view j, and their Jacobians (or None: no overlap)."""
        lk, dirs, Bk = samples[k]
        z_k = torch.exp(lk + Bk @ theta[k])
        X = c2w[k, :3, 3] + z_k[:, None] * dirs
        R, t = w2c[j, :3, :3], w2c[j, :3, 3]
        pc = X @ R.T + t
        zj = pc[:, 2]
        Hj, Wj = L[j].shape
        zs = zj.clamp_min(1e-9)
        u = K[j, 0, 0] * pc[:, 0] / zs + K[j, 0, 2]
        v = K[j, 1, 1] * pc[:, 1] / zs + K[j, 1, 2]
        ok = (zj > 1e-9) & (u > 1.0) & (u < Wj - 1.0) & (v > 1.0) & (v < Hj - 1.0)
        # Gradient of view j's log-depth (central differences): samples on a depth edge are dropped.
        idx = torch.nonzero(ok).squeeze(1)
        u, v = u[idx], v[idx]
        gu = (_sample(L_safe[j], u + 1, v) - _sample(L_safe[j], u - 1, v)) / 2
        gv = (_sample(L_safe[j], u, v + 1) - _sample(L_safe[j], u, v - 1)) / 2
        keep = (gu.abs() < _EDGE_LOG_STEP) & (gv.abs() < _EDGE_LOG_STEP)
        idx, u, v, gu, gv = idx[keep], u[keep], v[keep], gu[keep], gv[keep]
        if idx.numel() < _MIN_PAIR_SAMPLES:
            return None
        zj, pcs = zj[idx], pc[idx]
        Bj = _basis(u, v, Wj, Hj, degree)
        r = torch.log(zj) - (_sample(L_safe[j], u, v) + Bj @ theta[j])
        if not jacobian:
            return r, None, None
        # d r / d log z_k: the point moves along view k's ray, pc = t' + z_k w (w = R dirs); its
        # depth in view j changes, and its projection slides along the epipolar line over view
        # j's depth map (zero for a pure rotation).
        w = dirs[idx] @ R.T
        zk = z_k[idx]
        du = K[j, 0, 0] * zk * (w[:, 0] * zj - pcs[:, 0] * w[:, 2]) / zj**2
        dv = K[j, 1, 1] * zk * (w[:, 1] * zj - pcs[:, 1] * w[:, 2]) / zj**2
        a = zk * w[:, 2] / zj - (gu * du + gv * dv)
        return r, a[:, None] * Bk[idx], -Bj

    # Pairs that overlap (checked once, at the initial coefficients).
    pairs, residuals = [], []
    for k in range(n_views):
        for j in range(n_views):
            if j != k and (free[k] or free[j]):
                terms = pair_terms(k, j, jacobian=False)
                if terms is not None:
                    pairs.append((k, j))
                    residuals.append(terms[0])
    if not pairs:
        return JointFit(theta.to(init.device), degree, float("nan"), float("nan"), 0)
    r_all = torch.cat(residuals).numpy()
    med_before = float(np.median(np.abs(r_all)))
    sigma = _robust_sigma(r_all, sigma_floor)
    keep_free = free.repeat_interleave(P)
    for it in range(iterations):
        c = tukey_c * _ANNEAL[min(it, len(_ANNEAL) - 1)]
        Hm = torch.zeros(n_views * P, n_views * P, dtype=torch.float64)
        g = torch.zeros(n_views * P, dtype=torch.float64)
        view_weight = torch.zeros(n_views, dtype=torch.float64)
        residuals = []
        # IRLS: weights from the current residuals, their scale from the previous round's.
        for k, j in pairs:
            terms = pair_terms(k, j, jacobian=True)
            if terms is None:
                continue
            r, Jk, Jj = terms
            residuals.append(r)
            wt = torch.from_numpy(_tukey(r.numpy(), sigma, c))
            sk, sj = slice(k * P, (k + 1) * P), slice(j * P, (j + 1) * P)
            JkW, JjW = Jk * wt[:, None], Jj * wt[:, None]
            Hm[sk, sk] += JkW.T @ Jk
            Hm[sj, sj] += JjW.T @ Jj
            Hm[sk, sj] += JkW.T @ Jj
            Hm[sj, sk] += JjW.T @ Jk
            g[sk] += JkW.T @ r
            g[sj] += JjW.T @ r
            view_weight[k] += wt.sum()
            view_weight[j] += wt.sum()
        sigma = _robust_sigma(torch.cat(residuals).numpy(), sigma_floor)
        for k in range(n_views):
            s = slice(k * P, (k + 1) * P)
            lam = prior * max(float(view_weight[k]), 1.0)
            Hm[s, s] += lam * torch.eye(P, dtype=torch.float64)
            g[s] += lam * (theta[k] - init64[k])
        step = torch.zeros(n_views * P, dtype=torch.float64)
        step[keep_free] = torch.linalg.solve(Hm[keep_free][:, keep_free], -g[keep_free])
        theta = theta + step.reshape(n_views, P)

    final = [t[0] for t in (pair_terms(k, j, jacobian=False) for k, j in pairs) if t is not None]
    r_all = torch.cat(final).numpy() if final else np.zeros(0)
    med_after = float(np.median(np.abs(r_all))) if r_all.size else float("nan")
    n_used = int((_tukey(r_all, sigma, tukey_c) > 0).sum())
    return JointFit(coeffs=theta.to(init.device), degree=degree, residual_before=med_before,
                    residual_after=med_after, samples=n_used)
