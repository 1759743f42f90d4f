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

    def snapshot(self) -> "CompletionState":
        """A copy whose lists the pass no longer changes."""
        return CompletionState(self.result, list(self.holes), list(self.dreamed))

    def to_dict(self) -> dict:
        """The plain values of the state (the result is saved separately)."""
        return {"holes": list(self.holes), "dreamed": list(self.dreamed)}


def hole_fraction(points, camera: Camera, config, close_px: int | None = None) -> float:
    """Fraction of ``camera``'s pixels that the cloud leaves empty after a closing of
    ``close_px`` pixels (default: the loop's ``config.close_px``), with the loop's point size
    (``config``: a DreamConfig)."""
    render = render_points(points, camera, splat_scale=config.splat_scale, max_splat_px=config.max_splat_px)
    close = config.close_px if close_px is None else close_px
    _, masks = clean_coverage(render, close_px=close, grow_px=0)
    return float(masks.hole.float().mean())


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
            dreamed, out of ``len(cameras) + max_views``.
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
    if resume is not None:
        if len(resume.holes) != len(cameras):
            raise ValueError(f"resume holds {len(resume.holes)} cameras' holes but {len(cameras)} cameras were given")
        state = CompletionState(resume.result, list(resume.holes), list(resume.dreamed))
    else:
        state = CompletionState(result, [None] * len(cameras), [])
    device = state.result.points.device
    total = len(cameras) + max_views

    def measure(i: int) -> float:
        return hole_fraction(state.result.points, cameras[i].to(device), config, close_px)

    def progress() -> None:
        if on_progress is not None:
            measured = sum(h is not None for h in state.holes)
            on_progress("complete", measured + len(state.dreamed), total)

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
                                state.dreamed + [i])
        pivots.append(center_depth_from(view.depth))
        log.info("completion: camera %d of %d had %.2f%% holes: dreamed it as view %d (%d new points)", i + 1,
                 len(cameras), 100 * fresh, k, view.stats.get("kept_points", 0))
        if on_view is not None:
            on_view(state.snapshot())
        progress()
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
