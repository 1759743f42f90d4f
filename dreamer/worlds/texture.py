"""Fast shading of the procedural world: patterns, band-limited noise, Lambert light.

The formulas are the reference renderer's (:mod:`dreamer.worlds.reference`, the appearance
model in :mod:`dreamer.worlds.shading`); what changes is how they are evaluated. Pixels are
shaded per surface (the groups of :func:`dreamer.worlds.raycast.surfaces`), so a material's
parameters are scalars, and on a room face (a plane of constant world coordinate) the face's
axis drops out of the patterns and of the noise (:mod:`dreamer.worlds.noise`). Pattern fades
that are 1 at every pixel of a surface are skipped. Results equal the reference's up to float
rounding (tests/test_world_fast.py states the bound). Tensors are planar: one [N] tensor per
colour or coordinate component.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dreamer.worlds.noise import NoiseTables, fbm, lattice_values
from dreamer.worlds.raycast import Surface
from dreamer.worlds.shading import AMBIENT, FADE_HI, FILL, KEY, MAX_OBLIQUITY, Material, fade

# -- patterns -------------------------------------------------------------------------------------

def _on_axis(fa: Tensor | int, a: int) -> Tensor | bool:
    """Where the face axis is ``a``: a mask, or a constant for a whole room face (fa an int)."""
    return fa == a


def _put(x: Tensor, where: Tensor | bool, value: float) -> Tensor:
    if isinstance(where, Tensor):
        return x.masked_fill(where, value)
    return torch.full_like(x, value) if where else x


def _fade_or_none(period: float, f: Tensor, f_max: float) -> Tensor | None:
    """fade(period / f), or None where it is 1 at every pixel (period >= 4 footprints)."""
    if period / f_max >= FADE_HI:
        return None
    return fade(period / f)


def _tiles(m: Material, t: list[Tensor], fa: Tensor | int, f: Tensor, P: dict[str, Tensor]) -> list[Tensor]:
    """Grout lines, staggered rows and per-tile brightness at local points t: the reference's
    formulas with the material's scalars, regrouped (a blend written as one product, fades that
    are 1 at every pixel skipped)."""
    per = torch.tensor(m.period, dtype=torch.float32)
    pl = per.tolist()
    f_max = float(f.max())
    if isinstance(fa, int) and fa == m.axis:
        t = list(t)  # rows along the face's own axis: no stagger
    else:
        row = torch.floor(t[m.axis] / pl[m.axis])
        row = _put(row, _on_axis(fa, m.axis), 0.0)
        shift = (m.stagger * per).tolist()
        t = [t[a] if a == m.axis or (isinstance(fa, int) and fa == a) or shift[a] == 0.0
             else t[a] + shift[a] * row for a in range(3)]
    # Grout lines: distance to the nearest cell border, filtered over a footprint (a smoothstep
    # of (dist - grout / 2) / footprint + 1/2), blended to the grout's share where unresolved.
    inv_f = f.clamp_min(1e-9).reciprocal()
    start = torch.mul(inv_f, -0.5 * m.grout).add_(0.5)
    grout_share = (per.reciprocal() * m.grout).clamp(max=1.0).tolist()
    cell, line = [], None
    for a in range(3):
        on = _on_axis(fa, a)
        if on is True:
            cell.append(None)
            continue
        u = t[a] / pl[a]
        cell.append(_put(torch.floor(u), on, 0.0))
        x = (u - torch.round(u)).abs_().mul_(pl[a])
        x = torch.addcmul(start, x, inv_f).clamp_(0.0, 1.0)
        x2 = x * x
        la = x2.mul(-3.0).add_(1.0).addcmul_(x2, x, value=2.0)  # 1 - smoothstep
        wfade = _fade_or_none(pl[a], f, f_max)
        if wfade is not None:
            la = la.sub_(grout_share[a]).mul_(wfade).add_(grout_share[a])
        la = _put(la, on, 0.0)
        line = la if line is None else torch.maximum(line, la)
    zero = torch.zeros((), dtype=torch.int32, device=f.device)
    ci = [zero.expand(f.shape) if c is None else c.int() for c in cell]
    jit = lattice_values(ci[0], ci[1], ci[2], P).mul_(m.jitter)
    jfade = _fade_or_none(float(per.min()), f, f_max)
    if jfade is not None:
        jit = jit.mul_(jfade)
    # tile = base (1 + jit); colour = tile + (0.8 alt - tile) line = base (1 + jit)(1 - line) + 0.8 alt line
    keep = jit.add_(1.0).mul_(1.0 - line)
    alt08 = (torch.tensor(m.alt, dtype=torch.float32) * 0.8).tolist()
    return [torch.add(keep * base, line, alpha=a8) for base, a8 in zip(m.base, alt08)]


def _waves(m: Material, t: list[Tensor], fa: Tensor | int, f: Tensor) -> list[Tensor]:
    """Checker (product over axes) or stripes (along the material's axis) of square waves
    filtered over the footprint, at local points t."""
    pl = torch.tensor(m.period, dtype=torch.float32).tolist()
    f_max = float(f.max())
    inv_f = f.reciprocal()
    sq = []
    for a in range(3):
        on = _on_axis(fa, a)
        if on is True:
            sq.append(None)  # the coordinate along a face's normal does not take part
            continue
        s = torch.sin(t[a] * (2 * math.pi / pl[a])).mul_(inv_f).mul_(pl[a] / (2 * math.pi)).clamp_(-1, 1)
        wfade = _fade_or_none(pl[a], f, f_max)
        if wfade is not None:
            s = s.mul_(wfade)
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
        return (n[0] * v[0]).add_(n[1], alpha=v[1]).add_(n[2], alpha=v[2])

    return AMBIENT + KEY * dot(key.tolist()).clamp_min(0) + FILL * dot(fill.tolist()).clamp_min(0)


def shade(d: list[Tensor], t: Tensor, n: list[Tensor], parts: list[Surface], focal: float, P: dict[str, Tensor],
          materials: list[Material], room: tuple[list[float], list[float]],
          tables: NoiseTables | None = None) -> Tensor:
    """Colour [3,N] (three planes, in [0, 1]) of the pixels whose rays d (camera z = 1, three [N]
    planes) hit at z-depth t [N] surfaces with normals n (three [N] planes), grouped into
    ``parts`` (:class:`dreamer.worlds.raycast.Surface`). ``focal`` (px) sets the footprint
    t / focal; ``room`` is the room's lower and upper bounds (the faces' coordinates);
    ``tables`` keeps the noise tables of whole surfaces (bounds per id in P) for later renders."""
    cos_i = (n[0] * d[0]).addcmul_(n[1], d[1]).addcmul_(n[2], d[2]).abs_()
    cos_i = cos_i / (d[0] * d[0]).addcmul_(d[1], d[1]).addcmul_(d[2], d[2]).sqrt_()
    fp = (t / focal) / cos_i.clamp_min(1.0 / MAX_OBLIQUITY)
    out = torch.empty(3, t.shape[0], dtype=t.dtype, device=t.device)
    amps, offsets = P["noise_amp"].tolist(), P["noise_offset"].tolist()
    id_lo, id_hi = P["id_lo"].tolist(), P["id_hi"].tolist()
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
        surface = None if tables is None else (tables, oid, list(zip(id_lo[oid], id_hi[oid])))
        detail = fbm(part.x, f, amps[oid], offsets[oid], P, face, surface).add_(1.0).mul_(light)
        for c in range(3):
            g.put(out[c], (col[c] * detail).clamp_(0.0, 1.0))
    return out
