"""Points from the dreamed views' depth maps where the cloud lacks the surface a view sees.

Depth supervision (:func:`dreamer.splats.losses.inverse_depth_l1`) holds the splats' rendered
depth to the views' depth maps, but a loss only moves a Gaussian by a few footprints over a run
(the centres' learning rate is a small fraction of the scene per step). Where a view sees a
surface that the cloud does not hold, the splats there are Gaussians of the surface behind it,
metres away, and no loss brings them forward: the view's colours get painted onto the far
surface and its depth stays wrong from every other camera. This happens wherever a view's
pixels were not lifted because the cloud already covered them with something farther (a
foreground object that enters a view beside surfaces earlier views saw behind it).

So, before the Gaussians are made, each dreamed view in turn is compared with the cloud
rendered into its camera (with the points added for the views before it): its pixels with no
point, or whose depth is nearer than the cloud's by more than :data:`NEARER` of the depth, are
lifted too (colour and depth of the view), except the pixels the dream loop leaves unlifted
for the same reasons: the far side of a depth discontinuity (:func:`alignment.stretched_pixels`)
and pixels inside a ramp across a depth edge
(:func:`dreamer.scene.depth_edges.straddling_pixels`), which would lift to points floating
between two surfaces. A view whose depth agrees with the cloud adds nothing (a view of the
dream loop holds the cloud's own rendered depth wherever it did not lift new pixels).
"""

from __future__ import annotations

import torch

from dreamer.pointcloud import PointCloud
from dreamer.scene.result import DreamResult

__all__ = ["NEARER", "missing_surface_mask", "add_view_depth_points"]

NEARER = 0.05
"""A view's pixel shows a surface the cloud lacks when its depth is below the cloud's rendered
depth by more than this fraction (the cloud's own render varies by about a footprint)."""


def missing_surface_mask(points: PointCloud, view, *, splat_scale: float = 1.5, max_splat_px: float = 32.0,
                         nearer: float = NEARER, stretch_threshold: float = 0.08) -> torch.Tensor:
    """Bool [H,W]: the pixels of dreamed ``view`` (a :class:`~dreamer.scene.DreamView`) whose
    surface ``points`` lack: no point covers them, or the view's depth is nearer than the
    cloud's by more than ``nearer`` of it; never a pixel with no valid depth, on the far side
    of a depth discontinuity (``stretch_threshold``: the dream loop's setting) or inside a ramp
    across a depth edge."""
    from alignment import stretched_pixels
    from dreamer.render import render_points
    from dreamer.scene.depth_edges import straddling_pixels

    if not 0.0 < nearer < 1.0:
        raise ValueError(f"nearer must be a fraction in (0, 1), got {nearer!r}")
    cam = view.camera.to(points.device)
    depth = view.depth.to(device=points.device, dtype=torch.float32)
    valid = torch.isfinite(depth) & (depth > 0)
    if not bool(valid.any()):
        return valid
    render = render_points(points, cam, splat_scale=splat_scale, max_splat_px=max_splat_px)
    missing = ~render.covered | (depth < render.depth * (1.0 - nearer))
    # The edge tests want a depth everywhere: invalid pixels (never lifted) take the median.
    filled = torch.where(valid, depth, depth[valid].median())
    edges = stretched_pixels(filled, threshold=stretch_threshold) | straddling_pixels(filled,
                                                                                       threshold=stretch_threshold)
    return missing & valid & ~edges


def add_view_depth_points(result: DreamResult, *, splat_scale: float = 1.5, max_splat_px: float = 32.0,
                          nearer: float = NEARER) -> tuple[DreamResult, int]:
    """``result`` with the points of :func:`missing_surface_mask` of each view added (views in
    order, each against the cloud with the points of the views before it), and how many
    points were added. The views are unchanged; without a missing pixel ``result`` itself is
    returned."""
    from dreamer.render import lift

    from dreamer.splats.views import dream_setting

    stretch = dream_setting(result, "stretch_threshold", 0.08)
    points, added = result.points, 0
    for v in result.views:
        mask = missing_surface_mask(points, v, splat_scale=splat_scale, max_splat_px=max_splat_px, nearer=nearer,
                                    stretch_threshold=stretch)
        if not bool(mask.any()):
            continue
        cam = v.camera.to(points.device)
        new = lift(v.image.to(device=points.device, dtype=torch.float32).clamp(0, 1),
                   v.depth.to(device=points.device, dtype=torch.float32), cam, mask)
        points, added = points.cat(new.to(points.device)), added + len(new)
    if added == 0:
        return result, 0
    return DreamResult(points, result.views, result.config), added
