"""The one home of the camera convention.

Convention (used everywhere in this project):

* Pinhole intrinsics ``K`` [3,3] and a camera-to-world matrix ``c2w`` [4,4].
* OpenCV camera axes: +x right, +y down, +z forward (the viewing direction).
* The world frame is the frame of the first camera of a scene unless a trajectory file says
  otherwise, so world "up" is -y.
* Depth means z-depth: the distance along the camera's +z axis, not the length of the ray.
* Pixel (u, v) covers [u, u+1) x [v, v+1); its centre is at (u + 0.5, v + 0.5), as gsplat
  renders.

Every axis flip to another convention (OpenGL / nerfstudio / Blender: +y up, +z backward)
happens in a named converter below. Matrices are named by direction (``c2w``, ``w2c``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "Camera",
    "focal_from_fov",
    "fov_from_focal",
    "intrinsics_matrix",
    "intrinsics_from_fov",
    "invert_rigid",
    "check_rigid",
    "opencv_to_opengl",
    "opengl_to_opencv",
    "look_at",
    "rotation_x",
    "rotation_y",
    "rotation_z",
    "pixel_centers",
    "camera_rays",
    "unproject_depth",
    "project_points",
    "world_to_camera_points",
    "camera_points_to_pixels",
    "DEFAULT_FOCAL_512",
    "FOV_RANGE",
    "check_float32_focal",
    "MAX_CAMERA_DISTANCE",
    "check_input_camera",
]

# The focal length of the original research code at 512x512 (a horizontal FoV of about 47.4 deg).
DEFAULT_FOCAL_512 = 582.69

# OpenCV camera axes -> OpenGL camera axes: flip y and z.
_CV_TO_GL = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))


def focal_from_fov(fov_deg: float, size: float) -> float:
    """Focal length in pixels that gives a field of view of ``fov_deg`` across ``size`` pixels."""
    if not 0.0 < fov_deg < 180.0:
        raise ValueError(f"field of view must be in (0, 180) degrees, got {fov_deg}")
    return 0.5 * size / math.tan(math.radians(fov_deg) / 2.0)


def fov_from_focal(focal: float, size: float) -> float:
    """Field of view in degrees across ``size`` pixels for a focal length in pixels."""
    if focal <= 0:
        raise ValueError(f"focal length must be positive, got {focal}")
    return math.degrees(2.0 * math.atan(0.5 * size / focal))


#: The fields of view (degrees) a camera given by a person may have: a pinhole image wider than
#: 170 degrees stretches its edges without bound (at 180 the focal length is 0), and below 0.1
#: degree the rays are parallel to float32 precision.
FOV_RANGE = (0.1, 170.0)

#: The farthest a camera given by a person may be from the world origin (metres): float32 keeps
#: about 8 mm of resolution at 1e5 m, and a scene's points live near its cameras.
MAX_CAMERA_DISTANCE = 1e5


def check_input_camera(camera: "Camera", name: str = "camera") -> "Camera":
    """Raise ValueError unless ``camera`` (from a person's file or settings) is one the project can
    dream or render: fields of view across x and y within :data:`FOV_RANGE` (measured from the
    principal point to each edge), the principal point inside the image, the centre within
    :data:`MAX_CAMERA_DISTANCE` of the origin. ``Camera`` itself checks finiteness, positive focal
    lengths and a rigid ``c2w``. No skew: the dream's projections read ``fx, fy, cx, cy`` alone
    (:func:`camera_points_to_pixels`), so a skewed ``K`` would be dreamed as if it had none."""
    K = camera.K.detach().double().cpu()
    if float(K[0, 1]) != 0.0 or float(K[1, 0]) != 0.0:
        raise ValueError(f"{name}: K has off-diagonal terms (K[0][1] = {float(K[0, 1]):g}, K[1][0] = "
                         f"{float(K[1, 0]):g}); a camera here is [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] (no skew)")
    for axis, size, f, c in (("x", camera.width, K[0, 0], K[0, 2]), ("y", camera.height, K[1, 1], K[1, 2])):
        f, c = float(f), float(c)
        if not 0.0 <= c <= size:
            raise ValueError(f"{name}: the principal point's {axis} ({c:g} px) lies outside the {size} px image")
        fov = math.degrees(math.atan(c / f) + math.atan((size - c) / f))
        lo, hi = FOV_RANGE
        if not lo <= fov <= hi:
            raise ValueError(f"{name}: its field of view along {axis} is {fov:.4g} degrees (focal length {f:g} px over "
                             f"{size} px); a pinhole camera needs {lo:g} to {hi:g} degrees")
    distance = float(camera.c2w.detach().double()[:3, 3].norm())
    if distance > MAX_CAMERA_DISTANCE:
        raise ValueError(f"{name}: its centre is {distance:.3g} m from the origin, more than "
                         f"{MAX_CAMERA_DISTANCE:g} m; move the trajectory's origin near the scene")
    return camera


def check_float32_focal(fx: float, fy: float, name: str = "K") -> None:
    """Raise ValueError for a positive focal length that float32 turns into 0 or inf (1e-300 px, 1e300
    px: fields of view of 180 and 0 degrees), naming the value given: after the cast it would be
    refused as "not positive" (fx=0.0) or "non-finite", which is not what the person wrote."""
    for axis, f in (("fx", fx), ("fy", fy)):
        f = float(f)
        f32 = float(torch.tensor(f, dtype=torch.float32))
        if math.isfinite(f) and f > 0 and not (math.isfinite(f32) and f32 > 0):
            lo, hi = FOV_RANGE
            which = "" if fx == fy else f" ({axis})"
            raise ValueError(f"{name}: a focal length of {f:g} px{which} lies beyond float32's range (a field of "
                             f"view of {0 if f32 else 180} degrees); a pinhole camera needs {lo:g} to {hi:g} degrees")


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> Tensor:
    """A float32 pinhole matrix [3,3]; focal lengths float32 cannot hold raise ValueError
    (:func:`check_float32_focal`)."""
    check_float32_focal(fx, fy)
    return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float32)


def intrinsics_from_fov(fov_x_deg: float, width: int, height: int) -> Tensor:
    """Square pixels, principal point at the image centre, horizontal FoV ``fov_x_deg``."""
    f = focal_from_fov(fov_x_deg, width)
    return intrinsics_matrix(f, f, width / 2.0, height / 2.0)


def rotation_x(deg: float) -> Tensor:
    """Rotation [3,3] by ``deg`` about +x. With OpenCV axes (y down), positive tilts +z towards -y (up)."""
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]], dtype=torch.float32)


def rotation_y(deg: float) -> Tensor:
    """Rotation [3,3] by ``deg`` about +y. With OpenCV axes (y down), positive turns +z towards +x (right)."""
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=torch.float32)


def rotation_z(deg: float) -> Tensor:
    """Rotation [3,3] by ``deg`` about +z (roll)."""
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float32)


def check_rigid(c2w: Tensor, *, atol: float = 1e-4, name: str = "c2w") -> None:
    """Raise ValueError unless ``c2w`` is a finite rigid transform [4,4] (or a batch [...,4,4])."""
    if not isinstance(c2w, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(c2w).__name__}")
    if c2w.shape[-2:] != (4, 4):
        raise ValueError(f"{name} must have shape [...,4,4], got {tuple(c2w.shape)}")
    m = c2w.detach().double()
    if not torch.isfinite(m).all():
        raise ValueError(f"{name} has non-finite entries")
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=m.dtype, device=m.device)
    if not torch.allclose(m[..., 3, :], bottom.expand_as(m[..., 3, :]), atol=atol):
        raise ValueError(f"{name} must have last row [0, 0, 0, 1], got {m[..., 3, :].tolist()}")
    r = m[..., :3, :3]
    eye = torch.eye(3, dtype=m.dtype, device=m.device)
    err = (r.transpose(-1, -2) @ r - eye).abs().amax().item()
    if err > atol:
        raise ValueError(f"{name} is not rigid: its rotation block has R^T R - I up to {err:.3g}")
    det = torch.linalg.det(r)
    if (det < 0).any():
        raise ValueError(f"{name} is a reflection (det R = -1), not a rotation")


def invert_rigid(T: Tensor) -> Tensor:
    """Exact inverse of rigid transforms [...,4,4] (R^T, -R^T t), no general matrix inverse."""
    r = T[..., :3, :3]
    t = T[..., :3, 3:]
    rt = r.transpose(-1, -2)
    out = torch.zeros_like(T)
    out[..., :3, :3] = rt
    out[..., :3, 3:] = -rt @ t
    out[..., 3, 3] = 1.0
    return out


def opencv_to_opengl(c2w: Tensor) -> Tensor:
    """c2w with OpenCV camera axes -> c2w with OpenGL / nerfstudio / Blender camera axes."""
    return c2w @ _CV_TO_GL.to(c2w)


def opengl_to_opencv(c2w: Tensor) -> Tensor:
    """c2w with OpenGL / nerfstudio / Blender camera axes -> c2w with OpenCV camera axes."""
    return c2w @ _CV_TO_GL.to(c2w)  # the flip is its own inverse


def look_at(eye: Tensor, target: Tensor, up: Tensor | None = None) -> Tensor:
    """c2w (OpenCV axes) of a camera at ``eye`` looking at ``target``.

    ``up`` is the world direction that should appear up in the image; the default is -y
    (the world frame is an OpenCV camera frame, whose up is -y).
    """
    eye = torch.as_tensor(eye, dtype=torch.float32)
    target = torch.as_tensor(target, dtype=torch.float32)
    up = torch.tensor([0.0, -1.0, 0.0]) if up is None else torch.as_tensor(up, dtype=torch.float32)
    forward = target - eye
    n = forward.norm()
    if n < 1e-12:
        raise ValueError("look_at: eye and target coincide")
    z = forward / n
    x = torch.linalg.cross(-up, z)  # right = down x forward (OpenCV: y x z = x)
    if x.norm() < 1e-8:
        raise ValueError("look_at: the viewing direction is parallel to up")
    x = x / x.norm()
    y = torch.linalg.cross(z, x)
    c2w = torch.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x, y, z, eye
    return c2w


@dataclass(frozen=True, eq=False)
class Camera:
    """A pinhole camera: intrinsics ``K`` [3,3], pose ``c2w`` [4,4] (OpenCV axes), image size.

    ``K`` and ``c2w`` are float32 tensors on the same device. Inputs are validated on
    construction; a camera is immutable (use :meth:`with_c2w`, :meth:`to`).
    """

    K: Tensor
    c2w: Tensor
    width: int
    height: int

    def __post_init__(self) -> None:
        K = torch.as_tensor(self.K)
        c2w = torch.as_tensor(self.c2w)
        if K.shape != (3, 3):
            raise ValueError(f"Camera.K must have shape [3,3], got {tuple(K.shape)}")
        if c2w.shape != (4, 4):
            raise ValueError(f"Camera.c2w must have shape [4,4], got {tuple(c2w.shape)}")
        if not torch.isfinite(K).all():
            raise ValueError("Camera.K has non-finite entries")
        if not (K[0, 0] > 0 and K[1, 1] > 0):
            raise ValueError(f"Camera.K needs positive focal lengths, got fx={K[0, 0]}, fy={K[1, 1]}")
        check_rigid(c2w, name="Camera.c2w")
        for name in ("width", "height"):
            v = getattr(self, name)
            if isinstance(v, bool) or int(v) != v or int(v) <= 0:
                raise ValueError(f"Camera.{name} must be a positive integer, got {v!r}")
        object.__setattr__(self, "K", K.to(torch.float32))
        object.__setattr__(self, "c2w", c2w.to(device=K.device, dtype=torch.float32))
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    # -- constructors ------------------------------------------------------------------------
    @classmethod
    def from_fov(cls, fov_x_deg: float, width: int, height: int, c2w: Tensor | None = None) -> "Camera":
        """Square pixels, centred principal point, horizontal FoV in degrees."""
        return cls(intrinsics_from_fov(fov_x_deg, width, height), torch.eye(4) if c2w is None else c2w, width, height)

    @classmethod
    def from_focal(cls, focal: float, width: int, height: int, c2w: Tensor | None = None) -> "Camera":
        """Square pixels of focal length ``focal`` (pixels), centred principal point."""
        K = intrinsics_matrix(focal, focal, width / 2.0, height / 2.0)
        return cls(K, torch.eye(4) if c2w is None else c2w, width, height)

    # -- views of the same data ------------------------------------------------------------------
    @property
    def w2c(self) -> Tensor:
        """World-to-camera [4,4] (what gsplat calls ``viewmats``)."""
        return invert_rigid(self.c2w)

    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def cx(self) -> float:
        return float(self.K[0, 2])

    @property
    def cy(self) -> float:
        return float(self.K[1, 2])

    @property
    def center(self) -> Tensor:
        """The centre of projection in world coordinates [3]."""
        return self.c2w[:3, 3]

    @property
    def forward(self) -> Tensor:
        """The viewing direction (+z of the camera) in world coordinates [3]."""
        return self.c2w[:3, 2]

    @property
    def device(self) -> torch.device:
        return self.K.device

    @property
    def fov_x(self) -> float:
        return fov_from_focal(self.fx, self.width)

    @property
    def fov_y(self) -> float:
        return fov_from_focal(self.fy, self.height)

    def with_c2w(self, c2w: Tensor) -> "Camera":
        return Camera(self.K, c2w, self.width, self.height)

    def with_K(self, K: Tensor) -> "Camera":
        return Camera(K, self.c2w, self.width, self.height)

    def to(self, device: torch.device | str) -> "Camera":
        return Camera(self.K.to(device), self.c2w.to(device), self.width, self.height)

    def resized(self, width: int, height: int) -> "Camera":
        """The same camera rendering an image of another size (K scaled per axis)."""
        sx, sy = width / self.width, height / self.height
        K = self.K.clone()
        K[0] *= sx
        K[1] *= sy
        return Camera(K, self.c2w, width, height)

    def check_image(self, image: Tensor, name: str = "image") -> None:
        """Raise ValueError unless ``image`` is float [H,W,3] (or [H,W] for depth/mask) of this size."""
        if not isinstance(image, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(image).__name__}")
        if tuple(image.shape[:2]) != (self.height, self.width):
            raise ValueError(
                f"{name} has size {tuple(image.shape[:2])} (H, W) but the camera is "
                f"{(self.height, self.width)} (H, W)"
            )

    def to_dict(self) -> dict:
        """JSON-friendly form (our convention: OpenCV axes, c2w)."""
        return {
            "width": self.width,
            "height": self.height,
            "K": self.K.cpu().tolist(),
            "c2w": self.c2w.cpu().tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Camera":
        try:
            return cls(torch.tensor(d["K"], dtype=torch.float32), torch.tensor(d["c2w"], dtype=torch.float32),
                       int(d["width"]), int(d["height"]))
        except KeyError as e:
            raise ValueError(f"camera entry is missing {e.args[0]!r}: expected keys K, c2w, width, height") from None

    def __repr__(self) -> str:
        c = self.center.tolist()
        return (f"Camera({self.width}x{self.height}, fx={self.fx:.1f}, fy={self.fy:.1f}, "
                f"center=({c[0]:.3f}, {c[1]:.3f}, {c[2]:.3f}))")


def pixel_centers(width: int, height: int, device=None, dtype=torch.float32) -> tuple[Tensor, Tensor]:
    """Pixel-centre coordinates (u + 0.5, v + 0.5) as two [H,W] tensors."""
    u = torch.arange(width, device=device, dtype=dtype) + 0.5
    v = torch.arange(height, device=device, dtype=dtype) + 0.5
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    return uu, vv


def camera_rays(camera: Camera) -> tuple[Tensor, Tensor]:
    """Per-pixel ray origin [3] and world directions [H,W,3] scaled so that camera z = 1.

    A point at z-depth ``d`` along pixel (v, u) is ``origin + d * dirs[v, u]``.
    """
    uu, vv = pixel_centers(camera.width, camera.height, device=camera.device)
    x = (uu - camera.cx) / camera.fx
    y = (vv - camera.cy) / camera.fy
    d_cam = torch.stack([x, y, torch.ones_like(x)], dim=-1)
    dirs = d_cam @ camera.c2w[:3, :3].T
    return camera.c2w[:3, 3], dirs


def unproject_depth(depth: Tensor, camera: Camera) -> Tensor:
    """World points [H,W,3] of a z-depth map [H,W]."""
    camera.check_image(depth, "depth")
    origin, dirs = camera_rays(camera)
    return origin + depth[..., None].to(dirs) * dirs


def project_points(xyz: Tensor, camera: Camera) -> tuple[Tensor, Tensor]:
    """Project world points [N,3] -> pixel coordinates [N,2] (continuous, centres at +0.5) and z [N].

    Points behind the camera get z <= 0; their uv is meaningless and callers must mask them.
    """
    return camera_points_to_pixels(world_to_camera_points(xyz, camera), camera)


def world_to_camera_points(xyz: Tensor, camera: Camera) -> Tensor:
    """World points [N,3] -> the same points in the camera frame [N,3] (OpenCV axes, z = depth)."""
    w2c = camera.w2c.to(xyz)
    p = xyz @ w2c[:3, :3].T
    p += w2c[:3, 3]  # in place: one [N,3] temporary less for large clouds
    return p


def camera_points_to_pixels(p: Tensor, camera: Camera) -> tuple[Tensor, Tensor]:
    """Camera-frame points [N,3] -> pixel coordinates [N,2] and z [N] (see :func:`project_points`)."""
    z = p[:, 2]
    zs = torch.where(z.abs() < 1e-12, torch.full_like(z, 1e-12), z)
    u = camera.fx * p[:, 0] / zs + camera.cx
    v = camera.fy * p[:, 1] / zs + camera.cy
    return torch.stack([u, v], dim=-1), z
