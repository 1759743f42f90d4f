"""Multi-scale Gaussians: level-of-detail weights, the 3D smoothing filter, training with levels,
and the .ply properties that carry them."""

import math

import numpy as np
import pytest
import torch

from dreamer.cameras import Camera, look_at
from dreamer.splats import Gaussians
from dreamer.splats.gaussians import rgb_to_sh0
from dreamer.splats.lod import LevelsOfDetail, apply_filter_3d, filter_3d_std, lod_weights
from dreamer.splats.projection import quat_scale_to_covar_preci


def _camera(focal, eye=(0.0, 0.0, 0.0), size=32):
    c2w = look_at(torch.tensor(eye), torch.tensor([0.0, 0.0, 10.0]))
    return Camera(torch.tensor([[focal, 0.0, size / 2], [0.0, focal, size / 2], [0.0, 0.0, 1.0]]), c2w, size, size)


def test_a_level_camera_sees_its_own_level_and_levels_cross_fade():
    """Three levels of one point at depth 4, p = 2: footprints 4 / f, 4 / 2f, 4 / 4f. Level 1
    covers level 0 and level 2 covers level 1. At a level camera exactly that level has weight 1;
    between level cameras two adjacent levels share the weight, and the weights always sum to 1."""
    f = 100.0
    xyz = torch.tensor([[0.0, 0.0, 4.0]] * 3)
    fp = torch.tensor([4 / f, 4 / (2 * f), 4 / (4 * f)])
    lod = LevelsOfDetail(torch.tensor([0, 1, 2]), torch.tensor([0.0, fp[1], fp[2]]), torch.tensor([fp[1], fp[2], 0.0]))
    for i in range(3):
        w = lod.weights(xyz, _camera(f * 2**i))
        expected = torch.zeros(3)
        expected[i] = 1
        assert torch.allclose(w, expected, atol=1e-6), (i, w)
    for s in np.linspace(1.0, 4.0, 25):
        w = lod.weights(xyz, _camera(f * s))
        assert float(w.sum()) == pytest.approx(1.0, abs=1e-6)
        assert int((w > 1e-6).sum()) <= 2
    # Zooming out past level 0 keeps level 0; zooming in past level 2 keeps level 2.
    assert torch.allclose(lod.weights(xyz, _camera(f / 8)), torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(lod.weights(xyz, _camera(f * 64)), torch.tensor([0.0, 0.0, 1.0]))
    # A dolly does the same as a focal change: the weights follow the footprint on screen.
    assert torch.allclose(lod.weights(xyz, _camera(f, eye=(0.0, 0.0, 2.0))), lod.weights(xyz, _camera(2 * f)),
                          atol=1e-6)


def test_filter_3d_is_a_convolution_of_gaussians():
    g = torch.Generator().manual_seed(0)
    n = 50
    quats = torch.randn(n, 4, generator=g, dtype=torch.float64)
    scales = torch.rand(n, 3, generator=g, dtype=torch.float64) * 0.1 + 0.001
    op = torch.rand(n, generator=g, dtype=torch.float64)
    f = torch.rand(n, generator=g, dtype=torch.float64) * 0.05
    s2, o2 = apply_filter_3d(scales, op, f)
    cov, _ = quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    cov2, _ = quat_scale_to_covar_preci(quats, s2, compute_preci=False)
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(cov2, cov + f[:, None, None] ** 2 * eye, atol=1e-12)  # covariances add
    # The integral opacity * sqrt(det cov) is unchanged.
    assert torch.allclose(o2 * torch.linalg.det(cov2).sqrt(), op * torch.linalg.det(cov).sqrt(), rtol=1e-10)


def test_filter_3d_size_is_the_finest_sampling_that_sees_the_point():
    xyz = torch.tensor([[0.0, 0.0, 4.0], [0.0, 0.0, 8.0], [30.0, 0.0, 4.0]])
    wide, tele = _camera(100.0), _camera(400.0)
    std = filter_3d_std(xyz, [wide, tele])
    assert std[0] == pytest.approx(math.sqrt(0.2) * 4 / 400)  # the telephoto sees it: finer
    assert std[1] == pytest.approx(math.sqrt(0.2) * 8 / 400)
    # The third point is outside both views: the largest footprint found, as Mip-Splatting does.
    assert std[2] == pytest.approx(float(std[:2].max()))
    # With levels of detail a camera counts only where the point is drawn: a level-0 point covered
    # by a level whose footprint is 4 / 400 is invisible to the telephoto camera.
    lod = (torch.zeros(3), torch.tensor([4 / 400, 0.0, 0.0]))
    std_lod = filter_3d_std(xyz, [wide, tele], lod=lod)
    assert std_lod[0] == pytest.approx(math.sqrt(0.2) * 4 / 100)


def _multiscale(n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    lod = LevelsOfDetail(torch.randint(0, 11, (n,), generator=g), torch.rand(n, generator=g) * 1e-3,
                         torch.rand(n, generator=g) * 1e-3 * (torch.rand(n, generator=g) > 0.5))
    return Gaussians(
        means=torch.randn(n, 3, generator=g) * 0.01 + torch.tensor([0.3, -0.2, 3.0]),
        quats=torch.randn(n, 4, generator=g),
        log_scales=torch.randn(n, 3, generator=g) - 7.0,
        opacity_logits=torch.randn(n, generator=g),
        sh0=rgb_to_sh0(torch.rand(n, 1, 3, generator=g)),
        shN=torch.zeros(n, 0, 3),
        lod=lod, filter_3d=torch.rand(n, generator=g) * 1e-3, rasterize_mode="antialiased",
    )


def test_ply_carries_levels_filter_and_mode(tmp_path):
    from plyfile import PlyData

    g = _multiscale()
    path = tmp_path / "zoom.ply"
    g.save_ply(path)
    ply = PlyData.read(str(path))
    names = ply["vertex"].data.dtype.names
    assert names[-4:] == ("zoom_level", "lod_in", "lod_out", "filter_3d")
    assert "rasterize_mode antialiased" in ply.comments
    back = Gaussians.load_ply(path)
    assert back.rasterize_mode == "antialiased" and back.filter_3d is None
    assert torch.equal(back.lod.level, g.lod.level) and torch.equal(back.lod.lod_in, g.lod.lod_in)
    assert torch.equal(back.lod.lod_out, g.lod.lod_out)
    # The standard properties hold the filtered Gaussians: what every viewer draws.
    scales, opacities = g.filtered()
    assert torch.allclose(back.scales, scales, rtol=1e-5) and torch.allclose(back.opacities, opacities, rtol=1e-4)
    assert torch.allclose(torch.from_numpy(np.asarray(ply["vertex"]["filter_3d"])), g.filter_3d)
    # So the file renders as the Gaussians do.
    cam = Camera(torch.tensor([[3000.0, 0, 16], [0, 3000.0, 16], [0, 0, 1]]),
                 look_at(torch.tensor([0.3, -0.2, 2.9]), torch.tensor([0.3, -0.2, 3.0])), 32, 32)
    a, b = g.render(cam, near_plane=1e-3)[0], back.render(cam, near_plane=1e-3)[0]
    assert float(a.max()) > 0.1 and float((a - b).abs().max()) < 1e-4
    # Files without the extra properties still load as plain Gaussians.
    plain = g.detach()
    plain.lod, plain.filter_3d, plain.rasterize_mode = None, None, "classic"
    plain.save_ply(tmp_path / "plain.ply")
    loaded = Gaussians.load_ply(tmp_path / "plain.ply")
    assert loaded.lod is None and loaded.rasterize_mode == "classic"
    assert PlyData.read(str(tmp_path / "plain.ply"))["vertex"].data.dtype.names[-1] == "rot_3"


def test_bad_lod_inputs():
    g = _multiscale(10)
    with pytest.raises(ValueError, match="lod has"):
        Gaussians(g.means, g.quats, g.log_scales, g.opacity_logits, g.sh0, g.shN, lod=_multiscale(11).lod)
    with pytest.raises(ValueError, match="rasterize_mode"):
        Gaussians(g.means, g.quats, g.log_scales, g.opacity_logits, g.sh0, g.shN, rasterize_mode="mip")
    with pytest.raises(ValueError, match="lod_in"):
        LevelsOfDetail(torch.zeros(3, dtype=torch.long), -torch.ones(3), torch.zeros(3))
    with pytest.raises(ValueError, match="lod_out"):
        lod_weights(torch.zeros(3, 3), torch.zeros(3), torch.zeros(2), _camera(10.0))
