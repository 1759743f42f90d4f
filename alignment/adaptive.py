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
   ``scale`` (c constant), ``depth`` (``s e + t``), ``disparity`` (``1 / (a/e + b)``), ``power``
   (``s e^g``), ``tilt`` and ``bend`` (a log-polynomial of degree 1 or 2 in image coordinates). Each is a robust
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

import torch
from torch import Tensor

from alignment.kernels import distance_to, median
from alignment.scale import ScaleFit, _robust_sigma_t, _tukey_t, fit_scale
from alignment.seam import _seam_corrections, _seam_jump, check_alignment_inputs, edge_links

__all__ = ["GLOBAL_MODELS", "SEAM_REACHES", "AdaptiveAlignment", "GlobalCorrection", "align_adaptive"]

GLOBAL_MODELS = ("scale", "depth", "disparity", "power", "tilt", "bend")
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
# Slopes g = d log d / d log e a global model may have at the estimate's median: the exponent of
# the power model d = s e^g, and the local exponent of the affine ones. A compressed range (g > 1)
# or a stretched one, not a flattened one: g near 0 maps every depth to one value. Over a wall
# of one depth the estimate's noise is all that varies, and a flattening map fits it exactly
# (d = s e + t with s = 1e-5 and t the wall's depth won a deep zoom's dolly view): it would put
# whatever the hole holds at the wall's depth.
_SLOPE_RANGE = (0.5, 2.0)


def _slope_ok(g: float) -> bool:
    return _SLOPE_RANGE[0] <= g <= _SLOPE_RANGE[1]
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


def _design(x: Tensor, y: Tensor, degree: int) -> Tensor:
    """:func:`alignment.trend.design_matrix` on tensors: monomials [..., n_terms(degree)]."""
    cols = [torch.ones_like(x)]
    for d in range(1, degree + 1):
        for k in range(d + 1):
            cols.append(x ** (d - k) * y ** k)
    return torch.stack(cols, dim=-1)


def _weighted_lstsq(A: Tensor, b: Tensor, w: Tensor, ridge: Tensor | None = None) -> Tensor | None:
    Aw = A * w[:, None]
    lhs = Aw.T @ A
    if ridge is not None:
        lhs = lhs + torch.diag(ridge * w.sum())
    solution, info = torch.linalg.solve_ex(lhs, Aw.T @ b)
    return None if int(info) != 0 or not bool(torch.isfinite(solution).all()) else solution


class _Model:
    """A global correction: ``fit`` on samples, ``log_correction`` anywhere, ``params`` to store it.

    Samples and fields are float64 tensors of one shape on one device."""

    name = ""
    params: tuple[float, ...] = ()

    def fit(self, log_e: Tensor, ell: Tensor, x: Tensor, y: Tensor) -> bool:
        raise NotImplementedError

    def log_correction(self, log_e: Tensor, x: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError


def _irls(residual_fn, solve_fn, start, iterations: int = 8, tukey_c: float = 4.685):
    """Iteratively re-weighted least squares with Tukey weights: ``solve_fn(weights)`` -> params."""
    params = start
    for _ in range(iterations):
        res = residual_fn(params)
        w = _tukey_t(res, _robust_sigma_t(res, 1e-6), tukey_c)
        if not float(w.sum()) > 0:
            break
        new = solve_fn(w)
        if new is None:
            return None
        params = new
    return params


class _Scale(_Model):
    name = "scale"

    def fit(self, log_e, ell, x, y):
        c0 = median(ell)
        c = _irls(lambda p: ell - p, lambda w: float(torch.dot(w, ell) / w.sum()), c0)
        self.params = (c0 if c is None else float(c),)
        return True

    def log_correction(self, log_e, x, y):
        return torch.full_like(log_e, self.params[0])


class _Trend(_Model):
    def __init__(self, degree: int):
        self.degree = degree
        self.name = "tilt" if degree == 1 else "bend"

    def fit(self, log_e, ell, x, y):
        A = _design(x, y, self.degree)
        ridge = torch.full((A.shape[1],), _TREND_RIDGE, dtype=A.dtype, device=A.device)
        ridge[0] = 0.0
        start = torch.zeros(A.shape[1], dtype=A.dtype, device=A.device)
        start[0] = median(ell)
        beta = _irls(lambda b: ell - A @ b, lambda w: _weighted_lstsq(A, ell, w, ridge), start)
        if beta is None:
            return False
        self.params = tuple(float(b) for b in beta)
        return True

    def log_correction(self, log_e, x, y):
        return _design(x, y, self.degree) @ torch.tensor(self.params, dtype=x.dtype, device=x.device)


class _DepthAffine(_Model):
    """``d = s e + t``, fitted with relative residuals ``(s e + t - r) / r``."""

    name = "depth"

    def fit(self, log_e, ell, x, y):
        e = torch.exp(log_e)
        r = torch.exp(log_e + ell)
        A = torch.stack([e / r, 1.0 / r], 1)
        b = torch.ones_like(r)
        start = torch.tensor([math.exp(median(ell)), 0.0], dtype=r.dtype, device=r.device)
        p = _irls(lambda p: A @ p - b, lambda w: _weighted_lstsq(A, b, w), start)
        if p is None or not float(p[0]) > 0:
            return False
        s, t = float(p[0]), float(p[1])
        se = s * math.exp(median(log_e))
        if not (se + t > 0 and _slope_ok(se / (se + t))):
            return False
        self.params = (s, t)
        return True

    def log_correction(self, log_e, x, y):
        s, t = self.params
        e = torch.exp(log_e)
        return torch.log(torch.maximum(s * e + t, 1e-3 * s * e) / e)


class _DisparityAffine(_Model):
    """``1/d = a/e + b``, fitted with relative residuals in disparity ``(a/e + b) r - 1``."""

    name = "disparity"

    def fit(self, log_e, ell, x, y):
        r = torch.exp(log_e + ell)
        A = torch.stack([r * torch.exp(-log_e), r], 1)
        b = torch.ones_like(r)
        start = torch.tensor([math.exp(-median(ell)), 0.0], dtype=r.dtype, device=r.device)
        p = _irls(lambda p: A @ p - b, lambda w: _weighted_lstsq(A, b, w), start)
        if p is None or not float(p[0]) > 0:
            return False
        a, b = float(p[0]), float(p[1])
        ae = a * math.exp(-median(log_e))
        if not (ae + b > 0 and _slope_ok(ae / (ae + b))):
            return False
        self.params = (a, b)
        return True

    def log_correction(self, log_e, x, y):
        a, b = self.params
        return -torch.log(torch.clamp_min(a + b * torch.exp(log_e), 1e-3 * a))


class _Power(_Model):
    """``d = s e^g``: a line in log depth, ``log d = log s + g log e``, fitted on log residuals.
    A relative-depth model whose output is a compressed (g > 1 undoes it) or stretched range
    errs so; neither an affine map in depth nor one in disparity can hold it."""

    name = "power"

    def fit(self, log_e, ell, x, y):
        m = median(log_e)  # centred: the two parameters are then nearly uncorrelated
        A = torch.stack([torch.ones_like(log_e), log_e - m], 1)
        start = torch.tensor([median(ell), 0.0], dtype=ell.dtype, device=ell.device)
        p = _irls(lambda p: ell - A @ p, lambda w: _weighted_lstsq(A, ell, w), start)
        if p is None:
            return False
        a, b = float(p[0]), float(p[1])
        if not _slope_ok(1.0 + b):  # d = s e^0 would flatten whatever the hole holds (see _SLOPE_RANGE)
            return False
        self.params = (a - b * m, b)  # c = params[0] + params[1] log e
        return True

    def log_correction(self, log_e, x, y):
        a, b = self.params
        return a + b * log_e


class _Given(_Model):
    """No global correction: the estimate is already aligned (e.g. by the joint refinement)."""

    name = "given"

    def fit(self, log_e, ell, x, y):
        return True

    def log_correction(self, log_e, x, y):
        return torch.zeros_like(log_e)


def _make(name: str) -> _Model:
    return {"given": _Given, "scale": _Scale, "depth": _DepthAffine, "disparity": _DisparityAffine, "power": _Power,
            "tilt": lambda: _Trend(1), "bend": lambda: _Trend(2)}[name]()


def _pixel_coords(H: int, W: int, device) -> tuple[Tensor, Tensor]:
    """Normalized pixel-centre coordinates (x, y) in [-1, 1], float64 [H,W] each."""
    ys = (torch.arange(H, dtype=torch.float64, device=device) + 0.5) / H * 2 - 1
    xs = (torch.arange(W, dtype=torch.float64, device=device) + 0.5) / W * 2 - 1
    return xs.expand(H, W), ys[:, None].expand(H, W)


@dataclass(frozen=True)
class GlobalCorrection:
    """A fitted global correction, storable (plain numbers) and re-applicable to the estimate.

    Attributes:
        model: a name of :data:`GLOBAL_MODELS`.
        params: its parameters (``scale``: log scale; ``depth``: s, t of ``s e + t``;
            ``disparity``: a, b of ``1 / (a/e + b)``; ``power``: a, b of ``log d = a + (1 + b) log e``;
            ``tilt``/``bend``: polynomial coefficients
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
        gx, gy = _pixel_coords(H, W, estimated.device)
        log_e = torch.log(estimated.detach().double().clamp_min(1e-12))
        return m.log_correction(log_e, gx, gy).clamp(self.lo, self.hi)

    def to_dict(self) -> dict:
        return {"model": self.model, "params": list(self.params), "lo": self.lo, "hi": self.hi}

    @classmethod
    def from_dict(cls, data: dict) -> "GlobalCorrection":
        return cls(str(data["model"]), tuple(float(p) for p in data["params"]), float(data["lo"]), float(data["hi"]))


# ----------------------------------------------------------------------------- helpers


def _subsample(mask: Tensor, n_max: int) -> Tensor:
    """Flat indices of ``mask``'s pixels in row-major order; a regular subsample of ``n_max`` of
    them when there are more."""
    idx = torch.nonzero(mask.reshape(-1)).squeeze(1)
    n = len(idx)
    if n <= n_max:
        return idx
    pick = torch.arange(n_max, dtype=torch.float64, device=idx.device) * ((n - 1) / (n_max - 1))
    pick[-1] = n - 1  # as numpy's linspace: the last sample is the last pixel
    return idx[pick.long()]


def _score(err: Tensor, mask: Tensor) -> float:
    """Mean capped |err| over ``mask`` (inf when empty)."""
    n = int(mask.sum())
    if n == 0:
        return float("inf")
    return float(torch.where(mask, err.abs().clamp_max(_SCORE_CAP), torch.zeros_like(err)).sum() / n)


def _samples(log_e, ell, gx, gy, mask) -> tuple[Tensor, ...] | None:
    """The samples a global fit on ``mask`` reads (:func:`_subsample`): (log_e, ell, gx, gy) [n]
    each; None when there are fewer than a fit needs."""
    idx = _subsample(mask, _MAX_SAMPLES)
    if len(idx) < _MIN_FIT:
        return None
    return tuple(t.reshape(-1)[idx] for t in (log_e, ell, gx, gy))


def _fit_samples(name, samples: tuple[Tensor, ...] | None) -> _Model | None:
    if samples is None:
        return None
    model = _make(name)
    return model if model.fit(*samples) else None


def _fit_global(name, log_e, ell, gx, gy, mask) -> _Model | None:
    return _fit_samples(name, _samples(log_e, ell, gx, gy, mask))


def _clamped(model: _Model, log_e, gx, gy, fit_mask, target_mask) -> tuple[Tensor, float, float]:
    """The model's log-correction [H,W]: as fitted on ``fit_mask``, clamped elsewhere (on
    ``target_mask``) to the range (lo, hi) it takes on ``fit_mask``; 0 outside both."""
    c = model.log_correction(log_e, gx, gy)  # elementwise: cheaper on every pixel than gathered
    lo = float(torch.where(fit_mask, c, math.inf).min())
    hi = float(torch.where(fit_mask, c, -math.inf).max())
    out = torch.where(fit_mask, c, torch.where(target_mask, c.clamp(lo, hi), torch.zeros_like(c)))
    return out, lo, hi


def _hole_depths(known: Tensor, hole: Tensor) -> Tensor:
    """``distance_to(known)[hole]``: each hole pixel's distance to the nearest known pixel (in
    the order of ``hole``'s pixels; ``known`` must have a pixel).

    When every pixel is known or hole (as in the loop), the transform runs on the hole's bounding
    box grown by a pixel only, with the same result: that box's rim is known, and clamping any
    known pixel outside it onto the box gives a rim pixel no farther from a hole pixel inside."""
    if not bool((known | hole).all()):
        return distance_to(known)[hole]
    ys, xs = torch.nonzero(hole.any(1)).squeeze(1), torch.nonzero(hole.any(0)).squeeze(1)
    H, W = hole.shape
    y0, y1 = max(int(ys[0]) - 1, 0), min(int(ys[-1]) + 2, H)
    x0, x1 = max(int(xs[0]) - 1, 0), min(int(xs[-1]) + 2, W)
    # The box holds a known pixel: its rim on a side where the image does not clip it, or, clipped
    # on every side, the whole image.
    return distance_to(known[y0:y1, x0:x1])[hole[y0:y1, x0:x1]]


def _bands(known: Tensor, hole: Tensor, folds: int) -> list[tuple[Tensor, Tensor]]:
    """Held-out folds, as (band, fit pixels): the first band is the known pixels nearest the
    hole, as deep as the hole reaches into the image but leaving at least half of the known
    pixels to fit on; fold i holds out the next band of that width, fitted on the pixels beyond
    it. Each imitates the real task: predict pixels next to the fitted region, a hole's depth
    away at most. Folds whose fit region would hold less than a fifth of the known pixels are
    left out; an empty list when even the first has too few pixels."""
    n_known = int(known.sum())
    if not bool(hole.any()) or n_known < 4 * _MIN_FIT:
        return []
    to_hole = distance_to(hole)
    depth = float(torch.quantile(_hole_depths(known, hole), 0.9))
    limit = median(to_hole[known])
    width = max(2.0, min(depth, limit))
    out = []
    for i in range(folds):
        band = known & (to_hole > i * width) & (to_hole <= (i + 1) * width)
        fit = known & (to_hole > (i + 1) * width)
        if int(band.sum()) < _MIN_FIT or int(fit.sum()) < max(_MIN_FIT, (n_known if i else 0) // 5):
            break
        out.append((band, fit))
    return out


def _seam_field(rho: Tensor, anchors: Tensor, hole: Tensor, reach: float | None,
                links: tuple[Tensor, Tensor] | None) -> Tensor:
    return _seam_corrections(torch.where(anchors, rho, 0.0), anchors, hole, [(reach, links)])[0]


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
    device = estimated.device
    k = known.to(device)
    h = hole.to(device)
    used = k | h
    one = torch.ones((), dtype=torch.float64, device=device)
    log_e = torch.where(used, torch.log(torch.where(used, estimated.detach().double(), one)), 0.0)
    ref = reference.detach().to(device, torch.float64)
    ell = torch.where(k, torch.log(torch.where(k, ref, one)) - log_e, 0.0)
    gx, gy = _pixel_coords(H, W, device)
    anchors = k & ((ell - math.log(fit.scale)).abs() <= _ANCHOR_TOLERANCE)
    seam_anchors = anchors if seam_known is None else anchors & seam_known.to(device)
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
        rest = ~fit_part & used
        fitted = {}
        fold_samples = [_samples(log_e, ell, gx, gy, anchors & f) for _, f in bands]  # shared by the models
        for name in names:
            errs = []
            for i, (b, f) in enumerate(bands):
                m = _fit_samples(name, fold_samples[i])
                if m is None:
                    break
                if i == 0:
                    fitted[name] = m
                errs.append(ell - _clamped(m, log_e, gx, gy, anchors & f, b | h)[0])
            if len(errs) == len(bands):
                total = sum(int((b & anchors).sum()) for b, _ in bands)
                scores[name] = float("inf") if total == 0 else sum(
                    float(torch.where(b & anchors, e.abs().clamp_max(_SCORE_CAP), 0.0).sum())
                    for e, (b, _) in zip(errs, bands)) / total
        if scores:
            best = min(scores.values())
            chosen = next(n for n in names if n in scores and scores[n] <= best * (1 + tolerance) + 1e-12)
        if seam_reaches and chosen in fitted:
            c = _clamped(fitted[chosen], log_e, gx, gy, anchors & fit_region, rest)[0]
            step = max(1, math.ceil(side / _VALIDATION_SIZE))
            sl = (slice(None, None, step), slice(None, None, step))
            rho = ell - c
            if offset_reach is not None:  # only the variation around the offset is validated
                rho = rho - median(rho[fit_part])
            coarse_links = edge_links(torch.exp(log_e)[sl])
            seam_scores = {}
            combos = [(r, cut) for r in seam_reaches for cut in edge_modes]
            anchors_sl, rho_sl = fit_part[sl], rho[sl]
            fields = _seam_corrections(torch.where(anchors_sl, rho_sl, 0.0), anchors_sl, rest[sl],
                                       [(None if r is None else r * side / step, coarse_links if cut else None)
                                        for r, cut in combos])
            for (r, cut), s in zip(combos, fields):
                seam_scores[(r, cut)] = _score(rho_sl - s, band[sl] & anchors[sl])
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
        links = edge_links(torch.exp(log_e)) if cut_edges else None
        rho = ell - c
        if offset_reach is not None and (links is not None or reach != offset_reach):
            # The global offset between the estimate and the reference fades within offset_reach;
            # the variation around it (surface by surface) goes as far as the chosen reach.
            offset = median(rho[seam_anchors])
            c = c + _seam_field(torch.full_like(rho, offset), seam_anchors, h, offset_reach * side, None)
            rho = rho - offset
        # (With one reach for both and no edges, the two are one system: its solution is linear in
        # the seam values, and a ring median moves with a constant added. One solve serves both.)
        correction = c + _seam_field(rho, seam_anchors, h, None if reach is None else reach * side, links)
        correction = torch.where(k & ~seam_anchors, c, correction)
    depth = (estimated.double() * torch.exp(correction)).to(estimated.dtype)
    global_only = (estimated.double() * torch.exp(c)).to(estimated.dtype)
    return AdaptiveAlignment(
        depth=depth, correction=correction, model=model.name,
        global_correction=GlobalCorrection(model.name, model.params, lo, hi),
        seam_reach=None if reach is None else reach * side, seam_edges=bool(cut_edges and seam_reaches),
        fit=fit, scores=scores, band_pixels=int(sum(int(b.sum()) for b, _ in bands)),
        seam_jump_before=_seam_jump(global_only, reference, known, hole),
        seam_jump_after=_seam_jump(depth, reference, known, hole),
    )
