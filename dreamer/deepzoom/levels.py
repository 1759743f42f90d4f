"""Zoom-level geometry: the level cameras, their prompts, the zoom point and the local frame."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from dreamer.cameras import Camera
from dreamer.checks import check_int
from dreamer.deepzoom.config import DEFAULT_SUFFIXES
from dreamer.pointcloud import PointCloud
from dreamer.scene.result import DreamResult

__all__ = ["level_cameras", "level_prompts", "zoom_point", "LocalFrame"]


def _check_camera(camera: Camera) -> None:
    if not isinstance(camera, Camera):
        raise TypeError(f"camera must be a dreamer.Camera, got {type(camera).__name__}")


def level_cameras(camera: Camera, center_uv: Sequence[float] | Tensor | None, levels: int, p: int = 2) -> list[Camera]:
    """The cameras of a zoom stack into ``camera`` about the pixel ``center_uv``.

    Level ``i`` (``0 <= i < levels``) keeps ``camera.c2w`` (same centre of projection, same
    rotation) and the image size; its intrinsics are ``fx_i = fx p^i``, ``fy_i = fy p^i`` and
    ``cx_i = W/2 - p^i (c_u - cx)``, ``cy_i = H/2 - p^i (c_v - cy)``. So a point that projects
    to ``(u, v)`` in ``camera`` projects to ``(W/2 + p^i (u - c_u), H/2 + p^i (v - c_v))`` in
    level ``i``: exactly the level-0 projection scaled by ``p^i`` about the zoom centre, which
    sits at the image centre of every level. Level ``i+1`` shows the centre ``1/p`` of level
    ``i`` at ``p`` times the resolution, as a zoom stack does.

    Args:
        camera: the view to zoom into.
        center_uv: (u, v) in pixels (continuous, pixel centres at +0.5); None = the image centre.
        levels: number of levels N >= 1.
        p: zoom factor per level (>= 2, an integer as in ``zoom/``).
    Returns:
        N cameras, widest first.
    """
    _check_camera(camera)
    check_int(levels, "levels", min=1)
    check_int(p, "p", min=2)
    W, H = camera.width, camera.height
    if center_uv is None:
        cu, cv = W / 2.0, H / 2.0
    else:
        c = torch.as_tensor(center_uv, dtype=torch.float64).flatten()
        if c.numel() != 2 or not torch.isfinite(c).all():
            raise ValueError(f"center_uv must be two finite numbers (u, v), got {center_uv!r}")
        cu, cv = float(c[0]), float(c[1])
    if not (0.0 <= cu <= W and 0.0 <= cv <= H):
        raise ValueError(f"zoom centre ({cu}, {cv}) lies outside the {W}x{H} image")
    out = []
    for i in range(levels):
        s = float(p) ** i
        K = camera.K.clone().double()
        K[0, 0] *= s
        K[1, 1] *= s
        K[0, 1] *= s  # a skew scales with the focal length
        K[0, 2] = W / 2.0 - s * (cu - camera.cx)
        K[1, 2] = H / 2.0 - s * (cv - camera.cy)
        out.append(camera.with_K(K.float()))
    return out


def level_prompts(levels: int, prompts: Sequence[str] | str | None, *, scene_prompt: str = "",
                  suffixes: Sequence[str] = DEFAULT_SUFFIXES) -> list[str]:
    """One prompt per level: ``prompts`` as given when it has one per level; a single prompt (or
    the scene's prompt when None) is repeated with ``suffixes[i-1]`` appended at level ``i >= 1``
    (the last suffix for deeper levels)."""
    if isinstance(prompts, str):
        prompts = [prompts]
    if prompts is not None and len(prompts) == levels and levels > 1:
        return list(prompts)
    if prompts is not None and len(prompts) != 1:
        raise ValueError(f"got {len(prompts)} zoom prompts for {levels} levels: give one prompt or one per level")
    base = prompts[0] if prompts is not None else scene_prompt
    out = [base]
    for i in range(1, levels):
        suffix = suffixes[min(i - 1, len(suffixes) - 1)] if suffixes else ""
        out.append(f"{base}, {suffix}" if base and suffix else (base or suffix))
    return out


def zoom_point(camera: Camera, depth: Tensor, center_uv: Sequence[float] | None = None) -> Tensor:
    """The world point [3] (float64) seen at the zoom centre: the z-depth map [H,W] of
    ``camera`` (0 or non-finite where empty) read at the pixel under ``center_uv`` (the median of
    the valid depths of its 3x3 neighbourhood, so a pinhole or an edge pixel does not throw it
    off)."""
    _check_camera(camera)
    camera.check_image(depth, "depth")
    W, H = camera.width, camera.height
    cu, cv = (W / 2.0, H / 2.0) if center_uv is None else (float(center_uv[0]), float(center_uv[1]))
    u = min(max(int(math.floor(cu)), 0), W - 1)
    v = min(max(int(math.floor(cv)), 0), H - 1)
    patch = depth[max(v - 1, 0):v + 2, max(u - 1, 0):u + 2].reshape(-1)
    patch = patch[torch.isfinite(patch) & (patch > 0)]
    if patch.numel() == 0:
        valid = depth[torch.isfinite(depth) & (depth > 0)]
        if valid.numel() == 0:
            raise ValueError("the view has no valid depth: cannot place the zoom point")
        patch = valid
    z = float(patch.median())
    x = (cu - camera.cx) / camera.fx * z
    y = (cv - camera.cy) / camera.fy * z
    p_cam = torch.tensor([x, y, z], dtype=torch.float64, device=camera.device)
    c2w = camera.c2w.double()
    return c2w[:3, :3] @ p_cam + c2w[:3, 3]


@dataclass(frozen=True, eq=False)
class LocalFrame:
    """A frame translated so that ``origin`` (float64 [3], world coordinates; the zoom point) is
    its origin, with the world's axes.

    Positions near a deep zoom's target are small numbers here, so float32 keeps them to about
    1e-7 of their distance from the target instead of 1e-7 of their distance from the world
    origin: a camera a few millimetres from the target, or a Gaussian a thousand times smaller
    than the scene, neither jitters between frames nor snaps to a grid when training moves it by
    a fraction of its size. Translations are done in float64.
    """

    origin: Tensor

    def __post_init__(self) -> None:
        o = torch.as_tensor(self.origin, dtype=torch.float64).detach().reshape(-1)
        if o.numel() != 3 or not torch.isfinite(o).all():
            raise ValueError(f"origin must be a finite point [3], got {self.origin!r}")
        object.__setattr__(self, "origin", o.cpu())

    def _shift(self, c2w: Tensor, sign: float) -> Tensor:
        out = c2w.detach().double().clone()
        out[:3, 3] = out[:3, 3] + sign * self.origin.to(out.device)
        return out.float()

    def camera(self, camera: Camera) -> Camera:
        """``camera`` (world coordinates) expressed in this frame."""
        return camera.with_c2w(self._shift(camera.c2w, -1.0))

    def world_camera(self, camera: Camera) -> Camera:
        """``camera`` (this frame's coordinates) in world coordinates."""
        return camera.with_c2w(self._shift(camera.c2w, 1.0))

    def points(self, points: PointCloud) -> PointCloud:
        """World points -> this frame."""
        xyz = (points.xyz.double() - self.origin.to(points.device)).to(points.xyz.dtype)
        return PointCloud(xyz, points.rgb, points.radius)

    def world_points(self, points: PointCloud) -> PointCloud:
        """This frame's points -> world."""
        xyz = (points.xyz.double() + self.origin.to(points.device)).to(points.xyz.dtype)
        return PointCloud(xyz, points.rgb, points.radius)

    def result(self, result: DreamResult) -> DreamResult:
        """A dreamed scene (points and view cameras) in this frame; images, z-depths and masks
        are unchanged (a translation changes no z-depth)."""
        views = [dataclasses.replace(v, camera=self.camera(v.camera)) for v in result.views]
        return DreamResult(self.points(result.points), views, result.config)
