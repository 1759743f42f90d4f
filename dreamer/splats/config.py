"""Settings of the Gaussian splat stage (:class:`SplatConfig`) and its error type.

Kept apart from the training loop (:mod:`dreamer.splats.train`) so that the command line reads the
settings from this file's source without importing torch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal


from dreamer.splats.rasterizer import RASTERIZE_MODES


__all__ = ["SplatConfig", "SplatTrainingError", "EXPORT_FORMATS", "NOT_HASHED"]

EXPORT_FORMATS = ("ply", "spz")
"""Formats :attr:`SplatConfig.export` accepts."""
# Settings that change neither the result nor the resume point's meaning (the export formats
# are written from the result).
NOT_HASHED = ("device", "checkpoint_every", "log_every", "export", "spz_version")


class SplatTrainingError(RuntimeError):
    """Training cannot go on: the loss diverged (NaN / inf)."""


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
    opaque_weight: float = 0.0
    """Weight of a loss on the log transmittance of the valid pixels still more transparent than ``opaque_alpha``:
    the mean over the valid pixels of max(0, log(1 - alpha) - log(1 - opaque_alpha)). Unlike alpha_weight's linear
    term, whose pull fades as a pixel nears opaque, it pulls every Gaussian on a nearly opaque pixel (alpha 0.95-0.99)
    as hard as on a bare one: it closes the cracks between splats that videos show. Its gradient does not count toward
    densification (0 = off)."""
    opaque_alpha: float = 0.995
    """The opacity a valid pixel must reach before opaque_weight leaves it alone, in (0, 1)."""
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
    init_flat_levels: int = 0
    """Flat regions merge to coarser cells: up to 2**this times init_cell's, where the colours of the merged points and
    of the neighbouring cells' agree within init_flat_tolerance (texture and depth edges keep the fine cells, and a band
    around them; 0 = off). Off by default: with 2, the README's first scene at 256 px starts from 266,639 Gaussians
    instead of 325,113 (1.10x less CPU per iteration) at the same held-out quality, but on a small flat scene (32 px)
    the merged Gaussians are spheres a metre wide and one iteration leaves the depth 0.69 m off
    (tests/test_splats_depth.py), and the splats' depth on the refine bench was not measured with it."""
    init_flat_tolerance: float = 0.04
    """Largest colour spread (max - min of a channel, in [0, 1]) of the points that init_flat_levels merges into one
    Gaussian."""
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
    depth_points: bool = True
    """With depth supervision on (depth_weight > 0): before the Gaussians are made, add points lifted from each dreamed
    view's depth map where the view sees a surface nearer than the cloud's (or one the cloud lacks), since a loss cannot
    pull Gaussians metres forward (see dreamer/splats/depth_points.py). Not with levels of detail or a fine-tune."""
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
    repair_depth: bool = True
    """With depth supervision on: a repaired view's depth is supervised too, by the cloud's depth rendered into its
    camera where the cloud's colour there agrees with the repaired image (see repair_depth_agree)."""
    repair_depth_agree: float = 0.1
    """A repaired view's pixel takes the cloud's depth only where the cloud's render and the repaired image differ by
    at most this (mean absolute difference of the channels in [0, 1]): elsewhere the repair drew a surface the cloud
    lacks."""
    path_views: int = 0
    """With the fly-through's cameras given to training (the pipeline gives its render path): this many of them,
    spread evenly over the path, become training views re-rendered from the point cloud, their pinholes closed and
    their holes masked out, so the video's frames are covered by the splats wherever the cloud covers them (0 =
    none)."""
    path_close_px: int = 2
    """Closing radius (pixels) of the path views' coverage: pinholes the cloud leaves this narrow take the colour and
    depth of their front neighbour and count as covered (the completion pass leaves them to the splats too)."""
    extra_splat_scale: float | None = None
    """Point size of the extra views' point renders; default: the dream loop's splat_scale (1.5 if unknown)."""
    near_plane: float = 0.01
    """Gaussians closer to a camera than this z-depth are not drawn."""
    rasterize_mode: str = "classic"
    """``classic`` or ``antialiased`` (gsplat's modes; antialiased multiplies each opacity by sqrt(det(cov2d) /
    det(cov2d + 0.3 I)), for scenes seen at many scales)."""
    filter_3d: float = 0.0
    """Variance of Mip-Splatting's 3D smoothing filter in squared pixels of each Gaussian's finest training view (0 =
    off; Mip-Splatting uses 0.2)."""
    min_scale_px: float = 0.0
    """A floor on every Gaussian's size: each axis's standard deviation is drawn as sqrt(s^2 + f^2), f this many
    pixels of the Gaussian's finest training view (its nearest footprint z / f_px), with its opacity unchanged; the
    result's scales include it, so every viewer draws the same. Splats that shrank between a few training cameras
    leave cracks (pixels at alpha 0.95-0.99) in the frames between them; a floor keeps neighbours overlapping
    (0 = off)."""
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
                "repair_start": 0, "repair_every": 1, "repair_views": 1, "path_views": 0, "path_close_px": 0,
                "init_flat_levels": 0}
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
                     "depth_weight", "repair_weight", "alpha_weight", "init_cell", "opaque_weight",
                     "repair_depth_agree", "init_flat_tolerance"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"SplatConfig.{name} must be a number >= 0, got {v!r}")
        if self.l1_weight + self.dssim_weight <= 0:
            raise ValueError("SplatConfig: l1_weight + dssim_weight must be > 0")
        if not 0.0 < self.opaque_alpha < 1.0:
            raise ValueError(f"SplatConfig.opaque_alpha must be in (0, 1), got {self.opaque_alpha!r}")
        if not self.prune_opa < 1.0:
            raise ValueError(f"SplatConfig.prune_opa must be below 1 (an opacity; 1 would prune every Gaussian), "
                             f"got {self.prune_opa!r}")
        if not 0.0 < self.init_opacity < 1.0:
            raise ValueError(f"SplatConfig.init_opacity must be in (0, 1), got {self.init_opacity!r}")
        if len(self.extra_yaws) != len(self.extra_pitches):
            raise ValueError(f"SplatConfig.extra_yaws ({len(self.extra_yaws)} values) and extra_pitches "
                             f"({len(self.extra_pitches)}) must pair up: one (yaw, pitch) per extra view")
        for name in ("extra_yaws", "extra_pitches"):
            for a in getattr(self, name):
                if not isinstance(a, (int, float)) or not (math.isfinite(a) and abs(a) < 90):
                    raise ValueError(f"SplatConfig.{name} must hold angles in (-90, 90) degrees, got {a!r}")
        if self.rasterize_mode not in RASTERIZE_MODES:
            raise ValueError(f"SplatConfig.rasterize_mode must be one of {RASTERIZE_MODES}, "
                             f"got {self.rasterize_mode!r}")
        if not isinstance(self.min_scale_px, (int, float)) or not (0 <= self.min_scale_px < 10):
            raise ValueError(f"SplatConfig.min_scale_px must be in [0, 10) pixels (0 = off), got {self.min_scale_px!r}")
        if not isinstance(self.filter_3d, (int, float)) or not (0 <= self.filter_3d < 10):
            raise ValueError(f"SplatConfig.filter_3d must be a variance in [0, 10) (0 = off), got {self.filter_3d!r}")
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
