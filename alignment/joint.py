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
* Gauss-Newton on the stacked coefficients (a few rounds; each is one small Cholesky solve),
  with the Jacobian of the lifted point's depth in view j, the shift of its projection along
  the epipolar line (translating cameras), and view j's correction. Views in ``fixed`` keep
  their coefficients (the first view: the gauge, it sets the scene's scale).
* Batched: the pairs whose frusta may meet are found first (a separating plane test), all of
  their samples are projected and sampled in one batch of [pairs, samples] tensors, and each
  round's normal matrix is assembled from every pair's [2P,2P] block (a pair's residuals touch
  its two views' coefficients only) computed in a few batched products. The arithmetic is that
  of a pair-by-pair loop (``tests/joint_reference.py`` keeps one to test against).
* A weak prior keeps each view near its initial coefficients where the pairs leave it
  undetermined.

Pure tensor code: cameras are given as intrinsics ``K`` [N,3,3] and ``c2w`` [N,4,4] (OpenCV
axes, see ``dreamer/cameras.py`` and ``docs/architecture.md``).

(Longer than this project's usual 500 lines: :func:`joint_log_corrections` is one Gauss-Newton
loop with robust reweighting, a prior and an acceptance test whose steps share their state; cut
into modules, a reader would lose the order of the steps. The batched projection of the pairs,
:class:`_Views`, serves the fit, the whole-image disagreement and the bend evidence alike. The
fields are in :mod:`alignment.fields`.)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F
from torch import Tensor

from dreamer.checks import check_map, check_mask
from alignment.kernels import _on_cpu, distance_to
from alignment.scale import _robust_sigma, _tukey
from alignment.denoise import pixel_noise
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
# A Gauss-Newton fit stops once its Tukey width is final and no coefficient moves by more than
# this (log units: far below any depth noise).
_CONVERGED = 1e-7



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


def _basis_rows(basis: FieldBasis, u: Tensor, v: Tensor, width, height) -> Tensor:
    """Basis [n,P] float64 at continuous pixel coordinates (centres at +0.5) of images of
    ``width`` x ``height`` (numbers, or [n] tensors: one image size per point)."""
    x = (u.double() / width * 2 - 1).cpu().numpy()
    y = (v.double() / height * 2 - 1).cpu().numpy()
    return torch.from_numpy(basis.matrix(x, y))


def _local_rows(basis: FieldBasis, u: Tensor, v: Tensor, width, height) -> tuple[Tensor, Tensor]:
    """A spline's basis at the points of :func:`_basis_rows` as its 4 x 4 windows
    (:meth:`FieldBasis.local_matrix`): (values [n,16] float64, first coefficient [n] int64)."""
    x = (u.double() / width * 2 - 1).cpu().numpy()
    y = (v.double() / height * 2 - 1).cpu().numpy()
    values, first = basis.local_matrix(x, y)
    return torch.from_numpy(values), torch.from_numpy(first)


def _window(grid: int) -> Tensor:
    """[16]: the offsets of a spline's 4 x 4 window of control points from its first (row-major
    on a ``grid`` x ``grid`` grid), in the order of :meth:`FieldBasis.local_matrix`'s values."""
    quad = torch.arange(4)
    return (quad[:, None] * grid + quad[None, :]).reshape(-1)


def _max_filter(masks: Tensor, radius: int) -> Tensor:
    """[N,H,W] bool: true within ``radius`` pixels (a square) of a true pixel of ``masks`` [N,H,W]
    (the square's maximum is separable: a row pass, then a column pass). On the CPU scipy's running
    maximum, which costs the same at any radius where torch's max-pool grows with it (15x faster at
    a radius of 21 pixels at 512x512); elsewhere (a GPU) torch's, on the masks' device."""
    if not _on_cpu(masks):
        x = masks[:, None].float()
        x = F.max_pool2d(x, (1, 2 * radius + 1), stride=1, padding=(0, radius))
        x = F.max_pool2d(x, (2 * radius + 1, 1), stride=1, padding=(radius, 0))
        return x[:, 0] > 0
    x = masks.detach().numpy().astype(np.uint8)
    x = ndi.maximum_filter1d(x, 2 * radius + 1, axis=2, mode="constant")
    x = ndi.maximum_filter1d(x, 2 * radius + 1, axis=1, mode="constant")
    return torch.from_numpy(x > 0)


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
        if not bool((torch.isfinite(L) | ~m).all()):  # (no gather of the valid pixels)
            raise ValueError(f"log_depths[{i}] must be finite on valid[{i}]")


class _Views:
    """The views' log-depths, cameras and grid samples, in float64 on the CPU.

    The samples of all views are padded into [N, n] arrays, and every pair of views that may
    overlap is projected in one batch ([pairs, n]): pairs whose frusta cannot meet are culled
    first by a separating plane test (:meth:`pairs`), so the work grows with the overlapping
    pairs, and the number of tensor operations does not grow with the views at all."""

    def __init__(self, log_depths, valid, K, c2w, samples_per_view: int):
        self.n = len(log_depths)
        self.K = K.detach().double().cpu()
        self.c2w = c2w.detach().double().cpu()
        self.w2c = torch.linalg.inv(self.c2w)
        self.L = [x.detach().double().cpu() for x in log_depths]
        self.V = [m.detach().cpu() for m in valid]
        # Invalid pixels: a large value, so a bilinear sample touching one is an outlier.
        self.L_safe = [torch.where(m, x, torch.full_like(x, 1e3)) for x, m in zip(self.L, self.V)]
        self.shapes = [tuple(x.shape) for x in self.L]
        # Maps of all views in one [N,...,Hm,Wm] stack (smaller images padded at the bottom and
        # right: a point inside its view never reads the padding).
        self.Hm = max(h for h, _ in self.shapes)
        self.Wm = max(w for _, w in self.shapes)
        self.width = torch.tensor([float(w) for _, w in self.shapes], dtype=torch.float64)
        self.height = torch.tensor([float(h) for h, _ in self.shapes], dtype=torch.float64)
        self.strides = [max(1, int(round((h * w / samples_per_view) ** 0.5))) for h, w in self.shapes]
        grids = [self.grid(k, samples_per_view) for k in range(self.n)]
        m = max(1, max(len(g[0]) for g in grids))

        def pad(k, t, fill=0):
            out = torch.full((m,) + tuple(t.shape[1:]), fill, dtype=t.dtype)
            out[: len(t)] = t
            return out

        # [N, n] per sample: log-depth, world ray (camera z = 1) [N,n,3], pixel centre (u, v),
        # pixel row and column, and whether it is a sample (False: padding).
        self.logz, self.dirs, self.u, self.v, self.rows, self.cols = (
            torch.stack([pad(k, g[i]) for k, g in enumerate(grids)]) for i in range(6))
        self.has = torch.stack([pad(k, torch.ones(len(g[0]), dtype=torch.bool), False) for k, g in enumerate(grids)])
        self._work: Tensor | None = None  # one view's maps at a time (sample_pairs)
        # Each view's frustum (a point strictly inside its image, half a pixel of margin, in
        # front of it) as half-spaces through its centre, in its camera frame: [N,5,3].
        fx, fy, cx, cy = self.K[:, 0, 0], self.K[:, 1, 1], self.K[:, 0, 2], self.K[:, 1, 2]
        zero, one = torch.zeros_like(fx), torch.ones_like(fx)
        self.planes = torch.stack([
            torch.stack([zero, zero, one], -1),
            torch.stack([fx, zero, cx - 0.5], -1),
            torch.stack([-fx, zero, self.width - 0.5 - cx], -1),
            torch.stack([zero, fy, cy - 0.5], -1),
            torch.stack([zero, -fy, self.height - 0.5 - cy], -1),
        ], 1)

    def grid(self, k: int, count: int):
        """(log-depth [n], world ray directions [n,3] with camera z = 1, u [n], v [n], rows [n],
        columns [n]) of view k's valid pixel centres on a regular grid of about ``count`` pixels."""
        H, W = self.L[k].shape
        stride = max(1, int(round((H * W / count) ** 0.5)))
        vv, uu = torch.meshgrid(torch.arange(stride // 2, H, stride), torch.arange(stride // 2, W, stride),
                                indexing="ij")
        keep = self.V[k][vv, uu]
        vv, uu = vv[keep], uu[keep]
        u, v = uu.double() + 0.5, vv.double() + 0.5
        K = self.K[k]
        d_cam = torch.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], torch.ones_like(u)], -1)
        return self.L[k][vv, uu], d_cam @ self.c2w[k, :3, :3].T, u, v, vv, uu

    def pairs(self, log_z: Tensor, active: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The pairs (k, j) [pairs] each, ordered by k then j, whose views may see each other:
        view j may see a point of view k's image at z-depth between the least and the most of
        ``exp(log_z[k])`` ([N,n]; samples only). Those points fill a convex solid with 8 corners,
        and a pair is dropped only when all of them lie outside one of view j's half-spaces (then
        none of them is inside its image). ``active`` [N,N] bool keeps only those pairs."""
        big = torch.tensor(math.inf, dtype=torch.float64)
        lo = torch.where(self.has, log_z, big).amin(1)
        hi = torch.where(self.has, log_z, -big).amax(1)
        ok = self.has.any(1)
        lo, hi = torch.exp(torch.where(ok, lo, 0.0)), torch.exp(torch.where(ok, hi, 0.0))
        u = torch.stack([torch.zeros_like(self.width), self.width, torch.zeros_like(self.width), self.width], 1)
        v = torch.stack([torch.zeros_like(self.height), torch.zeros_like(self.height), self.height, self.height], 1)
        K = self.K
        rays = torch.stack([(u - K[:, 0, 2, None]) / K[:, 0, 0, None], (v - K[:, 1, 2, None]) / K[:, 1, 1, None],
                            torch.ones_like(u)], -1)  # [N,4,3]
        corners = torch.cat([rays * lo[:, None, None], rays * hi[:, None, None]], 1)  # [N,8,3] in camera k
        world = corners @ self.c2w[:, :3, :3].transpose(1, 2) + self.c2w[:, None, :3, 3]
        pc = torch.einsum("jab,kcb->kjca", self.w2c[:, :3, :3], world) + self.w2c[None, :, None, :3, 3]  # [k,j,8,3]
        side = torch.einsum("jpa,kjca->kjpc", self.planes, pc)  # [k,j,5,8]
        near = ~(side <= 0).all(3).any(2) & ok[:, None] & ~torch.eye(self.n, dtype=torch.bool)
        if active is not None:
            near &= active
        kp, jp = torch.nonzero(near, as_tuple=True)
        return kp, jp

    def project_pairs(self, log_z: Tensor, kp: Tensor, jp: Tensor):
        """View kp[p]'s samples (log z-depth ``log_z`` [N,n]) in view jp[p], for each pair p:
        (z in view j [p,n], u [p,n], v [p,n], camera-j coordinates [p,n,3], the rays' directions in
        camera j [p,n,3], inside view j's image [p,n]; False on padding)."""
        R = self.w2c[jp, :3, :3]
        w = torch.bmm(self.dirs[kp], R.transpose(1, 2))  # [p,n,3]
        origin = (R @ self.c2w[kp, :3, 3, None])[:, :, 0] + self.w2c[jp, :3, 3]  # view k's centre in camera j
        pc = origin[:, None, :] + torch.exp(log_z)[kp][:, :, None] * w
        zj = pc[..., 2]
        zs = zj.clamp_min(1e-9)
        K = self.K[jp]
        u = K[:, 0, 0, None] * pc[..., 0] / zs + K[:, 0, 2, None]
        v = K[:, 1, 1, None] * pc[..., 1] / zs + K[:, 1, 2, None]
        inside = (self.has[kp] & (zj > 1e-9) & (u > 1.0) & (u < self.width[jp, None] - 1.0) & (v > 1.0)
                  & (v < self.height[jp, None] - 1.0))
        return zj, u, v, pc, w, inside

    def _write_maps(self, j: int, extra: Tensor | None, out: Tensor) -> None:
        """View j's maps, its log-depth (plus ``extra`` [H_j,W_j] when given) and its central
        differences along u and v (one bilinear sample of these is a sample of the log-depth and
        its slope), written into ``out`` [3,Hm,Wm] (its padding left as it is)."""
        H, W = self.shapes[j]
        L = out[0, :H, :W]
        if extra is None:
            L.copy_(self.L_safe[j])
        else:
            torch.add(self.L_safe[j], extra, out=L)
        # Central differences, the border continued by its nearest pixel (one-sided there),
        # written in place.
        _central_difference(L, out[1, :H, :W], 1)
        _central_difference(L, out[2, :H, :W], 0)

    def sample_pairs(self, jp: Tensor, u: Tensor, v: Tensor, extra: Sequence[Tensor] | None = None):
        """Bilinear samples of views ``jp``' maps (:meth:`_write_maps`; with ``extra``, [H_j,W_j] per
        view, those of the log-depths plus ``extra``) at (u, v) [p,n]: (smooth [p,n], log-depth, gu,
        gv). Smooth: off a depth edge (a bilinear sample on one mixes two surfaces)."""
        g = torch.stack([u / self.Wm * 2 - 1, v / self.Hm * 2 - 1], dim=-1)
        # View by view: every pair that lands in view j samples its maps in one call (the samples
        # are independent: the same values as one call on a stack of every view's maps at jp,
        # without copying a view's maps once per pair, [pairs,3,H,W]: 0.26 GB at 512x512). Each
        # view's maps are made in turn in the views' one work map: a stack of all views' maps is
        # fresh pages (44 MB with 7 views at 512x512) that cost more to fault in than the maps
        # cost to make again.
        if self._work is None:
            self._work = torch.zeros(1, 3, self.Hm, self.Wm, dtype=torch.float64)
        same = all(shape == (self.Hm, self.Wm) for shape in self.shapes)  # no padding to clear
        s = torch.empty(len(jp), 3, g.shape[1], dtype=torch.float64)
        for j in torch.unique(jp).tolist():
            at = torch.nonzero(jp == j).squeeze(1)
            if not same:
                self._work.zero_()
            self._write_maps(j, None if extra is None else extra[j], self._work[0])
            s[at] = F.grid_sample(self._work, g[at].reshape(1, -1, 1, 2), mode="bilinear", padding_mode="border",
                                  align_corners=False)[0, :, :, 0].reshape(3, len(at), -1).transpose(0, 1)
        Lj, gu, gv = s.unbind(1)
        return (gu.abs() < _EDGE_LOG_STEP) & (gv.abs() < _EDGE_LOG_STEP), Lj, gu, gv


def _central_difference(L: Tensor, out: Tensor, dim: int) -> None:
    """``out`` [H,W] = (L[i + 1] - L[i - 1]) / 2 along ``dim`` of ``L`` [H,W], L's border continued
    by its nearest pixel (there (L[1] - L[0]) / 2 and (L[-1] - L[-2]) / 2)."""
    n = L.shape[dim]
    if n < 2:
        out.zero_()
        return
    torch.sub(L.narrow(dim, 2, n - 2), L.narrow(dim, 0, n - 2), out=out.narrow(dim, 1, n - 2))
    torch.sub(L.narrow(dim, 1, 1), L.narrow(dim, 0, 1), out=out.narrow(dim, 0, 1))
    torch.sub(L.narrow(dim, n - 1, 1), L.narrow(dim, n - 2, 1), out=out.narrow(dim, n - 1, 1))
    out.div_(2)


def _distortion_from_data(residuals: np.ndarray, views: "_Views", sigma_floor: float) -> float:
    """The prior on a view's variation, from the data: the pair residuals left after fitting a
    level per view, less what the two views' pixel noise explains (residuals compare two
    noisy pixels: twice the noise variance)."""
    total = _robust_sigma(residuals, sigma_floor) ** 2
    noise = float(np.median([pixel_noise(L, V) for L, V in zip(views.L, views.V)])) ** 2
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
    kp, jp = views.pairs(views.logz)
    zj, u, v, _, _, inside = views.project_pairs(views.logz, kp, jp)
    smooth, Lj, _, _ = views.sample_pairs(jp, u, v)
    ok = inside & smooth
    enough = ok.sum(1) >= 4 * _MIN_PAIR_SAMPLES
    r_all = (torch.log(zj.clamp_min(1e-300)) - Lj).numpy()
    x_all = (views.u / views.width[:, None] * 2 - 1).numpy()
    y_all = (views.v / views.height[:, None] * 2 - 1).numpy()
    quad, const = 0.0, 0.0
    for p in torch.nonzero(enough).squeeze(1).tolist():
        k, sel = int(kp[p]), ok[p].numpy()
        r = r_all[p][sel]
        r = r - np.median(r)
        keep = np.abs(r) < cap
        x = x_all[k][sel][keep]
        y = y_all[k][sel][keep]
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
    return _disagreement(views, [f.detach().double().cpu() for f in fields], hidden, cap)


def _disagreement(views: _Views, fields: Sequence[Tensor] | None, hidden: float = _HIDDEN,
                  cap: float = _CAP) -> Tensor:
    """:func:`view_disagreement` of ``views`` (their grid samples) with ``fields`` [H_k,W_k] float64
    (None: no correction; the views' own maps serve, no maps of the log-depths plus zeros)."""
    log_z = views.logz
    if fields is not None:
        log_z = log_z + torch.stack([torch.where(views.has[k], fields[k][views.rows[k], views.cols[k]], 0.0)
                                     for k in range(views.n)])
    kp, jp = views.pairs(log_z)
    zj, u, v, _, _, inside = views.project_pairs(log_z, kp, jp)
    smooth, Lj, _, _ = views.sample_pairs(jp, u, v, fields)
    r = torch.log(zj.clamp_min(1e-300)) - Lj
    seen = inside & smooth & (r < hidden)
    total = torch.zeros(views.n, dtype=torch.float64).index_add_(
        0, kp, torch.where(seen, r.abs().clamp_max(cap), 0.0).sum(1))
    count = torch.zeros(views.n, dtype=torch.long).index_add_(0, kp, seen.sum(1))
    return torch.where(count >= _MIN_PAIR_SAMPLES, total / count.clamp_min(1), float("nan"))


@dataclass(frozen=True)
class _Links:
    """The pairs' samples, linearized at ``theta0``: for each pair p (view kp[p]'s samples seen
    in view jp[p]), up to n rows [p,n]: the sample's index in view k, where it falls in view j
    (u, v), its residual ``r0`` and its Jacobian ``X``. Rows where ``ok`` is False are padding
    (zero residual and Jacobian).

    ``X`` is [p,n,2P] over all coefficients of views k (the first P) and j, or, with ``first``
    (a spline on a ``grid`` x ``grid`` grid), [p,n,32] over the 4 x 4 windows of control points
    that hold a row's non-zero columns (:func:`_window`): ``first`` [p,n,2] is each window's first
    coefficient in view k and in view j. A spline row touches 32 of the pair's 2P columns; the
    dense form would be mostly zeros (72 columns with 6 x 6 points)."""

    kp: Tensor
    jp: Tensor
    sample: Tensor
    ok: Tensor
    u: Tensor
    v: Tensor
    r0: Tensor
    X: Tensor
    theta0: Tensor
    first: Tensor | None = None
    grid: int = 0

    @property
    def rows(self) -> int:
        return int(self.ok.sum())

    def residuals(self, theta: Tensor) -> Tensor:
        """The residuals [p,n] at ``theta``, to first order about ``theta0`` (0 on padding)."""
        d = theta - self.theta0
        if self.first is None:
            step = torch.cat([d[self.kp], d[self.jp]], 1)[:, :, None]  # [p,2P,1]
            return self.r0 + torch.bmm(self.X, step)[:, :, 0]
        # Column by column of the windows (no [p,n,32] gathers: fresh pages that cost more than
        # the products).
        P, flat, window = d.shape[1], d.reshape(-1), _window(self.grid).tolist()
        out = self.r0.clone()
        for side, views in enumerate((self.kp, self.jp)):
            first = views[:, None] * P + self.first[:, :, side]  # [p,n]
            for i, offset in enumerate(window):
                out += self.X[:, :, 16 * side + i] * flat[first + offset]
        return out

    def select(self, active: Tensor) -> "_Links":
        """The pairs (k, j) with ``active[k, j]`` ([N,N] bool)."""
        keep = active[self.kp, self.jp]
        if bool(keep.all()):
            return self
        return dataclasses.replace(
            self, **{name: None if getattr(self, name) is None else getattr(self, name)[keep]
                     for name in ("kp", "jp", "sample", "ok", "u", "v", "r0", "X", "first")})

    def moved(self, theta: Tensor) -> "_Links":
        """The same linearization, its residuals evaluated at ``theta`` (exact for residuals that
        are linear in the coefficients)."""
        if torch.equal(theta, self.theta0):
            return self
        return dataclasses.replace(self, r0=self.residuals(theta), theta0=theta.clone())


def _row_groups(lin: _Links, P: int) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
    """The rows of ``lin`` (P coefficients per view) for the normal equations, as groups that
    touch the same few coefficients, each group's rows padded to its bucket's largest (groups
    within a factor 2 of each other's sizes share a bucket). With a local Jacobian (a cubic
    spline, ``lin.first``) each pair's rows are split by their windows in both views: a
    group's rows lie in one cell of each view and touch 16 + 16 of the pair's 72 coefficients
    (6 x 6 points); otherwise (a polynomial) a group is a pair. Per bucket: (ok [g,m] bool: a
    row, not padding; r0 [g,m]; X [g,m,w+1], the Jacobian's columns that may be non-zero on a row
    of the group (a spline: the 4 x 4 control points of its cell in each view, w = 32; a column
    none of its rows touches adds zeros to the normal equations), zero on padding, and a last
    column of zeros (the Gauss-Newton rounds write the residuals there); cols [g,w], their index
    in the [N*P] stacked coefficients)."""
    block = torch.arange(P)
    if lin.first is None:  # the pairs as they are (their usable rows come first), of similar sizes together
        n = lin.ok.sum(1)
        by_rows = torch.argsort(n, descending=True, stable=True)
        sizes = n[by_rows].tolist()
        out, start = [], 0
        for i in range(1, len(sizes) + 1):
            if i == len(sizes) or sizes[i] < sizes[start] / 2:
                idx, m = by_rows[start:i], sizes[start]
                cols = torch.cat([lin.kp[idx, None] * P + block, lin.jp[idx, None] * P + block], 1)
                X = torch.cat([lin.X[idx, :m], torch.zeros(len(idx), m, 1, dtype=torch.float64)], 2)
                out.append((lin.ok[idx, :m], lin.r0[idx, :m], X, cols))
                start = i
        return out
    pi, ni = torch.nonzero(lin.ok, as_tuple=True)
    r0 = lin.r0[pi, ni]
    # The first coefficient of each row's window in view k and in view j.
    first_k, first_j = lin.first[pi, ni].unbind(1)
    key = (pi * P + first_k) * P + first_j
    keys, group = torch.unique(key, return_inverse=True)
    counts = torch.bincount(group, minlength=len(keys))
    order = torch.argsort(group, stable=True)  # rows group by group, in their order
    pos = torch.empty_like(order)
    pos[order] = torch.arange(len(order)) - (torch.cumsum(counts, 0) - counts)[group[order]]
    # A group's rows share their windows of 4 x 4 control points in both views, which hold every
    # coefficient they touch (a column that none of them touches adds zeros only).
    window = _window(lin.grid)
    pair = keys // (P * P)
    local_cols = torch.cat([(keys // P % P)[:, None] + window, P + (keys % P)[:, None] + window], 1)
    full = torch.cat([lin.kp[pair, None] * P + block, lin.jp[pair, None] * P + block], 1)  # [groups,2P]
    by_count = torch.argsort(counts, descending=True, stable=True)
    sizes = counts[by_count].tolist()
    slot = torch.empty_like(counts)
    out, start = [], 0
    for i in range(1, len(sizes) + 1):
        if i == len(sizes) or sizes[i] < sizes[start] / 2:
            gs, m = by_count[start:i], sizes[start]
            member = torch.zeros(len(keys), dtype=torch.bool)
            member[gs] = True
            slot[gs] = torch.arange(len(gs))
            rows = torch.nonzero(member[group]).squeeze(1)
            at = (slot[group[rows]], pos[rows])
            ok = torch.zeros(len(gs), m, dtype=torch.bool)
            ok[at] = True
            r = torch.zeros(len(gs), m, dtype=torch.float64)
            r[at] = r0[rows]
            Xg = torch.zeros(len(gs), m, 2 * 16 + 1, dtype=torch.float64)
            Xg[:, :, :-1][at] = lin.X[pi[rows], ni[rows]]
            out.append((ok, r, Xg, torch.gather(full[gs], 1, local_cols[gs])))
            start = i
    return out


def _solve_spd(A: Tensor, b: Tensor) -> Tensor:
    """A^-1 b for a symmetric positive definite A (normal equations plus a prior): Cholesky;
    least squares if A is singular despite the prior (degenerate input)."""
    L, info = torch.linalg.cholesky_ex(A)
    if int(info) == 0:
        return torch.cholesky_solve(b[:, None], L)[:, 0]
    return torch.linalg.lstsq(A, b[:, None]).solution[:, 0]


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
    NP = n_views * P
    init64 = init.detach().double().cpu().clone()
    prior = torch.from_numpy(basis.prior_precision(_LEVELS_ONLY if distortion is None else distortion, level))
    # The basis at every sample [N,n,P] (0 on padding); a spline's also as the 4 x 4 window of
    # each sample ([N,n,16] values, [N,n] first coefficients): its rows of the Jacobian.
    basis_k = torch.stack([_basis_rows(basis, views.u[k], views.v[k], views.shapes[k][1], views.shapes[k][0])
                           for k in range(n_views)]) * views.has[:, :, None]
    local = basis.kind == "spline"
    if local:
        windows = [_local_rows(basis, views.u[k], views.v[k], views.shapes[k][1], views.shapes[k][0])
                   for k in range(n_views)]
        local_k = torch.stack([w for w, _ in windows])
        first_k = torch.stack([f for _, f in windows])
        window = _window(basis.size)
    no_pair = torch.eye(n_views, dtype=torch.bool)

    def linearize(theta: Tensor, active: Tensor) -> _Links:
        """The samples of the pairs (k, j) with ``active[k, j]`` that keep enough samples at
        ``theta``: residuals and Jacobians."""
        log_z = views.logz + torch.bmm(basis_k, theta[:, :, None])[:, :, 0]
        kp, jp = views.pairs(log_z, active)
        zj, u, v, pc, w, inside = views.project_pairs(log_z, kp, jp)
        smooth, Lj, gu, gv = views.sample_pairs(jp, u, v)
        ok = inside & smooth
        n_ok = ok.sum(1)
        enough = n_ok >= _MIN_PAIR_SAMPLES
        kp, jp, ok, n_ok = kp[enough], jp[enough], ok[enough], n_ok[enough]
        # Each pair's usable samples first (in their order), cut to the longest pair's count.
        width = int(n_ok.max()) if n_ok.numel() else 0
        order = torch.argsort((~ok).to(torch.uint8), dim=1, stable=True)[:, :width]
        ok = torch.gather(ok, 1, order)
        zj, u, v, Lj, gu, gv = (torch.gather(t[enough], 1, order) for t in (zj, u, v, Lj, gu, gv))
        pc, w = (torch.gather(t[enough], 1, order[:, :, None].expand(-1, -1, 3)) for t in (pc, w))
        zk = torch.gather(torch.exp(log_z)[kp], 1, order)
        at = kp[:, None] * basis_k.shape[1] + order  # [pairs,width]: the samples in view k's rows
        jj = jp[:, None].expand(-1, width)[ok]
        if local:  # each row's windows of control points in view k and view j
            Bk = local_k.reshape(-1, 16)[at]
            Bj = torch.zeros(len(kp), width, 16, dtype=torch.float64)
            first = torch.zeros(len(kp), width, 2, dtype=torch.long)
            first[:, :, 0] = first_k.reshape(-1)[at]
            Bj[ok], first[:, :, 1][ok] = _local_rows(basis, u[ok], v[ok], views.width[jj], views.height[jj])
        else:
            Bk = basis_k.reshape(-1, P)[at]  # [pairs,width,P]
            Bj = torch.zeros(len(kp), width, P, dtype=torch.float64)
            Bj[ok] = _basis_rows(basis, u[ok], v[ok], views.width[jj], views.height[jj])
        zs = torch.where(ok, zj, 1.0)
        # (At zero coefficients, as every fit starts, view j's correction is 0: no [pairs,width,P] product.)
        r = torch.log(zs) - Lj
        if bool(theta.any()):
            theta_j = (theta.reshape(-1)[(jp[:, None, None] * P + first[:, :, 1:]) + window] if local
                       else theta[jp][:, None, :])  # [pairs,width,16 or P]
            r = torch.log(zs) - (Lj + (Bj * theta_j).sum(2))
        # d r / d log z_k: the point moves along view k's ray, pc = t' + z_k w (w = R dirs); its
        # depth in view j changes, and its projection slides along the epipolar line over view
        # j's depth map (zero for a pure rotation).
        fx, fy = views.K[jp, 0, 0, None], views.K[jp, 1, 1, None]
        du = fx * zk * (w[..., 0] * zs - pc[..., 0] * w[..., 2]) / zs**2
        dv = fy * zk * (w[..., 1] * zs - pc[..., 1] * w[..., 2]) / zs**2
        slope = zk * w[..., 2] / zs - (gu * du + gv * dv)
        w = Bk.shape[2]
        X = torch.empty(len(kp), width, 2 * w, dtype=torch.float64)  # [slope Bk, -Bj], 0 on padding
        torch.mul(torch.where(ok, slope, 0.0)[:, :, None], Bk, out=X[:, :, :w])
        torch.neg(Bj, out=X[:, :, w:])
        return _Links(kp, jp, order, ok, u, v, torch.where(ok, r, 0.0), X, theta.clone(),
                      first if local else None, basis.size if local else 0)

    # Pairs that overlap (checked once, at the initial coefficients; the first fit starts from
    # this linearization).
    free0 = [not f for f in fixed]
    free_t = torch.tensor(free0)
    links = linearize(init64, (free_t[:, None] | free_t[None, :]) & ~no_pair)
    nan = torch.full((n_views,), float("nan"), dtype=torch.float64)
    unclamped = torch.tensor([[-math.inf, math.inf]] * n_views, dtype=torch.float64)
    if not links.rows:
        return JointFit(init64.to(init.device), basis, unclamped, float("nan"), float("nan"), 0, nan, nan,
                        tuple(False for _ in range(n_views)), 0, torch.zeros(n_views, dtype=torch.float64),
                        tuple(None for _ in range(n_views)), float("nan") if distortion is None else distortion)
    pairs = torch.zeros(n_views, n_views, dtype=torch.bool)
    pairs[links.kp, links.jp] = True
    r_all = links.r0[links.ok].numpy()
    med_before = float(np.median(np.abs(r_all)))
    sigma0 = _robust_sigma(r_all, sigma_floor)
    last = [links]

    # Cameras that share one centre (a pan, a turn) see a point at the same pixel whatever its
    # depth, and its depth in view j is its depth in view k times a factor: the residuals are
    # exactly linear in the coefficients, and one linearization serves the whole fit.
    centres = views.c2w[:, :3, 3]
    one_centre = bool(((centres - centres[:1]).norm(dim=1) <= 1e-9 * (1 + centres.norm(dim=1))).all())

    def relinearize(theta: Tensor, free: list[bool]) -> _Links:
        """The pairs with a free view, linearized at ``theta`` (the last linearization, moved,
        when it serves: one camera centre, or the same coefficients)."""
        free_t = torch.tensor(free)
        active = pairs & (free_t[:, None] | free_t[None, :])
        if one_centre or torch.equal(theta, last[0].theta0):
            lin = last[0].select(active).moved(theta)
        else:
            lin = linearize(theta, active)
        last[0] = lin
        return lin

    prior_all = torch.block_diag(*([prior] * n_views))

    def gauss_newton(theta: Tensor, free: list[bool]) -> tuple[Tensor, float, int]:
        """Robust Gauss-Newton on the free views; (coefficients, last sigma, rounds run).

        The pairs are projected once, at the start: the residuals are linear in the coefficients
        about there (exactly so for rotating cameras, whose projections do not move with depth;
        to first order along the epipolar lines of translating ones), so each IRLS round is
        only weighted normal equations. Each pair's rows touch the coefficients of its two
        views only, and with a spline only those of the cells they lie in: each group of rows
        (:func:`_row_groups`) adds its small block of the normal matrix (groups of similar sizes
        in one batched product) at those coefficients' rows and columns. The rounds stop early once
        the Tukey width has reached its final value and no coefficient moves by more than
        ``_CONVERGED``. Callers run it again from its result (the fit with the prior, the
        refits of the acceptance test), which re-linearizes translating cameras."""
        sigma, rounds = sigma0, 0
        if not any(free):
            return theta, sigma, 0
        lin = relinearize(theta, free)
        if not lin.rows:  # every pair lost its overlap at these coefficients: stop here
            return theta, sigma, 0
        at = torch.nonzero(torch.tensor(free).repeat_interleave(P)).squeeze(1)
        parts = []
        for ok, r0, Xr, cols in _row_groups(lin, P):
            # (Xr: the rows' Jacobian and a column for their residuals. Y, the weighted rows, and YY,
            # their products, are written in place each round: fresh maps each round were fresh
            # pages, the largest share of the orbit's fits' system time.)
            parts.append((ok, r0, cols, (cols[:, :, None] * NP + cols[:, None, :]).reshape(-1), Xr,
                          torch.empty_like(Xr), torch.empty(len(Xr), Xr.shape[2], Xr.shape[2], dtype=torch.float64)))
        for it in range(iterations):
            c = tukey_c * _ANNEAL[min(it, len(_ANNEAL) - 1)]
            Hm = torch.zeros(NP * NP, dtype=torch.float64)
            g = torch.zeros(NP, dtype=torch.float64)
            used = []
            for ok, r0, cols, flat, xr, Y, YY in parts:
                d = (theta - lin.theta0).reshape(-1)[cols]  # [groups,w]: the change of the group's coefficients
                r = r0 + torch.bmm(xr[:, :, :-1], d[:, :, None])[:, :, 0]
                xr[:, :, -1] = r
                # IRLS: weights from the current residuals, their scale from the previous round's.
                # [X r] scaled by the weights' square roots: one product gives X'WX and X'Wr.
                root = torch.from_numpy(np.sqrt(_tukey(r.numpy(), sigma, c))) * ok / sigma
                torch.mul(xr, root[:, :, None], out=Y)
                blocks = torch.bmm(Y.transpose(1, 2), Y, out=YY)[:, :-1]  # [groups,w,w+1]
                Hm.index_add_(0, flat, blocks[:, :, :-1].reshape(-1))
                g.index_add_(0, cols.reshape(-1), blocks[:, :, -1].reshape(-1))
                used.append(r[ok])
            Hm = Hm.view(NP, NP) + prior_all
            g = g + ((theta - init64) @ prior).reshape(-1)
            rounds += 1
            sigma = _robust_sigma(torch.cat(used).numpy(), sigma_floor)
            step = torch.zeros(NP, dtype=torch.float64)
            step[at] = _solve_spd(Hm[at][:, at], -g[at])
            theta = theta + step.reshape(n_views, P)
            if it + 1 >= len(_ANNEAL) and float(step.abs().max()) < _CONVERGED:
                break
        return theta, sigma, rounds

    radius = [max(2 * views.strides[k], round(0.02 * max(views.shapes[k]))) for k in range(n_views)]

    def raw_fields(theta: Tensor) -> list[Tensor]:
        return [basis.field(theta[k], *views.shapes[k]) for k in range(n_views)]

    def limits(raw: list[Tensor], free: list[bool]) -> tuple[Tensor, Tensor, list[Tensor | None]]:
        """For each free view: the range of its correction (``raw``, [H,W] per view) on its
        support (the pixels that another view sees), its mean there (its level), and the weight
        [H,W] with which its variation around that level is kept elsewhere (1 on the support,
        fading with the distance from it); None for a view without support."""
        seen = torch.zeros(n_views, views.Hm, views.Wm, dtype=torch.bool)
        # Where the pairs' samples fell at the last linearization (the same positions as at
        # ``theta`` for rotating cameras, a fraction of a pixel away for translating ones).
        lin = last[0]
        if lin.rows:
            ok = lin.ok
            k = lin.kp[:, None].expand_as(ok)[ok]
            i = lin.sample[ok]
            seen[k, views.rows[k, i], views.cols[k, i]] = True
            j = lin.jp[:, None].expand_as(ok)[ok]
            vj = torch.minimum(lin.v[ok].long(), views.height[j].long() - 1).clamp_min(0)
            uj = torch.minimum(lin.u[ok].long(), views.width[j].long() - 1).clamp_min(0)
            seen[j, vj, uj] = True
        has = [free[k] and bool(seen[k].any()) for k in range(n_views)]
        near: list = [None] * n_views
        for rad in sorted({radius[k] for k in range(n_views) if has[k]}):
            ks = [k for k in range(n_views) if has[k] and radius[k] == rad]
            # Samples are a grid, and none lie on depth edges: the support is what they cover, gaps closed.
            for k, m in zip(ks, _max_filter(seen[ks], rad)):
                near[k] = m[: views.shapes[k][0], : views.shapes[k][1]]
        clamp, level, weights = unclamped.clone(), torch.zeros(n_views, dtype=torch.float64), []
        for k in range(n_views):
            H, W = views.shapes[k]
            if not has[k]:
                weights.append(None)
                continue
            vals = raw[k][near[k] & views.V[k]]
            if vals.numel() == 0:
                weights.append(None)
                continue
            clamp[k, 0], clamp[k, 1] = float(vals.min()), float(vals.max())
            level[k] = float(vals.mean())
            dist = distance_to(near[k])
            weights.append(torch.exp(-dist / (fade * max(H, W))))
        return clamp, level, weights

    def fields(raw: list[Tensor], lim) -> list[Tensor]:
        clamp, level, weights = lim
        out = []
        for k in range(n_views):
            f = raw[k].clamp(float(clamp[k, 0]), float(clamp[k, 1]))
            if weights[k] is not None:
                f = level[k] + (f - level[k]) * weights[k]
            out.append(f)
        return out

    no_limits = (unclamped, torch.zeros(n_views, dtype=torch.float64), [None] * n_views)
    free = list(free0)
    theta, sigma, rounds = gauss_newton(init64.clone(), free)
    if distortion is None:  # the fit above allowed levels only: what is left beyond noise is distortion
        distortion = _LEVELS_ONLY
        if last[0].rows:
            distortion = _distortion_from_data(last[0].residuals(theta)[last[0].ok].numpy(), views, sigma_floor)
            prior = torch.from_numpy(basis.prior_precision(distortion, level))
            prior_all = torch.block_diag(*([prior] * n_views))
            theta, sigma, more = gauss_newton(theta, free)
            rounds += more
    raw = raw_fields(theta)
    lim = limits(raw, free)
    # (Zero coefficients, as the refinement starts: a field of zeros, so the views' maps as they are.)
    before = _disagreement(views, fields(raw_fields(init64), no_limits) if bool(init64.any()) else None)
    after = _disagreement(views, fields(raw, lim))
    while accept:
        worse = [k for k in range(n_views) if free[k] and after[k] == after[k] and after[k] > before[k]]
        if not worse:
            break
        k = max(worse, key=lambda i: float(after[i] - before[i]))
        free[k] = False
        theta[k] = init64[k]
        theta, sigma, more = gauss_newton(theta, free)
        rounds += more
        raw = raw_fields(theta)
        lim = limits(raw, free)
        after = _disagreement(views, fields(raw, lim))

    r_all = last[0].residuals(theta)[last[0].ok].numpy()
    med_after = float(np.median(np.abs(r_all))) if r_all.size else float("nan")
    n_used = int((_tukey(r_all, sigma, tukey_c) > 0).sum())
    clamp, level, weights = lim
    return JointFit(coeffs=theta.to(init.device), basis=basis, clamp=clamp, residual_before=med_before,
                    residual_after=med_after, samples=n_used, agreement_before=before, agreement_after=after,
                    accepted=tuple(free), rounds=rounds, level=level, weights=tuple(weights), distortion=distortion)
