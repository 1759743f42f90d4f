"""Stand-ins for tests and benchmarks (no weights): a linear "VAE" with Stable Diffusion's geometry.

The tiny random-weight ``AutoencoderKL`` of :mod:`dreamer.backends.tiny` is no autoencoder
(``Dec(Enc(x))`` is unrelated to ``x``), so anything that must survive the VAE round trip (photo
steering, agreement between levels) cannot show through it. :class:`LinearVAE` can: its
``Dec(Enc(x))`` keeps the 8x8 block means of ``x`` exactly.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F

__all__ = ["LinearVAE"]


class LinearVAE(torch.nn.Module):
    """Encode: 8x8 box average, then a fixed 3 -> 4 channel matrix ``M``; decode: ``pinv(M)``,
    then nearest 8x upsampling. Same call interface as diffusers' ``AutoencoderKL`` as far as
    :class:`zoom.codecs.VaeCodec` uses it (``encode(x).latents``, ``decode(z).sample``,
    ``config.scaling_factor``); images [N,3,H,W] in [-1,1] <-> latents [N,4,H/8,W/8].
    """

    def __init__(self):
        super().__init__()
        m = torch.tensor([[0.9, 0.1, 0.0], [0.0, 0.8, 0.2], [0.1, 0.0, 0.9], [0.3, 0.3, 0.3]])
        self.register_buffer("m", m)
        self.register_buffer("m_inv", torch.linalg.pinv(m))
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives the module a device and dtype
        self.config = SimpleNamespace(scaling_factor=1.0, shift_factor=None, block_out_channels=(1, 1, 1, 1))

    def encode(self, x):
        return SimpleNamespace(latents=torch.einsum("oc,nchw->nohw", self.m.to(x.dtype), F.avg_pool2d(x, 8)))

    def decode(self, z):
        x = torch.einsum("co,nohw->nchw", self.m_inv.to(z.dtype), z)
        return SimpleNamespace(sample=F.interpolate(x, scale_factor=8, mode="nearest"))
