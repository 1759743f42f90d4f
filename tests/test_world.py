"""The procedural world and its oracle backends: the ground truth everything else is measured by."""

import math

import pytest
import torch

from dreamer.backends.synthetic import WorldDepthEstimator, WorldImageGenerator, WorldInpainter
from dreamer.cameras import Camera, look_at, project_points, unproject_depth
from dreamer.worlds import ProceduralWorld


@pytest.fixture(scope="module")
def world():
    return ProceduralWorld()


def cam_at(eye, target, size=(64, 48), focal=60.0):
    return Camera.from_focal(focal, size[0], size[1], look_at(torch.tensor(eye), torch.tensor(target)))


def test_depth_is_z_depth_on_the_surface(world):
    cam = cam_at([0.3, -0.2, 0.1], [1.0, 0.5, 4.0])
    r = world.render(cam)
    assert r.image.shape == (48, 64, 3) and r.depth.shape == (48, 64)
    assert torch.isfinite(r.depth).all() and (r.depth > 0).all()  # a closed room: every ray hits
    xyz = unproject_depth(r.depth, cam).reshape(-1, 3)
    assert world.distance_to_surface(xyz).max() < 1e-3


def test_colours_are_view_independent(world):
    """A surface point seen from two cameras has the same colour (band limits aside)."""
    a = cam_at([0.0, 0.0, 0.0], [0.0, 0.3, 4.0], focal=40.0)
    b = cam_at([0.4, -0.2, 0.2], [0.0, 0.3, 4.0], focal=40.0)
    ra, rb = world.render(a), world.render(b)
    pts = unproject_depth(ra.depth, a).reshape(-1, 3)
    uv, z = project_points(pts, b)
    u, v = uv[:, 0].floor().long(), uv[:, 1].floor().long()
    inside = (u >= 0) & (u < 64) & (v >= 0) & (v < 48) & (z > 0)
    # visible in b: its depth there agrees with the point's depth
    seen = inside.clone()
    seen[inside] = (rb.depth[v[inside], u[inside]] - z[inside]).abs() < 0.01 * z[inside]
    ca = ra.image.reshape(-1, 3)[seen]
    cb = rb.image[v[seen], u[seen]]
    assert seen.sum() > 500
    assert (ca - cb).abs().mean() < 0.06  # pixel-centre offsets and band limits only


def test_zoomed_camera_shows_finer_detail(world):
    """A 4x longer focal length reveals octaves that an upsampled crop of the wide view lacks."""
    wide = Camera.from_focal(64.0, 64, 64)
    zoomed = Camera.from_focal(256.0, 64, 64)
    w = world.render(wide, supersample=2).image
    z = world.render(zoomed, supersample=2).image
    crop = w[24:40, 24:40].permute(2, 0, 1)[None]
    up = torch.nn.functional.interpolate(crop, scale_factor=4, mode="bilinear", align_corners=False)[0].permute(1, 2, 0)

    def highpass(img):
        g = img.mean(-1)
        return (g[1:, 1:] - g[:-1, 1:] - g[1:, :-1] + g[:-1, :-1]).abs().mean()

    assert highpass(z) > 2.0 * highpass(up)


def test_estimator_exact_and_with_errors(world):
    cam = cam_at([0.0, 0.0, 0.0], [0.5, 0.0, 3.0])
    truth = world.depth(cam)
    image = world.render(cam).image
    assert torch.allclose(WorldDepthEstimator.exact(world).estimate(image, camera=cam), truth)
    for kind in ("bend", "waves"):
        est = WorldDepthEstimator(world, distortion=0.1, noise=0.0, seed=5, distortion_kind=kind)
        d = est.estimate(image, camera=cam)
        scale, field = est.error_model(cam)
        assert 0.5 <= scale <= 2.0
        assert field.abs().max() == pytest.approx(0.1, rel=1e-4)
        assert torch.allclose(d, truth * scale * (1 + field), rtol=1e-5)
    noisy = WorldDepthEstimator(world, seed=5)
    ratio = noisy.estimate(image, camera=cam) / (truth * noisy.error_model(cam)[0] * (1 + noisy.error_model(cam)[1]))
    assert abs(float(ratio.std()) - 0.01) < 0.003 and abs(float(ratio.mean()) - 1) < 0.003


def test_estimator_is_a_function_of_the_camera(world):
    est = WorldDepthEstimator(world, seed=1)
    a, b = cam_at([0, 0, 0], [0, 0, 3]), cam_at([0, 0, 0], [1, 0, 3])
    img = torch.zeros(48, 64, 3)
    assert torch.equal(est.estimate(img, camera=a), WorldDepthEstimator(world, seed=1).estimate(img, camera=a))
    assert est.error_model(a)[0] != est.error_model(b)[0]
    assert est.error_model(a)[0] != WorldDepthEstimator(world, seed=2).error_model(a)[0]


def test_inpainter_changes_only_the_mask(world):
    cam = cam_at([0, 0, 0], [0, 0, 3])
    image = torch.zeros(48, 64, 3)
    mask = torch.zeros(48, 64, dtype=torch.bool)
    mask[10:20, 5:30] = True
    out = WorldInpainter(world).inpaint(image, mask, "x", camera=cam)
    assert torch.equal(out[~mask], image[~mask])
    assert torch.equal(out[mask], world.render(cam).image[mask])
    with pytest.raises(ValueError, match="bool"):
        WorldInpainter(world).inpaint(image, mask.float(), "x", camera=cam)
    with pytest.raises(ValueError):
        WorldInpainter(world).inpaint(image[:, :10], mask, "x", camera=cam)


def test_generator_is_the_default_first_view(world):
    img = WorldImageGenerator(world).generate("anything", width=64, height=48)
    assert torch.equal(img, world.render(world.first_camera(64, 48)).image)
    assert world.first_camera(512, 512).fx == pytest.approx(582.69)


def test_bad_settings_are_rejected(world):
    with pytest.raises(ValueError, match="scale_range"):
        WorldDepthEstimator(world, scale_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="distortion_kind"):
        WorldDepthEstimator(world, distortion_kind="ripples")
    with pytest.raises(TypeError):
        ProceduralWorld(seed="0")
    assert math.isclose(world.extent, math.dist((-4, -2, -4), (4, 1.5, 6)))
