"""Fast shading of the procedural world: patterns, band-limited value noise, Lambert light.

The formulas are the reference renderer's (:mod:`dreamer.worlds.reference`, the appearance
model in :mod:`dreamer.worlds.shading`); what changes is how they are evaluated:

* Pixels are shaded per object (one group of pixel indices per object id, found once), so a
  material's parameters are scalars, and on a room face (a plane of constant world coordinate)
  the face's axis drops out of the patterns and the noise.
* The noise lattice hash ``perm[(perm[(perm[x] + y) & m] + z) & m]`` is read from a
  precomputed table of ``perm[(perm[x] + y) & m]`` over all (x, y) and a table of lattice
  values per ``h + z``: two gathers instead of three chained ones, for all eight corners.
* On a room face, an octave's value noise is a 2D function: the lattice values of the cells the
  face's pixels touch are blended once along the face's axis into a small table, and each pixel
  reads it with one bilinear ``grid_sample`` at its smoothstep-warped lattice coordinates (the
  value noise is a linear interpolation at ``floor(q) + smoothstep(frac(q))``). Octaves whose
  table would outgrow the pixels, and all octaves on objects, are evaluated per pixel.
* Octaves run only on the pixels where they are live; that set only shrinks from one octave to
  the next (wavelengths halve), and the working set is compacted when a quarter has died.

Results equal the reference up to float rounding (see tests/test_world_fast.py for the bound).
Tensors are planar: one [N] tensor per colour or coordinate component.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dreamer.worlds.noise import fbm, lattice_values
from dreamer.worlds.shading import AMBIENT, FILL, KEY, MAX_OBLIQUITY, Material, fade, smoothstep

Planes = tuple[Tensor, Tensor, Tensor]

# -- patterns -------------------------------------------------------------------------------------

def _on_axis(fa: Tensor | int, a: int) -> Tensor | bool:
    """Where the face axis is ``a``: a mask, or a constant for a whole room face (fa an int)."""
    return fa == a


def _put(x: Tensor, where: Tensor | bool, value: float) -> Tensor:
    if isinstance(where, Tensor):
        return x.masked_fill(where, value)
    return torch.full_like(x, value) if where else x


def _tiles(m: Material, t: list[Tensor], fa: Tensor | int, f: Tensor, P: dict[str, Tensor]) -> list[Tensor]:
    """Grout lines, staggered rows and per-tile brightness at local points t (the reference's
    formulas with the material's scalars)."""
    per = torch.tensor(m.period, dtype=torch.float32)
    pl = per.tolist()
    if isinstance(fa, int) and fa == m.axis:
        t = list(t)  # rows along the face's own axis: no stagger
    else:
        row = torch.floor(t[m.axis] / pl[m.axis])
        row = _put(row, _on_axis(fa, m.axis), 0.0)
        shift = (m.stagger * per).tolist()
        t = [t[a] if a == m.axis or (isinstance(fa, int) and fa == a) else t[a] + shift[a] * row
             for a in range(3)]
    cell, line = [], None
    fc = f.clamp_min(1e-9)
    half = 0.5 * m.grout
    grout_share = (per.reciprocal() * m.grout).clamp(max=1.0).tolist()
    for a in range(3):
        on = _on_axis(fa, a)
        if on is True:
            cell.append(None)
            continue
        u = t[a] / pl[a]
        cell.append(_put(torch.floor(u), on, 0.0))
        dist = (u - torch.round(u)).abs_().mul_(pl[a])
        la = 1.0 - smoothstep(0.0, 1.0, (dist - half) / fc + 0.5)
        wfade = fade(pl[a] / f)
        la = wfade * la + (1.0 - wfade) * grout_share[a]
        la = _put(la, on, 0.0)
        line = la if line is None else torch.maximum(line, la)
    zero = torch.zeros((), dtype=torch.int32, device=f.device)
    ci = [zero.expand(f.shape) if c is None else c.int() for c in cell]
    jit = lattice_values(ci[0], ci[1], ci[2], P) * m.jitter
    jit = jit * fade(float(per.min()) / f)
    out = []
    for base, alt in zip(m.base, m.alt):
        tile = (1.0 + jit).mul_(base)
        out.append(tile + (float(torch.tensor(alt, dtype=torch.float32) * 0.8) - tile).mul_(line))
    return out


def _waves(m: Material, t: list[Tensor], fa: Tensor | int, f: Tensor) -> list[Tensor]:
    """Checker (product over axes) or stripes (along the material's axis) of square waves
    filtered over the footprint, at local points t."""
    pl = torch.tensor(m.period, dtype=torch.float32).tolist()
    sq = []
    for a in range(3):
        on = _on_axis(fa, a)
        if on is True:
            sq.append(None)  # the coordinate along a face's normal does not take part
            continue
        s = (torch.sin(2 * math.pi * t[a] / pl[a]) * (pl[a] / (2 * math.pi * f))).clamp(-1, 1) * fade(pl[a] / f)
        sq.append(_put(s, on, 1.0))
    if m.pattern == "checker":
        wave = None
        for s in sq:
            if s is not None:
                wave = s if wave is None else wave * s
    else:
        wave = sq[m.axis]
    if wave is None:
        wave = torch.ones_like(f)
    mix = 0.5 + 0.5 * wave
    base = torch.tensor(m.base, dtype=torch.float32)
    diff = (torch.tensor(m.alt, dtype=torch.float32) - base).tolist()
    return [b + d * mix for b, d in zip(base.tolist(), diff)]


def _f32(c: tuple[float, ...]) -> list[float]:
    return torch.tensor(c, dtype=torch.float32).tolist()


def albedo(m: Material, t: list[Tensor], fa: Tensor | int, f: Tensor, P: dict[str, Tensor]) -> list[Tensor]:
    """Pattern colour (three planes) of material ``m`` at local points t with face axis fa (-1
    on curved surfaces; an int for a whole room face), band-limited by the footprint f."""
    if m.pattern == "plain":
        return [torch.full_like(f, c) for c in _f32(m.base)]
    if m.pattern == "tiles":
        return _tiles(m, t, fa, f, P)
    return _waves(m, t, fa, f)


# -- shading --------------------------------------------------------------------------------------

def _lambert(n: list[Tensor] | list[float], P: dict[str, Tensor]) -> Tensor:
    key, fill = P["key"], P["fill"]
    if isinstance(n[0], float):  # a room face: one normal for all its pixels
        nv = torch.tensor(n, dtype=torch.float32, device=key.device)
        return AMBIENT + KEY * (nv @ key).clamp_min(0) + FILL * (nv @ fill).clamp_min(0)

    def dot(v: list[float]) -> Tensor:
        return torch.addcmul(torch.addcmul(n[0] * v[0], n[1], torch.full_like(n[1], v[1])),
                             n[2], torch.full_like(n[2], v[2]))

    return AMBIENT + KEY * dot(key.tolist()).clamp_min(0) + FILL * dot(fill.tolist()).clamp_min(0)


def shade(d: list[Tensor], t: Tensor, n: list[Tensor], parts: list, focal: float, P: dict[str, Tensor],
          materials: list[Material], room: tuple[list[float], list[float]]) -> list[Tensor]:
    """Colour (three [N] planes in [0, 1]) of the pixels whose rays d (camera z = 1, three [N]
    planes) hit at z-depth t [N] surfaces with normals n (three [N] planes), grouped into
    ``parts`` (:class:`dreamer.worlds.raycast.Surface`). ``focal`` (px) sets the footprint
    t / focal; ``room`` is the room's lower and upper bounds (the faces' coordinates)."""
    cos_i = (n[0] * d[0]).addcmul_(n[1], d[1]).addcmul_(n[2], d[2]).abs_()
    cos_i = cos_i / (d[0] * d[0]).addcmul_(d[1], d[1]).addcmul_(d[2], d[2]).sqrt_()
    fp = (t / focal) / cos_i.clamp_min(1.0 / MAX_OBLIQUITY)
    out = [torch.empty_like(t) for _ in range(3)]
    amps, offsets = P["noise_amp"].tolist(), P["noise_offset"].tolist()
    for part in parts:
        g = part.group
        oid = g.rect.oid
        f = g.pick(fp)
        m = materials[oid]
        if part.normal is None:  # a room face: id = 2 * axis + upper; normal -+ axis
            axis = oid // 2
            face = (axis, room[oid % 2][axis])
            nrm = [0.0, 0.0, 0.0]
            nrm[axis] = -1.0 if oid % 2 else 1.0
            light = _lambert(nrm, P)
        else:
            face = None
            light = _lambert(part.normal, P)
        col = albedo(m, part.tc, part.face_axis, f, P)
        detail = fbm(part.x, f, amps[oid], offsets[oid], P, face).add_(1.0).mul_(light)
        for c in range(3):
            g.put(out[c], (col[c] * detail).clamp_(0.0, 1.0))
    return out
