"""Today's straightforward renderer of the procedural world: the slow reference.

:class:`ReferenceRenderer` is the ray caster and shader the world used before the fast path in
:mod:`dreamer.worlds.raycast` and :mod:`dreamer.worlds.texture`: every ray against every
primitive, every live noise octave evaluated with a chained permutation hash, one pass per
object. It is kept readable and unoptimised on purpose; tests compare the fast render against
it (tests/test_world_fast.py) and ``bench/bench_speed.py`` times one against the other. Nothing
else should call it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dreamer.cameras import Camera, camera_rays
from dreamer.worlds.procedural import ProceduralWorld, WorldRender
from dreamer.worlds.shading import (
    AMBIENT, FILL, KEY, MAX_OBLIQUITY, OCTAVE_PERSISTENCE, OCTAVE_WAVELENGTHS, PERM_SIZE, fade, smoothstep,
)

__all__ = ["ReferenceRenderer"]

# Rays are processed in chunks to bound memory (supersampled 512x512 renders are millions of rays).
_CHUNK = 1 << 16
# Ray hits closer than this are ignored (rays start inside the room, never on a surface).
_T_EPS = 1e-6


class ReferenceRenderer:
    """Renders a :class:`ProceduralWorld` the slow, plain way (same results as its fast render
    up to float rounding; see tests/test_world_fast.py for the tolerance)."""

    def __init__(self, world: ProceduralWorld) -> None:
        if not isinstance(world, ProceduralWorld):
            raise TypeError(f"world must be a ProceduralWorld, got {type(world).__name__}")
        self._world = world
        self._materials = world._materials

    def _params(self, device: torch.device) -> dict[str, Tensor]:
        return self._world._params(device)

    def _check_camera(self, camera: Camera) -> None:
        self._world._check_camera(camera)

    def _trace(self, o: Tensor, d: Tensor, P: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Closest hit along rays ``o + t d`` (o [3], d [N,3]): t [N] (> 0) and object id [N].

        The rays start inside the room, so the room's exit distance bounds every hit.
        """
        tiny = torch.tensor(1e-12, dtype=d.dtype, device=d.device)
        safe_d = torch.where(d.abs() < tiny, torch.where(d < 0, -tiny, tiny), d)
        inv = 1.0 / safe_d
        # Room, from inside: the ray leaves through the face with the smallest exit t.
        t_lo = (P["room_lo"] - o) * inv
        t_hi = (P["room_hi"] - o) * inv
        t_axis = torch.maximum(t_lo, t_hi)  # [N,3]
        t_best, axis = t_axis.min(dim=1)
        obj = 2 * axis + (d.gather(1, axis[:, None])[:, 0] > 0).long()

        if P["box_c"].shape[0]:
            R = P["box_R"]  # [B,3,3] local -> world; local = world @ R
            ol = torch.einsum("bi,bij->bj", o - P["box_c"], R)  # [B,3]
            dl = torch.einsum("ni,bij->bnj", d, R)  # [B,N,3]
            dl = torch.where(dl.abs() < tiny, torch.where(dl < 0, -tiny, tiny), dl)
            invl = 1.0 / dl
            h = P["box_h"][:, None, :]
            t1 = (-h - ol[:, None, :]) * invl
            t2 = (h - ol[:, None, :]) * invl
            tn = torch.minimum(t1, t2).amax(dim=2)
            tf = torch.maximum(t1, t2).amin(dim=2)
            t = torch.where((tn <= tf) & (tn > _T_EPS), tn, torch.full_like(tn, math.inf))
            t_best, obj = self._closer(t, P["box_id"], t_best, obj)

        if P["sph_c"].shape[0]:
            oc = o - P["sph_c"]  # [S,3]
            a = (d * d).sum(1)  # [N]
            b = d @ oc.T  # [N,S] (half of the usual b)
            c = (oc * oc).sum(1) - P["sph_r"] ** 2  # [S]
            disc = b * b - a[:, None] * c
            tn = (-b - disc.clamp_min(0).sqrt()) / a[:, None]
            t = torch.where((disc >= 0) & (tn > _T_EPS), tn, torch.full_like(tn, math.inf)).T  # [S,N]
            t_best, obj = self._closer(t, P["sph_id"], t_best, obj)

        if P["cyl_c"].shape[0]:
            oc = o - P["cyl_c"]  # [C,3]
            dxz = d[:, [0, 2]]
            oxz = oc[:, [0, 2]]
            a = (dxz * dxz).sum(1).clamp_min(1e-12)[:, None]  # [N,1]
            b = dxz @ oxz.T  # [N,C]
            c = (oxz * oxz).sum(1) - P["cyl_r"] ** 2
            disc = b * b - a * c
            sq = disc.clamp_min(0).sqrt()
            s0, s1 = (-b - sq) / a, (-b + sq) / a
            hy = P["cyl_hy"]
            y1 = (-hy - oc[:, 1]) * inv[:, 1:2]
            y2 = (hy - oc[:, 1]) * inv[:, 1:2]
            tn = torch.maximum(s0, torch.minimum(y1, y2))
            tf = torch.minimum(s1, torch.maximum(y1, y2))
            t = torch.where((disc >= 0) & (tn <= tf) & (tn > _T_EPS), tn, torch.full_like(tn, math.inf)).T
            t_best, obj = self._closer(t, P["cyl_id"], t_best, obj)
        return t_best, obj

    @staticmethod
    def _closer(t: Tensor, ids: Tensor, t_best: Tensor, obj: Tensor) -> tuple[Tensor, Tensor]:
        """Merge hits t [G,N] of a group of primitives (ids [G]) into the running closest hit."""
        tg, k = t.min(dim=0)
        better = tg < t_best
        return torch.where(better, tg, t_best), torch.where(better, ids[k], obj)

    def _surface_frame(self, x: Tensor, obj: Tensor, P: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """At hit points x [N,3] on objects obj [N]: the outward world normal [N,3], texture
        coordinates [N,3] (object-local) and the local face axis [N] (-1 for curved surfaces).

        Planar faces report which local axis is their normal, so patterns can ignore it (a 3D
        pattern evaluated on a plane that happens to sit on one of its zero crossings would
        vanish)."""
        n = torch.zeros_like(x)
        tc = x.clone()
        face_axis = torch.full_like(obj, -1)
        room = obj < 6
        if room.any():
            ax = obj[room] // 2
            sign = torch.where(obj[room] % 2 == 1, -1.0, 1.0).to(x)  # upper face: normal points to -axis
            nr = torch.zeros_like(x[room])
            nr.scatter_(1, ax[:, None], sign[:, None])
            n[room] = nr
            face_axis[room] = ax
        for kind in ("box", "sph", "cyl"):
            ids = P[f"{kind}_id"]
            if ids.numel() == 0:
                continue
            # Map object id -> index within the group.
            lut = torch.full((len(self._materials),), -1, dtype=torch.long, device=x.device)
            lut[ids] = torch.arange(ids.numel(), device=x.device)
            g = lut[obj]
            sel = g >= 0
            if not sel.any():
                continue
            gi = g[sel]
            q = x[sel] - P[f"{kind}_c"][gi]
            if kind == "box":
                R = P["box_R"][gi]  # [M,3,3]
                ql = torch.einsum("mi,mij->mj", q, R)
                ax = (ql.abs() / P["box_h"][gi]).argmax(dim=1)
                s = torch.sign(ql.gather(1, ax[:, None]))
                s = torch.where(s == 0, torch.ones_like(s), s)
                nl = torch.zeros_like(ql).scatter_(1, ax[:, None], s)
                n[sel] = torch.einsum("mij,mj->mi", R, nl)
                tc[sel] = ql
                face_axis[sel] = ax
            elif kind == "sph":
                n[sel] = q / q.norm(dim=1, keepdim=True).clamp_min(1e-12)
                tc[sel] = q
            else:
                radial = torch.stack([q[:, 0], torch.zeros_like(q[:, 0]), q[:, 2]], 1)
                rn = radial.norm(dim=1, keepdim=True)
                cap = (q[:, 1].abs() / P["cyl_hy"][gi]) > (rn[:, 0] / P["cyl_r"][gi])
                ncap = torch.zeros_like(q)
                ncap[:, 1] = torch.where(q[:, 1] >= 0, 1.0, -1.0)
                n[sel] = torch.where(cap[:, None], ncap, radial / rn.clamp_min(1e-12))
                tc[sel] = q
                face_axis[sel] = torch.where(cap, 1, -1)
        return n, tc, face_axis

    # -- texture ------------------------------------------------------------------------------------
    @staticmethod
    def _hash3(i: Tensor, perm: Tensor) -> Tensor:
        """Lattice hash of integer coordinates i [...,3] -> [0, PERM_SIZE)."""
        m = PERM_SIZE - 1
        h = perm[i[..., 0] & m]
        h = perm[(h + i[..., 1]) & m]
        return perm[(h + i[..., 2]) & m]

    def _value_noise(self, q: Tensor, P: dict[str, Tensor]) -> Tensor:
        """Value noise in [-1, 1] at q [N,3] (lattice units): smooth trilinear blend of random
        lattice values (period 1024 cells per axis)."""
        fl = torch.floor(q)
        f = q - fl
        w = f * f * (3.0 - 2.0 * f)
        i = fl.long()
        perm, lat = P["perm"], P["lattice"]
        m = PERM_SIZE - 1
        hx = [perm[(i[:, 0] + a) & m] for a in (0, 1)]
        hxy = [[perm[(hx[a] + i[:, 1] + b) & m] for b in (0, 1)] for a in (0, 1)]
        out = None
        wx, wy, wz = w[:, 0], w[:, 1], w[:, 2]
        for a in (0, 1):
            ya = None
            for b in (0, 1):
                v0 = lat[perm[(hxy[a][b] + i[:, 2]) & m]]
                v1 = lat[perm[(hxy[a][b] + i[:, 2] + 1) & m]]
                vb = v0 + (v1 - v0) * wz
                ya = vb if ya is None else ya + (vb - ya) * wy
            out = ya if out is None else out + (ya - out) * wx
        return out

    def _fbm(self, x: Tensor, obj: Tensor, fp: Tensor, P: dict[str, Tensor]) -> Tensor:
        """Band-limited fractal noise [N] at points x [N,3], zero mean: sum over octaves of
        value noise, each faded out where its wavelength is under ~2 footprints ``fp`` [N]."""
        out = torch.zeros_like(fp)
        amp = P["noise_amp"][obj]
        base = x + P["noise_offset"][obj]
        for k, lam in enumerate(OCTAVE_WAVELENGTHS):
            w = fade(lam / fp)
            live = (w > 0).nonzero()[:, 0]
            if live.numel() == 0:
                break  # wavelengths only get shorter: no pixel resolves any further octave
            q = base[live] / lam + P["octave_offset"][k]
            v = self._value_noise(q, P)
            out.index_add_(0, live, (amp[live] * OCTAVE_PERSISTENCE**k) * w[live] * v)
        return out

    def _albedo(self, tc: Tensor, face_axis: Tensor, obj: Tensor, fp: Tensor, P: dict[str, Tensor]) -> Tensor:
        """Pattern colour [N,3] per object material, band-limited by the footprint fp [N]."""
        albedo = torch.empty(tc.shape[0], 3, dtype=tc.dtype, device=tc.device)
        for oid in torch.unique(obj).tolist():
            sel = (obj == oid).nonzero()[:, 0]
            m = self._materials[oid]
            t = tc[sel]
            f = fp[sel][:, None]
            per = torch.tensor(m.period, dtype=t.dtype, device=t.device)
            fa = face_axis[sel]
            on_face = fa >= 0
            base = torch.tensor(m.base, dtype=t.dtype, device=t.device)
            alt = torch.tensor(m.alt, dtype=t.dtype, device=t.device)
            if m.pattern == "plain":
                mix = torch.zeros_like(f)
            elif m.pattern in ("checker", "stripes"):
                # Square wave filtered over a footprint: the sine's sign with edges ramped over
                # about one footprint, the whole faded to its mean (0) when the period is unresolved.
                sq = (torch.sin(2 * math.pi * t / per) * (per / (2 * math.pi * f))).clamp(-1, 1) * fade(per / f)
                if on_face.any():  # the coordinate along a face's normal does not take part
                    sq[on_face] = sq[on_face].scatter(1, fa[on_face][:, None], 1.0)
                wave = sq.prod(dim=1, keepdim=True) if m.pattern == "checker" else sq[:, m.axis:m.axis + 1]
                mix = 0.5 + 0.5 * wave
            elif m.pattern == "tiles":
                t = t.clone()
                # Rows along the material's axis shift the other axes by ``stagger`` periods
                # (bricks, planks). On a face normal to that axis the row is constant: use 0,
                # since floor() of a coordinate sitting on a period boundary would flicker.
                row = torch.floor(t[:, m.axis] / per[m.axis])
                row = torch.where(fa == m.axis, torch.zeros_like(row), row)
                for a in range(3):
                    if a != m.axis:
                        t[:, a] = t[:, a] + m.stagger * per[a] * row
                cell = torch.floor(t / per)
                if on_face.any():
                    cell[on_face] = cell[on_face].scatter(1, fa[on_face][:, None], 0.0)
                # Grout lines: distance to the nearest cell border, filtered over a footprint and
                # blended to its average coverage when the line is unresolved.
                dist = (t / per - torch.round(t / per)).abs() * per
                half = 0.5 * m.grout
                line = 1.0 - smoothstep(0.0, 1.0, (dist - half) / f.clamp_min(1e-9) + 0.5)
                wfade = fade(per / f)
                line = wfade * line + (1.0 - wfade) * (m.grout / per).clamp(max=1.0)
                if on_face.any():
                    line[on_face] = line[on_face].scatter(1, fa[on_face][:, None], 0.0)
                grout = line.amax(dim=1, keepdim=True)
                # Per-tile brightness from a lattice hash, faded when tiles are unresolved.
                jit = P["lattice"][self._hash3(cell.long(), P["perm"])][:, None]
                jit = jit * m.jitter * fade(per.min() / f)
                tile = base * (1.0 + jit)
                col = tile + (alt * 0.8 - tile) * grout
                albedo[sel] = col
                continue
            else:  # pragma: no cover - materials are built in this module
                raise RuntimeError(f"unknown pattern {m.pattern!r}")
            albedo[sel] = base + (alt - base) * mix
        return albedo

    def _shade(self, o: Tensor, d: Tensor, focal: float, P: dict[str, Tensor], *,
               colour: bool = True) -> tuple[Tensor, ...]:
        """Trace and shade rays o + t d (d [N,3] with camera z = 1, so t is z-depth): colour [N,3]
        (None when ``colour`` is False), depth [N], normal [N,3], object id [N]. ``focal`` (px)
        sets the footprint t / focal."""
        t, obj = self._trace(o, d, P)
        x = o + t[:, None] * d
        n, tc, face_axis = self._surface_frame(x, obj, P)
        if not colour:
            return None, t, n, obj
        # Footprint of the pixel on the surface, stretched on oblique surfaces (capped).
        cos_i = (n * d).sum(1).abs() / d.norm(dim=1)
        fp = (t / focal) / cos_i.clamp_min(1.0 / MAX_OBLIQUITY)
        albedo = self._albedo(tc, face_axis, obj, fp, P)
        albedo = albedo * (1.0 + self._fbm(x, obj, fp, P))[:, None]
        light = AMBIENT + KEY * (n @ P["key"]).clamp_min(0) + FILL * (n @ P["fill"]).clamp_min(0)
        rgb = (albedo * light[:, None]).clamp(0.0, 1.0)
        return rgb, t, n, obj

    def _rays(self, camera: Camera) -> tuple[Tensor, Tensor]:
        origin, dirs = camera_rays(camera)
        return origin, dirs.reshape(-1, 3)

    # -- public rendering ---------------------------------------------------------------------------
    def render(self, camera: Camera, *, supersample: int = 1) -> WorldRender:
        """Ray-cast the world into ``camera``.

        Returns image [H,W,3], z-depth [H,W], normal [H,W,3] and object id [H,W] on the
        camera's device (float32). With ``supersample = s`` the image is the mean of an s x s
        grid of sub-pixel rays, each band-limited to its sub-pixel footprint: exactly the box
        downsample of a render at s times the resolution (the zoom stack's reduce operator).
        Depth, normal and id always come from the ray through the pixel centre.
        """
        self._check_camera(camera)
        if isinstance(supersample, bool) or not isinstance(supersample, int) or supersample < 1:
            raise ValueError(f"supersample must be a positive int, got {supersample!r}")
        P = self._params(camera.device)
        H, W = camera.height, camera.width
        focal = min(camera.fx, camera.fy)
        o, d = self._rays(camera)
        s = supersample
        outs = [self._shade(o, d[i:i + _CHUNK], focal, P, colour=s == 1) for i in range(0, d.shape[0], _CHUNK)]
        depth = torch.cat([c[1] for c in outs]).reshape(H, W)
        normal = torch.cat([c[2] for c in outs]).reshape(H, W, 3)
        obj = torch.cat([c[3] for c in outs]).reshape(H, W)
        if s == 1:
            image = torch.cat([c[0] for c in outs]).reshape(H, W, 3)
        else:
            fine = camera.resized(W * s, H * s)
            o, d = self._rays(fine)
            cols = [self._shade(o, d[i:i + _CHUNK], focal * s, P)[0] for i in range(0, d.shape[0], _CHUNK)]
            image = torch.cat(cols).reshape(H, s, W, s, 3).mean(dim=(1, 3))
        return WorldRender(image=image.contiguous(), depth=depth, normal=normal, object_id=obj)

    def depth(self, camera: Camera) -> Tensor:
        """z-depth [H,W] (float32, > 0) of the surface through each pixel centre; no shading."""
        self._check_camera(camera)
        P = self._params(camera.device)
        o, d = self._rays(camera)
        t = torch.cat([self._trace(o, d[i:i + _CHUNK], P)[0] for i in range(0, d.shape[0], _CHUNK)])
        return t.reshape(camera.height, camera.width)

