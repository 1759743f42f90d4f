"""Codecs between a diffusion model's latents and pixels: the VAE of a latent model, or none."""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

__all__ = ["Codec", "IdentityCodec", "VaeCodec"]


class Codec(Protocol):
    """Latents [N,c,h,w] <-> pixels [N,3,H,W] (fp32; pixels in [0,1] for image codecs)."""

    def decode(self, latents: Tensor) -> Tensor: ...

    def encode(self, pixels: Tensor) -> Tensor: ...


class IdentityCodec:
    """Pixels are the latents (pixel-space models and oracle tests)."""

    def decode(self, latents: Tensor) -> Tensor:
        return latents

    def encode(self, pixels: Tensor) -> Tensor:
        return pixels


class VaeCodec:
    """A diffusers ``AutoencoderKL`` or ``AutoencoderTiny`` as a codec in the UNet's latent space.

    Latents are scaled: ``z = (Enc(2x - 1) - shift) * scaling_factor`` (the distribution's mode
    for ``AutoencoderKL``); decoding inverts that and returns fp32 pixels clamped to [0,1].
    ``batch_size`` bounds how many images go through the VAE at once (``None``: all).
    ``device``: where the VAE runs (default: where its parameters are; under CPU offload they sit
    on the CPU while it runs on the GPU, so pass :func:`execution_device`).
    """

    def __init__(self, vae, batch_size: int | None = None, device: torch.device | str | None = None):
        self.vae = vae
        self.scale = float(getattr(vae.config, "scaling_factor", 1.0) or 1.0)
        self.shift = float(getattr(vae.config, "shift_factor", 0.0) or 0.0)
        self.batch_size = batch_size
        self._device = None if device is None else torch.device(device)

    @property
    def device(self) -> torch.device:
        return self._device if self._device is not None else next(self.vae.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    def _chunks(self, x: Tensor):
        n = self.batch_size or x.shape[0]
        return x.split(n)

    def decode(self, latents: Tensor) -> Tensor:
        out = []
        for chunk in self._chunks(latents):
            z = (chunk / self.scale + self.shift).to(self.device, self.dtype)
            x = self.vae.decode(z).sample
            out.append(((x.float() + 1.0) * 0.5).clamp(0.0, 1.0))
        return torch.cat(out)

    def encode(self, pixels: Tensor) -> Tensor:
        out = []
        for chunk in self._chunks(pixels):
            enc = self.vae.encode((chunk * 2.0 - 1.0).to(self.device, self.dtype))
            lat = enc.latent_dist.mode() if hasattr(enc, "latent_dist") else enc.latents
            out.append((lat.float() - self.shift) * self.scale)
        return torch.cat(out)
