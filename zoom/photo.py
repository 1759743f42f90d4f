"""Photo zoom: a photograph fixes one level of the stack.

Two ways, both applied to the decoded per-level predictions ``X`` [N,3,H,W] (pixels in [0,1],
channels first) just before blending:

* guidance (the paper): a few Adam steps on ``X`` minimising
  ``sum_{i >= k} mean |D_{p**(i-k)}(X_i) - C_{p**(i-k)}(photo)|**2`` (level ``k`` is the photo's
  level; deeper levels are pulled toward the photo only in the part of their spectrum the photo
  has);
* replacement: level ``k``'s bands coarser than its ``keep_bands`` finest are replaced by the
  photo's; blending then carries them into the deeper levels, rendering into the coarser ones.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from zoom.pyramid import replace_low_bands
from zoom.stack import box_downsample, center_crop, max_paste_depth

__all__ = ["prepare_photo", "photo_loss", "photo_guidance", "photo_replace_low", "photo_psnr"]


def prepare_photo(photo: Tensor, height: int, width: int) -> Tensor:
    """A photo [H',W',3] (float in [0,1]) -> [3,height,width] float32: centre-cropped to the
    target aspect ratio, then resized (antialiased bilinear)."""
    if not isinstance(photo, Tensor) or photo.ndim != 3 or photo.shape[-1] != 3:
        got = tuple(photo.shape) if isinstance(photo, Tensor) else type(photo).__name__
        raise ValueError(f"photo must be a tensor [H,W,3] in [0,1], got {got}")
    if not photo.is_floating_point():
        raise ValueError(f"photo must be float in [0,1], got dtype {photo.dtype}")
    img = photo.detach().float().permute(2, 0, 1)
    h, w = img.shape[-2:]
    target = width / height
    if w / h > target:  # too wide: crop the sides
        cw = max(1, round(h * target))
        x0 = (w - cw) // 2
        img = img[:, :, x0:x0 + cw]
    elif w / h < target:
        ch = max(1, round(w / target))
        y0 = (h - ch) // 2
        img = img[:, y0:y0 + ch, :]
    if img.shape[-2:] != (height, width):
        img = F.interpolate(img[None], size=(height, width), mode="bilinear", align_corners=False,
                            antialias=True)[0]
    return img.clamp(0.0, 1.0)


def _levels_and_targets(num_levels: int, photo: Tensor, level: int, p: int):
    """(level index, zoom r, target crop [3,H/r,W/r]) for the levels the photo covers."""
    h, w = photo.shape[-2:]
    depth = max_paste_depth(h, w, p, min_size=1)
    out = []
    for i in range(level, num_levels):
        if i - level > depth:
            break
        r = p ** (i - level)
        out.append((i, r, center_crop(photo, r) if r > 1 else photo))
    return out


def photo_loss(x: Tensor, photo: Tensor, *, level: int = 0, p: int = 2) -> Tensor:
    """Sum over levels ``i >= level`` of ``mean (D_r(x_i) - C_r(photo))**2``, ``r = p**(i-level)``.

    ``x``: [N,3,H,W]; ``photo``: [3,H,W] (the photo at level ``level``'s field of view).
    """
    terms = [((box_downsample(x[i], r) - t) ** 2).mean()
             for i, r, t in _levels_and_targets(x.shape[0], photo, level, p)]
    return torch.stack(terms).sum()


def photo_guidance(x: Tensor, photo: Tensor, *, level: int = 0, p: int = 2, steps: int = 5,
                   lr: float = 0.05) -> Tensor:
    """``steps`` Adam steps with learning rate ``lr`` (pixel units, [0,1] scale) on a copy of
    ``x`` [N,3,H,W] toward ``photo`` [3,H,W] (see :func:`photo_loss`) -> [N,3,H,W].

    Only the prediction is optimised (no model gradients); runs under ``torch.enable_grad``.
    The paper's 0.1 in [-1,1] units is 0.05 here.
    """
    photo = photo.to(device=x.device, dtype=torch.float32)
    with torch.enable_grad():
        var = x.detach().float().clone().requires_grad_(True)
        opt = torch.optim.Adam([var], lr=lr)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = photo_loss(var, photo, level=level, p=p)
            loss.backward()
            opt.step()
    return var.detach().to(x.dtype)


def photo_replace_low(x: Tensor, photo: Tensor, *, level: int = 0, keep_bands: int = 2,
                      p: int = 2) -> Tensor:
    """``x`` [N,3,H,W] with level ``level``'s bands coarser than its ``keep_bands`` finest taken
    from ``photo`` [3,H,W] -> [N,3,H,W]."""
    out = x.clone()
    out[level] = replace_low_bands(x[level], photo.to(device=x.device, dtype=x.dtype), keep_bands, p=p)
    return out


def photo_psnr(levels: Tensor, photo: Tensor, *, level: int = 0, p: int = 2) -> Tensor:
    """PSNR (dB, peak 1) per covered level ``i >= level`` of ``D_r(R_i)`` against
    ``C_r(photo)``, ``r = p**(i-level)``: ``levels`` [N,3,H,W], ``photo`` [3,H,W] -> [M]."""
    vals = []
    for i, r, t in _levels_and_targets(levels.shape[0], photo.to(levels), level, p):
        mse = float(((box_downsample(levels[i], r) - t) ** 2).mean().detach())
        vals.append(10.0 * math.log10(1.0 / max(mse, 1e-20)))
    return torch.tensor(vals, dtype=torch.float64)
