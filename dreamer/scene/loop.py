"""The dream loop: grow a point cloud view by view.

For each camera after the first: render the cloud into it (z-buffer), close pinholes and find
the holes, inpaint them, estimate the depth of the completed view, align that depth to the
rendered geometry along the camera rays (robust scale, then a seam correction that meets the
existing geometry exactly at the hole boundary), drop stretched pixels at depth discontinuities,
lift only the hole pixels, and merge them on a footprint grid so revisited surface is not
duplicated. When every view is done, all of them are re-aligned jointly and the cloud is
rebuilt (:mod:`dreamer.scene.joint_refinement`), which removes the drift of aligning one view at a time.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

from alignment import seam_jump, stretched_pixels
from alignment.adaptive import AdaptiveAlignment, align_adaptive
from alignment.denoise import denoise_depth
from alignment.rims import peel_rims
from dreamer.backends import DepthEstimator, Inpainter, inpaint_weight
from dreamer.cameras import Camera
from dreamer.checks import check_int, check_number
from dreamer.scene.placement import alignment_known, first_view_mask, place_view
from dreamer.pointcloud import PointCloud
from dreamer.scene.joint_refinement import refine_scene
from dreamer.render import HoleMasks, _check_image, check_depth, clean_coverage, dilate, lift, render_points
from dreamer.scene.result import DreamResult, DreamView
from dreamer.progress import ProgressFn

__all__ = ["DreamConfig", "DreamView", "DreamResult", "dream", "ProgressFn", "Aligner"]

log = logging.getLogger(__name__)

Aligner = Callable[[Tensor, Tensor, Tensor, Tensor, Camera], Tensor]
"""``(estimated, reference, known, hole, camera) -> depth``: another alignment for the loop (a
peer's, to compare with): the estimated z-depth [H,W], the depth rendered from the cloud [H,W],
the known and hole masks [H,W], the view's camera; returns the z-depth [H,W] lifted on the hole."""


# Largest pixel radius of the loop's morphological settings (close_px, grow_px): wider is a typo,
# not a setting (a hole grown by more would swallow the view).
_MAX_RADIUS_PX = 64
# Largest radius of the denoising filter: its time grows with (2r + 1)^2 and its padded copy with r.
_MAX_DENOISE_RADIUS = 16
# A rim wider than this fraction of the image is no fattened edge but an object of its own.
_MAX_RIM_WIDTH = 0.05


@dataclass(frozen=True)
class DreamConfig:
    """Settings of the dream loop (geometry only; model settings live with the backends)."""

    seed: int = 0
    """Seed of the per-view generators handed to the inpainter (view k uses seed + k)."""
    splat_scale: float = 1.5
    """Rendered point size as a multiple of the point's footprint (>= 1 closes gaps between points)."""
    max_splat_px: float = 32.0
    """Largest half-size of a rendered point in pixels (points very close to the camera)."""
    close_px: int = 1
    """Radius of the morphological closing that fills pinholes in a rendered view."""
    grow_px: int = 3
    """Margin in pixels by which holes are grown for the inpainter."""
    align_models: tuple[str, ...] = ("scale", "depth", "disparity", "power")
    """Candidate global corrections of a view's estimated depth: "scale", "depth" (scale and shift), "disparity"
    (scale and shift in disparity), "power" (a scale and a power of the depth: a compressed or stretched range),
    "tilt" and "bend" (a log-polynomial of degree 1 or 2 across the image). Each
    view uses the one that best predicts its held-out overlap pixels nearest the hole (alignment/adaptive.py);
    name one to force it. Trends are not candidates by default: fitted to the existing geometry, they describe
    the difference between this view's distortion and the earlier views', and extrapolated into new territory
    they were worse on every error family of bench/bench_dream.py."""
    seam_reaches: tuple[float, ...] = (0.05, 0.2, 0.0)
    """Candidate decay lengths of the seam correction (which makes the new depth meet the existing geometry at
    the hole's boundary), as fractions of the image's larger side; 0: no decay (harmonic). Chosen per view like
    the global correction; none given: no seam correction."""
    align_tolerance: float = 0.03
    """A more complex correction is chosen only if it predicts the held-out pixels better than a simpler one by
    this fraction."""
    denoise_radius: int = 1
    """Radius in pixels of the edge-preserving filter that removes an estimate's pixel noise before it is aligned
    (alignment/denoise.py: measured on each map, so a noise-free map is left alone); 0: off. On bench/bench_dream.py
    at 64 px, 1 brought the mean of ours / oracle-scale floor over the table from 0.90 to 0.77; 2 (which removes
    twice the noise) only to 0.79, and worse on errors per object."""
    smooth_radius: int = 3
    """Radius in pixels of the local-plane filter applied to each view's final depth as the joint refinement
    rebuilds the cloud (alignment/denoise.py smooth_depth: each pixel takes the value of a plane fitted to its
    neighbours, depth edges kept, a noise-free map left alone), on its new pixels and on the known ones next to
    them, whose residuals the stitch reads; 0: off; not applied without the refinement. The
    loop keeps the light filter above: applied in the loop, the filter changed which corrections the views of a
    full turn chose and the refinement no longer removed their drift (waves, noise and smeared edges: 4.7 ->
    8.9% on bench/bench_dream.py at 64 px), and a scene's loop state would depend on the refinement setting."""
    stitch_reach: int = 2
    """As the joint refinement rebuilds the cloud, the last step of each view's depth: its new pixels within this
    many pixels of the cloud's take the residual of the cloud's pixels next to them (less than 5% off: a larger
    step is a depth edge and stays), fading with the distance (alignment/stitch.py), so the new surface meets the
    old one pixel by pixel where the cloud's render is off by a splat (a grazing floor); 0: off. On
    bench/bench_dream.py at 64 px, 2 took the seam step to half the best peer's or less on 19 of 21 cases (15
    without), at a cost of 0.59 -> 0.62 in the mean of ours / oracle-scale floor."""
    rim_width: float = 0.01
    """Widest rim peeled from an estimate's depth edges where the picture shows the edge nearer the foreground,
    as a fraction of the image's larger side (at least 2 pixels): a depth model draws objects too wide, and a
    rim lifted at the object's depth floats around its silhouette (alignment/rims.py); 0: off."""
    stretch_threshold: float = 0.08
    """Relative depth jump between neighbouring pixels above which a pixel is a stretched edge."""
    merge_cell_factor: float = 1.0
    """Merge grid cell size as a multiple of a new point's footprint."""
    min_overlap_pixels: int = 64
    """Fewest known pixels needed to fit the depth scale; fewer keeps the estimate's scale (1.0)."""
    joint_refinement: bool = True
    """After the loop, re-fit every view's depth correction jointly against all the views that overlap it and
    rebuild the cloud from the same images (removes the drift of view-by-view alignment; no model runs again)."""
    joint_grid: int = 6
    """Control points per axis of each view's smooth correction in the joint refinement (a cubic B-spline over
    the image, >= 4); when the views' disagreements show bends across the image (they extrapolate as
    quadratics), a quadratic per view is fitted instead. 0-3: always a polynomial of that degree (0: one scale
    per view)."""
    joint_fade: float = 0.1
    """In the joint refinement, away from the pixels that other views see, a view's correction returns to its
    mean over them within about this fraction of the image's larger side (it is not extrapolated)."""
    joint_seam_reach: float = 0.05
    """In the refinement's rebuild, the offset between the rendered cloud and a view's jointly fitted depth, and
    its variation surface by surface, fade over this fraction of the image's larger side from the seam."""
    joint_prior: float | None = None
    """Prior of the joint refinement: how much (log depth) a view's correction may vary across its image beyond
    a scale, unless the overlapping views say otherwise; None: 0.01 for the spline, and for a bend estimated from
    how much the views disagree beyond their pixel noise once each has its own scale
    (dreamer/scene/joint_refinement.py says why)."""

    def __post_init__(self):
        from alignment.adaptive import GLOBAL_MODELS

        models = tuple(self.align_models)
        if not models or any(m not in GLOBAL_MODELS for m in models):
            raise ValueError(f"align_models must be one or more of {GLOBAL_MODELS}, got {models}")
        reaches = tuple(float(r) for r in self.seam_reaches)
        if any(not (r >= 0 and math.isfinite(r)) for r in reaches):
            raise ValueError(f"seam_reaches must be fractions >= 0 (0: no decay), got {reaches}")
        object.__setattr__(self, "align_models", models)
        object.__setattr__(self, "seam_reaches", reaches)
        check_int(self.seed, "seed", min=0, max=2**32 - 1)
        check_number(self.splat_scale, "splat_scale", min=0.0, open_min=True)
        check_number(self.max_splat_px, "max_splat_px", min=0.0, open_min=True)
        check_int(self.close_px, "close_px", min=0, max=_MAX_RADIUS_PX)
        check_int(self.grow_px, "grow_px", min=0, max=_MAX_RADIUS_PX)
        check_int(self.denoise_radius, "denoise_radius", min=0, max=_MAX_DENOISE_RADIUS)
        check_int(self.smooth_radius, "smooth_radius", min=0, max=_MAX_DENOISE_RADIUS)
        check_int(self.stitch_reach, "stitch_reach", min=0, max=_MAX_DENOISE_RADIUS)
        check_number(self.rim_width, "rim_width", min=0.0, max=_MAX_RIM_WIDTH)
        check_number(self.stretch_threshold, "stretch_threshold", min=0.0, open_min=True)
        check_number(self.merge_cell_factor, "merge_cell_factor", min=0.0, open_min=True)
        check_int(self.min_overlap_pixels, "min_overlap_pixels", min=1)
        if not self.align_tolerance >= 0:
            raise ValueError(f"align_tolerance must be >= 0, got {self.align_tolerance}")
        if int(self.joint_grid) != self.joint_grid or self.joint_grid < 0:
            raise ValueError(f"joint_grid must be an integer >= 0, got {self.joint_grid}")
        for name in ("joint_fade", "joint_seam_reach"):
            if not (getattr(self, name) > 0 and math.isfinite(getattr(self, name))):
                raise ValueError(f"{name} must be a finite fraction > 0, got {getattr(self, name)}")
        if self.joint_prior is not None and not self.joint_prior > 0:
            raise ValueError(f"joint_prior must be None (estimated) or > 0, got {self.joint_prior}")

    def to_dict(self) -> dict:
        return asdict(self)


def _prompts(prompt: str | Sequence[str], n: int) -> list[str]:
    if isinstance(prompt, str):
        return [prompt] * n
    prompts = list(prompt)
    if len(prompts) != n:
        raise ValueError(f"got {len(prompts)} prompts for {n} cameras: give one prompt or one per camera")
    if not all(isinstance(p, str) for p in prompts):
        raise TypeError("prompts must be strings")
    return prompts


def _check_inputs(image: Tensor, cameras: Sequence[Camera], depth: Tensor | None) -> None:
    if len(cameras) == 0:
        raise ValueError("dream() needs at least one camera (cameras[0] is the camera of the image)")
    for i, cam in enumerate(cameras):
        if not isinstance(cam, Camera):
            raise TypeError(f"cameras[{i}] must be a dreamer.Camera, got {type(cam).__name__}")
    _check_image(image, cameras[0])
    if image.dtype != torch.float32:
        raise ValueError(f"image must be float32 in [0,1], got {image.dtype}")
    if not torch.isfinite(image).all():
        raise ValueError("image has non-finite values")
    if depth is not None:
        check_depth(depth, cameras[0])


def filter_estimate(estimated: Tensor, image: Tensor, config: DreamConfig) -> tuple[Tensor, int]:
    """A depth estimate of ``image`` as the loop aligns and lifts it: its pixel noise filtered
    (alignment/denoise.py), then the rims its edges put on the wrong side peeled (alignment/rims.py;
    ``config.rim_width`` 0: none); with the number of pixels peeled. The colour window reaches a pixel
    past the widest rim, so the innermost rim pixel still sees the foreground's own colours."""
    estimated = denoise_depth(estimated, radius=config.denoise_radius)
    if config.rim_width == 0:
        return estimated, 0
    passes = max(2, math.ceil(config.rim_width * max(estimated.shape)))
    peeled, rims = peel_rims(estimated, image, threshold=config.stretch_threshold, passes=passes, radius=passes + 1)
    return peeled, int(rims.sum())


def align_view(estimated: Tensor, reference: Tensor, known: Tensor, hole: Tensor,
               config: DreamConfig, seam_known: Tensor | None = None) -> AdaptiveAlignment:
    """The loop's alignment of one view's estimated depth [H,W] to the rendered ``reference``
    [H,W] (``known``, ``hole``: bool [H,W]; ``seam_known``: the known pixels that may anchor the
    seam, None: all), with the settings of ``config``."""
    reaches = tuple(None if r == 0 else float(r) for r in config.seam_reaches)
    return align_adaptive(estimated, reference, known, hole, models=tuple(config.align_models),
                          seam_reaches=reaches, tolerance=config.align_tolerance, seam_known=seam_known)


def dream_view(
    points: PointCloud,
    camera: Camera,
    prompt: str,
    *,
    inpainter: Inpainter,
    depth_estimator: DepthEstimator,
    config: DreamConfig,
    generator: torch.Generator | None = None,
    aligner: Aligner | None = None,
    suspect: Tensor | None = None,
    nearer: float = 0.8,
) -> tuple[PointCloud, DreamView]:
    """One step of the loop: dream ``camera`` on top of ``points``; return the merged cloud and the view.

    ``aligner`` replaces the loop's alignment (see :data:`Aligner`). ``suspect`` (bool [H,W] or
    None): covered pixels where the cloud may show a far surface through a nearer one it lacks
    (the completion pass's disagreement with a repaired render). They are inpainted and
    estimated like holes but anchor no alignment, and are lifted only where the aligned depth is
    nearer than ``nearer`` times the cloud's there: elsewhere the cloud's surface stands."""
    render = render_points(points, camera, splat_scale=config.splat_scale, max_splat_px=config.max_splat_px)
    render, masks = clean_coverage(render, close_px=config.close_px, grow_px=config.grow_px)
    stats: dict = {"hole_fraction": float(masks.hole.float().mean())}
    if suspect is not None:
        suspect = suspect.to(masks.known.device) & masks.known
        if int((masks.known & ~suspect).sum()) < config.min_overlap_pixels:
            # Too few pixels left to align on (the repair disagrees nearly everywhere): a plain view.
            suspect = torch.zeros_like(suspect)
        masks = HoleMasks(known=masks.known & ~suspect, hole=masks.hole | suspect,
                          inpaint=masks.inpaint | dilate(suspect, config.grow_px), pinholes=masks.pinholes)
        stats["suspect_pixels"] = int(suspect.sum())
    if not masks.hole.any():
        stats.update(new_points=0, kept_points=0)
        empty = torch.zeros_like(masks.hole)
        return points, DreamView(camera, render.image, render.depth, empty, prompt, stats, known=masks.known)

    completed = inpainter.inpaint(render.image, masks.inpaint, prompt, camera=camera, generator=generator)
    _check_image(completed, camera, "inpainter output")
    # Keep the rendered pixels the inpainter does not blend into exactly: the loop, not the model,
    # owns them. Within the inpainter's declared margin its feathered blend is the seam.
    weight = inpaint_weight(inpainter, masks.inpaint).to(render.image.device)
    completed = torch.where(weight[..., None] > 0, completed.to(render.image), render.image)
    estimated = depth_estimator.estimate(completed, camera=camera)
    check_depth(estimated, camera, "estimated depth")

    if aligner is None:
        estimated, stats["rim_pixels"] = filter_estimate(estimated, completed, config)
    if aligner is not None:
        new_depth = aligner(estimated, render.depth, masks.known, masks.hole, camera)
        check_depth(new_depth.clamp_min(1e-6), camera, "aligned depth")
    elif int(masks.known.sum()) >= config.min_overlap_pixels:
        anchors = alignment_known(masks.known, estimated, config.min_overlap_pixels)
        aligned = align_view(estimated, render.depth, masks.known, masks.hole, config, seam_known=anchors)
        new_depth = aligned.depth
        fit = aligned.fit
        stats.update(scale=fit.scale, overlap_pixels=fit.n_pixels, inlier_fraction=fit.inlier_fraction,
                     residual_before=fit.residual_before, residual_after=fit.residual_after,
                     align_model=aligned.model, seam_reach=aligned.seam_reach,
                     align_correction=aligned.global_correction.to_dict())
    else:
        log.warning("view has only %d known pixels: keeping the estimated depth's scale", int(masks.known.sum()))
        new_depth = estimated
    stats["seam_jump_unaligned"] = seam_jump(estimated, render.depth, masks.known, masks.hole)
    if suspect is not None:
        # A suspect pixel the estimate puts at (or behind) the cloud's surface shows that surface.
        behind = suspect & ~(new_depth < nearer * render.depth)
        masks = HoleMasks(known=masks.known | behind, hole=masks.hole & ~behind, inpaint=masks.inpaint,
                          pinholes=masks.pinholes)
        stats["suspect_nearer"] = int((suspect & ~behind).sum())
    return place_view(points, camera, completed, render, masks, new_depth, prompt=prompt, stats=stats,
                      estimate=estimated, config=config)


def dream(
    image: Tensor,
    cameras: Sequence[Camera],
    prompt: str | Sequence[str],
    *,
    inpainter: Inpainter,
    depth_estimator: DepthEstimator,
    config: DreamConfig = DreamConfig(),
    depth: Tensor | None = None,
    on_progress: ProgressFn | None = None,
    resume: DreamResult | None = None,
    on_view: Callable[[DreamResult], None] | None = None,
    aligner: Aligner | None = None,
    depth_estimated: bool = False,
) -> DreamResult:
    """Dream a scene from ``image`` (the view of ``cameras[0]``) along ``cameras[1:]``.

    ``depth`` is the z-depth of ``image`` if known (RGBD input); otherwise it is estimated.
    ``depth_estimated``: ``depth`` is ``depth_estimator``'s estimate of ``image``, made by the caller
    (to place the trajectory) and passed through :func:`filter_estimate`: it is lifted as an estimate
    (its depth ramps left out), not as a depth given with the photo.
    ``prompt`` is one string or one per camera. ``on_view`` is called with the loop's result so
    far after every view (the CLI writes a checkpoint there). ``resume`` continues such a result
    (its views must be a prefix of ``cameras``) and reproduces the uninterrupted run; given a
    finished, refined result it dreams the remaining cameras on top of the refined cloud. View
    k's inpainting generator is seeded with ``config.seed + k``, so a resumed run reproduces an
    uninterrupted one. With ``config.joint_refinement`` the finished loop is refined jointly
    (:func:`dreamer.scene.joint_refinement.refine_scene`). ``aligner`` replaces the loop's per-view alignment
    (:data:`Aligner`; to compare another method alone, turn the joint refinement off).
    """
    _check_inputs(image, cameras, depth)
    prompts = _prompts(prompt, len(cameras))
    total = len(cameras)
    device = image.device

    if resume is not None and len(resume.views) > 0:
        done = len(resume.views)
        if done > total:
            raise ValueError(f"resume has {done} views but only {total} cameras were given")
        for k in range(done):
            a, b = resume.views[k].camera, cameras[k]
            if not (torch.allclose(a.c2w.cpu(), b.c2w.cpu(), atol=1e-5)
                    and torch.allclose(a.K.cpu(), b.K.cpu(), atol=1e-4)):
                raise ValueError(f"resume view {k} was dreamed with another camera than cameras[{k}]")
        result = DreamResult(resume.points.to(device), list(resume.views), config)
    else:
        cam0 = cameras[0]
        estimated_first = depth is None or depth_estimated
        stats = {}
        if depth is None:
            depth = depth_estimator.estimate(image, camera=cam0)
            check_depth(depth, cam0, "estimated depth of the first view")
            depth, stats["rim_pixels"] = filter_estimate(depth, image, config)
        stretched = stretched_pixels(depth, threshold=config.stretch_threshold)
        mask0 = first_view_mask(depth, config) if estimated_first else ~stretched
        points = lift(image, depth.to(image), cam0, mask0)
        stats.update(new_points=len(points), kept_points=len(points), stretched_pixels=int(stretched.sum()))
        result = DreamResult(points, [DreamView(cam0, image, depth.to(image), mask0, prompts[0], stats)], config)
        if on_progress:
            on_progress("dream", 1, total)
        if on_view:
            on_view(result)

    for k in range(len(result.views), total):
        g = torch.Generator(device="cpu").manual_seed(config.seed + k)
        points, view = dream_view(
            result.points, cameras[k], prompts[k], inpainter=inpainter, depth_estimator=depth_estimator,
            config=config, generator=g, aligner=aligner,
        )
        result = DreamResult(points, result.views + [view], config)
        log.info("view %d/%d: %s", k + 1, total, {key: (round(v, 4) if isinstance(v, float) and math.isfinite(v) else v)
                                                   for key, v in view.stats.items()})
        if on_progress:
            on_progress("dream", k + 1, total)
        if on_view:
            on_view(result)
    if config.joint_refinement:
        result = refine_scene(result, on_progress=on_progress)
    return result
