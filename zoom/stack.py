"""Zoom-stack math: cropping, box downsampling, rendering and consistency.

A zoom stack is a tensor ``[N, C, H, W]`` (channels first: pooling and pyramids want it that way;
convert images ``[N, H, W, 3]`` with :func:`to_channels_first` / :func:`to_channels_last`).
Level ``i + 1`` shows the centre ``1/p`` of level ``i`` at ``p`` times the resolution, so level
``j`` covers the centre ``H / p**(j - i)`` pixels of level ``i``. The same functions work on
pixels and on latents (the latent noise of a diffusion model is i.i.d. per element too).

Operators (the notes' names):

* ``D_r(x)``: box downsample by ``r`` (``avg_pool2d(x, r, r)``), [C,H,W] -> [C,H/r,W/r].
* ``C_r(x)``: the centre crop of size ``H/r x W/r``.
* rendering ``Pi_image(L, i)``: level ``i`` with every finer level ``j > i`` box-downsampled by
  ``p**(j-i)`` and pasted into its centre, finer levels over coarser ones.
* noise rendering ``Pi_noise(E, i)``: the same with each pasted tile multiplied by ``p**(j-i)``,
  which keeps the result i.i.d. N(0, 1): the mean of ``r*r`` i.i.d. unit Gaussians has variance
  ``1/r**2`` and box blocks are disjoint.

Rendering is computed finest-first by one-step recursion, ``R_i = paste(L_i, D_p(R_{i+1}))``
(truncated after ``max_depth`` pastes). When every pasted tile is aligned to the box grid (all
power-of-two sizes used here) this equals the paper's loop over ``j`` with ``D_{p**(j-i)}``
exactly; unlike that loop it also stays defined when a deep tile would be smaller than a pixel,
and it makes ``C_p(R_{i-1}) == D_p(R_i)`` hold by construction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamer.checks import check_dtype, check_int, check_shape

__all__ = [
    "box_downsample",
    "center_crop",
    "paste_center",
    "max_paste_depth",
    "render_image",
    "render_noise",
    "render_stack",
    "render_noise_stack",
    "consistency_error",
    "stack_from_image",
    "to_channels_first",
    "to_channels_last",
]


# ----------------------------------------------------------------------------- validation
def check_p(p) -> int:
    """``p`` must be an integer zoom factor >= 2 (the project uses 2 and 4)."""
    return check_int(p, "zoom factor p", min=2)


def check_stack(stack, name: str = "stack") -> Tensor:
    """A stack must be a floating tensor [N, C, H, W] with N >= 1."""
    check_shape(stack, name, ["N", "C", "H", "W"])
    if stack.shape[0] < 1:
        raise ValueError(f"{name} must have shape [N,C,H,W] with N >= 1, got {tuple(stack.shape)}")
    return check_dtype(stack, name, "float")


def check_max_depth(max_depth, name: str = "max_depth") -> int | None:
    """``None`` (no limit) or the deepest level a render may paste, an integer >= 0."""
    return None if max_depth is None else check_int(max_depth, name, min=0)


def _check_level(i, n: int) -> int:
    """A level index in [0, n): an IndexError when out of range, as for a sequence."""
    i = check_int(i, "level index")
    if not 0 <= i < n:
        raise IndexError(f"level index must be an integer in [0, {n - 1}], got {i}")
    return i


def _crop_geometry(size: int, r: int) -> tuple[int, int]:
    """(tile size, offset) of the centre 1/r of ``size`` pixels; raises if not on the grid."""
    if size % r != 0 or (size - size // r) % 2 != 0:
        raise ValueError(
            f"a side of {size} px has no centred 1/{r} crop on the pixel grid: the side must be "
            f"divisible by {r} and (side - side/{r}) must be even (e.g. a multiple of {2 * r})")
    tile = size // r
    return tile, (size - tile) // 2


def _check_one_step(stack: Tensor, p: int) -> None:
    if stack.shape[0] > 1:
        _crop_geometry(stack.shape[-2], p)
        _crop_geometry(stack.shape[-1], p)


# ----------------------------------------------------------------------------- operators
def box_downsample(x: Tensor, r: int) -> Tensor:
    """Box average ``D_r``: [..., C, H, W] -> [..., C, H/r, W/r] (H, W divisible by r)."""
    if r == 1:
        return x
    h, w = x.shape[-2:]
    if h % r or w % r:
        raise ValueError(f"box downsample by {r} needs H, W divisible by {r}, got {h}x{w}")
    lead = x.shape[:-2]
    y = F.avg_pool2d(x.reshape(-1, 1, h, w), kernel_size=r, stride=r)
    return y.reshape(*lead, h // r, w // r)


def center_crop(x: Tensor, r: int) -> Tensor:
    """Centre crop ``C_r``: [..., H, W] -> [..., H/r, W/r] (a view)."""
    th, oy = _crop_geometry(x.shape[-2], r)
    tw, ox = _crop_geometry(x.shape[-1], r)
    return x[..., oy:oy + th, ox:ox + tw]


def paste_center(base: Tensor, tile: Tensor) -> Tensor:
    """A copy of ``base`` [..., H, W] with ``tile`` [..., h, w] written into its centre."""
    h, w = base.shape[-2:]
    th, tw = tile.shape[-2:]
    if (h - th) % 2 or (w - tw) % 2 or th > h or tw > w:
        raise ValueError(f"cannot centre a {th}x{tw} tile in a {h}x{w} image on the pixel grid")
    oy, ox = (h - th) // 2, (w - tw) // 2
    out = base.clone()
    out[..., oy:oy + th, ox:ox + tw] = tile
    return out


def max_paste_depth(height: int, width: int, p: int, *, min_size: int = 1) -> int:
    """Largest ``K`` such that the centre ``1/p**K`` of a ``height x width`` grid is a whole,
    centred block at least ``min_size`` cells wide.

    For latents use ``min_size=2``: SD's 64x64 latent grid gives 5 for p = 2 and 2 for p = 4.
    """
    check_p(p)
    k = 0
    while True:
        r = p ** (k + 1)
        try:
            th, _ = _crop_geometry(height, r)
            tw, _ = _crop_geometry(width, r)
        except ValueError:
            return k
        if min(th, tw) < min_size:
            return k
        k += 1


# ----------------------------------------------------------------------------- rendering
def _render_level(stack: Tensor, i: int, p: int, depth: int, gain: float) -> Tensor:
    """R_i with levels i..i+depth, finest first: x <- paste(L_j, gain * D_p(x))."""
    last = min(stack.shape[0] - 1, i + depth)
    x = stack[last]
    for j in range(last - 1, i - 1, -1):
        tile = box_downsample(x, p)
        if gain != 1.0:
            tile = tile * gain
        x = paste_center(stack[j], tile)
    return x


def _render_all(stack: Tensor, p: int, max_depth: int | None, gain: float) -> Tensor:
    n = stack.shape[0]
    if max_depth is None or max_depth >= n - 1:
        out = [stack[n - 1]]
        for j in range(n - 2, -1, -1):
            tile = box_downsample(out[-1], p)
            if gain != 1.0:
                tile = tile * gain
            out.append(paste_center(stack[j], tile))
        return torch.stack(out[::-1])
    return torch.stack([_render_level(stack, i, p, max_depth, gain) for i in range(n)])


def render_image(stack: Tensor, i: int, *, p: int = 2, max_depth: int | None = None) -> Tensor:
    """``Pi_image(L, i)``: level ``i`` of ``stack`` [N,C,H,W] with finer levels pasted -> [C,H,W].

    Level ``j > i`` (only ``j - i <= max_depth`` when given) is box-downsampled by ``p**(j-i)``
    and pasted into the centre ``H/p**(j-i)`` of level ``i``; finer levels overwrite smaller
    centres. H and W must be divisible by ``p`` with ``H - H/p`` even (any multiple of ``2p``).
    """
    check_stack(stack)
    p = check_p(p)
    _check_level(i, stack.shape[0])
    depth = check_max_depth(max_depth)
    _check_one_step(stack, p)
    return _render_level(stack, i, p, stack.shape[0] if depth is None else depth, 1.0)


def render_noise(noise: Tensor, i: int, *, p: int = 2, max_depth: int | None = None) -> Tensor:
    """``Pi_noise(E, i)``: like :func:`render_image` on ``noise`` [N,C,H,W] -> [C,H,W], with
    each pasted tile multiplied by ``p**(j-i)`` so that the result is again i.i.d. N(0, 1)
    when ``noise`` is, and ``C_p(Pi_noise(E, i)) == p * D_p(Pi_noise(E, i+1))`` exactly."""
    check_stack(noise, "noise")
    p = check_p(p)
    _check_level(i, noise.shape[0])
    depth = check_max_depth(max_depth)
    _check_one_step(noise, p)
    return _render_level(noise, i, p, noise.shape[0] if depth is None else depth, float(p))


def render_stack(stack: Tensor, *, p: int = 2, max_depth: int | None = None) -> Tensor:
    """All levels rendered: ``[Pi_image(L, i) for i]`` -> [N,C,H,W]. O(N) for full depth."""
    check_stack(stack)
    p = check_p(p)
    depth = check_max_depth(max_depth)
    _check_one_step(stack, p)
    return _render_all(stack, p, depth, 1.0)


def render_noise_stack(noise: Tensor, *, p: int = 2, max_depth: int | None = None) -> Tensor:
    """All levels of rendered noise: ``[Pi_noise(E, i) for i]`` -> [N,C,H,W]."""
    check_stack(noise, "noise")
    p = check_p(p)
    depth = check_max_depth(max_depth)
    _check_one_step(noise, p)
    return _render_all(noise, p, depth, float(p))


# ----------------------------------------------------------------------------- metrics
def consistency_error(stack: Tensor, *, p: int = 2, lowpass: int = 1) -> Tensor:
    """Per adjacent pair, ``mean |C_p(L_{i-1}) - D_p(L_i)|`` for i = 1..N-1 -> [N-1].

    ``lowpass > 1`` passes both sides through an extra ``D_lowpass`` first (ignores the
    high-frequency noise of a VAE round trip). On a rendered stack the error is 0 up to
    rounding; on raw per-level predictions it is the agreement error.
    """
    check_stack(stack)
    p = check_p(p)
    check_int(lowpass, "lowpass", min=1)
    if stack.shape[0] < 2:
        return stack.new_zeros(0)
    _check_one_step(stack, p)
    coarse = box_downsample(center_crop(stack[:-1], p), lowpass)
    fine = box_downsample(box_downsample(stack[1:], p), lowpass)
    return (coarse - fine).abs().flatten(1).mean(dim=1)


# ----------------------------------------------------------------------------- helpers
def stack_from_image(image: Tensor, levels: int, *, p: int = 2) -> Tensor:
    """Cut a consistent stack from one big image [C, S, S'] -> [levels, C, S/p**(levels-1), ...].

    ``L_i = D_{p**(levels-1-i)}(C_{p**i}(image))``: level 0 is the whole image downsampled,
    the last level is its centre at full resolution.
    """
    check_shape(image, "image", ["C", "H", "W"])
    p = check_p(p)
    check_int(levels, "levels", min=1)
    top = p ** (levels - 1)
    out = []
    for i in range(levels):
        crop = center_crop(image, p ** i) if i else image
        out.append(box_downsample(crop, top // p ** i))
    return torch.stack(out)


def to_channels_first(images: Tensor) -> Tensor:
    """[..., H, W, C] -> [..., C, H, W]."""
    return images.movedim(-1, -3)


def to_channels_last(images: Tensor) -> Tensor:
    """[..., C, H, W] -> [..., H, W, C]."""
    return images.movedim(-3, -1)
