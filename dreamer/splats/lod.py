"""Multi-scale Gaussians: levels of detail and the 3D smoothing filter (pure functions of tensors).

Levels of detail
    A scene made at several resolutions (the levels of a deep zoom) holds, in the zoomed region,
    Gaussians of every level: coarse ones made by a wide camera and finer ones made by cameras
    that magnify it. What a camera shows there must come from the level whose resolution matches
    the screen. Each Gaussian carries two world lengths:

    * ``lod_in``: the pixel footprint of the camera that made it (0 for the coarsest level);
    * ``lod_out``: the pixel footprint of the next finer level where that level covers it (0 if
      no finer level does).

    With ``S(l) = smoothstep(0, 1, log2(l f / z) + 1)`` (``f`` the focal length in pixels, ``z``
    the Gaussian's z-depth: ``S`` ramps up as the length ``l`` grows from half a pixel to a pixel
    on screen) the Gaussian's opacity is multiplied by

        ``w = (S(lod_in) if lod_in > 0 else 1) * (1 - S(lod_out) if lod_out > 0 else 1)``.

    A Gaussian fades in while its own footprint grows from half a pixel to one pixel, and fades
    out while the finer level's footprint does the same: at every zoom the finer level's weight
    and the coarser level's weight sum to one (a cross-fade over one octave, no popping), and a
    level camera (its footprint exactly one pixel) sees its own level alone.

3D smoothing filter (Mip-Splatting)
    A Gaussian cannot hold detail finer than the finest sampling of the views it was trained on.
    Each Gaussian is convolved with an isotropic 3D Gaussian of standard deviation
    ``filter_3d = sqrt(variance) * min(z / f)`` over the training cameras that see it (Mip-
    Splatting's variance 0.2): scales become ``sqrt(s^2 + filter_3d^2)`` and the opacity is
    multiplied by ``sqrt(prod s^2 / prod (s^2 + filter_3d^2))`` so the Gaussian's integral is
    unchanged. Both are exact for any rotation (the filter is isotropic), so a file can store the
    filtered values and any viewer reproduces the filter (:meth:`Gaussians.save_ply`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from dreamer.cameras import Camera

__all__ = ["LevelsOfDetail", "lod_weights", "apply_filter_3d", "filter_3d_std", "MIP_FILTER_VARIANCE"]

MIP_FILTER_VARIANCE = 0.2
"""Mip-Splatting's 3D filter variance, in squared pixels of the finest training sampling."""
LOD_FULL_PX = 1.0
"""On-screen size (pixels) of a level's footprint at which the level is fully faded in; it fades
in from half that size."""


def _check_vector(t, n: int, name: str) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [N], got {type(t).__name__}")
    if tuple(t.shape) != (n,):
        raise ValueError(f"{name} must have shape [{n}], got {tuple(t.shape)}")


@dataclass(eq=False)
class LevelsOfDetail:
    """Per-Gaussian (or per-point) level of detail: ``level`` [N] (the zoom level it was made at,
    0 = the scene), ``lod_in`` [N] and ``lod_out`` [N] (world lengths; see the module docstring;
    0 = no fade)."""

    level: Tensor
    lod_in: Tensor
    lod_out: Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.level, Tensor) or self.level.ndim != 1:
            got = getattr(self.level, "shape", type(self.level).__name__)
            raise ValueError(f"level must be a tensor [N], got {got}")
        n = self.level.shape[0]
        for name in ("lod_in", "lod_out"):
            t = getattr(self, name)
            _check_vector(t, n, name)
            if not torch.isfinite(t).all() or (t < 0).any():
                raise ValueError(f"{name} must hold finite lengths >= 0 (0 = no fade)")

    @classmethod
    def single_level(cls, n: int, device=None) -> "LevelsOfDetail":
        """``n`` Gaussians of level 0 that never fade."""
        z = torch.zeros(n, device=device)
        return cls(torch.zeros(n, dtype=torch.long, device=device), z, z.clone())

    def __len__(self) -> int:
        return int(self.level.shape[0])

    def select(self, index: Tensor) -> "LevelsOfDetail":
        return LevelsOfDetail(self.level[index], self.lod_in[index], self.lod_out[index])

    def cat(self, other: "LevelsOfDetail") -> "LevelsOfDetail":
        return LevelsOfDetail(torch.cat([self.level, other.level.to(self.level)]),
                              torch.cat([self.lod_in, other.lod_in.to(self.lod_in)]),
                              torch.cat([self.lod_out, other.lod_out.to(self.lod_out)]))

    def to(self, device) -> "LevelsOfDetail":
        return LevelsOfDetail(self.level.to(device), self.lod_in.to(device), self.lod_out.to(device))

    def weights(self, xyz: Tensor, camera: Camera) -> Tensor:
        """:func:`lod_weights` of points ``xyz`` [N,3] in ``camera``."""
        return lod_weights(xyz, self.lod_in, self.lod_out, camera)


def _ramp(length: Tensor, f: float, z: Tensor) -> Tensor:
    """S(l): 0 while ``length`` projects under half a pixel, 1 from one pixel on, smooth between."""
    px = length * f / (z * LOD_FULL_PX)
    t = (torch.log2(px.clamp_min(1e-30)) + 1.0).clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


@torch.no_grad()
def lod_weights(xyz: Tensor, lod_in: Tensor, lod_out: Tensor, camera: Camera) -> Tensor:
    """Opacity multipliers [N] in [0, 1] of Gaussians at ``xyz`` [N,3] with fade lengths
    ``lod_in``, ``lod_out`` [N] seen by ``camera`` (see the module docstring). Points behind the
    camera get the weight of a point at a tiny depth (they are not drawn anyway)."""
    n = xyz.shape[0]
    _check_vector(lod_in, n, "lod_in")
    _check_vector(lod_out, n, "lod_out")
    cam = camera.to(xyz.device)
    c2w = cam.c2w.to(torch.float64)
    z = ((xyz.to(torch.float64) - c2w[:3, 3]) @ c2w[:3, 2]).clamp_min(1e-12)
    f = math.sqrt(cam.fx * cam.fy)
    w = torch.ones(n, dtype=torch.float64, device=xyz.device)
    fade_in = lod_in > 0
    if fade_in.any():
        w = torch.where(fade_in, _ramp(lod_in.double(), f, z), w)
    fade_out = lod_out > 0
    if fade_out.any():
        w = torch.where(fade_out, w * (1.0 - _ramp(lod_out.double(), f, z)), w)
    return w.to(xyz.dtype)


def apply_filter_3d(scales: Tensor, opacities: Tensor, filter_std: Tensor) -> tuple[Tensor, Tensor]:
    """Scales [N,3] and opacities [N] of Gaussians convolved with isotropic 3D Gaussians of
    standard deviations ``filter_std`` [N] (differentiable in scales and opacities): exact, since
    ``R diag(s^2) R^T + f^2 I = R diag(s^2 + f^2) R^T``; the opacity keeps the integral."""
    f2 = (filter_std.to(scales.dtype) ** 2)[:, None]
    s2 = scales * scales
    filtered = s2 + f2
    ratio = torch.prod(s2 / filtered, dim=1)
    return torch.sqrt(filtered), opacities * torch.sqrt(ratio)


@torch.no_grad()
def filter_3d_std(xyz: Tensor, cameras: Sequence[Camera], *, variance: float = MIP_FILTER_VARIANCE,
                  lod: tuple[Tensor, Tensor] | None = None, margin: float = 0.15) -> Tensor:
    """Mip-Splatting's 3D filter size [N] of points ``xyz`` [N,3]: ``sqrt(variance)`` times the
    smallest pixel footprint ``z / f`` among ``cameras`` whose field of view (grown by ``margin``
    of its size) holds the point in front of the camera; with ``lod = (lod_in, lod_out)`` a
    camera counts only where the point's level-of-detail weight is at least 1/255 (drawn at all).
    Points no camera sees
    get the largest footprint found (Mip-Splatting's choice)."""
    if not cameras:
        raise ValueError("filter_3d_std needs at least one camera")
    n = xyz.shape[0]
    best = torch.full((n,), math.inf, dtype=torch.float64, device=xyz.device)
    x64 = xyz.to(torch.float64)
    for cam in cameras:
        cam = cam.to(xyz.device)
        c2w = cam.c2w.to(torch.float64)
        local = (x64 - c2w[:3, 3]) @ c2w[:3, :3]
        z = local[:, 2]
        zs = z.clamp_min(1e-12)
        u = cam.fx * local[:, 0] / zs + cam.cx
        v = cam.fy * local[:, 1] / zs + cam.cy
        mu, mv = margin * cam.width, margin * cam.height
        seen = (z > 0) & (u >= -mu) & (u <= cam.width + mu) & (v >= -mv) & (v <= cam.height + mv)
        if lod is not None:  # a weight under 1/255 draws nothing (the rasterizer's alpha threshold)
            seen &= lod_weights(xyz, lod[0], lod[1], cam) >= 1.0 / 255.0
        fp = z / math.sqrt(cam.fx * cam.fy)
        best = torch.where(seen, torch.minimum(best, fp), best)
    found = torch.isfinite(best)
    if not found.all():
        fallback = float(best[found].max()) if found.any() else 1.0
        best = torch.where(found, best, torch.full_like(best, fallback))
    return (math.sqrt(variance) * best).to(xyz.dtype)
