"""Upper bounds on what one run may ask for, checked before any model loads.

Each bound stops an input that would run for hours or fill the memory by mistake or by malice: a
150-byte keyframe file asking for 10 million frames, 10,000 views, a width of 100000, a photo of
200 megapixels. The defaults are far above what a normal run needs. ``--allow-large`` on the
command lines lifts the bounds a person could mean (:meth:`Limits.lifted`); the ones only a broken
or hostile file reaches (a YAML file expanding to millions of entries, a seed the generator
cannot take) stay.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from dreamer.pipeline.inputs import MAX_PHOTO_PIXELS

__all__ = ["Limits", "MAX_SEED", "MAX_STEPS"]

#: Seeds are integers in [0, MAX_SEED]: every generator of the project takes them (and seed + k for
#: the k-th view, seed * 1_000_003 + k for splat training) without overflowing.
MAX_SEED = 2**32 - 1

#: Denoising steps cannot exceed the models' training timesteps.
MAX_STEPS = 1000


@dataclass(frozen=True)
class Limits:
    """The bounds (None: no bound). See the module docstring."""

    side: int | None = 2048
    """Largest image side in pixels: views, photos' working size, zoom levels (SD works at 512-1024)."""
    views: int | None = 500
    """Most cameras of the dream trajectory (each one is a diffusion call)."""
    frames: int | None = 10_000
    """Most frames of one video: the render trajectory, the fly-in (7 minutes at 24 fps)."""
    photo_pixels: int | None = MAX_PHOTO_PIXELS
    """Largest photo or depth map, in pixels, read from the file's header before decoding."""
    zoom_levels: int | None = 16
    """Most levels of a zoom stack (2^15 = 32768x magnification at p = 2)."""
    input_bytes: int | None = 16 * 1024 * 1024
    """Largest text input file: batch, config, trajectory, prompts."""
    batch_entries: int = 1_000_000
    """Most values a batch file may expand to (YAML aliases can make a 500-byte file expand to
    1e8 entries); not lifted."""

    def lifted(self) -> "Limits":
        """These limits with every bound a person could mean removed (``--allow-large``)."""
        return dataclasses.replace(self, side=None, views=None, frames=None, photo_pixels=None, zoom_levels=None,
                                   input_bytes=None)
