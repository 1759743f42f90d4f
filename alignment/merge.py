"""Multi-resolution voxel merge: do not add a point where the cloud already has one.

Each point has a footprint radius (world units; ``z / f`` of the view that lifted it). Its
*level* is ``ceil(log2(radius * cell_factor))``: the point lives on the grid of cubic cells of
side ``2**level``, the smallest power of two >= ``radius * cell_factor``. Every level is hashed
on its own grid, so fine points (a zoomed-in detail, a close-up view) are never merged into the
coarse cells of distant points, and the cloud stays multi-resolution.

A new point is dropped when its cell (on its own level's grid) already holds

* an existing point whose level is the same or finer (the region is already represented at
  this resolution or better; a coarser existing point does not block finer new detail), or
* an earlier kept new point of the same level (the lowest index wins), or a kept new point of
  a finer level.

Lifting the same view twice adds nothing: every new point lands in the cell of its twin.
Grid coordinates are exact: ``x * 2**-level`` is an exact power-of-two scaling and its floor
is taken once, at the finest level; a coarser level's cell is an arithmetic right shift of it
(``floor(floor(x / 2**a) / 2**b) == floor(x / 2**(a+b))``), so identical inputs always give
identical cells, on one absolute grid per level.

Cell size vs. footprint: a view samples a fronto-parallel surface every ``radius``; with
``cell_factor=1`` the cells are 1-2 footprints wide, so a re-visit at a slightly different
position is caught, but a new view's own points are also thinned to one per cell (measured on
a 512x512 view: 44% kept on a fronto-parallel wall, 67% on a slanted plane; 100% at
``cell_factor=0.5``, which in turn catches fewer re-visits). ``merge_within_new=False`` checks
new points against the existing cloud only, so a view keeps all of its own points.

Two implementations give identical results: a fast path (cells packed into 21-bit fields of
one int64, so a coarser level's key is a shift and a mask; membership through a hashed bitmap,
then an exact binary search of the few candidates) and a readable reference path (per-level
keys relative to the bounding box of the query cells, exact ``torch.unique`` when even those do
not fit in 63 bits), used when the new points span more than 2**21 finest cells along an axis.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from dreamer.pointcloud import BOX_BLOCK, block_bounds, block_points

__all__ = ["footprint_level", "dedup_mask"]

# Fast path: bits per axis of a packed cell key (3 * 21 = 63 bits of an int64).
_FIELD_BITS = 21
# Reference path: keys pack (cx, cy, cz) offsets into one int64 when the span product is below this.
_PACK_LIMIT = 1 << 62
# Fibonacci hashing constant (2**64 / golden ratio, as a signed int64); int64 products wrap.
_HASH_MUL = -7046029254386353131
# Hashed bitmap: at least 16 slots per distinct query cell, at most 2**24 slots (16 MB).
_HASH_MIN_BITS, _HASH_MAX_BITS = 10, 24


def _check_points(xyz: object, radius: object, name: str) -> tuple[Tensor, Tensor]:
    if not isinstance(xyz, Tensor) or not isinstance(radius, Tensor):
        raise TypeError(f"{name}_xyz and {name}_radius must be torch.Tensors")
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"{name}_xyz must have shape [N,3], got {tuple(xyz.shape)}")
    if tuple(radius.shape) != (xyz.shape[0],):
        raise ValueError(f"{name}_radius must have shape [{xyz.shape[0]}] like {name}_xyz, got {tuple(radius.shape)}")
    if not xyz.is_floating_point() or not radius.is_floating_point():
        raise ValueError(f"{name}_xyz and {name}_radius must be float tensors, got {xyz.dtype} and {radius.dtype}")
    if len(xyz) == 0:
        return xyz, radius
    # One reduction per input (NaN propagates through min and max); count only on failure.
    lo, hi = torch.aminmax(xyz.detach())
    if not bool(torch.isfinite(lo) & torch.isfinite(hi)):
        n_bad = int((~torch.isfinite(xyz)).any(1).sum())
        raise ValueError(f"{name}_xyz has {n_bad} points with non-finite coordinates")
    lo, hi = torch.aminmax(radius.detach())
    if not bool((lo > 0) & torch.isfinite(hi)):
        bad = ~(torch.isfinite(radius) & (radius > 0))
        raise ValueError(f"{name}_radius must be finite and > 0; {int(bad.sum())} values are not")
    return xyz, radius


def footprint_level(radius: Tensor, *, cell_factor: float = 1.0) -> Tensor:
    """int64 [N]: ``ceil(log2(radius * cell_factor))``, computed exactly (``torch.frexp``).

    The cell side of a point is ``2**level`` >= ``radius * cell_factor`` (and < twice it).
    """
    if not isinstance(radius, Tensor) or not radius.is_floating_point():
        raise TypeError("radius must be a float torch.Tensor [N]")
    if not (cell_factor > 0 and cell_factor < float("inf")):
        raise ValueError(f"cell_factor must be a finite number > 0, got {cell_factor}")
    size = radius.double() * float(cell_factor)
    if not bool((torch.isfinite(size) & (size > 0)).all()):
        raise ValueError("radius * cell_factor must be finite and > 0")
    mantissa, exponent = torch.frexp(size)  # size = mantissa * 2**exponent, mantissa in [0.5, 1)
    return exponent.long() - (mantissa == 0.5).long()


def _cells(xyz: Tensor, level: int) -> Tensor:
    """int64 [N,3] cell coordinates ``floor(xyz / 2**level)``.

    Exact in the input's own precision: multiplying by a power of two only changes the exponent.
    """
    if len(xyz) == 0:
        return torch.zeros(0, 3, dtype=torch.long, device=xyz.device)
    scaled = xyz.detach() * (2.0**-level)
    if not float(scaled.abs().max()) < 2.0**62:
        raise ValueError(
            f"coordinates up to {float(xyz.abs().max()):.3g} are too large for cells of side 2**{level}: "
            "more than 2**62 cells from the origin"
        )
    return torch.floor(scaled).long()


# Large clouds are tested in blocks of this many points on the CPU: the temporaries stay small
# (cache-sized, reused by the allocator instead of fresh pages).
_CPU_BLOCK = 1 << 16


def _inside_box(xyz: Tensor, lo: Tensor, hi: Tensor,
                boxes: Callable[[int], tuple[Tensor, Tensor]] | None = None) -> Tensor:
    """int64 indices (ascending) of the points [N,3] with ``lo <= xyz <= hi`` on every axis.

    On the CPU, blocks of :data:`BOX_BLOCK` points whose bounding box misses the box are left
    out before any point of theirs is touched, and blocks wholly inside it are taken whole
    (``boxes(block)``: those boxes, :func:`block_bounds` of ``xyz``, when the caller keeps them)."""
    if xyz.is_cuda or len(xyz) <= BOX_BLOCK:
        return torch.nonzero(((xyz >= lo) & (xyz <= hi)).all(1)).squeeze(1)
    b_lo, b_hi = block_bounds(xyz, BOX_BLOCK) if boxes is None else boxes(BOX_BLOCK)
    if len(b_lo) != -(-len(xyz) // BOX_BLOCK):
        raise ValueError(f"existing_blocks must hold one box per {BOX_BLOCK} points ({-(-len(xyz) // BOX_BLOCK)} "
                         f"boxes for {len(xyz)} points), got {len(b_lo)}")
    overlap = ((b_hi >= lo) & (b_lo <= hi)).all(1)
    blocks = torch.nonzero(overlap).squeeze(1)
    whole = ((b_lo.index_select(0, blocks) >= lo) & (b_hi.index_select(0, blocks) <= hi)).all(1)
    cand = block_points(blocks, BOX_BLOCK, len(xyz))
    # Per candidate point: inside when its block is, else by its own test (only the last block
    # can be short, so the flags repeat in step with the points).
    take = whole.repeat_interleave(BOX_BLOCK)[: len(cand)]
    test = torch.nonzero(~take).squeeze(1)
    for start in range(0, len(test), _CPU_BLOCK):
        at = test[start : start + _CPU_BLOCK]
        b = xyz.index_select(0, cand.index_select(0, at))
        take[at] = ((b >= lo) & (b <= hi)).all(1)
    return cand[take]


def _first_of_cell(keys: Tensor, blocked_cells: Tensor, inverse: Tensor) -> Tensor:
    """Keep mask: the lowest-index query of each distinct cell, unless the cell is blocked."""
    pos = torch.arange(len(keys), device=keys.device)
    first = torch.full((len(blocked_cells),), len(keys), dtype=torch.long, device=keys.device)
    first = first.scatter_reduce(0, inverse, pos, reduce="amin")
    return (first[inverse] == pos) & ~blocked_cells[inverse]


# ----------------------------------------------------------------------------- reference path


def _keys(query: Tensor, blockers: Tensor) -> tuple[Tensor, Tensor]:
    """Equal int64 keys for equal cells: query [M,3] -> [M], blockers [K,3] -> [K'] (K' <= K).

    Blockers outside the bounding box of the query cells cannot match and are left out.
    """
    lo = query.min(0).values
    hi = query.max(0).values
    blockers = blockers[((blockers >= lo) & (blockers <= hi)).all(1)]
    span = (hi - lo + 1).tolist()
    if span[0] * span[1] * span[2] < _PACK_LIMIT:
        q = query - lo
        b = blockers - lo
        return (
            q[:, 0] + span[0] * (q[:, 1] + span[1] * q[:, 2]),
            b[:, 0] + span[0] * (b[:, 1] + span[1] * b[:, 2]),
        )
    # Spans too large to pack into 63 bits: number the distinct rows instead (exact, slower).
    _, ids = torch.unique(torch.cat([query, blockers]), dim=0, return_inverse=True)
    return ids[: len(query)], ids[len(query) :]


def _dedup_reference(
    new_cells: Tensor, new_level: Tensor, levels: list[int], ex_cells: Tensor, ex_level: Tensor, within_new: bool
) -> Tensor:
    """The rules, level by level, with per-level bounding-box keys and ``torch.isin``."""
    finest = levels[0]
    keep = torch.zeros(len(new_cells), dtype=torch.bool, device=new_cells.device)
    kept: list[Tensor] = []  # finest-level cells of kept new points of the levels done so far
    for level in levels:
        shift = level - finest
        idx = torch.nonzero(new_level == level).squeeze(1)
        qk, bk = _keys(new_cells[idx] >> shift, torch.cat([ex_cells[ex_level <= level]] + kept) >> shift)
        uniq, inv = torch.unique(qk, return_inverse=True)
        blocked = torch.isin(uniq, bk)
        k = _first_of_cell(qk, blocked, inv) if within_new else ~blocked[inv]
        keep[idx[k]] = True
        if within_new:
            kept.append(new_cells[idx[k]])
    return keep


# ----------------------------------------------------------------------------- fast path


def _pack(cells: Tensor) -> Tensor:
    """[N,3] non-negative cells < 2**21 -> [N] int64 ``x | y << 21 | z << 42``."""
    return cells[:, 0] | (cells[:, 1] << _FIELD_BITS) | (cells[:, 2] << (2 * _FIELD_BITS))


def _coarsen(packed: Tensor, shift: int) -> Tensor:
    """The packed key of the cell ``shift`` levels coarser: every field shifted right by ``shift``."""
    if shift == 0:
        return packed
    field = (1 << (_FIELD_BITS - shift)) - 1
    mask = field | (field << _FIELD_BITS) | (field << (2 * _FIELD_BITS))
    return (packed >> shift) & mask


def _hash(keys: Tensor, bits: int) -> Tensor:
    return ((keys * _HASH_MUL) >> (64 - bits)) & ((1 << bits) - 1)


def _dedup_packed(
    new_key: Tensor, new_level: Tensor, levels: list[int], ex_key: Tensor, ex_level: Tensor, within_new: bool
) -> Tensor:
    """The same rules on packed finest-level keys; each blocker is touched once per level it can block."""
    finest = levels[0]
    device = new_key.device
    keep = torch.zeros(len(new_key), dtype=torch.bool, device=device)
    # Existing keys grouped by the first new level they can block (e <= level).
    groups: list[Tensor] = []
    below = None
    for level in levels:
        sel = ex_level <= level if below is None else (ex_level <= level) & (ex_level > below)
        groups.append(ex_key[sel])
        below = level
    kept: list[Tensor] = []
    for i, level in enumerate(levels):
        shift = level - finest
        idx = torch.nonzero(new_level == level).squeeze(1)
        qk = _coarsen(new_key[idx], shift)
        uniq, inv = torch.unique(qk, return_inverse=True)  # sorted
        bits = min(max(int(16 * len(uniq)).bit_length(), _HASH_MIN_BITS), _HASH_MAX_BITS)
        table = torch.zeros(1 << bits, dtype=torch.bool, device=device)
        table[_hash(uniq, bits)] = True
        blocked = torch.zeros(len(uniq), dtype=torch.bool, device=device)
        for blockers in groups[: i + 1] + kept:
            if len(blockers) == 0:
                continue
            bk = _coarsen(blockers, shift)
            bk = bk[table[_hash(bk, bits)]]  # candidates (a few per cent are hash collisions)
            at = torch.searchsorted(uniq, bk).clamp_(max=len(uniq) - 1)
            blocked[at[uniq[at] == bk]] = True
        k = _first_of_cell(qk, blocked, inv) if within_new else ~blocked[inv]
        keep[idx[k]] = True
        if within_new:
            kept.append(new_key[idx[k]])
    return keep


def dedup_mask(
    existing_xyz: Tensor,
    existing_radius: Tensor,
    new_xyz: Tensor,
    new_radius: Tensor,
    *,
    cell_factor: float = 1.0,
    merge_within_new: bool = True,
    existing_blocks: Callable[[int], tuple[Tensor, Tensor]] | None = None,
) -> Tensor:
    """Which new points to keep: bool [M], True = keep (its cell is still empty).

    Args:
        existing_xyz: [N,3] float world positions of the cloud (N may be 0).
        existing_radius: [N] float footprint radii (> 0), world units.
        new_xyz: [M,3] float world positions of the points about to be added.
        new_radius: [M] float footprint radii (> 0).
        cell_factor: cell side = ``radius * cell_factor`` rounded up to a power of two.
        merge_within_new: also merge the new points among themselves (the first of a cell wins;
            kept finer new points block coarser ones). False keeps every new point whose cell
            holds no existing point, so a view is never thinned by its own density (at
            ``cell_factor=1`` a fronto-parallel view keeps only ~45% of its own points).
        existing_blocks: ``existing_blocks(block)`` gives the bounding boxes of the existing
            points taken ``block`` at a time (:func:`dreamer.pointcloud.block_bounds` of
            ``existing_xyz``), e.g. :meth:`dreamer.pointcloud.PointCloud.block_bounds`, which keeps
            them from view to view; None: computed here when needed. They only decide which
            points are tested: the result is the same.

    The rules are in the module docstring. Vectorised (loops over the few distinct levels of
    the new points, none over points); tensors must be on one device, the result is on it.
    """
    _check_points(existing_xyz, existing_radius, "existing")
    _check_points(new_xyz, new_radius, "new")
    if existing_xyz.device != new_xyz.device:
        raise ValueError(
            f"existing and new points must be on one device, got {existing_xyz.device} and {new_xyz.device}"
        )
    new_level = footprint_level(new_radius, cell_factor=cell_factor)
    if len(new_xyz) == 0:
        return torch.zeros(0, dtype=torch.bool, device=new_xyz.device)
    levels = torch.unique(new_level).tolist()  # ascending: finest first
    finest, coarsest = levels[0], levels[-1]
    span_levels = coarsest - finest

    new_cells = _cells(new_xyz, finest)
    # Only cells inside the new points' box, widened to whole coarsest cells, can block anything.
    lo = (new_cells.min(0).values >> span_levels) << span_levels
    hi = ((new_cells.max(0).values >> span_levels) + 1) << span_levels  # exclusive
    ex_cells = new_cells[:0]
    ex_level = new_level[:0]
    if len(existing_xyz):
        # A cheap world-space prefilter (a coarsest cell of slack), then the exact cell test.
        pad = 2.0 ** (coarsest + 1)
        lo_w = (new_xyz.detach().min(0).values.double() - pad).to(existing_xyz.dtype)
        hi_w = (new_xyz.detach().max(0).values.double() + pad).to(existing_xyz.dtype)
        near = _inside_box(existing_xyz.detach(), lo_w, hi_w, existing_blocks)
        ex_level = footprint_level(existing_radius.index_select(0, near), cell_factor=cell_factor)
        ex_cells = _cells(existing_xyz.index_select(0, near), finest)
        useful = (ex_level <= coarsest) & ((ex_cells >= lo) & (ex_cells < hi)).all(1)
        ex_cells, ex_level = ex_cells[useful], ex_level[useful]

    if bool(((hi - lo) <= (1 << _FIELD_BITS)).all()):
        return _dedup_packed(
            _pack(new_cells - lo), new_level, levels, _pack(ex_cells - lo), ex_level, merge_within_new
        )
    return _dedup_reference(new_cells, new_level, levels, ex_cells, ex_level, merge_within_new)
