"""Put a view's new pixels into the cloud: the last step of the loop and of its joint refinement."""

from __future__ import annotations

import torch
from torch import Tensor

from alignment import dedup_mask, seam_jump, stretched_pixels
from dreamer.cameras import Camera
from dreamer.pointcloud import PointCloud
from dreamer.render import HoleMasks, PointRender, lift
from dreamer.scene.result import DreamView

__all__ = ["place_view"]


def place_view(points: PointCloud, camera: Camera, image: Tensor, render: PointRender, masks: HoleMasks,
               new_depth: Tensor, *, prompt: str, stats: dict, estimate: Tensor | None, config) -> tuple[PointCloud, DreamView]:
    """Lift the hole pixels of a view with their aligned ``new_depth`` [H,W] and merge them.

    Stretched pixels (the far side of depth discontinuities) are not lifted. New points are
    checked against the existing cloud only: a view keeps all its own pixels (thinning them on
    the grid would halve its density), and a revisited surface adds nothing. ``config`` is the
    DreamConfig; ``stats`` is completed with the counts and the seam jump.
    """
    full_depth = torch.where(masks.hole, new_depth.clamp_min(1e-6), render.depth)
    stretched = stretched_pixels(full_depth, threshold=config.stretch_threshold)
    lift_mask = masks.hole & ~stretched
    new = lift(image, full_depth, camera, lift_mask)
    keep = dedup_mask(points.xyz, points.radius, new.xyz, new.radius, cell_factor=config.merge_cell_factor,
                      merge_within_new=False)
    stats = {**stats, "new_points": int(lift_mask.sum()), "kept_points": int(keep.sum()),
             "stretched_pixels": int((masks.hole & stretched).sum()),
             "seam_jump": seam_jump(full_depth, render.depth, masks.known, masks.hole)}
    return points.cat(new.select(keep)), DreamView(camera, image, full_depth, lift_mask, prompt, stats, estimate)
