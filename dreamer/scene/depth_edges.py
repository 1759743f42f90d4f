"""Pixels whose depth straddles an occlusion edge: the ramps a depth map puts between an object
and the background it hides ("flying pixels"), which must not be lifted.

A monocular depth model (and any blended or resampled depth) does not jump at a silhouette: it
ramps over a few pixels, and each pixel of the ramp lifts to a point in the free space between
the two surfaces. Neighbouring steps along the ramp are small, so a test on neighbour pairs
(:func:`alignment.stretched_pixels`) misses ramps wider than its span. This test looks across
the ramp instead. Along each of four directions d (rows, columns, both diagonals) and in inverse
depth (linear in pixel coordinates on any plane), with ``a`` and ``b`` the values ``r`` pixels
before and after pixel p and ``a2``, ``b2`` those ``2 r`` pixels away:

1. the jump ``|b - a|`` exceeds ``threshold`` times the farther side (a > 8% depth jump at 0.08);
2. it is not a plane: the jump is more than ``plane_factor`` times the two outer steps
   ``|a - a2| + |b2 - b|`` together (on a plane they add up to exactly the jump; beside an
   edge the outer steps lie on the flat sides), or, for a ramp beside a narrow strip, more
   than ``2 * plane_factor`` times the smaller outer step while the larger one is itself
   bigger than the jump (another edge beyond the strip);
3. p belongs to neither side: it is farther than ``between`` times the jump from each side's
   surface continued as a plane to p (from ``a2``, ``a`` and from ``b2``, ``b``), and from
   both of its own neighbours along d (a surface that bends inside the window, such as a
   crease). The object's silhouette and the background next to the ramp stay.

A pixel flagged along any direction is not lifted. Near the image border a sample falls back to
the last pixel inside on its line, and the one outer step inside the image, doubled, stands for
both in test 2.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dreamer.checks import check_int, check_map, check_number

__all__ = ["straddling_pixels"]

_DIRECTIONS = ((0, 1), (1, 0), (1, 1), (1, -1))


def straddling_pixels(depth: Tensor, *, radius: int = 4, threshold: float = 0.08, plane_factor: float = 2.0,
                      between: float = 0.1) -> Tensor:
    """Bool [H,W]: pixels of z-depth ``depth`` [H,W] (> 0 where tested) inside a ramp across a
    depth edge up to about ``radius`` pixels wide (the tests in the module docstring).
    Pixels with depth <= 0 or not finite are never flagged and count as no sample."""
    check_map(depth, "depth")
    radius = check_int(radius, "radius", min=1)
    for name, v in (("threshold", threshold), ("plane_factor", plane_factor), ("between", between)):
        check_number(v, name, min=0, open_min=True)
    ok = torch.isfinite(depth) & (depth > 0)
    disp = torch.where(ok, 1.0 / depth.clamp_min(1e-12), torch.zeros_like(depth))
    H, W = depth.shape
    r = radius
    flat = disp.reshape(-1)
    ys = torch.arange(H, device=depth.device)[:, None].expand(H, W)
    xs = torch.arange(W, device=depth.device)[None, :].expand(H, W)
    far = torch.full((H, W), 2 * r, dtype=torch.long, device=depth.device)
    out = torch.zeros_like(ok)
    for dy, dx in _DIRECTIONS:
        # Steps that stay inside the image along +d and -d: near the border a sample falls back
        # to the last pixel on the line inside, and an outer sample that is not real is not used.
        ahead, behind = far, far
        for c, dc, n in ((ys, dy, H), (xs, dx, W)):
            if dc > 0:
                ahead, behind = torch.minimum(ahead, n - 1 - c), torch.minimum(behind, c)
            elif dc < 0:
                ahead, behind = torch.minimum(ahead, c), torch.minimum(behind, n - 1 - c)
        kb, kb2 = torch.clamp(behind, max=r), torch.clamp(behind, max=2 * r)
        ka, ka2 = torch.clamp(ahead, max=r), torch.clamp(ahead, max=2 * r)
        a2, a, b, b2 = (_sample(flat, ys, xs, dy, dx, k) for k in (-kb2, -kb, ka, ka2))
        prev, nxt = (_sample(flat, ys, xs, dy, dx, k)
                     for k in (-torch.clamp(behind, max=1), torch.clamp(ahead, max=1)))
        in_a2, in_b2 = behind >= 2 * r, ahead >= 2 * r
        sampled = (a2 > 0) & (a > 0) & (b > 0) & (b2 > 0) & (in_a2 | in_b2) & (behind > 0) & (ahead > 0)
        jump = (b - a).abs()
        # On a plane the two outer steps add up to the jump; with one of them beyond the border
        # the one inside stands for both.
        step_a, step_b = (a - a2).abs(), (b2 - b).abs()
        both = in_a2 & in_b2
        outer = torch.where(both, step_a + step_b, 2.0 * torch.where(in_a2, step_a, step_b))
        not_plane = jump > plane_factor * outer
        # A ramp beside a narrow strip: one side flat, the other's outer step another edge.
        not_plane |= both & (jump > 2.0 * plane_factor * torch.minimum(step_a, step_b)) & (
            torch.maximum(step_a, step_b) > jump)
        edge = (jump > threshold * torch.minimum(a, b)) & not_plane
        # p belongs to a side when the side's surface, continued as a plane, reaches it.
        tol = between * jump
        on_a = (disp - (a + (a - a2) * kb / (kb2 - kb).clamp_min(1))).abs() <= tol
        on_b = (disp - (b + (b - b2) * ka / (ka2 - ka).clamp_min(1))).abs() <= tol
        # or when it continues a neighbour without a step (a surface that bends inside the window).
        smooth = torch.minimum((disp - prev).abs(), (disp - nxt).abs()) <= tol
        edge &= ~on_a & ~on_b & ~smooth
        out |= edge & sampled
    return out & ok


def _sample(flat: Tensor, ys: Tensor, xs: Tensor, dy: int, dx: int, k: Tensor) -> Tensor:
    """[H,W]: the values of ``flat`` (an H x W map, flattened) at pixel + k * (dy, dx)."""
    H, W = ys.shape
    return flat[((ys + k * dy) * W + xs + k * dx).reshape(-1)].view(H, W)
