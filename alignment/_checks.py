"""Input checks shared by the alignment functions (exceptions, never ``assert``)."""

from __future__ import annotations

import torch
from torch import Tensor


def check_map(x: object, name: str, *, shape: tuple[int, ...] | None = None) -> Tensor:
    """Raise unless ``x`` is a float tensor [H,W] (of ``shape`` when given); return it."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [H,W], got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape [H,W], got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a float tensor, got dtype {x.dtype}")
    if shape is not None and tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)} like the other maps, got {tuple(x.shape)}")
    return x


def check_mask(x: object, name: str, shape: tuple[int, ...] | None = None) -> Tensor:
    """Raise unless ``x`` is a bool tensor of ``shape`` (any [H,W] when None); return it."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a bool torch.Tensor [H,W], got {type(x).__name__}")
    if x.dtype != torch.bool:
        raise ValueError(f"{name} must be a bool tensor, got dtype {x.dtype}")
    if shape is None:
        if x.ndim != 2:
            raise ValueError(f"{name} must have shape [H,W], got {tuple(x.shape)}")
    elif tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)} like the depth maps, got {tuple(x.shape)}")
    return x


def check_positive_depth(depth: Tensor, name: str, where: Tensor | None = None, where_name: str = "") -> None:
    """Raise ValueError unless ``depth`` is finite and > 0 (on the pixels ``where``)."""
    d = depth if where is None else depth[where.to(depth.device)]
    at = f" on {where_name}" if where_name else ""
    bad = ~torch.isfinite(d)
    if bool(bad.any()):
        raise ValueError(f"{name} has {int(bad.sum())} non-finite values (NaN/inf){at}; depth must be finite there")
    nonpos = d <= 0
    if bool(nonpos.any()):
        raise ValueError(
            f"{name} has {int(nonpos.sum())} values <= 0{at} (min {float(d.min()):.4g}); z-depth must be > 0 there"
        )
