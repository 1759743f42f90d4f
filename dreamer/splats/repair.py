"""Repaired novel views for splat training: where they look from, and how they are made.

Splats trained on a few dreamed views look right from those views and fall apart away from them
(floaters, smears, holes). The repair step (the recipe of Difix3D+) renders the splats from
novel cameras during training, repairs each render with a :class:`~dreamer.backends.Refiner`
(the nearest dreamed view as reference) and trains on the repaired image as one more view, a
*pseudo-view* with its own loss weight. It runs in rounds, and each round looks from further
out, so the splats are corrected progressively from the dreamed cameras outward:

* round 0 looks **between** the dreamed cameras: the midpoint (slerped rotation, halfway centre)
  of each dreamed camera and its nearest other dreamed camera;
* round r >= 1 (of R) looks **further out**: every dreamed camera orbits its pivot (the median
  depth at the centre of its view) by ``angle * r / (R - 1)`` degrees in eight directions
  (right, up-right, up, ...) and moves toward the pivot by ``dolly * r / (R - 1)`` of the
  pivot's depth; of these, the round takes ``views`` by farthest-point sampling: each the one
  farthest (:func:`camera_offset`) from every dreamed camera and every camera taken before.
  A novel camera is worth repairing where no dreamed camera looked: an orbit of a middle camera
  toward its neighbour re-looks at the neighbour's view, while the ends of a trajectory orbited
  outward, and its cameras orbited across it (up and down for a pan), see the sides of objects
  and the surfaces that no dreamed view saw. A fixed direction per camera (the golden angle
  from one to the next) spent as many cameras looking inward as outward.

A camera's centre is kept inside a safe box (:func:`safe_box`: the bulk of the cloud, shrunk
toward its middle): the pivot of a view of a far wall is far, and an orbit around it could
otherwise leave the room. A centre that would leave the box is moved back along its way out.

Every function here is a pure function of the cameras and settings: a resumed run plans the
same cameras as an uninterrupted one.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from dreamer.cameras import Camera
from dreamer.trajectories import interpolate_cameras, orbit_camera

__all__ = ["repair_rounds", "camera_offset", "nearest_camera", "quantize_image", "safe_box", "dolly_camera"]

_DIRECTIONS = 8  # orbit directions per dreamed camera that a round picks its cameras from (every 45 degrees)


def camera_offset(a: Camera, b: Camera, pivot: float) -> float:
    """How far apart two cameras look, in degrees: the angle between their viewing directions
    plus the angle their centres' distance subtends at ``pivot`` (the scene's depth), so a
    turn and a sideways move that shift the view equally count equally."""
    ra, rb = a.c2w[:3, :3].detach().double().cpu(), b.c2w[:3, :3].detach().double().cpu()
    cos = float(((torch.trace(ra.T @ rb) - 1.0) / 2.0).clamp(-1.0, 1.0))
    turn = math.degrees(math.acos(cos))
    move = float((a.center.detach().double().cpu() - b.center.detach().double().cpu()).norm())
    return turn + math.degrees(math.atan2(move, max(float(pivot), 1e-9)))


def nearest_camera(camera: Camera, cameras: Sequence[Camera], pivots: Sequence[float]) -> int:
    """Index of the camera of ``cameras`` nearest to ``camera`` (:func:`camera_offset`, each
    measured at that camera's own pivot depth)."""
    if not cameras:
        raise ValueError("cameras must hold at least one camera to find the nearest one")
    offsets = [camera_offset(camera, c, p) for c, p in zip(cameras, pivots)]
    return int(np.argmin(offsets))


def _between(cameras: Sequence[Camera], pivots: Sequence[float]) -> list[Camera]:
    """The midpoint of each camera and its nearest other camera, each pair once, in order of
    the first camera of the pair."""
    n = len(cameras)
    if n < 2:
        return []
    pairs: list[tuple[int, int]] = []
    for i in range(n):
        offsets = [camera_offset(cameras[i], cameras[j], pivots[i]) if j != i else math.inf for j in range(n)]
        j = int(np.argmin(offsets))
        pair = (min(i, j), max(i, j))
        if pair not in pairs and offsets[j] > 1e-6:
            pairs.append(pair)
    return [interpolate_cameras([cameras[i], cameras[j]], [2])[1] for i, j in pairs]


def dolly_camera(camera: Camera, distance: float) -> Camera:
    """``camera`` moved ``distance`` along its viewing direction."""
    c2w = camera.c2w.detach().clone()
    c2w[:3, 3] = c2w[:3, 3] + distance * c2w[:3, 2]
    return camera.with_c2w(c2w)


def safe_box(xyz: Tensor, centres: Tensor, *, margin: float = 0.15, quantile: float = 0.02,
             max_points: int = 200_000) -> tuple[Tensor, Tensor]:
    """(lo, hi) [3] of a box where novel cameras may stand: per axis, the ``quantile`` and
    ``1 - quantile`` quantiles of the points ``xyz`` [N,3] (the bulk of the scene, robust to
    stray points), shrunk by ``margin`` of its size on each side, and grown to hold the camera
    ``centres`` [M,3]. At most ``max_points`` points (taken at an even stride) are used."""
    pts = xyz.detach().double().cpu()
    if pts.shape[0] > max_points:
        pts = pts[:: -(-pts.shape[0] // max_points)]
    lo = torch.quantile(pts, quantile, dim=0)
    hi = torch.quantile(pts, 1.0 - quantile, dim=0)
    size = hi - lo
    lo, hi = lo + margin * size, hi - margin * size
    c = centres.detach().double().cpu()
    return torch.minimum(lo, c.min(0).values), torch.maximum(hi, c.max(0).values)


def _inside(camera: Camera, base: Camera, box: tuple[Tensor, Tensor] | None) -> Camera:
    """``camera`` with its centre moved back toward ``base``'s centre (which is in ``box``)
    until it is inside ``box``."""
    if box is None:
        return camera
    lo, hi = box
    c0, c1 = base.center.detach().double().cpu(), camera.center.detach().double().cpu()
    d = c1 - c0
    s = 1.0
    for k in range(3):
        if d[k] > 1e-12 and c1[k] > hi[k]:
            s = min(s, float((hi[k] - c0[k]) / d[k]))
        elif d[k] < -1e-12 and c1[k] < lo[k]:
            s = min(s, float((lo[k] - c0[k]) / d[k]))
    if s >= 1.0:
        return camera
    c2w = camera.c2w.detach().clone()
    c2w[:3, 3] = (c0 + max(s, 0.0) * d).to(c2w)
    return camera.with_c2w(c2w)


def _spread(items: list, count: int) -> list:
    """``count`` items taken evenly over ``items`` (all of them when there are fewer)."""
    if len(items) <= count:
        return list(items)
    idx = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in idx]


def repair_rounds(cameras: Sequence[Camera], pivots: Sequence[float], *, rounds: int, views: int,
                  angle: float, dolly: float, box: tuple[Tensor, Tensor] | None = None) -> list[list[Camera]]:
    """The novel cameras of each repair round (see the module docstring).

    Args:
        cameras: the dreamed cameras (at least one).
        pivots: each camera's scene depth (> 0), e.g. ``center_depth_from(view.depth)``.
        rounds: number of rounds R (>= 0).
        views: cameras per round (>= 1); round 0 has fewer when there are fewer pairs.
        angle: orbit angle of the last round, degrees in [0, 90).
        dolly: move toward the pivot in the last round, a fraction of its depth in [0, 1).
        box: (lo, hi) [3] that the cameras' centres must stay in (:func:`safe_box`), or None.
    Returns:
        ``rounds`` lists of cameras.
    """
    from dreamer.checks import check_int, check_number

    rounds = check_int(rounds, "rounds", min=0)
    views = check_int(views, "views", min=1)
    angle = check_number(angle, "angle", min=0.0)
    dolly = check_number(dolly, "dolly", min=0.0)
    if angle >= 90.0 or dolly >= 1.0:
        raise ValueError(f"angle must be in [0, 90) degrees and dolly in [0, 1), got {angle}, {dolly}")
    cameras = list(cameras)
    if not cameras or len(pivots) != len(cameras):
        raise ValueError(f"need one pivot per camera and at least one camera, got {len(cameras)} cameras and "
                         f"{len(pivots)} pivots")
    out: list[list[Camera]] = []
    for r in range(rounds):
        if r == 0:
            ring = _spread(_between(cameras, pivots), views)
            if ring:
                out.append(ring)
                continue
        t = 1.0 if rounds == 1 else r / (rounds - 1)
        t = max(t, 1.0 / max(rounds - 1, 1))  # round 0 without pairs (one camera) looks out like round 1
        a = angle * t
        pool: list[tuple[Camera, float]] = []
        for base, pivot in zip(cameras, pivots):
            for j in range(_DIRECTIONS):
                phi = math.radians(360.0 * j / _DIRECTIONS)
                cam = orbit_camera(base, pivot, a * math.cos(phi), a * math.sin(phi))
                cam = dolly_camera(cam, dolly * t * pivot) if dolly > 0 else cam
                pool.append((_inside(cam, base, box), pivot))
        out.append(_farthest(pool, list(zip(cameras, pivots)), views))
    return out


def _farthest(pool: list[tuple[Camera, float]], taken: list[tuple[Camera, float]], count: int) -> list[Camera]:
    """``count`` cameras of ``pool`` ((camera, pivot) pairs), picked one by one as the camera
    farthest (:func:`camera_offset` at its pivot) from every camera of ``taken`` and every one
    picked before (farthest-point sampling; ties to the first in ``pool``). A camera is picked
    more than once only when the pool runs out."""
    picked: list[Camera] = []
    near = [min(camera_offset(c, d, p) for d, _ in taken) if taken else math.inf for c, p in pool]
    free = list(range(len(pool)))
    for _ in range(count):
        if not free:
            free = list(range(len(pool)))
        k = max(free, key=lambda m: (near[m], -m))
        free.remove(k)
        cam, _ = pool[k]
        picked.append(cam)
        near = [min(n, camera_offset(c, cam, p)) for n, (c, p) in zip(near, pool)]
    return picked


def quantize_image(image: Tensor) -> Tensor:
    """An image [H,W,3] in [0,1] rounded to 8 bits and back (float32), as a saved PNG would be:
    pseudo-views are kept in this form, so a resumed run (which reloads them from 8-bit storage)
    trains on exactly the images of an uninterrupted one."""
    return (image.detach().float().clamp(0, 1) * 255.0).round() / 255.0
