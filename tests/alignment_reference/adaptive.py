"""Depth alignment that chooses its own complexity, view by view, on held-out overlap pixels.

A monocular depth estimate is wrong by a scale and, depending on the model and the picture, by
a shift in depth, an affine error in disparity, a tilt or bend across the image, errors per
object, or waves no low-order model describes. No fixed model fits all of these: a trend that
removes a bend extrapolates wildly when the error is a wave, and a disparity shift fitted to a
smooth distortion bends the far pixels. So each view picks its correction by how well the
candidates *predict* overlap pixels they were not fitted on, choosing the ones that imitate the
real task: the known pixels nearest the hole (the *band*), predicted from the known pixels
beyond it.

1. Global model, chosen from :data:`GLOBAL_MODELS` (log-correction ``c`` of the estimate ``e``):
   ``scale`` (c constant), ``depth`` (``s e + t``), ``disparity`` (``1 / (a/e + b)``), ``tilt``
   and ``bend`` (a log-polynomial of degree 1 or 2 in image coordinates). Each is a robust
   (Tukey) least-squares fit of ``log(reference / e)``. Each candidate is fitted on the known
   pixels beyond the band and scored on the band (mean absolute log error, each pixel's error
   capped so an occluded pixel counts like any other gross error). The simplest candidate
   within a small tolerance of the best score wins, so the choice shrinks to a plain scale
   unless the overlap clearly supports more. The chosen model is refitted on every known pixel.
2. Clamp: the correction of the chosen model on the hole is clamped to the range it takes on
   the known pixels: a fitted trend or shift is never extrapolated beyond what the overlap saw.
3. Seam correction (:func:`alignment.seam.seam_correction`) of the remaining log-ratio, so the
   new surface meets the existing one at the seam. Its reach is chosen the same way: a
   correction that fades over a short or long distance from the seam, or harmonic (no fading),
   each scored on the band, predicted from beyond it.

The plain scale is always a candidate and the choice is made on held-out pixels, so the result
is never worse on them than the scale fit alone. When the overlap is too small to hold a band
out, the plain scale and the harmonic seam correction are used.

Pure tensor code; depth maps float [H,W], masks bool [H,W].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.ndimage as ndi
import torch
from torch import Tensor

from .scale import ScaleFit, _dot, _robust_sigma, _tukey, fit_scale
from .seam import _seam_jump, check_alignment_inputs, edge_links, seam_correction
from alignment.trend import design_matrix

__all__ = ["GLOBAL_MODELS", "SEAM_REACHES", "AdaptiveAlignment", "GlobalCorrection", "align_adaptive"]

GLOBAL_MODELS = ("scale", "depth", "disparity", "tilt", "bend")
"""Candidate global corrections, simplest first."""

SEAM_REACHES = (0.05, 0.2, None)
"""Candidate decay lengths of the seam correction, as fractions of the image's larger side
(None: harmonic, no decay)."""

# Fewest pixels a fit (and a score) needs.
_MIN_FIT = 64
# Most pixels a global fit reads (a regular subsample: the models are smooth).
_MAX_SAMPLES = 20_000
# Errors in log units are capped at this when scoring (an occluded pixel is an error, whatever its size).
_SCORE_CAP = 0.25
# Ridge on the non-constant terms of the log-polynomial trends (relative to the total weight).
_TREND_RIDGE = 0.005
# Known pixels whose log-ratio to the plain scale fit is beyond this are not seam anchors (a
# point that overhangs a silhouette: the reference sees the foreground, the estimate the
# background behind it).
_ANCHOR_TOLERANCE = 0.25
# Validation solves of the seam correction run on a grid of about this many pixels across.
_VALIDATION_SIZE = 64


@dataclass(frozen=True, eq=False)
class AdaptiveAlignment:
    """The result of :func:`align_adaptive`.

    Attributes:
        depth: [H,W] aligned z-depth: the estimate times ``exp(correction)``.
        correction: [H,W] float64 log-correction (global model, clamped, plus the seam field).
        model: the chosen global model (a name of :data:`GLOBAL_MODELS`).
        global_correction: the chosen global model as fitted on every known pixel
            (:class:`GlobalCorrection`; the correction before the seam correction).
        seam_reach: the chosen decay length of the seam correction in pixels (None: harmonic).
        seam_edges: whether the seam correction was kept from flowing across depth edges.
        fit: the plain robust scale fit on the known pixels (for statistics).
        scores: held-out score per candidate (mean capped |log error| on the band), global
            models by name and seam reaches as ``"seam <reach>"``; empty without a band.
        band_pixels: known pixels held out for the scores (0: none).
        seam_jump_before, seam_jump_after: median relative seam jump of the scaled estimate and
            of ``depth`` (see :func:`alignment.seam.seam_jump`).
    """

    depth: Tensor
    correction: Tensor
    model: str
    global_correction: GlobalCorrection
    seam_reach: float | None
    seam_edges: bool
    fit: ScaleFit
    scores: dict = field(default_factory=dict)
    band_pixels: int = 0
    seam_jump_before: float = float("nan")
    seam_jump_after: float = float("nan")


# ----------------------------------------------------------------------------- global models


def _weighted_lstsq(A: np.ndarray, b: np.ndarray, w: np.ndarray, ridge: np.ndarray | None = None) -> np.ndarray | None:
    Aw = A * w[:, None]
    lhs = np.einsum("ni,nj->ij", Aw, A)  # not BLAS: see alignment.scale._dot
    if ridge is not None:
        lhs = lhs + np.diag(ridge * w.sum())
    try:
        return np.linalg.solve(lhs, np.einsum("ni,n->i", Aw, b))
    except np.linalg.LinAlgError:
        return None


class _Model:
    """A global correction: ``fit`` on samples, ``log_correction`` anywhere, ``params`` to store it."""

    name = ""
    params: tuple[float, ...] = ()

    def fit(self, log_e: np.ndarray, ell: np.ndarray, x: np.ndarray, y: np.ndarray) -> bool:
        raise NotImplementedError

    def log_correction(self, log_e: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def _irls(residual_fn, solve_fn, start, iterations: int = 8, tukey_c: float = 4.685):
    """Iteratively re-weighted least squares with Tukey weights: ``solve_fn(weights)`` -> params."""
    params = start
    for _ in range(iterations):
        res = residual_fn(params)
        w = _tukey(res, _robust_sigma(res, 1e-6), tukey_c)
        if w.sum() <= 0:
            break
        new = solve_fn(w)
        if new is None:
            return None
        params = new
    return params


class _Scale(_Model):
    name = "scale"

    def fit(self, log_e, ell, x, y):
        c0 = float(np.median(ell))
        c = _irls(lambda p: ell - p, lambda w: float(_dot(w, ell) / w.sum()), c0)
        self.params = (c0 if c is None else float(c),)
        return True

    def log_correction(self, log_e, x, y):
        return np.full_like(log_e, self.params[0])


class _Trend(_Model):
    def __init__(self, degree: int):
        self.degree = degree
        self.name = "tilt" if degree == 1 else "bend"

    def fit(self, log_e, ell, x, y):
        A = design_matrix(x, y, self.degree)
        ridge = np.full(A.shape[1], _TREND_RIDGE)
        ridge[0] = 0.0
        start = np.zeros(A.shape[1])
        start[0] = float(np.median(ell))
        beta = _irls(lambda b: ell - A @ b, lambda w: _weighted_lstsq(A, ell, w, ridge), start)
        if beta is None:
            return False
        self.params = tuple(float(b) for b in beta)
        return True

    def log_correction(self, log_e, x, y):
        return design_matrix(x, y, self.degree) @ np.asarray(self.params)


class _DepthAffine(_Model):
    """``d = s e + t``, fitted with relative residuals ``(s e + t - r) / r``."""

    name = "depth"

    def fit(self, log_e, ell, x, y):
        e = np.exp(log_e)
        r = np.exp(log_e + ell)
        A = np.stack([e / r, 1.0 / r], 1)
        b = np.ones_like(r)
        start = np.array([math.exp(float(np.median(ell))), 0.0])
        p = _irls(lambda p: A @ p - b, lambda w: _weighted_lstsq(A, b, w), start)
        if p is None or not p[0] > 0:
            return False
        self.params = (float(p[0]), float(p[1]))
        return True

    def log_correction(self, log_e, x, y):
        s, t = self.params
        e = np.exp(log_e)
        return np.log(np.maximum(s * e + t, 1e-3 * s * e) / e)


class _DisparityAffine(_Model):
    """``1/d = a/e + b``, fitted with relative residuals in disparity ``(a/e + b) r - 1``."""

    name = "disparity"

    def fit(self, log_e, ell, x, y):
        r = np.exp(log_e + ell)
        A = np.stack([r * np.exp(-log_e), r], 1)
        b = np.ones_like(r)
        start = np.array([math.exp(-float(np.median(ell))), 0.0])
        p = _irls(lambda p: A @ p - b, lambda w: _weighted_lstsq(A, b, w), start)
        if p is None or not p[0] > 0:
            return False
        self.params = (float(p[0]), float(p[1]))
        return True

    def log_correction(self, log_e, x, y):
        a, b = self.params
        return -np.log(np.maximum(a + b * np.exp(log_e), 1e-3 * a))


class _Given(_Model):
    """No global correction: the estimate is already aligned (e.g. by the joint refinement)."""

    name = "given"

    def fit(self, log_e, ell, x, y):
        return True

    def log_correction(self, log_e, x, y):
        return np.zeros_like(log_e)


def _make(name: str) -> _Model:
    return {"given": _Given, "scale": _Scale, "depth": _DepthAffine, "disparity": _DisparityAffine,
            "tilt": lambda: _Trend(1), "bend": lambda: _Trend(2)}[name]()


@dataclass(frozen=True)
class GlobalCorrection:
    """A fitted global correction, storable (plain numbers) and re-applicable to the estimate.

    Attributes:
        model: a name of :data:`GLOBAL_MODELS`.
        params: its parameters (``scale``: log scale; ``depth``: s, t of ``s e + t``;
            ``disparity``: a, b of ``1 / (a/e + b)``; ``tilt``/``bend``: polynomial coefficients
            in normalized image coordinates, order of :func:`alignment.trend.design_matrix`).
        lo, hi: the range of its log-correction on the pixels it was fitted on; it is clamped to
            it everywhere.
    """

    model: str
    params: tuple[float, ...]
    lo: float
    hi: float

    def log_field(self, estimated: Tensor) -> Tensor:
        """The clamped log-correction [H,W] (float64, on ``estimated``'s device) of ``estimated`` [H,W]."""
        H, W = estimated.shape
        m = _make(self.model)
        m.params = tuple(self.params)
        gy, gx = np.meshgrid((np.arange(H) + 0.5) / H * 2 - 1, (np.arange(W) + 0.5) / W * 2 - 1, indexing="ij")
        log_e = np.log(estimated.detach().cpu().double().clamp_min(1e-12).numpy())
        c = np.clip(m.log_correction(log_e.ravel(), gx.ravel(), gy.ravel()), self.lo, self.hi)
        return torch.from_numpy(c.reshape(H, W)).to(estimated.device)

    def to_dict(self) -> dict:
        return {"model": self.model, "params": list(self.params), "lo": self.lo, "hi": self.hi}

    @classmethod
    def from_dict(cls, data: dict) -> "GlobalCorrection":
        return cls(str(data["model"]), tuple(float(p) for p in data["params"]), float(data["lo"]), float(data["hi"]))


# ----------------------------------------------------------------------------- helpers


def _subsample(ys: np.ndarray, xs: np.ndarray, n_max: int) -> tuple[np.ndarray, np.ndarray]:
    if len(ys) <= n_max:
        return ys, xs
    pick = np.linspace(0, len(ys) - 1, n_max).astype(np.int64)
    return ys[pick], xs[pick]


def _score(err: np.ndarray) -> float:
    return float(np.mean(np.minimum(np.abs(err), _SCORE_CAP))) if err.size else float("inf")


def _fit_global(name, log_e, ell, gx, gy, mask) -> _Model | None:
    ys, xs = _subsample(*np.nonzero(mask), _MAX_SAMPLES)
    if len(ys) < _MIN_FIT:
        return None
    model = _make(name)
    if not model.fit(log_e[ys, xs], ell[ys, xs], gx[ys, xs], gy[ys, xs]):
        return None
    return model


def _clamped(model: _Model, log_e, gx, gy, fit_mask, target_mask) -> tuple[np.ndarray, float, float]:
    """The model's log-correction [H,W]: as fitted on ``fit_mask``, clamped elsewhere (on
    ``target_mask``) to the range (lo, hi) it takes on ``fit_mask``; 0 outside both."""
    out = np.zeros_like(log_e)
    both = fit_mask | target_mask
    c = model.log_correction(log_e[both], gx[both], gy[both])
    on_fit = fit_mask[both]
    lo, hi = float(c[on_fit].min()), float(c[on_fit].max())
    out[both] = np.where(on_fit, c, np.clip(c, lo, hi))
    return out, lo, hi


def _bands(known: np.ndarray, hole: np.ndarray, folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Held-out folds, as (band, fit pixels): the first band is the known pixels nearest the
    hole, as deep as the hole reaches into the image but leaving at least half of the known
    pixels to fit on; fold i holds out the next band of that width, fitted on the pixels beyond
    it. Each imitates the real task: predict pixels next to the fitted region, a hole's depth
    away at most. Folds whose fit region would hold less than a fifth of the known pixels are
    left out; an empty list when even the first has too few pixels."""
    if not hole.any() or known.sum() < 4 * _MIN_FIT:
        return []
    to_hole = ndi.distance_transform_edt(~hole)
    to_known = ndi.distance_transform_edt(~known)
    depth = float(np.percentile(to_known[hole], 90))
    limit = float(np.median(to_hole[known]))
    width = max(2.0, min(depth, limit))
    n_known = int(known.sum())
    out = []
    for i in range(folds):
        band = known & (to_hole > i * width) & (to_hole <= (i + 1) * width)
        fit = known & (to_hole > (i + 1) * width)
        if band.sum() < _MIN_FIT or fit.sum() < max(_MIN_FIT, (n_known if i else 0) // 5):
            break
        out.append((band, fit))
    return out


def _seam_field(rho: np.ndarray, anchors: np.ndarray, hole: np.ndarray, reach: float | None,
                links: tuple[Tensor, Tensor] | None) -> np.ndarray:
    c = seam_correction(torch.from_numpy(np.where(anchors, rho, 0.0)), torch.from_numpy(anchors),
                        torch.from_numpy(hole), decay=reach, links=links)
    return c.numpy()


# ----------------------------------------------------------------------------- the alignment


def align_adaptive(
    estimated: Tensor,
    reference: Tensor,
    known: Tensor,
    hole: Tensor,
    *,
    models: tuple[str, ...] = GLOBAL_MODELS,
    seam_reaches: tuple[float | None, ...] = SEAM_REACHES,
    tolerance: float = 0.03,
    min_pixels: int = 32,
    fit_global: bool = True,
    edges: bool | str = "auto",
    folds: int = 1,
    offset_reach: float | None = None,
    seam_known: Tensor | None = None,
) -> AdaptiveAlignment:
    """Align a view's estimated z-depth to the existing geometry with a correction chosen on
    held-out overlap pixels (the module docstring gives the method).

    Args:
        estimated: [H,W] float z-depth from the depth model; finite and > 0 on known and hole.
        reference: [H,W] float z-depth rendered from the existing points; finite and > 0 on known.
        known: [H,W] bool, pixels with existing geometry.
        hole: [H,W] bool, pixels to fill; disjoint from ``known``.
        models: candidate global models, names from :data:`GLOBAL_MODELS` (one name forces it).
            With "scale" among them the choice is never worse on the held-out pixels than the
            plain scale.
        seam_reaches: candidate decay lengths of the seam correction as fractions of the image's
            larger side (None: harmonic); empty for no seam correction.
        tolerance: a more complex candidate must score better than a simpler one by this
            fraction to be chosen.
        min_pixels: fewest known pixels (see :func:`alignment.scale.fit_scale`).
        fit_global: False to take ``estimated`` as globally aligned already (model "given"):
            only the seam correction (and its reach) is chosen.
        folds: held-out bands the global models are scored on (see :func:`_bands`).
        offset_reach: None: the seam correction carries the whole remaining log-ratio into the
            hole. A fraction of the image's larger side: the median remaining log-ratio (an
            offset of the reference as a whole, e.g. a bias of the rendered depth) fades over
            that distance, and only the variation around it goes as far as the chosen reach.
            For an estimate whose level is known better than the reference's (``fit_global``
            False after a joint refinement).
        seam_known: [H,W] bool, the known pixels that may anchor the seam correction (None: all
            of ``known``). The global model is fitted on every known pixel: a robust fit needs
            as many inliers as it can get (pixels next to depth edges are fine for a scale, not
            for a seam anchor, see :func:`dreamer.scene.placement.alignment_known`).
        edges: True: the seam correction does not flow across depth edges of the estimate
            (:func:`alignment.seam.edge_links`): each surface takes its correction from where it
            meets the existing geometry (monocular models err surface by surface); False: it
            flows everywhere (the error is smooth across the picture); "auto": chosen per view
            with the reach.

    Returns:
        :class:`AdaptiveAlignment`; ``depth`` has the dtype and device of ``estimated``.
    """
    check_alignment_inputs(estimated, reference, known, hole)
    shape = tuple(estimated.shape)
    unknown = [m for m in models if m not in GLOBAL_MODELS]
    if unknown or not models:
        raise ValueError(f"models must be one or more names from {GLOBAL_MODELS}, got {tuple(models)}")
    for r in seam_reaches:
        if r is not None and not (r > 0 and math.isfinite(r)):
            raise ValueError(f"seam_reaches must be None or fractions > 0, got {r}")
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    if offset_reach is not None and not (offset_reach > 0 and math.isfinite(offset_reach)):
        raise ValueError(f"offset_reach must be None or a fraction > 0, got {offset_reach}")
    if edges not in ("auto", True, False):
        raise ValueError(f"edges must be True, False or 'auto', got {edges!r}")
    if int(folds) != folds or folds < 1:
        raise ValueError(f"folds must be an integer >= 1, got {folds}")
    fit = fit_scale(estimated, reference, known, min_pixels=min_pixels)

    H, W = shape
    k = known.detach().cpu().numpy()
    h = hole.detach().cpu().numpy()
    used = k | h
    log_e = np.where(used, np.log(np.where(used, estimated.detach().cpu().double().numpy(), 1.0)), 0.0)
    ell = np.where(k, np.log(np.where(k, reference.detach().cpu().double().numpy(), 1.0)) - log_e, 0.0)
    gy, gx = np.meshgrid((np.arange(H) + 0.5) / H * 2 - 1, (np.arange(W) + 0.5) / W * 2 - 1, indexing="ij")
    anchors = k & (np.abs(ell - math.log(fit.scale)) <= _ANCHOR_TOLERANCE)
    seam_anchors = anchors if seam_known is None else anchors & seam_known.detach().cpu().numpy()
    side = max(H, W)
    edge_modes = {"auto": (False, True), True: (True,), False: (False,)}[edges]
    cut_edges = edge_modes[-1]
    names = tuple(m for m in GLOBAL_MODELS if m in models) if fit_global else ("given",)  # simplest first

    scores: dict = {}
    bands = _bands(k, h, folds)
    chosen, reach = names[0], (seam_reaches[-1] if seam_reaches else None)
    if bands:
        band, fit_region = bands[0]
        fit_part = seam_anchors & fit_region
        rest = ~fit_part & (k | h)
        fitted = {}
        for name in names:
            errs = []
            for i, (b, f) in enumerate(bands):
                m = _fit_global(name, log_e, ell, gx, gy, anchors & f)
                if m is None:
                    break
                if i == 0:
                    fitted[name] = m
                errs.append((ell - _clamped(m, log_e, gx, gy, anchors & f, b | h)[0])[b & anchors])
            if len(errs) == len(bands):
                scores[name] = _score(np.concatenate(errs))
        if scores:
            best = min(scores.values())
            chosen = next(n for n in names if n in scores and scores[n] <= best * (1 + tolerance) + 1e-12)
        if seam_reaches and chosen in fitted:
            c = _clamped(fitted[chosen], log_e, gx, gy, anchors & fit_region, ~fit_part & (k | h))[0]
            step = max(1, math.ceil(side / _VALIDATION_SIZE))
            sl = (slice(None, None, step), slice(None, None, step))
            rho = ell - c
            if offset_reach is not None:  # only the variation around the offset is validated
                rho = rho - float(np.median(rho[fit_part]))
            coarse_links = edge_links(torch.from_numpy(np.exp(np.where(used, log_e, 0.0))[sl]))
            seam_scores = {}
            for r in seam_reaches:
                for cut in edge_modes:
                    s = _seam_field(rho[sl], fit_part[sl], rest[sl], None if r is None else r * side / step,
                                    coarse_links if cut else None)
                    seam_scores[(r, cut)] = _score((rho[sl] - s)[band[sl] & anchors[sl]])
                    scores[f"seam {r}{' edges' if cut else ''}"] = seam_scores[(r, cut)]
            reach, cut_edges = min(seam_scores, key=seam_scores.get)

    model = _fit_global(chosen, log_e, ell, gx, gy, anchors)
    if model is None:  # too few anchors for a fit: the robust scale of all known pixels
        model = _make(names[0])
        model.params = (math.log(fit.scale),) if fit_global else ()
        anchors = seam_anchors = k
    c, lo, hi = _clamped(model, log_e, gx, gy, anchors, h | (k & ~anchors))
    correction = c
    if seam_reaches:
        links = edge_links(torch.from_numpy(np.exp(np.where(used, log_e, 0.0)))) if cut_edges else None
        rho = ell - c
        if offset_reach is not None:
            # The global offset between the estimate and the reference fades within offset_reach;
            # the variation around it (surface by surface) goes as far as the chosen reach.
            offset = float(np.median(rho[seam_anchors]))
            c = c + _seam_field(np.full_like(rho, offset), seam_anchors, h, offset_reach * side, None)
            rho = rho - offset
        correction = c + _seam_field(rho, seam_anchors, h, None if reach is None else reach * side, links)
        correction = np.where(k & ~seam_anchors, c, correction)
    corr_t = torch.from_numpy(correction).to(estimated.device)
    depth = (estimated.double() * torch.exp(corr_t)).to(estimated.dtype)
    global_only = (estimated.double() * torch.exp(torch.from_numpy(c).to(estimated.device))).to(estimated.dtype)
    return AdaptiveAlignment(
        depth=depth, correction=corr_t, model=model.name,
        global_correction=GlobalCorrection(model.name, model.params, lo, hi),
        seam_reach=None if reach is None else reach * side, seam_edges=bool(cut_edges and seam_reaches),
        fit=fit, scores=scores, band_pixels=int(sum(int(b.sum()) for b, _ in bands)),
        seam_jump_before=_seam_jump(global_only, reference, known, hole),
        seam_jump_after=_seam_jump(depth, reference, known, hole),
    )
