"""Put a view's new pixels into the cloud: the last step of the loop and of its joint refinement."""

from __future__ import annotations

import torch
from torch import Tensor

from alignment import dedup_mask, seam_jump, stretched_pixels
from dreamer.cameras import Camera
from dreamer.pointcloud import PointCloud
from dreamer.render import HoleMasks, PointRender, dilate, lift
from dreamer.scene.depth_edges import straddling_pixels
from dreamer.scene.result import DreamView

__all__ = ["place_view", "alignment_known", "first_view_mask"]

# Ramps across depth edges up to about this many pixels wide are not lifted
# (:func:`straddling_pixels`); 0 turns the test off.
EDGE_RAMP_RADIUS = 4


def place_view(points: PointCloud, camera: Camera, image: Tensor, render: PointRender, masks: HoleMasks,
               new_depth: Tensor, *, prompt: str, stats: dict, estimate: Tensor | None,
               config) -> tuple[PointCloud, DreamView]:
    """Lift the hole pixels of a view with their aligned ``new_depth`` [H,W] and merge them.

    Stretched pixels (the far side of depth discontinuities) and pixels inside a depth ramp
    across an occlusion edge (:func:`dreamer.scene.depth_edges.straddling_pixels`) are not
    lifted. New points are checked against the existing cloud only: a view keeps all its own
    pixels (thinning them on the grid would halve its density), and a revisited surface adds
    nothing. ``config`` is the
    DreamConfig; ``stats`` is completed with the counts and the seam jump.
    """
    full_depth = torch.where(masks.hole, new_depth.clamp_min(1e-6), render.depth)
    stretched = stretched_pixels(full_depth, threshold=config.stretch_threshold)
    if EDGE_RAMP_RADIUS > 0:
        straddling = straddling_pixels(full_depth, radius=EDGE_RAMP_RADIUS, threshold=config.stretch_threshold)
    else:
        straddling = torch.zeros_like(stretched)
    lift_mask = masks.hole & ~stretched & ~straddling
    new = lift(image, full_depth, camera, lift_mask)
    keep = dedup_mask(points.xyz, points.radius, new.xyz, new.radius, cell_factor=config.merge_cell_factor,
                      merge_within_new=False,
                      existing_blocks=points.block_bounds)
    stats = {**stats, "new_points": int(lift_mask.sum()), "kept_points": int(keep.sum()),
             "stretched_pixels": int((masks.hole & stretched).sum()),
             "straddling_pixels": int((masks.hole & straddling & ~stretched).sum()),
             "seam_jump": seam_jump(full_depth, render.depth, masks.known, masks.hole)}
    return points.cat(new.select(keep)), DreamView(camera, image, full_depth, lift_mask, prompt, stats, estimate,
                                                        known=masks.known)


def alignment_known(known: Tensor, estimate: Tensor, min_pixels: int) -> Tensor:
    """The known pixels that may anchor a view's depth alignment: ``known`` [H,W] without those
    in or within :data:`EDGE_RAMP_RADIUS` pixels of a depth ramp of ``estimate`` [H,W] (the raw
    estimated depth; :func:`straddling_pixels`), or all of ``known`` when fewer than
    ``min_pixels`` would remain (an alignment on pixels near edges beats none).

    Beside an occluder the estimate ramps from the object to the background, so its ratio to the
    rendered depth there is neither the object's nor the background's: as a seam anchor it would
    pull the whole disoccluded background toward the object (flying pixels in wide sheets).
    """
    if EDGE_RAMP_RADIUS <= 0:
        return known
    ramp = straddling_pixels(estimate, radius=EDGE_RAMP_RADIUS)
    anchors = known & ~dilate(ramp, EDGE_RAMP_RADIUS)
    return anchors if int(anchors.sum()) >= min_pixels else known


def first_view_mask(depth: Tensor, config) -> Tensor:
    """Pixels of the first view to lift when its depth was estimated: neither stretched nor inside
    a depth ramp. Bool [H,W]. (A depth map given with the image is lifted as given, less its
    stretched pixels.)"""
    keep = ~stretched_pixels(depth, threshold=config.stretch_threshold)
    if EDGE_RAMP_RADIUS > 0:
        keep &= ~straddling_pixels(depth, radius=EDGE_RAMP_RADIUS, threshold=config.stretch_threshold)
    return keep
