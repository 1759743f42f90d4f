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
        return PointCloud(
            torch.cat([self.xyz, other.xyz.to(self.xyz)]),
            torch.cat([self.rgb, other.rgb.to(self.rgb)]),
            torch.cat([self.radius, other.radius.to(self.radius)]),
        )

    def bounds(self) -> tuple[Tensor, Tensor]:
        """Axis-aligned bounds (min [3], max [3]); raises on an empty cloud."""
        if len(self) == 0:
            raise ValueError("an empty point cloud has no bounds")
        return self.xyz.amin(0), self.xyz.amax(0)

    # -- files ---------------------------------------------------------------------------------
    def save_ply(self, path: str | Path) -> None:
        """Binary little-endian PLY with ``x y z`` (float) and ``red green blue`` (uchar),
        plus a ``radius`` float property that viewers ignore and :meth:`load_ply` reads back.
        Written to a temporary name, then renamed: a crash leaves the old file or none."""
        from dreamer.io import atomic_path

        n = len(self)
        dtype = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"),
                 ("blue", "u1"), ("radius", "<f4")]
        arr = np.empty(n, dtype=dtype)
        xyz = self.xyz.detach().cpu().float().numpy()
        rgb = (self.rgb.detach().cpu().float().clamp(0, 1).numpy() * 255.0 + 0.5).astype(np.uint8)
        arr["x"], arr["y"], arr["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
        arr["red"], arr["green"], arr["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
        arr["radius"] = self.radius.detach().cpu().float().numpy()
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
        """Read a point PLY (ours or any with x y z and red green blue; radius optional)."""
        from plyfile import PlyData

        ply = PlyData.read(str(path))
        if "vertex" not in ply:
            raise ValueError(f"{path}: no 'vertex' element in this PLY")
        v = ply["vertex"].data
        names = v.dtype.names
        for need in ("x", "y", "z"):
            if need not in names:
                raise ValueError(f"{path}: vertex property {need!r} missing (has {names})")
        xyz = torch.from_numpy(np.stack([v["x"], v["y"], v["z"]], -1).astype(np.float32))
        if all(c in names for c in ("red", "green", "blue")):
            rgb = np.stack([v["red"], v["green"], v["blue"]], -1).astype(np.float32)
            rgb = rgb / 255.0 if v["red"].dtype == np.uint8 else rgb
        else:
            rgb = np.full((len(v), 3), 0.5, np.float32)
        radius = v["radius"].astype(np.float32) if "radius" in names else np.full(len(v), 1e-2, np.float32)
        return cls(xyz, torch.from_numpy(rgb), torch.from_numpy(radius))


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
