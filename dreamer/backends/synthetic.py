"""Oracle backends on the procedural world: the offline demo and the tests' ground truth.

* :class:`WorldInpainter` fills the mask with the world's render (the perfect inpainter).
* :class:`WorldDepthEstimator` answers with the world's z-depth and the errors a monocular
  model makes: an unknown scale per view, smooth distortions, errors per object, an affine
  error in disparity, smeared depth edges, pixel noise (named families in
  :data:`ERROR_FAMILIES`). The errors are a deterministic function of (seed, camera), never of a hidden counter, so a
  resumed run sees exactly the errors of an uninterrupted one.
* :class:`WorldImageGenerator` "generates" the world's view from its default first camera.
* :class:`WorldRefiner` repairs renders of the 3D model the way a good but imperfect repair model
  would: part of the way toward the world's true view, blurred, with noise. Not an oracle, so
  the gains it brings in a benchmark stay believable.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dreamer.cameras import Camera
from dreamer.checks import check_int
from dreamer.worlds.procedural import ProceduralWorld

__all__ = ["WorldInpainter", "WorldDepthEstimator", "WorldImageGenerator", "WorldRefiner", "DepthErrors",
           "ERROR_FAMILIES"]

# "waves" distortion: a few plane waves of these frequencies, in cycles per image (its larger side).
_DISTORTION_WAVES = 3
_DISTORTION_FREQ = (0.3, 1.5)
DISTORTION_KINDS = ("bend", "waves", "none")

# Named error families of the estimator (see WorldDepthEstimator.family). All share an unknown
# per-view scale of 0.4-2.5 and 1% pixel noise, the part every monocular model has; each adds one
# kind of structured error; "mixed" combines several, as a hard case.
ERROR_FAMILIES: dict[str, dict] = {
    "scale": dict(),
    "bend": dict(distortion=0.10, distortion_kind="bend"),
    "waves": dict(distortion=0.10, distortion_kind="waves"),
    "objects": dict(object_error=0.10),
    "disparity": dict(disparity_shift=0.25),
    "smear": dict(smear=0.008),
    "power": dict(compression=0.35),
    "fatten": dict(fatten=0.01),
    "mixed": dict(distortion=0.15, distortion_kind="waves", noise=0.02, smear=0.008),
}
_FAMILY_BASE = dict(scale_range=(0.4, 2.5), distortion=0.0, distortion_kind="none", noise=0.01)


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


@dataclass(frozen=True, eq=False)
class DepthErrors:
    """The errors :class:`WorldDepthEstimator` makes in one camera (all drawn from (seed, camera)).

    Attributes:
        scale: the unknown global scale of the view.
        field: [H,W] float32 smooth relative distortion d (zeros when there is none).
        object_offsets: [n_objects] float64 relative error per surface id (zeros when none).
        disparity_shift: k in ``1/e = (1 + k t) / t`` before the scale, in 1/metres (0: none).
        noise_seed: seed of the pixel noise.
    """

    scale: float
    field: Tensor
    object_offsets: np.ndarray
    disparity_shift: float
    noise_seed: int
    exponent: float = 1.0


def _gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of a [H,W] map (reflected borders); ``x`` itself when sigma <= 0."""
    if sigma <= 0:
        return x
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).to(x.dtype)
    y = x[None, None]
    r_y, r_x = min(r, x.shape[0] - 1), min(r, x.shape[1] - 1)
    y = F.conv2d(F.pad(y, (0, 0, r_y, r_y), mode="reflect"), k[r - r_y:r + r_y + 1].view(1, 1, -1, 1))
    y = F.conv2d(F.pad(y, (r_x, r_x, 0, 0), mode="reflect"), k[r - r_x:r + r_x + 1].view(1, 1, 1, -1))
    return y[0, 0]


def _fattened(x: Tensor, radius: int, step: float = 0.1) -> Tensor:
    """``x`` [H,W] (z-depth) with each pixel that has a pixel more than ``step`` (relative)
    nearer within ``radius`` pixels (a disc; borders replicated) set to the nearest such depth:
    near surfaces grow by ``radius`` pixels across depth edges; smooth surfaces (a slanted floor)
    keep their depth."""
    offsets = [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)
               if dy * dy + dx * dx <= radius * radius]
    H, W = x.shape
    padded = F.pad(x[None, None], (radius, radius, radius, radius), mode="replicate")[0, 0]
    out = x.clone()
    for dy, dx in offsets:
        torch.minimum(out, padded[radius + dy:radius + dy + H, radius + dx:radius + dx + W], out=out)
    return torch.where(out < x * (1 - step), out, x)


class WorldDepthEstimator:
    """The world's z-depth with the errors of a monocular model, reproducible per camera.

    For the true z-depth ``t`` of a camera the estimate is::

        t' = blur(fat(t))                              # fattened foreground ("fatten"), smeared edges ("smear")
        t' = m (t' / m)^g                              # a compressed range ("power"), m = median(t')
        e  = scale * t' / (1 + k t')                   # affine error in disparity ("disparity")
             * (1 + o[object id])                      # a constant error per surface ("objects")
             * (1 + d(u, v))                           # smooth distortion ("bend" / "waves")
             * (1 + noise * n(u, v))                   # pixel noise

    * ``scale`` is drawn log-uniformly from ``scale_range`` (the unknown scale of every
      monocular model).
    * ``d`` is a smooth field normalized so that max |d| == ``distortion``. ``distortion_kind``
      "bend": a random quadratic in the image coordinates (a tilt and a bowl or saddle, the way
      monocular models bend depth across a picture). "waves": a sum of three plane waves of
      0.3-1.5 cycles per image (its larger side), with random directions and phases: far from
      any overlap with known geometry its value cannot be inferred. "none": no distortion.
    * ``o`` gives each surface id (the world's ``object_id``) a relative error drawn uniformly
      from +-``object_error``: monocular models err object by object, so the estimate steps
      where two surfaces touch.
    * ``k = disparity_shift * u / median(t')`` with u uniform in [-1, 1] (reduced where needed
      so that ``1 + k t' >= 0.5`` everywhere): a relative-depth model's disparity after a wrong
      scale and shift, ``1/e = (1/t' + k) / scale``. Its relative error grows with depth, so no
      single scale fits near and far.
    * ``blur`` is a Gaussian of ``smear`` times the image's larger side (standard deviation,
      pixels): depth edges become ramps mixing the two surfaces, as a network's output does.
    * ``fat`` grows near surfaces across depth edges (a step of more than 10%) by ``fatten`` times
      the image's larger side, rounded, at least one pixel (0: off): a pixel within that distance
      of a nearer surface takes its depth, a sharp step in the wrong place ("foreground
      fattening", common in learned depth and stereo).
    * ``g`` is drawn uniformly from [1 - ``compression``, 1]: the depth range squeezed about its
      median, as a relative-depth model's output looks after a scale fit (near too far, far too
      near); no affine map in depth or disparity undoes it.
    * ``n`` is unit Gaussian noise, clamped so the factor stays >= 0.5.

    All random draws come from a generator seeded with (seed, camera), never a hidden counter,
    so a resumed run sees exactly the errors of an uninterrupted one. :meth:`family` builds the
    named families of :data:`ERROR_FAMILIES`.

    ``edge_blur`` > 0 smooths the true inverse depth over a (2 * edge_blur + 1)^2 box before the
    errors are applied (before ``blur``), as monocular models do at occlusion edges: a silhouette
    becomes a ramp of pixels at depths between the object and the background (the "flying pixels" that
    :func:`dreamer.scene.depth_edges.straddling_pixels` keeps from being lifted). 0: sharp edges.
    """

    def __init__(self, world: ProceduralWorld, *, scale_range: tuple[float, float] = (0.5, 2.0),
                 distortion: float = 0.10, noise: float = 0.01, seed: int = 0, distortion_kind: str = "bend",
                 object_error: float = 0.0, disparity_shift: float = 0.0, smear: float = 0.0, edge_blur: int = 0,
                 compression: float = 0.0, fatten: float = 0.0):
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
        if not 0 <= object_error < 1:
            raise ValueError(f"object_error must be in [0, 1), got {object_error}")
        if not 0 <= disparity_shift <= 1:
            raise ValueError(f"disparity_shift must be in [0, 1], got {disparity_shift}")
        if not 0 <= smear <= 0.1:
            raise ValueError(f"smear must be in [0, 0.1] (a fraction of the image size), got {smear}")
        if not 0 <= compression < 1:
            raise ValueError(f"compression must be in [0, 1), got {compression}")
        if not 0 <= fatten <= 0.1:
            raise ValueError(f"fatten must be in [0, 0.1] (a fraction of the image size), got {fatten}")
        self.compression, self.fatten = compression, fatten
        self.world, self.scale_range, self.distortion, self.noise, self.seed = world, (lo, hi), distortion, noise, seed
        self.object_error, self.disparity_shift, self.smear = object_error, disparity_shift, smear

    @classmethod
    def exact(cls, world: ProceduralWorld) -> "WorldDepthEstimator":
        """No errors: the true z-depth."""
        return cls(world, scale_range=(1.0, 1.0), distortion=0.0, noise=0.0)

    @classmethod
    def family(cls, world: ProceduralWorld, name: str, *, seed: int = 0) -> "WorldDepthEstimator":
        """The estimator of the named error family (a key of :data:`ERROR_FAMILIES`).

        Every family has an unknown scale per view in 0.4-2.5 and 1% pixel noise. "scale": only
        those. "bend": +-10% quadratic distortion. "waves": +-10% plane waves of 0.3-1.5 cycles
        per image. "objects": +-10% per surface. "disparity": affine in disparity (k up to
        0.25 / median depth). "smear": depth edges blurred over 0.8% of the image size.
        "power": the range compressed by an exponent of 0.65-1. "fatten": foreground grown by 1%
        of the image size (at least a pixel). "mixed": +-15% waves, 2% noise and smeared edges.
        """
        if name not in ERROR_FAMILIES:
            raise ValueError(f"error family must be one of {tuple(ERROR_FAMILIES)}, got {name!r}")
        return cls(world, seed=seed, **{**_FAMILY_BASE, **ERROR_FAMILIES[name]})

    def _rng(self, camera: Camera) -> np.random.Generator:
        return _camera_rng(camera, self.seed)

    def error_model(self, camera: Camera) -> tuple[float, Tensor]:
        """(scale, distortion field d [H,W]) used for ``camera``."""
        e = self.errors(camera)
        return e.scale, e.field

    def errors(self, camera: Camera, truth: Tensor | None = None) -> DepthErrors:
        """Every error drawn for ``camera`` (``truth``: its smeared true depth, if at hand)."""
        rng = self._rng(camera)
        lo, hi = self.scale_range
        scale = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        H, W = camera.height, camera.width
        yy, xx = np.meshgrid(np.arange(H) + 0.5, np.arange(W) + 0.5, indexing="ij")
        field = np.zeros((H, W))
        if self.distortion_kind == "waves":
            side = max(H, W)
            for _ in range(_DISTORTION_WAVES):
                angle = rng.uniform(0, 2 * math.pi)
                freq = rng.uniform(*_DISTORTION_FREQ) / side
                phase = rng.uniform(0, 2 * math.pi)
                field += np.cos(2 * math.pi * freq * (math.cos(angle) * xx + math.sin(angle) * yy) + phase)
        elif self.distortion_kind == "bend":
            diag = math.hypot(H, W)
            x, y = (xx - W / 2) / (diag / 2), (yy - H / 2) / (diag / 2)  # within the unit disc
            a = rng.normal(size=5)
            field = a[0] * x + a[1] * y + a[2] * x * x + a[3] * x * y + a[4] * y * y
        field -= field.mean()
        peak = np.abs(field).max()
        d = field * (self.distortion / peak) if peak > 0 and self.distortion > 0 else np.zeros_like(field)
        noise_seed = int(rng.integers(0, 2**62))
        # The later families draw from their own stream, so adding one never changes the others.
        more = np.random.default_rng(rng.integers(0, 2**62))
        offsets = more.uniform(-self.object_error, self.object_error, size=len(self.world.object_names))
        u = more.uniform(-1.0, 1.0)
        exponent = float(more.uniform(1.0 - self.compression, 1.0))
        k = 0.0
        if self.disparity_shift > 0:
            t = truth if truth is not None else self._smeared_truth(camera)
            t_ref, t_max = float(t.median()), float(t.max())
            if u < 0:  # keep 1 + k t >= 0.5 on the farthest pixel
                u = max(u, -0.5 * t_ref / (self.disparity_shift * t_max))
            k = self.disparity_shift * u / t_ref
        return DepthErrors(scale, torch.from_numpy(d.astype(np.float32)),
                           offsets if self.object_error > 0 else np.zeros_like(offsets), k, noise_seed,
                           exponent if self.compression > 0 else 1.0)

    def _smeared_truth(self, camera: Camera) -> Tensor:
        return self._edges(self.world.depth(camera), camera)

    def _edges(self, truth: Tensor, camera: Camera) -> Tensor:
        """The true depth with the estimator's edge errors: fattened foreground, then smear."""
        side = max(camera.height, camera.width)
        if self.fatten > 0:
            truth = _fattened(truth, max(1, round(self.fatten * side)))
        return _gaussian_blur(truth, self.smear * side)

    def estimate(self, image: Tensor, *, camera: Camera) -> Tensor:
        _check_rgb(image, camera)
        if self.object_error > 0:
            r = self.world.render(camera)
            truth, ids = r.depth, r.object_id
        else:
            truth, ids = self.world.depth(camera), None
        truth = truth.to(image.device)
        if self.edge_blur > 0:
            b = self.edge_blur
            disp = F.pad((1.0 / truth)[None, None], (b, b, b, b), mode="replicate")
            truth = 1.0 / F.avg_pool2d(disp, 2 * b + 1, stride=1)[0, 0]
        t = self._edges(truth, camera)
        err = self.errors(camera, t)
        if err.exponent != 1.0:
            m = t.median()
            t = m * (t / m) ** err.exponent
        factor = err.scale * (1.0 + err.field.to(t))
        if err.disparity_shift != 0.0:
            factor = factor / (1.0 + err.disparity_shift * t)
        if ids is not None:
            factor = factor * (1.0 + torch.from_numpy(err.object_offsets).to(t)[ids.long()])
        g = torch.Generator().manual_seed(err.noise_seed)
        n = torch.randn(camera.height, camera.width, generator=g)
        factor = factor * (1.0 + self.noise * n.to(t)).clamp_min(0.5)
        return (t * factor).clamp_min(1e-6).to(image.device)


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
