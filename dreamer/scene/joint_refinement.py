"""Joint refinement of a dreamed scene: remove the drift of view-by-view alignment.

The loop aligns each view to the geometry dreamed before it, so a view's errors become the
reference of the next and add up along the trajectory. Once every view is dreamed, all of
their depth estimates are available, and each overlaps its neighbours on both sides. This stage:

1. takes each view's effective correction from the loop (the log-ratio of the depth it used to
   its raw estimate, as a low-order polynomial) as the starting point;
2. re-fits all corrections jointly so that every pair of overlapping views agrees
   (:func:`alignment.joint.joint_log_corrections`; the first view is the gauge and stays);
3. rebuilds the cloud in the original order from the same images: each view is rendered from
   the rebuilt cloud, its hole is re-found, and its jointly corrected estimate is given the
   loop's seam correction and lifted and merged exactly as in the loop.

No model runs again: the inpainted images and raw estimates of the first pass are reused.
"""

from __future__ import annotations

import logging
from typing import Callable

import torch

from alignment import align_depth
from alignment.joint import joint_log_corrections
from alignment.trend import fit_log_trend_coeffs, n_terms, polynomial_field
from dreamer.scene.placement import alignment_known, place_view
from dreamer.render import clean_coverage, lift, render_points
from dreamer.scene.result import DreamResult, DreamView

__all__ = ["refine_scene"]

log = logging.getLogger(__name__)

# The loop's effective correction is fitted without a ridge: it is a description, not a guess.
_INIT_RIDGE = 1e-6
# The refinement is dropped when it leaves the views disagreeing more than this factor times
# before (a consistent scene stays within noise of where it started; more is a failed fit).
_WORSE = 1.05


def _initial_coeffs(view: DreamView, degree: int) -> torch.Tensor:
    valid = (view.depth > 0) & (view.estimate > 0)
    safe = torch.where(valid, view.depth / view.estimate.clamp_min(1e-12), torch.ones_like(view.depth))
    beta = fit_log_trend_coeffs(torch.log(safe.double()), valid, degree=degree, ridge=_INIT_RIDGE)
    return torch.from_numpy(beta)


def refine_scene(result: DreamResult, *, on_progress: Callable[[str, int, int], None] | None = None) -> DreamResult:
    """The scene of ``result`` with jointly re-fitted depth corrections and a rebuilt cloud.

    Views without a stored estimate (nothing to dream when they were visited) take no part. If
    a view that added points has no estimate (a checkpoint from an older version), the scene is
    returned unchanged, with a warning. Uses ``result.config`` (a DreamConfig) for the geometry
    settings.
    """
    cfg = result.config
    degree = max(int(cfg.align_trend), 0)
    views = result.views
    missing = [k for k, v in enumerate(views) if k > 0 and v.estimate is None and bool(v.mask.any())]
    if missing:
        log.warning("joint refinement skipped: views %s added points but have no stored depth estimate", missing)
        return result
    usable = [k for k, v in enumerate(views) if k == 0 or v.estimate is not None]
    if len(usable) < 2:
        return result
    estimates = [views[0].depth if k == 0 else views[k].estimate for k in usable]
    valid = [torch.isfinite(e) & (e > 0) for e in estimates]
    logs = [torch.log(torch.where(m, e, torch.ones_like(e)).double()) for e, m in zip(estimates, valid)]
    init = torch.stack([torch.zeros(n_terms(degree), dtype=torch.float64) if k == 0 else
                        _initial_coeffs(views[k], degree) for k in usable])
    K = torch.stack([views[k].camera.K.double().cpu() for k in usable])
    c2w = torch.stack([views[k].camera.c2w.double().cpu() for k in usable])
    fit = joint_log_corrections(logs, valid, K, c2w, init, [k == 0 for k in usable], degree=degree)
    log.info("joint refinement of %d views: median pair residual %.4f -> %.4f (%d samples)",
             len(usable), fit.residual_before, fit.residual_after, fit.samples)
    if not fit.residual_after <= _WORSE * fit.residual_before:
        # The views disagree more than before (or the fit found no overlapping pairs): keep the loop's scene.
        log.warning("joint refinement skipped: it did not reduce the disagreement between views (%.4f -> %.4f)",
                    fit.residual_before, fit.residual_after)
        return result
    coeffs = dict(zip(usable, fit.coeffs))

    v0 = views[0]
    points = lift(v0.image, v0.depth, v0.camera, v0.mask)
    out = [v0]
    if on_progress:
        on_progress("refine", 1, len(views))  # the joint fit
    for k in range(1, len(views)):
        view = views[k]
        if view.estimate is None:
            out.append(view)
            if on_progress:
                on_progress("refine", k + 1, len(views))
            continue
        cam = view.camera
        render = render_points(points, cam, splat_scale=cfg.splat_scale, max_splat_px=cfg.max_splat_px)
        render, masks = clean_coverage(render, close_px=cfg.close_px, grow_px=cfg.grow_px)
        # The joint correction factor at the image centre (the view's scale after refinement).
        stats = {**view.stats, "hole_fraction": float(masks.hole.float().mean()),
                 "joint_scale": float(torch.exp(coeffs[k][0]))}
        field = polynomial_field(coeffs[k], degree, cam.height, cam.width).to(view.estimate.device)
        new_depth = (view.estimate.double() * torch.exp(field)).to(view.estimate.dtype)
        if int(masks.known.sum()) >= cfg.min_overlap_pixels and masks.hole.any():
            anchors = alignment_known(masks.known, view.estimate, cfg.min_overlap_pixels)
            aligned = align_depth(new_depth, render.depth, anchors, masks.hole, seam=cfg.seam_correction,
                                  decay=cfg.joint_seam_decay * max(cam.height, cam.width), fit=False)
            new_depth = aligned.depth
        points, placed = place_view(points, cam, view.image, render, masks, new_depth, prompt=view.prompt,
                                    stats=stats, estimate=view.estimate, config=cfg)
        out.append(placed)
        if on_progress:
            on_progress("refine", k + 1, len(views))
    return DreamResult(points, out, cfg)
