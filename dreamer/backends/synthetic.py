"""Oracle backends on the procedural world: the offline demo and the tests' ground truth.

* :class:`WorldInpainter` fills the mask with the world's render (the perfect inpainter).
* :class:`WorldDepthEstimator` answers with the world's z-depth times the errors a monocular
  model makes: an unknown scale per view, a smooth low-frequency distortion, pixel noise.
  The errors are a deterministic function of (seed, camera), never of a hidden counter, so a
  resumed run sees exactly the errors of an uninterrupted one.
* :class:`WorldImageGenerator` "generates" the world's view from its default first camera.
* :class:`WorldRefiner` repairs renders of the 3D model the way a good but imperfect repair model
  would: part of the way toward the world's true view, blurred, with noise. Not an oracle, so
  the gains it brings in a benchmark stay believable.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dreamer.cameras import Camera
from dreamer.checks import check_int
from dreamer.worlds.procedural import ProceduralWorld

__all__ = ["WorldInpainter", "WorldDepthEstimator", "WorldImageGenerator", "WorldRefiner"]

# "waves" distortion: a few plane waves of these frequencies, in cycles per image diagonal.
_DISTORTION_WAVES = 3
_DISTORTION_FREQ = (0.2, 0.6)
DISTORTION_KINDS = ("bend", "waves")


def _camera_rng(camera: Camera, seed: int) -> np.random.Generator:
    """A generator seeded by (camera, seed): the same camera draws the same errors in every run.
    The camera is rounded so that float noise in a reloaded camera does not change them."""
    data = np.concatenate([np.round(camera.K.cpu().double().numpy().ravel(), 3),
                           np.round(camera.c2w.cpu().double().numpy().ravel(), 5),
                           [camera.width, camera.height, seed]])
    digest = hashlib.sha256(np.ascontiguousarray(data + 0.0).tobytes()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _check_rgb(image: Tensor, camera: Camera, name: str = "image") -> None:
    if not isinstance(image, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [H,W,3], got {type(image).__name__}")
    if image.ndim != 3 or image.shape[-1] != 3 or not image.is_floating_point():
        raise ValueError(f"{name} must be a float tensor [H,W,3], got {tuple(image.shape)} {image.dtype}")
    camera.check_image(image, name)


class WorldInpainter:
    """Fills masked pixels with the world's render in ``camera``; other pixels are untouched."""

    def __init__(self, world: ProceduralWorld):
        self.world = world

    def inpaint(self, image: Tensor, mask: Tensor, prompt: str, *, camera: Camera,
                generator: torch.Generator | None = None) -> Tensor:
        _check_rgb(image, camera)
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor [H,W], got {getattr(mask, 'dtype', type(mask).__name__)}")
        camera.check_image(mask, "mask")
        if not mask.any():
            return image.clone()
        truth = self.world.render(camera).image.to(image)
        return torch.where(mask[..., None], truth, image)


class WorldDepthEstimator:
    """The world's z-depth with the errors of a monocular model, reproducible per camera.

    ``depth = truth * scale * (1 + d(u, v)) * (1 + noise * n(u, v))`` where ``scale`` is drawn
    log-uniformly from ``scale_range``, ``d`` is a smooth field normalized so that
    max |d| == ``distortion``, and ``n`` is unit Gaussian noise. All three are drawn from a
    generator seeded with (seed, camera).

    ``distortion_kind`` "bend" (default): a random quadratic in the image coordinates (a tilt
    and a bowl or saddle, the way monocular models bend depth across a picture). "waves": a sum
    of three plane waves of 0.2-0.6 cycles per image diagonal, harder: far from any overlap
    with known geometry its value cannot be inferred, so errors compound along a trajectory.

    ``edge_blur`` > 0 smooths the true inverse depth over a (2 * edge_blur + 1)^2 box before the
    errors are applied, as monocular models do at occlusion edges: a silhouette becomes a ramp
    of pixels at depths between the object and the background (the "flying pixels" that
    :func:`dreamer.scene.depth_edges.straddling_pixels` keeps from being lifted). 0: sharp edges.
    """

    def __init__(self, world: ProceduralWorld, *, scale_range: tuple[float, float] = (0.5, 2.0),
                 distortion: float = 0.10, noise: float = 0.01, seed: int = 0, distortion_kind: str = "bend",
                 edge_blur: int = 0):
        self.edge_blur = check_int(edge_blur, "edge_blur", min=0)
        if distortion_kind not in DISTORTION_KINDS:
            raise ValueError(f"distortion_kind must be one of {DISTORTION_KINDS}, got {distortion_kind!r}")
        self.distortion_kind = distortion_kind
        lo, hi = (float(v) for v in scale_range)
        if not (0 < lo <= hi and math.isfinite(hi)):
            raise ValueError(f"scale_range must be 0 < lo <= hi, got {scale_range}")
        if not 0 <= distortion < 1:
            raise ValueError(f"distortion must be in [0, 1), got {distortion}")
        if not 0 <= noise < 0.5:
            raise ValueError(f"noise must be in [0, 0.5), got {noise}")
        self.world, self.scale_range, self.distortion, self.noise, self.seed = world, (lo, hi), distortion, noise, seed

    @classmethod
    def exact(cls, world: ProceduralWorld) -> "WorldDepthEstimator":
        """No errors: the true z-depth."""
        return cls(world, scale_range=(1.0, 1.0), distortion=0.0, noise=0.0)

    def _rng(self, camera: Camera) -> np.random.Generator:
        return _camera_rng(camera, self.seed)

    def error_model(self, camera: Camera) -> tuple[float, Tensor]:
        """(scale, distortion field d [H,W]) used for ``camera``."""
        scale, d, _ = self._draw(camera)
        return scale, d

    def _draw(self, camera: Camera) -> tuple[float, Tensor, int]:
        """(scale, distortion d [H,W], seed of the pixel noise) for ``camera``."""
        rng = self._rng(camera)
        lo, hi = self.scale_range
        scale = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        H, W = camera.height, camera.width
        diag = math.hypot(H, W)
        yy, xx = np.meshgrid(np.arange(H) + 0.5, np.arange(W) + 0.5, indexing="ij")
        field = np.zeros((H, W))
        if self.distortion_kind == "waves":
            for _ in range(_DISTORTION_WAVES):
                angle = rng.uniform(0, 2 * math.pi)
                freq = rng.uniform(*_DISTORTION_FREQ) / diag
                phase = rng.uniform(0, 2 * math.pi)
                field += np.cos(2 * math.pi * freq * (math.cos(angle) * xx + math.sin(angle) * yy) + phase)
        else:
            x, y = (xx - W / 2) / (diag / 2), (yy - H / 2) / (diag / 2)  # within the unit disc
            a = rng.normal(size=5)
            field = a[0] * x + a[1] * y + a[2] * x * x + a[3] * x * y + a[4] * y * y
        field -= field.mean()
        peak = np.abs(field).max()
        d = field * (self.distortion / peak) if peak > 0 and self.distortion > 0 else np.zeros_like(field)
        return scale, torch.from_numpy(d.astype(np.float32)), int(rng.integers(0, 2**62))

    def estimate(self, image: Tensor, *, camera: Camera) -> Tensor:
        _check_rgb(image, camera)
        truth = self.world.depth(camera).to(image.device)
        if self.edge_blur > 0:
            b = self.edge_blur
            disp = F.pad((1.0 / truth)[None, None], (b, b, b, b), mode="replicate")
            truth = 1.0 / F.avg_pool2d(disp, 2 * b + 1, stride=1)[0, 0]
        scale, d, noise_seed = self._draw(camera)
        g = torch.Generator().manual_seed(noise_seed)
        n = torch.randn(camera.height, camera.width, generator=g)
        factor = scale * (1.0 + d) * (1.0 + self.noise * n).clamp_min(0.5)
        return (truth * factor.to(truth)).clamp_min(1e-6)


class WorldImageGenerator:
    """The world's view from its default first camera (the "text-to-image" of the offline demo)."""

    def __init__(self, world: ProceduralWorld):
        self.world = world

    def generate(self, prompt: str, *, width: int, height: int, generator: torch.Generator | None = None) -> Tensor:
        return self.world.render(self.world.first_camera(width, height)).image


def gaussian_blur(image: Tensor, sigma: float) -> Tensor:
    """``image`` [H,W,C] blurred by a Gaussian of ``sigma`` pixels (separable, borders
    replicated); ``sigma`` 0 returns a copy."""
    if sigma <= 0:
        return image.clone()
    radius = max(1, int(math.ceil(3.0 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    w = (w / w.sum()).to(image)
    c = image.shape[-1]
    t = image.permute(2, 0, 1)[None]
    t = torch.nn.functional.pad(t, (radius, radius, radius, radius), mode="replicate")
    t = torch.nn.functional.conv2d(t, w.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    t = torch.nn.functional.conv2d(t, w.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return t[0].permute(1, 2, 0).contiguous()


class WorldRefiner:
    """A repair model on the procedural world that is good but not perfect.

    ``refine(render, camera=...)`` returns
    ``clamp(blur(render + fraction * (truth - render), blur) + noise * n, 0, 1)``: the render moved
    ``fraction`` of the way toward the world's true view from ``camera`` (so a hole in the render,
    black, comes back at ``fraction`` of the true brightness), blurred by a Gaussian of ``blur``
    pixels, plus Gaussian pixel noise of standard deviation ``noise``. ``n`` is drawn from
    ``generator`` when one is given, else from (``seed``, camera), so a rerun repairs the same
    camera the same way. ``reference`` is not needed (the world knows the view) and is ignored.
    """

    def __init__(self, world: ProceduralWorld, *, fraction: float = 0.7, blur: float = 1.0, noise: float = 0.02,
                 seed: int = 0):
        from dreamer.checks import check_int, check_number

        self.world = world
        self.fraction = check_number(fraction, "fraction", min=0.0, max=1.0)
        self.blur = check_number(blur, "blur", min=0.0)
        self.noise = check_number(noise, "noise", min=0.0, max=0.5)
        self.seed = check_int(seed, "seed")

    def describe(self) -> dict:
        """What decides this refiner's answers (for checkpoint fingerprints)."""
        return {"kind": "world", "world_seed": self.world.seed, "fraction": self.fraction, "blur": self.blur,
                "noise": self.noise, "seed": self.seed}

    def refine(self, render: Tensor, *, reference: Tensor | None = None, camera: Camera | None = None,
               generator: torch.Generator | None = None) -> Tensor:
        if not isinstance(camera, Camera):
            raise TypeError(f"camera must be the Camera of the render (the synthetic refiner answers from the "
                            f"procedural world), got {type(camera).__name__}")
        _check_rgb(render, camera, "render")
        truth = self.world.render(camera).image.to(render)
        out = gaussian_blur(render + self.fraction * (truth - render), self.blur)
        if self.noise > 0:
            if generator is None:
                generator = torch.Generator().manual_seed(int(_camera_rng(camera, self.seed).integers(0, 2**62)))
            n = torch.randn(render.shape, generator=generator, device=generator.device)
            out = out + self.noise * n.to(out)
        return out.clamp(0.0, 1.0)
