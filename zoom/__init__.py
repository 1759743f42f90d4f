"""Powers-of-Ten zoom stacks ("Generative Powers of Ten", Wang et al., CVPR 2024) on latent
Stable Diffusion.

Pure math (no models): :func:`render_image`, :func:`render_noise`, :func:`blend`,
:func:`consistency_error` on stacks [N,C,H,W] (channels first). The sampler,
:func:`sample_zoom_stack`, is imported lazily (it pulls in diffusers).
"""

from zoom.pyramid import blend
from zoom.stack import consistency_error, render_image, render_noise, render_noise_stack, render_stack

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


def __getattr__(name):
    if name in ("sample_zoom_stack", "ZoomResult"):
        from zoom import sampler

        return getattr(sampler, name)
    raise AttributeError(f"module 'zoom' has no attribute {name!r}")
