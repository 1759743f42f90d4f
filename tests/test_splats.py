"""Gaussian splats: the CPU rasterizer against a brute-force reference, gradients, masked
losses, the 3DGS .ply file, bad inputs."""

import math

import numpy as np
import pytest
import torch

import dreamer.splats.rasterizer as R
from dreamer.cameras import Camera, look_at
from dreamer.pointcloud import PointCloud
from dreamer.splats import Gaussians, rasterize
from dreamer.splats.gaussians import rgb_to_sh0, sh0_to_rgb
from dreamer.splats.losses import masked_l1, masked_psnr, masked_ssim
from dreamer.splats.reference import rasterize_reference


def random_scene(n, *, seed=0, degree=3, dtype=torch.float32, depth=3.0):
    """n Gaussians in front of a camera at the origin looking +z: varied sizes, shapes,
    opacities and SH colours, some behind the near plane or outside the view."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g) * torch.tensor([1.2, 1.2, 1.5]) + torch.tensor([0.0, 0.0, depth])
    quats = torch.randn(n, 4, generator=g)
    scales = torch.exp(torch.randn(n, 3, generator=g) * 0.6 - 2.0)
    opacities = torch.sigmoid(torch.randn(n, generator=g) * 2 + 1.5)
    sh = torch.randn(n, (degree + 1) ** 2, 3, generator=g) * 0.3
    return [t.to(dtype) for t in (means, quats, scales, opacities, sh)]


def _cameras():
    plain = Camera.from_fov(60.0, 64, 64)
    K = torch.tensor([[70.0, 0.0, 30.0], [0.0, 66.0, 35.0], [0.0, 0.0, 1.0]])
    posed = Camera(K, look_at(torch.tensor([0.6, -0.3, -0.5]), torch.tensor([0.0, 0.0, 3.0])), 64, 64)
    return {"plain": plain, "posed": posed}


# ------------------------------------------------------------------------------------------------
# Forward: CPU rasterizer vs brute force
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cam_name", ["plain", "posed"])
def test_cpu_rasterizer_matches_brute_force(dtype, cam_name):
    cam = _cameras()[cam_name]
    params = random_scene(500, seed=1, dtype=dtype)
    out = rasterize(*params, cam)
    ref = rasterize_reference(*params, cam)
    assert out.rgb.shape == (64, 64, 3) and out.depth.shape == (64, 64) and out.alpha.shape == (64, 64)
    assert out.rgb.dtype == dtype
    assert float(ref[2].max()) > 0.99 and float(ref[2].min()) < 0.9  # opaque and thin regions both present
    for got, want, name in zip((out.rgb, out.depth, out.alpha), ref, ("rgb", "depth", "alpha")):
        err = float((got.double() - want).abs().max())
        assert err <= 1e-5, f"{name}: max error {err:.3g}"


def test_rasterizer_rules_are_exercised():
    """The scene of the brute-force test hits gsplat's transmittance cut-off and alpha threshold:
    switching either rule off changes the image (so the comparison above tests them)."""
    cam = _cameras()["plain"]
    params = random_scene(500, seed=1, dtype=torch.float64)
    base = rasterize(*params, cam).rgb
    from dreamer.splats import tiles

    for name, value in (("TRANSMITTANCE_MIN", 1e-300), ("ALPHA_THRESHOLD", 1e-6)):
        old = getattr(R, name)
        for module in (R, tiles):  # the culling reads the rasterizer's, the compositing the tiles'
            setattr(module, name, value)
        try:
            changed = rasterize(*params, cam).rgb
        finally:
            for module in (R, tiles):
                setattr(module, name, old)
        assert float((changed - base).abs().max()) > 1e-4, name


@pytest.mark.parametrize("degree", [0, 1, 2])
def test_sh_degrees_match_brute_force(degree):
    cam = _cameras()["posed"]
    params = random_scene(200, seed=degree + 5, degree=3, dtype=torch.float64)
    out = rasterize(*params, cam, sh_degree=degree)
    ref = rasterize_reference(*params, cam, sh_degree=degree)
    assert float((out.rgb - ref[0]).abs().max()) < 1e-9


def test_sh_degree_one_is_view_dependent_by_hand():
    """One big opaque Gaussian straight ahead: degree-1 SH colour = 0.5 + C0 sh0 - C1 y sh1 + C1 z sh2 - C1 x sh3
    with the view direction (x, y, z) = (0, 0, 1) from the camera to the mean."""
    cam = Camera.from_fov(60.0, 9, 9)
    sh = torch.zeros(1, 4, 3, dtype=torch.float64)
    sh[0, 0] = torch.tensor([0.1, -0.2, 0.3])
    sh[0, 2] = torch.tensor([0.4, 0.1, -0.3])  # the z basis function
    sh[0, 1] = torch.tensor([1.0, 1.0, 1.0])  # y: zero along the axis
    means = torch.tensor([[0.0, 0.0, 2.0]], dtype=torch.float64)
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    out = rasterize(means, quats, torch.full((1, 3), 5.0, dtype=torch.float64),
                    torch.tensor([0.99], dtype=torch.float64), sh, cam)
    c0, c1 = 0.28209479177387814, 0.4886025119029199
    want = 0.5 + c0 * sh[0, 0] + c1 * sh[0, 2]
    centre = out.rgb[4, 4] / out.alpha[4, 4]
    assert torch.allclose(centre, want, atol=1e-9)


def test_bands_give_the_same_image():
    """Cutting the image into bands (memory bound) changes nothing."""
    cam = _cameras()["plain"]
    params = random_scene(300, seed=3)
    a = rasterize(*params, cam)
    b = rasterize(*params, cam, max_pairs=500)
    assert a.info["n_pairs"] == b.info["n_pairs"]
    for x, y in ((a.rgb, b.rgb), (a.alpha, b.alpha), (a.depth, b.depth)):
        assert torch.allclose(x, y, atol=1e-6, rtol=0)


def test_nothing_visible_renders_black():
    cam = _cameras()["plain"]
    means, quats, scales, op, sh = random_scene(10, seed=0)
    means = means - torch.tensor([0.0, 0.0, 10.0])  # all behind the camera
    out = rasterize(means, quats, scales, op, sh, cam)
    assert out.rgb.abs().max() == 0 and out.alpha.abs().max() == 0 and out.info["n_pairs"] == 0
    assert (out.info["radii"] == 0).all()


def test_info_has_what_default_strategy_needs():
    cam = _cameras()["plain"]
    params = [t.requires_grad_(True) for t in random_scene(100, seed=2)]
    out = rasterize(*params, cam)
    info = out.info
    for key in ("means2d", "radii", "width", "height", "n_cameras", "gaussian_ids"):
        assert key in info
    assert info["means2d"].shape == (1, 100, 2) and info["radii"].shape == (1, 100, 2)
    assert info["width"] == 64 and info["height"] == 64 and info["n_cameras"] == 1
    info["means2d"].retain_grad()
    out.rgb.sum().backward()
    g = info["means2d"].grad
    drawn = (info["radii"][0] > 0).all(-1)
    assert torch.isfinite(g).all() and g[0, drawn].abs().sum() > 0
    assert (g[0, ~drawn] == 0).all()


# ------------------------------------------------------------------------------------------------
# Gradients
# ------------------------------------------------------------------------------------------------
def test_gradients_match_finite_differences():
    """float64 gradcheck of a random projection of rgb, depth and alpha w.r.t. every parameter."""
    cam = Camera.from_fov(60.0, 16, 12)
    means, quats, scales, op, sh = random_scene(8, seed=2, degree=1, dtype=torch.float64)
    means[:, 2] = 3.0 + torch.linspace(-0.5, 0.5, 8, dtype=torch.float64)
    scales = scales * 4
    g = torch.Generator().manual_seed(0)
    w_rgb, w_d, w_a = (torch.randn(*s, generator=g, dtype=torch.float64) for s in ((12, 16, 3), (12, 16), (12, 16)))

    def f(m, q, s, o, c):
        out = rasterize(m, q, s, o, c, cam)
        return (out.rgb * w_rgb).sum() + 0.1 * (out.depth * w_d).sum() + (out.alpha * w_a).sum()

    inputs = [t.clone().requires_grad_(True) for t in (means, quats, scales, op, sh)]
    assert rasterize(*inputs, cam).info["n_pairs"] > 300
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_analytic_backward_matches_autograd():
    """The hand-written compositing backward equals plain autograd on a 300-Gaussian scene."""
    cam = Camera.from_fov(60.0, 64, 48)
    base = random_scene(300, seed=4, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    w_rgb, w_d, w_a = (torch.randn(*s, generator=g, dtype=torch.float64) for s in ((48, 64, 3), (48, 64), (48, 64)))
    grads = []
    for analytic in (True, False):
        params = [t.clone().requires_grad_(True) for t in base]
        out = rasterize(*params, cam, analytic_backward=analytic)
        out.info["means2d"].retain_grad()
        ((out.rgb * w_rgb).sum() + 0.1 * (out.depth * w_d).sum() + (out.alpha * w_a).sum()).backward()
        grads.append([p.grad for p in params] + [out.info["means2d"].grad])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-9)


def test_float32_gradients_are_finite():
    cam = _cameras()["posed"]
    params = [t.requires_grad_(True) for t in random_scene(500, seed=6)]
    out = rasterize(*params, cam)
    (out.rgb.mean() + out.depth.mean() + out.alpha.mean()).backward()
    for p in params:
        assert torch.isfinite(p.grad).all()
    assert params[0].grad.abs().sum() > 0


def _scene_with_gaussians_on_the_camera_plane(dtype=torch.float32):
    """Three visible Gaussians and three beside the camera whose centres lie on its plane: camera
    z exactly 0, z = 1e-30 (z^2 underflows to 0 in float32) and z = -0.0. None of them is drawn
    (z <= near plane), but gsplat's pure-torch projection divides by z and z^2."""
    means = torch.tensor([[0.0, 0.0, 2.0], [0.3, -0.2, 2.5], [-0.4, 0.1, 3.0],
                          [2.7, 1.7, 0.0], [-2.0, 0.5, 1e-30], [1.0, -3.0, -0.0]], dtype=dtype)
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.9, 0.1, -0.2, 0.3], [0.5, 0.5, 0.1, -0.4]] * 2, dtype=dtype)
    scales = torch.tensor([[0.2, 0.1, 0.15], [0.05, 0.3, 0.1], [0.1, 0.1, 0.1]] * 2, dtype=dtype)
    opacities = torch.tensor([0.8, 0.6, 0.9, 0.7, 0.5, 0.9], dtype=dtype)
    sh = torch.linspace(-1, 1, 6 * 4 * 3, dtype=dtype).reshape(6, 4, 3)
    return [means, quats, scales, opacities, sh]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gaussians_on_the_camera_plane_get_zero_not_nan_gradients(dtype):
    """Regression: a Gaussian whose centre sits on the camera plane (z = 0 in camera space; in
    float32 a real scene gets there by rounding) made every gradient of that Gaussian NaN
    (0 * inf in the projection's backward), and one Adam step made its parameters NaN (the
    training run on a dreamed scene failed with 'Gaussians.means has non-finite values')."""
    cam = Camera.from_fov(60.0, 32, 24)  # at the origin: camera z = world z, exactly
    params = [t.clone().requires_grad_(True) for t in _scene_with_gaussians_on_the_camera_plane(dtype)]
    out = rasterize(*params, cam, sh_degree=1)
    out.info["means2d"].retain_grad()
    assert out.info["n_pairs"] > 0
    assert (out.info["radii"][0, 3:] == 0).all() and (out.info["radii"][0, :3] > 0).all()
    (out.rgb.sum() + out.depth.mean() + out.alpha.sum()).backward()
    for name, p in zip(("means", "quats", "scales", "opacities", "sh"), params):
        assert torch.isfinite(p.grad).all(), name
        assert (p.grad[3:] == 0).all(), name  # not drawn: no gradient
        assert p.grad[:3].abs().sum() > 0, name
    assert torch.isfinite(out.info["means2d"].grad).all()
    opt = torch.optim.Adam(params, lr=1e-3)
    opt.step()
    assert all(torch.isfinite(p).all() for p in params)


def test_frustum_cull_before_projection_changes_nothing(monkeypatch):
    """The conservative cull before the projection drops only Gaussians that are not drawn: a
    scene with big Gaussians beside, behind and around the view renders the same image, info
    and gradients as projecting every Gaussian."""
    cam = _cameras()["posed"]
    means, quats, scales, op, sh = random_scene(1500, seed=11, dtype=torch.float64)
    means = means * torch.tensor([3.0, 3.0, 2.0], dtype=torch.float64)  # many beside / behind the camera
    scales = scales * torch.exp(torch.linspace(-1, 2.5, 1500, dtype=torch.float64))[:, None]  # up to big
    g = torch.Generator().manual_seed(3)
    w = torch.randn(64, 64, 3, generator=g, dtype=torch.float64)

    def run():
        params = [t.clone().requires_grad_(True) for t in (means, quats, scales, op, sh)]
        out = rasterize(*params, cam)
        out.info["means2d"].retain_grad()
        ((out.rgb * w).sum() + out.depth.mean() + out.alpha.sum()).backward()
        return out, [p.grad for p in params] + [out.info["means2d"].grad]

    culled, grads = run()
    n = means.shape[0]
    assert 0 < culled.info["n_projected"] < n * 0.7  # the cull is doing something
    everything = R._candidates

    def keep_all(means, *args):
        _, z = everything(means, *args)
        return torch.arange(means.shape[0]), z

    monkeypatch.setattr(R, "_candidates", keep_all)
    full, grads_full = run()
    assert full.info["n_projected"] == n
    assert culled.info["n_pairs"] == full.info["n_pairs"] > 1000
    assert torch.equal(culled.info["radii"], full.info["radii"])
    for a, b in ((culled.rgb, full.rgb), (culled.depth, full.depth), (culled.alpha, full.alpha)):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)
    for a, b in zip(grads, grads_full):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)


def test_reach_holds_every_pixel_above_the_alpha_threshold():
    """_reach2 (the squared distance beyond which a Gaussian's alpha is below 1/255, used to leave
    tiles out of its list) against alpha at random offsets: no offset beyond the reach gets
    alpha >= 1/255, and for round footprints the reach is the exact threshold radius (plus the
    1% margin in alpha)."""
    from dreamer.splats.tiles import ALPHA_THRESHOLD, _reach2

    g = torch.Generator().manual_seed(7)
    m = 4000
    L = torch.randn(m, 2, 2, generator=g, dtype=torch.float64) * torch.exp(torch.rand(m, 1, 1, generator=g,
                                                                                   dtype=torch.float64) * 2 - 0.5)
    cov = L @ L.transpose(1, 2) + 0.3 * torch.eye(2, dtype=torch.float64)
    inv = torch.linalg.inv(cov)
    op = torch.rand(m, generator=g, dtype=torch.float64) * 0.99 + 0.005
    geo = torch.cat([torch.zeros(m, 2, dtype=torch.float64), inv[:, 0, 0, None], inv[:, 0, 1, None],
                     inv[:, 1, 1, None], op[:, None]], 1)
    reach2 = _reach2(geo)
    d = torch.randn(m, 256, 2, generator=g, dtype=torch.float64) * reach2.sqrt()[:, None, None] * 0.6
    sigma = 0.5 * (inv[:, None, 0, 0] * d[..., 0] ** 2 + inv[:, None, 1, 1] * d[..., 1] ** 2) \
        + inv[:, None, 0, 1] * d[..., 0] * d[..., 1]
    alpha = op[:, None] * torch.exp(-sigma)
    beyond = (d * d).sum(-1) > reach2[:, None]
    assert beyond.float().mean() > 0.1  # the offsets do reach beyond
    assert not (beyond & (alpha >= ALPHA_THRESHOLD)).any()
    # A round footprint (conic a = c, b = 0): alpha = 1/255 exactly at the reach, but for the margin.
    round_geo = torch.tensor([[0.0, 0.0, 0.5, 0.0, 0.5, 0.8]], dtype=torch.float64)
    r2 = float(_reach2(round_geo))
    assert 0.8 * math.exp(-0.25 * r2) == pytest.approx(ALPHA_THRESHOLD * math.exp(-0.01), rel=1e-12)


def test_tile_cull_changes_nothing(monkeypatch):
    """Rasterizing with the per-tile reach test and without it (every tile of each box listed)
    gives the same image, pair count and gradients, with fewer (tile, Gaussian) entries."""
    from dreamer.splats import tiles

    cam = _cameras()["posed"]
    base = random_scene(800, seed=12, dtype=torch.float64)
    g = torch.Generator().manual_seed(5)
    w = torch.randn(64, 64, 3, generator=g, dtype=torch.float64)
    runs = []
    lists = []

    def spy(*args, cull):
        out = tiles._tile_lists(*args) if cull else tiles._tile_lists(*args[:7])  # no geo: no cull
        lists.append(len(out.ids))
        return out

    for cull in (True, False):
        monkeypatch.setattr(R, "_tile_lists", lambda *args, cull=cull: spy(*args, cull=cull))
        params = [t.clone().requires_grad_(True) for t in base]
        out = rasterize(*params, cam)
        out.info["means2d"].retain_grad()
        ((out.rgb * w).sum() + out.depth.mean() + out.alpha.sum()).backward()
        runs.append((out, [p.grad for p in params] + [out.info["means2d"].grad], lists[-1]))
    (a, ga, na), (b, gb, nb) = runs
    assert na < 0.97 * nb  # the test drops entries (few: most of these Gaussians are elongated)
    assert a.info["n_pairs"] == b.info["n_pairs"] > 10000
    for x, y in ((a.rgb, b.rgb), (a.depth, b.depth), (a.alpha, b.alpha)):
        assert torch.allclose(x, y, rtol=0, atol=1e-12)
    for x, y in zip(ga, gb):
        assert torch.allclose(x, y, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# Masked losses
# ------------------------------------------------------------------------------------------------
def test_masked_pixels_get_exactly_zero_gradient():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(40, 48, 3, generator=g)
    pred = torch.rand(40, 48, 3, generator=g).requires_grad_(True)
    mask = torch.rand(40, 48, generator=g) > 0.4
    mask[:, :10] = False  # a big hole too
    loss = 0.8 * masked_l1(pred, target, mask) + 0.2 * (1 - masked_ssim(pred, target, mask))
    loss.backward()
    assert (pred.grad[~mask] == 0).all()
    assert pred.grad[mask].abs().sum() > 0


def test_masked_losses_ignore_what_is_outside_the_mask():
    g = torch.Generator().manual_seed(1)
    target = torch.rand(32, 32, 3, generator=g)
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[8:24, 8:24] = True
    pred = target.clone()
    pred[~mask] = 0.0  # garbage where the mask is off: no effect
    assert float(masked_l1(pred, target, mask)) == 0.0
    assert abs(float(masked_ssim(pred, target, mask)) - 1.0) < 1e-5
    assert masked_psnr(pred, target, mask) == math.inf
    assert float(masked_ssim(pred, target)) < 0.9  # unmasked, the garbage counts


def test_ssim_is_the_usual_one_inside_the_image():
    """Away from the borders (no normalization at work) the masked SSIM map equals the classic
    Gaussian-window SSIM."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(2)
    x = torch.rand(40, 40, 3, generator=g, dtype=torch.float64)
    y = (x + 0.1 * torch.randn(40, 40, 3, generator=g, dtype=torch.float64)).clamp(0, 1)
    _, smap = masked_ssim(x, y, return_map=True)
    k = torch.arange(11, dtype=torch.float64) - 5
    w1 = torch.exp(-k**2 / (2 * 1.5**2))
    w1 /= w1.sum()
    w2 = (w1[:, None] * w1[None, :]).expand(3, 1, 11, 11)
    X, Y = x.permute(2, 0, 1)[None], y.permute(2, 0, 1)[None]

    def blur(t):
        return F.conv2d(t, w2, groups=3)

    mx, my = blur(X), blur(Y)
    vx, vy, cxy = blur(X * X) - mx**2, blur(Y * Y) - my**2, blur(X * Y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    ref = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    assert torch.allclose(smap[5:-5, 5:-5].permute(2, 0, 1), ref[0], atol=1e-10)


# ------------------------------------------------------------------------------------------------
# Gaussians, initialization, .ply
# ------------------------------------------------------------------------------------------------
def _cloud(n=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    return PointCloud(torch.randn(n, 3, generator=g) + torch.tensor([0.0, 0.0, 3.0]), torch.rand(n, 3, generator=g),
                      torch.rand(n, generator=g) * 0.01 + 0.001)


def _random_gaussians(n=64, degree=3, seed=0):
    g = Gaussians.from_points(_cloud(n, seed), sh_degree=degree)
    gen = torch.Generator().manual_seed(seed + 1)
    return Gaussians(g.means, torch.randn(n, 4, generator=gen), torch.randn(n, 3, generator=gen) - 4,
                     torch.randn(n, generator=gen), torch.randn(n, 1, 3, generator=gen),
                     torch.randn(n, g.shN.shape[1], 3, generator=gen) * 0.2)


def _same(a: Gaussians, b: Gaussians) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.params().values(), b.params().values()))


def test_init_from_points():
    pc = _cloud(30)
    g = Gaussians.from_points(pc, sh_degree=2, opacity=0.5, scale_mult=1.0)
    assert len(g) == 30 and g.sh_degree == 2 and g.shN.shape == (30, 8, 3)
    assert torch.equal(g.means, pc.xyz)
    assert torch.allclose(g.scales, pc.radius[:, None].expand(30, 3), rtol=1e-6)
    assert torch.allclose(g.opacities, torch.full((30,), 0.5))
    assert torch.allclose(sh0_to_rgb(g.sh0[:, 0]), pc.rgb, atol=1e-6)
    assert torch.allclose(rgb_to_sh0(sh0_to_rgb(g.sh0)), g.sh0, atol=1e-6)
    # Degree 0 renders the point colour: a big opaque Gaussian straight ahead.
    one = Gaussians.from_points(PointCloud(torch.tensor([[0.0, 0.0, 2.0]]), torch.tensor([[0.2, 0.6, 0.9]]),
                                           torch.tensor([1.0])), opacity=0.99)
    rgb, depth, alpha = one.render(Camera.from_fov(40.0, 8, 8))
    assert torch.allclose(rgb[4, 4] / alpha[4, 4], torch.tensor([0.2, 0.6, 0.9]), atol=1e-5)
    assert abs(float(depth[4, 4]) - 2.0) < 1e-5


def _wall(n=64, rgb=None):
    """A wall 3 m wide at z = 3 lifted at n x n (radius = point spacing 3/n), facing the origin."""
    v, u = torch.meshgrid(torch.arange(n) + 0.5, torch.arange(n) + 0.5, indexing="ij")
    xyz = torch.stack([u / n * 3 - 1.5, v / n * 3 - 1.5, torch.full_like(u, 3.0)], -1).reshape(-1, 3)
    if rgb is None:
        rgb = torch.rand(n * n, 3, generator=torch.Generator().manual_seed(0))
    return PointCloud(xyz, rgb, torch.full((n * n,), 3.0 / n))


def _select(points, keep):
    return PointCloud(points.xyz[keep], points.rgb[keep], points.radius[keep])


def test_merge_points_on_grid():
    """A wall lifted at 64x64 (footprint 3/64): cells of one to two footprints hold one to four
    of its points; each merged point keeps the mean position and colour and the total area;
    points of another resolution level are never merged with them."""
    from dreamer.splats.gaussians import merge_points_on_grid

    n = 64
    wall = _wall(n)
    xyz, rgb = wall.xyz, wall.rgb
    merged = merge_points_on_grid(wall, 1.0)
    assert len(merged) == 48 * 48  # cells of side 2**ceil(log2(3/64)) = 1/16: 48 across the wall
    assert torch.allclose((merged.radius.double() ** 2).sum(), (wall.radius.double() ** 2).sum(), rtol=1e-6)
    assert torch.allclose(merged.xyz.double().mean(0), wall.xyz.double().mean(0), atol=1e-5)  # every weight counted
    assert torch.allclose(merged.xyz[:, 2], torch.full((len(merged),), 3.0))
    assert merged.rgb.min() >= rgb.min() - 1e-6 and merged.rgb.max() <= rgb.max() + 1e-6
    # A finer copy of the wall (another level) merges only with itself.
    fine = PointCloud(xyz + 0.001, rgb, torch.full((n * n,), 1.0 / n))
    both = merge_points_on_grid(wall.cat(fine), 1.0)
    assert len(both) == len(merged) + len(merge_points_on_grid(fine, 1.0))
    assert merge_points_on_grid(wall, 0.0) is wall  # 0: one Gaussian per point
    assert len(merge_points_on_grid(wall, 4.0)) < len(merged)  # larger cells, fewer points


def test_flat_regions_merge_to_coarser_cells():
    """A flat-coloured wall (colours within the tolerance) merges to cells 2**k times the fine
    ones: a quarter of the points per level, the same total area and mean, and its Gaussians
    still cover the wall; a textured wall keeps exactly the fine merge; on a wall half flat,
    half textured only the flat half merges further, never across the seam, and keeps finer
    cells in a band one coarse cell wide beside the texture."""
    from dreamer.splats.gaussians import merge_points_on_grid

    g = torch.Generator().manual_seed(1)
    flat = _wall(rgb=torch.tensor([0.4, 0.5, 0.6]) + 0.015 * torch.rand(64 * 64, 3, generator=g))
    fine = merge_points_on_grid(flat, 1.0)
    assert len(fine) == 48 * 48
    for k, across in ((1, 24), (2, 12), (3, 6)):
        merged = merge_points_on_grid(flat, 1.0, flat_levels=k, flat_tolerance=0.04)
        assert len(merged) == across * across  # cells of 2**k / 16 m: 3 m / side across the wall
        assert torch.allclose((merged.radius.double() ** 2).sum(), (flat.radius.double() ** 2).sum(), rtol=1e-6)
        assert torch.allclose(merged.xyz.double().mean(0), flat.xyz.double().mean(0), atol=1e-5)
        assert torch.allclose(merged.rgb.mean(0), flat.rgb.mean(0), atol=1e-3)
    # Covering the same area: rendered head-on (a 90-degree view; the wall spans pixels 10-30,
    # 0.15 m each), the Gaussians of every level leave no gap on the wall and reach no further
    # than three of their cells (2**k / 16 m) beyond its edge.
    cam = Camera.from_fov(90.0, 40, 40)
    for k in (0, 1, 2):
        cloud = merge_points_on_grid(flat, 1.0, flat_levels=k, flat_tolerance=0.04)
        alpha = Gaussians.from_points(cloud, sh_degree=0, opacity=0.9).render(cam)[2]
        assert float(alpha[10:30, 10:30].min()) > 0.95
        beyond = math.ceil(3 * 2**k / 16 / 0.15)
        assert float(alpha[:, :10 - beyond].max()) < 0.1 and float(alpha[:, 30 + beyond:].max()) < 0.1

    textured = _wall()  # random colours: nothing agrees within 0.04
    plain = merge_points_on_grid(textured, 1.0)
    deep = merge_points_on_grid(textured, 1.0, flat_levels=3, flat_tolerance=0.04)
    for a, b in zip((plain.xyz, plain.rgb, plain.radius), (deep.xyz, deep.rgb, deep.radius)):
        assert torch.equal(a, b)

    left = flat.xyz[:, 0] < 0  # x = 0 is a cell boundary on every grid
    half = _wall(rgb=torch.where(left[:, None], flat.rgb, textured.rgb))
    merged = merge_points_on_grid(half, 1.0, flat_levels=2, flat_tolerance=0.04)
    on_left = merged.xyz[:, 0] < 0
    # The textured half as if merged alone (nothing mixes across the seam).
    alone = merge_points_on_grid(_select(half, ~left), 1.0)
    got = _select(merged, ~on_left)
    for a, b in zip((got.xyz, got.rgb, got.radius), (alone.xyz, alone.rgb, alone.radius)):
        assert torch.allclose(a, b, atol=1e-6)
    # The flat half: 1/4 m cells except within one such cell of the texture, where a 1/8 m
    # column (its neighbours flat) and then the fine 1/16 m cells next to the seam stay.
    x = merged.xyz[on_left, 0]
    assert int((x < -0.25).sum()) == 5 * 12
    assert int(((x >= -0.25) & (x < -0.125)).sum()) == 24
    assert int((x >= -0.125).sum()) == 2 * 48
    assert len(merge_points_on_grid(flat, 1.0, flat_levels=2, flat_tolerance=0.0)) == len(fine)  # no two equal
    with pytest.raises(ValueError, match="flat_levels"):
        merge_points_on_grid(flat, 1.0, flat_levels=-1)
    with pytest.raises(ValueError, match="flat_tolerance"):
        merge_points_on_grid(flat, 1.0, flat_levels=1, flat_tolerance=float("nan"))


def test_merge_without_packed_keys_is_the_same(monkeypatch):
    """Cells too far apart to pack into one int64 take torch.unique over rows instead: the same
    merge."""
    import dreamer.splats.gaussians as G

    g = torch.Generator().manual_seed(2)
    left = _wall().xyz[:, 0] < 0
    half = _wall(rgb=torch.where(left[:, None], torch.tensor([0.3, 0.3, 0.3]), torch.rand(64 * 64, 3, generator=g)))
    packed = G.merge_points_on_grid(half, 1.0, flat_levels=2, flat_tolerance=0.04)
    monkeypatch.setattr(G, "_pack_rows", lambda rows, margin=0: None)
    plain = G.merge_points_on_grid(half, 1.0, flat_levels=2, flat_tolerance=0.04)
    for a, b in zip((packed.xyz, packed.rgb, packed.radius), (plain.xyz, plain.rgb, plain.radius)):
        assert torch.equal(a, b)


def test_merged_gaussians_round_trip_through_ply(tmp_path):
    """Gaussians made from a flat-merged cloud save and load bit for bit."""
    from dreamer.splats.gaussians import merge_points_on_grid

    cloud = merge_points_on_grid(_wall(rgb=torch.full((64 * 64, 3), 0.3)), 1.0, flat_levels=2, flat_tolerance=0.04)
    g = Gaussians.from_points(cloud, sh_degree=3)
    g.save_ply(tmp_path / "merged.ply")
    back = Gaussians.load_ply(tmp_path / "merged.ply")
    assert _same(back, g)


def test_ply_round_trip_is_exact(tmp_path):
    for degree in (0, 1, 3):
        g = _random_gaussians(64, degree, seed=degree)
        path = tmp_path / f"g{degree}.ply"
        g.save_ply(path)
        back = Gaussians.load_ply(path)
        assert back.sh_degree == degree and _same(g, back)


def test_ply_layout_is_the_standard_one(tmp_path):
    from plyfile import PlyData

    g = _random_gaussians(10, 3)
    path = tmp_path / "g.ply"
    g.save_ply(path)
    raw = path.read_bytes()
    head = raw[: raw.index(b"end_header\n") + len(b"end_header\n")].decode()
    names = [line.split()[-1] for line in head.splitlines() if line.startswith("property")]
    want = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(45)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    assert names == want
    assert "format binary_little_endian 1.0" in head and "element vertex 10" in head
    assert all(line.startswith("property float ") for line in head.splitlines() if line.startswith("property"))
    assert len(raw) == len(head) + 10 * 62 * 4
    v = PlyData.read(str(path))["vertex"].data  # an independent reader
    assert np.array_equal(v["f_rest_0"], g.shN[:, 0, 0].numpy())  # channel-major: red first
    assert np.array_equal(v["f_rest_15"], g.shN[:, 0, 1].numpy())
    assert np.array_equal(v["f_rest_16"], g.shN[:, 1, 1].numpy())
    assert np.array_equal(v["opacity"], g.opacity_logits.numpy())
    assert np.array_equal(v["rot_0"], g.quats[:, 0].numpy())
    assert (v["nx"] == 0).all()


def test_gsplat_export_without_normals_loads(tmp_path):
    from gsplat import export_splats

    g = _random_gaussians(40, 3, seed=7)
    path = tmp_path / "gsplat.ply"
    export_splats(g.means, g.log_scales, g.quats, g.opacity_logits, g.sh0, g.shN, format="ply", save_to=str(path))
    assert b"property float nx" not in path.read_bytes()[:2000]
    assert _same(Gaussians.load_ply(path), g)


def test_other_property_order_and_types_load(tmp_path):
    """Another writer: ASCII, doubles, properties shuffled, an extra property and element."""
    from plyfile import PlyData, PlyElement

    g = _random_gaussians(12, 1, seed=3)
    cols = {"x": g.means[:, 0], "y": g.means[:, 1], "z": g.means[:, 2], "opacity": g.opacity_logits}
    cols.update({f"f_dc_{c}": g.sh0[:, 0, c] for c in range(3)})
    cols.update({f"f_rest_{c * 3 + k}": g.shN[:, k, c] for c in range(3) for k in range(3)})
    cols.update({f"scale_{i}": g.log_scales[:, i] for i in range(3)})
    cols.update({f"rot_{i}": g.quats[:, i] for i in range(4)})
    cols["filter_id"] = torch.zeros(12)
    names = sorted(cols, reverse=True)
    arr = np.empty(12, dtype=[(k, "f8") for k in names])
    for k in names:
        arr[k] = cols[k].double().numpy()
    PlyData([PlyElement.describe(arr, "vertex"), PlyElement.describe(np.zeros(1, [("v", "i4")]), "extra")],
            text=True).write(str(tmp_path / "ascii.ply"))
    back = Gaussians.load_ply(tmp_path / "ascii.ply")
    for a, b in zip(back.params().values(), g.params().values()):
        assert torch.allclose(a, b, atol=1e-6)


def test_bad_plys(tmp_path):
    from plyfile import PlyData, PlyElement

    _cloud(5).save_ply(tmp_path / "points.ply")
    with pytest.raises(ValueError, match="not a 3DGS Gaussian ply.*f_dc_0"):
        Gaussians.load_ply(tmp_path / "points.ply")
    (tmp_path / "junk.ply").write_bytes(b"hello world\n")
    with pytest.raises(ValueError, match="not a readable PLY"):
        Gaussians.load_ply(tmp_path / "junk.ply")
    with pytest.raises(FileNotFoundError):
        Gaussians.load_ply(tmp_path / "missing.ply")
    g = _random_gaussians(4, 1)
    g.save_ply(tmp_path / "ok.ply")
    v = PlyData.read(str(tmp_path / "ok.ply"))["vertex"].data
    # 0 Gaussians
    PlyData([PlyElement.describe(v[:0], "vertex")]).write(str(tmp_path / "empty.ply"))
    with pytest.raises(ValueError, match="no Gaussians"):
        Gaussians.load_ply(tmp_path / "empty.ply")
    # NaN parameters
    bad = v.copy()
    bad["scale_1"][2] = np.nan
    PlyData([PlyElement.describe(bad, "vertex")]).write(str(tmp_path / "nan.ply"))
    with pytest.raises(ValueError, match="non-finite"):
        Gaussians.load_ply(tmp_path / "nan.ply")
    # f_rest count that is no SH degree
    names = [n for n in v.dtype.names if n not in ("f_rest_8", "f_rest_7", "f_rest_6")]
    cut = np.empty(len(v), dtype=[(n, "f4") for n in names])
    for n in names:
        cut[n] = v[n]
    PlyData([PlyElement.describe(cut, "vertex")]).write(str(tmp_path / "rest.ply"))
    with pytest.raises(ValueError, match="f_rest"):
        Gaussians.load_ply(tmp_path / "rest.ply")


def test_what_float32_cannot_hold_is_refused_before_the_ply_is_written(tmp_path):
    """The .ply stores float32. A float64 set valid as such but not as float32 (a coordinate of
    1e39 becomes inf, a quaternion of 1e-30 has a zero float32 norm) would give a file our reader
    refuses and a viewer draws as garbage: refused, naming the field, and nothing is written. An
    opacity logit beyond float32 is opacity 0 or 1 and is written as -+30, as the reader takes
    an infinite one."""
    base = _random_gaussians(6, 1)
    f64 = {k: v.double() for k, v in base.params().items()}

    def make(**change) -> Gaussians:
        p = dict(f64)
        for k, v in change.items():
            p[k] = p[k].clone()
            p[k][2] = v
        return Gaussians.from_params(p)

    for field, name, value in (("means", "means", 1e39), ("scales", "log_scales", -1e39), ("sh0", "sh0", 1e39),
                               ("quats", "quats", 1e-30)):
        with pytest.raises(ValueError, match=f"float32.*Gaussians.{name} .*index 2"):
            make(**{field: value}).save_ply(tmp_path / "g.ply")
        assert list(tmp_path.iterdir()) == []
    make(opacities=-1e39).save_ply(tmp_path / "g.ply")
    back = Gaussians.load_ply(tmp_path / "g.ply")
    assert float(back.opacity_logits[2]) == -30.0
    assert torch.equal(back.opacity_logits[:2], base.opacity_logits[:2])
    assert torch.equal(back.means, base.means)


def test_a_3d_filtered_gaussian_too_small_for_float32_squares_keeps_its_size_in_the_ply(tmp_path):
    """The 3D filter is baked in float64: a standard deviation of e^-60 (its square underflows
    float32) with no filter is written as log scale -60, not log(0) = -inf."""
    g = _random_gaussians(4, 0)
    g.log_scales[1] = -60.0
    g.filter_3d = torch.tensor([0.01, 0.0, 0.01, 0.01])
    g.save_ply(tmp_path / "g.ply")
    back = Gaussians.load_ply(tmp_path / "g.ply")
    assert torch.allclose(back.log_scales[1], torch.full((3,), -60.0))
    assert torch.allclose(back.opacity_logits[1], g.opacity_logits[1], atol=1e-5)


def test_bad_gaussians(tmp_path):
    with pytest.raises(ValueError, match="empty point cloud"):
        Gaussians.from_points(PointCloud.empty())
    with pytest.raises(ValueError, match="at least one"):
        Gaussians(torch.zeros(0, 3), torch.zeros(0, 4), torch.zeros(0, 3), torch.zeros(0), torch.zeros(0, 1, 3),
                  torch.zeros(0, 0, 3))
    g = _random_gaussians(5, 1)
    fields = list(g.params().values())
    fields[2] = fields[2].clone()
    fields[2][3, 1] = float("nan")
    with pytest.raises(ValueError, match="log_scales has non-finite.*index 3"):
        Gaussians(*fields)
    # Opacity exactly 0 and 1 through torch.logit: the message says so and what to do.
    fields = list(g.params().values())
    fields[3] = torch.logit(torch.tensor([0.5, 1.0, 0.0, 0.5, 0.5]))
    with pytest.raises(ValueError, match="opacity_logits .* 2 of 5 .*index 1.*exactly 0 or 1.*clamp"):
        Gaussians(*fields)
    fields[3] = torch.logit(torch.tensor([0.5, 1.0, 0.0, 0.5, 0.5])).clamp(-30, 30)
    Gaussians(*fields).save_ply(tmp_path / "clamped.ply")
    assert Gaussians.load_ply(tmp_path / "clamped.ply").opacities[1:3].tolist() == [1.0, pytest.approx(0, abs=1e-12)]
    with pytest.raises(ValueError, match="shN"):
        Gaussians(*list(g.params().values())[:5], torch.zeros(5, 2, 3))
    pc = _cloud(5)
    with pytest.raises(ValueError, match="radius must be > 0"):
        Gaussians.from_points(PointCloud(pc.xyz, pc.rgb, torch.zeros(5)))
    with pytest.raises(ValueError, match="opacity"):
        Gaussians.from_points(pc, opacity=1.0)
    # A NaN that appears in place after construction is caught before it reaches a file.
    g.means.data[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        g.save_ply("/nonexistent/never_written.ply")


def test_bad_render_inputs():
    g = _random_gaussians(5, 1)
    with pytest.raises(ValueError, match="width must be a positive integer"):
        Camera(torch.eye(3), torch.eye(4), 0, 10)
    with pytest.raises(TypeError, match="Camera"):
        g.render("not a camera")
    cam = Camera.from_fov(60.0, 8, 8)
    with pytest.raises(ValueError, match="sh_degree"):
        g.render(cam, sh_degree=2)
    with pytest.raises(ValueError, match="CUDA"):
        g.render(cam, backend="gsplat")
    means, quats, scales, op, sh = random_scene(4)
    with pytest.raises(ValueError, match="sh must have shape"):
        rasterize(means, quats, scales, op, sh[:3], cam)
    with pytest.raises(ValueError, match="1, 4, 9, 16 or 25"):
        rasterize(means, quats, scales, op, sh[:, :3], cam)


def test_infinite_opacity_logits_load_as_opaque_or_transparent(tmp_path):
    """splat-transform writes an opacity of exactly 1 (or 0) as a +inf (-inf) logit."""
    from plyfile import PlyData, PlyElement

    g = _random_gaussians(4, 0)
    g.save_ply(tmp_path / "ok.ply")
    v = PlyData.read(str(tmp_path / "ok.ply"))["vertex"].data.copy()
    v["opacity"][1], v["opacity"][2] = np.inf, -np.inf
    PlyData([PlyElement.describe(v, "vertex")]).write(str(tmp_path / "inf.ply"))
    back = Gaussians.load_ply(tmp_path / "inf.ply")
    assert float(back.opacities[1]) == 1.0 and float(back.opacities[2]) < 1e-12
    assert torch.isfinite(back.opacity_logits).all()
