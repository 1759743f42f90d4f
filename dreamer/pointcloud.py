"""The growing point cloud: positions, colours and a world-space footprint radius per point."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["PointCloud", "block_bounds", "block_points", "BOX_BLOCK"]


@dataclass(eq=False)
class PointCloud:
    """Points with ``xyz`` [N,3] (world), ``rgb`` [N,3] in [0,1] and ``radius`` [N] (world units).

    ``radius`` is the pixel footprint of the view that made the point (z-depth / focal): the
    size a splat of this point should have, and the resolution level it belongs to.

    Growing a cloud point by point is the dream loop's inner step, so :meth:`cat` is O(new points):
    a cloud made by :meth:`cat` keeps its points at the front of a larger buffer, and the next
    :meth:`cat` on it writes the new points behind them in place (the buffer grows by half when it
    is full). Only the latest cloud of a chain owns the free space; appending to an older one
    copies, so every cloud keeps its points. The tensors are treated as read-only (nothing in the
    project writes into a cloud's tensors); pickling (``torch.save`` of a cloud or of a result
    holding one) stores the points alone, not the buffer.
    """

    xyz: Tensor
    rgb: Tensor
    radius: Tensor

    def __post_init__(self) -> None:
        n = self.xyz.shape[0] if self.xyz.ndim == 2 else -1
        if self.xyz.ndim != 2 or self.xyz.shape[1] != 3:
            raise ValueError(f"PointCloud.xyz must be [N,3], got {tuple(self.xyz.shape)}")
        if tuple(self.rgb.shape) != (n, 3):
            raise ValueError(f"PointCloud.rgb must be [{n},3], got {tuple(self.rgb.shape)}")
        if tuple(self.radius.shape) != (n,):
            raise ValueError(f"PointCloud.radius must be [{n}], got {tuple(self.radius.shape)}")
        self._buffer: _Buffer | None = None
        self._blocks: tuple[Tensor, Tensor, Tensor] | None = None  # (xyz it was taken of, lo, hi)

    def __getstate__(self) -> dict:
        # The points alone, as a plain cloud pickled before: a view into a buffer would pickle
        # the whole buffer.
        owned = self.owned()
        return {"xyz": owned.xyz, "rgb": owned.rgb, "radius": owned.radius}

    def owned(self) -> "PointCloud":
        """The same points in tensors that hold only them (this cloud when they already do): what
        to save, as ``torch.save`` of a view stores the whole memory it is a view of."""
        if all(_owns_memory(t) for t in (self.xyz, self.rgb, self.radius)):
            return self
        return PointCloud(*(t if _owns_memory(t) else t.clone() for t in (self.xyz, self.rgb, self.radius)))

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._buffer = None
        self._blocks = None

    @classmethod
    def empty(cls, device=None) -> "PointCloud":
        z = torch.zeros(0, 3, device=device)
        return cls(z, z.clone(), torch.zeros(0, device=device))

    def __len__(self) -> int:
        return int(self.xyz.shape[0])

    @property
    def device(self) -> torch.device:
        return self.xyz.device

    def to(self, device) -> "PointCloud":
        return PointCloud(self.xyz.to(device), self.rgb.to(device), self.radius.to(device))

    def select(self, index: Tensor) -> "PointCloud":
        """The points picked by a bool mask [N] or an index tensor."""
        return PointCloud(self.xyz[index], self.rgb[index], self.radius[index])

    def cat(self, other: "PointCloud") -> "PointCloud":
        """This cloud's points followed by ``other``'s (converted to this cloud's dtypes and device)."""
        n, m = len(self), len(other)
        buffer = self._buffer
        if buffer is None or not buffer.holds(self) or n + m > buffer.capacity:
            if any(t.requires_grad for t in (self.xyz, self.rgb, self.radius)):
                return self._cat_copy(other)
            buffer = _Buffer.grown(self, n + m)
        buffer.xyz[n:n + m] = other.xyz
        buffer.rgb[n:n + m] = other.rgb
        buffer.radius[n:n + m] = other.radius
        buffer.used = n + m
        out = PointCloud(buffer.xyz[:n + m], buffer.rgb[:n + m], buffer.radius[:n + m])
        out._buffer = buffer
        return out

    def _cat_copy(self, other: "PointCloud") -> "PointCloud":
        return PointCloud(
            torch.cat([self.xyz, other.xyz.to(self.xyz)]),
            torch.cat([self.rgb, other.rgb.to(self.rgb)]),
            torch.cat([self.radius, other.radius.to(self.radius)]),
        )

    def block_bounds(self, block: int | None = None) -> tuple[Tensor, Tensor]:
        """:func:`block_bounds` of ``xyz`` with ``block`` points per block (None:
        :data:`BOX_BLOCK`), kept for :data:`BOX_BLOCK`: a cloud grown by :meth:`cat` computes only
        the blocks its new points touch."""
        block = BOX_BLOCK if block is None else block
        if block != BOX_BLOCK:
            return block_bounds(self.xyz, block)
        if self._blocks is not None and self._blocks[0] is self.xyz:
            return self._blocks[1], self._blocks[2]
        buffer = self._buffer if self._buffer is not None and self._buffer.holds(self) else None
        if buffer is None:
            lo, hi = block_bounds(self.xyz, BOX_BLOCK)
        else:
            lo, hi = buffer.block_bounds(len(self))
        self._blocks = (self.xyz, lo, hi)
        return lo, hi

    def bounds(self) -> tuple[Tensor, Tensor]:
        """Axis-aligned bounds (min [3], max [3]); raises on an empty cloud."""
        if len(self) == 0:
            raise ValueError("an empty point cloud has no bounds")
        return self.xyz.amin(0), self.xyz.amax(0)

    # -- files ---------------------------------------------------------------------------------
    def save_ply(self, path: str | Path) -> None:
        """Binary little-endian PLY with ``x y z`` (float) and ``red green blue`` (uchar),
        plus a ``radius`` float property that viewers ignore and :meth:`load_ply` reads back.
        Colours are clamped to [0, 1]. Written to a temporary name, then renamed: a crash leaves
        the old file or none. Raises ValueError, before writing, for NaN or inf in a point
        (float64 values beyond float32's range included: the file is float32), which viewers
        would frame and draw as garbage."""
        from dreamer.io import atomic_path

        n = len(self)
        dtype = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"),
                 ("blue", "u1"), ("radius", "<f4")]
        arr = np.empty(n, dtype=dtype)
        xyz = self.xyz.detach().cpu().float().numpy()
        radius = self.radius.detach().cpu().float().numpy()
        rgb = self.rgb.detach().cpu().float().numpy()
        for name, values in (("xyz", xyz), ("rgb", rgb), ("radius", radius)):
            bad = ~np.isfinite(values).all(axis=tuple(range(1, values.ndim)))
            if bad.any():
                raise ValueError(f"cannot write {path}: PointCloud.{name} has NaN or inf (as float32) in "
                                 f"{int(bad.sum())} of {n} points (first at index {int(bad.argmax())})")
        rgb = (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        arr["x"], arr["y"], arr["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
        arr["red"], arr["green"], arr["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
        arr["radius"] = radius
        header = "ply\nformat binary_little_endian 1.0\n"
        header += f"element vertex {n}\n"
        header += "".join(
            f"property {'float' if t == '<f4' else 'uchar'} {name}\n" for name, t in dtype
        )
        header += "end_header\n"
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                f.write(header.encode("ascii"))
                arr.tofile(f)

    @classmethod
    def load_ply(cls, path: str | Path) -> "PointCloud":
        """Read a point PLY (ours or any with x y z and red green blue; radius optional).

        Raises FileNotFoundError for a missing file and ValueError naming the file for one that is
        not a readable PLY (see :func:`dreamer.io.read_ply`), has no ``vertex`` element or x y z, or
        holds non-finite positions."""
        from dreamer.io import read_ply

        ply = read_ply(path)
        if "vertex" not in ply:
            raise ValueError(f"{path}: no 'vertex' element in this PLY; a point cloud stores one point per vertex")
        v = ply["vertex"].data
        names = v.dtype.names
        for need in ("x", "y", "z"):
            if need not in names:
                raise ValueError(f"{path}: vertex property {need!r} missing (has {names})")
        xyz = torch.from_numpy(np.stack([v["x"], v["y"], v["z"]], -1).astype(np.float32))
        bad = ~torch.isfinite(xyz).all(1)
        if bad.any():
            raise ValueError(f"{path}: {int(bad.sum())} of {len(v)} points have non-finite x y z "
                             f"(first at index {int(bad.int().argmax())})")
        if all(c in names for c in ("red", "green", "blue")):
            rgb = np.stack([v["red"], v["green"], v["blue"]], -1).astype(np.float32)
            rgb = rgb / 255.0 if v["red"].dtype == np.uint8 else rgb
        else:
            rgb = np.full((len(v), 3), 0.5, np.float32)
        radius = v["radius"].astype(np.float32) if "radius" in names else np.full(len(v), 1e-2, np.float32)
        return cls(xyz, torch.from_numpy(rgb), torch.from_numpy(radius))


def _owns_memory(t: Tensor) -> bool:
    """Whether ``t`` is all of its storage, in order (torch.save then writes exactly its values)."""
    whole = t.untyped_storage().nbytes() == t.numel() * t.element_size()
    return t.is_contiguous() and t.storage_offset() == 0 and whole


class _Buffer:
    """The storage behind clouds grown by :meth:`PointCloud.cat`: ``capacity`` points, of which the
    first ``used`` are set (and never written again), plus the bounds of its full blocks."""

    # Growth factor of a full buffer (amortised O(1) copies per point appended).
    GROWTH = 1.5

    def __init__(self, xyz: Tensor, rgb: Tensor, radius: Tensor, used: int):
        self.xyz, self.rgb, self.radius, self.used = xyz, rgb, radius, used
        self.lo = xyz.new_zeros(0, 3)  # bounds of the first len(lo) full blocks
        self.hi = xyz.new_zeros(0, 3)

    @property
    def capacity(self) -> int:
        return int(self.xyz.shape[0])

    @classmethod
    def grown(cls, cloud: "PointCloud", need: int) -> "_Buffer":
        """A new buffer for at least ``need`` points holding ``cloud``'s points at its front."""
        n = len(cloud)
        capacity = max(need, int(cls.GROWTH * need), 1024)
        buffers = []
        for t in (cloud.xyz, cloud.rgb, cloud.radius):
            b = t.new_empty((capacity, *t.shape[1:]))
            b[:n] = t
            buffers.append(b)
        out = cls(*buffers, used=n)
        old = cloud._buffer
        if old is not None and old.holds_prefix(cloud):
            out.lo, out.hi = old.lo[: n // BOX_BLOCK], old.hi[: n // BOX_BLOCK]
        return out

    def holds(self, cloud: "PointCloud") -> bool:
        """Whether ``cloud`` is this buffer's latest cloud (its points are the whole used part)."""
        return len(cloud) == self.used and self.holds_prefix(cloud)

    def holds_prefix(self, cloud: "PointCloud") -> bool:
        return (cloud.xyz.data_ptr() == self.xyz.data_ptr() and cloud.rgb.data_ptr() == self.rgb.data_ptr()
                and cloud.radius.data_ptr() == self.radius.data_ptr() and len(cloud) <= self.used)

    def block_bounds(self, n: int) -> tuple[Tensor, Tensor]:
        """:func:`block_bounds` of the first ``n`` (<= used) points; full blocks are kept."""
        full = n // BOX_BLOCK
        if len(self.lo) < full:
            start = len(self.lo) * BOX_BLOCK
            lo, hi = block_bounds(self.xyz[start : full * BOX_BLOCK], BOX_BLOCK)
            self.lo, self.hi = torch.cat([self.lo, lo]), torch.cat([self.hi, hi])
        lo, hi = self.lo[:full], self.hi[:full]
        if n > full * BOX_BLOCK:
            t_lo, t_hi = torch.aminmax(self.xyz[full * BOX_BLOCK : n], dim=0)
            lo, hi = torch.cat([lo, t_lo[None]]), torch.cat([hi, t_hi[None]])
        return lo, hi


BOX_BLOCK = 1024
"""Points per block of :func:`block_bounds` for the culling passes (render, merge): small enough
that a block's box is tight (a few image rows of one view), large enough that the boxes cost
little beside the points."""


def block_points(blocks: Tensor, block: int, n: int) -> Tensor:
    """int64 indices (ascending when ``blocks`` is) of the points of the given blocks of ``block``
    consecutive points among ``n``."""
    idx = (blocks[:, None] * block + torch.arange(block, device=blocks.device)[None, :]).reshape(-1)
    return idx[idx < n] if len(blocks) and int(blocks[-1]) == (n - 1) // block else idx


def block_bounds(xyz: Tensor, block: int) -> tuple[Tensor, Tensor]:
    """Per-block bounding boxes of points [N,3] taken ``block`` at a time in index order: the
    minimum and maximum corners, each [ceil(N / block), 3] (exact: a min and a max per axis).

    A cloud grows view by view in pixel order, so consecutive points lie close together and
    most blocks of a large cloud can be ruled in or out of a region by their box alone.
    """
    full = len(xyz) // block
    parts_lo, parts_hi = [], []
    if full:
        # Rows of 64 points (192 values, whole points) reduced elementwise across each block,
        # then the 64 lanes: contiguous, vectorised passes (a strided per-axis reduction is
        # several times slower).
        lanes = 64 if block % 64 == 0 else 1
        rows = xyz[: full * block].reshape(full, block // lanes, 3 * lanes)
        lo = rows.amin(1).view(full, lanes, 3).amin(1)
        hi = rows.amax(1).view(full, lanes, 3).amax(1)
        parts_lo.append(lo)
        parts_hi.append(hi)
    if len(xyz) > full * block:
        lo, hi = torch.aminmax(xyz[full * block :], dim=0)
        parts_lo.append(lo[None])
        parts_hi.append(hi[None])
    if not parts_lo:
        empty = xyz.new_zeros(0, 3)
        return empty, empty.clone()
    return torch.cat(parts_lo), torch.cat(parts_hi)
