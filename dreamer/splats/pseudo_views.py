"""Repaired pseudo-views of splat training: the novel cameras of each repair round, the renders
repaired by the refiner, and the pseudo-views a checkpoint keeps (see "Repaired views" in
:mod:`dreamer.splats.train`)."""

from __future__ import annotations


import torch
from torch import Tensor

from dreamer.cameras import Camera
from dreamer.scene.result import DreamResult
from dreamer.splats.rasterizer import num_sh_bases, rasterize

from dreamer.splats.config import SplatConfig
from dreamer.splats.views import TrainingView

__all__ = ["repair_cameras", "pseudo_view_depth"]


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


def pseudo_view_depth(result: DreamResult, camera: Camera, image: Tensor, config: SplatConfig) -> Tensor | None:
    """The depth [H,W] a pseudo-view of ``camera`` carries (0 = unknown pixel), or None without
    ``config.repair_depth``: the cloud ``result.points`` rendered into the camera, its pinholes
    closed as the path views' are, where it covers the pixel and its colour agrees with the
    repaired ``image`` [H,W,3] within ``config.repair_depth_agree`` (mean absolute difference
    over the channels). Where the repair drew a surface the cloud lacks (the far side of an
    object, whose cloud render shows the wall behind it) the colours differ and the depth is
    left unknown. A pure function of the cloud, the camera and the image: a resumed run gets
    the depth of an uninterrupted one."""
    if not config.repair_depth:
        return None
    from dreamer.render import clean_coverage, render_points
    from dreamer.splats.views import _extra_splat_scale

    splat_scale, max_px = _extra_splat_scale(result, config)
    points = result.points.to(image.device)
    fixed, masks = clean_coverage(render_points(points, camera, splat_scale=splat_scale, max_splat_px=max_px),
                                  close_px=config.path_close_px, grow_px=0)
    agree = (fixed.image.float() - image).abs().mean(-1) <= config.repair_depth_agree
    return torch.where(masks.known & agree, fixed.depth.float(), 0.0)


def _make_pseudo_views(params: dict, cameras: list[Camera], round_index: int, sh_deg: int, config: SplatConfig,
                       result: DreamResult, pivots: list[float], refiner, device: torch.device) -> list[TrainingView]:
    """Render the current splats from ``cameras``, repair each render with the nearest dreamed
    view as reference, and return them as pseudo-views (8-bit, weight ``repair_weight``, with
    the depth of :func:`pseudo_view_depth`)."""
    from dreamer.splats.repair import nearest_camera, quantize_image

    dreamed = [v.camera for v in result.views]
    out = []
    with torch.no_grad():
        sh = torch.cat([params["sh0"], params["shN"][:, :num_sh_bases(sh_deg) - 1]], 1)
        for k, cam in enumerate(cameras):
            cam = cam.to(device)
            scales = torch.exp(params["scales"])
            if "scale_floor" in params:  # drawn as training draws them (see SplatConfig.min_scale_px)
                scales = torch.sqrt(scales * scales + (params["scale_floor"] ** 2)[:, None])
            render = rasterize(params["means"], params["quats"], scales,
                               torch.sigmoid(params["opacities"]), sh, cam, sh_degree=sh_deg,
                               near_plane=config.near_plane).rgb.clamp(0, 1)
            src = nearest_camera(cam, dreamed, pivots)
            g = torch.Generator().manual_seed(config.seed * 1_000_003 + 7919 * (round_index + 1) + k)
            repaired = refiner.refine(render, reference=result.views[src].image.to(device), camera=cam, generator=g)
            cam.check_image(repaired, "the refiner's output")
            image = quantize_image(repaired).to(device)
            out.append(TrainingView(cam, image, None, src, depth=pseudo_view_depth(result, cam, image, config),
                                    weight=config.repair_weight, pseudo=True, round=round_index))
    return out


def _pseudo_views_from_state(state: dict, config: SplatConfig, device: torch.device,
                             result: DreamResult) -> list[TrainingView]:
    out = []
    for e in state.get("pseudo_views", []):
        cam, image = Camera.from_dict(e["camera"]).to(device), (e["image"].float() / 255.0).to(device)
        out.append(TrainingView(cam, image, None, int(e["source"]), depth=pseudo_view_depth(result, cam, image, config),
                                weight=config.repair_weight, pseudo=True, round=int(e["round"])))
    return out
