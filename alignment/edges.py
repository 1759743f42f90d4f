"""Find the pixels that would become long streaks ("noodles") when lifted to 3D.

A pixel becomes a streak when its depth jumps relative to a neighbour: lifted, the two points
are far apart along the rays, and a splat of the far one spans the gap. At an occlusion edge
the depth model (and any rendered or blended depth) also puts "flying pixels" between the two
surfaces. Those pixels must not be lifted.

Choice: for each jump, the pixel on the FAR side is rejected and the near side is kept. The near
side is the object's silhouette, a valid edge; the far side is where mixed, flying depths sit,
and the background behind an edge is seen again, cleanly, from the next cameras.

Criterion (two tests per pair of neighbouring pixels p, q along a direction d):

1. First order: the relative jump ``(z_far - z_near) / z_near`` exceeds ``threshold``.
2. Second order: the jump is not explained by the surface continuing as a plane. A plane's
   inverse depth is exactly linear in pixel coordinates, so on a plane the disparity step
   ``1/z_q - 1/z_p`` equals the steps ``span`` pixels before and after it along d. The pair
   counts as a discontinuity only if its step differs from BOTH of those by more than
   ``threshold`` (relative to the far disparity). Taking the smaller of the two keeps creases
   (a wall meeting a floor: the step matches one side) and rejects ramps of flying pixels up
   to ``span`` pixels wide (their steps match neither side).

Test 1 alone flags every grazing plane: on a floor seen by a level camera the relative step
between rows is ``1 / (v - c_y)``, over 5% for the 20 rows below the horizon at 512 px. Test 2
alone would flag small second-order wiggles of noise where there is no real jump.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamer.checks import check_map, check_positive

__all__ = ["stretched_pixels"]

_DIRECTIONS_4 = ((0, 1), (1, 0))
_DIRECTIONS_8 = ((0, 1), (1, 0), (1, 1), (1, -1))


def _pair_origins(H: int, W: int, dy: int, dx: int) -> tuple[slice, slice]:
    """Rows and columns of the pixels p whose neighbour p + (dy, dx) is inside an H x W image."""
    return slice(max(0, -dy), H - max(0, dy)), slice(max(0, -dx), W - max(0, dx))


def _steps_inside(y: Tensor, x: Tensor, dy: int, dx: int, H: int, W: int, span: int, extra: int) -> Tensor:
    """int64: the largest k <= ``span`` with p + (k + extra) * (dy, dx) inside the image (0: none)."""
    k = torch.full_like(y, span)
    for c, dc, n in ((y, dy, H), (x, dx, W)):
        if dc > 0:
            k = torch.minimum(k, n - 1 - c - extra)
        elif dc < 0:
            k = torch.minimum(k, c - extra)
    return k.clamp_min(0)


def _shifted(x: Tensor, dy: int, dx: int, fill: float) -> Tensor:
    """out[y, x] = x[y + dy, x + dx], ``fill`` outside the image."""
    H, W = x.shape
    out = torch.full_like(x, fill)
    ys, ye = max(0, -dy), min(H, H - dy)
    xs, xe = max(0, -dx), min(W, W - dx)
    if ys < ye and xs < xe:
        out[ys:ye, xs:xe] = x[ys + dy : ye + dy, xs + dx : xe + dx]
    return out


def stretched_pixels(
    depth: Tensor,
    *,
    threshold: float = 0.08,
    span: int = 3,
    neighbourhood: int = 8,
    dilate: int = 0,
) -> Tensor:
    """Pixels on the far side of a depth discontinuity: bool [H,W], True = do not lift.

    Args:
        depth: [H,W] float z-depth (finite, > 0), e.g. a view's aligned depth with the
            reference depth on its known pixels, so jumps across the seam are seen too.
        threshold: relative size of a discontinuity (both tests in the module docstring): 0.08
            means the far surface is more than 8% farther than the near one and the step is
            8% off the local plane. Measured on a 512x512 grazing floor (focal 583) with 1%
            pixel noise: 0.08 flags ~0.001% of its pixels, 0.05 ~0.14%, 0.03 ~5%.
        span: distance in pixels at which the neighbouring steps are compared (>= 2; near the
            image border the farthest step still inside is used). Ramps of flying pixels up
            to about ``span`` pixels wide are rejected whole.
        neighbourhood: 4 (horizontal and vertical pairs) or 8 (also diagonal pairs).
        dilate: grow the rejected set by a (2*dilate+1)^2 square (0: no growth).

    Returns:
        bool [H,W] on the device of ``depth``.
    """
    check_map(depth, "depth")
    check_positive(depth, "depth")
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0 (a relative depth jump such as 0.05), got {threshold}")
    if int(span) != span or span < 2:
        raise ValueError(f"span must be an integer >= 2, got {span}")
    if neighbourhood not in (4, 8):
        raise ValueError(f"neighbourhood must be 4 or 8, got {neighbourhood}")
    if int(dilate) != dilate or dilate < 0:
        raise ValueError(f"dilate must be an integer >= 0, got {dilate}")

    disp = 1.0 / depth.detach().double()
    H, W = disp.shape
    flat = disp.reshape(-1)
    out = torch.zeros(H * W, dtype=torch.bool, device=depth.device)
    for dy, dx in _DIRECTIONS_4 if neighbourhood == 4 else _DIRECTIONS_8:
        # First test on every pair (p, q = p + d) inside the image; both tests on the few jumps.
        ys, xs = _pair_origins(H, W, dy, dx)
        p_box = disp[ys, xs]
        q_box = disp[ys.start + dy : ys.stop + dy, xs.start + dx : xs.stop + dx]
        step_box = q_box - p_box
        far_box = torch.minimum(p_box, q_box)
        jy, jx = torch.nonzero(step_box.abs() > threshold * far_box, as_tuple=True)
        if jy.numel() == 0:
            continue
        y, x = jy + ys.start, jx + xs.start
        p = y * W + x
        d = dy * W + dx
        step = step_box[jy, jx]
        far = far_box[jy, jx]
        # The steps `span` pixels before and after; near the border the farthest one inside.
        kb = _steps_inside(y, x, -dy, -dx, H, W, span, 0)
        ka = _steps_inside(y, x, dy, dx, H, W, span, 1)
        nan = torch.full_like(step, float("nan"))
        b0 = (p - kb * d).clamp(0, H * W - 1)
        a0 = (p + ka * d).clamp(0, H * W - 1)
        before = torch.where(kb > 0, flat[(b0 + d).clamp(0, H * W - 1)] - flat[b0], nan)
        after = torch.where(ka > 0, flat[(a0 + d).clamp(0, H * W - 1)] - flat[a0], nan)
        # fmin ignores a NaN side; where both are missing (an image 2 pixels across), no flag.
        off_plane = torch.fmin((step - before).abs(), (step - after).abs())
        pair = off_plane > threshold * far  # NaN compares False
        q_is_far = step < 0  # disparity drops from p to q: q is farther
        out[torch.where(q_is_far, p + d, p)[pair]] = True
    out = out.view(H, W)
    if dilate > 0:
        out = F.max_pool2d(out[None, None].float(), 2 * dilate + 1, stride=1, padding=dilate)[0, 0] > 0.5
    return out


def _stretched_pixels_reference(depth: Tensor, *, threshold: float, span: int, neighbourhood: int) -> Tensor:
    """The criterion of :func:`stretched_pixels` written densely over whole shifted maps (no
    dilation, no input checks): the readable version the sparse one is tested against."""
    disp = 1.0 / depth.detach().double()
    nan = float("nan")
    out = torch.zeros(depth.shape, dtype=torch.bool, device=depth.device)
    for dy, dx in _DIRECTIONS_4 if neighbourhood == 4 else _DIRECTIONS_8:
        # Pair (p, q) with p = (y, x), q = p + d, stored at p; NaN where q is outside.
        step = _shifted(disp, dy, dx, nan) - disp
        # The steps `span` pixels before and after; near the image border, the farthest one
        # that is still inside (down to the adjacent step); NaN where there is none.
        before = _shifted(step, -span * dy, -span * dx, nan)
        after = _shifted(step, span * dy, span * dx, nan)
        for k in range(span - 1, 0, -1):
            before = torch.where(torch.isnan(before), _shifted(step, -k * dy, -k * dx, nan), before)
            after = torch.where(torch.isnan(after), _shifted(step, k * dy, k * dx, nan), after)
        # fmin ignores a NaN side; where both are missing (an image 2 pixels across), no flag.
        off_plane = torch.fmin((step - before).abs(), (step - after).abs())
        far_disp = torch.fmin(disp, _shifted(disp, dy, dx, nan))
        jump = step.abs() > threshold * far_disp  # (z_far - z_near) / z_near > threshold
        pair = jump & (off_plane > threshold * far_disp)  # NaN compares False: no pair at the border
        q_is_far = step < 0  # disparity drops from p to q: q is farther
        out |= pair & ~q_is_far
        out |= _shifted((pair & q_is_far).to(torch.uint8), -dy, -dx, 0).bool()
    return out
