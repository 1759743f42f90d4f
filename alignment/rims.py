"""Rims: pixels beside an occlusion edge that a depth model gives the wrong side's depth.

Learned depth models (like stereo matchers) draw a foreground object a pixel or more too wide
("foreground fattening"): along its silhouette, background pixels get the object's depth. Lifted,
those pixels make a rim of background colour floating at the object's depth around every
silhouette; no correction of the view's depth removes it (each rim pixel is off by the edge's
whole step), and a later view's seam meets the rim instead of the wall behind it.

The picture says where the edge is. :func:`peel_rims`: at each depth jump (the discontinuity test
of alignment/edges.py, which flags the far pixel of a jump and not the slope of a grazing plane),
the near-side pixel next to the jump takes the far side's depth when its colour is nearer the far
side's than the near side's (mean colours of the two sides in the window around it, split at the
middle of the jump, the far side's distance at most ``ratio`` times the near side's). Repeated
``passes`` times, so a rim of that many pixels is peeled from the outside in. Each side must fill
a fifth of the window (the image's border replicated): an isolated outlier pixel is no edge, and
its colour says nothing.

Colour is evidence, not proof: a textured surface can look like its neighbour. Counted against the
truth on the 45 views of bench/bench_dream.py's three trajectories at 64 px, on the true images,
with 2 passes and a window of radius 3 (the loop's setting at that size): on estimates that do not
fatten (a scale error, a compressed range) about 2 pixels a view are peeled wrongly at ``ratio``
0.5, a third fewer than at 0.7, which finds 9% more of the rims of a 1-pixel fattening and 15% more
of a 2-pixel one. In the loop the count is higher (the known pixels show the cloud's render, whose
splats widen the nearer surface by a fraction of a pixel), and there it only moves pixels the fit
uses. Nor can those known pixels referee: on a translating orbit the render shows the wall through
an object no earlier view saw, so the render "confirmed" rims on estimates that had none.

Pure tensor code: depth maps [H,W] > 0, images [H,W,3] in [0, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from alignment.edges import stretched_pixels
from dreamer.checks import check_int, check_map, check_number

__all__ = ["peel_rims"]

# Fraction of the window each side of a jump must fill for a pixel to be judged by its colour.
_MIN_SIDE = 0.2
_NEIGHBOURS_4 = ((0, 1), (0, -1), (1, 0), (-1, 0))
# Window values gathered at once (candidates x window pixels), which bounds the memory of a wide rim.
_WINDOW_ELEMENTS = 1 << 21
# Rows and columns of the colour window at most (see _window_offsets).
_WINDOW_SIDE = 7


class _Padded:
    """A map [C,H,W] with a border of ``pad`` pixels (replicated, or ``fill``), read at pixel
    coordinates and written in place, so each pass reads only the candidates' windows."""

    def __init__(self, x: Tensor, pad: int, fill: float | None = None):
        self.pad, self.fill, self.shape = pad, fill, x.shape[1:]
        self.map = self._padded(x)

    def _padded(self, x: Tensor) -> Tensor:
        if self.fill is None:
            return F.pad(x[None], (self.pad,) * 4, mode="replicate")[0]
        return F.pad(x, (self.pad,) * 4, value=self.fill)

    def at(self, ys: Tensor, xs: Tensor, dy: Tensor | int = 0, dx: Tensor | int = 0) -> Tensor:
        return self.map[:, ys + self.pad + dy, xs + self.pad + dx]

    def window(self, ys: Tensor, xs: Tensor, offsets: Tensor) -> Tensor:
        """[C,N,K]: the window around each (ys, xs), its rows and columns at ``offsets``."""
        dy, dx = torch.meshgrid(offsets, offsets, indexing="ij")
        return self.at(ys[:, None], xs[:, None], dy.reshape(1, -1), dx.reshape(1, -1))

    def write(self, ys: Tensor, xs: Tensor, values: Tensor) -> None:
        self.map[:, ys + self.pad, xs + self.pad] = values
        H, W = self.shape
        if self.fill is None and bool(((ys == 0) | (ys == H - 1) | (xs == 0) | (xs == W - 1)).any()):
            p = self.pad  # a border pixel changed: its replicated copies too
            self.map = self._padded(self.map[:, p:p + H, p:p + W])


def _window_offsets(radius: int, device) -> Tensor:
    """Rows (and columns) of a colour window of ``radius``: every one up to 3, then 7 spread evenly
    over it (a side's mean colour needs no more, and a wide rim's window stays 49 pixels)."""
    if radius <= _WINDOW_SIDE // 2:
        return torch.arange(-radius, radius + 1, device=device)
    return torch.linspace(-radius, radius, _WINDOW_SIDE, device=device).round().long()


def _far_neighbours(ys: Tensor, xs: Tensor, log_depth: _Padded, far: _Padded, jump: float) -> tuple[Tensor, Tensor]:
    """For pixels (ys, xs), the deepest of their 4-neighbours that are flagged far pixels of a jump
    more than ``jump`` (log units) behind them: (its log depth, -inf where none is; its offset index
    into :data:`_NEIGHBOURS_4`). ``log_depth`` and ``far`` are padded by -inf and False."""
    own = log_depth.at(ys, xs)[0]
    best = torch.full_like(own, -math.inf)
    which = torch.zeros_like(ys)
    for i, (dy, dx) in enumerate(_NEIGHBOURS_4):
        z_n = log_depth.at(ys, xs, dy, dx)[0]
        deeper = far.at(ys, xs, dy, dx)[0] & (z_n - own > jump) & (z_n > best)
        best = torch.where(deeper, z_n, best)
        which = torch.where(deeper, i, which)
    return best, which


def _beside(mask: Tensor) -> Tensor:
    """Pixels 4-adjacent to ``mask`` [H,W]."""
    H, W = mask.shape
    padded = F.pad(mask[None, None].to(torch.uint8), (1, 1, 1, 1))[0, 0].bool()
    out = torch.zeros_like(mask)
    for dy, dx in _NEIGHBOURS_4:
        out |= padded[1 + dy:1 + dy + H, 1 + dx:1 + dx + W]
    return out


def _side_mean(window: Tensor, side: Tensor) -> Tensor:
    """Mean colour [3,N] of each window [3,N,K] over ``side`` [N,K]."""
    return (window * side).sum(-1) / side.sum(-1).clamp_min(1)


def peel_rims(depth: Tensor, image: Tensor, *, threshold: float = 0.08, passes: int = 2, radius: int = 3,
              ratio: float = 0.5) -> tuple[Tensor, Tensor]:
    """(depth with its rims peeled [H,W], bool [H,W] the pixels peeled). See the module docstring.

    ``threshold``: a jump is a relative depth step above this (as alignment/edges.py);
    ``passes``: the widest rim peeled, in pixels; ``radius``: half-size of the colour window, at
    least ``passes`` (the innermost rim pixel's window must reach past the rim to the foreground's
    own colours); ``ratio``: how much nearer the far side's colour must be. A peeled pixel takes
    its far neighbour's depth as it is."""
    check_map(depth, "depth")
    check_number(threshold, "threshold", min=0.0, open_min=True)
    check_int(passes, "passes", min=1)
    check_int(radius, "radius", min=passes)
    check_number(ratio, "ratio", min=0.0, open_min=True)
    H, W = depth.shape
    if image.ndim != 3 or image.shape[:2] != (H, W) or image.shape[2] != 3:
        raise ValueError(f"image must be [H,W,3] matching the depth {H}x{W}, got {tuple(image.shape)}")
    colour = image.to(device=depth.device, dtype=torch.float32).permute(2, 0, 1)
    jump = math.log1p(threshold)
    offsets = _window_offsets(radius, depth.device)
    k2 = len(offsets) ** 2
    need = max(1, round(_MIN_SIDE * k2))
    centre = torch.zeros(k2, dtype=torch.bool, device=depth.device)
    centre[k2 // 2] = True
    chunk = max(1, _WINDOW_ELEMENTS // k2)
    out, peeled = depth.clone(), torch.zeros_like(depth, dtype=torch.bool)
    log64 = depth.to(torch.float64).log()[None]  # no floor: a jump between tiny depths is a jump
    log_depth, log_window = _Padded(log64, 1, -math.inf), _Padded(log64, radius)
    far = _Padded(stretched_pixels(depth, threshold=threshold)[None], 1, False)
    colours = _Padded(colour, radius)
    # First pass: every pixel beside a far one. Later passes: only those beside a pixel just peeled
    # (now the far side of the jump to its inner neighbour; no other window changed much).
    ys, xs = torch.nonzero(_beside(far.map[0, 1:-1, 1:-1]), as_tuple=True)
    for _ in range(passes):
        far_log, which = _far_neighbours(ys, xs, log_depth, far, jump)
        found = torch.isfinite(far_log)
        ys, xs, far_log, which = ys[found], xs[found], far_log[found], which[found]
        take = torch.zeros_like(ys, dtype=torch.bool)
        for i in range(0, ys.numel(), chunk):  # bounded memory: N x K window values at a time
            y, x = ys[i:i + chunk], xs[i:i + chunk]
            middle = 0.5 * (log_window.at(y, x)[0] + far_log[i:i + chunk])
            z = log_window.window(y, x, offsets)[0]                            # [n,K]
            c = colours.window(y, x, offsets)                                  # [3,n,K]
            near_side = (z < middle[:, None]) & ~centre
            far_side = z >= middle[:, None]
            own = colours.at(y, x)
            to_far = (own - _side_mean(c, far_side)).norm(dim=0)
            to_near = (own - _side_mean(c, near_side)).norm(dim=0)
            take[i:i + chunk] = ((to_far < ratio * to_near)
                                 & (near_side.sum(-1) >= need) & (far_side.sum(-1) >= need))
        if not take.any():
            break
        ys, xs, far_log, which = ys[take], xs[take], far_log[take], which[take]
        step = torch.tensor(_NEIGHBOURS_4, device=ys.device)[which]
        out[ys, xs] = out[ys + step[:, 0], xs + step[:, 1]]  # the far neighbour's depth as it is
        peeled[ys, xs] = True
        for m in (log_depth, log_window):
            m.write(ys, xs, far_log[None])
        far.write(ys, xs, torch.ones_like(ys, dtype=torch.bool)[None])
        just = torch.zeros_like(peeled)
        just[ys, xs] = True
        ys, xs = torch.nonzero(_beside(just) & ~peeled, as_tuple=True)
    return out, peeled
