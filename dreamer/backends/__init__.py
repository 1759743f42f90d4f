"""Model backends behind small protocols.

The dream loop only talks to these protocols. Implementations: the procedural world
(``synthetic``: oracle answers with controllable errors), tiny random-weight models (``tiny``) and
the real diffusers / transformers models (``default``). Backends receive ``camera`` so that oracle
backends can answer; learned backends ignore it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from dreamer.cameras import Camera

__all__ = ["Inpainter", "DepthEstimator", "ImageGenerator"]


@runtime_checkable
class Inpainter(Protocol):
    def inpaint(self, image: Tensor, mask: Tensor, prompt: str, *, camera: Camera,
                generator: torch.Generator | None = None) -> Tensor:
        """Fill ``image`` [H,W,3] (float in [0,1]) where ``mask`` [H,W] (bool) is True.

        Returns the completed image [H,W,3]. Pixels outside the mask may change slightly; the
        loop decides what to keep.
        """
        ...


@runtime_checkable
class DepthEstimator(Protocol):
    def estimate(self, image: Tensor, *, camera: Camera) -> Tensor:
        """z-depth [H,W] (> 0) of ``image`` [H,W,3]; may be off by an unknown scale and a smooth
        distortion (alignment corrects both)."""
        ...


@runtime_checkable
class ImageGenerator(Protocol):
    def generate(self, prompt: str, *, width: int, height: int,
                 generator: torch.Generator | None = None) -> Tensor:
        """A new image [height,width,3] in [0,1] for ``prompt``."""
        ...
