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


# -- more checks of the world's geometry, colours and layout --------------------------------------

def _rodrigues(axis: torch.Tensor, deg: float) -> torch.Tensor:
    """Rotation [3,3] by ``deg`` about the unit ``axis`` (an independent formula, not cameras.py)."""
    a = math.radians(deg)
    k = torch.tensor([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return torch.eye(3) + math.sin(a) * k + (1 - math.cos(a)) * (k @ k)


def _pinhole_at(eye, target, focal):
    """A 1x1 camera whose single pixel centre looks exactly at ``target``."""
    eye, target = torch.as_tensor(eye, dtype=torch.float32), torch.as_tensor(target, dtype=torch.float32)
    fwd = target - eye
    up = torch.tensor([0.0, -1.0, 0.0]) if abs(float(fwd[1])) < 0.9 * float(fwd.norm()) else torch.tensor([1.0, 0, 0])
    K = torch.tensor([[focal, 0.0, 0.5], [0.0, focal, 0.5], [0.0, 0.0, 1.0]])
    return Camera(K, look_at(eye, target, up), 1, 1)


def test_colours_match_exactly_at_equal_footprint(world):
    """Seen from another place with the same footprint and incidence angle (the eye rotated
    about the surface normal, the focal length matched to the distance), a point has exactly
    the same colour: shading is view-independent, and only the band limit depends on the view."""
    a = cam_at([0.0, 0.0, 0.0], [0.3, 0.4, 4.0], focal=60.0)
    ra = world.render(a)
    xyz = unproject_depth(ra.depth, a)
    lo, hi = world.bounds
    compared = 0
    for v, u in [(v, u) for v in range(2, 48, 9) for u in range(3, 64, 9)]:
        x, n, za = xyz[v, u], ra.normal[v, u], float(ra.depth[v, u])
        dist = float((x - a.center).norm())
        eye = x + _rodrigues(n, 35.0) @ (a.center - x)
        if not ((eye > lo + 0.05).all() and (eye < hi - 0.05).all()):
            continue
        b = _pinhole_at(eye, x, focal=60.0 * dist / za)  # footprint dist / f_b == za / 60
        rb = world.render(b)
        if abs(float(rb.depth) - dist) > 1e-4 * dist or int(rb.object_id) != int(ra.object_id[v, u]):
            continue  # occluded from there, or the point is on an edge
        assert torch.allclose(rb.image[0, 0], ra.image[v, u], atol=5e-4), (v, u)
        compared += 1
    assert compared >= 15


def test_depth_of_a_plane_parallel_to_the_image_is_constant(world):
    """z-depth, not ray length: a camera looking straight down at the floor (y = +1.5) reads
    the same depth in every pixel, also at the corners where rays are longer; moving the
    camera up or rolling it behaves as geometry says."""
    down = torch.tensor([0.0, 1.0, 0.0])
    for eye, roll, expected in [([0.0, 0.0, 0.0], 0.0, 1.5), ([0.2, -0.4, 0.3], 0.0, 1.9),
                                ([0.0, 0.0, 0.0], 30.0, 1.5)]:
        eye = torch.tensor(eye)
        c2w = look_at(eye, eye + down, up=torch.tensor([0.0, 0.0, -1.0]))
        c2w[:3, :3] = c2w[:3, :3] @ _rodrigues(torch.tensor([0.0, 0.0, 1.0]), roll)
        cam = Camera.from_focal(200.0, 32, 24, c2w)
        r = world.render(cam)
        assert (r.object_id == 3).all()  # the floor
        assert torch.allclose(r.depth, torch.full_like(r.depth, expected), atol=1e-5)
        assert torch.allclose(r.normal, torch.tensor([0.0, -1.0, 0.0]).expand(24, 32, 3))


def test_normals_are_unit_and_face_the_camera(world):
    cam = cam_at([0.2, 0.1, -0.3], [-2.0, 0.5, 3.0])
    r = world.render(cam)
    assert torch.allclose(r.normal.norm(dim=-1), torch.ones(48, 64), atol=1e-5)
    rays = unproject_depth(torch.ones(48, 64), cam) - cam.center
    assert ((r.normal * rays).sum(-1) < 0).all()


def test_supersampling_is_the_box_downsample_of_a_finer_render(world):
    """The zoom stack's reduce operator applied to a 3x render gives the supersampled render."""
    cam = cam_at([0.0, 0.0, 0.0], [0.2, 0.3, 4.0], size=(24, 16), focal=25.0)
    ss = world.render(cam, supersample=3)
    fine = world.render(cam.resized(72, 48)).image
    assert torch.allclose(ss.image, fine.reshape(16, 3, 24, 3, 3).mean(dim=(1, 3)), atol=1e-5)
    assert torch.equal(ss.depth, world.render(cam).depth)  # geometry from the pixel-centre ray


def test_distance_to_surface_agrees_with_ray_casting(world):
    """From free points, the nearest hit over a dense sphere of rays (six 90-degree cameras) is
    the distance to the surface: an independent check of the SDFs against the ray caster."""
    faces = [torch.tensor(v, dtype=torch.float32) for v in
             ([1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1])]
    g = torch.Generator().manual_seed(0)
    points = (torch.rand(4, 3, generator=g) - 0.5) * 1.2  # within the free space around the origin
    dist = world.distance_to_surface(points)
    for p, dp in zip(points, dist):
        nearest = math.inf
        for f in faces:
            up = torch.tensor([0.0, -1.0, 0.0]) if abs(float(f[1])) < 0.5 else torch.tensor([0.0, 0.0, 1.0])
            cam = Camera.from_focal(24.0, 48, 48, look_at(p, p + f, up))  # 90 degrees across
            rays = unproject_depth(world.depth(cam), cam) - p
            nearest = min(nearest, float(rays.norm(dim=-1).min()))
        assert nearest >= float(dp) - 1e-4
        assert nearest == pytest.approx(float(dp), rel=0.02)
    assert world.distance_to_surface(points.double()).dtype == torch.float64
    assert float(world.distance_to_surface(torch.zeros(1, 3))) >= 1.1  # the cameras' free space


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_layout_is_seeded_and_keeps_the_camera_space_free(seed):
    w = ProceduralWorld(seed)
    assert float(w.distance_to_surface(torch.zeros(1, 3))) >= 1.1
    dolly = torch.stack([torch.zeros(7), torch.zeros(7), torch.linspace(0, 1.5, 7)], 1)
    assert (w.distance_to_surface(dolly) >= 0.6).all()
    cam = cam_at([0, 0, 0], [0, 0, 3], size=(32, 24), focal=30.0)
    img = w.render(cam).image
    assert torch.equal(img, ProceduralWorld(seed).render(cam).image)
    assert not torch.equal(img, ProceduralWorld(seed + 10).render(cam).image)
    # Looking ahead there is a central object about 3 m away (the orbit centre).
    assert 2.0 < float(w.center[2]) < 4.0 and float(w.distance_to_surface(w.center[None])) < 0.6
    # Every turn of a full circle sees at least one object besides the room.
    for yaw in range(0, 360, 45):
        c2w = torch.eye(4)
        c2w[:3, :3] = _rodrigues(torch.tensor([0.0, 1.0, 0.0]), yaw)
        ids = w.render(w.first_camera(32, 32).with_c2w(c2w)).object_id
        assert (ids >= 6).any(), yaw


def test_estimator_reproduces_errors_for_a_reloaded_camera(world):
    """A resumed run reads its cameras back from JSON: the errors must be identical."""
    cam = cam_at([0.1, 0.0, 0.2], [0.5, 0.0, 3.0])
    again = Camera.from_dict(cam.to_dict())
    est = WorldDepthEstimator(world, seed=4)
    img = torch.zeros(48, 64, 3)
    d = est.estimate(img, camera=cam)
    assert torch.equal(d, est.estimate(img, camera=again))
    assert torch.isfinite(d).all() and (d > 0).all()
    with pytest.raises(ValueError):
        est.estimate(torch.zeros(47, 64, 3), camera=cam)


def test_invalid_inputs_are_rejected(world):
    outside = Camera.from_focal(50.0, 16, 16, look_at(torch.tensor([0.0, 0.0, 7.0]), torch.tensor([0.0, 0.0, 0.0])))
    with pytest.raises(ValueError, match="outside the room"):
        world.render(outside)
    with pytest.raises(ValueError, match="supersample"):
        world.render(world.first_camera(16, 16), supersample=0)
    with pytest.raises(ValueError, match=r"\[N,3\]"):
        world.distance_to_surface(torch.zeros(4, 2))
