"""An analytic, ray-cast 3D world: the offline demo, the test oracle and the benchmark's truth.

A closed room (every ray hits something, so depth is always finite and > 0) holds a dozen
textured boxes, spheres and cylinders. Everything is analytic: rendering is a vectorized ray
cast in torch, depth is exact, and :meth:`ProceduralWorld.distance_to_surface` is an exact
unsigned distance (signed distance functions of the primitives), for accuracy metrics.

Rendering runs in :mod:`dreamer.worlds.raycast` (culled ray casting), :mod:`dreamer.worlds.texture`
(patterns, light) and :mod:`dreamer.worlds.noise` (band-limited noise); the appearance model
is in :mod:`dreamer.worlds.shading`, and :mod:`dreamer.worlds.reference` keeps the slow,
plain renderer they are tested against. Renders are cached per camera.

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
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from dreamer.cameras import DEFAULT_FOCAL_512, Camera
from dreamer.worlds import noise, raycast, texture
from dreamer.worlds.shading import FILL_DIR, KEY_DIR, OCTAVE_WAVELENGTHS, PERM_SIZE, Material

__all__ = ["ProceduralWorld", "WorldRender"]

# Room bounds (metres, world frame). The default first camera is at the origin looking +z; world
# up is -y, so the floor is the larger y.
_ROOM_LO = (-4.0, -2.0, -4.0)
_ROOM_HI = (4.0, 1.5, 6.0)
_FLOOR_Y = _ROOM_HI[1]

# Room faces are object ids 0..5: id = 2 * axis + (1 if the face is at the upper bound).
_ROOM_FACE_NAMES = ("wall_left", "wall_right", "ceiling", "floor", "wall_back", "wall_front")

# Rays are traced and shaded in bands of about this many pixels (whole image rows) to bound
# memory: supersampled 512x512 renders are millions of rays.
_BAND_PIXELS = 1 << 18
# Renders kept per world for cameras that come back (the oracle inpainter, the depth estimator
# and the ground-truth metrics all ask for the same cameras), by default.
_CACHE_BYTES = 256 << 20


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
class _Object:
    """One primitive. ``kind``: ``box`` (centre, half sizes, yaw about the world y axis),
    ``sphere`` (centre, radius) or ``cylinder`` (vertical axis: centre, radius, half height)."""

    name: str
    kind: str
    center: tuple[float, float, float]
    size: tuple[float, float, float]  # box: half sizes; sphere: (r, r, r); cylinder: (r, half height, r)
    yaw_deg: float
    material: Material


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

    Renders are kept for cameras that come back, up to ``cache_bytes`` (0: none): the oracle
    backends and the ground-truth metrics ask for the same cameras several times.
    """

    def __init__(self, seed: int = 0, *, cache_bytes: int = _CACHE_BYTES) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        if isinstance(cache_bytes, bool) or not isinstance(cache_bytes, (int, np.integer)) or cache_bytes < 0:
            raise ValueError(f"cache_bytes must be an int >= 0 (0: no cache), got {cache_bytes!r}")
        self._seed = int(seed)
        rng = np.random.default_rng(self._seed)
        self._objects = self._build_layout(rng)
        self._room_materials = self._build_room_materials(rng)
        self._pack(rng)
        self._device_cache: dict[torch.device, dict[str, Tensor]] = {}
        self._cache = _LRU(int(cache_bytes))

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
    def _random_material(rng: np.random.Generator) -> Material:
        h = rng.uniform()
        base = _hsv(h, rng.uniform(0.35, 0.75), rng.uniform(0.55, 0.9))
        alt = _hsv(h + rng.uniform(0.08, 0.5), rng.uniform(0.2, 0.7), rng.uniform(0.3, 0.75))
        pattern = ("checker", "stripes", "tiles", "plain")[int(rng.integers(4))]
        p = float(rng.uniform(0.08, 0.3))
        return Material(
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
        # A floating cube high on the front left (seen when turning left and up), a lamp under the
        # ceiling ahead (seen when pitching up).
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
    def _build_room_materials(rng: np.random.Generator) -> list[Material]:
        """Per-face materials: tiled walls, each its own colour (so a full turn is not ambiguous),
        plank floor, panelled ceiling. Patterns use local axes; the face's normal axis is ignored."""
        mats = []
        wall_hues = rng.permutation(np.array([0.08, 0.55, 0.30, 0.95])) + rng.uniform(-0.03, 0.03, 4)
        for face in range(6):
            axis = face // 2
            if axis == 1:
                if face == 3:  # floor: wooden planks running along z, staggered ends
                    h = 0.07 + rng.uniform(-0.02, 0.02)
                    mats.append(Material(base=_hsv(h, 0.55, 0.62), alt=_hsv(h, 0.6, 0.42), pattern="tiles",
                                          period=(0.22, 1.0, 1.3), axis=0, grout=0.012, stagger=0.37,
                                          jitter=0.12, noise=0.09))
                else:  # ceiling: large pale panels
                    mats.append(Material(base=_hsv(0.12, 0.08, 0.92), alt=_hsv(0.12, 0.1, 0.6), pattern="tiles",
                                          period=(1.0, 1.0, 1.0), axis=0, grout=0.03, jitter=0.04, noise=0.06))
            else:
                h = float(wall_hues[[0, 1, -1, -1, 2, 3][face]])
                p = float(rng.uniform(0.35, 0.6))
                mats.append(Material(base=_hsv(h, 0.35, 0.85), alt=_hsv(h + 0.05, 0.45, 0.55), pattern="tiles",
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
            "box_R": torch.tensor(np.stack([_yaw_matrix(o.yaw_deg) for _, o in boxes]) if boxes
                                  else np.zeros((0, 3, 3))),
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
        self._np["octave_offset"] = torch.tensor(rng.uniform(0, 1000, (len(OCTAVE_WAVELENGTHS), 3)))
        self._np["perm"] = torch.tensor(rng.permutation(PERM_SIZE), dtype=torch.long)
        self._np["lattice"] = torch.tensor(rng.uniform(-1.0, 1.0, PERM_SIZE))
        # Per id: the normal and face axis of the room's faces (0 and -1 for the primitives).
        normal = torch.zeros(n_ids, 3, dtype=torch.float64)
        for face in range(6):
            normal[face, face // 2] = -1.0 if face % 2 else 1.0
        for j in range(3):
            self._np[f"id_normal{j}"] = normal[:, j].clone()
        self._np["id_face_axis"] = torch.tensor([f // 2 for f in range(6)] + [-1] * (n_ids - 6), dtype=torch.long)
        # Derived tables for the fast renderer (no random draws: the layout stays the seed's).
        self._np.update(noise.noise_tables(self._np["perm"].numpy(), self._np["lattice"].numpy()))
        light = lambda v: torch.tensor(v, dtype=torch.float64) / torch.tensor(v, dtype=torch.float64).norm()  # noqa: E731
        self._np["key"], self._np["fill"] = light(KEY_DIR), light(FILL_DIR)
        # The orbit centre: halfway up the pedestal-and-sphere stack (objects 0 and 1).
        sphere = self._objects[1]
        self._center = torch.tensor([sphere.center[0], 0.5 * (sphere.center[1] + _FLOOR_Y), sphere.center[2]],
                                    dtype=torch.float32)

    def _params(self, device: torch.device) -> dict[str, Tensor]:
        """The primitive parameters on ``device`` (float32 for floats), cached per device."""
        device = torch.device(device)
        if device not in self._device_cache:
            P = {k: v.to(device=device, dtype=torch.float32 if v.is_floating_point() else v.dtype)
                 for k, v in self._np.items()}
            # CPU copies of what the noise builds its small tables from (in numpy).
            for k in ("noise_hxy", "noise_value", "octave_offset"):
                P[f"{k}_cpu"] = P[k].cpu()
            self._device_cache[device] = P
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

    # -- rendering ----------------------------------------------------------------------------------
    def render(self, camera: Camera, *, supersample: int = 1) -> WorldRender:
        """Ray-cast the world into ``camera``.

        Returns image [H,W,3], z-depth [H,W], normal [H,W,3] and object id [H,W] on the
        camera's device (float32). With ``supersample = s`` the image is the mean of an s x s
        grid of sub-pixel rays, each band-limited to its sub-pixel footprint: exactly the box
        downsample of a render at s times the resolution (the zoom stack's reduce operator).
        Depth, normal and id always come from the ray through the pixel centre.

        Renders are cached per exact camera (K, c2w, size, device) and ``supersample``; each
        call returns its own copy, so callers may modify it.
        """
        self._check_camera(camera)
        if isinstance(supersample, bool) or not isinstance(supersample, int) or supersample < 1:
            raise ValueError(f"supersample must be a positive int, got {supersample!r}")
        key = _camera_key(camera)
        cached = self._cache.get(("render", key, supersample))
        if cached is None:
            with torch.inference_mode():  # no autograd bookkeeping; callers get normal copies
                cached = self._render(camera, supersample)
            self._cache.put(("render", key, supersample), cached)
            self._cache.put(("depth", key), cached.depth)
        return WorldRender(*(t.clone() for t in (cached.image, cached.depth, cached.normal, cached.object_id)))

    def depth(self, camera: Camera) -> Tensor:
        """z-depth [H,W] (float32, > 0) of the surface through each pixel centre; no shading.
        Taken from the cache when this camera was rendered or asked for before."""
        self._check_camera(camera)
        key = _camera_key(camera)
        depth = self._cache.get(("depth", key))
        if depth is None:
            P = self._params(camera.device)
            with torch.inference_mode():
                o, d = raycast.planar_rays(camera)
                depth = raycast.trace(o, d, P, raycast.screen_rects(camera, self._np))[0]
            self._cache.put(("depth", key), depth)
        return depth.clone()

    def clear_cache(self) -> None:
        """Forget cached renders (benchmarks time uncached renders this way)."""
        self._cache.clear()

    def cache_info(self) -> dict[str, int]:
        """Lookups answered from the render cache (``hits``) or not (``misses``), and what it
        holds (``entries``, ``bytes``)."""
        return self._cache.info()

    def _render(self, camera: Camera, s: int) -> WorldRender:
        P = self._params(camera.device)
        focal = min(camera.fx, camera.fy)
        if s == 1:
            image, depth, normal, obj = self._trace_and_shade(camera, focal, P, colour=True)
        else:
            _, depth, normal, obj = self._trace_and_shade(camera, focal, P, colour=False)
            H, W = camera.height, camera.width
            fine = self._trace_and_shade(camera.resized(W * s, H * s), focal * s, P, colour=True)[0]
            image = fine.reshape(H, s, W, s, 3).mean(dim=(1, 3))
        return WorldRender(image=image, depth=depth, normal=normal, object_id=obj)

    def _trace_and_shade(self, camera: Camera, focal: float, P: dict[str, Tensor], *,
                         colour: bool) -> tuple[Tensor | None, Tensor, Tensor, Tensor]:
        """Image [H,W,3] (None unless ``colour``), depth [H,W], normal [H,W,3], id [H,W] of the
        rays through the pixel centres of ``camera``, in bands of whole rows; ``focal`` (px) sets
        the footprint."""
        H, W = camera.height, camera.width
        o, d = raycast.planar_rays(camera)
        rects = raycast.screen_rects(camera, self._np)
        rows = max(1, _BAND_PIXELS // W)
        images, depths, normals, objs = [], [], [], []
        for r0 in range(0, H, rows):
            r1 = min(H, r0 + rows)
            band = [r for r in (rect.rows(r0, r1) for rect in rects) if r is not None]
            db = tuple(dj[r0:r1] for dj in d)
            t, obj = raycast.trace(o, db, P, band)
            x = [float(o[j]) + t * db[j] for j in range(3)]
            n, face_axis = raycast.room_frame(obj, P)
            parts = raycast.surfaces(x, obj, n, face_axis, P, band)
            depths.append(t)
            objs.append(obj)
            normals.append(_interleave(n))
            if colour:
                rgb = texture.shade([c.reshape(-1) for c in db], t.reshape(-1), [c.reshape(-1) for c in n], parts,
                                    focal, P, self._materials, (P["room_lo"].tolist(), P["room_hi"].tolist()))
                images.append(_interleave([c.view(r1 - r0, W) for c in rgb]))
        join = lambda parts: parts[0] if len(parts) == 1 else torch.cat(parts)  # noqa: E731
        return join(images) if colour else None, join(depths), join(normals), join(objs)
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


def _interleave(planes: list[Tensor]) -> Tensor:
    """Three planes of one shape [...] as one [..., 3] tensor (column copies: faster than stack)."""
    out = torch.empty(*planes[0].shape, 3, dtype=planes[0].dtype, device=planes[0].device)
    for c, p in enumerate(planes):
        out[..., c] = p
    return out


def _camera_key(camera: Camera) -> tuple:
    """Exact identity of a camera's rays: intrinsics, pose, size and device."""
    return (camera.K.detach().cpu().numpy().tobytes(), camera.c2w.detach().cpu().numpy().tobytes(),
            camera.width, camera.height, str(camera.device))


class _LRU:
    """A thread-safe least-recently-used map from keys to tensors (or tuples of tensors), bounded
    by the bytes of the tensors it holds."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict = OrderedDict()
        self._bytes = 0
        self._hits = self._misses = 0
        self._lock = threading.Lock()

    @staticmethod
    def _size(value) -> int:
        tensors = [value] if isinstance(value, Tensor) else [getattr(value, f) for f in value.__dataclass_fields__]
        return sum(t.numel() * t.element_size() for t in tensors)

    def get(self, key):
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self._misses += 1
            else:
                self._hits += 1
                self._items.move_to_end(key)
            return value

    def put(self, key, value) -> None:
        size = self._size(value)
        with self._lock:
            if key in self._items:
                self._bytes -= self._size(self._items.pop(key))
            if size > self.max_bytes:
                return
            self._items[key] = value
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= self._size(old)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def info(self) -> dict[str, int]:
        with self._lock:
            return {"hits": self._hits, "misses": self._misses, "entries": len(self._items), "bytes": self._bytes}
