"""Ground-truth accuracy of a dreamed scene against the procedural world."""

from __future__ import annotations

import statistics

import torch

from dreamer.backends import DepthEstimator
from dreamer.cameras import Camera, project_points, unproject_depth
from dreamer.scene.result import DreamResult

__all__ = ["world_metrics", "flying_points"]

# Half-size (pixels) of the stretch of seam over which the systematic seam step is averaged.
_SEAM_WINDOW = 4
# A true surface point counts as seen by an earlier camera when it lies in that camera's image no
# farther than this fraction beyond the world's depth there (the 3x3 maximum, for edges and grazing
# surfaces): in front of or on the surface that camera saw.
_SEEN_TOLERANCE = 0.03


def _abs_rel(depth: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> float:
    if not mask.any():
        return float("nan")
    return float(((depth[mask] - truth[mask]).abs() / truth[mask]).mean())


def _seam_pairs(depth: torch.Tensor, truth: torch.Tensor, new: torch.Tensor, existing: torch.Tensor | None = None):
    """Signed step errors over 4-adjacent pairs (p new, q existing), off the image border:
    ``((depth[p] - depth[q]) - (truth[p] - truth[q])) / truth[q]``, with p's coordinates.

    ``existing`` (bool [H,W]): the pixels that showed the cloud's surface (the seam is where the
    new pixels meet it); None: every pixel that is not new. A pixel of the new content that was
    not lifted (the far side of a depth edge, a ramp across one) is neither: it puts nothing in
    the scene, so its step with a lifted neighbour is no seam."""
    H, W = depth.shape
    b = max(1, round(max(H, W) / 64))
    inner = torch.zeros_like(new)
    inner[b:H - b, b:W - b] = True
    new = new & inner
    not_new = ~new & inner
    if existing is not None:
        not_new &= existing.to(not_new.device)
    errs, ys, xs = [], [], []
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        y0, y1, x0, x1 = max(0, -dy), min(H, H - dy), max(0, -dx), min(W, W - dx)
        p = (slice(y0, y1), slice(x0, x1))
        q = (slice(y0 + dy, y1 + dy), slice(x0 + dx, x1 + dx))
        pair = new[p] & not_new[q]
        step = depth[p][pair] - depth[q][pair]
        true_step = truth[p][pair] - truth[q][pair]
        errs.append(((step - true_step) / truth[q][pair]).double())
        py, px = torch.nonzero(pair, as_tuple=True)
        ys.append(py + y0)
        xs.append(px + x0)
    return torch.cat(errs), torch.cat(ys), torch.cat(xs)


def _seen_maps(world, camera: Camera, lifted: torch.Tensor | None) -> tuple:
    """What :func:`_seen_before` reads of an earlier view: its camera, the 3x3 maximum of the
    world's depth in it (edges and grazing surfaces) and the pixels within a pixel of one it
    lifted (``lifted``: bool [H,W]; None: every pixel)."""
    depth = world.depth(camera).float()
    farthest = torch.nn.functional.max_pool2d(depth[None, None], 3, stride=1, padding=1)[0, 0]
    near_lifted = None
    if lifted is not None:
        near_lifted = torch.nn.functional.max_pool2d(lifted.to(depth.device, torch.float32)[None, None], 3,
                                                     stride=1, padding=1)[0, 0] > 0
    return camera, farthest, near_lifted


def _seen_before(camera: Camera, earlier: list[tuple], truth: torch.Tensor,
                 where: torch.Tensor | None = None) -> torch.Tensor:
    """Bool [H,W]: the pixels of ``camera`` whose true surface point (``truth``, its z-depth) an
    earlier view lifted: it lies inside the image of an earlier view (``earlier``: its
    :func:`_seen_maps`), not hidden behind a nearer surface, within a pixel of a lifted one.
    ``where`` (bool [H,W], None: all): the pixels to judge; the others are False (the seam needs
    only the known pixels next to new ones, and judging every pixel of every view against every
    earlier one grows with their square).

    The cloud holds only what an earlier view lifted. Where ``camera`` shows a surface no earlier
    view lifted (an object that stood outside every earlier frustum, or that the earlier views saw
    only where the cloud already showed the wall behind it), the cloud's render there shows
    whatever lies behind it, the same for every alignment method: a seam against such a pixel
    measures what the earlier views' coverage missed, not the step the alignment made."""
    xyz = unproject_depth(truth, camera).reshape(-1, 3)
    judged = None
    if where is not None:
        judged = where.to(xyz.device).reshape(-1).nonzero(as_tuple=True)[0]
        xyz = xyz[judged]
    seen = torch.zeros(xyz.shape[0], dtype=torch.bool, device=xyz.device)
    for other, farthest, near_lifted in earlier:
        uv, z = project_points(xyz, other)
        u, v = uv[:, 0].floor().long(), uv[:, 1].floor().long()
        inside = (z > 0) & (u >= 0) & (u < other.width) & (v >= 0) & (v < other.height)
        idx = inside.nonzero(as_tuple=True)[0]
        if near_lifted is not None:
            idx = idx[near_lifted.to(xyz.device)[v[idx], u[idx]]]
        seen[idx] |= z[idx] <= farthest.to(xyz)[v[idx], u[idx]] * (1 + _SEEN_TOLERANCE)
    if judged is None:
        return seen.reshape(truth.shape)
    out = torch.zeros(truth.numel(), dtype=torch.bool, device=seen.device)
    out[judged] = seen
    return out.reshape(truth.shape)


def _seam_error(depth: torch.Tensor, truth: torch.Tensor, new: torch.Tensor, window: int = 0,
                existing: torch.Tensor | None = None) -> float:
    """Median over the seam's pixel pairs of the error of the depth step across it (see
    :func:`_seam_pairs`). A real discontinuity at the seam (a disocclusion) is not an error; a
    step that the truth does not have is. Pairs within 1/64 of the image's larger side from its
    border are left out: there the seam is the image's own edge and the rendered cloud's splats
    are cut off.

    ``window`` 0: each pair's own error (pixel noise of the depth counts as seam error). ``window``
    w > 0: each pair's signed error is first averaged with the seam pairs within w pixels of it
    (along the seam), so what is measured is the systematic step the seam makes, not the noise
    of single pixels. ``existing``: see :func:`_seam_pairs`."""
    e, ys, xs = _seam_pairs(depth, truth, new, existing)
    if e.numel() == 0:
        return float("nan")
    if window > 0:
        H, W = depth.shape
        total = torch.zeros(H, W, dtype=torch.float64).index_put_((ys, xs), e, accumulate=True)
        count = torch.zeros(H, W, dtype=torch.float64).index_put_((ys, xs), torch.ones_like(e), accumulate=True)
        k = 2 * window + 1
        box = lambda m: torch.nn.functional.avg_pool2d(m[None, None], k, stride=1, padding=window,  # noqa: E731
                                                       count_include_pad=True)[0, 0]
        e = (box(total) / box(count))[ys, xs]
    return float(e.abs().median())


def world_metrics(result: DreamResult, world, depth_estimator: DepthEstimator | None = None) -> dict:
    """Errors of ``result`` against ``world`` (a ProceduralWorld).

    Per dreamed view (not the first): AbsRel of the new pixels' depth after alignment and, when
    ``depth_estimator`` is given, of its raw estimate (before alignment); the seam jump error
    (the depth step from the pixels that showed the cloud, ``view.known``, to the new pixels next
    to them, minus the true step, relative; only from known pixels whose true surface an earlier
    view lifted, see :func:`_seen_before`), after and before alignment,
    and the systematic seam step (the same averaged along the seam over 9 pixels, which removes
    the pixel noise; see :func:`_seam_error`). For the cloud: mean distance of the points to the
    true surface, absolute and as a fraction of the world's extent, and the point count.
    """
    per_view = []
    seen_maps = [_seen_maps(world, v.camera, v.mask) for v in result.views[:-1]]
    for k, view in enumerate(result.views[1:], start=1):
        # z-depth only (no shading); the world caches what it traced for this camera already
        # (the inpainter's render, the depth estimator's depth), so this repeats no work.
        truth = world.depth(view.camera).to(view.depth)
        known = ~view.mask if view.known is None else view.known.to(view.mask.device)
        beside_new = torch.nn.functional.max_pool2d(view.mask[None, None].float(), 3, stride=1, padding=1)[0, 0] > 0
        known = known & _seen_before(view.camera, seen_maps[:k], truth, where=known & beside_new)
        row = {"view": k, "new_pixels": int(view.mask.sum()),
               "abs_rel_aligned": _abs_rel(view.depth, truth, view.mask),
               "seam_jump": _seam_error(view.depth, truth, view.mask, existing=known),
               "seam_step": _seam_error(view.depth, truth, view.mask, window=_SEAM_WINDOW, existing=known),
               "scale": view.stats.get("scale", float("nan"))}
        if depth_estimator is not None and view.mask.any():
            raw = depth_estimator.estimate(view.image, camera=view.camera).to(view.depth)
            row["abs_rel_unaligned"] = _abs_rel(raw, truth, view.mask)
            row["seam_jump_unaligned"] = _seam_error(torch.where(view.mask, raw, view.depth), truth, view.mask,
                                                     existing=known)
        per_view.append(row)

    dist = world.distance_to_surface(result.points.xyz)
    extent = float(world.extent)

    def pooled(key: str) -> float:
        """Mean over views weighted by their new pixels."""
        rows = [r for r in per_view if key in r and r["new_pixels"] > 0 and r[key] == r[key]]
        total = sum(r["new_pixels"] for r in rows)
        return sum(r[key] * r["new_pixels"] for r in rows) / total if total else float("nan")

    def median(key: str) -> float:
        vals = [r[key] for r in per_view if r.get(key) is not None and r[key] == r[key]]
        return statistics.median(vals) if vals else float("nan")

    return {
        "views": len(result.views),
        "points": len(result.points),
        "abs_rel_aligned": pooled("abs_rel_aligned"),
        "abs_rel_unaligned": pooled("abs_rel_unaligned"),
        "seam_jump_median": median("seam_jump"),
        "seam_jump_unaligned_median": median("seam_jump_unaligned"),
        "seam_step_median": median("seam_step"),
        "point_to_surface_mean": float(dist.mean()),
        "point_to_surface_rel_extent": float(dist.mean()) / extent,
        "world_extent": extent,
        "per_view": per_view,
    }


def flying_points(view, world, *, footprints: float = 3.0, edge_px: int = 2, edge_jump: float = 0.05,
                  drift_px: int = 8) -> dict:
    """Flying pixels of one dreamed ``view`` (a DreamView) against ``world`` (a ProceduralWorld).

    The view's lifted pixels (``view.mask``, at ``view.depth``) as points; a point is *flying*
    when it is farther than ``footprints`` of its own pixel footprints from every true surface
    and its pixel lies within ``edge_px`` pixels of a true occlusion edge (a jump of more than
    ``edge_jump`` in log z-depth between 8-neighbours of the world's depth in this camera).
    Points off the surface away from edges (depth noise, alignment drift) are counted apart, as
    ``off_surface``. A region whose depth drifted as a whole is off the surface at its edges
    too: ``flying_beyond_drift`` counts the flying points still off by more than ``footprints``
    footprints along their ray after the local drift (the mean log depth error of the lifted
    pixels away from edges within ``drift_px`` pixels) is taken out.
    Returns ``{"lifted", "flying", "flying_beyond_drift", "off_surface"}`` (counts).
    """
    from torch.nn.functional import avg_pool2d, max_pool2d, pad

    from dreamer.render import lift

    if not view.mask.any():
        return {"lifted": 0, "flying": 0, "flying_beyond_drift": 0, "off_surface": 0}
    true_depth = world.depth(view.camera).to(view.depth).clamp_min(1e-12)
    truth = torch.log(true_depth)
    H, W = truth.shape
    padded = pad(truth[None, None], (1, 1, 1, 1), mode="replicate")[0, 0]
    jump = torch.zeros_like(view.mask)
    for dy in range(3):
        for dx in range(3):
            jump |= (padded[dy : dy + H, dx : dx + W] - truth).abs() > edge_jump
    near_edge = max_pool2d(jump[None, None].float(), 2 * edge_px + 1, 1, edge_px)[0, 0] > 0
    points = lift(view.image, view.depth, view.camera, view.mask)
    off = world.distance_to_surface(points.xyz) > footprints * points.radius
    at_edge = near_edge[view.mask]
    # The local drift: mean log error of the lifted pixels away from edges around each pixel.
    error = torch.log(view.depth.clamp_min(1e-12)) - truth
    weight = (view.mask & ~near_edge).to(error.dtype)
    k = 2 * drift_px + 1
    total = avg_pool2d((error * weight)[None, None], k, 1, drift_px, count_include_pad=False)[0, 0]
    count = avg_pool2d(weight[None, None], k, 1, drift_px, count_include_pad=False)[0, 0]
    drift = torch.where(count > 0, total / count.clamp_min(1e-12), torch.zeros_like(total))
    residual = (view.depth - true_depth * torch.exp(drift)).abs()[view.mask]
    beyond = residual > footprints * points.radius
    return {"lifted": len(points), "flying": int((off & at_edge).sum()),
            "flying_beyond_drift": int((off & at_edge & beyond).sum()), "off_surface": int((off & ~at_edge).sum())}
