"""The procedural world's layout: which objects stand where, and the materials they wear.

Everything here is drawn from one ``numpy`` generator in a fixed order, so a seed always gives
the same room (:class:`dreamer.worlds.procedural.ProceduralWorld` draws its noise tables from the
same generator afterwards). Frames and units: see :mod:`dreamer.worlds.procedural`.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np

from dreamer.worlds.shading import Material

__all__ = ["SceneObject", "build_layout", "room_materials", "objects_sdf", "yaw_matrix", "hsv",
           "ROOM_LO", "ROOM_HI", "FLOOR_Y", "ROOM_FACE_NAMES"]

# Room bounds (metres, world frame). The default first camera is at the origin looking +z; world
# up is -y, so the floor is the larger y.
ROOM_LO = (-4.0, -2.0, -4.0)
ROOM_HI = (4.0, 1.5, 6.0)
FLOOR_Y = ROOM_HI[1]

# Room faces are object ids 0..5: id = 2 * axis + (1 if the face is at the upper bound).
ROOM_FACE_NAMES = ("wall_left", "wall_right", "ceiling", "floor", "wall_back", "wall_front")


@dataclass(frozen=True)
class SceneObject:
    """One primitive. ``kind``: ``box`` (centre, half sizes, yaw about the world y axis),
    ``sphere`` (centre, radius) or ``cylinder`` (vertical axis: centre, radius, half height)."""

    name: str
    kind: str
    center: tuple[float, float, float]
    size: tuple[float, float, float]  # box: half sizes; sphere: (r, r, r); cylinder: (r, half height, r)
    yaw_deg: float
    material: Material


def yaw_matrix(deg: float) -> np.ndarray:
    """Rotation about the world y axis (local -> world)."""
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    return tuple(float(c) for c in colorsys.hsv_to_rgb(h % 1.0, s, v))  # type: ignore[return-value]




def random_material(rng: np.random.Generator) -> Material:
    h = rng.uniform()
    base = hsv(h, rng.uniform(0.35, 0.75), rng.uniform(0.55, 0.9))
    alt = hsv(h + rng.uniform(0.08, 0.5), rng.uniform(0.2, 0.7), rng.uniform(0.3, 0.75))
    pattern = ("checker", "stripes", "tiles", "plain")[int(rng.integers(4))]
    p = float(rng.uniform(0.08, 0.3))
    return Material(
        base=base, alt=alt, pattern=pattern, period=(p, p, p), axis=int(rng.integers(3)),
        grout=0.12 * p, stagger=0.5 if rng.uniform() < 0.5 else 0.0,
        jitter=float(rng.uniform(0.0, 0.12)), noise=float(rng.uniform(0.07, 0.1)),
    )



def build_layout(rng: np.random.Generator, seed: int) -> list[SceneObject]:
    """Jittered slots around the room, redrawn until the camera space is free."""
    for _ in range(100):
        objects = _draw_layout(rng)
        if _camera_space_is_free(objects):
            return objects
    raise RuntimeError(f"could not place objects away from the camera space for seed {seed}")

def _draw_layout(rng: np.random.Generator) -> list[SceneObject]:
    objs: list[SceneObject] = []
    u = rng.uniform

    def jit(v: float, a: float = 0.25) -> float:
        return v + float(u(-a, a))

    def scale() -> float:
        return float(u(0.85, 1.15))

    def add(name: str, kind: str, center, size, yaw: float = 0.0) -> None:
        objs.append(SceneObject(name, kind, tuple(float(c) for c in center), tuple(float(s) for s in size),
                            float(yaw), random_material(rng)))

    # Centre: a sphere on a pedestal about 3 m ahead (the orbit centre).
    px, pz = jit(0.0, 0.15), jit(3.0, 0.2)
    ph = 0.35 * scale()
    add("pedestal", "box", (px, FLOOR_Y - ph, pz), (0.45 * scale(), ph, 0.45 * scale()), u(-25, 25))
    r = 0.45 * scale()
    add("center_sphere", "sphere", (px, FLOOR_Y - 2 * ph - r, pz), (r, r, r))
    # Front left: a tall cabinet; front right: a big ball; a floor-to-ceiling column between.
    h = 1.0 * scale()
    add("cabinet", "box", (jit(-2.3), FLOOR_Y - h, jit(4.3)), (0.5 * scale(), h, 0.4 * scale()), u(-30, 30))
    r = 0.6 * scale()
    add("ball", "sphere", (jit(1.9, 0.2), FLOOR_Y - r, jit(4.2, 0.2)), (r, r, r))
    hc = 0.5 * (ROOM_HI[1] - ROOM_LO[1])
    rc = 0.25 * scale()
    add("column", "cylinder", (jit(1.15, 0.1), FLOOR_Y - hc, jit(2.5, 0.15)), (rc, hc, rc))
    # A floating cube high on the front left (seen when turning left and up), a lamp under the
    # ceiling ahead (seen when pitching up).
    c = 0.3 * scale()
    add("floating_cube", "box", (jit(-2.3, 0.2), jit(-1.2, 0.1), jit(2.4, 0.2)), (c, c, c), u(0, 90))
    r = 0.28 * scale()
    add("lamp", "sphere", (jit(0.5, 0.2), ROOM_LO[1] + 0.1 + r, jit(3.3, 0.2)), (r, r, r))
    # Left side: a chest against the wall. Right side: a low bench with a ball on it.
    h = 0.6 * scale()
    add("chest", "box", (jit(-3.3, 0.15), FLOOR_Y - h, jit(0.5)), (0.5 * scale(), h, 0.9 * scale()), u(-10, 10))
    bh = 0.4 * scale()
    bx, bz = jit(3.2, 0.15), jit(0.0)
    add("bench", "box", (bx, FLOOR_Y - bh, bz), (0.6 * scale(), bh, 1.2 * scale()), u(-10, 10))
    r = 0.33 * scale()
    add("bench_ball", "sphere", (bx - 0.1, FLOOR_Y - 2 * bh - r, bz + 0.5), (r, r, r))
    # High on the side and back walls (seen when pitching up after a turn): a shelf, a wall
    # cabinet and a wall lamp.
    add("shelf", "box", (ROOM_LO[0] + 0.2, jit(-0.9, 0.15), jit(-0.6, 0.3)), (0.2, 0.12 * scale(), 0.8 * scale()))
    add("wall_cabinet", "box", (ROOM_HI[0] - 0.25, jit(-1.1, 0.15), jit(1.6, 0.3)),
        (0.25, 0.35 * scale(), 0.5 * scale()))
    r = 0.3 * scale()
    add("wall_lamp", "sphere", (jit(-0.3, 0.3), jit(-1.2, 0.15), ROOM_LO[2] + r + 0.05), (r, r, r))
    # Behind: a big ball, a crate and a drum.
    r = 0.7 * scale()
    add("rear_ball", "sphere", (jit(-1.4, 0.2), FLOOR_Y - r, jit(-3.0, 0.2)), (r, r, r))
    h = 0.8 * scale()
    add("crate", "box", (jit(1.6, 0.2), FLOOR_Y - h, jit(-3.0)), (0.7 * scale(), h, 0.5 * scale()), u(-35, 35))
    hd, rd = 0.4 * scale(), 0.45 * scale()
    add("drum", "cylinder", (jit(0.1, 0.2), FLOOR_Y - hd, jit(-2.1, 0.15)), (rd, hd, rd))
    return objs

def room_materials(rng: np.random.Generator) -> list[Material]:
    """Per-face materials: tiled walls, each its own colour (so a full turn is not ambiguous),
    plank floor, panelled ceiling. Patterns use local axes; the face's normal axis is ignored."""
    mats = []
    wall_hues = rng.permutation(np.array([0.08, 0.55, 0.30, 0.95])) + rng.uniform(-0.03, 0.03, 4)
    for face in range(6):
        axis = face // 2
        if axis == 1:
            if face == 3:  # floor: wooden planks running along z, staggered ends
                h = 0.07 + rng.uniform(-0.02, 0.02)
                mats.append(Material(base=hsv(h, 0.55, 0.62), alt=hsv(h, 0.6, 0.42), pattern="tiles",
                                      period=(0.22, 1.0, 1.3), axis=0, grout=0.012, stagger=0.37,
                                      jitter=0.12, noise=0.09))
            else:  # ceiling: large pale panels
                mats.append(Material(base=hsv(0.12, 0.08, 0.92), alt=hsv(0.12, 0.1, 0.6), pattern="tiles",
                                      period=(1.0, 1.0, 1.0), axis=0, grout=0.03, jitter=0.04, noise=0.06))
        else:
            h = float(wall_hues[[0, 1, -1, -1, 2, 3][face]])
            p = float(rng.uniform(0.35, 0.6))
            mats.append(Material(base=hsv(h, 0.35, 0.85), alt=hsv(h + 0.05, 0.45, 0.55), pattern="tiles",
                                  period=(p, p * 0.5 if face % 2 else p, p), axis=1,
                                  grout=0.015, stagger=0.5 * (face % 2), jitter=0.08, noise=0.08))
    return mats

def objects_sdf(objects: list[SceneObject], p: np.ndarray) -> np.ndarray:
    """Signed distance [N] from points [N,3] to the union of ``objects`` (numpy, layout checks)."""
    d = np.full(p.shape[0], np.inf)
    for o in objects:
        c = np.asarray(o.center)
        q = p - c
        if o.kind == "sphere":
            di = np.linalg.norm(q, axis=1) - o.size[0]
        elif o.kind == "box":
            ql = np.abs(q @ yaw_matrix(o.yaw_deg)) - np.asarray(o.size)
            di = np.linalg.norm(np.maximum(ql, 0), axis=1) + np.minimum(ql.max(1), 0)
        else:
            w = np.stack([np.hypot(q[:, 0], q[:, 2]) - o.size[0], np.abs(q[:, 1]) - o.size[1]], 1)
            di = np.linalg.norm(np.maximum(w, 0), axis=1) + np.minimum(w.max(1), 0)
        d = np.minimum(d, di)
    return d

def _camera_space_is_free(objects: list[SceneObject]) -> bool:
    # A 1.1 m ball around the origin; 0.6 m around the dolly path (to z = 1.5) and the 1 m
    # lateral / backward / vertical moves.
    if objects_sdf(objects, np.zeros((1, 3)))[0] < 1.1:
        return False
    path = [(0.0, 0.0, z) for z in np.linspace(0.0, 1.5, 7)]
    path += [(1.0, 0, 0), (-1.0, 0, 0), (0, 0, -1.0), (0, -0.5, 0), (0, 0.5, 0)]
    return bool((objects_sdf(objects, np.asarray(path)) >= 0.6).all())
