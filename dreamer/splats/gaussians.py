"""3D Gaussians: parameters, initialization from a point cloud, rendering and the 3DGS .ply file
(the compressed .spz: :mod:`dreamer.splats.spz`).

Parameters are stored the way they are optimised and the way the standard 3DGS .ply stores them
(INRIA layout, read by SuperSplat, splat-transform and three.js viewers):

==================  ==========  ==================================================================
field               shape       meaning
==================  ==========  ==================================================================
``means``           [N,3]       centres, world units
``quats``           [N,4]       rotations w x y z (not necessarily unit; normalized when used)
``log_scales``      [N,3]       log of the standard deviations along the local axes
``opacity_logits``  [N]         logit of the opacity (opacity = sigmoid)
``sh0``             [N,1,3]     SH DC term per channel (colour = 0.5 + SH_C0 * sh0 at degree 0)
``shN``             [N,K-1,3]   higher SH coefficients, K = (degree + 1)^2
==================  ==========  ==================================================================

PLY layout (binary little endian, all float32, one ``vertex`` element):
``x y z nx ny nz f_dc_0..2 f_rest_0..(3*(K-1)-1) opacity scale_0..2 rot_0..3``, with ``f_rest``
channel-major: ``f_rest[c * (K-1) + k] = shN[:, k, c]``. Normals are written as zeros; files
without them (gsplat's ``export_splats``) load too.

Multi-scale scenes (a deep zoom, :mod:`dreamer.splats.lod`) carry optional per-Gaussian data:
``lod`` (the zoom level each Gaussian was made at and its level-of-detail fade lengths),
``filter_3d`` (the standard deviation of its 3D smoothing filter) and the ``rasterize_mode`` they
were trained for. In the .ply they follow the standard properties as extra float properties
that standard viewers ignore: ``zoom_level``, ``lod_in``, ``lod_out`` and ``filter_3d``, and
the mode is a header line ``comment rasterize_mode antialiased``. The standard ``scale_*`` and
``opacity`` already include the 3D filter (exactly: ``scale = sqrt(s^2 + filter_3d^2)``,
``opacity = o sqrt(prod s^2 / prod scale^2)``), so every viewer reproduces it; ``filter_3d``
gives the unfiltered values back to a trainer. A viewer reproduces the rest as
:meth:`Gaussians.rasterize` does: opacity times the level-of-detail weight of
:func:`dreamer.splats.lod.lod_weights` (per frame), and for ``antialiased`` times
``sqrt(det(cov2d) / det(cov2d + 0.3 I))`` (gsplat's ``rasterize_mode="antialiased"``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from dreamer.cameras import Camera
from dreamer.pointcloud import PointCloud
from dreamer.splats.lod import LevelsOfDetail, apply_filter_3d
from dreamer.splats.rasterizer import (RASTERIZE_MODES, SH_C0, Backend, RasterOutput, num_sh_bases, rasterize,
                                       sh_degree_from_bases)

__all__ = ["Gaussians", "PARAM_NAMES", "rgb_to_sh0", "sh0_to_rgb", "merge_points_on_grid"]

log = logging.getLogger(__name__)

PARAM_NAMES = ("means", "quats", "scales", "opacities", "sh0", "shN")
"""Names of the parameters as gsplat's strategies expect them (``scales`` = log scales,
``opacities`` = logits), in the order of :meth:`Gaussians.params`."""

# Opacity logits read as +-inf become +-this (sigmoid: 1 - 1e-13, or 1e-13).
_LOGIT_LIMIT = 30.0

_FIELDS = ("means", "quats", "log_scales", "opacity_logits", "sh0", "shN")


def rgb_to_sh0(rgb: Tensor) -> Tensor:
    """Colour [...,3] in [0,1] -> SH DC coefficient [...,3] (inverse of :func:`sh0_to_rgb`)."""
    return (rgb - 0.5) / SH_C0


def sh0_to_rgb(sh0: Tensor) -> Tensor:
    """SH DC coefficient [...,3] -> colour [...,3] (not clamped)."""
    return sh0 * SH_C0 + 0.5


def _pack_rows(rows: Tensor, margin: int = 0) -> tuple[Tensor, list[int], Tensor] | None:
    """Each row of ``rows`` (int64 [N,C]) as one int64 (mixed radix, the first column most
    significant, so the order of the rows is kept), with room for rows up to ``margin`` beyond
    the range of each column; with the radices and the offset. None when they do not fit."""
    lo = rows.amin(0) - margin
    spans = (rows.amax(0) - lo + 1 + margin).tolist()
    if math.prod(spans) >= 2**62:
        return None
    return _packed(rows, spans, lo), spans, lo


def _packed(rows: Tensor, spans: list[int], lo: Tensor) -> Tensor:
    packed = torch.zeros(len(rows), dtype=torch.long, device=rows.device)
    for c, span in enumerate(spans):
        packed = packed * span + (rows[:, c] - lo[c])
    return packed


def _row_groups(rows: Tensor) -> tuple[Tensor, Tensor]:
    """The distinct rows of ``rows`` (int64 [N,C]) in lexicographic order and the index of each
    row among them, as ``torch.unique(rows, dim=0, return_inverse=True)`` gives them; through one
    packed int64 per row when the columns' ranges fit (a 1-D unique is about 3x faster)."""
    packing = _pack_rows(rows)
    if packing is None:
        return torch.unique(rows, dim=0, return_inverse=True)
    _, inverse = torch.unique(packing[0], return_inverse=True)
    distinct = torch.empty(int(inverse.max()) + 1, rows.shape[1], dtype=rows.dtype, device=rows.device)
    return distinct.index_copy_(0, inverse, rows), inverse


def _with_neighbours(cells: Tensor, hi: Tensor, lo: Tensor) -> tuple[Tensor, Tensor]:
    """``hi`` and ``lo`` ([n,3], per distinct cell ``cells`` [n,4]: level, x, y, z) taken over each
    cell and its 26 neighbours of the same level (those that hold points)."""
    packing = _pack_rows(cells, margin=1)
    keys = None if packing is None else packing[0]
    out_hi, out_lo = hi.clone(), lo.clone()
    n = len(cells)
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            for dz in (-1, 0, 1):
                if dx == dy == dz == 0:
                    continue
                near = cells + torch.tensor([0, dx, dy, dz], device=cells.device)
                if keys is not None:  # keys are sorted (cells are): a binary search
                    at = torch.searchsorted(keys, _packed(near, packing[1], packing[2])).clamp(max=n - 1)
                    found = keys[at] == _packed(near, packing[1], packing[2])
                else:
                    _, inv = torch.unique(torch.cat([cells, near]), dim=0, return_inverse=True)
                    where = torch.full((int(inv.max()) + 1,), -1, dtype=torch.long, device=cells.device)
                    where[inv[:n]] = torch.arange(n, device=cells.device)
                    at = where[inv[n:]]
                    found = at >= 0
                    at = at.clamp(min=0)
                out_hi = torch.where(found[:, None], torch.maximum(out_hi, hi[at]), out_hi)
                out_lo = torch.where(found[:, None], torch.minimum(out_lo, lo[at]), out_lo)
    return out_hi, out_lo


def merge_points_on_grid(points: PointCloud, cell_factor: float = 1.0, *, flat_levels: int = 0,
                         flat_tolerance: float = 0.0) -> PointCloud:
    """One point per occupied cell of a footprint grid: the initial cloud of the Gaussians.

    A point's cell has side ``2**ceil(log2(radius * cell_factor))`` (its resolution level, as in
    :func:`alignment.footprint_level`) on one absolute grid per level, so points of different
    resolutions never merge. A radius is the size of the pixel that made the point, which is
    the pixel size of the views the splats train on: with ``cell_factor`` 1 a cell is one to two
    pixels wide, and more points than pixels would be spent on detail no training view shows.
    The points of a cell become their mean position and colour, with the radius of the same
    total area, ``sqrt(sum radius^2)`` (a surface seen at its own resolution stays covered).

    Flat regions merge further: with ``flat_levels`` k > 0 a point joins the coarsest of the
    cells 2, 4, ..., 2**k times its own (the grids nest) whose points' colours, and those of the
    26 neighbouring cells of that size, all agree within ``flat_tolerance`` (the largest
    max - min of a channel, colours in [0, 1]). A flat wall then spends one Gaussian per
    2**k x 2**k fine cells; texture, and the colour changes a depth edge brings, keep the fine
    cells, and so does a band one coarse cell wide around them: a merged Gaussian is as wide as
    its cell and would otherwise spread over thin detail beside it (grout lines, silhouettes),
    which cost held-out quality when only the cell itself was tested.

    Returns a new cloud (float32 on the points' device); ``cell_factor`` <= 0 returns ``points``.
    """
    if not isinstance(points, PointCloud):
        raise TypeError(f"points must be a PointCloud, got {type(points).__name__}")
    if not (cell_factor < float("inf")):
        raise ValueError(f"cell_factor must be finite, got {cell_factor}")
    if isinstance(flat_levels, bool) or not isinstance(flat_levels, int) or not 0 <= flat_levels <= 8:
        raise ValueError(f"flat_levels must be an integer in [0, 8], got {flat_levels!r}")
    if not (0.0 <= flat_tolerance < float("inf")):
        raise ValueError(f"flat_tolerance must be a finite number >= 0, got {flat_tolerance}")
    if cell_factor <= 0 or len(points) == 0:
        return points
    from alignment import footprint_level

    r = points.radius.detach()
    if not bool(torch.isfinite(r).all()) or bool((r <= 0).any()):
        raise ValueError("PointCloud.radius must be finite and > 0 to merge the points on a footprint grid")
    level = footprint_level(r, cell_factor=cell_factor)
    xyz = points.xyz.detach().double()
    rgb = points.rgb.detach()
    cells = torch.floor(xyz * torch.pow(2.0, -level.double())[:, None]).long()
    # A point's key: (how many levels coarser, its level, its cell on that coarser grid), the
    # coarsest flat cell first; floor(x / 2**(L + k)) is the fine cell shifted right by k.
    key = torch.cat([torch.zeros_like(level)[:, None], level[:, None], cells], 1)
    open_ = torch.ones(len(points), dtype=torch.bool, device=r.device)
    colour = rgb.float()
    for k in range(flat_levels, 0, -1):
        coarse = torch.cat([level[:, None], cells >> k], 1)
        distinct, g = _row_groups(coarse)
        at = g[:, None].expand(-1, 3)
        hi = colour.new_full((len(distinct), 3), -float("inf")).scatter_reduce(0, at, colour, "amax")
        lo = colour.new_full((len(distinct), 3), float("inf")).scatter_reduce(0, at, colour, "amin")
        hi, lo = _with_neighbours(distinct, hi, lo)
        flat = ((hi - lo).amax(1) <= flat_tolerance)[g] & open_
        key[flat, 0] = k
        key[flat, 2:] = coarse[flat, 1:]
        open_ &= ~flat
    _, group = _row_groups(key)
    n = int(group.max()) + 1

    def total(x: Tensor) -> Tensor:
        return torch.zeros(n, *x.shape[1:], dtype=torch.float64, device=x.device).index_add_(0, group, x)

    count = total(torch.ones_like(r, dtype=torch.float64))
    return PointCloud((total(xyz) / count[:, None]).float(),
                      (total(rgb.double()) / count[:, None]).float(),
                      total(r.double() ** 2).sqrt().float())


def _as_stored(g: "Gaussians", log_scales: Tensor, logits: Tensor, path) -> tuple[Tensor, Tensor]:
    """The log scales and opacity logits as the .ply stores them (float32), after checking that
    the float32 set is one :meth:`Gaussians.load_ply` (and a viewer) can take: a float64 value
    beyond float32's range (3.4e38) would be written as inf, a tiny quaternion as zeros, and the
    log of a 3D-filtered scale that underflowed as -inf. An opacity logit that overflows is
    opacity 0 or 1 and is written as -+30, as the reader reads an infinite one."""
    if g.filter_3d is None and all(getattr(g, f).dtype == torch.float32 for f in _FIELDS):
        return log_scales, logits  # stored as they are, and the caller has just validated them
    logits = logits.float()
    logits = torch.where(torch.isinf(logits), logits.sign() * _LOGIT_LIMIT, logits)
    log_scales = log_scales.float()
    try:
        Gaussians(g.means.float(), g.quats.float(), log_scales, logits, g.sh0.float(), g.shN.float())
    except ValueError as e:
        raise ValueError(f"cannot write {path}: the .ply stores float32, and as float32 {e} (values beyond "
                         f"+-3.4e38 become inf, quaternions shorter than 1e-19 zero)") from None
    return log_scales, logits


@dataclass(eq=False)
class Gaussians:
    """A set of N >= 1 3D Gaussians (see the module docstring for the fields).

    All fields are float tensors on one device, finite, with matching N; validated on
    construction. The tensors may be ``nn.Parameter`` s during training; :meth:`detach`
    gives plain tensors. Optional: ``lod`` (levels of detail, :class:`LevelsOfDetail`),
    ``filter_3d`` [N] (3D smoothing filter, world units) and ``rasterize_mode`` (how
    :meth:`render` draws them by default).
    """

    means: Tensor
    quats: Tensor
    log_scales: Tensor
    opacity_logits: Tensor
    sh0: Tensor
    shN: Tensor
    lod: LevelsOfDetail | None = None
    filter_3d: Tensor | None = None
    rasterize_mode: str = "classic"

    def __post_init__(self) -> None:
        for name in _FIELDS:
            t = getattr(self, name)
            if not isinstance(t, Tensor):
                raise TypeError(f"Gaussians.{name} must be a torch.Tensor, got {type(t).__name__}")
            if not t.is_floating_point():
                raise ValueError(f"Gaussians.{name} must be a float tensor, got dtype {t.dtype}")
        if self.means.ndim != 2 or self.means.shape[1] != 3:
            raise ValueError(f"Gaussians.means must have shape [N,3], got {tuple(self.means.shape)}")
        n = self.means.shape[0]
        if n == 0:
            raise ValueError("Gaussians needs at least one Gaussian, got an empty set")
        shapes = {"quats": (n, 4), "log_scales": (n, 3), "opacity_logits": (n,), "sh0": (n, 1, 3)}
        for name, shape in shapes.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"Gaussians.{name} must have shape {list(shape)}, "
                                 f"got {tuple(getattr(self, name).shape)}")
        if self.shN.ndim != 3 or self.shN.shape[0] != n or self.shN.shape[2] != 3:
            raise ValueError(f"Gaussians.shN must have shape [N,K-1,3] with N={n}, got {tuple(self.shN.shape)}")
        if self.shN.shape[1] not in (0, 3, 8, 15, 24):
            raise ValueError(f"Gaussians.shN must hold K-1 = 0, 3, 8, 15 or 24 coefficients per channel "
                             f"(SH degree 0..4), got {self.shN.shape[1]}")
        for name in _FIELDS:
            t = getattr(self, name)
            if t.device != self.means.device:
                raise ValueError(f"Gaussians.{name} is on {t.device} but means is on {self.means.device}")
            bad = ~torch.isfinite(t.detach())
            if bad.any():
                rows = bad.reshape(n, -1).any(1)
                hint = ""
                if name == "opacity_logits" and not torch.isnan(t.detach()).any():  # torch.logit of 0 or 1
                    hint = (f"; an infinite logit is an opacity of exactly 0 or 1: clamp the logits to "
                            f"+-{_LOGIT_LIMIT:g} (what load_ply does with such a file)")
                raise ValueError(f"Gaussians.{name} has non-finite values (NaN/inf) in {int(rows.sum())} of {n} "
                                 f"Gaussians (first at index {int(rows.nonzero()[0])}){hint}")
        zero = self.quats.detach().norm(dim=1) == 0
        if zero.any():
            raise ValueError(f"Gaussians.quats has zero quaternions in {int(zero.sum())} of {n} Gaussians (first at "
                             f"index {int(zero.nonzero()[0])}); rotations need a non-zero norm")
        if self.lod is not None:
            if not isinstance(self.lod, LevelsOfDetail):
                raise TypeError(f"Gaussians.lod must be a LevelsOfDetail or None, got {type(self.lod).__name__}")
            if len(self.lod) != n:
                raise ValueError(f"Gaussians.lod has {len(self.lod)} entries for {n} Gaussians")
        if self.filter_3d is not None:
            if not isinstance(self.filter_3d, Tensor) or tuple(self.filter_3d.shape) != (n,):
                raise ValueError(f"Gaussians.filter_3d must be a tensor [{n}] or None, "
                                 f"got {getattr(self.filter_3d, 'shape', type(self.filter_3d).__name__)}")
            if not torch.isfinite(self.filter_3d).all() or (self.filter_3d < 0).any():
                raise ValueError("Gaussians.filter_3d must hold finite standard deviations >= 0")
        if self.rasterize_mode not in RASTERIZE_MODES:
            raise ValueError(f"Gaussians.rasterize_mode must be one of {RASTERIZE_MODES}, got {self.rasterize_mode!r}")

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_points(cls, points: PointCloud, *, sh_degree: int = 3, opacity: float = 0.5,
                    scale_mult: float = 1.0) -> "Gaussians":
        """One isotropic Gaussian per point.

        Args:
            points: the cloud (``xyz`` [N,3], ``rgb`` [N,3] in [0,1], ``radius`` [N] > 0: the
                world size of the pixel that made the point).
            sh_degree: SH degree of the result (0..4); higher coefficients start at 0.
            opacity: initial opacity in (0, 1).
            scale_mult: the standard deviation is ``scale_mult * radius``. At 1.0 it equals the
                spacing of the pixel grid the point was lifted from, which is what INRIA's
                initialization (RMS distance to the 3 nearest neighbours) gives on such a grid,
                with no neighbour search and no distortion where clouds of different views or
                resolutions overlap.
        Returns:
            Gaussians on the cloud's device, float32, identity rotations.
        """
        if not isinstance(points, PointCloud):
            raise TypeError(f"points must be a PointCloud, got {type(points).__name__}")
        if len(points) == 0:
            raise ValueError("cannot make Gaussians from an empty point cloud")
        if not 0.0 < opacity < 1.0:
            raise ValueError(f"opacity must be in (0, 1), got {opacity}")
        if not (scale_mult > 0 and math.isfinite(scale_mult)):
            raise ValueError(f"scale_mult must be a positive number, got {scale_mult}")
        if not 0 <= sh_degree <= 4:
            raise ValueError(f"sh_degree must be in [0, 4], got {sh_degree}")
        xyz = points.xyz.detach().float()
        r = points.radius.detach().float()
        for name, t in (("xyz", xyz), ("rgb", points.rgb), ("radius", r)):
            if not torch.isfinite(t).all():
                raise ValueError(f"PointCloud.{name} has non-finite values")
        if (r <= 0).any():
            raise ValueError(f"PointCloud.radius must be > 0 to size the Gaussians; {int((r <= 0).sum())} are not")
        n = len(points)
        quats = torch.zeros(n, 4, device=xyz.device)
        quats[:, 0] = 1.0
        return cls(
            means=xyz.clone(),
            quats=quats,
            log_scales=torch.log(r * scale_mult)[:, None].repeat(1, 3),
            opacity_logits=torch.full((n,), math.log(opacity / (1.0 - opacity)), device=xyz.device),
            sh0=rgb_to_sh0(points.rgb.detach().float().clamp(0.0, 1.0))[:, None, :].clone(),
            shN=torch.zeros(n, num_sh_bases(sh_degree) - 1, 3, device=xyz.device),
        )

    @classmethod
    def from_params(cls, params: dict[str, Tensor], *, rasterize_mode: str = "classic") -> "Gaussians":
        """From a dict with gsplat's names (see :data:`PARAM_NAMES`), detached; the optional
        entries ``level``, ``lod_in``, ``lod_out`` (all three or none) and ``filter_3d`` become
        :attr:`lod` and :attr:`filter_3d`."""
        missing = [k for k in PARAM_NAMES if k not in params]
        if missing:
            raise ValueError(f"params is missing {missing}; expected {list(PARAM_NAMES)}")
        lod = None
        if "level" in params:
            lod = LevelsOfDetail(params["level"].detach().round().long(), params["lod_in"].detach(),
                                 params["lod_out"].detach())
        f3d = params["filter_3d"].detach() if "filter_3d" in params else None
        return cls(*(params[k].detach() for k in PARAM_NAMES), lod=lod, filter_3d=f3d, rasterize_mode=rasterize_mode)

    def params(self) -> dict[str, Tensor]:
        """The fields under gsplat's names: means, quats, scales (log), opacities (logits), sh0, shN."""
        return dict(zip(PARAM_NAMES, (getattr(self, f) for f in _FIELDS)))

    # -- views -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.means.shape[0])

    @property
    def device(self) -> torch.device:
        return self.means.device

    @property
    def sh_degree(self) -> int:
        return sh_degree_from_bases(self.shN.shape[1] + 1)

    @property
    def scales(self) -> Tensor:
        """Standard deviations [N,3] (exp of the log scales)."""
        return torch.exp(self.log_scales)

    @property
    def opacities(self) -> Tensor:
        """Opacities [N] in (0,1)."""
        return torch.sigmoid(self.opacity_logits)

    @property
    def sh(self) -> Tensor:
        """All SH coefficients [N,K,3]."""
        return torch.cat([self.sh0, self.shN], 1)

    def _with(self, fn) -> "Gaussians":
        """A copy with ``fn`` applied to every tensor (the optional ones too)."""
        lod = None if self.lod is None else LevelsOfDetail(fn(self.lod.level), fn(self.lod.lod_in),
                                                           fn(self.lod.lod_out))
        f3d = None if self.filter_3d is None else fn(self.filter_3d)
        return Gaussians(*(fn(getattr(self, f)) for f in _FIELDS), lod=lod, filter_3d=f3d,
                         rasterize_mode=self.rasterize_mode)

    def to(self, device: torch.device | str) -> "Gaussians":
        return self._with(lambda t: t.to(device))

    def detach(self) -> "Gaussians":
        return self._with(lambda t: t.detach())

    def clone(self) -> "Gaussians":
        return self._with(lambda t: t.detach().clone())

    def select(self, index: Tensor) -> "Gaussians":
        """The Gaussians picked by a bool mask [N] or an index tensor (detached)."""
        return self._with(lambda t: t.detach()[index])

    def translated(self, offset: Tensor | Sequence[float]) -> "Gaussians":
        """The same Gaussians moved by ``offset`` [3] (added in float64, e.g. from a local frame
        to the world), detached."""
        off = torch.as_tensor(offset, dtype=torch.float64, device=self.device).reshape(3)
        g = self.detach()
        g.means = (g.means.double() + off).to(self.means.dtype)
        return g

    def filtered(self) -> tuple[Tensor, Tensor]:
        """(scales [N,3], opacities [N]) with the 3D filter applied (as drawn and as saved)."""
        scales, opacities = self.scales, self.opacities
        if self.filter_3d is not None:
            scales, opacities = apply_filter_3d(scales, opacities, self.filter_3d)
        return scales, opacities

    def baked_filter(self) -> tuple[Tensor, Tensor]:
        """(log scales [N,3], opacity logits [N]) with the 3D filter applied: what the files
        store and every viewer draws. Without a filter, the fields themselves; with one, float64
        (a float32 scale below 1e-23 squares to 0, and its log would be -inf)."""
        if self.filter_3d is None:
            return self.log_scales, self.opacity_logits
        scales, opacities = apply_filter_3d(torch.exp(self.log_scales.detach().double()),
                                            torch.sigmoid(self.opacity_logits.detach().double()),
                                            self.filter_3d.detach().double())
        o = opacities.clamp(1e-12, 1 - 1e-12)
        return torch.log(scales), torch.log(o / (1 - o))

    def __repr__(self) -> str:
        extra = "" if self.lod is None else f", levels={int(self.lod.level.max()) + 1}"
        return f"Gaussians(n={len(self)}, sh_degree={self.sh_degree}, device={self.device}{extra})"

    # -- rendering -------------------------------------------------------------------------------
    def rasterize(self, camera: Camera, *, sh_degree: int | None = None, backend: Backend = "auto",
                  rasterize_mode: str | None = None, lod: bool = True, **kwargs) -> RasterOutput:
        """Differentiable render (see :func:`dreamer.splats.rasterizer.rasterize`): the 3D filter
        applied, opacities times the level-of-detail weights in ``camera`` (unless ``lod`` is
        False), in ``rasterize_mode`` (default :attr:`rasterize_mode`)."""
        camera = camera.to(self.device)
        scales, opacities = self.filtered()
        if lod and self.lod is not None:
            opacities = opacities * self.lod.weights(self.means.detach(), camera)
        mode = self.rasterize_mode if rasterize_mode is None else rasterize_mode
        return rasterize(self.means, self.quats, scales, opacities, self.sh, camera, sh_degree=sh_degree,
                         backend=backend, rasterize_mode=mode, **kwargs)

    @torch.no_grad()
    def render(self, camera: Camera, *, sh_degree: int | None = None, background: Tensor | None = None,
               backend: Backend = "auto", **kwargs) -> tuple[Tensor, Tensor, Tensor]:
        """Render into ``camera`` without gradients.

        Returns ``rgb`` [H,W,3] (composited over ``background`` [3], default black, and clamped
        to [0,1]), expected z-``depth`` [H,W] (0 where empty) and ``alpha`` [H,W], on the
        Gaussians' device. gsplat's CUDA kernels on CUDA, the pure-torch rasterizer elsewhere.
        """
        if not isinstance(camera, Camera):
            raise TypeError(f"camera must be a dreamer.cameras.Camera, got {type(camera).__name__}")
        out = self.rasterize(camera, sh_degree=sh_degree, backend=backend, **kwargs)
        rgb = out.rgb
        if background is not None:
            bg = torch.as_tensor(background, dtype=rgb.dtype, device=rgb.device)
            if bg.shape != (3,):
                raise ValueError(f"background must have shape [3], got {tuple(bg.shape)}")
            rgb = rgb + (1.0 - out.alpha[..., None]) * bg
        return rgb.clamp(0.0, 1.0), out.depth, out.alpha

    # -- files -------------------------------------------------------------------------------------
    def save_ply(self, path: str | Path) -> None:
        """Write the standard 3DGS binary .ply (see the module docstring), atomically.

        Parameters are written as float32; a float32 set without a 3D filter reads back bit for
        bit. With a filter the standard properties hold the filtered Gaussians (what every viewer
        draws) and :meth:`load_ply` returns those, with ``filter_3d`` None. A set that float32
        cannot hold (a float64 value beyond +-3.4e38, a quaternion that rounds to zero) raises
        ValueError before anything is written; an opacity logit beyond it is written as +-30.
        """
        from dreamer.io import atomic_path

        g = self.detach()
        g.__post_init__()  # parameters may have been changed in place since construction
        n, k1 = len(g), g.shN.shape[1]
        names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        names += [f"f_rest_{i}" for i in range(3 * k1)]
        names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
        log_scales, logits = _as_stored(g, *g.baked_filter(), path)
        cols = [
            g.means, torch.zeros_like(g.means), g.sh0[:, 0, :],
            g.shN.transpose(1, 2).reshape(n, 3 * k1),  # channel-major
            logits[:, None], log_scales, g.quats,
        ]
        if g.lod is not None:
            names += ["zoom_level", "lod_in", "lod_out"]
            cols += [g.lod.level[:, None], g.lod.lod_in[:, None], g.lod.lod_out[:, None]]
        if g.filter_3d is not None:
            names += ["filter_3d"]
            cols += [g.filter_3d[:, None]]
        data = torch.cat([c.float().cpu() for c in cols], 1).numpy().astype("<f4", copy=False)
        header = "ply\nformat binary_little_endian 1.0\n"
        if g.rasterize_mode != "classic":
            header += f"comment rasterize_mode {g.rasterize_mode}\n"
        header += f"element vertex {n}\n"
        header += "".join(f"property float {name}\n" for name in names)
        header += "end_header\n"
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                f.write(header.encode("ascii"))
                np.ascontiguousarray(data).tofile(f)

    def save_spz(self, path: str | Path, *, version: int = 3, **options) -> None:
        """Write Niantic's compressed .spz (version 3 or 4), about a tenth of the .ply's size,
        holding the same scene within the format's quantization; see
        :func:`dreamer.splats.spz.save_spz` for the options and the errors per attribute."""
        from dreamer.splats.spz import save_spz

        save_spz(self, path, version=version, **options)

    @classmethod
    def load_spz(cls, path: str | Path, device: torch.device | str | None = None) -> "Gaussians":
        """Read an .spz (versions 2-4; see :func:`dreamer.splats.spz.load_spz`)."""
        from dreamer.splats.spz import load_spz

        return load_spz(path, device=device)

    @classmethod
    def load_ply(cls, path: str | Path, device: torch.device | str | None = None) -> "Gaussians":
        """Read a 3DGS .ply: ours, or another tool's in the same layout (any property order, any
        numeric type, with or without normals, unknown extra properties ignored). Our level-of-
        detail properties and rasterize mode are read back; the 3D filter is already in the
        standard properties (``filter_3d`` of the result is None).

        An infinite opacity logit (opacity exactly 0 or 1, as some converters write it) is
        clamped to +-30. Raises ValueError for a file that is not a PLY, has no ``vertex`` element, lacks one of
        the 3DGS properties, has a number of ``f_rest`` properties that is not 3 * (K-1) for
        K = 1, 4, 9, 16 or 25, has no Gaussians, or holds non-finite values.
        """
        from dreamer.io import read_ply

        path = Path(path)
        ply = read_ply(path, "a 3DGS Gaussian PLY")
        if "vertex" not in ply:
            raise ValueError(f"{path}: no 'vertex' element; a 3DGS ply stores one Gaussian per vertex")
        v = ply["vertex"].data
        names = set(v.dtype.names or ())
        need = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
                "rot_0", "rot_1", "rot_2", "rot_3"]
        missing = [p for p in need if p not in names]
        if missing:
            raise ValueError(f"{path}: not a 3DGS Gaussian ply: vertex properties {missing} are missing "
                             f"(it has {sorted(names)})")
        rest = sorted((p for p in names if p.startswith("f_rest_")),
                      key=lambda p: int(p[7:]) if p[7:].isdigit() else -1)
        n_rest = len(rest)
        if rest != [f"f_rest_{i}" for i in range(n_rest)] or n_rest % 3:
            raise ValueError(f"{path}: f_rest properties must be f_rest_0..f_rest_(3*(K-1)-1), got {n_rest} of them")
        try:
            sh_degree_from_bases(n_rest // 3 + 1)
        except ValueError:
            raise ValueError(f"{path}: {n_rest} f_rest properties is not 3 * (K-1) for K = 1, 4, 9, 16 or 25") from None
        n = len(v)
        if n == 0:
            raise ValueError(f"{path}: the ply holds no Gaussians (0 vertices)")

        def cols(props: list[str]) -> Tensor:
            return torch.from_numpy(np.stack([np.asarray(v[p], dtype=np.float32) for p in props], 1))

        k1 = n_rest // 3
        shN = cols(rest).reshape(n, 3, k1).transpose(1, 2).contiguous() if k1 else torch.zeros(n, 0, 3)
        fields = dict(
            means=cols(["x", "y", "z"]),
            quats=cols(["rot_0", "rot_1", "rot_2", "rot_3"]),
            log_scales=cols(["scale_0", "scale_1", "scale_2"]),
            opacity_logits=cols(["opacity"])[:, 0].contiguous(),
            sh0=cols(["f_dc_0", "f_dc_1", "f_dc_2"])[:, None, :].contiguous(),
            shN=shN,
        )
        # Some writers quantize opacity to [0, 1] and store an exact 0 or 1 as a -inf / +inf logit
        # (splat-transform does): keep such a Gaussian fully transparent / opaque, finitely.
        logits = fields["opacity_logits"]
        inf = torch.isinf(logits)
        if inf.any():
            log.warning("%s: %d Gaussians have an infinite opacity logit (opacity exactly 0 or 1); "
                        "clamped to +-%g", path, int(inf.sum()), _LOGIT_LIMIT)
            fields["opacity_logits"] = torch.where(inf, logits.sign() * _LOGIT_LIMIT, logits)
        if {"zoom_level", "lod_in", "lod_out"} <= names:
            fields["lod"] = LevelsOfDetail(cols(["zoom_level"])[:, 0].round().long(),
                                           cols(["lod_in"])[:, 0].contiguous(),
                                           cols(["lod_out"])[:, 0].contiguous())
        mode = "classic"
        for line in getattr(ply, "comments", []):
            parts = line.split()
            if len(parts) == 2 and parts[0] == "rasterize_mode" and parts[1] in RASTERIZE_MODES:
                mode = parts[1]
        try:
            g = cls(**fields, rasterize_mode=mode)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        extra = names - set(need) - set(rest) - {"nx", "ny", "nz", "zoom_level", "lod_in", "lod_out", "filter_3d"}
        if extra:
            log.debug("%s: ignoring vertex properties %s", path, sorted(extra))
        return g if device is None else g.to(device)
