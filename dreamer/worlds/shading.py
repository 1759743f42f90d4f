"""The procedural world's appearance model, shared by its fast renderer and the reference one.

Materials are solid textures (functions of a surface point's object-local position) made of a
pattern (checker, stripes, tiles or plain) and value-noise octaves, each band-limited by the
pixel footprint; shading is Lambert with two fixed lights (no specular term, so colours are
view-independent). :mod:`dreamer.worlds.texture` evaluates it fast; :mod:`dreamer.worlds.reference`
is the readable slow version the fast one is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

# Value-noise octaves: wavelengths 2 m, 1 m, ... down to 2 m / 2^14 (about 0.12 mm). Octaves
# that no pixel resolves are skipped, so the fine ones cost nothing in a wide view.
OCTAVE_WAVELENGTHS = tuple(2.0 * 0.5**k for k in range(15))
# Amplitude of octave k relative to the material's noise amplitude. 1: every octave has the same
# contrast, as natural images have roughly equal energy per octave, so a deep zoom keeps finding
# texture at every level.
OCTAVE_PERSISTENCE = 1.0
# An octave (or a pattern period) fades out between these many pixel footprints per wavelength:
# gone below 2 (the Nyquist limit), full strength above 4.
FADE_LO, FADE_HI = 2.0, 4.0
# Oblique surfaces stretch the footprint by 1 / |cos(incidence)|, capped so that grazing floors
# keep some texture.
MAX_OBLIQUITY = 4.0

# Lights (directions towards the light, world frame; -y is up). Lambert only: view-independent.
KEY_DIR = (-0.35, -0.85, -0.40)
FILL_DIR = (0.45, 0.30, 0.85)
AMBIENT, KEY, FILL = 0.38, 0.55, 0.18

# Noise lattice hash: a permutation table (power of two) and a value per entry.
PERM_SIZE = 1024

PATTERNS = ("plain", "checker", "stripes", "tiles")


@dataclass(frozen=True)
class Material:
    """A solid texture: base colour, a pattern mixing in a second colour, value-noise detail.

    ``pattern`` is one of ``plain``, ``checker``, ``stripes`` (along local axis ``axis``) or
    ``tiles`` (grout lines; rows along ``axis`` shifted by ``stagger`` periods, and a per-tile
    brightness ``jitter``). ``period`` is per local axis (metres). ``noise`` is the amplitude of
    each value-noise octave, relative to the albedo.
    """

    base: tuple[float, float, float]
    alt: tuple[float, float, float]
    pattern: str
    period: tuple[float, float, float]
    axis: int = 0
    grout: float = 0.0
    stagger: float = 0.0
    jitter: float = 0.0
    noise: float = 0.08


def smoothstep(e0: float, e1: float, x: Tensor) -> Tensor:
    t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def fade(wavelength_in_footprints: Tensor) -> Tensor:
    """Weight of a feature of wavelength L given L / footprint: 0 below 2, 1 above 4."""
    return smoothstep(FADE_LO, FADE_HI, wavelength_in_footprints)
