"""Joint refinement of a dreamed scene: remove the drift of view-by-view alignment.

The loop aligns each view to the geometry dreamed before it, so a view's errors become the
reference of the next and add up along the trajectory. Once every view is dreamed, all of
their depth estimates are available, and each overlaps its neighbours on both sides. This stage:

1. starts from each view's global correction in the loop (the model :mod:`alignment.adaptive`
   chose for it, stored in the view's stats), applied to its whole estimate;
2. fits a smooth correction field per view on top of it, jointly, so that every pair of
   overlapping views agrees (:func:`alignment.joint.joint_log_corrections`: a prior keeps each
   field near the loop's where the pairs leave it free, each field is clamped to its range where
   other views see it, and a view's refinement is kept only if its whole-image disagreement with
   the other views does not grow; the first view is the gauge and stays);
3. rebuilds the cloud in the original order from the same images: each view is rendered from
   the rebuilt cloud, its hole is re-found, and its jointly corrected estimate gets a seam
   correction that fades within ``joint_seam_reach``, the local-plane filter
   (:func:`alignment.denoise.smooth_depth`) and, next to the cloud's pixels, the stitch that
   makes it meet them pixel by pixel (:func:`alignment.stitch.stitch_seam`); then it is lifted
   and merged exactly as in the loop.

No model runs again: the inpainted images and the estimates of the first pass (filtered and peeled
as the loop aligned them) are reused.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Callable

import torch

from alignment.adaptive import GlobalCorrection, align_adaptive
from alignment.denoise import smooth_depth
from alignment.stitch import stitch_seam
from alignment.fields import FieldBasis
from alignment.joint import bend_evidence, joint_log_corrections, view_disagreement
from alignment.segments import segment_offsets
from dreamer.scene.placement import alignment_known, place_view
from dreamer.render import clean_coverage, dilate, lift, render_points
from dreamer.scene.result import DreamResult, DreamView

if TYPE_CHECKING:
    from dreamer.scene.loop import DreamConfig

__all__ = ["refine_scene", "joint_basis", "finish_depth"]

log = logging.getLogger(__name__)

# A quadratic must predict one side of the pairs' overlaps from the other this much better than a
# constant (alignment.joint.bend_evidence, on the views' estimates with their loop scales only) for
# the views' corrections to be fitted as bends. Measured on bench/bench_dream.py's families at
# 64 px, error seed 0: bends 0.41 (full turn), 0.67 (pan), 1.36 (orbit); scale, waves, objects,
# disparity, smeared edges and the mix 1.03 and above.
_BEND_EVIDENCE = 0.85
# ... and kept only if its views' mean whole-image disagreement is at most this multiple of the
# spline's (see refine_scene).
_BEND_AGREEMENT = 1.25
# Prior (log units) on how much a view's spline correction varies beyond what the pairs demand.
# Estimated from the views' disagreement (as for bends) it is the size of the errors themselves
# (0.05-0.08 for waves): 36 free control points per view then follow every local disagreement,
# including the parts no pair of views can observe (a shape all neighbours share), and a
# translating orbit bends away from the truth while its views agree better. Measured with
# bench/bench_dream.py at 64 px (new-pixel AbsRel, waves orbit / objects orbit / mixed orbit /
# mixed full turn): estimated 8.8 / 3.7 / 16.0 / 9.2%, 0.02: 2.0 / 3.7 / 7.2 / 7.1%,
# 0.01: 1.5 / 3.2 / 3.1 / 8.9%, 0.005: 1.7 / 3.1 / 3.9 / 9.1%.
_SPLINE_PRIOR = 0.01
# Pixels per view the joint fit samples (and the per-surface consensus is checked on).
_FIT_SAMPLES = 4096


def joint_basis(grid: int) -> FieldBasis:
    """The field basis of the joint refinement: a cubic B-spline on ``grid`` x ``grid`` control
    points (``grid`` >= 4), or a polynomial of degree ``grid`` (0: one scale per view)."""
    return FieldBasis("poly", grid) if grid < 4 else FieldBasis("spline", grid)


def _base_depth(view: DreamView, shape: bool = True) -> torch.Tensor:
    """The view's estimate with the loop's global correction (``shape`` False, or none stored:
    only its scale)."""
    est = view.estimate
    stored = view.stats.get("align_correction")
    if stored and not shape and "scale" in view.stats:
        return est * float(view.stats["scale"])
    if stored:
        field = GlobalCorrection.from_dict(stored).log_field(est)
        return (est.double() * torch.exp(field)).to(est.dtype)
    mask = view.mask & (view.depth > 0) & (est > 0)
    if not bool(mask.any()):
        return est
    return est * float(torch.exp(torch.log(view.depth[mask].double() / est[mask].double()).median()))


def _prior(cfg, basis: FieldBasis) -> float | None:
    """The joint fit's prior on a view's variation: the configured one, else a fixed one for the
    spline and one estimated from the views' disagreement for a bend (None)."""
    if cfg.joint_prior is not None:
        return cfg.joint_prior
    return _SPLINE_PRIOR if basis.kind == "spline" else None


def _fields_with_segments(fit, logs, valid, K, c2w, fixed) -> list[torch.Tensor]:
    """Each view's jointly fitted log-correction plus its segments' consensus offsets
    (:func:`alignment.segments.segment_offsets`: the error a smooth field leaves, object by
    object), those offsets kept only for views whose whole-image disagreement they do not raise."""
    fields = [fit.field(i, *logs[i].shape) for i in range(len(logs))]
    offsets = segment_offsets([lg + f for lg, f in zip(logs, fields)], valid, K, c2w, fixed)
    with_offsets = [f + o for f, o in zip(fields, offsets)]
    # Measured as the fit measured its own agreement (same samples), so ``before`` is the fit's.
    before = fit.agreement_after
    after = view_disagreement(logs, valid, K, c2w, with_offsets, samples_per_view=_FIT_SAMPLES)
    return [w if bool(a <= b) else f for f, w, a, b in zip(fields, with_offsets, after, before)]


def _mean_disagreement(fit) -> float:
    a = fit.agreement_after
    a = a[torch.isfinite(a)]
    return float(a.mean()) if a.numel() else float("inf")


def finish_depth(depth: torch.Tensor, reference: torch.Tensor, known: torch.Tensor, hole: torch.Tensor,
                 cfg: DreamConfig) -> torch.Tensor:
    """The last steps of a view's new depth [H,W] in the rebuild, against the rebuilt cloud's render
    ``reference`` [H,W]: the local-plane filter, then the stitch to the cloud's pixels next to the
    hole (``known``, ``hole``: bool [H,W]).

    The filter runs on the known pixels as well as the hole's, though only the hole's are lifted:
    the stitch hands each new pixel next to the seam the residual of its known neighbours (the
    cloud's depth over this view's), and read from the unfiltered depth that residual carries the
    estimate's pixel noise at the known pixel straight into the step across the seam. With the
    estimate's 2% noise (the mix of bench/bench_dream.py) the seam step then sat at 0.5-0.75%, not
    half the best peer's; filtered on both sides it is what the filtered map's own step is. Only
    the known pixels next to the hole (diagonally too) are filtered: the stitch reads no others."""
    depth = smooth_depth(depth, hole | (known & dilate(hole, 1)), radius=cfg.smooth_radius)
    return stitch_seam(depth, reference, known, hole, reach=cfg.stitch_reach)


def refine_scene(result: DreamResult, *, on_progress: Callable[[str, int, int], None] | None = None) -> DreamResult:
    """The scene of ``result`` with jointly re-fitted depth corrections and a rebuilt cloud.

    Views without a stored estimate (nothing to dream when they were visited) take no part. If
    a view that added points has no estimate (a checkpoint from an older version), the scene is
    returned unchanged, with a warning; so it is when no view's refinement is accepted. Uses
    ``result.config`` (a DreamConfig) for the geometry settings.
    """
    cfg = result.config
    views = result.views
    missing = [k for k, v in enumerate(views) if k > 0 and v.estimate is None and bool(v.mask.any())]
    if missing:
        log.warning("joint refinement skipped: views %s added points but have no stored depth estimate", missing)
        return result
    usable = [k for k, v in enumerate(views) if k == 0 or v.estimate is not None]
    if len(usable) < 2:
        return result
    basis = joint_basis(int(cfg.joint_grid))
    K = torch.stack([views[k].camera.K.double().cpu() for k in usable])
    c2w = torch.stack([views[k].camera.c2w.double().cpu() for k in usable])

    cache: dict = {}

    fixed = [k == 0 for k in usable]

    def logs_of(shape: bool, surfaces: bool = False):
        """(bases, logs, valid) of the fit: each view's estimate with the loop's global correction
        (``shape`` False: its scale only) and, with ``surfaces``, moved to the views' consensus
        surface by surface first."""
        if (shape, surfaces) in cache:
            return cache[shape, surfaces]
        if surfaces:
            bases, logs, valid = logs_of(shape)
            offsets = segment_offsets(logs, valid, K, c2w, fixed)
            logs = [lg + o for lg, o in zip(logs, offsets)]
            bases = {k: (bases[k].double() * torch.exp(o)).to(bases[k].dtype) for k, o in zip(usable, offsets)}
        else:
            bases = {k: views[0].depth if k == 0 else _base_depth(views[k], shape) for k in usable}
            valid = [torch.isfinite(bases[k]) & (bases[k] > 0) for k in usable]
            logs = [torch.log(torch.where(m, bases[k], torch.ones_like(bases[k])).double())
                    for k, m in zip(usable, valid)]
        cache[shape, surfaces] = bases, logs, valid
        return cache[shape, surfaces]

    # Overlapping views only measure the difference of their corrections: what each view's
    # correction is where no other view sees it (and along a chain of views) is decided by the
    # basis. A bend across the image carries what the overlaps say across it, right when the
    # views' errors are bends, badly wrong when they are local (waves, objects), where a spline
    # that keeps each part to itself is right. The pairs' disagreements tell which: measured on
    # the estimates with their scales only (the loop's shapes blur the signal).
    chosen = basis
    if basis.kind == "spline":
        _, logs, valid = logs_of(False)
        evidence = bend_evidence(logs, valid, K, c2w)
        log.info("joint refinement: bend evidence %.3f", evidence)
        if evidence < _BEND_EVIDENCE:
            chosen = FieldBasis("poly", 2)

    def joint(shape: bool, surfaces: bool = False, fields: FieldBasis | None = None):
        fields = fields or chosen
        bases, logs, valid = logs_of(shape, surfaces)
        fit = joint_log_corrections(logs, valid, K, c2w, torch.zeros(len(usable), fields.n_terms, dtype=torch.float64),
                                    fixed, basis=fields, distortion=_prior(cfg, fields),
                                    fade=cfg.joint_fade, samples_per_view=_FIT_SAMPLES)
        return bases, fit

    # The loop chose each view's global model against the geometry before it, which drifts: a
    # shape it found (a shift in depth or disparity) may describe that drift, not the view. The
    # joint fit runs with and without those shapes (scales only) and keeps the one whose views
    # agree better over their whole images.
    bases, fit = joint(shape=True)
    if chosen is not basis:
        # The evidence for bends is a statistic with a margin of error (waves at 128 px measured
        # 0.84). Chosen wrongly, a bend per view explains the waves by tilts that add up along a
        # chain of views (new-pixel AbsRel 4.0% -> 38.6% there), and its views then agree
        # clearly worse than with the spline (mean whole-image disagreement 0.0157 against
        # 0.0084); where the errors are bends the two agree about as well (0.0068-0.0071
        # against 0.0069-0.0074) and the bend is far better (1.8% against 3.8%).
        bases_b, fit_b = joint(shape=True, fields=basis)
        if _mean_disagreement(fit) > _BEND_AGREEMENT * _mean_disagreement(fit_b):
            log.info("joint refinement: bends disagree %.4f against the spline's %.4f: spline",
                     _mean_disagreement(fit), _mean_disagreement(fit_b))
            chosen, bases, fit = basis, bases_b, fit_b
    shape = True
    shaped = [k for k in usable
              if k > 0 and (views[k].stats.get("align_correction") or {}).get("model", "scale") != "scale"]
    if shaped:
        bases_s, fit_s = joint(shape=False)
        if _mean_disagreement(fit_s) <= _mean_disagreement(fit):
            bases, fit, shape = bases_s, fit_s, False
    # Errors that go surface by surface (each view's level and each surface's own error) are
    # what a smooth field cannot hold: fitted first by the two-way consensus of
    # alignment.segments, the smooth fit only takes what is left. Kept when the views agree better.
    # The views as the loop left them: no view may end up disagreeing more with the others.
    before = fit.agreement_before
    bases_p, fit_p = joint(shape, surfaces=True)
    surfaces = (_mean_disagreement(fit_p) < _mean_disagreement(fit)
                and bool((fit_p.agreement_after <= before).all()))
    if surfaces:
        bases, fit = bases_p, fit_p
    log.info("joint refinement of %d views: median pair residual %.4f -> %.4f (%d samples), %d views refined%s",
             len(usable), fit.residual_before, fit.residual_after, fit.samples, sum(fit.accepted),
             ", surfaces first" if surfaces else "")
    if not any(fit.accepted) and not surfaces:
        log.warning("joint refinement skipped: no view's refinement reduced its disagreement with the others")
        return result
    row = {k: i for i, k in enumerate(usable)}
    fields = _fields_with_segments(fit, *logs_of(shape, surfaces)[1:], K, c2w, fixed)

    v0 = views[0]
    v0 = replace(v0, depth=smooth_depth(v0.depth, v0.mask, radius=cfg.smooth_radius))  # as is when exact (RGBD)
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
        i = row[k]
        field = fields[i].to(view.estimate.device)
        stats = {**view.stats, "hole_fraction": float(masks.hole.float().mean()),
                 "joint_accepted": fit.accepted[i], "joint_scale": float(torch.exp(field.mean())),
                 "joint_disagreement_before": float(before[i]),
                 "joint_disagreement_after": float(fit.agreement_after[i])}
        new_depth = (bases[k].double() * torch.exp(field)).to(view.estimate.dtype)
        if int(masks.known.sum()) >= cfg.min_overlap_pixels and masks.hole.any() and cfg.seam_reaches:
            # The jointly fitted depth already has the right level and shape: the seam correction
            # only closes the seam. Both the offset of the rendered cloud as a whole and the
            # variation around it fade within joint_seam_reach: carried across the hole, they would
            # copy the earlier views' errors (object by object) into this one, as in the loop.
            reaches = (cfg.joint_seam_reach,)
            anchors = alignment_known(masks.known, view.estimate, cfg.min_overlap_pixels)
            new_depth = align_adaptive(new_depth, render.depth, masks.known, masks.hole, seam_reaches=reaches,
                                       fit_global=False, offset_reach=cfg.joint_seam_reach,
                                       seam_known=anchors).depth
        new_depth = finish_depth(new_depth, render.depth, masks.known, masks.hole, cfg)
        points, placed = place_view(points, cam, view.image, render, masks, new_depth, prompt=view.prompt,
                                    stats=stats, estimate=view.estimate, config=cfg)
        out.append(placed)
        if on_progress:
            on_progress("refine", k + 1, len(views))
    return DreamResult(points, out, cfg)
