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
    ``alpha = 1 - T`` at the end; no background (colours are composited over black);
  - ``rasterize_mode="antialiased"`` (gsplat's mode of that name, Mip-Splatting's 2D filter):
    each Gaussian's opacity is multiplied by ``sqrt(det(cov2d) / det(cov2d + eps2d I))``
    (:func:`antialias_compensation`, gsplat's ``compensations``), so a
    Gaussian much smaller than a pixel, which the ``eps2d`` blur spreads over a pixel, keeps its
    integrated weight instead of painting the whole pixel: many tiny Gaussians seen from afar
    average like a mipmap instead of aliasing.

How the CPU path works (vectorized: no Python loop over Gaussians or pixels):

1. A conservative frustum cull (no autograd) drops Gaussians that cannot be drawn: centres at
   z-depth <= near / 2 or beyond far, and centres so far beside the image that no footprint of
   their size reaches it (``_candidates``). Only the rest go through the differentiable
   projection, which is both cheaper (a view of a dreamed scene sees ~1/6 of its Gaussians) and
   needed: the projection divides by z and z^2, and a Gaussian on the camera plane would turn
   its zero gradient into NaN. The candidates are projected (EWA splatting as gsplat's, ``eps2d``
   added to the 2D covariance). Each visible Gaussian gets the tight axis-aligned pixel box
   outside which its alpha is below 1/255 (half-size ``sqrt(2 ln(255 opacity) * cov2d_ii)``,
   the opacity-aware extent that gsplat's CUDA projection uses for its tile lists).
2. Gaussians are sorted by depth, and every box is cut into the tiles of ``TILE`` x ``TILE``
   pixels it touches, less the tiles whose pixel centres all lie beyond the Gaussian's reach
   (the distance past which alpha < 1/255 whatever the direction: a round footprint's box
   corners); a stable sort by tile gives, per tile, its Gaussians front to back (the lists
   gsplat's CUDA kernels walk, as one flat array).
3. Tiles of similar list lengths are composited together as dense blocks [tiles, pixels,
   Gaussians], padded to the longest list with a Gaussian of zero opacity (``_tile_chunks``):
   no per-pair sort, gather or scatter. ``log alpha = log opacity - sigma`` is a quadratic
   polynomial in the pixel position, so a block's alphas are one matrix product of the tile's
   pixel monomials (1, x, y, x^2, x y, y^2) with per-Gaussian coefficients. Transmittance is a
   cumulative sum of ``log(1 - alpha)`` along each pixel's list; the pairs at and after each
   pixel's cut-off get alpha 0. Colour, depth and coverage are one batched matrix product of the
   weights with (r, g, b, z, 1). Blocks hold at most ``max_pairs`` entries (a single tile may
   hold more): a render without gradients (videos) keeps one block at a time however close
   the camera gets; a differentiable render keeps every block's alphas for the backward.
4. Compositing is an autograd Function with a hand-written backward (the same per-pixel
   recurrences as gsplat's CUDA backward, as suffix sums along the lists; the sums over a
   tile's pixels that the Gaussians' gradients need are one product with the monomials), so
   gradients reach means, quaternions, scales, opacities and SH through the differentiable
   projection and SH, and ``info["means2d"].grad`` is filled like gsplat's,
   which is what ``DefaultStrategy`` densifies on. A plain-autograd compositor
   (``analytic_backward=False``, sigma from the pixel offsets) is kept as a cross-check.

Extending the compositing (another alpha, e.g. with an antialiasing factor on the opacity):
the opacity column of ``geo`` is what both compositors read; anything that changes per
(pixel, Gaussian) belongs in ``_chunk_alpha`` and its backward in ``_TileComposite.backward``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from dreamer.cameras import Camera, invert_rigid
from dreamer.splats.tiles import (ALPHA_THRESHOLD, MAX_ALPHA, TILE, TRANSMITTANCE_MIN, _tile_composite_autograd,
                                  _tile_lists, _TileComposite)

__all__ = [
    "rasterize",
    "RasterOutput",
    "RASTERIZE_MODES",
    "ALPHA_THRESHOLD",
    "MAX_ALPHA",
    "TRANSMITTANCE_MIN",
    "SH_C0",
    "num_sh_bases",
    "sh_degree_from_bases",
]

SH_C0 = 0.28209479177387814
"""The degree-0 real spherical harmonic: colour = SH_C0 * sh0 + 0.5."""

Backend = Literal["auto", "gsplat", "torch"]
RasterizeMode = Literal["classic", "antialiased"]
RASTERIZE_MODES = ("classic", "antialiased")


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
    rasterize_mode: RasterizeMode = "classic",
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
        max_pairs: torch path only: the most (pixel, Gaussian) entries composited at once (memory;
            the tile blocks are smaller still, sized to stay in cache).
        analytic_backward: torch path only: composite with the hand-written backward (fast,
            little memory); False composites with plain autograd ops (slow; a cross-check).
        rasterize_mode: ``"classic"`` or ``"antialiased"`` (each opacity times
            ``sqrt(det(cov2d) / det(cov2d + eps2d I))``; gsplat's mode of that name).

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
    if rasterize_mode not in RASTERIZE_MODES:
        raise ValueError(f"rasterize_mode must be one of {RASTERIZE_MODES}, got {rasterize_mode!r}")
    antialiased = rasterize_mode == "antialiased"
    if backend == "auto":
        backend = "gsplat" if means.is_cuda else "torch"
    if backend == "gsplat":
        if not means.is_cuda:
            raise ValueError("backend 'gsplat' needs CUDA tensors (gsplat's kernels do not run on CPU); use 'torch'")
        return _rasterize_gsplat(means, quats, scales, opacities, sh, camera, deg, near_plane, far_plane, eps2d,
                                 rasterize_mode)
    if backend != "torch":
        raise ValueError(f"backend must be 'auto', 'gsplat' or 'torch', got {backend!r}")
    if max_pairs < 1:
        raise ValueError(f"max_pairs must be >= 1, got {max_pairs}")
    return _rasterize_torch(means, quats, scales, opacities, sh, camera, deg, near_plane, far_plane, eps2d, max_pairs,
                            analytic_backward, antialiased)


def _camera_tensors(camera: Camera, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """viewmat (w2c) [4,4], K [3,3] and the camera centre [3] in ``like``'s dtype and device
    (the rigid inverse is taken in float64)."""
    c2w = camera.c2w.to(device=like.device, dtype=torch.float64)
    w2c = invert_rigid(c2w)
    return w2c.to(like.dtype), camera.K.to(device=like.device, dtype=like.dtype), c2w[:3, 3].to(like.dtype)


def _rasterize_gsplat(means, quats, scales, opacities, sh, camera, deg, near, far, eps2d,
                      rasterize_mode="classic") -> RasterOutput:
    from gsplat import rasterization

    viewmat, K, _ = _camera_tensors(camera, means)
    colors, alphas, info = rasterization(
        means, quats, scales, opacities, sh, viewmat[None], K[None], camera.width, camera.height,
        near_plane=near, far_plane=far, eps2d=eps2d, sh_degree=deg, packed=False, render_mode="RGB+ED",
        rasterize_mode=rasterize_mode,
    )
    info = dict(info)
    info["backend"] = "gsplat"
    return RasterOutput(colors[0, ..., :3], colors[0, ..., 3], alphas[0, ..., 0], info)


def _rasterize_torch(means, quats, scales, opacities, sh, camera, deg, near, far, eps2d, max_pairs,
                     analytic_backward=True, antialiased=False) -> RasterOutput:
    from dreamer.splats.projection import project_gaussians
    from dreamer.splats.projection import spherical_harmonics as _spherical_harmonics

    H, W = camera.height, camera.width
    dtype, device = means.dtype, means.device
    viewmat, K, campos = _camera_tensors(camera, means)

    N = means.shape[0]
    # Only Gaussians that can reach the image go through the differentiable projection (see
    # _candidates): the others are skipped, not projected and masked afterwards. This is a fix,
    # not only a saving: for a Gaussian on the camera plane, camera z exactly 0 (float32
    # rounding puts centres that pass beside the camera there: a dreamed scene hit one at camera
    # (4.67, 1.55, 0.0)) or so small that z^2 underflows, the projection divides
    # by z and z^2 (means2d = K t / z, the Jacobian's fx / z and fx x / z^2) and gets inf; its
    # radius is 0 so it gets no gradient, but the chain rule multiplies that zero by inf and the
    # NaN reaches its means, quats and scales (and, through Adam, the parameters). Culled
    # Gaussians have no autograd path at all, and every projected one has z > near / 2.
    with torch.no_grad():
        cand, z_all = _candidates(means.detach(), scales.detach(), opacities.detach(), viewmat, K, W, H, near, far,
                                  eps2d)
    radii_c, means2d_c, depths_c, conics_c = project_gaussians(
        means.index_select(0, cand), quats.index_select(0, cand), scales.index_select(0, cand), viewmat, K, W, H,
        eps2d=eps2d, near_plane=near, far_plane=far)
    # The opacity each projected Gaussian is drawn with (antialiased: times its compensation).
    opac_c = opacities.index_select(0, cand)
    if antialiased:
        opac_c = opac_c * antialias_compensation(conics_c, eps2d)
    # Full-size [1,N,...] results for info (DefaultStrategy indexes them by Gaussian): culled
    # Gaussians have means2d and conics 0, radii 0 and their (non-differentiable) z-depth.
    means2d = means2d_c.new_zeros(N, 2).index_copy(0, cand, means2d_c)[None]
    conics = conics_c.new_zeros(N, 3).index_copy(0, cand, conics_c)[None]
    depths = z_all.to(depths_c.dtype).index_copy(0, cand, depths_c)[None]

    with torch.no_grad():
        c = conics_c.detach()
        det = (c[:, 0] * c[:, 2] - c[:, 1] ** 2).clamp_min(1e-30)
        cov_xx, cov_yy = c[:, 2] / det, c[:, 0] / det  # the 2D covariance (eps2d included)
        op = opac_c.detach()
        # Opacity-aware extent (as gsplat's CUDA projection): beyond it alpha < 1/255.
        ext = torch.sqrt(2.0 * torch.log((op / ALPHA_THRESHOLD).clamp_min(1.0)))
        hx, hy = ext * cov_xx.sqrt(), ext * cov_yy.sqrt()
        m2 = means2d_c.detach()
        rx, ry = torch.ceil(hx), torch.ceil(hy)
        valid = ((radii_c > 0).all(-1) & (op >= ALPHA_THRESHOLD) & torch.isfinite(m2).all(-1)
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
        vis_c = vis_c[torch.argsort(depths_c[vis_c].detach(), stable=True)]  # front to back
        x0, x1, y0, y1 = (t[vis_c].long() for t in (x0, x1, y0, y1))
        vis = cand.index_select(0, vis_c)  # indices into all N Gaussians

    info: dict[str, Any] = {
        "means2d": means2d, "radii": radii[None], "depths": depths, "conics": conics,
        "opacities": opacities[None], "width": W, "height": H, "n_cameras": 1, "n_batches": 1,
        "gaussian_ids": None, "batch_ids": None, "camera_ids": None, "backend": "torch", "n_pairs": 0,
        "n_projected": int(cand.numel()),
    }
    if vis.numel() == 0:
        zeros = torch.zeros(H, W, dtype=dtype, device=device)
        return RasterOutput(zeros[..., None].expand(H, W, 3).clone(), zeros, zeros.clone(), info)

    # Per visible Gaussian (front to back): geometry (mean x, y, conic a, b, c, opacity) and
    # features (r, g, b, z).
    # index_select, not x[idx]: its backward is an index_add, where advanced indexing's is an
    # accumulating index_put (a sort of the indices) into a zero tensor of every Gaussian.
    dirs = means.index_select(0, vis) - campos
    rgb = torch.clamp_min(_spherical_harmonics(deg, dirs, sh.index_select(0, vis)) + 0.5, 0.0)
    # The means through the full-size means2d, so that its grad (densification's statistic) is filled.
    geo = torch.cat([means2d[0].index_select(0, vis), conics_c.index_select(0, vis_c),
                     opac_c.index_select(0, vis_c)[:, None]], -1)
    feats = torch.cat([rgb, depths_c.index_select(0, vis_c)[:, None]], -1)

    lists = _tile_lists(x0, x1, y0, y1, W, H, TILE, geo.detach())
    if analytic_backward:
        keep = torch.is_grad_enabled() and (geo.requires_grad or feats.requires_grad)
        out, n_pairs = _TileComposite.apply(geo, feats, lists, max_pairs, keep)
    else:
        out, n_pairs = _tile_composite_autograd(geo, feats, lists, max_pairs)
    info["n_pairs"] = int(n_pairs)
    acc = out[:, 4]
    rgb_img = out[:, :3].reshape(H, W, 3)
    depth_img = (out[:, 3] / acc.clamp_min(1e-10)).reshape(H, W)
    return RasterOutput(rgb_img, depth_img, acc.reshape(H, W), info)


def antialias_compensation(conics: Tensor, eps2d: float) -> Tensor:
    """``sqrt(det(cov2d) / det(cov2d + eps2d I))`` [M] from the conics [M,3] (``a, b, c`` of
    ``(cov2d + eps2d I)^-1``; differentiable): with ``D = det(cov2d + eps2d I) = 1 / (a c - b^2)``
    and ``tr(cov2d + eps2d I) = (a + c) D``, ``det(cov2d) = D - eps2d tr + eps2d^2``, so the ratio
    is ``1 - eps2d (a + c) + eps2d^2 (a c - b^2)`` (gsplat's ``compensations``)."""
    a, b, c = conics.unbind(-1)
    ratio = 1.0 - eps2d * (a + c) + eps2d * eps2d * (a * c - b * b)
    return torch.sqrt(ratio.clamp_min(0.0))


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
    fx, fy, cx, cy = (float(v) for v in (K[0, 0], K[1, 1], K[0, 2], K[1, 2]))
    lim_x = max(W - cx, cx) / fx + 0.3 * 0.5 * W / fx
    lim_y = max(H - cy, cy) / fy + 0.3 * 0.5 * H / fy
    gx, gy = fx * fx * (1.0 + lim_x * lim_x), fy * fy * (1.0 + lim_y * lim_y)
    N = means.shape[0]
    z_all = means.new_empty(N)
    found = []
    # In blocks on the CPU: small temporaries (the allocator reuses them) for a large scene.
    block = N if means.is_cuda else _CPU_BLOCK
    for start in range(0, N, block):
        mc = means[start : start + block] @ R.T + t
        z = mc[:, 2]
        z_all[start : start + block] = z
        op = opacities[start : start + block]
        # Depth and opacity first (a view of a dreamed scene has much of it behind the camera):
        # the footprint test runs on the rest only. NaN depths fail the comparisons.
        near_ok = torch.nonzero((z > 0.5 * near) & (z < far) & (op >= ALPHA_THRESHOLD)).squeeze(1)
        mc, z, op = mc.index_select(0, near_ok), z.index_select(0, near_ok), op.index_select(0, near_ok)
        ext = torch.sqrt(2.0 * torch.log((op / ALPHA_THRESHOLD).clamp_min(1.0)))
        r2 = (scales[start : start + block].index_select(0, near_ok).amax(1) / z) ** 2
        hx = ext * torch.sqrt(r2 * gx + eps2d) * 1.01 + 1.0
        hy = ext * torch.sqrt(r2 * gy + eps2d) * 1.01 + 1.0
        u = fx * mc[:, 0] / z + cx
        v = fy * mc[:, 1] / z + cy
        keep = (u + hx > 0) & (u - hx < W) & (v + hy > 0) & (v - hy < H)
        keep &= torch.isfinite(mc).all(1)
        found.append(near_ok[keep] + start)
    cand = torch.cat(found) if found else torch.zeros(0, dtype=torch.long, device=means.device)
    return cand, z_all


_CPU_BLOCK = 1 << 16
