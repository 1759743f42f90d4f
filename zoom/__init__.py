"""Powers-of-Ten zoom stacks ("Generative Powers of Ten", Wang et al., CVPR 2024) on latent
Stable Diffusion.

Pure math (no models): :func:`render_image`, :func:`render_noise`, :func:`blend`,
:func:`consistency_error` on stacks [N,C,H,W] (channels first). The sampler,
:func:`sample_zoom_stack`, is imported lazily (it pulls in diffusers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dreamer.lazy import lazy_exports

__all__ = [
    "render_image",
    "render_noise",
    "render_stack",
    "render_noise_stack",
    "blend",
    "consistency_error",
    "sample_zoom_stack",
    "ZoomResult",
]

# Imported on first use, so that ``python -m zoom.run --help`` does not load torch.
_HOMES = {"blend": "zoom.pyramid", "consistency_error": "zoom.stack", "render_image": "zoom.stack",
          "render_noise": "zoom.stack", "render_noise_stack": "zoom.stack", "render_stack": "zoom.stack",
          "sample_zoom_stack": "zoom.sampler", "ZoomResult": "zoom.sampler"}

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from zoom.pyramid import blend
    from zoom.sampler import ZoomResult, sample_zoom_stack
    from zoom.stack import consistency_error, render_image, render_noise, render_noise_stack, render_stack


__getattr__, __dir__ = lazy_exports(__name__, _HOMES, __all__)
