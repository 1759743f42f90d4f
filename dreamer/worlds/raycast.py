"""Fast ray casting of the procedural world (see :mod:`dreamer.worlds.procedural`).

The arithmetic per ray is the reference renderer's (:mod:`dreamer.worlds.reference`), arranged
so that it costs little on a CPU:

* Planar layout: every per-pixel quantity is one [h,w] tensor per component, because torch
  reduces over a trailing dimension of size 3 an order of magnitude slower than it adds planes.
* Screen-space culling: a primitive is tested only against the rays inside the pixel rectangle
  that its bounding box projects to (plus a margin), not against every ray. The room is tested
  against all rays (every ray hits it); its faces' rectangles only serve to group pixels.
* The reference's matrix products are written out as the fused multiply-adds the matrix kernels
  use, so that on the CPU depth, normals and object ids come out the same bit for bit.

Functions here take the packed layout of :meth:`ProceduralWorld._params` (``P``) and return
tensors; they hold no state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from dreamer.cameras import Camera

# Ray hits closer than this are ignored (rays start inside the room, never on a surface).
T_EPS = 1e-6
# Ray direction components smaller than this are nudged to it before taking reciprocals.
_TINY = 1e-12
# Culling margins: pixels added around each projected rectangle, and the bounding box's growth
# per metre of distance (radians), far above the float32 error of a ray's direction (about
# 1e-7) and of a tangent hit test.
_MARGIN_PX = 2.0
_ANGULAR_SLACK = 1e-4


@dataclass(frozen=True)
class Rect:
    """The pixel rectangle rows [v0, v1) x columns [u0, u1) in which surface ``index`` of group
    ``kind`` ("room" for the room's faces, "box", "sph", "cyl"), object id ``oid``, can be hit."""

    kind: str
    index: int
    oid: int
    v0: int
    v1: int
    u0: int
    u1: int

    def rows(self, r0: int, r1: int) -> "Rect | None":
        """This rectangle restricted to image rows [r0, r1), in band coordinates; None if empty."""
        v0, v1 = max(self.v0, r0), min(self.v1, r1)
        if v0 >= v1:
            return None
        return Rect(self.kind, self.index, self.oid, v0 - r0, v1 - r0, self.u0, self.u1)

    def view(self, a: Tensor) -> Tensor:
        """The rectangle's part of an [h,w] plane (a view)."""
        return a[self.v0:self.v1, self.u0:self.u1]


def planar_rays(camera: Camera) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
    """:func:`dreamer.cameras.camera_rays` in planar layout: origin [3] and the three world
    components [H,W] of the ray through each pixel centre, scaled so that camera z = 1.

    Same formula and rounding as ``camera_rays`` (its matrix product is a chain of fused
    multiply-adds: x R[j,0], then + y R[j,1], then + R[j,2]), without the [H,W,3] matmul."""
    dev = camera.device
    u = torch.arange(camera.width, device=dev, dtype=torch.float32) + 0.5
    v = torch.arange(camera.height, device=dev, dtype=torch.float32) + 0.5
    x = ((u - camera.cx) / camera.fx)[None, :]  # [1,W]
    y = ((v - camera.cy) / camera.fy)[:, None]  # [H,1]
    R = camera.c2w[:3, :3].tolist()
    dirs = tuple(torch.addcmul(x * R[j][0], y, torch.full_like(y, R[j][1])) + R[j][2] for j in range(3))
    return camera.c2w[:3, 3], dirs  # type: ignore[return-value]


# The 12 edges of a box, as pairs of corner indices (corner bit j set: +half size along axis j).
_BOX_EDGES = np.array([(i, i | (1 << j)) for i in range(8) for j in range(3) if not i & (1 << j)])
_CORNER_SIGNS = np.array([[1.0 if i & (1 << j) else -1.0 for j in range(3)] for i in range(8)])


def _projected_span(corners: np.ndarray, intrinsics: tuple[float, float, float, float], width: int,
                    height: int) -> tuple[int, int, int, int] | None:
    """Pixel rectangle (v0, v1, u0, u1) covering the projection of the part of a box (its 8
    corners [8,3] in the camera frame) in front of a camera with ``intrinsics`` (fx, fy, cx, cy)
    and image size; None if no part is.

    The box is clipped by the plane z = T_EPS (no hit is nearer): its corners in front plus the
    points where its edges cross that plane. The projection of a convex solid is the hull of its
    vertices' projections, so their bounds are exact; a margin of pixels is added."""
    a, b = corners[_BOX_EDGES[:, 0]], corners[_BOX_EDGES[:, 1]]
    za, zb = a[:, 2] - T_EPS, b[:, 2] - T_EPS
    cross = za * zb < 0
    s = (-za[cross] / (zb[cross] - za[cross]))[:, None]
    pts = np.concatenate([corners[corners[:, 2] >= T_EPS], a[cross] + s * (b[cross] - a[cross])])
    if pts.shape[0] == 0:
        return None
    fx, fy, cx, cy = intrinsics
    us = fx * pts[:, 0] / pts[:, 2] + cx
    vs = fy * pts[:, 1] / pts[:, 2] + cy

    def span(lo: float, hi: float, size: int) -> tuple[int, int]:
        # pixel j's centre is j + 0.5
        j0 = math.floor(max(lo, -1.0) - 0.5 - _MARGIN_PX)
        j1 = math.ceil(min(hi, size + 1.0) - 0.5 + _MARGIN_PX) + 1
        return max(j0, 0), min(j1, size)

    v0, v1 = span(float(vs.min()), float(vs.max()), height)
    u0, u1 = span(float(us.min()), float(us.max()), width)
    return (v0, v1, u0, u1) if u0 < u1 and v0 < v1 else None


def screen_rects(camera: Camera, layout: dict[str, Tensor]) -> list[Rect]:
    """Per surface (the room's six faces, then each primitive), the pixel rectangle its
    bounding box projects to; surfaces out of view are left out.

    ``layout`` is the world's float64 CPU parameters (``ProceduralWorld._np``). Boxes bound
    themselves (yawed), spheres and cylinders by their axis-aligned boxes, faces by their
    rectangles. Every box grows by 1e-4 of its distance to the camera (an angle far above the
    float32 error of a ray's direction and of a tangent hit test, about 1e-7)."""
    L = {k: v.numpy() for k, v in layout.items() if k.startswith(("room_", "box_", "sph_", "cyl_"))}
    c2w = camera.c2w.detach().cpu().double().numpy()
    R_cam, o = c2w[:3, :3], c2w[:3, 3]
    boxes = []  # (kind, index, id, centre, half sizes, rotation or None)
    lo, hi = L["room_lo"], L["room_hi"]
    for face in range(6):
        axis, upper = divmod(face, 2)
        centre, half = 0.5 * (lo + hi), 0.5 * (hi - lo)
        centre[axis], half[axis] = (hi if upper else lo)[axis], 0.0
        boxes.append(("room", face, face, centre, half, None))
    for k in range(L["box_c"].shape[0]):
        boxes.append(("box", k, int(L["box_id"][k]), L["box_c"][k], L["box_h"][k], L["box_R"][k]))
    for k in range(L["sph_c"].shape[0]):
        boxes.append(("sph", k, int(L["sph_id"][k]), L["sph_c"][k], np.full(3, L["sph_r"][k]), None))
    for k in range(L["cyl_c"].shape[0]):
        half = np.array([L["cyl_r"][k], L["cyl_hy"][k], L["cyl_r"][k]])
        boxes.append(("cyl", k, int(L["cyl_id"][k]), L["cyl_c"][k], half, None))
    rects = []
    K = camera.K.detach().cpu().double().numpy()
    intrinsics = (K[0, 0], K[1, 1], K[0, 2], K[1, 2])
    for kind, k, oid, centre, half, rot in boxes:
        half = half * (1.0 + 1e-6) + _ANGULAR_SLACK * float(np.linalg.norm(centre - o)) + 1e-6
        local = _CORNER_SIGNS * half
        world = centre + (local if rot is None else local @ rot.T)
        span = _projected_span((world - o) @ R_cam, intrinsics, camera.width, camera.height)
        if span is not None:
            rects.append(Rect(kind, k, oid, *span))
    return rects


def _safe(d: Tensor) -> Tensor:
    """``d`` with components under 1e-12 in magnitude replaced by +-1e-12 (sign kept, 0 -> +)."""
    tiny = torch.tensor(_TINY, dtype=d.dtype, device=d.device)
    if float(d.abs().min()) < _TINY:
        d = torch.where(d.abs() < tiny, torch.where(d < 0, -tiny, tiny), d)
    return d


def _fma3(a: tuple[Tensor, Tensor, Tensor], b0: float, b1: float, b2: float) -> Tensor:
    """a0 b0 + a1 b1 + a2 b2 rounded like a float32 matrix kernel (fused multiply-adds)."""
    return (a[0] * b0).add_(a[1], alpha=b1).add_(a[2], alpha=b2)


def _merge(rect: Rect, hit: Tensor, t: Tensor, t_best: Tensor, obj: Tensor) -> None:
    """Keep the primitive's hits t (where ``hit``) that are strictly closer, in place."""
    tb, ob = rect.view(t_best), rect.view(obj)
    better = hit & (t < tb)
    tb.copy_(torch.where(better, t, tb))
    ob.masked_fill_(better, rect.oid)


def trace(o: Tensor, d: tuple[Tensor, Tensor, Tensor], P: dict[str, Tensor],
          rects: list[Rect]) -> tuple[Tensor, Tensor]:
    """Closest hit along rays ``o + t d`` (o [3], d three [h,w] planes): t [h,w] (> 0) and
    object id [h,w] (int64)."""
    inv = [_safe(dj).reciprocal() for dj in d]
    lo = (P["room_lo"] - o).tolist()
    hi = (P["room_hi"] - o).tolist()
    # Room, from inside: the ray leaves through the face with the smallest exit t (the first
    # axis on ties); the upper face of that axis if the ray runs towards +axis.
    # (The reference's min over a stacked [3,...] tensor, written as pairwise minima: no copies.
    # Ids are kept in bytes while tracing: int64 planes cost several times more to write.)
    small_ids = P["id_face_axis"].shape[0] <= 256
    t_axis = [torch.maximum(inv[j] * lo[j], inv[j] * hi[j]) for j in range(3)]
    face = [(d[j] > 0).view(torch.uint8) + 2 * j for j in range(3)]  # id = 2 * axis + upper
    if not small_ids:
        face = [f.long() for f in face]
    closer = t_axis[1] < t_axis[0]
    t_best = torch.minimum(t_axis[0], t_axis[1])
    obj = torch.where(closer, face[1], face[0])
    closer = t_axis[2] < t_best
    t_best = torch.minimum(t_best, t_axis[2])
    obj = torch.where(closer, face[2], obj)

    if rects:
        box_ol = torch.einsum("bi,bij->bj", o - P["box_c"], P["box_R"]).tolist() if P["box_c"].shape[0] else []
        sph_oc = o - P["sph_c"]
        sph_c = ((sph_oc * sph_oc).sum(1) - P["sph_r"] ** 2).tolist()
        cyl_oc = o - P["cyl_c"]
        cyl_oxz = cyl_oc[:, [0, 2]]
        cyl_cc = ((cyl_oxz * cyl_oxz).sum(1) - P["cyl_r"] ** 2).tolist()
        cyl_y1 = (-P["cyl_hy"] - cyl_oc[:, 1]).tolist()
        cyl_y2 = (P["cyl_hy"] - cyl_oc[:, 1]).tolist()
        box_R = P["box_R"].tolist()
        box_h = P["box_h"]
        sph_oc_l, cyl_oc_l = sph_oc.tolist(), cyl_oc.tolist()
    for rect in rects:
        if rect.kind == "room":
            continue
        k = rect.index
        dr = tuple(rect.view(dj).contiguous() for dj in d)
        if rect.kind == "box":
            R, ol = box_R[k], box_ol[k]
            lo_k = (-box_h[k] - torch.tensor(ol, dtype=box_h.dtype, device=box_h.device)).tolist()
            hi_k = (box_h[k] - torch.tensor(ol, dtype=box_h.dtype, device=box_h.device)).tolist()
            tn = tf = None
            for j in range(3):
                invl = _safe(_fma3(dr, R[0][j], R[1][j], R[2][j])).reciprocal()
                t1, t2 = invl * lo_k[j], invl * hi_k[j]
                near, far = torch.minimum(t1, t2), torch.maximum(t1, t2)
                tn = near if tn is None else torch.maximum(tn, near)
                tf = far if tf is None else torch.minimum(tf, far)
            hit = (tn <= tf) & (tn > T_EPS)
        elif rect.kind == "sph":
            oc = sph_oc_l[k]
            a = dr[0] * dr[0] + dr[1] * dr[1] + dr[2] * dr[2]
            b = _fma3(dr, *oc)
            disc = b * b - a * sph_c[k]
            tn = (-b - disc.clamp_min(0).sqrt()) / a
            hit = (disc >= 0) & (tn > T_EPS)
        else:
            oc = cyl_oc_l[k]
            a = (dr[0] * dr[0] + dr[2] * dr[2]).clamp_min(1e-12)
            b = (dr[0] * oc[0]).add_(dr[2], alpha=oc[2])
            disc = b * b - a * cyl_cc[k]
            sq = disc.clamp_min(0).sqrt()
            s0, s1 = (-b - sq) / a, (-b + sq) / a
            iy = rect.view(inv[1]).contiguous()
            y1, y2 = iy * cyl_y1[k], iy * cyl_y2[k]
            tn = torch.maximum(s0, torch.minimum(y1, y2))
            tf = torch.minimum(s1, torch.maximum(y1, y2))
            hit = (disc >= 0) & (tn <= tf) & (tn > T_EPS)
        _merge(rect, hit, tn, t_best, obj)
    return t_best, obj.long()


def room_frame(obj: Tensor, P: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Normals (planes [3,h,w]) and face axis of the room's faces at object ids obj [h,w], from
    per-id tables (id = 2 * axis + upper; an upper face's normal points to -axis). Primitives'
    pixels get 0 and -1 here: :func:`object_frame` gives theirs."""
    ids = obj.reshape(-1)
    planes = torch.empty(3, ids.shape[0], dtype=P["id_normal0"].dtype, device=obj.device)
    for j in range(3):
        torch.index_select(P[f"id_normal{j}"], 0, ids, out=planes[j])
    return planes.view(3, *obj.shape), P["id_face_axis"].index_select(0, ids).view(obj.shape)


def object_frame(kind: str, k: int, x: list[Tensor], P: dict[str, Tensor]
                 ) -> tuple[list[Tensor], list[Tensor], Tensor | int]:
    """At points x (three [m] planes) on primitive k of group ``kind`` ("box", "sph", "cyl"):
    the outward world normal and the object-local texture coordinates (three planes each), and
    the local face axis ([m], or -1 for a sphere). The reference's ``_surface_frame`` formulas.

    Planar faces report which local axis is their normal, so patterns can ignore it."""
    c = P[f"{kind}_c"][k].tolist()
    q = [x[j] - c[j] for j in range(3)]
    if kind == "box":
        R = P["box_R"][k].tolist()
        h = P["box_h"][k].tolist()
        # Local coordinates q R, summed left to right as the reference's batched product does.
        ql = [q[0] * R[0][j] + q[1] * R[1][j] + q[2] * R[2][j] for j in range(3)]
        a = [ql[j].abs() / h[j] for j in range(3)]
        # argmax, the first axis winning ties
        c1 = a[1] > a[0]
        c2 = a[2] > torch.maximum(a[0], a[1])
        fa = c1.long().masked_fill_(c2, 2)
        s = torch.where(c2, ql[2], torch.where(c1, ql[1], ql[0])).sign()
        s = s.masked_fill_(s == 0, 1.0)
        nl = [(fa == j).float().mul_(s) for j in range(3)]
        n = [R[j][0] * nl[0] + R[j][1] * nl[1] + R[j][2] * nl[2] for j in range(3)]
        return n, ql, fa
    if kind == "sph":
        norm = (q[0] * q[0] + q[1] * q[1] + q[2] * q[2]).sqrt().clamp_min(1e-12)
        return [qj / norm for qj in q], q, -1
    rn = (q[0] * q[0] + q[2] * q[2]).sqrt()
    r, hy = float(P["cyl_r"][k]), float(P["cyl_hy"][k])
    cap = (q[1].abs() / hy) > (rn / r)
    rnc = rn.clamp_min(1e-12)
    side = (~cap).float()
    ny = torch.where(q[1] >= 0, 1.0, -1.0).mul_(cap)
    n = [(q[0] / rnc).mul_(side), ny, (q[2] / rnc).mul_(side)]
    return n, q, cap.long().mul_(2).sub_(1)


@dataclass(frozen=True)
class Group:
    """The pixels of one surface: its rectangle (kind, index, object id) and the flat indices of
    its pixels in the band (None when it covers all of them)."""

    rect: Rect
    idx: Tensor | None

    def pick(self, a: Tensor) -> Tensor:
        """The group's entries of a flat [N] tensor."""
        return a if self.idx is None else a.index_select(0, self.idx)

    def put(self, a: Tensor, values: Tensor) -> None:
        """Write the group's entries of a flat [N] tensor, in place."""
        if self.idx is None:
            a.copy_(values)
        else:
            a.index_copy_(0, self.idx, values)


def pixel_groups(obj: Tensor, rects: list[Rect]) -> list[Group]:
    """The pixels of each surface present in obj [h,w], found inside its rectangle."""
    H, W = obj.shape
    # Flat pixel indices, masked per rectangle (cheaper than nonzero's row and column pairs).
    flat = torch.arange(H * W, device=obj.device).view(H, W)
    groups = []
    for rect in rects:
        idx = rect.view(flat).masked_select(rect.view(obj) == rect.oid)
        if idx.shape[0] == H * W:
            groups.append(Group(rect, None))
        elif idx.shape[0]:
            groups.append(Group(rect, idx))
    return groups


@dataclass
class Surface:
    """What shading needs of one group's pixels: their points x, texture coordinates tc and
    normals (three [m] planes each; tc is x and the normal None on a room face, whose normal
    is constant) and face axis ([m], or an int for all of them)."""

    group: Group
    x: list[Tensor]
    tc: list[Tensor]
    normal: list[Tensor] | None
    face_axis: Tensor | int


def surfaces(x: list[Tensor], obj: Tensor, n: list[Tensor], face_axis: Tensor, P: dict[str, Tensor],
             rects: list[Rect]) -> list[Surface]:
    """Group the hit points x (three [h,w] planes) by surface and complete the normal and
    face-axis planes (from :func:`room_frame`) with the primitives' own, in place."""
    flat = [c.reshape(-1) for c in x]
    groups = pixel_groups(obj, rects)
    covered = sum(flat[0].shape[0] if g.idx is None else g.idx.shape[0] for g in groups)
    if covered != flat[0].shape[0]:  # every pixel's surface must lie in that surface's rectangle
        raise RuntimeError(f"screen rectangles missed {flat[0].shape[0] - covered} pixels: culling is not conservative")
    out = []
    for g in groups:
        xs = [g.pick(c) for c in flat]
        kind = g.rect.kind
        if kind == "room":
            out.append(Surface(g, xs, xs, None, g.rect.oid // 2))
            continue
        normal, tc, fa = object_frame(kind, g.rect.index, xs, P)
        for j in range(3):
            g.put(n[j].view(-1), normal[j])
        if isinstance(fa, Tensor):
            g.put(face_axis.view(-1), fa)
        out.append(Surface(g, xs, tc, normal, fa))
    return out
