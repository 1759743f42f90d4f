"""The CPU rasterizer's tiles: per tile, its Gaussians front to back, and their compositing as
dense [tiles, pixels, Gaussians] blocks with an explicit backward (see "How the CPU path works"
in :mod:`dreamer.splats.rasterizer`). The compositing rules are gsplat's."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

ALPHA_THRESHOLD = 1.0 / 255.0
"""Pairs (pixel, Gaussian) with a smaller alpha are skipped (gsplat's ALPHA_THRESHOLD)."""
MAX_ALPHA = 0.999
"""Alpha is clamped to this value (gsplat, INRIA)."""
TRANSMITTANCE_MIN = 1e-4
"""A pixel stops compositing when its transmittance would fall to or below this."""

TILE = 4
"""Side of a tile in pixels (CPU path). Smaller tiles waste fewer (pixel, Gaussian) entries on
pixels outside a Gaussian's footprint; larger ones have fewer (tile, Gaussian) lists to build."""
_CHUNK_ENTRIES = 1 << 20
"""Entries (pixel, Gaussian) composited per block: bounds the temporaries (larger blocks take fewer Python steps)."""


@dataclass
class _TileLists:
    """Per tile (row-major, ``ntx`` x ``nty`` of ``tile`` x ``tile`` pixels): the visible
    Gaussians whose box touches it, front to back, as one flat array ``ids`` cut by
    ``starts`` / ``counts`` [n_tiles]."""

    ids: Tensor
    starts: Tensor
    counts: Tensor
    n_visible: int
    tile: int
    ntx: int
    width: int
    height: int


@dataclass
class _TileChunk:
    """A block of tiles composited together: Gaussian lists ``ids`` [n,K] (front to back, padded
    with ``n_visible``, a Gaussian of zero opacity), each tile's centre ``cx``, ``cy`` [n]
    (pixels), the flat image index of each of its pixels ``pixels`` [n,P] (``width * height``
    beyond the image) and the pixel monomials ``mono`` [P,6] (1, x, y, x^2, x y, y^2 of the
    pixel centres relative to the tile centre; the same for every tile)."""

    ids: Tensor
    cx: Tensor
    cy: Tensor
    pixels: Tensor
    mono: Tensor
    n_visible: int


def _tile_lists(x0: Tensor, x1: Tensor, y0: Tensor, y1: Tensor, W: int, H: int, tile: int,
                geo: Tensor | None = None) -> _TileLists:
    """The (tile, Gaussian) lists of the pixel boxes ``[x0, x1] x [y0, y1]`` (inside the image)
    of the visible Gaussians, given front to back. With ``geo`` [V,6] (mean x, y, conic a, b, c,
    opacity, as composited) a tile of a Gaussian's box is left out of its list when the tile's
    pixel centres all lie outside the Gaussian's reach (:func:`_reach2`): the box's corner tiles
    often miss a round footprint, and they would be composited for nothing (alpha 0 at every
    pixel)."""
    device = x0.device
    ntx, nty = -(-W // tile), -(-H // tile)
    tx0, ty0 = torch.div(x0, tile, rounding_mode="floor"), torch.div(y0, tile, rounding_mode="floor")
    cw = torch.div(x1, tile, rounding_mode="floor") - tx0 + 1
    ch = torch.div(y1, tile, rounding_mode="floor") - ty0 + 1
    n = cw * ch
    # One pair per (Gaussian, tile of its box), Gaussian by Gaussian; int32 indices (half the
    # memory traffic of int64) and the box offsets split by a float division (exact: an offset
    # is below the box's tile count, far below 2^24).
    tx0, ty0, cw = tx0.to(torch.int32), ty0.to(torch.int32), cw.to(torch.int32)
    gid = torch.repeat_interleave(torch.arange(len(x0), dtype=torch.int32, device=device), n)
    off = torch.arange(len(gid), dtype=torch.int32, device=device) - (torch.cumsum(n, 0) - n).to(
        torch.int32).index_select(0, gid)
    cwg = cw.index_select(0, gid)
    dy = torch.floor(off.float() / cwg.float()).to(torch.int32)
    tx = tx0.index_select(0, gid).add_(off.sub_(dy * cwg))
    ty = ty0.index_select(0, gid).add_(dy)
    del off, cwg, dy
    if geo is not None:
        # Distance from the mean to the rectangle of the tile's pixel centres, per axis.
        half = 0.5 * tile - 0.5
        ex = (geo[:, 0].index_select(0, gid) - (tx.to(geo.dtype) * tile + 0.5 * tile)).abs_().sub_(half).clamp_min_(0)
        ey = (geo[:, 1].index_select(0, gid) - (ty.to(geo.dtype) * tile + 0.5 * tile)).abs_().sub_(half).clamp_min_(0)
        hit = torch.nonzero(ex.mul_(ex).add_(ey.mul_(ey)) <= _reach2(geo).index_select(0, gid)).squeeze(1)
        gid, tx, ty = gid.index_select(0, hit), tx.index_select(0, hit), ty.index_select(0, hit)
    tid = ty.mul_(ntx).add_(tx)
    if ntx * nty <= torch.iinfo(torch.int16).max:
        tid = tid.to(torch.int16)  # a stable sort of int16 keys takes half the time of int32's
    order = torch.argsort(tid, stable=True)  # stable: front to back within a tile
    counts = torch.bincount(tid.to(torch.int32), minlength=ntx * nty)
    return _TileLists(gid.index_select(0, order).long(), torch.cumsum(counts, 0) - counts, counts, len(x0), tile,
                      ntx, W, H)


def _reach2(geo: Tensor) -> Tensor:
    """Squared pixel distances [V] from each Gaussian's mean beyond which its alpha is below 1/255
    (``geo`` [V,6]: mean x, y, conic a, b, c, opacity).

    ``sigma = 0.5 d^T conic d >= 0.5 lambda_min |d|^2`` (``lambda_min`` the conic's smaller
    eigenvalue) and alpha < 1/255 where ``sigma > log(255 opacity)``, so beyond
    ``|d|^2 = 2 log(255 opacity) / lambda_min`` every pixel misses. A margin of 0.01 in sigma (1%
    of alpha) keeps pairs at the threshold, so rounding in the compositor cannot disagree.
    ``lambda_min = det / lambda_max`` (no cancellation for round footprints)."""
    a, b, c, op = geo[:, 2], geo[:, 3], geo[:, 4], geo[:, 5]
    lam_max = 0.5 * (a + c) + torch.sqrt((0.5 * (a - c)) ** 2 + b * b)
    lam_min = ((a * c - b * b) / lam_max.clamp_min(1e-30)).clamp_min(1e-30)
    limit = torch.log((op / ALPHA_THRESHOLD).clamp_min(1.0))
    return 2.0 * (limit + 0.01) / lam_min


def _tile_chunks(lists: _TileLists, max_entries: int, dtype: torch.dtype):
    """Blocks of tiles of similar list lengths (padded to the longest), each of at most
    ``max_entries`` (pixel, Gaussian) entries (a single tile may exceed it)."""
    tile, P = lists.tile, lists.tile * lists.tile
    budget = max(1, min(max_entries, _CHUNK_ENTRIES))
    busy = torch.nonzero(lists.counts).squeeze(1)
    order = busy.index_select(0, torch.argsort(lists.counts.index_select(0, busy), descending=True))
    lengths = lists.counts.index_select(0, order).tolist()
    device = order.device
    local = torch.arange(P, device=device)
    lx = (local % tile).to(torch.float64) + 0.5 - 0.5 * tile
    ly = torch.div(local, tile, rounding_mode="floor").to(torch.float64) + 0.5 - 0.5 * tile
    mono = torch.stack([torch.ones_like(lx), lx, ly, lx * lx, lx * ly, ly * ly], 1).to(dtype)  # [P,6]
    i = 0
    while i < len(lengths):
        K = lengths[i]
        j = i + 1
        most = max(1, budget // (P * K))
        # Tiles of a block share its padded length: a shorter list joins only if the padding
        # stays small.
        while j < len(lengths) and j - i < most and (5 * lengths[j] >= 4 * K or K - lengths[j] <= 2):
            j += 1
        tiles = order[i:j]
        k = torch.arange(K, device=device)
        count = lists.counts.index_select(0, tiles)[:, None]
        pos = (lists.starts.index_select(0, tiles)[:, None] + k).clamp_max(max(len(lists.ids) - 1, 0))
        ids = torch.where(k < count, lists.ids[pos], lists.n_visible)
        ox = (tiles % lists.ntx) * tile
        oy = torch.div(tiles, lists.ntx, rounding_mode="floor") * tile
        px, py = ox[:, None] + local % tile, oy[:, None] + torch.div(local, tile, rounding_mode="floor")
        inside = (px < lists.width) & (py < lists.height)
        pixels = torch.where(inside, py * lists.width + px, lists.width * lists.height)
        yield _TileChunk(ids, (ox + 0.5 * tile).to(dtype), (oy + 0.5 * tile).to(dtype), pixels, mono, lists.n_visible)
        i = j


def _padded(x: Tensor, value: float = 0.0) -> Tensor:
    """``x`` [V,C] with a row of ``value`` appended: the padding entry of the tile lists (index V)."""
    return torch.cat([x, x.new_full((1, x.shape[1]), value)])


def _chunk_columns(geo_cols: Tensor, chunk: _TileChunk) -> tuple[Tensor, ...]:
    """The chunk's Gaussians' columns (mean x, y relative to each tile's centre, conic a, b, c,
    opacity), each [n,K], from the padded columns ``geo_cols`` [6, V+1]; padding entries have
    opacity 0."""
    n, K = chunk.ids.shape
    mx, my, a, b, c, op = geo_cols.index_select(1, chunk.ids.reshape(-1)).reshape(6, n, K).unbind(0)
    return mx - chunk.cx[:, None], my - chunk.cy[:, None], a, b, c, op


def _chunk_alpha(cols: tuple[Tensor, ...], chunk: _TileChunk) -> Tensor:
    """alpha [n,P,K] of every (pixel, Gaussian) entry of the chunk, 0 where below 1/255.

    ``log alpha = log o - sigma`` is a quadratic polynomial in the pixel's position: one matrix
    product of the pixels' monomials [P,6] with per-Gaussian coefficients [n,6,K]. ``sigma`` is
    a positive-definite form; where rounding makes it negative (at the centre) it is taken as 0,
    and alpha is clamped at 0.999.
    """
    mx, my, a, b, c, op = cols
    half_a, half_c = 0.5 * a, 0.5 * c
    bx, by = a * mx + b * my, b * mx + c * my  # -d sigma / d x and -d sigma / d y at the tile centre
    coeffs = torch.stack([
        torch.log(op.clamp_min(1e-30)) - (half_a * mx * mx + b * mx * my + half_c * my * my),
        bx, by, -half_a, -b, -half_c,
    ], 1)  # [n,6,K]
    log_alpha = torch.matmul(chunk.mono, coeffs)  # [n,P,K]
    limit = torch.log(torch.clamp(op, 1e-30, MAX_ALPHA))[:, None, :]  # sigma >= 0, alpha <= 0.999
    alpha = torch.minimum(log_alpha, limit, out=log_alpha).exp_()
    # alpha >= threshold kept: F.threshold keeps values strictly above the float just below it.
    below = torch.nextafter(torch.tensor(ALPHA_THRESHOLD, dtype=alpha.dtype), torch.tensor(0.0, dtype=alpha.dtype))
    return torch.nn.functional.threshold_(alpha, float(below), 0.0)


def _chunk_transmittance(alpha: Tensor) -> Tensor:
    """In place: alpha [n,P,K] -> the alpha of the pairs that are composited (0 at and after each
    pixel's cut-off, T_next <= 1e-4); returns T before each pair [n,P,K]. A scan of
    log(1 - alpha) along each pixel's list (lists are short: float32 is enough)."""
    la = torch.rsub(alpha, 1.0).log_()  # alpha <= 0.999: log(1 - alpha) is accurate enough (and vectorized)
    log_t = torch.cumsum(la, -1)  # log T after each pair
    alpha.masked_fill_(log_t <= math.log(TRANSMITTANCE_MIN), 0.0)
    return log_t.sub_(la).exp_()


class _TileComposite(torch.autograd.Function):
    """Front-to-back compositing of every tile, block by block, with a hand-written backward.

    Forward: ``out[p] = sum_i w_i f_i`` over the Gaussians i of pixel p's tile, front to back,
    ``w_i = alpha_i T_i``, f = (r, g, b, z, 1): the last channel is the coverage ``acc = 1 - T_end``.
    Backward, per pixel (as gsplat's CUDA kernel): ``dL/df_i = w_i dL/dout``;
    ``dL/dalpha_i = T_i q_i - S_i / (1 - alpha_i)`` with ``q_i = dL/dout . f_i`` and
    ``S_i = sum_{k > i} w_k q_k`` (for the coverage channel this is gsplat's
    ``dL/dacc T_end / (1 - alpha_i)``, by telescoping); then through
    ``alpha = min(0.999, o exp(-sigma))`` (no gradient where clamped) and
    ``sigma = 0.5 (a dx^2 + c dy^2) + b dx dy``, ``d = pixel centre - mean``, to the Gaussians'
    2D mean, conic and opacity. The sums over a tile's pixels of ``dL/dsigma`` times 1, dx, dy,
    dx^2, dx dy, dy^2 are one matrix product with the pixels' monomials.

    Returns ``out`` [H*W, F+1] and the number of composited pairs. With ``keep`` false nothing is
    kept for a backward (a render without gradients holds one block at a time).
    """

    @staticmethod
    def forward(ctx, geo: Tensor, feats: Tensor, lists: _TileLists, max_entries: int, keep: bool):
        n_pix, F = lists.width * lists.height, feats.shape[1] + 1
        geo_cols = _padded(geo).T.contiguous()
        f_pad = _padded(torch.cat([feats, feats.new_ones(len(feats), 1)], 1))
        out = feats.new_zeros(n_pix + 1, F)
        n_pairs = 0
        saved = []
        for chunk in _tile_chunks(lists, max_entries, feats.dtype):
            alpha = _chunk_alpha(_chunk_columns(geo_cols, chunk), chunk)
            w = _chunk_transmittance(alpha).mul_(alpha)  # the weights alpha T
            f = f_pad.index_select(0, chunk.ids.reshape(-1)).reshape(*chunk.ids.shape, F)
            out.index_add_(0, chunk.pixels.reshape(-1), torch.bmm(w, f).reshape(-1, F))
            n_pairs += int(alpha.bool().sum())
            if keep:
                saved.append((chunk, alpha, w, f))
        ctx.save_for_backward(geo_cols)
        ctx.saved, ctx.n_features = saved, F
        return out[:-1], torch.tensor(n_pairs)

    @staticmethod
    def backward(ctx, g_out: Tensor, _g_pairs):
        (geo_cols,) = ctx.saved_tensors
        F = ctx.n_features
        g_out = _padded(g_out)
        grad_geo = geo_cols.new_zeros(geo_cols.shape[1], 6)
        grad_feats = g_out.new_zeros(geo_cols.shape[1], F)
        for chunk, alpha, w, f in ctx.saved:
            n, K = chunk.ids.shape
            go = g_out.index_select(0, chunk.pixels.reshape(-1)).reshape(n, -1, F)  # [n,P,F]
            grad_f = torch.bmm(w.transpose(1, 2), go)  # [n,K,F]
            wq = torch.bmm(go, f.transpose(1, 2)).mul_(w)  # [n,P,K]: w_i q_i, q_i = dL/dout . f_i
            cum = torch.cumsum(wq, -1)
            # alpha dL/dalpha = w q - alpha / (1 - alpha) * S, S = sum_{k > i} w_k q_k = total - cum
            suffix = torch.sub(cum[..., -1:].clone(), cum, out=cum).mul_(alpha).div_(torch.rsub(alpha, 1.0))
            grad_sigma = wq.sub_(suffix)  # = -dL/dsigma
            del cum, suffix
            mx, my, a, b, c, op = _chunk_columns(geo_cols, chunk)
            if bool((op > MAX_ALPHA - 1e-4).any()):  # only an opacity near 0.999 can reach the clamp
                grad_sigma.masked_fill_(alpha >= MAX_ALPHA, 0.0)  # clamped: no gradient
            s0, sx, sy, sxx, sxy, syy = torch.matmul(chunk.mono.T, grad_sigma).unbind(1)
            del grad_sigma
            s_dx = sx - mx * s0  # sum over the tile of (-dL/dsigma) * dx
            s_dy = sy - my * s0
            grads = torch.stack([
                a * s_dx + b * s_dy,  # d sigma / d mean_x = -(a dx + b dy)
                b * s_dx + c * s_dy,
                -0.5 * (sxx - 2 * mx * sx + mx * mx * s0),
                -(sxy - mx * sy - my * sx + mx * my * s0),
                -0.5 * (syy - 2 * my * sy + my * my * s0),
                torch.where(op > 0, s0 / op.clamp_min(1e-30), 0.0),  # dL/do = sum alpha dL/dalpha / o
            ], -1)
            ids = chunk.ids.reshape(-1)
            grad_geo.index_add_(0, ids, grads.reshape(n * K, 6))
            grad_feats.index_add_(0, ids, grad_f.reshape(n * K, F))
        return grad_geo[:-1], grad_feats[:-1, :-1], None, None, None


def _tile_composite_autograd(geo: Tensor, feats: Tensor, lists: _TileLists,
                             max_entries: int) -> tuple[Tensor, int]:
    """The same compositing as :class:`_TileComposite` in plain differentiable ops, with sigma
    from the offsets d = pixel - mean (a cross-check of the polynomial form and the backward)."""
    n_pix, F = lists.width * lists.height, feats.shape[1] + 1
    geo_pad = _padded(geo)
    f_pad = _padded(torch.cat([feats, feats.new_ones(len(feats), 1)], 1))
    out = feats.new_zeros(n_pix + 1, F)
    n_pairs = 0
    for chunk in _tile_chunks(lists, max_entries, feats.dtype):
        n, K = chunk.ids.shape
        ids = chunk.ids.reshape(-1)
        mx, my, a, b, c, op = (x[:, None, :] for x in geo_pad.index_select(0, ids).reshape(n, K, 6).unbind(-1))
        dx = chunk.mono[:, 1][None, :, None] - (mx - chunk.cx[:, None, None])
        dy = chunk.mono[:, 2][None, :, None] - (my - chunk.cy[:, None, None])
        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        alpha = torch.clamp_max(op * torch.exp(-sigma.clamp_min(0.0)), MAX_ALPHA)
        with torch.no_grad():
            keep = alpha >= ALPHA_THRESHOLD
            used = keep & (torch.cumsum(torch.log1p(-(alpha * keep)), -1) > math.log(TRANSMITTANCE_MIN))
        alpha = alpha * used
        la = torch.log1p(-alpha)
        w = alpha * torch.exp(torch.cumsum(la, -1) - la)
        f = f_pad.index_select(0, ids).reshape(n, K, F)
        out = out.index_add(0, chunk.pixels.reshape(-1), torch.bmm(w, f).reshape(-1, F))
        n_pairs += int(used.sum())
    return out[:-1], n_pairs
