"""Train Gaussian splats on a dreamed scene: init from the cloud, masked L1 + D-SSIM, densify.

Training views
    Every dreamed view (its completed image; every pixel was dreamed, so all pixels count), plus
    extra views re-rendered from the point cloud around each dreamed camera: the camera orbits a
    pivot on its optical axis at the view's centre depth by small yaw / pitch offsets (the
    original method's +-5 degree "hemisphere" views, which fight overfitting to the few dreamed
    poses). An extra view is the z-buffered point render (:func:`dreamer.render.render_points`)
    and its loss mask is the render's coverage: pixels no point covers carry no information and
    contribute nothing (the original trained them as black). Given the fly-through's cameras
    (``path_cameras``), ``path_views`` of them are trained on the same way, their pinholes
    closed first: the video then shows splats wherever the cloud covers its frames, not the
    gaps a few training cameras leave between Gaussians seen from elsewhere.

Loss
    ``l1_weight * L1 + dssim_weight * (1 - SSIM)``, both masked (:mod:`dreamer.splats.losses`), on
    the render composited over a random background colour (``random_background``: a view of a
    dreamed scene has no background, so transparency is an error wherever the view is valid),
    plus ``alpha_weight`` times the mean of 1 - alpha over the valid pixels (the same reason, made
    explicit: without it the splats of a small run stay a few percent transparent between their
    centres and videos show speckles of background),
    plus ``opaque_weight`` times the transmittance barrier
    (:func:`~dreamer.splats.losses.transmittance_barrier`: the log transmittance of the valid
    pixels still more transparent than ``opaque_alpha``; the linear term's pull fades on a pixel
    at alpha 0.98, a crack between splats that a video still shows). The barrier's gradient is
    kept out of the screen-space gradient that densification reads (:func:`_step`): it closes
    a crack by making the Gaussians around it larger and more opaque, not by splitting them,
    plus ``depth_weight`` times the depth loss (:func:`~dreamer.splats.losses.inverse_depth_l1`)
    where the view knows its depth: a dreamed view's aligned depth map (every pixel), an extra
    view's point-render depth (the pixels the cloud covers). The rendered depth is the splats'
    expected z-depth (both rasterizer paths return it, with gradients), compared where the
    render is at least half opaque. With depth supervision the initial cloud also gets the
    points of the views' depth maps where a view sees a surface the cloud lacks
    (:mod:`dreamer.splats.depth_points`, ``depth_points``): the loss itself moves a Gaussian by
    a few footprints, not from a far wall to the object in front of it.

Repaired views
    Given a ``refiner`` (a :class:`~dreamer.backends.Refiner`), ``repair_rounds`` rounds, the
    first at iteration ``repair_start`` and then every ``repair_every``, render the splats from
    novel cameras (between the dreamed ones first, then further out:
    :func:`dreamer.splats.repair.repair_rounds`), repair each render with the nearest dreamed
    view as reference, and add the results as pseudo-views: every pixel counts, the loss is
    weighted by ``repair_weight``. With depth supervision (and ``repair_depth``) a pseudo-view's
    depth is the cloud's render where the cloud's colour agrees with the repaired image
    (:func:`dreamer.splats.pseudo_views.pseudo_view_depth`). Pseudo-views stay in the training
    set to the end.

Optimisation
    INRIA's recipe: Adam per parameter group, the means' learning rate decaying exponentially and
    scaled by the scene scale, SH degree raised every ``sh_degree_interval`` iterations,
    densification and pruning by gsplat's ``DefaultStrategy`` (on CPU through the pure-torch
    rasterizer's gsplat-style ``info``), whose prune never removes every Gaussian
    (:mod:`dreamer.splats.strategy`).

Multi-scale scenes
    With ``lod`` (:class:`~dreamer.splats.lod.LevelsOfDetail`, one entry per point: the zoom
    levels of a deep zoom) every Gaussian keeps its level and fade lengths through densification,
    each training view draws the levels that match its resolution, and the means of level ``L``
    move at the means' learning rate times the ratio of level ``L``'s median initial size to
    level 0's (a step of the wide scene's size would throw a Gaussian 1000 times smaller far off
    its place). ``rasterize_mode="antialiased"`` and ``filter_3d`` (Mip-Splatting's 2D and 3D
    filters, :mod:`dreamer.splats.lod`) keep Gaussians seen at many scales from aliasing; the
    3D filter is recomputed from the training cameras at every densification step.

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

import json
import logging
import math
import time
from pathlib import Path

import torch
from torch import Tensor

from dreamer.cameras import Camera
from dreamer.pointcloud import PointCloud
from dreamer.scene.result import DreamResult
from dreamer.splats.gaussians import Gaussians, merge_points_on_grid
from dreamer.splats.lod import LevelsOfDetail, apply_filter_3d, filter_3d_std, lod_weights
from dreamer.splats.losses import inverse_depth_l1, masked_l1, masked_psnr, masked_ssim, transmittance_barrier
from dreamer.splats.config import SplatConfig, SplatTrainingError
from dreamer.splats.pseudo_views import (_make_pseudo_views, _pseudo_views_from_state, _repair_schedule,
                                         repair_cameras)
from dreamer.splats.rasterizer import num_sh_bases, rasterize
from dreamer.splats.strategy import make_strategy
from dreamer.splats.train_state import (CHECKPOINT_FILE, CONFIG_FILE, DONE_FILE, RESULT_FILE, _fingerprint,
                                        _load_checkpoint, _load_finished, _save_checkpoint, describe_refiner)
from dreamer.splats.views import TrainingView, _check_result, _extra_splat_scale, build_training_views, scene_scale
from dreamer.progress import ProgressFn

__all__ = ["SplatConfig", "TrainingView", "SplatTrainingError", "train_gaussians", "initial_cloud",
           "build_training_views", "scene_scale", "repair_cameras", "describe_refiner", "CHECKPOINT_FILE", "DONE_FILE",
           "RESULT_FILE"]

log = logging.getLogger(__name__)


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
    given) against a training view, masked, times the view's weight. The transmittance barrier
    is apart (:func:`_barrier`): :func:`_step` keeps it out of densification."""
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


def _barrier(out, view: TrainingView, config: SplatConfig) -> Tensor | None:
    """``opaque_weight`` times the transmittance barrier
    (:func:`~dreamer.splats.losses.transmittance_barrier`) of a render on a training view's valid
    pixels, times the view's weight; None when ``opaque_weight`` is 0."""
    if config.opaque_weight <= 0:
        return None
    return view.weight * config.opaque_weight * transmittance_barrier(out.alpha, view.mask, config.opaque_alpha)


def _level_lr_factors(init: Gaussians, lod: LevelsOfDetail) -> Tensor:
    """Per zoom level, the means' learning-rate factor: the level's median initial Gaussian size
    over level 0's (or the coarsest level's), at most 1."""
    size = init.scales.detach().amax(1)
    levels = lod.level.to(size.device)
    n = int(levels.max()) + 1
    med = torch.ones(n, dtype=size.dtype, device=size.device)
    present = [lv for lv in range(n) if bool((levels == lv).any())]
    for lv in present:
        med[lv] = size[levels == lv].median()
    ref = med[present[0]]
    return (med / ref).clamp(max=1.0)


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
          config: SplatConfig, scale: float, it: int, fork_devices: list, sh_in_use: int,
          level_lr: Tensor | None = None, barrier: Tensor | None = None) -> None:
    """Backward, one Adam step per group (the means' step scaled per zoom level with
    ``level_lr``), then densification / pruning (seeded per iteration).

    The transmittance ``barrier`` adds its gradient to every parameter but not to the screen
    positions' gradient that densification reads: it closes a crack by making the Gaussians
    around it more opaque and larger, and the barrier's pull counted as a positional error
    splits them into more, smaller Gaussians instead, with new cracks between them in the views
    between the training cameras (measured: a stricter barrier gave more cracks in the videos
    and 1.8x the Gaussians)."""
    if barrier is None or not barrier.requires_grad:
        loss.backward()
    elif strategy is None or it >= config.refine_stop_iter or not isinstance(info.get("means2d"), Tensor):
        (loss + barrier).backward()
    else:
        loss.backward(retain_graph=True)
        means2d = info["means2d"]
        kept = None if means2d.grad is None else means2d.grad.clone()
        barrier.backward()
        means2d.grad = kept
    optimizers["means"].param_groups[0]["lr"] = _means_lr(config, scale, it)
    before = params["means"].detach().clone() if level_lr is not None else None
    _adam_steps(params, optimizers, it, sh_in_use)
    if before is not None:
        factor = level_lr[params["level"].detach().round().long()][:, None]
        with torch.no_grad():
            params["means"].copy_(before + (params["means"] - before) * factor)
    if strategy is not None:
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(config.seed * 1_000_003 + it)
            strategy.step_post_backward(params, optimizers, strategy_state, it, info, packed=False)


def _filter_3d(params: dict, cameras: list[Camera], config: SplatConfig) -> Tensor:
    """The 3D filter sizes [N] of the current Gaussians (their levels of detail considered)."""
    lod = (params["lod_in"].detach(), params["lod_out"].detach()) if "level" in params else None
    return filter_3d_std(params["means"].detach(), cameras, variance=config.filter_3d, lod=lod)


def _scale_floor(params: dict, cameras: list[Camera], config: SplatConfig) -> Tensor:
    """The size floor [N] (world units) of the current Gaussians: ``min_scale_px`` pixels of
    each one's finest training view."""
    lod = (params["lod_in"].detach(), params["lod_out"].detach()) if "level" in params else None
    return filter_3d_std(params["means"].detach(), cameras, variance=config.min_scale_px ** 2, lod=lod)


def _floored(scales: Tensor, floor: Tensor) -> Tensor:
    """``sqrt(scales^2 + floor^2)`` [N,3] (differentiable in ``scales``): no axis under the floor."""
    return torch.sqrt(scales * scales + (floor.to(scales.dtype) ** 2)[:, None])


def _with_floor_baked(params: dict) -> dict:
    """``params`` with the size floor folded into the log scales (and its entry dropped)."""
    if "scale_floor" not in params:
        return params
    out = {k: v for k, v in params.items() if k != "scale_floor"}
    out["scales"] = torch.log(_floored(torch.exp(params["scales"].detach()), params["scale_floor"].detach()))
    return out


def initial_cloud(points: PointCloud, config: SplatConfig) -> PointCloud:
    """The cloud the initial Gaussians are made from: ``points`` merged on the footprint grid as
    ``init_cell``, ``init_flat_levels`` and ``init_flat_tolerance`` say
    (:func:`~dreamer.splats.gaussians.merge_points_on_grid`)."""
    return merge_points_on_grid(points, config.init_cell, flat_levels=config.init_flat_levels,
                                flat_tolerance=config.init_flat_tolerance)


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
    lod: LevelsOfDetail | None = None,
    path_cameras: list[Camera] | None = None,
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
        lod: levels of detail of ``result.points`` (one entry per point; see the module
            docstring), kept by every Gaussian (one initial Gaussian per point: ``init_cell``
            does not apply); not with ``init``.
        path_cameras: the cameras of the fly-through the splats will be rendered along, of the
            views' size: ``config.path_views`` of them become training views re-rendered from
            the cloud (see "Training views"); ignored when ``config.path_views`` is 0.
    Returns:
        The trained :class:`Gaussians` (detached, on the training device).
    Raises:
        ValueError: bad inputs (empty cloud, no views, NaN images, bad settings).
        SplatTrainingError: the loss became NaN / inf (the message names the iteration). A
            prune that would remove every Gaussian keeps them (:mod:`dreamer.splats.strategy`).
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
    if lod is not None:
        if not isinstance(lod, LevelsOfDetail):
            raise TypeError(f"lod must be a LevelsOfDetail or None, got {type(lod).__name__}")
        if init is not None:
            raise ValueError("give lod (levels of detail of the points) or init (Gaussians to fine-tune), not both")
        if len(lod) != len(result.points):
            raise ValueError(f"lod has {len(lod)} entries but the scene has {len(result.points)} points: "
                             f"give one per point")
    device = resolve_device(config.device)
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if path_cameras is not None:
        path_cameras = list(path_cameras)
    used_path = path_cameras if config.path_views > 0 else None
    fingerprint = _fingerprint(result, config, init, refiner, lod, used_path) if folder is not None else ""

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

    if config.depth_weight > 0 and config.depth_points and init is None and lod is None:
        from dreamer.splats.depth_points import add_view_depth_points

        splat_scale, max_px = _extra_splat_scale(result, config)
        result, added = add_view_depth_points(result, splat_scale=splat_scale, max_splat_px=max_px)
        if added:
            log.info("splats: %d points added from the views' depth maps where the cloud lacks their surface", added)
    scale = scene_scale(result)
    views = build_training_views(result, config, device=device, on_progress=on_progress, path_cameras=used_path)
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
        # With levels of detail one Gaussian per point keeps each point's level and fade lengths.
        cloud = result.points.to(device) if lod is not None else initial_cloud(result.points.to(device), config)
        if len(cloud) < len(result.points):
            log.info("splats: %d points merged to %d Gaussians on a grid of %g footprints%s", len(result.points),
                     len(cloud), config.init_cell, f" (flat regions up to {2 ** config.init_flat_levels} times coarser)"
                     if config.init_flat_levels else "")
        start_from = Gaussians.from_points(cloud, sh_degree=config.sh_degree, opacity=config.init_opacity,
                                           scale_mult=config.init_scale)
    else:
        start_from = init.to(device)
    params = {k: torch.nn.Parameter(t.detach().clone()) for k, t in start_from.params().items()}
    if params["shN"].shape[1] == 0:
        params["shN"].requires_grad_(False)  # degree 0: nothing to optimise
    # Per-Gaussian data that densification copies along but no optimizer touches.
    level_lr = None
    if lod is not None:
        lod = lod.to(device)
        params["level"] = torch.nn.Parameter(lod.level.float(), requires_grad=False)
        params["lod_in"] = torch.nn.Parameter(lod.lod_in.float(), requires_grad=False)
        params["lod_out"] = torch.nn.Parameter(lod.lod_out.float(), requires_grad=False)
        level_lr = _level_lr_factors(start_from, lod)
    train_cameras = [v.camera for v in views]
    if config.filter_3d > 0:
        params["filter_3d"] = torch.nn.Parameter(_filter_3d(params, train_cameras, config), requires_grad=False)
    if config.min_scale_px > 0:
        params["scale_floor"] = torch.nn.Parameter(_scale_floor(params, train_cameras, config), requires_grad=False)
    optimizers = _make_optimizers(params, config, scale)
    strategy = make_strategy(config) if config.densify else None
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
        pseudo = _pseudo_views_from_state(state, config, device, result)
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
        scales, opacities = torch.exp(params["scales"]), torch.sigmoid(params["opacities"])
        if "scale_floor" in params:
            scales = _floored(scales, params["scale_floor"])
        if "filter_3d" in params:
            scales, opacities = apply_filter_3d(scales, opacities, params["filter_3d"])
        if "level" in params:
            opacities = opacities * lod_weights(params["means"].detach(), params["lod_in"], params["lod_out"],
                                                view.camera)
        out = rasterize(params["means"], params["quats"], scales, opacities, sh, view.camera, sh_degree=sh_deg,
                        near_plane=config.near_plane, rasterize_mode=config.rasterize_mode)
        if strategy is not None:
            strategy.step_pre_backward(params, optimizers, strategy_state, it, out.info)
        loss, l1, ssim, depth_loss = _loss(out, view, config, _background(config, it, device))
        barrier = _barrier(out, view, config)
        total = loss if barrier is None else loss + barrier
        if not torch.isfinite(total):
            raise SplatTrainingError(
                f"splat training diverged: the loss is {float(total.detach())} at iteration {it} "
                f"(training view {vi}); "
                "lower the learning rates or check the dreamed views")
        if loss.requires_grad:
            _step(loss, params, optimizers, strategy, strategy_state, out.info, config, scale, it, fork_devices,
                  sh_deg, level_lr, barrier)
            if strategy is not None and (it + 1) % config.refine_every == 0 and it < config.refine_stop_iter:
                # Densification moved, added and removed Gaussians: their finest views changed.
                if "filter_3d" in params:
                    params["filter_3d"] = torch.nn.Parameter(_filter_3d(params, train_cameras, config),
                                                             requires_grad=False)
                if "scale_floor" in params:
                    params["scale_floor"] = torch.nn.Parameter(_scale_floor(params, train_cameras, config),
                                                               requires_grad=False)
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
        gaussians = Gaussians.from_params(_with_floor_baked(params), rasterize_mode=config.rasterize_mode)
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
