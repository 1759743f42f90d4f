"""The alignment on torch tensors: equal to the numpy/scipy version it replaced
(tests/alignment_reference), and free of numpy on the torch-only path a GPU takes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

import alignment.kernels as kernels
from alignment import align_depth, fit_scale, seam_correction
from alignment.adaptive import align_adaptive
from alignment.seam import edge_links
from alignment_reference import adaptive as reference_adaptive
from alignment_reference import scale as reference_scale
from alignment_reference import seam as reference_seam
from dreamer.scene import DreamConfig
from dreamer.scene.loop import align_view

H, W = 80, 104


def _coords():
    return torch.meshgrid(torch.arange(H, dtype=torch.float64) + 0.5, torch.arange(W, dtype=torch.float64) + 0.5,
                          indexing="ij")


def _scene(seed: int):
    """A slanted surface with a box in front (a depth edge), an estimate with a distortion and
    noise, and a hole (a border strip plus a disocclusion blob)."""
    yy, xx = _coords()
    truth = 1.5 + 3.0 * (1 - yy / H) + 0.4 * torch.sin(xx / 11.0)
    box = (xx > 30) & (xx < 50) & (yy > 20) & (yy < 50)
    truth = torch.where(box, torch.full_like(truth, 1.2), truth)
    g = torch.Generator().manual_seed(seed)
    distortion = [lambda d: 0.45 * d, lambda d: 1.0 / (0.8 / d + 0.12),
                  lambda d: 0.7 * d * torch.exp(0.15 * (xx / W - 0.5) + 0.1 * torch.sin(yy / 9.0))][seed % 3]
    est = distortion(truth) * (1 + 0.01 * torch.randn(H, W, generator=g, dtype=torch.float64))
    hole = (xx > W - 20 - 6 * seed) | ((xx - 40) ** 2 + (yy - 60) ** 2 < (8 + 2 * seed) ** 2)
    known = ~hole
    known[:3, :] = False  # pixels in neither mask
    return est, truth, known, hole


def _random_mask(seed: int, density: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(H // 8 + 1, W // 8 + 1, generator=g) < density
    fine = coarse.repeat_interleave(8, 0).repeat_interleave(8, 1)[:H, :W]
    return fine ^ (torch.rand(H, W, generator=g) < 0.05)


def _torch_only(monkeypatch):
    """The path a GPU takes, on the CPU: torch kernels, and any tensor -> numpy conversion fails."""
    monkeypatch.setattr(kernels, "CPU_KERNELS", False)

    def refuse(*args, **kwargs):
        raise AssertionError("a tensor was converted to numpy on the torch-only path")

    monkeypatch.setattr(torch.Tensor, "numpy", refuse)
    monkeypatch.setattr(torch.Tensor, "__array__", refuse)
    for name in ("distance_transform_edt", "label", "median_filter"):
        monkeypatch.setattr(ndi, name, refuse)


def test_the_distance_on_the_box_of_the_far_pixels_is_scipys_on_the_whole_image():
    """distance_to runs scipy's transform on the bounding box of the False pixels (grown by a
    pixel) only: the same distances to the bit as on the whole image, for False pixels in the
    middle, against each border and in a corner, and none at all."""
    g = torch.Generator().manual_seed(3)
    for y0, y1, x0, x1 in ((20, 40, 30, 50), (0, 25, 10, 64), (30, 64, 0, 20), (0, 10, 54, 64), (0, 0, 0, 0)):
        mask = torch.ones(64, 64, dtype=torch.bool)
        mask[y0:y1, x0:x1] = torch.rand(y1 - y0, x1 - x0, generator=g) < 0.7  # False pixels in the box only
        mask[5, 7] = True
        expected = torch.from_numpy(ndi.distance_transform_edt(~mask.numpy()))
        assert torch.equal(kernels.distance_to(mask), expected)


@pytest.mark.parametrize("seed", range(4))
def test_the_torch_kernels_equal_numpy_and_scipy(seed, monkeypatch):
    mask = _random_mask(seed, 0.3)
    seeds = mask & _random_mask(seed + 10, 0.2)
    values = torch.randn(1000 + seed, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    values[::7] = 0.5  # ties
    dist = torch.from_numpy(ndi.distance_transform_edt(~mask.numpy()))
    labels, _ = ndi.label(mask.numpy())
    touched = np.isin(labels, np.unique(labels[seeds.numpy()])) & mask.numpy()
    for cpu in (True, False):
        monkeypatch.setattr(kernels, "CPU_KERNELS", cpu)
        assert torch.allclose(kernels.distance_to(mask), dist, rtol=1e-15, atol=0)
        assert torch.equal(kernels.regions_touching(mask, seeds), torch.from_numpy(touched))
        for v in (values, values[:-1], values[:1]):
            assert kernels.median(v) == float(np.median(v.numpy()))


@pytest.mark.parametrize("seed", range(3))
def test_align_adaptive_equals_the_numpy_version(seed):
    est, truth, known, hole = _scene(seed)
    for kwargs in ({}, {"edges": True, "folds": 2}, {"fit_global": False, "offset_reach": 0.1, "seam_reaches": (0.2,)}):
        kwargs = {"models": reference_adaptive.GLOBAL_MODELS, **kwargs}  # the reference predates the power model
        new = align_adaptive(est, truth, known, hole, **kwargs)
        old = reference_adaptive.align_adaptive(est, truth, known, hole, **kwargs)
        assert (new.model, new.seam_reach, new.seam_edges) == (old.model, old.seam_reach, old.seam_edges)
        assert new.scores.keys() == old.scores.keys()
        for key in new.scores:
            assert new.scores[key] == pytest.approx(old.scores[key], rel=1e-6, abs=1e-9)
        assert new.global_correction.params == pytest.approx(old.global_correction.params, rel=1e-9, abs=1e-12)
        # The seam solves stop at a relative residual of 1e-6 (both versions): fields agree to ~1e-6.
        assert float((new.depth / old.depth - 1).abs().max()) < 1e-5
        assert new.fit.scale == pytest.approx(old.fit.scale, rel=1e-12)
        assert new.fit.inlier_fraction == old.fit.inlier_fraction


@pytest.mark.parametrize("with_shift", [False, True])
def test_fit_scale_equals_the_numpy_version(with_shift):
    est, truth, known, _ = _scene(1)
    new = fit_scale(est, truth, known, with_shift=with_shift)
    old = reference_scale.fit_scale(est, truth, known, with_shift=with_shift)
    for a, b in zip((new.scale, new.shift, new.residual_before, new.residual_after),
                    (old.scale, old.shift, old.residual_before, old.residual_after)):
        assert a == pytest.approx(b, rel=1e-10, abs=1e-12)
    assert (new.with_shift, new.n_pixels, new.inlier_fraction) == (old.with_shift, old.n_pixels, old.inlier_fraction)


@pytest.mark.parametrize("decay", [None, 20.0])
def test_seam_correction_with_edges_equals_the_numpy_version(decay):
    est, truth, known, hole = _scene(2)
    rho = torch.log(truth / est)
    links = edge_links(est)
    old_links = reference_seam.edge_links(est)
    assert torch.allclose(links[0], old_links[0], rtol=0, atol=1e-15)
    assert torch.allclose(links[1], old_links[1], rtol=0, atol=1e-15)
    new = seam_correction(rho, known, hole, decay=decay, links=links)
    old = reference_seam.seam_correction(rho, known, hole, decay=decay, links=old_links)
    assert float((new - old).abs().max()) < 1e-6


def test_the_alignment_runs_in_torch_alone_on_the_inputs_device(monkeypatch):
    """align_view (the loop's alignment) and align_depth with every tensor -> numpy conversion
    and scipy's image functions refused: the results are tensors on the input's device, equal
    to the default path's (numpy and scipy kernels on the CPU)."""
    est, truth, known, hole = _scene(2)
    est, truth = est.float(), truth.float()
    default = align_view(est, truth, known, hole, DreamConfig())
    _torch_only(monkeypatch)
    with pytest.raises(AssertionError, match="torch-only"):
        est.numpy()  # the guard is in place
    out = align_view(est, truth, known, hole, DreamConfig())
    plain = align_depth(est, truth, known, hole, decay=30.0)
    for t in (out.depth, out.correction, out.global_correction.log_field(est), plain.depth, plain.correction):
        assert isinstance(t, torch.Tensor) and t.device == est.device
    assert out.depth.dtype == est.dtype
    assert (out.model, out.seam_reach, out.seam_edges) == (default.model, default.seam_reach, default.seam_edges)
    assert float((out.depth.double() / default.depth.double() - 1).abs().max()) < 1e-6
    assert math.isfinite(plain.seam_jump_after)


def test_one_view_of_the_loop_runs_without_numpy(monkeypatch):
    """dream_view (render, coverage clean-up, alignment, lifting, merge) with the models' outputs
    fixed and every tensor -> numpy conversion refused: the same view as on the default path."""
    from dreamer.backends.synthetic import WorldDepthEstimator
    from dreamer.cameras import DEFAULT_FOCAL_512, Camera, rotation_y
    from dreamer.render import lift
    from dreamer.scene.loop import dream_view
    from dreamer.worlds import ProceduralWorld

    world, size = ProceduralWorld(), 64
    first = Camera.from_focal(DEFAULT_FOCAL_512 * size / 512, size, size)
    r0 = world.render(first)
    points = lift(r0.image, r0.depth, first)
    c2w = first.c2w.clone()
    c2w[:3, :3] = rotation_y(15.0)
    cam = Camera.from_focal(DEFAULT_FOCAL_512 * size / 512, size, size, c2w)
    truth = world.render(cam)
    estimate = WorldDepthEstimator(world, seed=1).estimate(truth.image, camera=cam)

    class Fixed:
        def inpaint(self, image, mask, prompt, *, camera, generator=None):
            return truth.image

        def estimate(self, image, *, camera):
            return estimate

    run = lambda: dream_view(points, cam, "", inpainter=Fixed(), depth_estimator=Fixed(),  # noqa: E731
                             config=DreamConfig())
    default_cloud, default_view = run()
    _torch_only(monkeypatch)
    cloud, view = run()
    assert view.stats["align_model"] == default_view.stats["align_model"]
    assert torch.equal(view.mask, default_view.mask) and len(cloud) == len(default_cloud) > len(points)
    assert float((view.depth.double() / default_view.depth.double() - 1).abs().max()) < 1e-6


@pytest.mark.parametrize("with_links", [False, True])
def test_the_seam_systems_grid_product_is_the_entry_by_entry_product_to_the_bit(with_links, monkeypatch):
    """Multigrid CG multiplies by the seam system as maps over its unknowns' bounding box; that
    gives exactly the scatter over its entries in float64 (in the multigrid's float32 within a
    rounding), and the grid's dense form is the entries' matrix."""
    import alignment.seam as seam

    g = torch.Generator().manual_seed(5)
    H, W = 48, 64
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    hole = ((yy - 20) ** 2 + (xx - 30) ** 2 < 300) | (xx > 55)  # a blob and a border strip
    hole &= torch.rand(H, W, generator=g) < 0.97  # a few known islands inside
    known = ~hole
    known[0:3, 0:5] = False  # pixels in neither mask
    log_ratio = 0.1 * torch.randn(H, W, generator=g, dtype=torch.float64)
    depth = 2.0 + (xx > 40).double() + 0.01 * torch.rand(H, W, generator=g, dtype=torch.float64)
    links = seam.edge_links(depth) if with_links else None
    systems = []
    monkeypatch.setattr(seam, "_solve_spd", lambda A, b, ys, xs: systems.append((A, ys, xs)) or torch.zeros_like(b))
    seam._seam_corrections(log_ratio, known, hole, [(None, links), (5.0, links)])
    assert len(systems) == 2
    for A, ys, xs in systems:
        assert A.n > 100
        G, origin = seam._GridSPD.from_entries(A, ys, xs)
        at = (ys - origin[0], xs - origin[1])
        assert G.n == A.n and int(origin[0]) % 2 == 0 and int(origin[1]) % 2 == 0
        for dtype in (torch.float64, torch.float32):
            B, plain = G.astype(dtype), seam._SparseSPD(A.rows, A.cols, A.vals.to(dtype), A.diag.to(dtype))
            for _ in range(3):
                x = torch.randn(A.n, generator=g, dtype=torch.float64).to(dtype)
                x_map = torch.zeros_like(B.diag).index_put_(at, x)
                product = B @ x_map
                if dtype == torch.float64:
                    assert torch.equal(product[at], plain @ x)
                else:  # the multigrid's float32: fused multiply-adds may round once instead of twice
                    assert torch.allclose(product[at], plain @ x, rtol=1e-6, atol=1e-6)
                assert not bool(product[~G.mask].any())  # nothing leaks off the unknowns
        dense, flat = G.dense()
        order = torch.argsort((ys - origin[0]) * G.mask.shape[1] + (xs - origin[1]))  # row-major, as ``flat``
        assert torch.equal(dense, A.dense()[order][:, order])


def test_the_grid_multigrids_coarse_operator_is_the_galerkin_product():
    """The coarse level of the V-cycle is P^T A P for the 2x2 aggregates (piecewise-constant P)."""

    G, ys, xs, dense = _grid_operator_9x13(seed=3)
    coarse = G.coarsened()
    aggregate = (ys // 2) * 7 + xs // 2  # 5 x 7 aggregates
    P = torch.zeros(9 * 13, 35, dtype=torch.float64)
    P[torch.arange(9 * 13), aggregate] = 1.0
    expected = P.T @ dense @ P
    got, flat = coarse.dense()
    assert len(flat) == 35 and torch.allclose(got, expected, atol=1e-12)


def _grid_operator_9x13(seed: int):
    """A 9 x 13 grid system (:func:`_grid_system`) as the multigrid's maps: (the _GridSPD, each
    unknown's row and column, the dense matrix in the unknowns' order)."""
    import alignment.seam as seam

    rows, cols, vals, diag, _, dense = _grid_system(9, 13, seed=seed, shift=0.1)
    index = torch.randperm(9 * 13, generator=torch.Generator().manual_seed(seed))  # as _grid_system orders them
    yy, xx = torch.meshgrid(torch.arange(9), torch.arange(13), indexing="ij")
    ys, xs = torch.empty_like(index), torch.empty_like(index)
    ys[index], xs[index] = yy.reshape(-1), xx.reshape(-1)
    G, _ = seam._GridSPD.from_entries(seam._SparseSPD(rows, cols, vals, diag), ys, xs)
    return G, ys, xs, dense


def _grid_system(h: int, w: int, seed: int, shift: float):
    """A symmetric grid system as the seam correction builds it (random couplings between
    4-neighbours, diagonal = their sum + ``shift``), its unknowns in a random order: (rows,
    cols, vals, diag, b) and the dense matrix."""
    g = torch.Generator().manual_seed(seed)
    n = h * w
    index = torch.randperm(n, generator=g).reshape(h, w)
    a = torch.cat([index[:, :-1].reshape(-1), index[:-1, :].reshape(-1)])
    b = torch.cat([index[:, 1:].reshape(-1), index[1:, :].reshape(-1)])
    wgt = torch.rand(len(a), generator=g, dtype=torch.float64)
    rows, cols, vals = torch.cat([a, b]), torch.cat([b, a]), -torch.cat([wgt, wgt])
    diag = torch.zeros(n, dtype=torch.float64).index_add_(0, rows, -vals) + shift
    dense = torch.diag(diag)
    dense[rows, cols] = vals
    return rows, cols, vals, diag, torch.randn(n, generator=g, dtype=torch.float64), dense


@pytest.mark.parametrize("h,w,shift,banded", [
    (60, 12, 1e-3, True),     # a strip of hole pixels: a narrow band once reordered
    # a square: too wide a band (66 once reordered, over the band path's 64), sparse LU; no bigger than that,
    # as the dense reference solve costs n^3 (70 x 70: 2.9 s)
    (66, 66, 1e-3, False),
    (40, 8, -0.05, False),    # not positive definite: the band Cholesky fails, the LU solves it
])
def test_the_direct_sparse_solve_equals_a_dense_solve(h, w, shift, banded, monkeypatch):
    import scipy.linalg

    rows, cols, vals, diag, b, dense = _grid_system(h, w, seed=h + w, shift=shift)
    calls = []
    band_solve = scipy.linalg.solveh_banded

    def counted(*args, **kwargs):
        calls.append(1)
        return band_solve(*args, **kwargs)

    monkeypatch.setattr(kernels.sl, "solveh_banded", counted)
    x = kernels.sparse_direct_solve(rows, cols, vals, diag, b)
    expected = torch.linalg.solve(dense, b)
    assert float((x - expected).abs().max()) < 1e-9 * float(expected.abs().max())
    assert bool(calls) == (banded or shift < 0)  # the band path was tried (and failed on the indefinite one)


def _edged_hole(size: int, seed: int):
    """A seam problem with depth edges: a square hole over a scene of rectangles at different
    depths (their sides cut through the 2x2 aggregates at odd and even columns), known pixels
    around it; (log_ratio, known, hole, links)."""
    import alignment.seam as seam

    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    depth = 2.0 + 0.01 * torch.rand(size, size, generator=g, dtype=torch.float64)
    for y0, x0, y1, x1, d in ((5, 7, 60, 33, 1.0), (40, 51, 101, 90, 2.5), (70, 12, 120, 45, 0.7)):
        depth[y0:y1, x0:x1] += d
    hole = (yy >= 6) & (yy < size - 6) & (xx >= 5) & (xx < size - 7)
    known = ~hole
    log_ratio = 0.05 * torch.sin(xx / 9.0) + 0.03 * torch.randn(size, size, generator=g, dtype=torch.float64)
    return log_ratio.double(), known, hole, seam.edge_links(depth)


@pytest.mark.parametrize("with_links,decay", [(False, None), (False, 20.0), (True, 20.0), (True, None)])
def test_the_seam_system_built_as_maps_is_the_entries_system_to_the_bit(with_links, decay, monkeypatch):
    """Large seam systems are built directly as maps over the unknowns' box: the same diagonal,
    couplings and right-hand side, bit for bit, as the list of entries the direct solvers take."""
    import alignment.seam as seam

    log_ratio, known, hole, links = _edged_hole(72, seed=1)
    links = links if with_links else None
    systems = []
    monkeypatch.setattr(seam, "_solve_spd", lambda A, b, ys, xs: systems.append((A, b, ys, xs)) or torch.zeros_like(b))
    seam._seam_corrections(log_ratio, known, hole, [(decay, links)])
    (A, b, ys, xs), = systems
    ring = known & seam._adjacent4(hole)
    values = torch.zeros_like(log_ratio)
    values[ring] = seam._ring_median(torch.where(known, log_ratio, 0.0), ring, 2)
    unknown = kernels.regions_touching(hole, seam._adjacent4(ring) & hole)
    screen = 0.0 if decay is None else 1.0 / decay**2
    if links is not None:
        screen = max(screen, (0.1 / 72) ** 2)
    G, y0, x0, rhs = seam._grid_system(unknown, ring, values, screen, links)
    E, origin = seam._GridSPD.from_entries(A, ys, xs)
    assert (y0, x0) == tuple(origin.tolist())
    for a, e in ((G.diag, E.diag), (G.east, E.east), (G.south, E.south), (G.mask, E.mask)):
        assert torch.equal(a, e)
    at = (ys - y0, xs - x0)
    assert torch.equal(rhs[at], b) and not bool(rhs[~G.mask].any())


def test_the_edge_aware_multigrid_cg_agrees_with_a_direct_solve_in_fewer_iterations(monkeypatch):
    """Multigrid CG whose aggregates keep one side of each depth edge solves an edge-linked seam
    system to the direct solution (error below 1e-5 of the field's largest value; CG stops at a
    relative residual of 1e-6), in fewer iterations than with aggregates that straddle the edges
    (``_STRONG`` 0: every coupling counts as strong, the plain 2x2 blocks)."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as sla

    import alignment.seam as seam

    log_ratio, known, hole, links = _edged_hole(128, seed=2)
    entries = []
    with monkeypatch.context() as m:  # the system as entries, for a direct solve
        m.setattr(seam, "_solve_spd", lambda A, b, ys, xs: entries.append((A, b)) or torch.zeros_like(b))
        seam._seam_corrections(log_ratio, known, hole, [(20.0, links)])
    (A, b), = entries
    at = torch.arange(A.n)
    M = sp.csc_matrix((torch.cat([A.vals, A.diag]).numpy(), (torch.cat([A.rows, at]).numpy(),
                                                             torch.cat([A.cols, at]).numpy())), shape=(A.n, A.n))
    direct = torch.from_numpy(sla.spsolve(M, b.numpy()))
    ring = known & seam._adjacent4(hole)
    ys, xs = torch.nonzero(kernels.regions_touching(hole, seam._adjacent4(ring) & hole), as_tuple=True)

    monkeypatch.setattr(seam, "SPARSE_DIRECT_MAX", 0)  # multigrid CG even at this size
    cycles = []
    vcycle = seam._Multigrid.__call__
    monkeypatch.setattr(seam._Multigrid, "__call__", lambda self, r, **kw: cycles.append(1) or vcycle(self, r, **kw))
    iterations = {}
    edge_aware = seam._STRONG
    for strong in (edge_aware, 0.0):
        monkeypatch.setattr(seam, "_STRONG", strong)
        cycles.clear()
        field = seam._seam_corrections(log_ratio, known, hole, [(20.0, links)])[0]
        iterations[strong] = len(cycles)
        assert float((field[ys, xs] - direct).abs().max()) < 1e-5 * float(direct.abs().max())
    assert iterations[edge_aware] < iterations[0.0], iterations


def test_the_coarse_operator_of_aggregates_that_leave_pixels_out_is_the_galerkin_product():
    """With some unknowns left out of their aggregates (members), the coarse level is P^T A P for
    the piecewise-constant P whose rows are the members (the others' rows are 0)."""
    import alignment.seam as seam

    G, ys, xs, dense = _grid_operator_9x13(seed=4)
    members = seam._aggregate_members(G) & (torch.rand(9, 13, generator=torch.Generator().manual_seed(5)) < 0.8)
    coarse = G.restricted(members).coarsened()
    P = torch.zeros(9 * 13, 35, dtype=torch.float64)
    on = members[ys, xs]
    P[torch.arange(9 * 13)[on], ((ys // 2) * 7 + xs // 2)[on]] = 1.0
    expected = P.T @ dense @ P
    got, flat = coarse.dense()
    full = torch.zeros(35, 35, dtype=torch.float64)
    full[flat[:, None], flat[None, :]] = got
    assert torch.allclose(full, expected, atol=1e-12)


def test_the_median_of_nine_maps_is_torchs_median_exactly():
    """edge_links' 3x3 median by a sorting network: the value torch's median picks, at every pixel,
    with ties and every order of 9 values (random maps, and maps of few distinct values)."""
    import alignment.seam as seam

    g = torch.Generator().manual_seed(7)
    for maps in (torch.randn(9, 40, 30, generator=g, dtype=torch.float64),
                 torch.randint(0, 3, (9, 50, 50), generator=g).double()):
        assert torch.equal(seam._median9(list(maps)), maps.median(dim=0).values)


def _reference_vcycle(M, b, level=0):
    """The multigrid's V-cycle as it was written before its maps were buffered: fresh maps."""
    import torch.nn.functional as F

    import alignment.seam as seam

    if level == len(M.levels):
        x = torch.zeros(M.shape, dtype=torch.float64)
        x.view(-1)[M.at] = M.coarse(b.double().reshape(-1)[M.at])
        return x.float()
    A, w, members = M.levels[level]
    x = w * b
    x += w * (b - A @ x)
    h, wd = b.shape
    r = b - A @ x
    coarse = _reference_vcycle(M, seam._blocks(seam._even(r if members is None else r * members)), level + 1)
    x += (F.interpolate((seam._ALPHA * coarse)[None, None], scale_factor=2, mode="nearest")[0, 0, :h, :wd]
          * (A.mask if members is None else members))
    x += w * (b - A @ x)
    x += w * (b - A @ x)
    return x


def _reference_cg(G, b_map):
    """Multigrid-preconditioned CG as it was written before its maps were buffered."""
    import alignment.seam as seam

    M = seam._Multigrid(G)
    x = torch.zeros_like(b_map)
    r = b_map.clone()
    z = _reference_vcycle(M, r.float()).double()
    p = z.clone()
    rz = torch.sum(r * z)
    stop = seam._CG_RTOL * float(torch.linalg.vector_norm(b_map))
    for _ in range(seam._CG_MAXITER):
        Ap = G @ p
        alpha = rz / torch.sum(p * Ap)
        x += alpha * p
        r -= alpha * Ap
        if float(torch.linalg.vector_norm(r)) <= stop:
            return x
        z = _reference_vcycle(M, r.float()).double()
        rz_new = torch.sum(r * z)
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x


@pytest.mark.parametrize("size,with_links", [(128, True), (127, False), (101, True)])
def test_the_buffered_multigrid_cg_gives_the_fresh_maps_solution_to_the_bit(size, with_links, monkeypatch):
    """The multigrid and its CG write their maps into buffers kept across iterations (no fresh
    pages per map): the same operations in the same order, so the same solution to the bit as the
    code that made fresh maps (kept above as a reference), with edge links (aggregates that leave
    pixels out) and without, on boxes of odd and even sides."""
    import alignment.seam as seam

    log_ratio, known, hole, links = _edged_hole(size, seed=3)
    systems = []
    monkeypatch.setattr(seam, "SPARSE_DIRECT_MAX", 0)
    monkeypatch.setattr(seam, "_solve_grid", lambda G, b: systems.append((G, b)) or torch.zeros_like(b))
    seam._seam_corrections(log_ratio, known, hole, [(20.0, links if with_links else None)])
    monkeypatch.undo()
    (G, b), = systems
    M = seam._Multigrid(G)
    assert len(M.levels) >= 2  # a real V-cycle: several levels
    assert any(members is not None for _, _, members in M.levels) == with_links
    r = torch.randn(G.mask.shape, generator=torch.Generator().manual_seed(size), dtype=torch.float64) * G.mask
    assert torch.equal(M(r, out=torch.empty_like(r)), _reference_vcycle(M, r.float()).double())
    assert torch.equal(M(r), _reference_vcycle(M, r.float()).double())
    assert torch.equal(seam._solve_grid(G, b), _reference_cg(G, b))
