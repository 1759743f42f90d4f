"""A smooth, low-order trend of the depth ratio across the image, fitted on the overlap.

After the global scale, the estimate still disagrees with the existing geometry by a smooth
factor that varies across the image (monocular models tilt and bend depth). The seam
correction carries that factor into a hole from the hole's boundary only; where camera motion
reveals a strip at the image border, the boundary is one edge of the strip and a trend across
the image (a tilt) is not extrapolated. This module fits the trend on *all* overlap pixels:
``log(reference / scaled) ~ polynomial(x, y)`` of low degree in normalized pixel coordinates,
by iteratively re-weighted least squares with Tukey weights (closed form per round), with a
small ridge on the non-constant terms so an overlap that spans little of the image cannot
produce a steep extrapolation. The field is clamped to +-``max_log`` for the same reason.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from dreamer.checks import check_map, check_mask
from alignment.scale import _robust_sigma, _tukey

__all__ = ["fit_log_trend", "fit_log_trend_coeffs", "design_matrix", "n_terms", "polynomial_field"]

_MAX_SAMPLES = 40_000


def n_terms(degree: int) -> int:
    """Number of monomials of a 2D polynomial of ``degree``."""
    return (degree + 1) * (degree + 2) // 2


def monomial_exponents(degree: int) -> list[tuple[int, int]]:
    """The exponents (of x, of y) of the monomials of ``degree`` in the order of the coefficients:
    1, x, y, x^2, xy, y^2, ..."""
    return [(d - k, k) for d in range(degree + 1) for k in range(d + 1)]


def design_matrix(x: np.ndarray, y: np.ndarray, degree: int) -> np.ndarray:
    """Monomials [n, n_terms(degree)] at normalized coordinates x, y in [-1, 1]: 1, x, y, x^2, xy, y^2, ..."""
    return np.stack([x ** a * y ** b for a, b in monomial_exponents(degree)], axis=1)


def fit_log_trend(log_ratio: Tensor, mask: Tensor, *, degree: int = 1, iterations: int = 6, tukey_c: float = 4.685,
                  ridge: float = 0.005, max_log: float = 0.3, min_pixels: int = 64) -> Tensor:
    """A smooth field [H,W] (float64) fitting ``log_ratio`` [H,W] on ``mask`` [H,W] (bool).

    ``degree`` 1 is a plane in (x, y) over the image (a tilt), 2 adds curvature; 0 gives a
    constant. Returns zeros when fewer than ``min_pixels`` pixels are masked. Coordinates are
    normalized to [-1, 1] across the image, so ``ridge`` (relative to the total weight) and
    ``max_log`` mean the same at every image size.
    """
    H, W = tuple(log_ratio.shape)
    beta = fit_log_trend_coeffs(log_ratio, mask, degree=degree, iterations=iterations, tukey_c=tukey_c,
                                ridge=ridge, min_pixels=min_pixels)
    field = polynomial_field(torch.from_numpy(beta), degree, H, W).clamp(-max_log, max_log)
    return field.to(log_ratio.device)


def polynomial_field(coeffs: Tensor, degree: int, height: int, width: int) -> Tensor:
    """The polynomial ``coeffs`` [n_terms(degree)] (order of :func:`design_matrix`) at every pixel
    centre of a [height, width] image, in normalized coordinates: [height, width] float64."""
    ys = (np.arange(height) + 0.5) / height * 2.0 - 1.0
    xs = (np.arange(width) + 0.5) / width * 2.0 - 1.0
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    B = torch.from_numpy(design_matrix(gx.ravel(), gy.ravel(), degree))
    return (B @ coeffs.detach().double().cpu()).reshape(height, width).to(coeffs.device)


def fit_log_trend_coeffs(log_ratio: Tensor, mask: Tensor, *, degree: int = 1, iterations: int = 6,
                         tukey_c: float = 4.685, ridge: float = 0.005, min_pixels: int = 64) -> np.ndarray:
    """The coefficients [n_terms(degree)] (float64, order of :func:`design_matrix`) of the robust
    polynomial fit of :func:`fit_log_trend`; zeros when fewer than ``min_pixels`` are masked."""
    check_map(log_ratio, "log_ratio")
    shape = tuple(log_ratio.shape)
    check_mask(mask, "mask", shape=shape)
    if degree < 0:
        raise ValueError(f"degree must be >= 0, got {degree}")
    H, W = shape
    m = mask.cpu().numpy()
    n = int(m.sum())
    if n < min_pixels:
        return np.zeros(n_terms(degree))
    ys, xs = np.nonzero(m)
    if n > _MAX_SAMPLES:  # a regular subsample: the trend is smooth, 40k pixels pin it down
        pick = np.linspace(0, n - 1, _MAX_SAMPLES).astype(np.int64)
        ys, xs = ys[pick], xs[pick]
    rho = log_ratio.detach().cpu().double().numpy()[ys, xs]
    x = (xs + 0.5) / W * 2.0 - 1.0
    y = (ys + 0.5) / H * 2.0 - 1.0
    A = design_matrix(x, y, degree)
    penalty = np.full(A.shape[1], ridge)
    penalty[0] = 0.0
    beta = np.zeros(A.shape[1])
    beta[0] = float(np.median(rho))
    for _ in range(iterations):
        res = rho - A @ beta
        w = _tukey(res, _robust_sigma(res, 1e-9), tukey_c)
        sw = w.sum()
        if sw <= 0:
            break
        lhs = (A * w[:, None]).T @ A + np.diag(penalty * sw)
        beta = np.linalg.solve(lhs, (A * w[:, None]).T @ rho)
    return beta
