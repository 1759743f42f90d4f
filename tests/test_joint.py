"""Joint adjustment of per-view depth corrections (alignment.joint) on the procedural world."""

import math

import numpy as np
import pytest
import torch

import alignment.joint as joint_module
from alignment.fields import FieldBasis
from alignment.joint import bend_evidence, joint_log_corrections, view_disagreement
from alignment.trend import n_terms, polynomial_field
from dreamer.cameras import project_points, unproject_depth
from dreamer import Camera
from dreamer.cameras import DEFAULT_FOCAL_512, rotation_x, rotation_y
from dreamer.worlds import ProceduralWorld

SIZE = 64


@pytest.fixture(scope="module")
def world():
    return ProceduralWorld()


def cameras(moves):
    cams = []
    for yaw, pitch, forward in moves:
        c2w = torch.eye(4)
        c2w[:3, :3] = rotation_y(yaw) @ rotation_x(pitch)
        c2w[:3, 3] = c2w[:3, 2] * forward
        cams.append(Camera.from_focal(DEFAULT_FOCAL_512 * SIZE / 512, SIZE, SIZE, c2w))
    return cams


def distorted_logs(world, cams, seed):
    """log z-depth of each camera minus a random quadratic (view 0 exact): the true corrections
    are then exactly representable, and the fit must find them."""
    g = torch.Generator().manual_seed(seed)
    truth = torch.zeros(len(cams), n_terms(2), dtype=torch.float64)
    truth[1:] = (torch.rand(len(cams) - 1, n_terms(2), generator=g, dtype=torch.float64) - 0.5) * 0.2
    truth[1:, 0] += torch.linspace(-0.5, 0.5, len(cams) - 1, dtype=torch.float64)  # unknown scales
    logs = [torch.log(world.depth(c).double()) - polynomial_field(truth[k], 2, SIZE, SIZE)
            for k, c in enumerate(cams)]
    return logs, truth


def fit(cams, logs, init, **kw):
    K = torch.stack([c.K for c in cams])
    c2w = torch.stack([c.c2w for c in cams])
    valid = [torch.ones(SIZE, SIZE, dtype=torch.bool) for _ in cams]
    kw.setdefault("basis", FieldBasis("poly", 2))
    return joint_log_corrections(logs, valid, K, c2w, init, [k == 0 for k in range(len(cams))], **kw)


def seen_by_others(world, cams, margin=3):
    """Per camera, bool [SIZE,SIZE]: the pixels whose surface point another camera sees (inside
    its image by ``margin`` pixels, not hidden), eroded by ``margin`` pixels."""
    out = []
    for k, c in enumerate(cams):
        xyz = unproject_depth(world.depth(c), c).reshape(-1, 3)
        seen = torch.zeros(SIZE * SIZE, dtype=torch.bool)
        for j, o in enumerate(cams):
            if j != k:
                uv, z = project_points(xyz, o)
                inside = (z > 0) & (uv >= margin).all(1) & (uv < SIZE - margin).all(1)
                u, v = uv[inside].long().T
                visible = torch.zeros_like(inside)
                visible[inside] = (z[inside] - world.depth(o)[v, u]).abs() < 0.02 * z[inside]
                seen |= visible
        seen = seen.reshape(SIZE, SIZE).float()
        eroded = -torch.nn.functional.max_pool2d(-seen[None, None], 2 * margin + 1, stride=1, padding=margin)[0, 0]
        out.append(eroded > 0.5)
    return out


def field_error(result, truth, support=None):
    """Largest error of the fitted fields, on the pixels another view sees (all pixels if None)."""
    errs = []
    for k in range(len(truth)):
        e = (result.field(k, SIZE, SIZE) - polynomial_field(truth[k], 2, SIZE, SIZE)).abs()
        errs.append(float(e.max() if support is None else e[support[k]].max()))
    return max(errs)


@pytest.mark.parametrize("moves", [
    [(0, 0, 0), (20, 0, 0), (40, 0, 0), (-20, 0, 0), (10, 20, 0)],          # rotations (a chain and a loop)
    [(0, 0, 0), (0, 0, 0.3), (0, 0, 0.6), (8, 0, 0.45)],                     # a dolly: depth-dependent parallax
])
def test_recovers_exact_corrections_from_a_wrong_start(world, moves):
    cams = cameras(moves)
    logs, truth = distorted_logs(world, cams, seed=len(moves))
    init = torch.zeros_like(truth)
    before = field_error(type("R", (), {"field": lambda self, k, h, w: polynomial_field(init[k], 2, h, w)})(), truth)
    result = fit(cams, logs, init, iterations=8)
    assert before > 0.2
    assert field_error(result, truth, seen_by_others(world, cams)) < 5e-3
    assert torch.equal(result.coeffs[0], init[0])  # the gauge does not move
    assert result.residual_after < 0.1 * result.residual_before
    assert all(result.accepted[1:]) and not result.accepted[0]
    ok = torch.isfinite(result.agreement_before)
    assert bool((result.agreement_after[ok] <= result.agreement_before[ok]).all())


def test_the_fixed_view_sets_the_scale(world):
    """Views that only overlap each other keep the scale of the fixed view they chain to."""
    cams = cameras([(0, 0, 0), (20, 0, 0), (40, 0, 0)])
    logs, truth = distorted_logs(world, cams, seed=0)
    logs[0] = logs[0] + math.log(2.0)  # the gauge view's depth is twice the world's
    result = fit(cams, logs, torch.zeros_like(truth), iterations=8)
    shifted = truth.clone()
    shifted[1:, 0] += math.log(2.0)
    assert field_error(result, shifted, seen_by_others(world, cams)) < 5e-3


def test_bad_input_is_refused(world):
    cams = cameras([(0, 0, 0), (20, 0, 0)])
    logs, truth = distorted_logs(world, cams, seed=0)
    K = torch.stack([c.K for c in cams])
    c2w = torch.stack([c.c2w for c in cams])
    valid = [torch.ones(SIZE, SIZE, dtype=torch.bool)] * 2
    with pytest.raises(ValueError, match="fixed"):
        joint_log_corrections(logs, valid, K, c2w, truth, [False, False])
    with pytest.raises(ValueError, match="init must be"):
        joint_log_corrections(logs, valid, K, c2w, truth[:, :3], [True, False])
    with pytest.raises(ValueError, match="distortion"):
        joint_log_corrections(logs, valid, K, c2w, truth, [True, False], distortion=0.0)
    with pytest.raises(ValueError, match="K must be"):
        joint_log_corrections(logs, valid, K[:1], c2w, truth, [True, False])
    bad = [logs[0], logs[1].clone()]
    bad[1][3, 3] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        joint_log_corrections(bad, valid, K, c2w, truth, [True, False])
    masked = [valid[0], valid[1].clone()]
    masked[1][3, 3] = False  # a value no one reads may be anything
    joint_log_corrections(bad, masked, K, c2w, truth, [True, False])


def test_a_view_whose_disagreement_would_grow_keeps_its_start():
    """Started at the truth, a refit on noisy depths can only move views by noise; any view whose
    whole-image disagreement would grow is reset and the others refitted: none gets worse."""
    cams = cameras([(0, 0, 0), (20, 0, 0), (40, 0, 0), (-20, 0, 0)])
    logs, truth = distorted_logs(world := ProceduralWorld(), cams, seed=2)
    g = torch.Generator().manual_seed(5)
    noisy = [x + 0.01 * torch.randn(x.shape, generator=g, dtype=x.dtype) for x in logs]
    result = fit(cams, noisy, truth.clone(), iterations=3)
    ok = torch.isfinite(result.agreement_before)
    assert ok[1:].all()
    assert bool((result.agreement_after[ok] <= result.agreement_before[ok]).all())
    for k, accepted in enumerate(result.accepted):
        if not accepted:
            assert torch.equal(result.coeffs[k], truth[k])


def test_whole_image_disagreement_counts_every_seen_pixel(world):
    cams = cameras([(0, 0, 0), (20, 0, 0)])
    logs = [torch.log(world.depth(c).double()) for c in cams]
    valid = [torch.ones(SIZE, SIZE, dtype=torch.bool)] * 2
    K, c2w = torch.stack([c.K for c in cams]), torch.stack([c.c2w for c in cams])
    zero = [torch.zeros(SIZE, SIZE, dtype=torch.float64)] * 2
    exact = view_disagreement(logs, valid, K, c2w, zero)
    assert float(exact.max()) < 2e-3  # the true depths agree
    off = view_disagreement(logs, valid, K, c2w, [zero[0], zero[1] + 0.05])
    assert torch.allclose(off, torch.full((2,), 0.05, dtype=torch.float64), atol=3e-3)


def test_a_round_that_loses_every_pair_ends_the_fit(world, monkeypatch):
    """If the views stop overlapping during the fit (nothing lands in another view), the fit
    stops with what it has instead of failing. A dolly: translating cameras are projected again
    for the second fit (with the estimated prior), and that projection loses every pair."""
    cams = cameras([(0, 0, 0), (0, 0, 0.3), (8, 0, 0.45)])
    logs, truth = distorted_logs(world, cams, seed=1)
    real = joint_module._Views.project_pairs
    calls = {"n": 0}

    def project(self, log_z, kp, jp):
        calls["n"] += 1
        out = real(self, log_z, kp, jp)
        if calls["n"] > 1:  # after the first linearization: every point falls outside
            return out[:-1] + (torch.zeros_like(out[-1]),)
        return out

    monkeypatch.setattr(joint_module._Views, "project_pairs", project)
    result = fit(cams, logs, torch.zeros_like(truth))
    assert calls["n"] > 1
    assert 0 < result.rounds <= 5  # the first fit ran; the second had no pair left
    assert result.samples == 0 and math.isnan(result.residual_after)
    assert bool(torch.isfinite(result.coeffs).all())


def test_spline_basis_is_a_partition_of_unity_and_local():
    b = FieldBasis("spline", 6)
    ones = torch.from_numpy(b.constant())
    assert torch.allclose(b.field(ones, 40, 50), torch.ones(40, 50, dtype=torch.float64))
    c = torch.zeros(36, dtype=torch.float64)
    c[7] = 1.0  # the control point at the image's top left corner
    f = b.field(c, 60, 60)
    assert float(f[:5, :5].max()) > 0.3 and float(f[45:, :].abs().max()) == 0.0 == float(f[:, 45:].abs().max())
    xs = torch.rand(50, dtype=torch.float64) * 2 - 1
    ys = torch.rand(50, dtype=torch.float64) * 2 - 1
    sums = torch.from_numpy(b.matrix(xs.numpy(), ys.numpy())).sum(1)
    assert torch.allclose(sums, torch.ones(50, dtype=torch.float64))
    P = torch.from_numpy(b.prior_precision(0.05, 1.0))
    level = torch.from_numpy(b.constant()) * 0.1
    wiggle = torch.zeros(36, dtype=torch.float64)
    wiggle[14] = 0.1
    assert float(level @ P @ level) < 0.1 * float(wiggle @ P @ wiggle)  # a level is cheap, a wiggle is not
    with pytest.raises(ValueError):
        FieldBasis("spline", 3)


@pytest.mark.parametrize("size", [4, 6, 9])
def test_a_splines_local_window_holds_its_whole_basis_row(size):
    """``local_matrix`` (the joint fit's Jacobian rows) scattered at its windows is ``matrix`` to
    the bit: inside the image, at its edges and beyond them (where the window moves inside the
    grid and kernels off the grid are dropped)."""
    b = FieldBasis("spline", size)
    g = torch.Generator().manual_seed(4)
    t = torch.cat([torch.rand(400, generator=g, dtype=torch.float64) * 2 - 1,
                   torch.tensor([-1.0, 1.0, -0.999999, 0.999999, -1.3, 1.3, 0.0], dtype=torch.float64)])
    x, y = t.numpy(), t.flip(0).numpy()
    values, first = b.local_matrix(x, y)
    assert first.min() >= 0 and first.max() <= (size - 4) * (size + 1)  # the window stays on the grid
    quad = np.arange(4)
    window = (quad[:, None] * size + quad[None, :]).reshape(-1)
    dense = np.zeros((len(x), size * size))
    dense[np.arange(len(x))[:, None], first[:, None] + window] = values
    assert np.array_equal(dense, b.matrix(x, y))


@pytest.mark.parametrize("basis", [FieldBasis("poly", d) for d in range(4)] + [FieldBasis("spline", 6)])
def test_a_fields_map_is_its_basis_matrix_at_the_pixel_centres(basis):
    """``field`` (separable products) is ``matrix`` (one row per pixel) times the coefficients."""
    g = torch.Generator().manual_seed(2)
    c = torch.randn(basis.n_terms, generator=g, dtype=torch.float64)
    H, W = 37, 53
    ys = (torch.arange(H, dtype=torch.float64) + 0.5) / H * 2 - 1
    xs = (torch.arange(W, dtype=torch.float64) + 0.5) / W * 2 - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    expected = (torch.from_numpy(basis.matrix(gx.reshape(-1).numpy(), gy.reshape(-1).numpy())) @ c).reshape(H, W)
    assert torch.allclose(basis.field(c, H, W), expected, rtol=0, atol=1e-13)


@pytest.mark.parametrize("basis,moves", [
    (FieldBasis("poly", 2), [(0, 0, 0), (20, 0, 0), (40, 0, 0), (-20, 0, 0), (10, 20, 0)]),
    (FieldBasis("spline", 5), [(0, 0, 0), (20, 0, 0), (40, 0, 0), (-20, 0, 0)]),
    (FieldBasis("poly", 2), [(0, 0, 0), (0, 0, 0.3), (0, 0, 0.6), (8, 0, 0.45)]),
    (FieldBasis("spline", 6), [(0, 0, 0), (0, 0, 0.3), (0, 0, 0.6), (8, 0, 0.45)]),  # the refinement's spline
])
def test_the_batched_fit_gives_the_solution_of_the_pair_by_pair_reference(world, basis, moves):
    """tests/joint_reference.py is the fit as it was before it was batched (each pair of views
    projected and accumulated on its own, every row with a dense Jacobian over both views'
    coefficients; the fast fit accumulates groups of rows over the few coefficients they touch).
    On noisy, distorted depths with invalid pixels the fast fit must give the same solution:
    every view's field within 1e-6 in log depth, the same acceptance, the same disagreements."""
    import joint_reference

    cams = cameras(moves)
    logs, truth = distorted_logs(world, cams, seed=3)
    g = torch.Generator().manual_seed(7)
    logs = [x + 0.01 * torch.randn(x.shape, generator=g, dtype=x.dtype) for x in logs]
    valid = [torch.rand(SIZE, SIZE, generator=g) > 0.05 for _ in cams]
    K = torch.stack([c.K for c in cams])
    c2w = torch.stack([c.c2w for c in cams])
    init = torch.zeros(len(cams), basis.n_terms, dtype=torch.float64)
    fixed = [k == 0 for k in range(len(cams))]
    new = joint_log_corrections(logs, valid, K, c2w, init, fixed, basis=basis)
    ref = joint_reference.joint_log_corrections(logs, valid, K, c2w, init, fixed, basis=basis)
    assert new.accepted == ref.accepted and new.rounds == ref.rounds
    for k in range(len(cams)):
        assert float((new.field(k, SIZE, SIZE) - ref.field(k, SIZE, SIZE)).abs().max()) < 1e-6
    assert torch.allclose(new.agreement_after, ref.agreement_after, atol=1e-9, equal_nan=True)
    assert torch.allclose(new.agreement_before, ref.agreement_before, atol=1e-9, equal_nan=True)
    assert new.samples == ref.samples and abs(new.residual_after - ref.residual_after) < 1e-9
    assert abs(new.distortion - ref.distortion) < 1e-9
    fields = [0.02 * torch.randn(SIZE, SIZE, generator=g, dtype=torch.float64) for _ in cams]
    assert torch.allclose(view_disagreement(logs, valid, K, c2w, fields),
                          joint_reference.view_disagreement(logs, valid, K, c2w, fields), atol=1e-12, equal_nan=True)
    assert abs(bend_evidence(logs, valid, K, c2w) - joint_reference.bend_evidence(logs, valid, K, c2w)) < 1e-12


@pytest.mark.parametrize("cpu_kernels", [True, False])  # scipy's running maximum, torch's max-pool
@pytest.mark.parametrize("radius", [1, 3, 12])
def test_the_support_filter_marks_every_pixel_within_the_square_of_a_true_pixel(radius, cpu_kernels, monkeypatch):
    import alignment.kernels

    monkeypatch.setattr(alignment.kernels, "CPU_KERNELS", cpu_kernels)
    g = torch.Generator().manual_seed(radius)
    masks = torch.rand(3, 23, 31, generator=g) > 0.97
    masks[2] = False  # an empty view
    out = joint_module._max_filter(masks, radius)
    expected = torch.zeros_like(masks)
    for n, y, x in torch.nonzero(masks).tolist():  # each true pixel marks its square, clipped to the image
        expected[n, max(0, y - radius): y + radius + 1, max(0, x - radius): x + radius + 1] = True
    assert torch.equal(out, expected)


def test_the_disagreement_without_corrections_is_that_with_fields_of_zeros(world):
    """The fit measures its starting disagreement on the views' own maps when it starts from zero
    coefficients (no maps of the log-depths plus zero fields): the same numbers to the bit."""
    cams = cameras([(0, 0, 0), (20, 0, 0), (0, 0, 0.3), (10, 10, 0.2)])
    logs, _ = distorted_logs(world, cams, seed=5)
    valid = [torch.rand(SIZE, SIZE, generator=torch.Generator().manual_seed(k)) > 0.05 for k in range(len(cams))]
    views = joint_module._Views(logs, valid, torch.stack([c.K for c in cams]), torch.stack([c.c2w for c in cams]), 4096)
    zeros = [torch.zeros(SIZE, SIZE, dtype=torch.float64) for _ in cams]
    plain, with_zeros = joint_module._disagreement(views, None), joint_module._disagreement(views, zeros)
    assert int(torch.isfinite(plain).sum()) >= 3  # views that others see (NaN: none does)
    assert torch.equal(plain.isnan(), with_zeros.isnan())
    assert torch.equal(plain.nan_to_num(-1.0), with_zeros.nan_to_num(-1.0))


@pytest.mark.parametrize("corrected", [False, True])
def test_pair_samples_are_those_of_a_stack_of_every_views_maps(corrected):
    """Each view's maps are made in turn in one work map: the samples are, to the bit, those of one
    zero-padded stack of every view's maps (log-depth, plus its correction if any, and its central
    differences), on views of different sizes."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(6)
    shapes = [(40, 56), (48, 36), (48, 56)]
    logs = [torch.randn(s, generator=g, dtype=torch.float64) * 0.1 + 1.0 for s in shapes]
    valid = [torch.rand(s, generator=g) > 0.1 for s in shapes]
    K = torch.stack([torch.tensor([[50.0, 0, w / 2], [0, 50.0, h / 2], [0, 0, 1]], dtype=torch.float64)
                     for h, w in shapes])
    views = joint_module._Views(logs, valid, K, torch.eye(4, dtype=torch.float64).repeat(3, 1, 1), 500)
    extra = [torch.randn(s, generator=g, dtype=torch.float64) * 0.05 for s in shapes] if corrected else None
    jp = torch.tensor([0, 2, 1, 2, 0])
    u = torch.rand(5, 300, generator=g, dtype=torch.float64) * 60 - 2
    v = torch.rand(5, 300, generator=g, dtype=torch.float64) * 52 - 2
    stack = torch.zeros(3, 3, views.Hm, views.Wm, dtype=torch.float64)
    for j, (h, w) in enumerate(shapes):
        L = stack[j, 0, :h, :w]
        L.copy_(views.L_safe[j] + extra[j] if corrected else views.L_safe[j])
        joint_module._central_difference(L, stack[j, 1, :h, :w], 1)
        joint_module._central_difference(L, stack[j, 2, :h, :w], 0)
    grid = torch.stack([u / views.Wm * 2 - 1, v / views.Hm * 2 - 1], -1)
    expected = torch.stack([F.grid_sample(stack[j:j + 1], grid[p].reshape(1, -1, 1, 2), mode="bilinear",
                                          padding_mode="border", align_corners=False)[0, :, :, 0]
                            for p, j in enumerate(jp.tolist())])  # [pairs,3,n]
    for _ in range(2):  # and again, the work map holding the last view's maps
        smooth, Lj, gu, gv = views.sample_pairs(jp, u, v, extra)
        assert torch.equal(torch.stack([Lj, gu, gv], 1), expected)
        step = joint_module._EDGE_LOG_STEP
        assert torch.equal(smooth, (gu.abs() < step) & (gv.abs() < step))


def test_a_splines_windowed_residuals_are_those_of_its_dense_jacobian():
    """A spline's linearization keeps each row's Jacobian as its two 4 x 4 windows of control
    points; its residuals at other coefficients are those of the dense [rows, 2P] Jacobian (the
    windows scattered at their columns), up to the order of the sums (1e-14)."""
    g = torch.Generator().manual_seed(8)
    grid, n_views, pairs, rows = 6, 4, 5, 50
    P = grid * grid
    kp, jp = torch.tensor([0, 1, 2, 3, 1]), torch.tensor([1, 2, 3, 0, 3])
    corner = torch.randint(0, grid - 3, (pairs, rows, 2, 2), generator=g)  # window corners (row, column)
    first = corner[..., 0] * grid + corner[..., 1]  # [p,n,2]
    X = torch.randn(pairs, rows, 32, generator=g, dtype=torch.float64)
    r0 = torch.randn(pairs, rows, generator=g, dtype=torch.float64)
    ok = torch.ones(pairs, rows, dtype=torch.bool)
    theta0 = torch.randn(n_views, P, generator=g, dtype=torch.float64)
    links = joint_module._Links(kp, jp, torch.zeros(pairs, rows, dtype=torch.long), ok, r0, r0, r0, X, theta0,
                                first, grid)
    window = joint_module._window(grid)
    dense = torch.zeros(pairs, rows, 2 * P, dtype=torch.float64)
    dense.scatter_(2, first[:, :, :1] + window, X[:, :, :16])
    dense.scatter_(2, P + first[:, :, 1:] + window, X[:, :, 16:])
    theta = theta0 + 0.1 * torch.randn(n_views, P, generator=g, dtype=torch.float64)
    d = theta - theta0
    expected = r0 + torch.bmm(dense, torch.cat([d[kp], d[jp]], 1)[:, :, None])[:, :, 0]
    assert torch.allclose(links.residuals(theta), expected, rtol=0, atol=1e-14)
    assert torch.equal(links.residuals(theta0), r0)
