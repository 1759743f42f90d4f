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
    Pixels with depth <= 0 or not finite are never flagged and count as no sample.

    Test 1 runs on shifted views of the whole map (pixels whose samples ``radius`` pixels away
    are inside the image) and on a gathered list of the border band; the other tests run on the
    few pixels that pass it. Same result as :func:`_straddling_pixels_reference`.
    """
    check_map(depth, "depth")
    radius = check_int(radius, "radius", min=1)
    for name, v in (("threshold", threshold), ("plane_factor", plane_factor), ("between", between)):
        check_number(v, name, min=0, open_min=True)
    ok = torch.isfinite(depth) & (depth > 0)
    disp = torch.where(ok, 1.0 / depth.clamp_min(1e-12), torch.zeros_like(depth))
    H, W = depth.shape
    r = radius
    flat, ok_flat = disp.reshape(-1), ok.reshape(-1)
    out = torch.zeros(H * W, dtype=torch.bool, device=depth.device)
    for dy, dx in _DIRECTIONS:
        step = dy * W + dx
        # Test 1 inside: both samples r steps away are in the image (views, no gathers).
        y0, y1, x0, x1 = r * abs(dy), H - r * abs(dy), r * abs(dx), W - r * abs(dx)
        parts = []
        if y0 < y1 and x0 < x1:
            a = disp[y0 - r * dy : y1 - r * dy, x0 - r * dx : x1 - r * dx]
            b = disp[y0 + r * dy : y1 + r * dy, x0 + r * dx : x1 + r * dx]
            near = torch.minimum(a, b)  # a > 0 and b > 0 <=> near > 0 (disparities are >= 0)
            iy, ix = torch.nonzero(((b - a).abs() > threshold * near) & (near > 0), as_tuple=True)
            parts.append((iy + y0) * W + (ix + x0))
        # Test 1 on the border band, where a sample falls back to the last pixel on its line.
        q = _band(H, W, y0, y1, x0, x1, depth.device)
        if q.numel():
            ahead, behind = _steps_inside(q, dy, dx, H, W, 2 * r)
            a, b = flat[q - behind.clamp(max=r) * step], flat[q + ahead.clamp(max=r) * step]
            parts.append(q[((b - a).abs() > threshold * torch.minimum(a, b)) & (a > 0) & (b > 0)
                           & (ahead > 0) & (behind > 0)])
        p = torch.cat(parts) if parts else q
        p = p[ok_flat[p]]
        if p.numel() == 0:
            continue
        ahead, behind = _steps_inside(p, dy, dx, H, W, 2 * r)
        ka, kb = ahead.clamp(max=r), behind.clamp(max=r)
        a, b = flat[p - kb * step], flat[p + ka * step]
        out |= _ramp_tests(flat, p, step, r, ahead, behind, ka, kb, a, b, (b - a).abs(), plane_factor, between,
                           H * W)
    return out.view(H, W)


def _ramp_tests(flat, p, step, r, ahead, behind, ka, kb, a, b, jump, plane_factor, between, n):
    """bool [n]: tests 2 and 3 of the module docstring on the pixels ``p`` that pass test 1."""
    a2, b2 = flat[p - behind * step], flat[p + ahead * step]  # up to 2r away
    prev, nxt = flat[p - behind.clamp(max=1) * step], flat[p + ahead.clamp(max=1) * step]
    d = flat[p]
    in_a2, in_b2 = behind >= 2 * r, ahead >= 2 * r
    # On a plane the two outer steps add up to the jump; with one of them beyond the border
    # the one inside stands for both.
    step_a, step_b = (a - a2).abs(), (b2 - b).abs()
    both = in_a2 & in_b2
    outer = torch.where(both, step_a + step_b, 2.0 * torch.where(in_a2, step_a, step_b))
    not_plane = jump > plane_factor * outer
    # A ramp beside a narrow strip: one side flat, the other's outer step another edge.
    not_plane |= both & (jump > 2.0 * plane_factor * torch.minimum(step_a, step_b)) & (
        torch.maximum(step_a, step_b) > jump)
    # p belongs to a side when the side's surface, continued as a plane, reaches it.
    tol = between * jump
    on_a = (d - (a + (a - a2) * kb / (behind - kb).clamp_min(1))).abs() <= tol
    on_b = (d - (b + (b - b2) * ka / (ahead - ka).clamp_min(1))).abs() <= tol
    # or when it continues a neighbour without a step (a surface that bends inside the window).
    smooth = torch.minimum((d - prev).abs(), (d - nxt).abs()) <= tol
    edge = not_plane & ~on_a & ~on_b & ~smooth & (a2 > 0) & (b2 > 0) & (in_a2 | in_b2)
    out = torch.zeros(n, dtype=torch.bool, device=flat.device)
    out[p[edge]] = True
    return out


def _band(H: int, W: int, y0: int, y1: int, x0: int, x1: int, device) -> Tensor:
    """int64 flat indices of the pixels of an H x W image outside rows [y0, y1) x columns [x0, x1)."""
    if not (y0 < y1 and x0 < x1):
        return torch.arange(H * W, device=device)
    cols = torch.cat([torch.arange(x0, device=device), torch.arange(x1, W, device=device)])
    middle = (torch.arange(y0, y1, device=device)[:, None] * W + cols[None, :]).reshape(-1)
    return torch.cat([torch.arange(y0 * W, device=device), middle, torch.arange(y1 * W, H * W, device=device)])


def _straddling_pixels_reference(depth: Tensor, *, radius: int = 4, threshold: float = 0.08,
                                 plane_factor: float = 2.0, between: float = 0.1) -> Tensor:
    """:func:`straddling_pixels` with every step on the list of valid pixels (flat indices and
    their steps to the border computed per pixel): the readable version the fast one is tested
    against."""
    check_map(depth, "depth")
    radius = check_int(radius, "radius", min=1)
    for name, v in (("threshold", threshold), ("plane_factor", plane_factor), ("between", between)):
        check_number(v, name, min=0, open_min=True)
    ok = torch.isfinite(depth) & (depth > 0)
    disp = torch.where(ok, 1.0 / depth.clamp_min(1e-12), torch.zeros_like(depth))
    H, W = depth.shape
    r = radius
    flat = disp.reshape(-1)
    every = torch.nonzero(ok.reshape(-1)).squeeze(1)
    out = torch.zeros(H * W, dtype=torch.bool, device=depth.device)
    for dy, dx in _DIRECTIONS:
        # Steps that stay inside the image along +d and -d: near the border a sample falls back
        # to the last pixel on the line inside, and an outer sample that is not real is not used.
        ahead, behind = _steps_inside(every, dy, dx, H, W, 2 * r)
        ka, kb = ahead.clamp(max=r), behind.clamp(max=r)
        a, b = flat[every - kb * (dy * W + dx)], flat[every + ka * (dy * W + dx)]
        jump = (b - a).abs()
        # Test 1 on every pixel, the others on the few that pass it.
        first = (jump > threshold * torch.minimum(a, b)) & (a > 0) & (b > 0) & (ahead > 0) & (behind > 0)
        sel = torch.nonzero(first).squeeze(1)
        if sel.numel() == 0:
            continue
        p, ahead, behind, ka, kb, a, b, jump = (t[sel] for t in (every, ahead, behind, ka, kb, a, b, jump))
        step = dy * W + dx
        a2, b2 = flat[p - behind * step], flat[p + ahead * step]  # up to 2r away
        prev, nxt = flat[p - behind.clamp(max=1) * step], flat[p + ahead.clamp(max=1) * step]
        d = flat[p]
        in_a2, in_b2 = behind >= 2 * r, ahead >= 2 * r
        # On a plane the two outer steps add up to the jump; with one of them beyond the border
        # the one inside stands for both.
        step_a, step_b = (a - a2).abs(), (b2 - b).abs()
        both = in_a2 & in_b2
        outer = torch.where(both, step_a + step_b, 2.0 * torch.where(in_a2, step_a, step_b))
        not_plane = jump > plane_factor * outer
        # A ramp beside a narrow strip: one side flat, the other's outer step another edge.
        not_plane |= both & (jump > 2.0 * plane_factor * torch.minimum(step_a, step_b)) & (
            torch.maximum(step_a, step_b) > jump)
        # p belongs to a side when the side's surface, continued as a plane, reaches it.
        tol = between * jump
        on_a = (d - (a + (a - a2) * kb / (behind - kb).clamp_min(1))).abs() <= tol
        on_b = (d - (b + (b - b2) * ka / (ahead - ka).clamp_min(1))).abs() <= tol
        # or when it continues a neighbour without a step (a surface that bends inside the window).
        smooth = torch.minimum((d - prev).abs(), (d - nxt).abs()) <= tol
        edge = not_plane & ~on_a & ~on_b & ~smooth & (a2 > 0) & (b2 > 0) & (in_a2 | in_b2)
        out[p[edge]] = True
    return out.view(H, W)


def _steps_inside(flat_index: Tensor, dy: int, dx: int, H: int, W: int, most: int) -> tuple[Tensor, Tensor]:
    """For flat pixel indices: how many steps along +(dy, dx) and along -(dy, dx) stay inside the
    H x W image, at most ``most`` each (int64)."""
    y, x = flat_index // W, flat_index % W
    ahead = torch.full_like(flat_index, most)
    behind = torch.full_like(flat_index, most)
    for c, dc, n in ((y, dy, H), (x, dx, W)):
        if dc > 0:
            ahead, behind = torch.minimum(ahead, n - 1 - c), torch.minimum(behind, c)
        elif dc < 0:
            ahead, behind = torch.minimum(ahead, c), torch.minimum(behind, n - 1 - c)
    return ahead, behind
