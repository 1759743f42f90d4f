"""Train Gaussian splats on a dreamed scene: init from the cloud, masked L1 + D-SSIM, densify.

Training views
    Every dreamed view (its completed image; every pixel was dreamed, so all pixels count), plus
    extra views re-rendered from the point cloud around each dreamed camera: the camera orbits a
    pivot on its optical axis at the view's centre depth by small yaw / pitch offsets (the
    original method's +-5 degree "hemisphere" views, which fight overfitting to the few dreamed
    poses). An extra view is the z-buffered point render (:func:`dreamer.render.render_points`)
    and its loss mask is the render's coverage: pixels no point covers carry no information and
    contribute nothing (the original trained them as black).

Loss
    ``l1_weight * L1 + dssim_weight * (1 - SSIM)``, both masked (:mod:`dreamer.splats.losses`), on
    the render composited over a random background colour (``random_background``: a view of a
    dreamed scene has no background, so transparency is an error wherever the view is valid),
    plus ``alpha_weight`` times the mean of 1 - alpha over the valid pixels (the same reason, made
    explicit: without it the splats of a small run stay a few percent transparent between their
    centres and videos show speckles of background),
    plus ``depth_weight`` times the depth loss (:func:`~dreamer.splats.losses.inverse_depth_l1`)
    where the view knows its depth: a dreamed view's aligned depth map (every pixel), an extra
    view's point-render depth (the pixels the cloud covers). The rendered depth is the splats'
    expected z-depth (both rasterizer paths return it, with gradients), compared where the
    render is at least half opaque.

Repaired views
    Given a ``refiner`` (a :class:`~dreamer.backends.Refiner`), ``repair_rounds`` rounds, the
    first at iteration ``repair_start`` and then every ``repair_every``, render the splats from
    novel cameras (between the dreamed ones first, then further out:
    :func:`dreamer.splats.repair.repair_rounds`), repair each render with the nearest dreamed
    view as reference, and add the results as pseudo-views: every pixel counts, the loss is
    weighted by ``repair_weight``, no depth. Pseudo-views stay in the training set to the end.

Optimisation
    INRIA's recipe: Adam per parameter group, the means' learning rate decaying exponentially and
    scaled by the scene scale, SH degree raised every ``sh_degree_interval`` iterations,
    densification and pruning by gsplat's ``DefaultStrategy`` (on CPU through the pure-torch
    rasterizer's gsplat-style ``info``).

Resuming
    With ``checkpoint_dir`` the parameters, optimizer states, strategy state, the pseudo-views
    made so far (8-bit, as they are trained on) and the iteration are saved every
    ``checkpoint_every`` iterations (atomically); a rerun with the same settings and
    inputs continues from the last checkpoint and, given the same seed, ends with the same
    result as an uninterrupted run. A finished run writes its result, ``gaussians.ply``, and
    ``done.json``, and deletes the checkpoint (unless ``keep_checkpoint``): a rerun then loads the
    result instead of training again. Other settings or inputs (a fingerprint of both) start
    over.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import torch
from torch import Tensor

from dreamer.cameras import Camera
from dreamer.pointcloud import PointCloud
from dreamer.scene.result import DreamResult
from dreamer.splats.gaussians import Gaussians, merge_points_on_grid
from dreamer.splats.losses import inverse_depth_l1, masked_l1, masked_psnr, masked_ssim
from dreamer.splats.rasterizer import num_sh_bases, rasterize

__all__ = ["SplatConfig", "TrainingView", "SplatTrainingError", "train_gaussians", "build_training_views",
           "scene_scale", "repair_cameras", "describe_refiner", "CHECKPOINT_FILE", "DONE_FILE", "RESULT_FILE"]

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]

CHECKPOINT_FILE = "checkpoint.pt"
DONE_FILE = "done.json"
RESULT_FILE = "gaussians.ply"
CONFIG_FILE = "config.json"
_FORMAT = 2
EXPORT_FORMATS = ("ply", "spz")
"""Formats :attr:`SplatConfig.export` accepts."""
# Settings that change neither the result nor the resume point's meaning (the export formats
# are written from the result).
_NOT_HASHED = ("device", "checkpoint_every", "log_every", "export", "spz_version")


class SplatTrainingError(RuntimeError):
    """Training cannot go on: the loss diverged (NaN / inf) or every Gaussian was pruned."""


@dataclass(frozen=True)
class SplatConfig:
    """Settings of the Gaussian splat stage (defaults: INRIA's 3DGS recipe for a ~3k-iteration run)."""

    iterations: int = 3000
    """Training iterations (one view per iteration)."""
    sh_degree: int = 3
    """Highest spherical-harmonics degree (0 = view-independent colour)."""
    sh_degree_interval: int = 1000
    """Raise the SH degree in use by one every this many iterations, up to sh_degree."""
    lr_means: float = 1.6e-4
    """Initial learning rate of the centres, times the scene scale."""
    lr_means_final: float = 1.6e-6
    """Learning rate of the centres at the last iteration (exponential decay), times the scene scale."""
    lr_quats: float = 1e-3
    """Learning rate of the rotations (quaternions)."""
    lr_scales: float = 5e-3
    """Learning rate of the log scales."""
    lr_opacities: float = 5e-2
    """Learning rate of the opacity logits."""
    lr_sh0: float = 2.5e-3
    """Learning rate of the SH DC (base colour) coefficients."""
    lr_shN: float = 1.25e-4
    """Learning rate of the higher SH coefficients (INRIA: the DC rate / 20)."""
    l1_weight: float = 0.8
    """Weight of the (masked) L1 loss."""
    dssim_weight: float = 0.2
    """Weight of the (masked) D-SSIM loss, 1 - SSIM."""
    random_background: bool = True
    """Composite the render over a random colour (a new one each iteration) before the loss: a dreamed view has no
    background, so the splats learn to be opaque wherever it shows a surface (over black, a dark or half-transparent
    surface would do)."""
    alpha_weight: float = 0.5
    """Weight of a loss pulling the render's opacity to 1 wherever a view is valid (the mean of 1 - alpha there): a
    dreamed scene has no background, so a pixel the splats do not cover fully is a gap in every video."""
    masked: bool = True
    """Mask the extra views' holes out of the loss; false trains them as black (the original method, for comparison)."""
    init_opacity: float = 0.5
    """Opacity of the Gaussians made from the points."""
    init_scale: float = 1.0
    """Initial standard deviation as a multiple of each point's footprint (the world size of the pixel it came from)."""
    init_cell: float = 1.0
    """The initial Gaussians: the cloud's points merged to one per cell of a footprint grid, cells
    this many footprints wide (rounded up to a power of two: 1 gives cells of one to two training
    pixels, so no more Gaussians than the training views have pixels to constrain them); 0 = one
    Gaussian per point."""
    densify: bool = True
    """Densify (clone / split) and prune with gsplat's DefaultStrategy."""
    refine_start_iter: int = 500
    """First iteration of densification."""
    refine_stop_iter: int = 2500
    """No densification from this iteration on."""
    refine_every: int = 100
    """Densify and prune every this many iterations."""
    grow_grad2d: float = 2e-4
    """Densify Gaussians whose mean screen-space gradient (normalized to [-1, 1] screen units) exceeds this."""
    grow_scale3d: float = 0.01
    """Clone Gaussians smaller than this times the scene scale; split larger ones."""
    prune_opa: float = 0.005
    """Prune Gaussians with a lower opacity."""
    prune_scale3d: float = 0.1
    """Prune Gaussians larger than this times the scene scale (after the first opacity reset)."""
    reset_every: int = 3000
    """Opacity reset period handed to DefaultStrategy (gsplat 1.5.3 never actually resets: an
    operator-precedence slip)."""
    extra_views: bool = True
    """Train on extra views re-rendered from the point cloud around each dreamed camera (false: the
    dreamed views only)."""
    extra_yaws: tuple[float, ...] = (5.0, -5.0, 0.0, 0.0)
    """Yaw offsets (degrees, + = right) of the extra views around each dreamed camera, paired with extra_pitches."""
    extra_pitches: tuple[float, ...] = (0.0, 0.0, 5.0, -5.0)
    """Pitch offsets (degrees, + = up) of the extra views, one per extra_yaws entry."""
    depth_weight: float = 0.0
    """Weight of the depth loss against the views' known depth (0 = off): L1 of inverse z-depth, relative to the
    scene's inverse depth."""
    repair_rounds: int = 4
    """With a refiner (the refine step): rounds of repaired novel views, each looking further out than the last (0 =
    none)."""
    repair_start: int = 500
    """Iteration of the first repair round."""
    repair_every: int = 500
    """Iterations between repair rounds."""
    repair_views: int = 8
    """Novel cameras repaired per round."""
    repair_angle: float = 25.0
    """Camera spread of the last round: its cameras orbit the dreamed ones by this many degrees (earlier rounds by
    less)."""
    repair_dolly: float = 0.15
    """The last round's cameras also move toward the scene by this fraction of its depth (earlier rounds by less)."""
    repair_weight: float = 0.5
    """Loss weight of a repaired view (a dreamed view weighs 1)."""
    extra_splat_scale: float | None = None
    """Point size of the extra views' point renders; default: the dream loop's splat_scale (1.5 if unknown)."""
    near_plane: float = 0.01
    """Gaussians closer to a camera than this z-depth are not drawn."""
    seed: int = 0
    """Seed of the view order and of densification's random splits."""
    device: str = "auto"
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda``, ``cuda:N``."""
    checkpoint_every: int = 500
    """With a checkpoint folder: save a resumable checkpoint every this many iterations."""
    log_every: int = 100
    """Log the loss every this many iterations."""
    export: tuple[str, ...] = ("ply",)
    """Files of the trained splats: ply (gaussians.ply, the standard 3DGS layout) and/or spz
    (gaussians.spz, Niantic's compressed format, about a tenth of the size), e.g. --export ply spz."""
    spz_version: Literal[3, 4] = 3
    """Version of gaussians.spz: 3 (gzip; read by splat-transform, Spark, three.js) or 4 (zstd,
    smaller; read by splat-transform, three.js and the PlayCanvas engine, not by Spark 2.1)."""

    def __post_init__(self) -> None:
        ints = {"iterations": 1, "sh_degree_interval": 1, "refine_every": 1, "checkpoint_every": 1, "log_every": 1,
                "refine_start_iter": 0, "refine_stop_iter": 0, "reset_every": 1, "repair_rounds": 0,
                "repair_start": 0, "repair_every": 1, "repair_views": 1}
        for name, lo in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"SplatConfig.{name} must be an integer >= {lo}, got {v!r}")
        if isinstance(self.sh_degree, bool) or not isinstance(self.sh_degree, int) or not 0 <= self.sh_degree <= 3:
            raise ValueError(f"SplatConfig.sh_degree must be 0, 1, 2 or 3, got {self.sh_degree!r}")
        positive = ("lr_means", "lr_means_final", "lr_quats", "lr_scales", "lr_opacities", "lr_sh0", "lr_shN",
                    "init_scale", "near_plane")
        for name in positive:
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not (v > 0 and math.isfinite(v)):
                raise ValueError(f"SplatConfig.{name} must be a positive number, got {v!r}")
        for name in ("l1_weight", "dssim_weight", "grow_grad2d", "grow_scale3d", "prune_opa", "prune_scale3d",
                     "depth_weight", "repair_weight", "alpha_weight", "init_cell"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"SplatConfig.{name} must be a number >= 0, got {v!r}")
        if self.l1_weight + self.dssim_weight <= 0:
            raise ValueError("SplatConfig: l1_weight + dssim_weight must be > 0")
        if not 0.0 < self.init_opacity < 1.0:
            raise ValueError(f"SplatConfig.init_opacity must be in (0, 1), got {self.init_opacity!r}")
        if len(self.extra_yaws) != len(self.extra_pitches):
            raise ValueError(f"SplatConfig.extra_yaws ({len(self.extra_yaws)} values) and extra_pitches "
                             f"({len(self.extra_pitches)}) must pair up: one (yaw, pitch) per extra view")
        for name in ("extra_yaws", "extra_pitches"):
            for a in getattr(self, name):
                if not isinstance(a, (int, float)) or not (math.isfinite(a) and abs(a) < 90):
                    raise ValueError(f"SplatConfig.{name} must hold angles in (-90, 90) degrees, got {a!r}")
        if not 0.0 <= self.repair_angle < 90.0:
            raise ValueError(f"SplatConfig.repair_angle must be in [0, 90) degrees, got {self.repair_angle!r}")
        if not 0.0 <= self.repair_dolly < 1.0:
            raise ValueError(f"SplatConfig.repair_dolly must be in [0, 1) (a fraction of the scene's depth), "
                             f"got {self.repair_dolly!r}")
        export = self.export
        if isinstance(export, str):  # "spz" or "ply,spz" from a batch file
            export = tuple(e for e in export.replace(",", " ").split())
            object.__setattr__(self, "export", export)
        bad = [e for e in export if e not in EXPORT_FORMATS]
        if not export or bad:
            raise ValueError(f"SplatConfig.export must name one or more of {list(EXPORT_FORMATS)}, "
                             f"got {list(export)!r}")
        if self.spz_version not in (3, 4) or isinstance(self.spz_version, bool):
            raise ValueError(f"SplatConfig.spz_version must be 3 (gzip) or 4 (zstd), got {self.spz_version!r}")
        if self.extra_splat_scale is not None and not self.extra_splat_scale > 0:
            raise ValueError(f"SplatConfig.extra_splat_scale must be > 0 or None, got {self.extra_splat_scale!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class TrainingView:
    """One training image: ``camera``, ``image`` [H,W,3] in [0,1], ``mask`` [H,W] bool (None =
    every pixel counts), the index of the dreamed view it belongs to (``source``; for a
    pseudo-view the nearest one), whether it is an extra (re-rendered) view, its z-``depth``
    [H,W] where known (0 = unknown pixel; None = no depth), its loss ``weight`` and whether it
    is a repaired pseudo-view (and of which ``round``)."""

    camera: Camera
    image: Tensor
    mask: Tensor | None
    source: int
    extra: bool = False
    depth: Tensor | None = None
    weight: float = 1.0
    pseudo: bool = False
    round: int = -1


# ------------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------------
def _check_result(result: DreamResult) -> None:
    if not isinstance(result, DreamResult):
        raise TypeError(f"result must be a DreamResult, got {type(result).__name__}")
    if not isinstance(result.points, PointCloud) or len(result.points) == 0:
        raise ValueError("the dreamed scene has an empty point cloud: nothing to make Gaussians from")
    if not result.views:
        raise ValueError("the dreamed scene has no views to train on")
    for i, v in enumerate(result.views):
        cam = v.camera
        if not isinstance(cam, Camera):
            raise TypeError(f"view {i}: camera must be a Camera, got {type(cam).__name__}")
        if not isinstance(v.image, Tensor) or v.image.ndim != 3 or v.image.shape[-1] != 3:
            raise ValueError(f"view {i}: image must be a tensor [H,W,3], got {getattr(v.image, 'shape', None)}")
        cam.check_image(v.image, f"view {i} image")
        if not torch.isfinite(v.image).all():
            raise ValueError(f"view {i}: image has non-finite values")


def _extra_splat_scale(result: DreamResult, config: SplatConfig) -> tuple[float, float]:
    """(splat_scale, max_splat_px) of the extra views' point renders: the settings the dream loop
    rendered its cloud with (``result.config``, a DreamConfig or its dict), unless overridden."""
    dream = result.config
    get = dream.get if isinstance(dream, dict) else (lambda k, d: getattr(dream, k, d))
    splat_scale = config.extra_splat_scale
    if splat_scale is None:
        splat_scale = float(get("splat_scale", None) or 1.5)
    return splat_scale, float(get("max_splat_px", None) or 32.0)


def build_training_views(result: DreamResult, config: SplatConfig = SplatConfig(), *,
                         device: torch.device | str | None = None,
                         on_progress: ProgressFn | None = None) -> list[TrainingView]:
    """The dreamed views (all pixels valid) and, per dreamed view (with ``config.extra_views``),
    the extra views of ``config.extra_yaws`` / ``extra_pitches`` re-rendered from ``result.points`` with their
    coverage as mask (None with ``config.masked`` false). Extra views that no point covers are
    left out. Images and masks are put on ``device`` (default: the points' device)."""
    from dreamer.render import render_points
    from dreamer.trajectories import center_depth_from, orbit_camera

    _check_result(result)
    device = torch.device(device) if device is not None else result.points.device
    points = result.points.to(device)
    splat_scale, max_px = _extra_splat_scale(result, config)
    views: list[TrainingView] = []
    n_extra = len(config.extra_yaws) if config.extra_views else 0
    total = len(result.views) * (1 + n_extra)
    for i, v in enumerate(result.views):
        cam = v.camera.to(device)
        depth = v.depth.to(device=device, dtype=torch.float32) if isinstance(v.depth, Tensor) else None
        views.append(TrainingView(cam, v.image.to(device=device, dtype=torch.float32).clamp(0, 1), None, i,
                                  depth=depth))
        if n_extra:
            try:
                pivot = center_depth_from(v.depth)
            except (ValueError, TypeError) as e:
                raise ValueError(f"view {i}: cannot find the pivot of its extra views: {e}") from None
            for yaw, pitch in zip(config.extra_yaws, config.extra_pitches):
                ecam = orbit_camera(cam, pivot, float(yaw), float(pitch))
                r = render_points(points, ecam, splat_scale=splat_scale, max_splat_px=max_px)
                if not r.covered.any():
                    log.warning("view %d: the extra view at yaw %g, pitch %g sees no point; left out", i, yaw, pitch)
                    continue
                views.append(TrainingView(ecam, r.image.float().clamp(0, 1), r.covered if config.masked else None,
                                          i, extra=True, depth=torch.where(r.covered, r.depth, 0.0).float()))
        if on_progress is not None:
            on_progress("splat views", (i + 1) * (1 + n_extra), total)
    return views


def scene_scale(result: DreamResult) -> float:
    """The scene's size for the learning rate of the centres and the densification thresholds:
    1.1 x the larger of the camera centres' spread (their largest distance from their mean,
    INRIA's "cameras extent") and the median distance of the points from that mean. The second
    term matters: the generation paths are often rotation only, with every camera at one place."""
    centres = torch.stack([v.camera.center.detach().double().cpu() for v in result.views])
    mid = centres.mean(0)
    cam_radius = float((centres - mid).norm(dim=1).max())
    pts = float((result.points.xyz.detach().double().cpu() - mid).norm(dim=1).median())
    s = 1.1 * max(cam_radius, pts)
    if not (s > 0 and math.isfinite(s)):
        raise ValueError(f"cannot find the scene scale (got {s}): are all points at the camera centre?")
    return s


# ------------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------------
def describe_refiner(refiner) -> dict | None:
    """What decides a refiner's answers, for fingerprints: its own ``describe()`` when it has
    one, else its class name (None without a refiner)."""
    if refiner is None:
        return None
    own = getattr(refiner, "describe", None)
    return own() if callable(own) else {"kind": type(refiner).__qualname__}


def _fingerprint(result: DreamResult, config: SplatConfig, init: Gaussians | None = None, refiner=None) -> str:
    """Hash of the settings that change the result, of the refiner and of the inputs (points,
    views and the Gaussians training starts from, when given)."""
    h = hashlib.sha256()
    cfg = {k: v for k, v in config.to_dict().items() if k not in _NOT_HASHED}
    if refiner is None:  # the repair settings do nothing without a refiner
        cfg = {k: v for k, v in cfg.items() if not k.startswith("repair_")}
    h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    if refiner is not None:
        h.update(json.dumps({"refiner": describe_refiner(refiner)}, sort_keys=True, default=str).encode())
    h.update(json.dumps({"splat_scale": _extra_splat_scale(result, config)}).encode())

    def add(t: Tensor) -> None:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())

    for t in (result.points.xyz, result.points.rgb, result.points.radius):
        add(t)
    for v in result.views:
        for t in (v.camera.K, v.camera.c2w, v.image, v.depth):
            add(t)
        h.update(f"{v.camera.width}x{v.camera.height}".encode())
    if init is not None:
        h.update(b"init")
        for t in init.params().values():
            add(t)
    return h.hexdigest()[:20]


def _save_checkpoint(folder: Path, *, iteration: int, params: dict, optimizers: dict, strategy_state: dict,
                     fingerprint: str, pseudo_views: list[TrainingView] = ()) -> None:
    from dreamer.io import atomic_path

    state = {
        "format": _FORMAT,
        "fingerprint": fingerprint,
        "iteration": iteration,
        "params": {k: p.detach().cpu() for k, p in params.items()},
        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
        "strategy_state": {k: (v.cpu() if isinstance(v, Tensor) else v) for k, v in strategy_state.items()},
        "pseudo_views": [{"camera": v.camera.to_dict(), "source": v.source, "round": v.round,
                          "image": (v.image.detach().cpu() * 255.0).round().to(torch.uint8)} for v in pseudo_views],
    }
    with atomic_path(folder / CHECKPOINT_FILE) as tmp:
        torch.save(state, tmp)


def _load_checkpoint(folder: Path, fingerprint: str, device: torch.device) -> dict | None:
    path = folder / CHECKPOINT_FILE
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # a damaged file: start over rather than fail
        log.warning("%s cannot be read (%s); training from scratch", path, e)
        return None
    if state.get("format") != _FORMAT or state.get("fingerprint") != fingerprint:
        log.info("%s belongs to other settings or inputs; training from scratch", path)
        return None
    return state


def _load_finished(folder: Path, fingerprint: str, config: SplatConfig, device: torch.device) -> Gaussians | None:
    """The result of a finished run in ``folder`` (its ``gaussians.ply``; a checkpoint at the last
    iteration for folders written before the result file was), or None."""
    if (folder / RESULT_FILE).is_file():
        try:
            return Gaussians.load_ply(folder / RESULT_FILE, device=device)
        except (OSError, ValueError) as e:
            log.warning("%s cannot be read (%s); training again", folder / RESULT_FILE, e)
            return None
    state = _load_checkpoint(folder, fingerprint, device)
    if state is not None and state["iteration"] >= config.iterations:
        return Gaussians.from_params({k: v.to(device) for k, v in state["params"].items()})
    return None


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------
def _make_optimizers(params: dict[str, torch.nn.Parameter], config: SplatConfig, scale: float) -> dict:
    lrs = {"means": config.lr_means * scale, "quats": config.lr_quats, "scales": config.lr_scales,
           "opacities": config.lr_opacities, "sh0": config.lr_sh0, "shN": config.lr_shN}
    return {k: _adam(p, lrs[k]) for k, p in params.items() if p.requires_grad}


def _adam(param: torch.nn.Parameter, lr: float) -> torch.optim.Adam:
    """Adam over one parameter: the fused kernel where the device has one (on CPU about 5x faster
    than the per-tensor loop, which took ~0.4 s of a 437k-Gaussian iteration; same update up to
    float rounding), else the default implementation."""
    try:
        return torch.optim.Adam([param], lr=lr, eps=1e-15, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam([param], lr=lr, eps=1e-15)


def _means_lr(config: SplatConfig, scale: float, it: int) -> float:
    """INRIA's exponential decay from lr_means to lr_means_final over the run (times the scale)."""
    t = min(max(it / max(config.iterations - 1, 1), 0.0), 1.0)
    return scale * math.exp((1 - t) * math.log(config.lr_means) + t * math.log(config.lr_means_final))


def _view_index(config: SplatConfig, n_views: int, it: int, cache: dict) -> int:
    """A fresh random order of the views every epoch, a pure function of (seed, epoch, number of
    views), so a resumed run draws the same views as an uninterrupted one (repair rounds add
    views: the epochs are then counted in the larger set)."""
    epoch = it // n_views
    if cache.get("epoch") != (epoch, n_views):
        g = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        cache["epoch"], cache["perm"] = (epoch, n_views), torch.randperm(n_views, generator=g).tolist()
    return cache["perm"][it % n_views]


def _make_strategy(config: SplatConfig):
    from gsplat.strategy import DefaultStrategy

    return DefaultStrategy(
        prune_opa=config.prune_opa, grow_grad2d=config.grow_grad2d, grow_scale3d=config.grow_scale3d,
        prune_scale3d=config.prune_scale3d, refine_start_iter=config.refine_start_iter,
        refine_stop_iter=config.refine_stop_iter, reset_every=config.reset_every,
        refine_every=config.refine_every, verbose=False,
    )


def _pseudo_views_from_state(state: dict, config: SplatConfig, device: torch.device) -> list[TrainingView]:
    return [TrainingView(Camera.from_dict(e["camera"]).to(device), (e["image"].float() / 255.0).to(device), None,
                         int(e["source"]), weight=config.repair_weight, pseudo=True, round=int(e["round"]))
            for e in state.get("pseudo_views", [])]


def _background(config: SplatConfig, it: int, device: torch.device) -> Tensor | None:
    """The background colour [3] of iteration ``it`` (random, a function of the seed and the
    iteration), or None without ``random_background``."""
    if not config.random_background:
        return None
    g = torch.Generator().manual_seed(config.seed * 1_000_003 + it + 0x5EED)
    return torch.rand(3, generator=g).to(device)


def _loss(out, view: TrainingView, config: SplatConfig, background: Tensor | None = None
          ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(total, L1, SSIM, depth loss) of a render (composited over ``background`` [3] when
    given) against a training view, masked, times the view's weight."""
    rgb = out.rgb if background is None else out.rgb + (1.0 - out.alpha)[..., None] * background
    l1 = masked_l1(rgb, view.image, view.mask)
    ssim = masked_ssim(rgb, view.image, view.mask) if config.dssim_weight > 0 else rgb.new_ones(())
    total = config.l1_weight * l1 + config.dssim_weight * (1.0 - ssim)
    if config.alpha_weight > 0:
        gap = 1.0 - out.alpha
        valid = None if view.mask is None else view.mask.to(gap.dtype)
        gap = gap.mean() if valid is None else (gap * valid).sum() / valid.sum().clamp_min(1.0)
        total = total + config.alpha_weight * gap
    depth_loss = out.rgb.new_zeros(())
    if config.depth_weight > 0 and view.depth is not None:
        drawn = out.alpha.detach() > 0.5
        mask = drawn if view.mask is None else (drawn & view.mask)
        depth_loss = inverse_depth_l1(out.depth, view.depth, mask)
        total = total + config.depth_weight * depth_loss
    return view.weight * total, l1, ssim, depth_loss


def _adam_steps(params: dict, optimizers: dict, it: int, sh_in_use: int) -> None:
    """One Adam step per parameter group.

    While the SH degree in use is 0 the higher coefficients (``shN``) take no part in the render
    and get no gradient. Adam with a zero gradient from zero moments moves nothing and only
    counts the step, so that is all that is done here (instead of a zero gradient the size of
    ``shN`` and an Adam pass over it every iteration); when the first gradient comes, the count
    is the one an Adam stepped with zero gradients all along would have, so the bias correction
    is unchanged.
    """
    for name, o in optimizers.items():
        p = params[name]
        state = o.state.get(p)
        if name == "shN" and sh_in_use == 0:
            if state:
                state["step"] += 1
            continue
        if p.grad is None:  # not rendered this iteration: a zero gradient, as before
            p.grad = torch.zeros_like(p)
        if not state and it > 0:
            # First gradient after `it` skipped steps: Adam creates its state (zero moments, step
            # 1, nothing moves on a zero gradient), then the count is set to `it`.
            real = p.grad
            p.grad = torch.zeros_like(p)
            o.step()
            step = o.state[p]["step"]
            if isinstance(step, Tensor):
                step.fill_(float(it))
            else:
                o.state[p]["step"] = float(it)
            p.grad = real
        o.step()
        o.zero_grad(set_to_none=True)


def _step(loss: Tensor, params: dict, optimizers: dict, strategy, strategy_state: dict, info: dict,
          config: SplatConfig, scale: float, it: int, fork_devices: list, sh_in_use: int) -> None:
    """Backward, one Adam step per group, then densification / pruning (seeded per iteration)."""
    loss.backward()
    optimizers["means"].param_groups[0]["lr"] = _means_lr(config, scale, it)
    _adam_steps(params, optimizers, it, sh_in_use)
    if strategy is not None:
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(config.seed * 1_000_003 + it)
            strategy.step_post_backward(params, optimizers, strategy_state, it, info, packed=False)
        if params["means"].shape[0] == 0:
            raise SplatTrainingError(f"every Gaussian was pruned at iteration {it}; lower prune_opa")


def repair_cameras(result: DreamResult, config: SplatConfig) -> list[list[Camera]]:
    """The novel cameras of each repair round that falls inside the run (one list per round;
    see :func:`dreamer.splats.repair.repair_rounds`), around the cameras of the trajectory's
    dreamed views and their pivots (the median depth at the centre of each view). Views the
    completion pass added (``stats["completion"]``) are not centres of repair cameras, so the
    completion pass can check exactly the cameras that training will repair."""
    from dreamer.scene.completion import COMPLETION
    from dreamer.splats.repair import repair_rounds, safe_box
    from dreamer.trajectories import center_depth_from

    own = [v for v in result.views if not v.stats.get(COMPLETION)] or list(result.views)
    cams = [v.camera for v in own]
    pivots = [center_depth_from(v.depth) for v in own]
    # The box comes from the trajectory's own views (their depth maps), which the completion
    # pass does not change: training and the completion pass plan the same cameras.
    from dreamer.cameras import unproject_depth

    surface = torch.cat([unproject_depth(v.depth.float(), v.camera)[::4, ::4].reshape(-1, 3) for v in own])
    box = safe_box(surface, torch.stack([c.center for c in cams]))
    rounds = repair_rounds(cams, pivots, rounds=config.repair_rounds, views=config.repair_views,
                           angle=config.repair_angle, dolly=config.repair_dolly, box=box)
    return [rounds[r] for r in sorted(_repair_schedule(config, len(rounds)).values())]


def _repair_schedule(config: SplatConfig, n_rounds: int) -> dict[int, int]:
    """{iteration: round} of the repair rounds that fall inside the run."""
    its = {config.repair_start + r * config.repair_every: r for r in range(n_rounds)}
    return {it: r for it, r in its.items() if it < config.iterations}


def _make_pseudo_views(params: dict, cameras: list[Camera], round_index: int, sh_deg: int, config: SplatConfig,
                       result: DreamResult, pivots: list[float], refiner, device: torch.device) -> list[TrainingView]:
    """Render the current splats from ``cameras``, repair each render with the nearest dreamed
    view as reference, and return them as pseudo-views (8-bit, weight ``repair_weight``)."""
    from dreamer.splats.repair import nearest_camera, quantize_image

    dreamed = [v.camera for v in result.views]
    out = []
    with torch.no_grad():
        sh = torch.cat([params["sh0"], params["shN"][:, :num_sh_bases(sh_deg) - 1]], 1)
        for k, cam in enumerate(cameras):
            cam = cam.to(device)
            render = rasterize(params["means"], params["quats"], torch.exp(params["scales"]),
                               torch.sigmoid(params["opacities"]), sh, cam, sh_degree=sh_deg,
                               near_plane=config.near_plane).rgb.clamp(0, 1)
            src = nearest_camera(cam, dreamed, pivots)
            g = torch.Generator().manual_seed(config.seed * 1_000_003 + 7919 * (round_index + 1) + k)
            repaired = refiner.refine(render, reference=result.views[src].image.to(device), camera=cam, generator=g)
            cam.check_image(repaired, "the refiner's output")
            out.append(TrainingView(cam, quantize_image(repaired).to(device), None, src, weight=config.repair_weight,
                                    pseudo=True, round=round_index))
    return out


def train_gaussians(
    result: DreamResult,
    config: SplatConfig = SplatConfig(),
    on_progress: ProgressFn | None = None,
    *,
    checkpoint_dir: str | Path | None = None,
    history: list | None = None,
    init: Gaussians | None = None,
    refiner=None,
    keep_checkpoint: bool = False,
) -> Gaussians:
    """Train Gaussian splats on a dreamed scene (see the module docstring).

    Args:
        result: the dream loop's output (points and views).
        config: the settings.
        on_progress: called as ``on_progress("splat views", done, total)`` while the training
            views are rendered, ``on_progress("splats", iteration, iterations)`` after every
            iteration and, with a refiner, ``on_progress("repair", done, total)`` as the
            pseudo-views are repaired.
        checkpoint_dir: a folder of this stage's own (e.g. ``<scene>/splats``): checkpoints,
            ``config.json``, the result (``gaussians.ply``) and ``done.json`` go there; a rerun
            resumes or returns the finished result.
        history: if a list, one dict per iteration is appended (iteration, loss, l1, ssim,
            depth_loss, psnr, gaussians, view, pseudo).
        init: fine-tune these Gaussians instead of starting from one Gaussian per point of
            ``result.points`` (e.g. a scene's trained splats plus Gaussians made from the points
            an extension added). They were trained already, so every SH degree of
            ``config.sh_degree`` is in use from the first iteration; their degree must be it.
        refiner: a :class:`~dreamer.backends.Refiner` to repair novel views with (the refine
            step); None trains on the dreamed and extra views only.
        keep_checkpoint: keep the last checkpoint (optimizer and densification state, about
            three times the result's size) when training finishes; by default it is deleted.
    Returns:
        The trained :class:`Gaussians` (detached, on the training device).
    Raises:
        ValueError: bad inputs (empty cloud, no views, NaN images, bad settings).
        SplatTrainingError: the loss became NaN / inf (the message names the iteration), or
            every Gaussian was pruned.
    """
    from dreamer.backends.loading import resolve_device

    if not isinstance(config, SplatConfig):
        raise TypeError(f"config must be a SplatConfig, got {type(config).__name__}")
    if refiner is not None and not callable(getattr(refiner, "refine", None)):
        raise TypeError(f"refiner must have a refine(render, *, reference, camera, generator) method "
                        f"(dreamer.backends.Refiner), got {type(refiner).__name__}")
    _check_result(result)
    if init is not None:
        if not isinstance(init, Gaussians):
            raise TypeError(f"init must be Gaussians or None, got {type(init).__name__}")
        if init.sh_degree != config.sh_degree:
            raise ValueError(f"init has SH degree {init.sh_degree} but config.sh_degree is {config.sh_degree}; "
                             "fine-tune with the degree the Gaussians were trained at")
    device = resolve_device(config.device)
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    fingerprint = _fingerprint(result, config, init, refiner) if folder is not None else ""

    if folder is not None:
        done = folder / DONE_FILE
        if done.exists():
            try:
                marker = json.loads(done.read_text())
            except (OSError, json.JSONDecodeError):
                marker = {}
            finished = _load_finished(folder, fingerprint, config, device) \
                if marker.get("fingerprint") == fingerprint else None
            if finished is not None:
                log.info("splats: %s says this stage is finished; loading its result", done)
                if on_progress is not None:
                    on_progress("splats", config.iterations, config.iterations)
                return finished
            done.unlink()  # stale: other settings or inputs
        from dreamer.io import write_json

        write_json(folder / CONFIG_FILE, {"config": config.to_dict(), "fingerprint": fingerprint,
                                          "refiner": describe_refiner(refiner)})

    scale = scene_scale(result)
    views = build_training_views(result, config, device=device, on_progress=on_progress)
    n_extra = sum(v.extra for v in views)
    log.info("splats: %d training views (%d dreamed, %d extra), %d points, scene scale %.3g, device %s",
             len(views), len(views) - n_extra, n_extra, len(result.points), scale, device)

    rounds: list[list[Camera]] = []
    pivots: list[float] = []
    if refiner is not None and config.repair_rounds > 0:
        from dreamer.trajectories import center_depth_from

        rounds = repair_cameras(result, config)
        pivots = [center_depth_from(v.depth) for v in result.views]
    schedule = _repair_schedule(config, len(rounds))
    if len(schedule) < len(rounds):
        log.warning("splats: only %d of the %d repair rounds fall before iteration %d (repair_start %d, "
                    "repair_every %d); lower those to repair more views", len(schedule), len(rounds),
                    config.iterations, config.repair_start, config.repair_every)
    repair_total = sum(len(rounds[r]) for r in schedule.values())

    if init is None:
        cloud = merge_points_on_grid(result.points.to(device), config.init_cell)
        if len(cloud) < len(result.points):
            log.info("splats: %d points merged to %d Gaussians on a grid of %g footprints", len(result.points),
                     len(cloud), config.init_cell)
        start_from = Gaussians.from_points(cloud, sh_degree=config.sh_degree, opacity=config.init_opacity,
                                           scale_mult=config.init_scale)
    else:
        start_from = init.to(device)
    params = {k: torch.nn.Parameter(t.detach().clone()) for k, t in start_from.params().items()}
    if params["shN"].shape[1] == 0:
        params["shN"].requires_grad_(False)  # degree 0: nothing to optimise
    optimizers = _make_optimizers(params, config, scale)
    strategy = _make_strategy(config) if config.densify else None
    strategy_state = strategy.initialize_state(scene_scale=scale) if strategy is not None else {}
    start = 0
    pseudo: list[TrainingView] = []

    state = _load_checkpoint(folder, fingerprint, device) if folder is not None else None
    if state is not None:
        start = int(state["iteration"])
        params = {k: torch.nn.Parameter(v.to(device), requires_grad=params[k].requires_grad)
                  for k, v in state["params"].items()}
        optimizers = _make_optimizers(params, config, scale)
        for k, o in optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        strategy_state = {k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in state["strategy_state"].items()}
        pseudo = _pseudo_views_from_state(state, config, device)
        log.info("splats: resuming at iteration %d of %d (%d Gaussians, %d repaired views)", start, config.iterations,
                 params["means"].shape[0], len(pseudo))
    if strategy is not None:
        strategy.check_sanity(params, optimizers)
    if on_progress is not None and repair_total:
        on_progress("repair", len(pseudo), repair_total)

    order_cache: dict = {}
    t0 = time.perf_counter()
    fork_devices = [device] if device.type == "cuda" else []
    for it in range(start, config.iterations):
        sh_deg = config.sh_degree if init is not None else min(it // config.sh_degree_interval, config.sh_degree)
        if it in schedule:
            r = schedule[it]
            made = _make_pseudo_views(params, rounds[r], r, sh_deg, config, result, pivots, refiner, device)
            pseudo.extend(made)
            log.info("splats: repair round %d at iteration %d: %d repaired views (%d in all)", r, it, len(made),
                     len(pseudo))
            if on_progress is not None:
                on_progress("repair", len(pseudo), repair_total)
        all_views = views + pseudo if pseudo else views
        vi = _view_index(config, len(all_views), it, order_cache)
        view = all_views[vi]
        # Only the coefficients of the degree in use (at degree 0 shN takes no part: see _adam_steps).
        higher = num_sh_bases(sh_deg) - 1
        sh = params["sh0"] if higher == 0 else torch.cat([params["sh0"], params["shN"][:, :higher]], 1)
        out = rasterize(params["means"], params["quats"], torch.exp(params["scales"]),
                        torch.sigmoid(params["opacities"]), sh,
                        view.camera, sh_degree=sh_deg, near_plane=config.near_plane)
        if strategy is not None:
            strategy.step_pre_backward(params, optimizers, strategy_state, it, out.info)
        loss, l1, ssim, depth_loss = _loss(out, view, config, _background(config, it, device))
        if not torch.isfinite(loss):
            raise SplatTrainingError(
                f"splat training diverged: the loss is {float(loss.detach())} at iteration {it} (training view {vi}); "
                "lower the learning rates or check the dreamed views")
        if loss.requires_grad:
            _step(loss, params, optimizers, strategy, strategy_state, out.info, config, scale, it, fork_devices,
                  sh_deg)
        else:  # no Gaussian reaches this view: nothing to learn from it
            log.warning("splats: iteration %d: no Gaussian is visible in training view %d; skipped", it, vi)
        if history is not None:
            history.append({"iteration": it, "loss": float(loss.detach()), "l1": float(l1.detach()),
                            "ssim": float(ssim.detach()), "depth_loss": float(depth_loss.detach()),
                            "psnr": masked_psnr(out.rgb.detach(), view.image, view.mask),
                            "gaussians": int(params["means"].shape[0]), "view": vi, "pseudo": view.pseudo})
        if (it + 1) % config.log_every == 0 or it + 1 == config.iterations:
            el = time.perf_counter() - t0
            log.info("splats: iteration %d/%d loss %.4f (L1 %.4f, SSIM %.4f), %d Gaussians, %.3f s/it",
                     it + 1, config.iterations, float(loss.detach()), float(l1.detach()), float(ssim.detach()),
                     params["means"].shape[0], el / (it + 1 - start))
        if folder is not None and ((it + 1) % config.checkpoint_every == 0 or it + 1 == config.iterations):
            _save_checkpoint(folder, iteration=it + 1, params=params, optimizers=optimizers,
                             strategy_state=strategy_state, fingerprint=fingerprint, pseudo_views=pseudo)
        if on_progress is not None:
            on_progress("splats", it + 1, config.iterations)

    try:
        gaussians = Gaussians.from_params(params)
    except ValueError as e:  # parameters went non-finite in the last step
        raise SplatTrainingError(f"splat training diverged at iteration {config.iterations - 1}: {e}") from None
    if folder is not None:
        from dreamer.io import write_json

        gaussians.save_ply(folder / RESULT_FILE)
        write_json(folder / DONE_FILE, {"fingerprint": fingerprint, "iterations": config.iterations,
                                        "gaussians": len(gaussians), "repaired_views": len(pseudo),
                                        "seconds": time.perf_counter() - t0})
        if not keep_checkpoint:  # the result is saved: nothing resumes from it any more
            (folder / CHECKPOINT_FILE).unlink(missing_ok=True)
    return gaussians
