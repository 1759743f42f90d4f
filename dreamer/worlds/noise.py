"""The procedural world's band-limited value noise (fBm), evaluated fast.

Same function as the reference renderer's ``_value_noise`` / ``_fbm``
(:mod:`dreamer.worlds.reference`): octave k is value noise on a lattice of spacing
``OCTAVE_WAVELENGTHS[k]`` (lattice values hashed from the cell, a smoothstep-weighted
trilinear blend inside a cell), faded out where its wavelength is under ~2 pixel footprints.
How it is evaluated:

* Lookup tables replace the chained hash ``perm[(perm[(perm[x] + y) & m] + z) & m]``:
  ``perm[(perm[x] + y) & m]`` over all (x, y), and the lattice value per ``h + z``.
* Value noise is a linear interpolation of lattice values read at the smoothstep-warped
  coordinate ``floor(q) + smoothstep(frac(q))``. So an octave over a small region is one
  bilinear ``grid_sample`` of a table of the lattice values of the cells the region touches:
  on a room face (a plane of constant world coordinate) a 2D table blended along the face's
  axis; elsewhere an atlas of the z layers with the values at z and z + 1 as two channels,
  then a lerp along z. The tables of all the octaves live at every pixel of a surface are
  stacked into one atlas, read by one ``grid_sample``.
* A surface's tables depend on the surface and the octaves only, not on the camera: those of
  a whole surface (its bounding box) that stay small are built once and kept per world
  (:class:`NoiseTables`); other tables cover the cells the pixels touch and are built per call.
* Octaves whose tables would outgrow the pixels are evaluated per pixel, in cache-sized chunks.
* Octaves live at only some pixels run one at a time on those pixels; that set only shrinks
  from one octave to the next, and is compacted when a quarter of it has died.

Results equal the reference's up to float rounding (tests/test_world_fast.py states the bound).
"""

from __future__ import annotations

import math
import threading

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dreamer.worlds.shading import FADE_HI, FADE_LO, OCTAVE_PERSISTENCE, OCTAVE_WAVELENGTHS, PERM_SIZE

__all__ = ["noise_tables", "lattice_values", "value_noise", "fbm", "NoiseTables"]

_MASK = PERM_SIZE - 1
_ROW = PERM_SIZE + 1  # the hash table's row length (x and y run over 0..PERM_SIZE, wrapping)
# Compact the working set of a partly live octave when fewer than this share of it is live.
_COMPACT_BELOW = 0.75
# Per-pixel noise runs in chunks of this many pixels (its temporaries then stay in cache).
_NOISE_CHUNK = 1 << 15
# An octave's table is used while it has at most this many cells per pixel (plus a floor for
# small surfaces). The atlas stays under this many texels per side: grid_sample's float32
# coordinates are exact to about 6e-8 of a side, 1e-4 of a cell at this size.
_CELLS_PER_PIXEL = 1.0
_MIN_CELLS = 4096
_MAX_SIDE = 2048
# A whole solid surface's kept table (z layers stacked along the rows) may be this tall: rows
# are read at about 1.2e-4 texel (at most 2.6e-5 of colour per octave), and an object's finer
# octaves then come from tables instead of per pixel.
_MAX_ROWS_3D = 4096
# A whole surface's table is kept (built once per world) while it has at most this many texels.
_KEPT_CELLS = 1 << 20
# grid_sample's points are split into one batch per torch thread (up to this many) when there
# are at least this many (its CPU kernel parallelizes over batches only).
_MAX_SPLIT = 8
_SPLIT_MIN = 1 << 15


class NoiseTables:
    """Atlases of whole surfaces' noise tables, kept per world and device (they depend on the
    surface and the octaves, not on the camera), up to ``max_bytes`` in all."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: dict[tuple, tuple[Tensor, list[int], list[list[tuple[int, int]]]]] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple) -> tuple[Tensor, list[int], list[list[tuple[int, int]]]] | None:
        return self._items.get(key)

    def put(self, key: tuple, atlas: Tensor, r0: list[int], cells: list[list[tuple[int, int]]]) -> None:
        size = atlas.numel() * atlas.element_size()
        with self._lock:
            if key not in self._items and self._bytes + size <= self.max_bytes:
                self._items[key] = (atlas, r0, cells)
                self._bytes += size

    @property
    def nbytes(self) -> int:
        return self._bytes


def noise_tables(perm: np.ndarray, lattice: np.ndarray) -> dict[str, Tensor]:
    """Lookup tables for the value noise from the permutation ``perm`` and lattice values.

    * ``noise_hxy`` [(PERM_SIZE + 1)^2] int32: at x * (PERM_SIZE + 1) + y (x, y in 0..PERM_SIZE,
      wrapping), perm[(perm[x & m] + y) & m], so the corners x + 1 and y + 1 need no wrap.
    * ``noise_value`` [2 PERM_SIZE + 1] float32: at j = hxy + (z & m) (+ 1), lattice[perm[j & m]].
    """
    x = np.arange(_ROW) & _MASK
    hxy = perm[(perm[x][:, None] + x[None, :]) & _MASK].astype(np.int32)
    value = lattice[perm[np.arange(2 * PERM_SIZE + 1) & _MASK]].astype(np.float32)
    return {"noise_hxy": torch.from_numpy(np.ascontiguousarray(hxy).reshape(-1)),
            "noise_value": torch.from_numpy(value)}


def lattice_values(ix: Tensor, iy: Tensor, iz: Tensor, P: dict[str, Tensor]) -> Tensor:
    """The lattice value lattice[perm[(perm[(perm[x] + y) & m] + z) & m]] at integer cells
    (ix, iy, iz) (int32 tensors of one shape)."""
    h = P["noise_hxy"].index_select(0, ((ix & _MASK) * _ROW + (iy & _MASK)).reshape(-1))
    return P["noise_value"].index_select(0, h + (iz & _MASK).reshape(-1)).view(ix.shape)


def value_noise(q: Tensor, P: dict[str, Tensor]) -> Tensor:
    """Value noise in [-1, 1] at lattice coordinates q [3,N], per point: the smooth trilinear
    blend of the eight corner values of each cell (corners (a, b, c) along x, y, z)."""
    fl = q.floor()
    w = _smooth_times(q - fl, 1.0)
    i = fl.int().bitwise_and_(_MASK)
    row = i[0] * _ROW + i[1]
    idx = torch.empty(4, row.shape[0], dtype=row.dtype, device=row.device)
    for k, step in enumerate((0, 1, _ROW, _ROW + 1)):  # corners (a, b) = 00, 01, 10, 11
        torch.add(row, step, out=idx[k])
    h = P["noise_hxy"].index_select(0, idx.view(-1)).view(4, -1).add_(i[2])
    table = P["noise_value"]
    v0 = table.index_select(0, h.view(-1)).view(4, -1)
    v1 = table.index_select(0, h.add_(1).view(-1)).view(4, -1)
    vb = torch.lerp(v0, v1, w[2])  # along z, for (a, b) = 00, 01, 10, 11
    ya = torch.lerp(vb[0::2], vb[1::2], w[1])  # along y, for a = 0, 1
    return torch.lerp(ya[0], ya[1], w[0])


def _per_pixel(base: list[Tensor], ks: list[int], P: dict[str, Tensor]) -> Tensor:
    """Octaves ks of value noise [K,N] at points base (three [N] planes, offsets added), per
    pixel, in chunks."""
    n = base[0].shape[0]
    out = torch.empty(len(ks), n, device=base[0].device)
    for r, k in enumerate(ks):
        lam = OCTAVE_WAVELENGTHS[k]
        off = P["octave_offset"][k].tolist()
        for i in range(0, n, _NOISE_CHUNK):
            q = torch.stack([torch.div(b[i:i + _NOISE_CHUNK], lam).add_(o) for b, o in zip(base, off)])
            out[r, i:i + _NOISE_CHUNK] = value_noise(q, P)
    return out


def _cell_range(bounds: tuple[float, float], k: int, off: float) -> tuple[int, int]:
    """(lowest cell, number of cells) that covers, with a margin for float32 rounding, the cells
    lo .. hi + 1 touched by lattice coordinates base / lam + off with base in ``bounds``."""
    lam = OCTAVE_WAVELENGTHS[k]
    lo = math.floor(bounds[0] / lam + off) - 2
    return lo, math.floor(bounds[1] / lam + off) + 4 - lo


def _table_shape(bounds: list[tuple[float, float]], k: int, face: tuple[int, float] | None,
                 P: dict[str, Tensor]) -> tuple[int, int]:
    """(rows, columns) of octave k's table in the atlas for points within ``bounds`` (per axis):
    a face's 2D table, or the z layers of a solid one stacked."""
    off = P["octave_offset_cpu"][k].tolist()
    s = [_cell_range(bounds[j], k, off[j])[1] for j in range(3)]
    if face is not None:
        s0, s1 = (s[j] for j in range(3) if j != face[0])
        return s1, s0
    return (s[2] - 1) * s[1], s[0]


def _smooth_times(f: Tensor, c: float) -> Tensor:
    """c * f * f * (3 - 2 f) as a fresh tensor."""
    t = f * f
    return torch.addcmul(t.mul(3.0 * c), t, f, value=-2.0 * c)


def _lattice_np(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray, P: dict[str, Tensor]) -> np.ndarray:
    """:func:`lattice_values` in numpy, for building small tables without a torch call per step."""
    hxy, value = P["noise_hxy_cpu"].numpy(), P["noise_value_cpu"].numpy()
    return value[hxy[(ix & _MASK) * _ROW + (iy & _MASK)] + (iz & _MASK)]


def _atlas(ks: list[int], cells: list[list[tuple[int, int]]], offs: list[list[float]],
           face: tuple[int, float] | None, P: dict[str, Tensor]) -> tuple[np.ndarray, list[int]]:
    """The atlas [C,H,W] (float32) of octaves ks' tables, stacked along its rows, and each
    table's first row. ``cells``: per octave and table axis, (lowest cell, number of cells)."""
    f32 = np.float32
    tables = []
    for r, k in enumerate(ks):
        axes = [np.arange(lo, lo + size) for lo, size in cells[r]]
        if face is not None:
            a = face[0]
            # the face's lattice coordinate, rounded as the points' own (float32 operations)
            fq = f32(face[1]) / f32(OCTAVE_WAVELENGTHS[k]) + f32(offs[r][a])
            ca = math.floor(fq)
            wa = f32(fq - f32(ca))
            wa = wa * wa * (f32(3.0) - f32(2.0) * wa)
            v, u = np.meshgrid(axes[1], axes[0], indexing="ij")  # rows: second axis, columns: first
            layers = []
            for c in (ca, ca + 1):
                ijk = [u, v]
                ijk.insert(a, np.full_like(u, c))
                layers.append(_lattice_np(*ijk, P))
            tables.append((layers[0] + (layers[1] - layers[0]) * wa)[None])
        else:
            z, y, x = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
            L = _lattice_np(x, y, z, P)
            nx = cells[r][0][1]
            tables.append(np.stack([L[:-1].reshape(-1, nx), L[1:].reshape(-1, nx)]))  # values at z, z + 1
    r0 = [0]
    for t in tables:
        r0.append(r0[-1] + t.shape[1])
    atlas = np.zeros((tables[0].shape[0], r0.pop(), max(t.shape[2] for t in tables)), dtype=f32)
    for t, r in zip(tables, r0):
        atlas[:, r:r + t.shape[1], :t.shape[2]] = t
    return atlas, r0


def _tabled(base: list[Tensor], ks: list[int], face: tuple[int, float] | None,
            bounds: list[tuple[float, float]], P: dict[str, Tensor],
            kept: tuple[NoiseTables, int] | None = None) -> Tensor:
    """Octaves ks of value noise [K,N] at points base (three [N] planes, offsets added, within
    ``bounds`` per axis), read from one atlas of per-octave tables (see the module's
    docstring). ``face``: (axis, lattice base coordinate) of a room face, or None. ``kept``:
    where the atlas is kept and the surface's key, when ``bounds`` are the whole surface's."""
    dev = base[0].device
    K, n = len(ks), base[0].shape[0]
    offs = P["octave_offset_cpu"][ks].tolist()
    axes = [0, 1, 2] if face is None else [j for j in range(3) if j != face[0]]
    entry = None if kept is None else kept[0].get((kept[1], tuple(ks)))
    if entry is None:
        cells = [[_cell_range(bounds[j], k, offs[r][j]) for j in axes] for r, k in enumerate(ks)]
        atlas_np, r0 = _atlas(ks, cells, offs, face, P)
        atlas = torch.from_numpy(atlas_np).to(dev)
        if kept is not None:
            kept[0].put((kept[1], tuple(ks)), atlas, r0, cells)
    else:
        atlas, r0, cells = entry
    H, W = atlas.shape[1:]
    # Per octave (columns [K,1]): 1 / wavelength, lattice offsets, and the integer shifts that
    # map a cell to its atlas texel, plus half the side, so that (cell - shift) * 2 / (side - 1)
    # is grid_sample's [-1, 1] coordinate (all exact in float32).
    lo = [[c[a][0] for c in cells] for a in range(len(axes))]
    consts = [[1.0 / OCTAVE_WAVELENGTHS[k] for k in ks], *([o[j] for o in offs] for j in axes),
              [lo0 + 0.5 * (W - 1) for lo0 in lo[0]],
              [lo1 - r + 0.5 * (H - 1) for lo1, r in zip(lo[1], r0)]]
    if face is None:  # row = (z - lo) * rows per layer + (y - lo) + the octave's first row
        consts += [lo[2], [c[1][1] for c in cells]]
    col = torch.tensor(consts, dtype=torch.float32, device=dev)[:, :, None]

    def lattice(a: int) -> tuple[Tensor, Tensor]:
        """floor and fraction [K,N] of the lattice coordinates base / lam + off along table
        axis a. base * (1 / lam) is exact (lam is a power of two): one rounding, as the
        reference's base / lam + off. (A broadcast addcmul is several times slower.)"""
        q = (base[axes[a]][None] * col[0]).add_(col[1 + a])
        fl = q.floor()
        return fl, q.sub_(fl)

    def smooth_into(out: Tensor, g: Tensor, f: Tensor, c: float) -> None:
        """out = g + c f^2 (3 - 2 f) (f is overwritten)."""
        t = f * f
        torch.addcmul(g, t, f.mul_(-2.0).add_(3.0), value=c, out=out)

    n_axes = len(axes)
    # grid_sample runs batches in parallel, not points: split the points into one batch per
    # thread (the atlas expanded, not copied); padding points read texel 0.
    m = K * n
    split = max(1, min(torch.get_num_threads(), _MAX_SPLIT)) if m >= _SPLIT_MIN else 1
    mp = -(-m // split) * split
    grid = torch.empty(2, mp, device=dev)  # written by rows (strided writes are slower)
    grid[:, m:] = 0.0
    cw, ch = 2.0 / (W - 1), 2.0 / (H - 1)
    fl, f = lattice(0)
    smooth_into(grid[0, :m].view(K, n), fl.sub_(col[1 + n_axes]).mul_(cw), f, cw)
    fl, f = lattice(1)
    fl.sub_(col[2 + n_axes])
    if face is None:
        flz, fz = lattice(2)
        fl.add_(flz.sub_(col[3 + n_axes]).mul_(col[4 + n_axes]))
    smooth_into(grid[1, :m].view(K, n), fl.mul_(ch), f, ch)
    C = atlas.shape[0]
    out = F.grid_sample(atlas[None].expand(split, -1, -1, -1), grid.T.view(split, 1, mp // split, 2),
                        mode="bilinear", padding_mode="border", align_corners=True)
    out = out.view(split, C, mp // split)
    channels = [out[:, c].reshape(-1)[:m].view(K, n) for c in range(C)]
    if face is not None:
        return channels[0]
    t = fz * fz
    return torch.lerp(channels[0], channels[1], t.mul_(fz.mul_(-2.0).add_(3.0)))


# Surfaces of at most this many pixels evaluate all their octaves at once, dead pixels included
# (cheaper than compacting them).
_SMALL = 1 << 15
# Octaves read from one atlas together, while this many (pixel, octave) pairs or fewer: more
# and the temporaries fall out of the cache.
_BATCH = 1 << 17


def _bounds(base: list[Tensor]) -> list[tuple[float, float]]:
    """(min, max) of each of the three planes."""
    return [(float(b.min()), float(b.max())) for b in base]


def _octaves(base: list[Tensor], ks: list[int], face: tuple[int, float] | None,
             bounds: list[tuple[float, float]] | None, P: dict[str, Tensor],
             whole: tuple[NoiseTables, int, list[tuple[float, float]]] | None = None) -> Tensor:
    """Octaves ks [K,N] at points base (within ``bounds`` per axis; None: not computed yet):
    from the kept atlases of the whole surface (``whole``: where they are kept, the surface's
    key and bounds) while its tables stay small, else from atlases of the cells the pixels touch
    while those stay small (at most about a cell per pixel, the atlas within its size), the
    others per pixel."""
    n = base[0].shape[0]
    batches: dict[bool, list[list[int]]] = {True: [[]], False: [[]]}
    height = {True: 0, False: 0}
    direct = []
    for k in ks:
        kept = False
        if whole is not None and whole[0].nbytes < whole[0].max_bytes:
            rows, cols = _table_shape(whole[2], k, face, P)
            kept = rows * cols <= _KEPT_CELLS and cols <= _MAX_SIDE and rows <= (_MAX_SIDE if face else _MAX_ROWS_3D)
        if not kept:
            bounds = bounds or _bounds(base)
            rows, cols = _table_shape(bounds, k, face, P)
            small = rows * cols <= max(_MIN_CELLS, _CELLS_PER_PIXEL * n) * (2 if face is None else 1)
            if not (small and cols <= _MAX_SIDE and rows <= _MAX_SIDE):
                direct.append(k)
                continue
        group = batches[kept]
        if group[-1] and (height[kept] + rows > _MAX_SIDE or (len(group[-1]) + 1) * n > _BATCH):
            group.append([])
            height[kept] = 0
        group[-1].append(k)
        height[kept] += rows
    runs = [(batch, _tabled(base, batch, face, whole[2], P, whole[:2])) for batch in batches[True] if batch]
    runs += [(batch, _tabled(base, batch, face, bounds or [], P)) for batch in batches[False] if batch]
    if direct:
        runs.append((direct, _per_pixel(base, direct, P)))
    if len(runs) == 1 and runs[0][0] == ks:
        return runs[0][1]
    out = torch.empty(len(ks), n, device=base[0].device)
    for batch, values in runs:
        for k, row in zip(batch, values):
            out[ks.index(k)] = row
    return out


def _fade_of(x: Tensor) -> Tensor:
    """fade(x) (see :func:`dreamer.worlds.shading.fade`) in place on a fresh tensor x."""
    t = x.sub_(FADE_LO).div_(FADE_HI - FADE_LO).clamp_(0.0, 1.0)
    return t.mul(-2.0).add_(3.0).mul_(t).mul_(t)


def fbm(x: list[Tensor], fp: Tensor, amp: float, offset: list[float], P: dict[str, Tensor],
        face: tuple[int, float] | None,
        surface: tuple[NoiseTables, int, list[tuple[float, float]]] | None = None) -> Tensor:
    """Band-limited fractal noise [N] at points x (three [N] planes) of a surface with noise
    amplitude ``amp`` and ``offset``: the sum over octaves of value noise, each faded out where
    its wavelength is under ~2 footprints fp [N].

    ``face``: (axis, coordinate) of a room face (all points on the plane x[axis] = coordinate),
    whose octaves are 2D; None elsewhere. ``surface``: where the whole surface's tables are
    kept, its key and its bounds per axis (world coordinates, containing every point x)."""
    base = [x[j] + offset[j] for j in range(3)]
    whole = None
    if surface is not None:
        whole = (surface[0], surface[1], [(lo + o, hi + o) for (lo, hi), o in zip(surface[2], offset)])
    if face is not None:  # the face's lattice base coordinate, as the points have it
        face = (face[0], float(torch.tensor(face[1], dtype=torch.float32) + offset[face[0]]))
    inv_fp = fp.reciprocal()  # lam / fp is inv_fp * lam in torch (a scalar over a tensor)
    inv_max, inv_min = float(inv_fp.max()), float(inv_fp.min())
    bounds = None if whole is not None else _bounds(base)  # not needed while the whole surface's tables serve
    scales = [amp * OCTAVE_PERSISTENCE**k for k in range(len(OCTAVE_WAVELENGTHS))]
    # Octaves live at every pixel (on small surfaces: at any pixel) all at once.
    everywhere = [k for k, lam in enumerate(OCTAVE_WAVELENGTHS)
                  if (inv_min if fp.shape[0] > _SMALL else inv_max) * lam > FADE_LO]
    acc = torch.zeros_like(fp)
    if everywhere:
        v = _octaves(base, everywhere, face, bounds, P, whole)
        for r, k in enumerate(everywhere):
            lam = OCTAVE_WAVELENGTHS[k]
            if inv_min * lam >= FADE_HI:  # full strength everywhere
                acc.add_(v[r], alpha=scales[k])
            else:
                acc.addcmul_(_fade_of(inv_fp * lam), v[r], value=scales[k])
    # Octaves live at some pixels: one at a time, on a shrinking working set.
    out, idx = None, None  # the full result and the working set's pixels, once compacted
    for k in range(len(everywhere), len(OCTAVE_WAVELENGTHS)):
        lam = OCTAVE_WAVELENGTHS[k]
        if inv_max * lam <= FADE_LO:
            break  # wavelengths only get shorter: no pixel resolves any further octave
        live = inv_fp > FADE_LO / lam
        n_live = int(live.sum())
        if n_live < _COMPACT_BELOW * inv_fp.shape[0]:
            keep = live.nonzero()[:, 0]
            if out is None:
                out, idx = acc, keep
            else:
                out.index_copy_(0, idx, acc)
                idx = idx.index_select(0, keep)
            acc, inv_fp = acc.index_select(0, keep), inv_fp.index_select(0, keep)
            base = [b.index_select(0, keep) for b in base]
            inv_max = float(inv_fp.max())
            bounds = None
        v = _octaves(base, [k], face, bounds, P, whole)[0]
        acc.addcmul_(_fade_of(inv_fp * lam), v, value=scales[k])
    if out is None:
        return acc
    return out.index_copy_(0, idx, acc)
