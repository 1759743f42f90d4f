"""An analytic, ray-cast 3D world: the offline demo, the test oracle and the benchmark's truth.

A closed room (every ray hits something, so depth is always finite and > 0) holds a dozen
textured boxes, spheres and cylinders. Everything is analytic: rendering is a vectorized ray
cast in torch, depth is exact, and :meth:`ProceduralWorld.distance_to_surface` is an exact
unsigned distance (signed distance functions of the primitives), for accuracy metrics.

Frames and units follow :mod:`dreamer.cameras`: the world frame is the OpenCV frame of the
default first camera (at the origin, looking +z), so world up is -y; the floor is the plane
``y = +1.5`` and the ceiling ``y = -2``. Units are metres.

Two properties matter to the code that uses this world:

* Colours are view-independent: Lambert shading with fixed lights and no specular term, so
  every camera that sees a point sees the same colour (up to the band limit below). The dream
  loop's multi-view consistency is measured against that.
* Textures are solid (a function of 3D position) and band-limited by the pixel footprint.
  Octaves of value noise span wavelengths from 2 m down to about 0.1 mm; an octave whose
  wavelength is below about two footprints (footprint = z-depth / focal, stretched on oblique
  surfaces) fades to its mean. A render is not aliased, and a zoomed-in camera (longer focal
  length) really shows finer octaves that a wide view does not have: zoom can be tested
  against ground truth.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from dreamer.cameras import DEFAULT_FOCAL_512, Camera, camera_rays

__all__ = ["ProceduralWorld", "WorldRender"]

# Room bounds (metres, world frame). The default first camera is at the origin looking +z; world
# up is -y, so the floor is the larger y.
_ROOM_LO = (-4.0, -2.0, -4.0)
_ROOM_HI = (4.0, 1.5, 6.0)
_FLOOR_Y = _ROOM_HI[1]

# Room faces are object ids 0..5: id = 2 * axis + (1 if the face is at the upper bound).
_ROOM_FACE_NAMES = ("wall_left", "wall_right", "ceiling", "floor", "wall_back", "wall_front")

# Value-noise octaves: wavelengths 2 m, 1 m, ... down to 2 m / 2^14 (about 0.12 mm). Octaves
# that no pixel resolves are skipped, so the fine ones cost nothing in a wide view. (float32
# positions a few metres from the origin are exact to about 1 um: fine for 0.1 mm wavelengths.)
_OCTAVE_WAVELENGTHS = tuple(2.0 * 0.5**k for k in range(15))
# Amplitude of octave k relative to the material's noise amplitude. 1: every octave has the same
# contrast, as natural images have roughly equal energy per octave, so a deep zoom keeps finding
# texture at every level.
_OCTAVE_PERSISTENCE = 1.0
# An octave (or a pattern period) fades out between these many pixel footprints per wavelength:
# gone below 2 (the Nyquist limit), full strength above 4.
_FADE_LO, _FADE_HI = 2.0, 4.0
# Oblique surfaces stretch the footprint by 1 / |cos(incidence)|, capped so that grazing floors
# keep some texture.
_MAX_OBLIQUITY = 4.0

# Lights (directions towards the light, world frame; -y is up). Lambert only: view-independent.
_KEY_DIR = (-0.35, -0.85, -0.40)
_FILL_DIR = (0.45, 0.30, 0.85)
_AMBIENT, _KEY, _FILL = 0.38, 0.55, 0.18

# Noise lattice hash: a permutation table (power of two) and a value per entry.
_PERM_SIZE = 1024

# Rays are processed in chunks to bound memory (supersampled 512x512 renders are millions of rays).
_CHUNK = 1 << 16
# Ray hits closer than this are ignored (rays start inside the room, never on a surface).
_T_EPS = 1e-6


@dataclass(frozen=True, eq=False)
class WorldRender:
    """What a camera sees of the world.

    * ``image`` [H,W,3] float32 in [0,1]: the shaded colour (averaged over sub-pixels when
      supersampled).
    * ``depth`` [H,W] float32: z-depth (along the camera's +z, not the ray length) of the surface
      hit by the ray through each pixel centre; finite and > 0 everywhere.
    * ``normal`` [H,W,3] float32: unit world-space normal of that surface, pointing out of the
      solid (towards the free space the camera is in).
    * ``object_id`` [H,W] int64: which surface was hit (see :attr:`ProceduralWorld.object_names`).
    """

    image: Tensor
    depth: Tensor
    normal: Tensor
    object_id: Tensor


@dataclass(frozen=True)
class _Material:
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


@dataclass(frozen=True)
class _Object:
    """One primitive. ``kind``: ``box`` (centre, half sizes, yaw about the world y axis),
    ``sphere`` (centre, radius) or ``cylinder`` (vertical axis: centre, radius, half height)."""

    name: str
    kind: str
    center: tuple[float, float, float]
    size: tuple[float, float, float]  # box: half sizes; sphere: (r, r, r); cylinder: (r, half height, r)
    yaw_deg: float
    material: _Material


def _smoothstep(e0: float, e1: float, x: Tensor) -> Tensor:
    t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _fade(wavelength_in_footprints: Tensor) -> Tensor:
    """Weight of a feature of wavelength L given L / footprint: 0 below 2, 1 above 4."""
    return _smoothstep(_FADE_LO, _FADE_HI, wavelength_in_footprints)


def _yaw_matrix(deg: float) -> np.ndarray:
    """Rotation about the world y axis (local -> world)."""
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    return tuple(float(c) for c in colorsys.hsv_to_rgb(h % 1.0, s, v))  # type: ignore[return-value]


class ProceduralWorld:
    """A seeded room with textured boxes, spheres and cylinders, ray-cast analytically.

    The room spans x in [-4, 4] (8 m wide), y in [-2, 1.5] (floor at +1.5; up is -y) and
    z in [-4, 6] (10 m deep). Objects stand in front (a central sphere on a pedestal about 3 m
    ahead, the orbit centre :attr:`center`), to the sides and behind, so yaw sweeps, pitch,
    full turns, a forward dolly of 1.5 m and lateral / backward moves of 1 m all see varied
    content. A ball of radius 1.1 m around the origin, and the dolly path to z = 1.5, stay free.

    ``seed`` changes the layout (positions, sizes, rotations, colours, patterns, noise); the same
    seed always gives the same world. Cameras must be inside the room.
    """

    def __init__(self, seed: int = 0) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        self._seed = int(seed)
        rng = np.random.default_rng(self._seed)
        self._objects = self._build_layout(rng)
        self._room_materials = self._build_room_materials(rng)
        self._pack(rng)
        self._device_cache: dict[torch.device, dict[str, Tensor]] = {}

    # -- public properties -------------------------------------------------------------------
    @property
    def seed(self) -> int:
        return self._seed

    @property
    def bounds(self) -> tuple[Tensor, Tensor]:
        """The room's axis-aligned bounds (lo [3], hi [3]) in metres."""
        return torch.tensor(_ROOM_LO), torch.tensor(_ROOM_HI)

    @property
    def extent(self) -> float:
        """The diagonal of the room's bounding box (metres): a length scale for metrics."""
        return float(math.dist(_ROOM_LO, _ROOM_HI))

    @property
    def center(self) -> Tensor:
        """The centre [3] of the central object about 3 m ahead: a natural orbit centre."""
        return self._center.clone()

    @property
    def object_names(self) -> list[str]:
        """Name per object id: ids 0..5 are the room's faces, then one id per primitive."""
        return list(_ROOM_FACE_NAMES) + [o.name for o in self._objects]

    def first_camera(self, width: int = 512, height: int = 512, device: torch.device | str | None = None) -> Camera:
        """The default first camera: at the origin, looking +z, focal 582.69 * width / 512 px,
        square pixels, centred principal point."""
        cam = Camera.from_focal(DEFAULT_FOCAL_512 * width / 512.0, width, height)
        return cam if device is None else cam.to(device)

    # -- layout ---------------------------------------------------------------------------------
    @staticmethod
    def _random_material(rng: np.random.Generator) -> _Material:
        h = rng.uniform()
        base = _hsv(h, rng.uniform(0.35, 0.75), rng.uniform(0.55, 0.9))
        alt = _hsv(h + rng.uniform(0.08, 0.5), rng.uniform(0.2, 0.7), rng.uniform(0.3, 0.75))
        pattern = ("checker", "stripes", "tiles", "plain")[int(rng.integers(4))]
        p = float(rng.uniform(0.08, 0.3))
        return _Material(
            base=base, alt=alt, pattern=pattern, period=(p, p, p), axis=int(rng.integers(3)),
            grout=0.12 * p, stagger=0.5 if rng.uniform() < 0.5 else 0.0,
            jitter=float(rng.uniform(0.0, 0.12)), noise=float(rng.uniform(0.07, 0.1)),
        )

    def _build_layout(self, rng: np.random.Generator) -> list[_Object]:
        """Jittered slots around the room, redrawn until the camera space is free."""
        for _ in range(100):
            objects = self._draw_layout(rng)
            if self._camera_space_is_free(objects):
                return objects
        raise RuntimeError(f"could not place objects away from the camera space for seed {self._seed}")

    def _draw_layout(self, rng: np.random.Generator) -> list[_Object]:
        objs: list[_Object] = []
        u = rng.uniform

        def jit(v: float, a: float = 0.25) -> float:
            return v + float(u(-a, a))

        def scale() -> float:
            return float(u(0.85, 1.15))

        def add(name: str, kind: str, center, size, yaw: float = 0.0) -> None:
            objs.append(_Object(name, kind, tuple(float(c) for c in center), tuple(float(s) for s in size),
                                float(yaw), self._random_material(rng)))

        # Centre: a sphere on a pedestal about 3 m ahead (the orbit centre).
        px, pz = jit(0.0, 0.15), jit(3.0, 0.2)
        ph = 0.35 * scale()
        add("pedestal", "box", (px, _FLOOR_Y - ph, pz), (0.45 * scale(), ph, 0.45 * scale()), u(-25, 25))
        r = 0.45 * scale()
        add("center_sphere", "sphere", (px, _FLOOR_Y - 2 * ph - r, pz), (r, r, r))
        # Front left: a tall cabinet; front right: a big ball; a floor-to-ceiling column between.
        h = 1.0 * scale()
        add("cabinet", "box", (jit(-2.3), _FLOOR_Y - h, jit(4.3)), (0.5 * scale(), h, 0.4 * scale()), u(-30, 30))
        r = 0.6 * scale()
        add("ball", "sphere", (jit(1.9, 0.2), _FLOOR_Y - r, jit(4.2, 0.2)), (r, r, r))
        hc = 0.5 * (_ROOM_HI[1] - _ROOM_LO[1])
        rc = 0.25 * scale()
        add("column", "cylinder", (jit(1.15, 0.1), _FLOOR_Y - hc, jit(2.5, 0.15)), (rc, hc, rc))
        # A floating cube high on the front left (seen when turning left and up), a lamp under the ceiling ahead (seen when pitching up).
        c = 0.3 * scale()
        add("floating_cube", "box", (jit(-2.3, 0.2), jit(-1.2, 0.1), jit(2.4, 0.2)), (c, c, c), u(0, 90))
        r = 0.28 * scale()
        add("lamp", "sphere", (jit(0.5, 0.2), _ROOM_LO[1] + 0.1 + r, jit(3.3, 0.2)), (r, r, r))
        # Left side: a chest against the wall. Right side: a low bench with a ball on it.
        h = 0.6 * scale()
        add("chest", "box", (jit(-3.3, 0.15), _FLOOR_Y - h, jit(0.5)), (0.5 * scale(), h, 0.9 * scale()), u(-10, 10))
        bh = 0.4 * scale()
        bx, bz = jit(3.2, 0.15), jit(0.0)
        add("bench", "box", (bx, _FLOOR_Y - bh, bz), (0.6 * scale(), bh, 1.2 * scale()), u(-10, 10))
        r = 0.33 * scale()
        add("bench_ball", "sphere", (bx - 0.1, _FLOOR_Y - 2 * bh - r, bz + 0.5), (r, r, r))
        # High on the side and back walls (seen when pitching up after a turn): a shelf, a wall
        # cabinet and a wall lamp.
        add("shelf", "box", (_ROOM_LO[0] + 0.2, jit(-0.9, 0.15), jit(-0.6, 0.3)), (0.2, 0.12 * scale(), 0.8 * scale()))
        add("wall_cabinet", "box", (_ROOM_HI[0] - 0.25, jit(-1.1, 0.15), jit(1.6, 0.3)),
            (0.25, 0.35 * scale(), 0.5 * scale()))
        r = 0.3 * scale()
        add("wall_lamp", "sphere", (jit(-0.3, 0.3), jit(-1.2, 0.15), _ROOM_LO[2] + r + 0.05), (r, r, r))
        # Behind: a big ball, a crate and a drum.
        r = 0.7 * scale()
        add("rear_ball", "sphere", (jit(-1.4, 0.2), _FLOOR_Y - r, jit(-3.0, 0.2)), (r, r, r))
        h = 0.8 * scale()
        add("crate", "box", (jit(1.6, 0.2), _FLOOR_Y - h, jit(-3.0)), (0.7 * scale(), h, 0.5 * scale()), u(-35, 35))
        hd, rd = 0.4 * scale(), 0.45 * scale()
        add("drum", "cylinder", (jit(0.1, 0.2), _FLOOR_Y - hd, jit(-2.1, 0.15)), (rd, hd, rd))
        return objs

    @staticmethod
    def _build_room_materials(rng: np.random.Generator) -> list[_Material]:
        """Per-face materials: tiled walls, each its own colour (so a full turn is not ambiguous),
        plank floor, panelled ceiling. Patterns use local axes; the face's normal axis is ignored."""
        mats = []
        wall_hues = rng.permutation(np.array([0.08, 0.55, 0.30, 0.95])) + rng.uniform(-0.03, 0.03, 4)
        for face in range(6):
            axis = face // 2
            if axis == 1:
                if face == 3:  # floor: wooden planks running along z, staggered ends
                    h = 0.07 + rng.uniform(-0.02, 0.02)
                    mats.append(_Material(base=_hsv(h, 0.55, 0.62), alt=_hsv(h, 0.6, 0.42), pattern="tiles",
                                          period=(0.22, 1.0, 1.3), axis=0, grout=0.012, stagger=0.37,
                                          jitter=0.12, noise=0.09))
                else:  # ceiling: large pale panels
                    mats.append(_Material(base=_hsv(0.12, 0.08, 0.92), alt=_hsv(0.12, 0.1, 0.6), pattern="tiles",
                                          period=(1.0, 1.0, 1.0), axis=0, grout=0.03, jitter=0.04, noise=0.06))
            else:
                h = float(wall_hues[[0, 1, -1, -1, 2, 3][face]])
                p = float(rng.uniform(0.35, 0.6))
                mats.append(_Material(base=_hsv(h, 0.35, 0.85), alt=_hsv(h + 0.05, 0.45, 0.55), pattern="tiles",
                                      period=(p, p * 0.5 if face % 2 else p, p), axis=1,
                                      grout=0.015, stagger=0.5 * (face % 2), jitter=0.08, noise=0.08))
        return mats

    @staticmethod
    def _object_sdf_np(objects: list[_Object], p: np.ndarray) -> np.ndarray:
        """Signed distance [N] from points [N,3] to the union of ``objects`` (numpy, layout checks)."""
        d = np.full(p.shape[0], np.inf)
        for o in objects:
            c = np.asarray(o.center)
            q = p - c
            if o.kind == "sphere":
                di = np.linalg.norm(q, axis=1) - o.size[0]
            elif o.kind == "box":
                ql = np.abs(q @ _yaw_matrix(o.yaw_deg)) - np.asarray(o.size)
                di = np.linalg.norm(np.maximum(ql, 0), axis=1) + np.minimum(ql.max(1), 0)
            else:
                w = np.stack([np.hypot(q[:, 0], q[:, 2]) - o.size[0], np.abs(q[:, 1]) - o.size[1]], 1)
                di = np.linalg.norm(np.maximum(w, 0), axis=1) + np.minimum(w.max(1), 0)
            d = np.minimum(d, di)
        return d

    def _camera_space_is_free(self, objects: list[_Object]) -> bool:
        # A 1.1 m ball around the origin; 0.6 m around the dolly path (to z = 1.5) and the 1 m
        # lateral / backward / vertical moves.
        if self._object_sdf_np(objects, np.zeros((1, 3)))[0] < 1.1:
            return False
        path = [(0.0, 0.0, z) for z in np.linspace(0.0, 1.5, 7)]
        path += [(1.0, 0, 0), (-1.0, 0, 0), (0, 0, -1.0), (0, -0.5, 0), (0, 0.5, 0)]
        return bool((self._object_sdf_np(objects, np.asarray(path)) >= 0.6).all())

    def _pack(self, rng: np.random.Generator) -> None:
        """Primitive parameters as float64 CPU tensors, grouped by kind, plus per-id materials."""
        boxes = [(i, o) for i, o in enumerate(self._objects) if o.kind == "box"]
        spheres = [(i, o) for i, o in enumerate(self._objects) if o.kind == "sphere"]
        cyls = [(i, o) for i, o in enumerate(self._objects) if o.kind == "cylinder"]
        t = lambda x: torch.tensor(np.asarray(x, dtype=np.float64).reshape(len(x), -1) if len(x) else np.zeros((0, 3)))  # noqa: E731
        self._np = {
            "box_c": t([o.center for _, o in boxes]),
            "box_h": t([o.size for _, o in boxes]),
            "box_R": torch.tensor(np.stack([_yaw_matrix(o.yaw_deg) for _, o in boxes]) if boxes else np.zeros((0, 3, 3))),
            "box_id": torch.tensor([6 + i for i, _ in boxes], dtype=torch.long),
            "sph_c": t([o.center for _, o in spheres]),
            "sph_r": torch.tensor([o.size[0] for _, o in spheres], dtype=torch.float64),
            "sph_id": torch.tensor([6 + i for i, _ in spheres], dtype=torch.long),
            "cyl_c": t([o.center for _, o in cyls]),
            "cyl_r": torch.tensor([o.size[0] for _, o in cyls], dtype=torch.float64),
            "cyl_hy": torch.tensor([o.size[1] for _, o in cyls], dtype=torch.float64),
            "cyl_id": torch.tensor([6 + i for i, _ in cyls], dtype=torch.long),
            "room_lo": torch.tensor(_ROOM_LO, dtype=torch.float64),
            "room_hi": torch.tensor(_ROOM_HI, dtype=torch.float64),
        }
        self._materials = self._room_materials + [o.material for o in self._objects]
        n_ids = len(self._materials)
        # Per id: a random offset into the noise field (different objects, different noise) and
        # the noise amplitude; a random permutation table and lattice values for value noise.
        self._np["noise_offset"] = torch.tensor(rng.uniform(0, 1000, (n_ids, 3)))
        self._np["noise_amp"] = torch.tensor([m.noise for m in self._materials], dtype=torch.float64)
        self._np["octave_offset"] = torch.tensor(rng.uniform(0, 1000, (len(_OCTAVE_WAVELENGTHS), 3)))
        self._np["perm"] = torch.tensor(rng.permutation(_PERM_SIZE), dtype=torch.long)
        self._np["lattice"] = torch.tensor(rng.uniform(-1.0, 1.0, _PERM_SIZE))
        light = lambda v: torch.tensor(v, dtype=torch.float64) / torch.tensor(v, dtype=torch.float64).norm()  # noqa: E731
        self._np["key"], self._np["fill"] = light(_KEY_DIR), light(_FILL_DIR)
        # The orbit centre: halfway up the pedestal-and-sphere stack (objects 0 and 1).
        sphere = self._objects[1]
        self._center = torch.tensor([sphere.center[0], 0.5 * (sphere.center[1] + _FLOOR_Y), sphere.center[2]],
                                    dtype=torch.float32)

    def _params(self, device: torch.device) -> dict[str, Tensor]:
        """The primitive parameters on ``device`` (float32 for floats), cached per device."""
        device = torch.device(device)
        if device not in self._device_cache:
            self._device_cache[device] = {
                k: v.to(device=device, dtype=torch.float32 if v.is_floating_point() else v.dtype)
                for k, v in self._np.items()
            }
        return self._device_cache[device]

    # -- validation -------------------------------------------------------------------------------
    def _check_camera(self, camera: Camera) -> None:
        if not isinstance(camera, Camera):
            raise TypeError(f"camera must be a dreamer.cameras.Camera, got {type(camera).__name__}")
        c = camera.center.detach().cpu().double()
        lo, hi = torch.tensor(_ROOM_LO, dtype=torch.float64), torch.tensor(_ROOM_HI, dtype=torch.float64)
        if not ((c > lo).all() and (c < hi).all()):
            raise ValueError(
                f"camera centre {tuple(round(float(v), 4) for v in c)} is outside the room "
                f"(x, y, z in {_ROOM_LO} .. {_ROOM_HI}): rays would not all hit a surface"
            )

    # -- ray casting --------------------------------------------------------------------------------
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
        m = _PERM_SIZE - 1
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
        m = _PERM_SIZE - 1
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
        for k, lam in enumerate(_OCTAVE_WAVELENGTHS):
            w = _fade(lam / fp)
            live = (w > 0).nonzero()[:, 0]
            if live.numel() == 0:
                break  # wavelengths only get shorter: no pixel resolves any further octave
            q = base[live] / lam + P["octave_offset"][k]
            v = self._value_noise(q, P)
            out.index_add_(0, live, (amp[live] * _OCTAVE_PERSISTENCE**k) * w[live] * v)
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
                sq = (torch.sin(2 * math.pi * t / per) * (per / (2 * math.pi * f))).clamp(-1, 1) * _fade(per / f)
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
                line = 1.0 - _smoothstep(0.0, 1.0, (dist - half) / f.clamp_min(1e-9) + 0.5)
                wfade = _fade(per / f)
                line = wfade * line + (1.0 - wfade) * (m.grout / per).clamp(max=1.0)
                if on_face.any():
                    line[on_face] = line[on_face].scatter(1, fa[on_face][:, None], 0.0)
                grout = line.amax(dim=1, keepdim=True)
                # Per-tile brightness from a lattice hash, faded when tiles are unresolved.
                jit = P["lattice"][self._hash3(cell.long(), P["perm"])][:, None]
                jit = jit * m.jitter * _fade(per.min() / f)
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
        fp = (t / focal) / cos_i.clamp_min(1.0 / _MAX_OBLIQUITY)
        albedo = self._albedo(tc, face_axis, obj, fp, P)
        albedo = albedo * (1.0 + self._fbm(x, obj, fp, P))[:, None]
        light = _AMBIENT + _KEY * (n @ P["key"]).clamp_min(0) + _FILL * (n @ P["fill"]).clamp_min(0)
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

    def distance_to_surface(self, xyz: Tensor) -> Tensor:
        """Unsigned distance [N] from points xyz [N,3] (world, metres) to the nearest surface:
        the room's walls, floor and ceiling, or any object. Exact (analytic SDFs), on xyz's
        device; computed in float64 when xyz is float64, else float32."""
        if not isinstance(xyz, Tensor):
            raise TypeError(f"xyz must be a torch.Tensor, got {type(xyz).__name__}")
        if xyz.ndim != 2 or xyz.shape[1] != 3:
            raise ValueError(f"xyz must have shape [N,3], got {tuple(xyz.shape)}")
        dtype = torch.float64 if xyz.dtype == torch.float64 else torch.float32
        p = xyz.to(dtype)
        P = {k: v.to(device=p.device, dtype=dtype) for k, v in self._np.items()
             if k.startswith(("room_", "box_", "sph_", "cyl_")) and v.is_floating_point()}
        # Room: the SDF of its box (negative inside), then |.|: distance to its nearest face.
        centre = 0.5 * (P["room_lo"] + P["room_hi"])
        half = 0.5 * (P["room_hi"] - P["room_lo"])
        dist = self._box_sdf(p - centre, half).abs()
        if P["box_c"].shape[0]:
            ql = torch.einsum("nbi,bij->nbj", p[:, None, :] - P["box_c"], P["box_R"])
            dist = torch.minimum(dist, self._box_sdf(ql, P["box_h"]).abs().amin(dim=1))
        if P["sph_c"].shape[0]:
            ds = (p[:, None, :] - P["sph_c"]).norm(dim=2) - P["sph_r"]
            dist = torch.minimum(dist, ds.abs().amin(dim=1))
        if P["cyl_c"].shape[0]:
            q = p[:, None, :] - P["cyl_c"]
            w = torch.stack([torch.hypot(q[..., 0], q[..., 2]) - P["cyl_r"], q[..., 1].abs() - P["cyl_hy"]], -1)
            dc = w.clamp_min(0).norm(dim=-1) + w.amax(dim=-1).clamp_max(0)
            dist = torch.minimum(dist, dc.abs().amin(dim=1))
        return dist

    @staticmethod
    def _box_sdf(q: Tensor, half: Tensor) -> Tensor:
        """Signed distance of local points q [...,3] to an axis-aligned box of half sizes [...,3]."""
        d = q.abs() - half
        return d.clamp_min(0).norm(dim=-1) + d.amax(dim=-1).clamp_max(0)

    def __repr__(self) -> str:
        return f"ProceduralWorld(seed={self._seed}, objects={len(self._objects)}, extent={self.extent:.2f} m)"
