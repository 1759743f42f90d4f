"""Image losses with a validity mask: pixels outside the mask neither count nor get gradients.

A training view re-rendered from the point cloud has holes (no point covers them). Those pixels
carry no information about the scene, so they must not pull the splats towards black (the
original method trained on them as black). Every function here takes ``mask`` [H,W] bool
(None = all pixels valid) and guarantees that the gradient w.r.t. the rendered image is
exactly 0 outside it.

SSIM is computed with statistics over valid pixels only: local means and (co)variances are
normalized Gaussian-weighted averages over the valid pixels of each window (normalized
convolution), so a valid pixel next to a hole is compared on its valid neighbours alone, and
image borders are handled the same way (no zero padding bias).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["masked_l1", "masked_ssim", "masked_psnr", "gaussian_window", "inverse_depth_l1", "transmittance_barrier"]

_C1 = 0.01**2
_C2 = 0.03**2


def _check(pred: Tensor, target: Tensor, mask: Tensor | None) -> None:
    if not isinstance(pred, Tensor) or not isinstance(target, Tensor):
        raise TypeError("pred and target must be torch tensors [H,W,3]")
    if pred.ndim != 3 or pred.shape[-1] != 3 or pred.shape != target.shape:
        raise ValueError(f"pred and target must both be [H,W,3], got {tuple(pred.shape)} and {tuple(target.shape)}")
    if mask is not None:
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            raise ValueError("mask must be a bool tensor [H,W] (True = valid pixel)")
        if tuple(mask.shape) != tuple(pred.shape[:2]):
            raise ValueError(f"mask has shape {tuple(mask.shape)} but the images are {tuple(pred.shape[:2])}")


def _weights(pred: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return torch.ones(pred.shape[:2], dtype=pred.dtype, device=pred.device)
    return mask.to(device=pred.device, dtype=pred.dtype)


def masked_l1(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean absolute error over valid pixels and the 3 channels (0 when no pixel is valid).

    ``pred``, ``target`` [H,W,3]; ``mask`` [H,W] bool or None.
    """
    _check(pred, target, mask)
    m = _weights(pred, mask)
    diff = (pred - target).abs() * m[..., None]
    return diff.sum() / (3.0 * m.sum()).clamp_min(1.0)


def gaussian_window(size: int = 11, sigma: float = 1.5, *, dtype=torch.float32, device=None) -> Tensor:
    """Normalized 1D Gaussian [size] (SSIM's classic 11-tap, sigma 1.5)."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"window size must be a positive odd number, got {size}")
    if sigma <= 0:
        raise ValueError(f"window sigma must be > 0, got {sigma}")
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return (w / w.sum()).to(dtype=dtype, device=device)


def _blur(x: Tensor, win: Tensor) -> Tensor:
    """Separable Gaussian filter of x [1,C,H,W] with zero padding (same size)."""
    c, k = x.shape[1], win.numel()
    wx = win.view(1, 1, 1, k).expand(c, 1, 1, k)
    wy = win.view(1, 1, k, 1).expand(c, 1, k, 1)
    x = F.conv2d(x, wx, padding=(0, k // 2), groups=c)
    return F.conv2d(x, wy, padding=(k // 2, 0), groups=c)


def masked_ssim(pred: Tensor, target: Tensor, mask: Tensor | None = None, *, window: int = 11,
                sigma: float = 1.5, return_map: bool = False) -> Tensor:
    """Mean SSIM over valid pixels (statistics from valid pixels only; see the module docstring).

    Args:
        pred, target: [H,W,3] images in [0,1].
        mask: [H,W] bool, True = valid; None = every pixel.
        window, sigma: the Gaussian window.
        return_map: also return the SSIM map [H,W,3] (0 at invalid pixels).
    Returns:
        Scalar mean SSIM (1 when no pixel is valid), or (mean, map) with ``return_map``.
    """
    _check(pred, target, mask)
    m = _weights(pred, mask)
    win = gaussian_window(window, sigma, dtype=pred.dtype, device=pred.device)
    x = pred.permute(2, 0, 1)[None]  # [1,3,H,W]
    y = target.permute(2, 0, 1)[None].to(pred)
    mm = m[None, None]
    xm, ym = x * mm, y * mm  # invalid pixels enter as exact zeros: no gradient reaches them
    stats = _blur(torch.cat([xm, ym, xm * x, ym * y, xm * y, mm], 1), win)
    wsum = stats[:, 15:16].clamp_min(1e-6)
    mu_x, mu_y = stats[:, 0:3] / wsum, stats[:, 3:6] / wsum
    var_x = stats[:, 6:9] / wsum - mu_x * mu_x
    var_y = stats[:, 9:12] / wsum - mu_y * mu_y
    cov = stats[:, 12:15] / wsum - mu_x * mu_y
    smap = ((2 * mu_x * mu_y + _C1) * (2 * cov + _C2)) / ((mu_x**2 + mu_y**2 + _C1) * (var_x + var_y + _C2))
    smap = smap * mm
    denom = 3.0 * m.sum()
    mean = smap.sum() / denom if denom > 0 else torch.ones((), dtype=pred.dtype, device=pred.device)
    if return_map:
        return mean, smap[0].permute(1, 2, 0)
    return mean


def masked_psnr(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> float:
    """PSNR in dB over valid pixels for images in [0,1] (inf for a perfect match)."""
    _check(pred, target, mask)
    m = _weights(pred, mask)
    mse = float((((pred.detach() - target) ** 2) * m[..., None]).sum() / (3.0 * m.sum()).clamp_min(1.0))
    return math.inf if mse == 0 else -10.0 * math.log10(mse)


def inverse_depth_l1(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Depth supervision: the mean absolute difference of inverse z-depths over valid pixels,
    divided by the target's mean inverse depth, so the loss is scale-free (a 10% depth error
    costs about 0.1 whatever the scene's units). Inverse depth weighs near surfaces most, where a
    depth error moves pixels most.

    ``pred``, ``target`` [H,W] z-depths; ``mask`` [H,W] bool or None. Pixels count where the
    mask holds and both depths are finite and > 0; others get exactly zero gradient. Returns 0
    when no pixel counts.
    """
    if not isinstance(pred, Tensor) or not isinstance(target, Tensor):
        raise TypeError("pred and target must be torch tensors [H,W] of z-depth")
    if pred.ndim != 2 or pred.shape != target.shape:
        raise ValueError(f"pred and target must both be [H,W], got {tuple(pred.shape)} and {tuple(target.shape)}")
    target = target.to(pred)
    valid = torch.isfinite(target) & (target > 0) & torch.isfinite(pred.detach()) & (pred.detach() > 0)
    if mask is not None:
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != tuple(pred.shape):
            raise ValueError(f"mask must be a bool tensor {tuple(pred.shape)} (True = valid pixel), "
                             f"got {getattr(mask, 'dtype', type(mask).__name__)} {tuple(getattr(mask, 'shape', ()))}")
        valid &= mask.to(pred.device)
    n = valid.sum()
    if int(n) == 0:
        return pred.sum() * 0.0
    inv_t = torch.where(valid, 1.0 / torch.where(valid, target, torch.ones_like(target)), torch.zeros_like(target))
    inv_p = torch.where(valid, 1.0 / torch.where(valid, pred, torch.ones_like(pred)), torch.zeros_like(pred))
    return (inv_p - inv_t).abs().sum() / inv_t.sum().clamp_min(1e-12)


def transmittance_barrier(alpha: Tensor, mask: Tensor | None = None, opaque: float = 0.995) -> Tensor:
    """Mean over valid pixels of ``max(0, log(1 - alpha) - log(1 - opaque))``: zero where a
    pixel is at least ``opaque`` opaque, and a pull on the log transmittance elsewhere.

    The log transmittance of a pixel is the sum of ``log(1 - a_i)`` over the Gaussians composited
    on it, so its gradient on each ``a_i`` is ``1 / (1 - a_i)``, independent of how opaque the
    pixel already is. A linear loss on ``1 - alpha`` pulls each Gaussian by the transmittance of
    the others, which fades to nothing on a pixel at alpha 0.98: a crack between splats that
    the loss no longer sees, yet a video shows.

    ``alpha`` [H,W] accumulated opacity in [0,1]; ``mask`` [H,W] bool or None (all valid);
    ``opaque`` in (0, 1). Pixels outside the mask get exactly zero gradient; 0 without valid
    pixels.
    """
    if not isinstance(alpha, Tensor) or alpha.ndim != 2:
        raise ValueError(f"alpha must be a tensor [H,W], got {getattr(alpha, 'shape', type(alpha).__name__)}")
    if not 0.0 < opaque < 1.0:
        raise ValueError(f"opaque must be in (0, 1), got {opaque!r}")
    if mask is not None and (not isinstance(mask, Tensor) or mask.dtype != torch.bool
                             or tuple(mask.shape) != tuple(alpha.shape)):
        raise ValueError(f"mask must be a bool tensor {tuple(alpha.shape)} (True = valid pixel), "
                         f"got {getattr(mask, 'dtype', type(mask).__name__)} {tuple(getattr(mask, 'shape', ()))}")
    floor = math.log1p(-opaque)
    # Clamped below the floor: pixels already opaque enough pass no gradient (and no log of 0).
    log_t = torch.log((1.0 - alpha).clamp_min(math.exp(floor)))
    excess = log_t - floor
    if mask is None:
        return excess.mean()
    valid = mask.to(alpha.device)
    return torch.where(valid, excess, torch.zeros_like(excess)).sum() / valid.sum().clamp_min(1)
