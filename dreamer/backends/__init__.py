"""Model backends behind small protocols.

The dream loop only talks to these protocols. Implementations: the procedural world
(``synthetic``: oracle answers with controllable errors), tiny random-weight models (``tiny``) and
the real diffusers / transformers models (``default``). Backends receive ``camera`` so that oracle
backends can answer; learned backends ignore it. A :class:`Refiner` repairs renders of the 3D
model for the refine step (repaired novel views in splat training, the optional video pass).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from dreamer.cameras import Camera

__all__ = ["Inpainter", "DepthEstimator", "ImageGenerator", "Refiner", "inpaint_weight"]


@runtime_checkable
class Inpainter(Protocol):
    def inpaint(self, image: Tensor, mask: Tensor, prompt: str, *, camera: Camera,
                generator: torch.Generator | None = None) -> Tensor:
        """Fill ``image`` [H,W,3] (float in [0,1]) where ``mask`` [H,W] (bool) is True.

        Returns the completed image [H,W,3]. Pixels outside the mask may change slightly; the
        loop decides what to keep: the hole, plus the margin an inpainter declares with an
        optional ``blend_weight(mask) -> [H,W]`` method (see :func:`inpaint_weight`).
        """
        ...


def inpaint_weight(inpainter, mask: Tensor) -> Tensor:
    """How much of ``inpainter``'s output replaces its input, per pixel: float [H,W] in [0,1].

    1 in the hole ``mask`` [H,W] (bool). An inpainter that blends its result into the known
    pixels around the hole (a feathered seam instead of a hard edge) says where with a
    ``blend_weight(mask)`` method returning that weight; without one, only the hole changes.
    """
    from dreamer.checks import check_map, check_mask

    check_mask(mask, "mask")
    own = getattr(inpainter, "blend_weight", None)
    if own is None:
        return mask.float()
    weight = check_map(own(mask), f"{type(inpainter).__name__}.blend_weight(mask)",
                       height=mask.shape[0], width=mask.shape[1])
    return torch.where(mask, torch.ones_like(weight), weight.clamp(0.0, 1.0))


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


@runtime_checkable
class Refiner(Protocol):
    def refine(self, render: Tensor, *, reference: Tensor | None = None, camera: Camera | None = None,
               generator: torch.Generator | None = None) -> Tensor:
        """Repair ``render`` [H,W,3] (float in [0,1]): a splat or point render of the 3D model with
        its artefacts (holes, floaters, blur). ``reference`` [h,w,3] is a view of the scene near
        the render's camera (the nearest dreamed view, or the previous repaired video frame)
        that a backend may use for context or colour. Returns the repaired image [H,W,3] in
        [0,1]; it shows the same geometry as ``render`` from the same camera."""
        ...
