"""Smooth correction fields over an image: a linear combination of basis functions of the pixel
coordinates, normalized to [-1, 1] across the image (so coefficients mean the same at any size).

* ``FieldBasis("poly", d)``: the monomials of degree <= d (1, x, y, x^2, xy, y^2, ...), as in
  :mod:`alignment.trend`.
* ``FieldBasis("spline", g)``: a uniform cubic B-spline on a g x g grid of control points
  (g >= 4). The basis is a partition of unity over the image, so a constant coefficient vector
  is a constant field and each coefficient is the local level of the field; a spline follows
  distortions no low-order polynomial describes (waves) and stays local: changing one
  coefficient changes the field within two knot spacings only.

:meth:`FieldBasis.prior_precision` gives a Gaussian prior that separates a field's level from
its variation; :meth:`FieldBasis.constant` the coefficients of the constant field 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from alignment.trend import design_matrix, monomial_exponents, n_terms

__all__ = ["FieldBasis"]


def _cubic_bspline_rows(s: np.ndarray, g: int) -> np.ndarray:
    """[n, g] values of the uniform cubic B-splines centred on the integers 0 .. g-1 at positions
    ``s`` [n] (in knot spacings): each position meets the four kernels of its cell only (the
    kernel, support [-2, 2], sums to 1 over integer shifts), so only those are evaluated."""
    first, weights = _cubic_bspline_kernels(s)
    out = np.zeros((len(s), g))
    rows = np.arange(len(s))
    for k, w in enumerate(weights):
        col = first + k
        on = (col >= 0) & (col < g)
        out[rows[on], col[on]] = w[on]
    return out


def _cubic_bspline_kernels(s: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """(the first of the four kernels that meet positions ``s`` [n] (in knot spacings), their
    four values [n] each, in order)."""
    cell = np.floor(s)
    f = s - cell
    e = 1.0 - f
    weights = (e**3 / 6, (4 - 6 * f**2 + 3 * f**3) / 6, (4 - 6 * e**2 + 3 * e**3) / 6, f**3 / 6)
    return cell.astype(np.int64) - 1, weights


@dataclass(frozen=True)
class FieldBasis:
    """A basis of smooth fields over an image (see the module docstring).

    Attributes:
        kind: "poly" (monomials up to degree ``size``) or "spline" (``size`` x ``size`` cubic
            B-spline control points).
        size: the degree (>= 0) or the control points per axis (>= 4).
    """

    kind: str = "poly"
    size: int = 1

    def __post_init__(self):
        if self.kind not in ("poly", "spline"):
            raise ValueError(f"FieldBasis kind must be 'poly' or 'spline', got {self.kind!r}")
        if int(self.size) != self.size or self.size < (0 if self.kind == "poly" else 4):
            need = ">= 4 control points per axis" if self.kind == "spline" else "a degree >= 0"
            raise ValueError(f"FieldBasis size must be {need}, got {self.size!r}")

    @property
    def n_terms(self) -> int:
        return n_terms(self.size) if self.kind == "poly" else self.size * self.size

    def matrix(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Basis values [n, n_terms] at normalized coordinates x, y [n] in [-1, 1] (float64)."""
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
        if self.kind == "poly":
            return design_matrix(x, y, self.size)
        g = self.size
        bx, by = self._axis(x), self._axis(y)  # [n, g]
        return (by[:, :, None] * bx[:, None, :]).reshape(len(x), g * g)  # row-major: index = iy * g + ix

    def local_matrix(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A spline's basis at normalized coordinates x, y [n] as its 4 x 4 window of control
        points: (values [n,16] float64, the window's first coefficient [n] int64). Value
        ``a * 4 + b`` belongs to coefficient ``first + a * size + b``; every coefficient outside
        the window is 0 there. The same numbers as :meth:`matrix` (a row of it is 0 outside the
        window and holds these values inside), without its [n, size^2] rows of mostly zeros."""
        if self.kind != "spline":
            raise ValueError(f"local_matrix is for a spline basis, not {self.kind!r}")
        (wx, fx), (wy, fy) = self._axis_local(np.asarray(x, np.float64)), self._axis_local(np.asarray(y, np.float64))
        return (wy[:, :, None] * wx[:, None, :]).reshape(len(wx), 16), fy * self.size + fx

    def _axis_local(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(values [n,4] of the kernels first .. first + 3 at ``t`` [n], first [n]): the window of
        four kernels holding every kernel that is not 0 at ``t`` (moved inside the grid at its ends)."""
        g = self.size
        kernel0, weights = _cubic_bspline_kernels(self._knots(t))
        first = np.clip(kernel0, 0, g - 4)
        out = np.zeros((len(t), 4))
        rows = np.arange(len(t))
        for k, w in enumerate(weights):
            col = kernel0 + k
            slot = col - first
            on = (col >= 0) & (col < g) & (slot >= 0) & (slot < 4)
            out[rows[on], slot[on]] = w[on]
        return out, first

    def field(self, coeffs: Tensor, height: int, width: int) -> Tensor:
        """The field of ``coeffs`` [n_terms] at every pixel centre of a [height, width] image:
        [height, width] float64 on ``coeffs``' device."""
        ys = (np.arange(height) + 0.5) / height * 2.0 - 1.0
        xs = (np.arange(width) + 0.5) / width * 2.0 - 1.0
        if self.kind == "spline":  # separable: [H,g] @ C [g,g] @ [g,W]
            g = self.size
            c = coeffs.detach().double().cpu().reshape(g, g).numpy()
            by = FieldBasis("spline", g)._axis(ys)
            bx = FieldBasis("spline", g)._axis(xs)
            return torch.from_numpy(by @ c @ bx.T).to(coeffs.device)
        # Separable too: the monomial x^a y^b is column a of the powers of x times column b of those
        # of y, so the field is [H,d+1] @ C [d+1,d+1] @ [d+1,W] with C[b, a] its coefficient.
        d = self.size
        c = coeffs.detach().double().cpu().numpy()
        C = np.zeros((d + 1, d + 1))
        for value, (a, b) in zip(c, monomial_exponents(d)):
            C[b, a] = value
        powers = np.arange(d + 1)
        # (The products in torch: its thread settings hold, where numpy's BLAS may start its own threads.)
        Y, X = torch.from_numpy(ys[:, None] ** powers), torch.from_numpy(xs[:, None] ** powers)
        return (Y @ torch.from_numpy(C) @ X.T).to(coeffs.device)

    def _axis(self, t: np.ndarray) -> np.ndarray:
        """[n, g] values of the g spline kernels at normalized coordinates ``t`` [n]."""
        return _cubic_bspline_rows(self._knots(t), self.size)

    def _knots(self, t: np.ndarray) -> np.ndarray:
        """Normalized coordinates ``t`` in knot spacings: control points 1 .. g-2 span [-1, 1]
        (point i at -1 + (i - 1) h, h = 2 / (g - 3))."""
        h = 2.0 / (self.size - 3)
        return (t + 1.0) / h + 1.0

    def constant(self) -> np.ndarray:
        """Coefficients [n_terms] of the constant field 1."""
        if self.kind == "spline":
            return np.ones(self.n_terms)
        out = np.zeros(self.n_terms)
        out[0] = 1.0
        return out

    def prior_precision(self, distortion: float, level: float) -> np.ndarray:
        """[P,P] precision of a Gaussian prior on coefficients: the field's level (its mean
        coefficient for a spline, the constant term for a polynomial) has standard deviation
        ``level``; its variation around that level has ``distortion`` per coefficient (log
        units). A small ``distortion`` and a large ``level`` say: a view's error is mostly an
        unknown scale, and only what the data demand varies across the image."""
        P = self.n_terms
        if self.kind == "poly":
            return np.diag([1.0 / level**2] + [1.0 / distortion**2] * (P - 1))
        J = np.full((P, P), 1.0 / P)
        return (np.eye(P) - J) / distortion**2 + J / (P * level**2)
