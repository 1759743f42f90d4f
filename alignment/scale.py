"""A robust, closed-form per-view scale (or scale and shift) between two z-depth maps.

The monocular estimate of a new view is wrong by an unknown scale (and, for some models, a
shift), a smooth distortion and noise. This module fits the global part on the *overlap*: the
pixels where the existing point cloud rendered a depth (the reference) and the estimate is valid.
Scaling a z-depth moves each pixel's 3D point along that pixel's camera ray, so a per-view depth
scale is "alignment along rays" and holds for any camera motion (unlike scaling world
coordinates about the origin, which only equals it for rotation-only paths).

Everything is closed form: a median start, then a few rounds of iteratively re-weighted least
squares (IRLS) with Tukey biweights whose width comes from the median absolute deviation (MAD) of
the residuals. There is no gradient loop: a closed form cannot stop short of its optimum, as a few hundred
Adam steps on one scalar can.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from alignment.kernels import median
from dreamer.checks import check_map, check_mask, check_positive

__all__ = ["ScaleFit", "fit_scale"]

logger = logging.getLogger(__name__)

# MAD -> standard deviation for Gaussian residuals.
_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class ScaleFit:
    """The global part of a depth alignment: ``aligned = scale * estimated + shift``.

    Attributes:
        scale: multiplicative factor (> 0).
        shift: additive z-depth offset in the reference's units (0.0 when no shift was fitted).
        with_shift: whether a shift was fitted (False also when a shift was asked for but the
            overlap could not determine it, see :func:`fit_scale`).
        n_pixels: number of overlap pixels the fit used (mask True).
        inlier_fraction: fraction of those pixels with a non-zero final robust weight.
        residual_before: median relative error |e - r| / r of the raw estimate on the overlap.
        residual_after: median relative error |scale * e + shift - r| / r on the overlap.
    """

    scale: float
    shift: float
    with_shift: bool
    n_pixels: int
    inlier_fraction: float
    residual_before: float
    residual_after: float

    def apply(self, estimated: Tensor) -> Tensor:
        """``scale * estimated + shift`` (any shape; dtype and device follow ``estimated``)."""
        return estimated * self.scale + self.shift


def _tukey(res: np.ndarray, sigma: float, c: float) -> np.ndarray:
    """Tukey biweight of residuals ``res`` for a robust scale ``sigma``: (1 - (r/c sigma)^2)^2, 0 beyond."""
    u = res / (c * sigma)
    w = np.multiply(u, u)
    np.subtract(1.0, w, out=w)
    np.square(w, out=w)
    np.abs(u, out=u)
    w[~(u < 1.0)] = 0.0  # NaN too
    return w


def _robust_sigma(res: np.ndarray, floor: float) -> float:
    """MAD-based standard deviation of residuals around 0, never below ``floor``."""
    return max(_MAD_TO_SIGMA * median(torch.from_numpy(np.abs(res)), overwrite=True), floor)


def _tukey_t(res: Tensor, sigma: float, c: float) -> Tensor:
    """:func:`_tukey` on a tensor (same device)."""
    u = res * (1.0 / (c * sigma))
    w = torch.rsub(u.square_(), 1.0).clamp_min_(0.0).square_()  # 0 beyond |u| = 1
    return w.nan_to_num_(nan=0.0)


def _robust_sigma_t(res: Tensor, floor: float) -> float:
    """:func:`_robust_sigma` of a tensor."""
    return max(_MAD_TO_SIGMA * median(res.abs(), overwrite=True), floor)


def _fit_log_scale(e: Tensor, r: Tensor, iterations: int, tukey_c: float, sigma_floor: float) -> tuple[float, Tensor]:
    """Scale only, in log space: log r = log s + log e + noise.

    Why log space: depth errors of monocular models are multiplicative (a 1% error at 10 m is
    ten times the one at 1 m), so the residuals of log-ratios are homoscedastic and symmetric;
    the median of log-ratios is also the median of ratios, a scale-equivariant start that
    survives up to 50% outliers. The weighted least-squares step is a weighted mean.
    Returns (scale, final weights).
    """
    rho = torch.log(r) - torch.log(e)
    log_s = median(rho)
    for _ in range(iterations):
        res = rho - log_s
        w = _tukey_t(res, _robust_sigma_t(res, sigma_floor), tukey_c)
        new = float(torch.dot(w, rho) / w.sum())
        done = abs(new - log_s) <= 1e-15
        log_s = new
        if done:
            break
    w = _tukey_t(rho - log_s, _robust_sigma_t(rho - log_s, sigma_floor), tukey_c)
    return math.exp(log_s), w


def _wls_affine(e: Tensor, r: Tensor, w: Tensor) -> tuple[float, float] | None:
    """Closed-form weighted least squares of r ~ s e + t; None when e has no spread under w."""
    sw = float(w.sum())
    if sw <= 0:
        return None
    me = float(torch.dot(w, e)) / sw
    mr = float(torch.dot(w, r)) / sw
    de = e - me
    var = float(torch.dot(w, de * de)) / sw
    if var <= 1e-12 * me * me:
        return None
    s = float(torch.dot(w, de * (r - mr))) / sw / var
    return s, mr - s * me


def _fit_affine(
    e: Tensor, r: Tensor, iterations: int, tukey_c: float, sigma_floor: float
) -> tuple[float, float, Tensor] | None:
    """Scale and shift, in depth space with relative residuals: (s e + t - r) / r.

    Why depth (not inverse depth): our depth models output z-depth wrong by a scale and maybe an
    offset of the depth itself (a metric model's bias), so the affine model lives in depth.
    Inverse depth is the right space for disparity-affine models (MiDaS-style relative depth),
    which this project does not use. The residual is divided by r (weighted least squares with
    weights 1/r^2) because the noise is multiplicative: far pixels would otherwise dominate.
    Two robust starts are tried (median of ratios with no shift; median/MAD matching) and the
    one with the smaller median relative residual is refined. Returns None if the overlap
    cannot determine a shift (the estimate has no spread there).
    """
    inv_r = 1.0 / r
    starts = [(math.exp(median(torch.log(r) - torch.log(e))), 0.0)]
    med_e, med_r = median(e), median(r)
    mad_e = median((e - med_e).abs())
    if mad_e > 0:
        s_mad = median((r - med_r).abs()) / mad_e
        starts.append((s_mad, med_r - s_mad * med_e))
    s, t = min(starts, key=lambda st: median(((st[0] * e + st[1] - r) * inv_r).abs()))
    for _ in range(iterations):
        res = (s * e + t - r) * inv_r
        w = _tukey_t(res, _robust_sigma_t(res, sigma_floor), tukey_c)
        st = _wls_affine(e, r, w * inv_r * inv_r)
        if st is None:
            return None
        done = abs(st[0] - s) <= 1e-15 * abs(s) and abs(st[1] - t) <= 1e-15 * (abs(t) + med_r)
        s, t = st
        if done:
            break
    res = (s * e + t - r) * inv_r
    w = _tukey_t(res, _robust_sigma_t(res, sigma_floor), tukey_c)
    return s, t, w


def fit_scale(
    estimated: Tensor,
    reference: Tensor,
    mask: Tensor,
    *,
    with_shift: bool = False,
    min_pixels: int = 32,
    iterations: int = 10,
    tukey_c: float = 4.685,
    sigma_floor: float = 1e-9,
) -> ScaleFit:
    """Fit ``reference ~ scale * estimated (+ shift)`` robustly on the overlap pixels.

    Args:
        estimated: [H,W] float z-depth of the new view from the depth model (> 0 on ``mask``).
        reference: [H,W] float z-depth rendered from the existing geometry (> 0 on ``mask``).
        mask: [H,W] bool, the overlap: True where the reference exists and the estimate is
            valid. Only these pixels are read (other pixels may hold 0, NaN or inf).
        with_shift: also fit an additive z-depth shift (least squares on depth with relative
            residuals). If the overlap cannot determine a shift (no spread of the estimate) or
            the shift fit gives a non-positive scale, the scale-only fit is returned instead,
            with ``with_shift=False`` and a logged warning.
        min_pixels: the fewest overlap pixels accepted.
        iterations: the most IRLS rounds (each is closed form; they stop early on convergence).
        tukey_c: Tukey biweight width in robust standard deviations (4.685: 95% efficiency
            for Gaussian noise); residuals beyond it get weight 0 (outliers).
        sigma_floor: the smallest robust standard deviation of the residuals (relative units),
            so that noise-free input (MAD = 0) is fitted exactly instead of dividing by zero.

    Returns:
        A :class:`ScaleFit`. Noise-free input is recovered to float64 precision.

    Raises:
        TypeError / ValueError: on non-tensors, shape or dtype mismatches, non-finite or
        non-positive depths on ``mask``, or fewer than ``min_pixels`` overlap pixels.
    """
    check_map(estimated, "estimated")
    shape = tuple(estimated.shape)
    check_map(reference, "reference", shape=shape)
    check_mask(mask, "mask", shape=shape)
    if min_pixels < 2:
        raise ValueError(f"min_pixels must be >= 2, got {min_pixels}")
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    if not tukey_c > 0 or not sigma_floor > 0:
        raise ValueError(f"tukey_c and sigma_floor must be > 0, got {tukey_c} and {sigma_floor}")
    n = int(mask.sum())
    if n < min_pixels:
        raise ValueError(
            f"fit_scale needs at least {min_pixels} overlap pixels (mask True), got {n}: "
            "too little existing geometry is visible in this view to align its depth"
        )
    check_positive(estimated, "estimated", where=mask, where_name="the overlap mask")
    check_positive(reference, "reference", where=mask, where_name="the overlap mask")

    # Work on the gathered overlap values in float64 on the inputs' device (the result is a pair
    # of Python floats; the medians are O(n) selections, see alignment.kernels.median).
    m = mask.to(estimated.device)
    e = estimated.detach()[m].double()
    r = reference.detach()[m.to(reference.device)].to(e.device, torch.float64)
    residual_before = median(((e - r) / r).abs())

    fitted_shift = False
    s, t = 1.0, 0.0
    w = torch.ones_like(e)
    if with_shift:
        out = _fit_affine(e, r, iterations, tukey_c, sigma_floor)
        if out is None:
            logger.warning("fit_scale: the overlap cannot determine a shift (no depth spread); fitting scale only")
        elif not out[0] > 0:
            logger.warning("fit_scale: the shift fit gave scale %.4g <= 0; fitting scale only", out[0])
        else:
            s, t, w = out
            fitted_shift = True
    if not fitted_shift:
        s, w = _fit_log_scale(e, r, iterations, tukey_c, sigma_floor)
        t = 0.0
    residual_after = median(((s * e + t - r) / r).abs())
    return ScaleFit(
        scale=float(s),
        shift=float(t),
        with_shift=fitted_shift,
        n_pixels=n,
        inlier_fraction=float((w > 0).double().mean()),
        residual_before=residual_before,
        residual_after=residual_after,
    )
