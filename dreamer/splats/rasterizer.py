"""Rasterize 3D Gaussians into one camera: two paths, one interface.

* On CUDA tensors: gsplat's fused kernels (``gsplat.rasterization``).
* Anywhere else (CPU): a pure-torch, differentiable rasterizer built on the projection and
  spherical-harmonics functions of :mod:`dreamer.splats.projection` (ours, with the conventions
  of gsplat's kernels), with gsplat's compositing rules, so both paths render the same image:

  - pixel centres at (u + 0.5, v + 0.5);
  - per Gaussian and pixel ``sigma = 0.5 d^T conic d`` (d = pixel centre - projected mean),
    ``alpha = min(0.999, opacity * exp(-sigma))``; pairs with ``alpha < 1/255`` are skipped;
  - front to back in z-depth order, ``T_next = T (1 - alpha)``; a pixel is done when
    ``T_next <= 1e-4`` and that Gaussian is not composited (gsplat's "exclusive" stop);
  - colour from SH (view direction = mean - camera centre) plus 0.5, clamped at 0;
  - the depth returned is the expected z-depth ``sum(w z) / sum(w)`` (gsplat's "ED" mode) and
    ``alpha = 1 - T`` at the end; no background (colours are composited over black).

How the CPU path works (vectorized: no Python loop over Gaussians or pixels):

1. A conservative frustum cull (no autograd) drops Gaussians that cannot be drawn: centres at
   z-depth <= near / 2 or beyond far, and centres so far beside the image that no footprint of
   their size reaches it (``_candidates``). Only the rest go through the differentiable
   projection, which is both cheaper (a view of a dreamed scene sees ~1/6 of its Gaussians) and
   needed: the projection divides by z and z^2, and a Gaussian on the camera plane would turn
   its zero gradient into NaN. The candidates are projected (gsplat's EWA projection, ``eps2d``
   added to the 2D covariance). Each visible Gaussian gets the tight axis-aligned pixel box
   outside which its alpha is below 1/255 (half-size ``sqrt(2 ln(255 opacity) * cov2d_ii)``,
   the opacity-aware extent that gsplat's CUDA projection uses for its tile lists).
2. Gaussians are sorted by depth, and the image is cut into bands of rows (tiles as wide as the
   image) so that no band holds more than ``max_pairs`` (pixel, Gaussian) pairs (a single row
   may hold more): a render without gradients (videos) keeps one band's pairs at a time however
   close the camera gets; a differentiable render keeps every band's pairs for the backward.
3. In each band every Gaussian's box is expanded into its (pixel, Gaussian) pairs, pairs below
   the alpha threshold are dropped, and a stable sort by pixel yields, per pixel, its Gaussians
   front to back: the per-pixel lists a tile rasterizer walks, as one flat array. Transmittance
   is a segmented cumulative sum of ``log(1 - alpha)`` (float64) over those lists, and the pairs
   at and after each pixel's cut-off are dropped.
4. Compositing is an autograd Function with a hand-written backward (the same per-pixel
   recurrences as gsplat's CUDA backward, as segmented suffix sums), so gradients reach means,
   quaternions, scales, opacities and SH through gsplat's differentiable projection and SH, and
   ``info["means2d"].grad`` is filled like gsplat's, which is what ``DefaultStrategy`` densifies
   on. A plain-autograd compositor (``analytic_backward=False``) is kept as a cross-check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from dreamer.cameras import Camera, invert_rigid

__all__ = [
    "rasterize",
    "RasterOutput",
    "ALPHA_THRESHOLD",
    "MAX_ALPHA",
    "TRANSMITTANCE_MIN",
    "SH_C0",
    "num_sh_bases",
    "sh_degree_from_bases",
]

ALPHA_THRESHOLD = 1.0 / 255.0
"""Pairs (pixel, Gaussian) with a smaller alpha are skipped (gsplat's ALPHA_THRESHOLD)."""
MAX_ALPHA = 0.999
"""Alpha is clamped to this value (gsplat, INRIA)."""
TRANSMITTANCE_MIN = 1e-4
"""A pixel stops compositing when its transmittance would fall to or below this."""
SH_C0 = 0.28209479177387814
"""The degree-0 real spherical harmonic: colour = SH_C0 * sh0 + 0.5."""

Backend = Literal["auto", "gsplat", "torch"]


def num_sh_bases(degree: int) -> int:
    """Number of SH coefficients per channel for a degree: (degree + 1)^2."""
    return (degree + 1) ** 2


def sh_degree_from_bases(k: int) -> int:
    """Inverse of :func:`num_sh_bases`; raises ValueError unless ``k`` is 1, 4, 9, 16 or 25."""
    d = int(round(math.sqrt(k))) - 1
    if d < 0 or d > 4 or (d + 1) ** 2 != k:
        raise ValueError(f"the number of SH coefficients per channel must be 1, 4, 9, 16 or 25, got {k}")
    return d


@dataclass
class RasterOutput:
    """What :func:`rasterize` returns.

    * ``rgb`` [H,W,3]: colour composited over black.
    * ``depth`` [H,W]: expected z-depth (0 where nothing was drawn).
    * ``alpha`` [H,W]: accumulated opacity, 1 - final transmittance.
    * ``info``: gsplat-style intermediate results for ``DefaultStrategy``: ``means2d`` [1,N,2]
      (projected means in pixels; call ``retain_grad`` before backward), ``radii`` [1,N,2] int32
      (0 = not drawn), ``depths`` [1,N], ``conics`` [1,N,3], ``opacities`` [1,N], ``width``,
      ``height``, ``n_cameras`` (1), ``gaussian_ids`` (None: not packed), ``backend``, and on the
      CPU path ``n_pairs`` (pixel-Gaussian pairs composited) and ``n_projected`` (Gaussians
      left by the frustum cull; the culled ones have ``means2d`` and ``conics`` 0 and radii 0).
    """

    rgb: Tensor
    depth: Tensor
    alpha: Tensor
    info: dict[str, Any]

    def __iter__(self):  # rgb, depth, alpha, info = rasterize(...)
        return iter((self.rgb, self.depth, self.alpha, self.info))


def _check_inputs(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, sh: Tensor) -> int:
    for name, t in (("means", means), ("quats", quats), ("scales", scales), ("opacities", opacities), ("sh", sh)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a float tensor, got dtype {t.dtype}")
    if means.ndim != 2 or means.shape[1] != 3:
        raise ValueError(f"means must have shape [N,3], got {tuple(means.shape)}")
    n = means.shape[0]
    expected = {"quats": (n, 4), "scales": (n, 3), "opacities": (n,)}
    for name, t in (("quats", quats), ("scales", scales), ("opacities", opacities)):
        if tuple(t.shape) != expected[name]:
            raise ValueError(f"{name} must have shape {list(expected[name])}, got {tuple(t.shape)}")
    if sh.ndim != 3 or sh.shape[0] != n or sh.shape[2] != 3:
        raise ValueError(f"sh must have shape [N,K,3] with N={n}, got {tuple(sh.shape)}")
    for name, t in (("quats", quats), ("scales", scales), ("opacities", opacities), ("sh", sh)):
        if t.device != means.device:
            raise ValueError(f"{name} is on {t.device} but means is on {means.device}")
    return sh_degree_from_bases(sh.shape[1])


def rasterize(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    sh: Tensor,
    camera: Camera,
    *,
    sh_degree: int | None = None,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    backend: Backend = "auto",
    max_pairs: int = 1 << 22,
    analytic_backward: bool = True,
) -> RasterOutput:
    """Render Gaussians into ``camera`` (differentiable).

    Args:
        means: centres [N,3] (world).
        quats: rotations [N,4], w x y z (normalized here; any non-zero norm).
        scales: standard deviations along the local axes [N,3] (linear, > 0).
        opacities: [N] in [0,1] (after the sigmoid).
        sh: SH coefficients [N,K,3], K = (degree + 1)^2 (coefficient 0 is the DC term).
        camera: the view (OpenCV axes; ``camera.w2c`` is gsplat's viewmat).
        sh_degree: SH degree to evaluate (<= the degree of ``sh``); default: all of ``sh``.
        near_plane, far_plane: z-depth range of Gaussian centres that are drawn.
        eps2d: added to the projected 2D covariance (pixels^2), gsplat's default 0.3.
        backend: ``"gsplat"`` (CUDA kernels; CUDA tensors only), ``"torch"`` (the pure-torch
            path, any device) or ``"auto"`` (gsplat on CUDA, torch elsewhere).
        max_pairs: torch path only: the most (pixel, Gaussian) pairs handled at once (memory).
        analytic_backward: torch path only: composite with the hand-written backward (fast,
            little memory); False composites with plain autograd ops (slow; a cross-check).

    Returns:
        :class:`RasterOutput` (``rgb`` [H,W,3], ``depth`` [H,W], ``alpha`` [H,W], ``info``), in
        the dtype and on the device of ``means``.
    """
    degree_max = _check_inputs(means, quats, scales, opacities, sh)
    if not isinstance(camera, Camera):
        raise TypeError(f"camera must be a dreamer.cameras.Camera, got {type(camera).__name__}")
    if camera.width <= 0 or camera.height <= 0:
        raise ValueError(f"camera has zero size {camera.width}x{camera.height}")
    deg = degree_max if sh_degree is None else int(sh_degree)
    if not 0 <= deg <= degree_max:
        raise ValueError(f"sh_degree must be in [0, {degree_max}] for {sh.shape[1]} SH coefficients, got {sh_degree}")
    if not 0 < near_plane < far_plane:
        raise ValueError(f"need 0 < near_plane < far_plane, got {near_plane}, {far_plane}")
    if backend == "auto":
        backend = "gsplat" if means.is_cuda else "torch"
    if backend == "gsplat":
        if not means.is_cuda:
            raise ValueError("backend 'gsplat' needs CUDA tensors (gsplat's kernels do not run on CPU); use 'torch'")
        return _rasterize_gsplat(means, quats, scales, opacities, sh, camera, deg, near_plane, far_plane, eps2d)
    if backend != "torch":
        raise ValueError(f"backend must be 'auto', 'gsplat' or 'torch', got {backend!r}")
    if max_pairs < 1:
        raise ValueError(f"max_pairs must be >= 1, got {max_pairs}")
    return _rasterize_torch(means, quats, scales, opacities, sh, camera, deg, near_plane, far_plane, eps2d, max_pairs,
                            analytic_backward)


def _camera_tensors(camera: Camera, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """viewmat (w2c) [4,4], K [3,3] and the camera centre [3] in ``like``'s dtype and device
    (the rigid inverse is taken in float64)."""
    c2w = camera.c2w.to(device=like.device, dtype=torch.float64)
    w2c = invert_rigid(c2w)
    return w2c.to(like.dtype), camera.K.to(device=like.device, dtype=like.dtype), c2w[:3, 3].to(like.dtype)


def _rasterize_gsplat(means, quats, scales, opacities, sh, camera, deg, near, far, eps2d) -> RasterOutput:
    from gsplat import rasterization

    viewmat, K, _ = _camera_tensors(camera, means)
    colors, alphas, info = rasterization(
        means, quats, scales, opacities, sh, viewmat[None], K[None], camera.width, camera.height,
        near_plane=near, far_plane=far, eps2d=eps2d, sh_degree=deg, packed=False, render_mode="RGB+ED",
    )
    info = dict(info)
    info["backend"] = "gsplat"
    return RasterOutput(colors[0, ..., :3], colors[0, ..., 3], alphas[0, ..., 0], info)


def _rasterize_torch(means, quats, scales, opacities, sh, camera, deg, near, far, eps2d, max_pairs,
                     analytic_backward=True) -> RasterOutput:
    from dreamer.splats.projection import fully_fused_projection as _fully_fused_projection
    from dreamer.splats.projection import quat_scale_to_covar_preci as _quat_scale_to_covar_preci
    from dreamer.splats.projection import spherical_harmonics as _spherical_harmonics

    H, W = camera.height, camera.width
    dtype, device = means.dtype, means.device
    viewmat, K, campos = _camera_tensors(camera, means)

    N = means.shape[0]
    # Only Gaussians that can reach the image go through the differentiable projection (see
    # _candidates): the others are skipped, not projected and masked afterwards. This is a fix,
    # not only a saving: for a Gaussian on the camera plane, camera z exactly 0 (float32
    # rounding puts centres that pass beside the camera there: a dreamed scene hit one at camera
    # (4.67, 1.55, 0.0)) or so small that z^2 underflows, gsplat's pure-torch projection divides
    # by z and z^2 (means2d = K t / z, the Jacobian's fx / z and fx x / z^2) and gets inf; its
    # radius is 0 so it gets no gradient, but the chain rule multiplies that zero by inf and the
    # NaN reaches its means, quats and scales (and, through Adam, the parameters). Culled
    # Gaussians have no autograd path at all, and every projected one has z > near / 2.
    with torch.no_grad():
        cand, z_all = _candidates(means.detach(), scales.detach(), opacities.detach(), viewmat, K, W, H, near, far,
                                  eps2d)
    covars, _ = _quat_scale_to_covar_preci(quats.index_select(0, cand), scales.index_select(0, cand),
                                           compute_covar=True, compute_preci=False, triu=False)
    radii_c, means2d_c, depths_c, conics_c, _ = _fully_fused_projection(
        means.index_select(0, cand), covars, viewmat[None], K[None], W, H, eps2d=eps2d, near_plane=near,
        far_plane=far)
    # Full-size [1,N,...] results for info (DefaultStrategy indexes them by Gaussian): culled
    # Gaussians have means2d and conics 0, radii 0 and their (non-differentiable) z-depth.
    means2d = means2d_c.new_zeros(N, 2).index_copy(0, cand, means2d_c[0])[None]
    conics = conics_c.new_zeros(N, 3).index_copy(0, cand, conics_c[0])[None]
    depths = z_all.to(depths_c.dtype).index_copy(0, cand, depths_c[0])[None]

    with torch.no_grad():
        c = conics_c[0].detach()
        det = (c[:, 0] * c[:, 2] - c[:, 1] ** 2).clamp_min(1e-30)
        cov_xx, cov_yy = c[:, 2] / det, c[:, 0] / det  # the 2D covariance (eps2d included)
        op = opacities.detach().index_select(0, cand)
        # Opacity-aware extent (as gsplat's CUDA projection): beyond it alpha < 1/255.
        ext = torch.sqrt(2.0 * torch.log((op / ALPHA_THRESHOLD).clamp_min(1.0)))
        hx, hy = ext * cov_xx.sqrt(), ext * cov_yy.sqrt()
        m2 = means2d_c[0].detach()
        rx, ry = torch.ceil(hx), torch.ceil(hy)
        valid = ((radii_c[0] > 0).all(-1) & (op >= ALPHA_THRESHOLD) & torch.isfinite(m2).all(-1)
                 & torch.isfinite(hx) & torch.isfinite(hy))
        valid &= (m2[:, 0] + rx > 0) & (m2[:, 0] - rx < W) & (m2[:, 1] + ry > 0) & (m2[:, 1] - ry < H)
        radii = torch.zeros(N, 2, dtype=torch.int32, device=device)
        radii[cand] = torch.where(valid[:, None], torch.stack([rx, ry], -1), 0.0).to(torch.int32)
        # Pixel i (centre i + 0.5) lies in the box when |i + 0.5 - m| <= h; clipped to the image
        # (an empty range when the box misses every pixel centre).
        x0 = torch.ceil(m2[:, 0] - hx - 0.5).clamp(0, W)
        x1 = torch.floor(m2[:, 0] + hx - 0.5).clamp(-1, W - 1)
        y0 = torch.ceil(m2[:, 1] - hy - 0.5).clamp(0, H)
        y1 = torch.floor(m2[:, 1] + hy - 0.5).clamp(-1, H - 1)
        valid &= (x1 >= x0) & (y1 >= y0)
        vis_c = torch.nonzero(valid).squeeze(1)
        vis_c = vis_c[torch.argsort(depths_c[0, vis_c].detach(), stable=True)]  # front to back
        x0, x1, y0, y1 = (t[vis_c].long() for t in (x0, x1, y0, y1))
        vis = cand.index_select(0, vis_c)  # indices into all N Gaussians

    info: dict[str, Any] = {
        "means2d": means2d, "radii": radii[None], "depths": depths, "conics": conics,
        "opacities": opacities[None], "width": W, "height": H, "n_cameras": 1, "n_batches": 1,
        "gaussian_ids": None, "batch_ids": None, "camera_ids": None, "backend": "torch", "n_pairs": 0,
        "n_projected": int(cand.numel()),
    }
    out = torch.zeros(H * W, 4, dtype=dtype, device=device)
    acc = torch.zeros(H * W, dtype=dtype, device=device)
    if vis.numel() == 0:
        return RasterOutput(out[:, :3].reshape(H, W, 3), out[:, 3].reshape(H, W), acc.reshape(H, W), info)

    # Per visible Gaussian (front to back): geometry (mean x, y, conic a, b, c, opacity) and
    # features (r, g, b, z); one gather each per pair.
    dirs = means[vis] - campos
    rgb = torch.clamp_min(_spherical_harmonics(deg, dirs, sh[vis]) + 0.5, 0.0)
    geo = torch.cat([means2d[0, vis], conics_c[0, vis_c], opacities[vis, None]], -1)
    feats = torch.cat([rgb, depths_c[0, vis_c, None]], -1)
    geo_d = geo.detach()

    for r0, r1 in _row_bands(x0, x1, y0, y1, H, max_pairs):
        pairs = _band_pairs(x0, x1, y0, y1, r0, r1, W, geo_d)
        if pairs is None:
            continue
        info["n_pairs"] += int(pairs.g.numel())
        if analytic_backward:
            band_out, band_acc = _Composite.apply(geo, feats, pairs, H * W)
        else:
            band_out, band_acc = _composite_autograd(geo, feats, pairs, H * W)
        out = out + band_out
        acc = acc + band_acc

    rgb_img = out[:, :3].reshape(H, W, 3)
    depth_img = (out[:, 3] / acc.clamp_min(1e-10)).reshape(H, W)
    return RasterOutput(rgb_img, depth_img, acc.reshape(H, W), info)


def _candidates(means: Tensor, scales: Tensor, opacities: Tensor, viewmat: Tensor, K: Tensor, W: int, H: int,
                near: float, far: float, eps2d: float) -> tuple[Tensor, Tensor]:
    """Indices [C] (increasing) of the Gaussians that may be drawn, and every Gaussian's z-depth [N].

    A conservative frustum cull run before the projection (no autograd): a Gaussian is dropped
    only when it is certainly not drawn, so the image is the same as projecting all of them.
    Dropped: centres at z-depth <= near / 2 (behind, at or just in front of the camera: not
    drawn at z <= near, and the projection divides by z) or >= far, opacity < 1/255, and
    centres so far beside the image that even the widest projected footprint misses it. That
    footprint: the 2D covariance is J C J^T + eps2d with C's largest eigenvalue max(scale)^2
    and J's rows of norm <= f / z sqrt(1 + lim^2) (lim: gsplat's clamp of x / z, y / z to 1.3
    times the field of view), and alpha < 1/255 beyond sqrt(2 ln(255 opacity)) standard
    deviations. A pixel of margin covers rounding.
    """
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    mc = means @ R.T + t
    z = mc[:, 2]
    fx, fy, cx, cy = (float(v) for v in (K[0, 0], K[1, 1], K[0, 2], K[1, 2]))
    lim_x = max(W - cx, cx) / fx + 0.3 * 0.5 * W / fx
    lim_y = max(H - cy, cy) / fy + 0.3 * 0.5 * H / fy
    keep = (z > 0.5 * near) & (z < far) & (opacities >= ALPHA_THRESHOLD)
    zs = torch.where(keep, z, torch.ones_like(z))
    ext = torch.sqrt(2.0 * torch.log((opacities / ALPHA_THRESHOLD).clamp_min(1.0)))
    smax = scales.max(1).values
    hx = ext * torch.sqrt((fx / zs * smax) ** 2 * (1.0 + lim_x * lim_x) + eps2d) * 1.01 + 1.0
    hy = ext * torch.sqrt((fy / zs * smax) ** 2 * (1.0 + lim_y * lim_y) + eps2d) * 1.01 + 1.0
    u = fx * mc[:, 0] / zs + cx
    v = fy * mc[:, 1] / zs + cy
    keep &= (u + hx > 0) & (u - hx < W) & (v + hy > 0) & (v - hy < H)
    keep &= torch.isfinite(mc).all(1)
    return torch.nonzero(keep).squeeze(1), z


def _row_bands(x0: Tensor, x1: Tensor, y0: Tensor, y1: Tensor, H: int, max_pairs: int) -> list[tuple[int, int]]:
    """Cut rows [0, H) into consecutive bands of at most ``max_pairs`` box pairs (a single row
    may exceed it). Pairs per row come from a difference array over the boxes' row spans."""
    wx = x1 - x0 + 1
    diff = torch.zeros(H + 1, dtype=torch.int64, device=x0.device)
    diff.index_add_(0, y0, wx)
    diff.index_add_(0, y1 + 1, -wx)
    per_row = torch.cumsum(diff[:H], 0).tolist()
    bands, start, total = [], 0, 0
    for r, n in enumerate(per_row):
        if total + n > max_pairs and r > start:
            bands.append((start, r))
            start, total = r, 0
        total += n
    bands.append((start, H))
    return bands


@dataclass
class _Pairs:
    """The composited (Gaussian, pixel) pairs of a band, sorted by pixel and front to back per
    pixel: Gaussian index ``g`` [M] (into the depth-sorted visible list), flat pixel ``pix`` [M],
    ``alpha`` [M], transmittance before the pair ``t_before`` [M], pixel centres ``px``, ``py``
    [M], and the per-pixel segments (``counts`` [S], ``seg`` [M] segment of each pair)."""

    g: Tensor
    pix: Tensor
    alpha: Tensor
    t_before: Tensor
    px: Tensor
    py: Tensor
    counts: Tensor
    seg: Tensor


def _band_pairs(x0, x1, y0, y1, r0: int, r1: int, W: int, geo: Tensor) -> _Pairs | None:
    """The (Gaussian, pixel) pairs of rows [r0, r1) that are composited (no autograd), or None.

    Expands the boxes, drops pairs with alpha < 1/255, orders the pairs by pixel and, per pixel,
    front to back (a stable sort of the depth-ordered pairs), and drops the pairs at and after
    each pixel's transmittance cut-off (a suffix of the pixel's list).
    """
    sel = torch.nonzero((y0 < r1) & (y1 >= r0)).squeeze(1)  # increasing = front to back
    if sel.numel() == 0:
        return None
    bx0 = x0[sel]
    by0 = y0[sel].clamp_min(r0)
    wx = x1[sel] - bx0 + 1
    wy = y1[sel].clamp_max(r1 - 1) - by0 + 1
    n = wx * wy
    gl = torch.repeat_interleave(torch.arange(sel.numel(), device=sel.device), n)
    off = torch.arange(gl.numel(), device=sel.device) - (torch.cumsum(n, 0) - n).index_select(0, gl)
    wxg = wx.index_select(0, gl)
    px = bx0.index_select(0, gl) + off % wxg
    py = by0.index_select(0, gl) + torch.div(off, wxg, rounding_mode="floor")
    g = sel.index_select(0, gl)
    del gl, off, wxg
    fx, fy = px.to(geo.dtype) + 0.5, py.to(geo.dtype) + 0.5
    alpha, sigma = _alpha(geo.index_select(0, g).unbind(1), fx, fy)
    keep = torch.nonzero((sigma >= 0) & (alpha >= ALPHA_THRESHOLD)).squeeze(1)
    if keep.numel() == 0:
        return None
    del sigma
    pix = (py * W + px).index_select(0, keep)
    if int(pix.max()) < 2**31 - 1:
        pix = pix.to(torch.int32)  # sorts faster
    pix, order = torch.sort(pix, stable=True)  # stable: keeps front-to-back order per pixel
    order = keep.index_select(0, order)
    alpha = alpha.index_select(0, order)
    counts, seg = _segments(pix)
    log_t_after, log_t_before = _segmented_log_transmittance(alpha, counts, seg)
    live = torch.nonzero(log_t_after > math.log(TRANSMITTANCE_MIN)).squeeze(1)
    if live.numel() < pix.numel():
        order, alpha, pix = order.index_select(0, live), alpha.index_select(0, live), pix.index_select(0, live)
        log_t_before = log_t_before.index_select(0, live)
        counts, seg = _segments(pix)
    return _Pairs(g.index_select(0, order), pix.long(), alpha, torch.exp(log_t_before).to(alpha.dtype),
                  fx.index_select(0, order), fy.index_select(0, order), counts, seg)


def _segments(pix: Tensor) -> tuple[Tensor, Tensor]:
    """Runs of equal pixels in a sorted pixel list: counts [S] and segment index [M] per pair."""
    _, counts = torch.unique_consecutive(pix, return_counts=True)
    seg = torch.repeat_interleave(torch.arange(counts.numel(), device=pix.device), counts)
    return counts, seg


def _alpha(cols, px: Tensor, py: Tensor) -> tuple[Tensor, Tensor]:
    """alpha = min(0.999, opacity exp(-sigma)) and sigma [M] of pairs whose Gaussians have
    columns ``cols`` (mean x, y, conic a, b, c, opacity; each [M]) at pixel centres (px, py)."""
    mx, my, ca, cb, cc, op = cols
    dx = px - mx
    dy = py - my
    sigma = 0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
    return torch.clamp_max(op * torch.exp(-sigma), MAX_ALPHA), sigma


def _segmented_cumsum(x: Tensor, counts: Tensor, seg: Tensor) -> Tensor:
    """Inclusive cumulative sum of x [M] restarted at each segment, in float64."""
    x = x.double()
    csum = torch.cumsum(x, 0)
    starts = torch.cumsum(counts, 0) - counts
    return csum - (csum - x).index_select(0, starts).index_select(0, seg)


def _segmented_log_transmittance(alpha: Tensor, counts: Tensor, seg: Tensor) -> tuple[Tensor, Tensor]:
    """log T after and before each pair (float64 [M]) for pairs sorted by pixel, front to back:
    a cumulative sum of log(1 - alpha) restarted at each pixel."""
    la = torch.log1p(-alpha.double())
    log_t_after = _segmented_cumsum(la, counts, seg)
    return log_t_after, log_t_after - la


class _Composite(torch.autograd.Function):
    """Front-to-back compositing of precomputed pairs with a hand-written backward.

    Forward: ``out[p] = sum_i w_i f_i`` and ``acc[p] = sum_i w_i`` over the pairs i of pixel p,
    ``w_i = alpha_i T_i``, f = (r, g, b, z). Backward, per pixel (as gsplat's CUDA kernel):
    ``dL/df_i = w_i dL/dout``; ``dL/dalpha_i = T_i q_i - S_i / (1 - alpha_i) + dL/dacc T_end / (1 - alpha_i)``
    with ``q_i = dL/dout . f_i`` and ``S_i = sum_{k > i} w_k q_k``; then through
    ``alpha = min(0.999, o exp(-sigma))`` (no gradient where clamped) and
    ``sigma = 0.5 (a dx^2 + c dy^2) + b dx dy``, ``d = pixel centre - mean``, to the Gaussians'
    2D mean, conic and opacity.
    """

    @staticmethod
    def forward(ctx, geo: Tensor, feats: Tensor, pairs: _Pairs, n_pixels: int):
        w = pairs.alpha * pairs.t_before
        out = torch.zeros(n_pixels, feats.shape[1], dtype=feats.dtype, device=feats.device)
        out.index_add_(0, pairs.pix, w[:, None] * feats.index_select(0, pairs.g))
        acc = torch.zeros(n_pixels, dtype=feats.dtype, device=feats.device).index_add_(0, pairs.pix, w)
        ctx.save_for_backward(geo, feats)
        ctx.pairs = pairs
        return out, acc

    @staticmethod
    def backward(ctx, g_out: Tensor, g_acc: Tensor):
        geo, feats = ctx.saved_tensors
        p: _Pairs = ctx.pairs
        alpha, t_before, gi = p.alpha, p.t_before, p.g
        w = alpha * t_before
        gp = g_out.index_select(0, p.pix)
        grad_feats = torch.zeros_like(feats).index_add_(0, gi, w[:, None] * gp)
        q = (gp * feats.index_select(0, gi)).sum(1)
        wq = w * q
        incl = _segmented_cumsum(wq, p.counts, p.seg)
        ends = torch.cumsum(p.counts, 0) - 1
        suffix = (incl.index_select(0, ends).index_select(0, p.seg) - incl).to(alpha.dtype)  # sum_{k>i} w_k q_k
        one_m = 1.0 - alpha
        t_end = (t_before * one_m).index_select(0, ends).index_select(0, p.seg)  # T after the pixel's last pair
        d_alpha = t_before * q - suffix / one_m + g_acc.index_select(0, p.pix) * t_end / one_m
        mx, my, ca, cb, cc, op = geo.index_select(0, gi).unbind(1)
        dx, dy = p.px - mx, p.py - my
        sigma = 0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
        e = torch.exp(-sigma)
        free = (op * e) < MAX_ALPHA  # where alpha is clamped, neither opacity nor sigma get gradient
        d_alpha = d_alpha * free
        d_sigma = -alpha * d_alpha
        # Per-pair gradients of (mean x, y, conic a, b, c, opacity), written straight into their
        # columns (no stack copy).
        grads = torch.empty(gi.numel(), 6, dtype=geo.dtype, device=geo.device)
        neg_ds = -d_sigma
        torch.mul(neg_ds, ca * dx + cb * dy, out=grads[:, 0])  # d sigma / d mean_x = -(a dx + b dy)
        torch.mul(neg_ds, cb * dx + cc * dy, out=grads[:, 1])
        half_ds = 0.5 * d_sigma
        torch.mul(half_ds, dx * dx, out=grads[:, 2])
        torch.mul(d_sigma, dx * dy, out=grads[:, 3])
        torch.mul(half_ds, dy * dy, out=grads[:, 4])
        torch.mul(d_alpha, e, out=grads[:, 5])
        grad_geo = torch.zeros_like(geo).index_add_(0, gi, grads)
        return grad_geo, grad_feats, None, None


def _composite_autograd(geo: Tensor, feats: Tensor, pairs: _Pairs, n_pixels: int) -> tuple[Tensor, Tensor]:
    """The same compositing as :class:`_Composite` in plain differentiable ops (a cross-check)."""
    alpha, _ = _alpha(geo.index_select(0, pairs.g).unbind(1), pairs.px, pairs.py)
    _, log_t_before = _segmented_log_transmittance(alpha, pairs.counts, pairs.seg)
    w = alpha * torch.exp(log_t_before).to(alpha.dtype)
    out = torch.zeros(n_pixels, feats.shape[1], dtype=feats.dtype, device=feats.device)
    out = out.index_add(0, pairs.pix, w[:, None] * feats.index_select(0, pairs.g))
    acc = torch.zeros(n_pixels, dtype=feats.dtype, device=feats.device).index_add(0, pairs.pix, w)
    return out, acc
