"""An analytic, ray-cast 3D world: the offline demo, the test oracle and the benchmark's truth.

A closed room (every ray hits something, so depth is always finite and > 0) holds a dozen
textured boxes, spheres and cylinders. Everything is analytic: rendering is a vectorized ray
cast in torch, depth is exact, and :meth:`ProceduralWorld.distance_to_surface` is an exact
unsigned distance (signed distance functions of the primitives), for accuracy metrics.

Rendering runs in :mod:`dreamer.worlds.raycast` (culled ray casting), :mod:`dreamer.worlds.texture`
(patterns, light) and :mod:`dreamer.worlds.noise` (band-limited noise); the appearance model
is in :mod:`dreamer.worlds.shading`, the objects and their materials in :mod:`dreamer.worlds.layout`,
and :mod:`dreamer.worlds.reference` keeps the slow, plain renderer they are tested against.
Renders are cached per camera (:mod:`dreamer.worlds.cache`); the noise tables of whole surfaces,
which do not depend on the camera, are kept per world (:class:`dreamer.worlds.noise.NoiseTables`).

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

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from dreamer.cameras import DEFAULT_FOCAL_512, Camera
from dreamer.checks import check_int
from dreamer.worlds import noise, raycast, texture
from dreamer.worlds.cache import RenderCache, camera_key
from dreamer.worlds.layout import FLOOR_Y, ROOM_FACE_NAMES, ROOM_HI, ROOM_LO, build_layout, room_materials, yaw_matrix
from dreamer.worlds.shading import FILL_DIR, KEY_DIR, OCTAVE_WAVELENGTHS, PERM_SIZE

__all__ = ["ProceduralWorld", "WorldRender", "check_inside_room"]

# Rays are traced and shaded in bands of about this many pixels (whole image rows) to bound
# memory: supersampled 512x512 renders are millions of rays.
_BAND_PIXELS = 1 << 18
# Renders kept per world for cameras that come back (the oracle inpainter, the depth estimator
# and the ground-truth metrics all ask for the same cameras), by default.
_CACHE_BYTES = 256 << 20
# Noise tables of whole surfaces kept per world and device (see dreamer.worlds.noise.NoiseTables):
# they depend on the world only, so every camera reuses them.
_NOISE_TABLE_BYTES = 64 << 20


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


def check_inside_room(camera: Camera, name: str = "camera") -> None:
    """Raise ValueError unless ``camera``'s centre is inside the room of every procedural world
    (outside it, rays would not all hit a surface)."""
    c = camera.center.detach().cpu().double()
    lo, hi = torch.tensor(ROOM_LO, dtype=torch.float64), torch.tensor(ROOM_HI, dtype=torch.float64)
    if not ((c > lo).all() and (c < hi).all()):
        raise ValueError(
            f"{name}: its centre {tuple(round(float(v), 4) for v in c)} is outside the room "
            f"(x, y, z in {ROOM_LO} .. {ROOM_HI}): rays would not all hit a surface"
        )


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
        self._seed = check_int(seed, "seed")
        cache_bytes = check_int(cache_bytes, "cache_bytes (0: no cache)", min=0)
        rng = np.random.default_rng(self._seed)
        self._objects = build_layout(rng, self._seed)
        self._room_materials = room_materials(rng)
        self._pack(rng)
        self._device_cache: dict[torch.device, dict[str, Tensor]] = {}
        self._noise_tables: dict[torch.device, noise.NoiseTables] = {}
        self._cache = RenderCache(int(cache_bytes))

    # -- public properties -------------------------------------------------------------------
    @property
    def seed(self) -> int:
        return self._seed

    @property
    def bounds(self) -> tuple[Tensor, Tensor]:
        """The room's axis-aligned bounds (lo [3], hi [3]) in metres."""
        return torch.tensor(ROOM_LO), torch.tensor(ROOM_HI)

    @property
    def extent(self) -> float:
        """The diagonal of the room's bounding box (metres): a length scale for metrics."""
        return float(math.dist(ROOM_LO, ROOM_HI))

    @property
    def center(self) -> Tensor:
        """The centre [3] of the central object about 3 m ahead: a natural orbit centre."""
        return self._center.clone()

    @property
    def object_names(self) -> list[str]:
        """Name per object id: ids 0..5 are the room's faces, then one id per primitive."""
        return list(ROOM_FACE_NAMES) + [o.name for o in self._objects]

    def first_camera(self, width: int = 512, height: int = 512, device: torch.device | str | None = None) -> Camera:
        """The default first camera: at the origin, looking +z, focal 582.69 * width / 512 px,
        square pixels, centred principal point."""
        cam = Camera.from_focal(DEFAULT_FOCAL_512 * width / 512.0, width, height)
        return cam if device is None else cam.to(device)

    # -- layout ---------------------------------------------------------------------------------
    def _pack(self, rng: np.random.Generator) -> None:
        """Primitive parameters as float64 CPU tensors, grouped by kind, plus per-id materials."""
        boxes = [(i, o) for i, o in enumerate(self._objects) if o.kind == "box"]
        spheres = [(i, o) for i, o in enumerate(self._objects) if o.kind == "sphere"]
        cyls = [(i, o) for i, o in enumerate(self._objects) if o.kind == "cylinder"]
        t = lambda x: torch.tensor(np.asarray(x, dtype=np.float64).reshape(len(x), -1) if len(x) else np.zeros((0, 3)))  # noqa: E731
        self._np = {
            "box_c": t([o.center for _, o in boxes]),
            "box_h": t([o.size for _, o in boxes]),
            "box_R": torch.tensor(np.stack([yaw_matrix(o.yaw_deg) for _, o in boxes]) if boxes
                                  else np.zeros((0, 3, 3))),
            "box_id": torch.tensor([6 + i for i, _ in boxes], dtype=torch.long),
            "sph_c": t([o.center for _, o in spheres]),
            "sph_r": torch.tensor([o.size[0] for _, o in spheres], dtype=torch.float64),
            "sph_id": torch.tensor([6 + i for i, _ in spheres], dtype=torch.long),
            "cyl_c": t([o.center for _, o in cyls]),
            "cyl_r": torch.tensor([o.size[0] for _, o in cyls], dtype=torch.float64),
            "cyl_hy": torch.tensor([o.size[1] for _, o in cyls], dtype=torch.float64),
            "cyl_id": torch.tensor([6 + i for i, _ in cyls], dtype=torch.long),
            "room_lo": torch.tensor(ROOM_LO, dtype=torch.float64),
            "room_hi": torch.tensor(ROOM_HI, dtype=torch.float64),
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
        self._np["id_lo"], self._np["id_hi"] = self._id_bounds()
        # Derived tables for the fast renderer (no random draws: the layout stays the seed's).
        self._np.update(noise.noise_tables(self._np["perm"].numpy(), self._np["lattice"].numpy()))
        light = lambda v: torch.tensor(v, dtype=torch.float64) / torch.tensor(v, dtype=torch.float64).norm()  # noqa: E731
        self._np["key"], self._np["fill"] = light(KEY_DIR), light(FILL_DIR)
        # The orbit centre: halfway up the pedestal-and-sphere stack (objects 0 and 1).
        sphere = self._objects[1]
        self._center = torch.tensor([sphere.center[0], 0.5 * (sphere.center[1] + FLOOR_Y), sphere.center[2]],
                                    dtype=torch.float32)

    def _id_bounds(self) -> tuple[Tensor, Tensor]:
        """Per id, the axis-aligned bounds (lo [n_ids,3], hi [n_ids,3], float64) of its surface:
        a room face's rectangle, a primitive's bounding box."""
        lo, hi = [], []
        for face in range(6):
            axis, upper = divmod(face, 2)
            a, b = list(ROOM_LO), list(ROOM_HI)
            a[axis] = b[axis] = (ROOM_HI if upper else ROOM_LO)[axis]
            lo.append(a)
            hi.append(b)
        for o in self._objects:
            c, h = np.asarray(o.center), np.asarray(o.size)
            if o.kind == "box":
                h = np.abs(yaw_matrix(o.yaw_deg)) @ h
            lo.append(c - h)
            hi.append(c + h)
        return torch.tensor(np.asarray(lo, dtype=np.float64)), torch.tensor(np.asarray(hi, dtype=np.float64))

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
            self._noise_tables[device] = noise.NoiseTables(_NOISE_TABLE_BYTES)
        return self._device_cache[device]

    # -- validation -------------------------------------------------------------------------------
    def _check_camera(self, camera: Camera) -> None:
        if not isinstance(camera, Camera):
            raise TypeError(f"camera must be a dreamer.cameras.Camera, got {type(camera).__name__}")
        check_inside_room(camera)

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
        check_int(supersample, "supersample", min=1)
        key = camera_key(camera)
        cached = self._cache.get(("render", key, supersample))
        if cached is None:
            with torch.inference_mode():  # no autograd bookkeeping; callers get normal copies
                cached = self._render(camera, supersample)
            self._cache.put(("render", key, supersample), cached)
            self._cache.put(("depth", key), cached.depth)
        # The cache keeps colour and normals as planes: interleaving them is the caller's copy.
        return WorldRender(image=_interleave(cached.image), depth=cached.depth.clone(),
                           normal=_interleave(cached.normal), object_id=cached.object_id.clone())

    def depth(self, camera: Camera) -> Tensor:
        """z-depth [H,W] (float32, > 0) of the surface through each pixel centre; no shading.
        Taken from the cache when this camera was rendered or asked for before."""
        self._check_camera(camera)
        key = camera_key(camera)
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

    def _render(self, camera: Camera, s: int) -> _PlanarRender:
        P = self._params(camera.device)
        focal = min(camera.fx, camera.fy)
        if s == 1:
            image, depth, normal, obj = self._trace_and_shade(camera, focal, P, colour=True)
        else:
            _, depth, normal, obj = self._trace_and_shade(camera, focal, P, colour=False)
            H, W = camera.height, camera.width
            fine = self._trace_and_shade(camera.resized(W * s, H * s), focal * s, P, colour=True)[0]
            image = fine.reshape(3, H, s, W, s).mean(dim=(2, 4))
        return _PlanarRender(image=image, depth=depth, normal=normal, object_id=obj)

    def _trace_and_shade(self, camera: Camera, focal: float, P: dict[str, Tensor], *,
                         colour: bool) -> tuple[Tensor | None, Tensor, Tensor, Tensor]:
        """Image planes [3,H,W] (None unless ``colour``), depth [H,W], normal planes [3,H,W], id
        [H,W] of the rays through the pixel centres of ``camera``, in bands of whole rows;
        ``focal`` (px) sets the footprint."""
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
            normal, face_axis = raycast.room_frame(obj, P)
            n = list(normal)
            parts = raycast.surfaces(x, obj, n, face_axis, P, band)  # completes the normals in place
            depths.append(t)
            objs.append(obj)
            normals.append(normal)
            if colour:
                rgb = texture.shade([c.reshape(-1) for c in db], t.reshape(-1), [c.reshape(-1) for c in n], parts,
                                    focal, P, self._materials, (P["room_lo"].tolist(), P["room_hi"].tolist()),
                                    self._noise_tables[torch.device(camera.device)])
                images.append(rgb.view(3, r1 - r0, W))
        join = lambda parts, dim=0: parts[0] if len(parts) == 1 else torch.cat(parts, dim)  # noqa: E731
        return join(images, 1) if colour else None, join(depths), join(normals, 1), join(objs)

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


@dataclass(frozen=True, eq=False)
class _PlanarRender:
    """A render as the cache keeps it: ``image`` and ``normal`` as planes [3,H,W] (the
    renderer's layout), depth [H,W] and object id [H,W]."""

    image: Tensor
    depth: Tensor
    normal: Tensor
    object_id: Tensor


def _interleave(planes: Tensor) -> Tensor:
    """Planes [3,...] as one new [..., 3] tensor (column copies: faster than a permuted copy)."""
    out = torch.empty(*planes.shape[1:], 3, dtype=planes.dtype, device=planes.device)
    for c, p in enumerate(planes):
        out[..., c] = p
    return out


