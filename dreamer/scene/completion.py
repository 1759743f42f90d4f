"""The completion pass: dream the cameras the videos will show where the cloud has holes.

The dream loop covers what its own cameras see. A fly-through that moves the camera (an orbit,
a dolly) looks behind foreground objects at surfaces no dreamed view saw, and the splats show
holes there. Before splats are trained, this pass checks a list of cameras (the render path's
frames, then the repair step's novel cameras): it renders the cloud into each exactly as the
loop does (z-buffer, point size) and measures its hole, the empty pixels left after a closing
of ``close_px`` pixels (slivers narrower than about twice that are left to the splats, whose
Gaussians are wider than a point). Then, greedily, it dreams the camera with the largest hole
like any other view (inpaint, estimate depth, align, lift, merge:
:func:`dreamer.scene.loop.dream_view`), re-measures, and repeats until no camera's hole exceeds
``threshold`` of its image or ``max_views`` cameras were dreamed. Cameras come in tiers
(``tiers``: lower first): the render path's holes are closed before the repair cameras'. Text2Room's
completion stage does the same for a room's unseen corners.

The greedy choice is lazy: a camera's hole can only shrink as the cloud grows, so a stale
measure is an upper bound, and only the camera at the top needs re-measuring. Each camera is
dreamed at most once (a hole the loop cannot fill, e.g. stretched pixels at a depth edge, stays).

A hole is not the only thing a cloud can lack. Where a surface no camera saw stands in front of
surfaces seen from elsewhere, the cloud renders those, with no hole: a fly-through past it looks
through it. Given a ``refiner`` (the repair model of the refine step), a second greedy round
(``suspect_views`` cameras at most) renders the cloud into each camera, repairs the render and
marks the covered pixels where the repair disagrees with it by more than ``suspect_color`` (mean
absolute difference of the channels, averaged over a (2 ``suspect_radius`` + 1)^2 window: the
repair's own blur and noise stay under it); the camera with the largest suspect area (over
``suspect_threshold`` of the image) is dreamed with its suspect pixels as holes that anchor no
alignment and are lifted only where the aligned depth is nearer than ``suspect_nearer`` times the
cloud's (:func:`dreamer.scene.loop.dream_view`): a colour disagreement alone (texture the cloud
renders blurred) lifts nothing, a surface in front of the cloud's is added.

A completion view is a dreamed view like the others (exported, trained on), marked with
``stats["completion"] = True``. View k's inpainting generator is seeded with ``config.seed + k``
as in the loop, and :class:`CompletionState` holds everything the choices depend on, so a
resumed pass reproduces an uninterrupted one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor

from dreamer.backends import DepthEstimator, Inpainter
from dreamer.cameras import Camera
from dreamer.render import clean_coverage, render_points
from dreamer.scene.result import DreamResult

__all__ = ["hole_fraction", "complete_scene", "CompletionState", "COMPLETION"]

log = logging.getLogger(__name__)

#: The stats key that marks a view dreamed by the completion pass.
COMPLETION = "completion"


@dataclass
class CompletionState:
    """Where a completion pass stands: the scene so far, each camera's last measured hole
    fraction (None: not measured yet; an upper bound of its hole now) and the indices of the
    cameras dreamed, in order."""

    result: DreamResult
    holes: list[float | None] = field(default_factory=list)
    dreamed: list[int] = field(default_factory=list)
    suspects: list[float | None] = field(default_factory=list)
    """Each camera's last measured suspect fraction (the refiner's round; empty before it)."""
    suspect_dreamed: list[int] = field(default_factory=list)
    """The cameras dreamed for their suspect pixels, in order."""

    def snapshot(self) -> "CompletionState":
        """A copy whose lists the pass no longer changes."""
        return CompletionState(self.result, list(self.holes), list(self.dreamed), list(self.suspects),
                               list(self.suspect_dreamed))

    def to_dict(self) -> dict:
        """The plain values of the state (the result is saved separately)."""
        return {"holes": list(self.holes), "dreamed": list(self.dreamed), "suspects": list(self.suspects),
                "suspect_dreamed": list(self.suspect_dreamed)}


def hole_fraction(points, camera: Camera, config, close_px: int | None = None) -> float:
    """Fraction of ``camera``'s pixels that the cloud leaves empty after a closing of
    ``close_px`` pixels (default: the loop's ``config.close_px``), with the loop's point size
    (``config``: a DreamConfig)."""
    render = render_points(points, camera, splat_scale=config.splat_scale, max_splat_px=config.max_splat_px)
    close = config.close_px if close_px is None else close_px
    _, masks = clean_coverage(render, close_px=close, grow_px=0)
    return float(masks.hole.float().mean())


def suspect_pixels(points, camera: Camera, config, refiner, *, reference: Tensor | None = None,
                   generator: torch.Generator | None = None, close_px: int | None = None, color: float = 0.05,
                   radius: int = 2) -> Tensor:
    """The covered pixels (bool [H,W]) of ``camera`` where ``refiner``'s repair of the cloud's
    render (pinholes closed by ``close_px``, default ``config.close_px``) differs from the
    render by more than ``color``: the mean absolute difference of the channels, averaged over
    the covered pixels of a (2 ``radius`` + 1)^2 window (holes, which any repair paints, do not
    count; a lone differing pixel, a blurred edge, weighs a fraction)."""
    render = render_points(points, camera, splat_scale=config.splat_scale, max_splat_px=config.max_splat_px)
    close = config.close_px if close_px is None else close_px
    fixed, masks = clean_coverage(render, close_px=close, grow_px=0)
    repaired = refiner.refine(fixed.image, reference=reference, camera=camera, generator=generator)
    camera.check_image(repaired, "the refiner's output")
    known = masks.known.to(fixed.image.dtype)
    diff = (repaired.to(fixed.image) - fixed.image).abs().mean(-1) * known
    k = 2 * radius + 1
    num = torch.nn.functional.avg_pool2d(diff[None, None], k, 1, radius, count_include_pad=False)[0, 0]
    den = torch.nn.functional.avg_pool2d(known[None, None], k, 1, radius, count_include_pad=False)[0, 0]
    return masks.known & (num > color * den)


def complete_scene(
    result: DreamResult,
    cameras: Sequence[Camera],
    *,
    inpainter: Inpainter,
    depth_estimator: DepthEstimator,
    threshold: float = 0.002,
    max_views: int = 12,
    close_px: int = 2,
    tiers: Sequence[int] | None = None,
    prompt: str | None = None,
    resume: CompletionState | None = None,
    on_view: Callable[[CompletionState], None] | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
    refiner=None,
    suspect_views: int = 0,
    suspect_threshold: float = 0.02,
    suspect_color: float = 0.05,
    suspect_radius: int = 2,
    suspect_nearer: float = 0.8,
) -> CompletionState:
    """Dream the cameras of ``cameras`` with the largest holes until none exceeds ``threshold``
    (see the module docstring).

    Args:
        result: a dreamed scene (its ``config`` is the DreamConfig the views are dreamed with).
        cameras: the cameras to check, of the views' image size.
        inpainter, depth_estimator: the backends of the dream loop.
        threshold: largest hole, as a fraction of the image, that is left alone (in [0, 1)).
        max_views: the most cameras dreamed (>= 0).
        close_px: closing radius (pixels, >= 0) before holes are measured.
        tiers: one integer per camera; the holes of a lower tier are closed first (default: one tier).
        prompt: the prompt of the new views; None: the prompt of the dreamed view nearest to
            each camera.
        resume: the state a previous run of the same pass reported through ``on_view``.
        on_view: called with the state after every camera dreamed and at the end.
        on_progress: ``on_progress("complete", done, total)``: cameras measured plus views
            dreamed, out of ``len(cameras) + max_views`` (plus, with a refiner, as many again
            and ``suspect_views``).
        refiner: a :class:`~dreamer.backends.Refiner`: after the holes, dream up to
            ``suspect_views`` cameras for their suspect pixels (see the module docstring);
            None (or ``suspect_views`` 0): no such round.
        suspect_threshold: a camera whose suspect pixels cover at most this fraction of its
            image is left alone (in [0, 1)).
        suspect_color, suspect_radius: the disagreement that makes a pixel suspect
            (:func:`suspect_pixels`).
        suspect_nearer: a suspect pixel is lifted where its aligned depth is below this times
            the cloud's (in (0, 1]).
    Returns:
        The final :class:`CompletionState` (``result`` includes the new views; ``holes`` are
        exact for every camera left over ``threshold`` and upper bounds for the others).
    """
    from dreamer.checks import check_int, check_number
    from dreamer.scene.loop import dream_view
    from dreamer.splats.repair import nearest_camera
    from dreamer.trajectories import center_depth_from

    threshold = check_number(threshold, "threshold", min=0.0)
    if threshold >= 1.0:
        raise ValueError(f"threshold must be a fraction of the image in [0, 1), got {threshold}")
    max_views = check_int(max_views, "max_views", min=0)
    close_px = check_int(close_px, "close_px", min=0)
    if not isinstance(result, DreamResult) or not result.views:
        raise ValueError("result must be a DreamResult with at least one view")
    config = result.config
    cameras = list(cameras)
    tiers = [0] * len(cameras) if tiers is None else [int(t) for t in tiers]
    if len(tiers) != len(cameras):
        raise ValueError(f"tiers must hold one integer per camera ({len(cameras)}), got {len(tiers)}")
    size = (result.views[0].camera.width, result.views[0].camera.height)
    for i, cam in enumerate(cameras):
        if not isinstance(cam, Camera):
            raise TypeError(f"cameras[{i}] must be a Camera, got {type(cam).__name__}")
        if (cam.width, cam.height) != size:
            raise ValueError(f"cameras[{i}] is {cam.width}x{cam.height} but the dreamed views are {size[0]}x{size[1]}; "
                             f"the completion pass dreams cameras of the views' size")
    suspect_views = check_int(suspect_views, "suspect_views", min=0) if refiner is not None else 0
    suspect_threshold = check_number(suspect_threshold, "suspect_threshold", min=0.0)
    if suspect_threshold >= 1.0:
        raise ValueError(f"suspect_threshold must be a fraction of the image in [0, 1), got {suspect_threshold}")
    suspect_color = check_number(suspect_color, "suspect_color", min=0.0)
    suspect_radius = check_int(suspect_radius, "suspect_radius", min=0)
    suspect_nearer = check_number(suspect_nearer, "suspect_nearer", min=0.0, max=1.0, open_min=True)
    if refiner is not None and not callable(getattr(refiner, "refine", None)):
        raise TypeError(f"refiner must have a refine(render, *, reference, camera, generator) method, "
                        f"got {type(refiner).__name__}")
    if resume is not None:
        if len(resume.holes) != len(cameras) or resume.suspects and len(resume.suspects) != len(cameras):
            raise ValueError(f"resume holds {len(resume.holes)} cameras' holes but {len(cameras)} cameras were given")
        state = CompletionState(resume.result, list(resume.holes), list(resume.dreamed), list(resume.suspects),
                                list(resume.suspect_dreamed))
    else:
        state = CompletionState(result, [None] * len(cameras), [])
    if suspect_views and not state.suspects:
        state.suspects = [None] * len(cameras)
    device = state.result.points.device
    total = len(cameras) + max_views + (len(cameras) + suspect_views if suspect_views else 0)

    def measure(i: int) -> float:
        return hole_fraction(state.result.points, cameras[i].to(device), config, close_px)

    def progress() -> None:
        if on_progress is not None:
            measured = sum(h is not None for h in state.holes) + sum(h is not None for h in state.suspects)
            on_progress("complete", measured + len(state.dreamed) + len(state.suspect_dreamed), total)

    for i in range(len(cameras)):
        if state.holes[i] is None:
            state.holes[i] = measure(i)
            progress()
    pivots = [center_depth_from(v.depth) for v in state.result.views]
    while len(state.dreamed) < max_views:
        open_ = [i for i in range(len(cameras)) if i not in state.dreamed and state.holes[i] > threshold]
        if not open_:
            break
        tier = min(tiers[i] for i in open_)
        i = max((j for j in open_ if tiers[j] == tier), key=lambda j: (state.holes[j], -j))
        fresh = measure(i)
        stale_best = state.holes[i]
        state.holes[i] = fresh
        if fresh <= threshold or fresh < stale_best and any(
                state.holes[j] > fresh for j in open_ if j != i and tiers[j] == tier):
            continue  # shrank below another camera's bound: pick again
        current = state.result
        k = len(current.views)
        cam = cameras[i].to(device)
        near = nearest_camera(cam, [v.camera for v in current.views], pivots)
        g = torch.Generator(device="cpu").manual_seed(config.seed + k)
        points, view = dream_view(current.points, cam, prompt if prompt is not None else current.views[near].prompt,
                                  inpainter=inpainter, depth_estimator=depth_estimator, config=config, generator=g)
        view.stats = {**view.stats, COMPLETION: True, "hole_before": fresh}
        state = CompletionState(DreamResult(points, current.views + [view], current.config), state.holes,
                                state.dreamed + [i], state.suspects, state.suspect_dreamed)
        pivots.append(center_depth_from(view.depth))
        log.info("completion: camera %d of %d had %.2f%% holes: dreamed it as view %d (%d new points)", i + 1,
                 len(cameras), 100 * fresh, k, view.stats.get("kept_points", 0))
        if on_view is not None:
            on_view(state.snapshot())
        progress()
    if suspect_views:
        state = _suspect_round(state, cameras, pivots, config, prompt, inpainter, depth_estimator, refiner,
                               suspect_views, suspect_threshold, suspect_color, suspect_radius, suspect_nearer,
                               close_px, on_view, progress)
    # Exact figures for the cameras still over the threshold.
    for i in range(len(cameras)):
        if state.holes[i] > threshold:
            state.holes[i] = measure(i)
    left = sum(h > threshold for h in state.holes)
    if left:
        log.info("completion: %d of %d cameras keep holes over %.2f%% (%d dreamed, at most %d)", left, len(cameras),
                 100 * threshold, len(state.dreamed), max_views)
    if on_view is not None:
        on_view(state.snapshot())
    if on_progress is not None:
        on_progress("complete", total, total)
    return state


def _suspect_round(state: CompletionState, cameras: list[Camera], pivots: list[float], config, prompt, inpainter,
                   depth_estimator, refiner, max_views: int, threshold: float, color: float, radius: int,
                   nearer: float, close_px: int, on_view, progress) -> CompletionState:
    """The refiner's greedy round of :func:`complete_scene` (see the module docstring): lazy
    like the holes' (a lifted surface only removes suspect pixels; a stale fraction is taken as
    an upper bound)."""
    from dreamer.scene.loop import dream_view
    from dreamer.splats.repair import nearest_camera
    from dreamer.trajectories import center_depth_from

    device = state.result.points.device

    def suspect(i: int) -> Tensor:
        cam = cameras[i].to(device)
        views = state.result.views
        near = nearest_camera(cam, [v.camera for v in views], pivots)
        # Seeded per camera: a resumed pass repairs each camera as an uninterrupted one did.
        g = torch.Generator(device="cpu").manual_seed(config.seed * 1_000_003 + 104_729 + i)
        return suspect_pixels(state.result.points, cam, config, refiner, reference=views[near].image.to(device),
                              generator=g, close_px=close_px, color=color, radius=radius)

    for i in range(len(cameras)):
        if state.suspects[i] is None:
            state.suspects[i] = float(suspect(i).float().mean())
            progress()
    while len(state.suspect_dreamed) < max_views:
        open_ = [i for i in range(len(cameras)) if i not in state.suspect_dreamed and state.suspects[i] > threshold]
        if not open_:
            break
        i = max(open_, key=lambda j: (state.suspects[j], -j))
        mask = suspect(i)
        fresh, stale_best = float(mask.float().mean()), state.suspects[i]
        state.suspects[i] = fresh
        if fresh <= threshold or fresh < stale_best and any(state.suspects[j] > fresh for j in open_ if j != i):
            continue  # shrank below another camera's bound: pick again
        current = state.result
        k = len(current.views)
        cam = cameras[i].to(device)
        near = nearest_camera(cam, [v.camera for v in current.views], pivots)
        g = torch.Generator(device="cpu").manual_seed(config.seed + k)
        points, view = dream_view(current.points, cam, prompt if prompt is not None else current.views[near].prompt,
                                  inpainter=inpainter, depth_estimator=depth_estimator, config=config, generator=g,
                                  suspect=mask, nearer=nearer)
        view.stats = {**view.stats, COMPLETION: True, "suspect_before": fresh}
        state = CompletionState(DreamResult(points, current.views + [view], current.config), state.holes,
                                state.dreamed, state.suspects, state.suspect_dreamed + [i])
        pivots.append(center_depth_from(view.depth))
        log.info("completion: camera %d of %d had %.2f%% suspect pixels: dreamed it as view %d (%d of them nearer "
                 "than the cloud, %d new points)", i + 1, len(cameras), 100 * fresh, k,
                 view.stats.get("suspect_nearer", 0), view.stats.get("kept_points", 0))
        if on_view is not None:
            on_view(state.snapshot())
        progress()
    return state
