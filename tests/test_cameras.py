"""The camera convention: conversions round-trip and agree with independent formulas."""

import math

import pytest
import torch

from dreamer.cameras import (
    Camera,
    camera_rays,
    check_rigid,
    focal_from_fov,
    fov_from_focal,
    intrinsics_from_fov,
    invert_rigid,
    look_at,
    opencv_to_opengl,
    opengl_to_opencv,
    project_points,
    rotation_x,
    rotation_y,
    rotation_z,
    unproject_depth,
)


def rigid(R, t):
    T = torch.eye(4)
    T[:3, :3] = R
    T[:3, 3] = torch.as_tensor(t, dtype=torch.float32)
    return T


def random_camera(seed=0, width=40, height=30):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(3, generator=g) * 60 - 30
    R = rotation_z(float(a[0])) @ rotation_y(float(a[1])) @ rotation_x(float(a[2]))
    t = torch.randn(3, generator=g)
    return Camera.from_fov(55.0, width, height, rigid(R, t))


def test_focal_fov_round_trip():
    f = focal_from_fov(47.4, 512)
    assert abs(f - 582.69) < 1.0  # the research default: 582.69 px at 512 is a 47.4 deg FoV
    assert fov_from_focal(f, 512) == pytest.approx(47.4, abs=1e-9)
    K = intrinsics_from_fov(90.0, 64, 48)
    assert K[0, 0] == pytest.approx(32.0) and K[0, 2] == 32.0 and K[1, 2] == 24.0


def test_rotation_directions_follow_opencv_axes():
    z = torch.tensor([0.0, 0.0, 1.0])
    assert torch.allclose(rotation_y(90) @ z, torch.tensor([1.0, 0.0, 0.0]), atol=1e-6)  # yaw right
    assert torch.allclose(rotation_x(90) @ z, torch.tensor([0.0, -1.0, 0.0]), atol=1e-6)  # pitch up (-y)


def test_invert_rigid_matches_general_inverse():
    cam = random_camera(1)
    assert torch.allclose(invert_rigid(cam.c2w), torch.linalg.inv(cam.c2w), atol=1e-5)
    assert torch.allclose(cam.w2c @ cam.c2w, torch.eye(4), atol=1e-5)


def test_opengl_conversion_round_trip_and_axes():
    cam = random_camera(2)
    gl = opencv_to_opengl(cam.c2w)
    assert torch.allclose(opengl_to_opencv(gl), cam.c2w, atol=1e-6)
    # OpenGL looks down -z and has +y up: the same world directions as OpenCV's +z and -y.
    assert torch.allclose(-gl[:3, 2], cam.c2w[:3, 2], atol=1e-6)
    assert torch.allclose(gl[:3, 1], -cam.c2w[:3, 1], atol=1e-6)
    assert torch.allclose(gl[:3, 3], cam.c2w[:3, 3])


def test_project_unproject_round_trip_moving_camera():
    cam = random_camera(3)
    depth = torch.rand(30, 40, generator=torch.Generator().manual_seed(0)) * 4 + 0.5
    xyz = unproject_depth(depth, cam)
    uv, z = project_points(xyz.reshape(-1, 3), cam)
    assert torch.allclose(z, depth.reshape(-1), rtol=1e-5)
    vv, uu = torch.meshgrid(torch.arange(30) + 0.5, torch.arange(40) + 0.5, indexing="ij")
    assert torch.allclose(uv[:, 0], uu.reshape(-1), atol=1e-3)
    assert torch.allclose(uv[:, 1], vv.reshape(-1), atol=1e-3)


def test_projection_agrees_with_independent_formula():
    """x_pix = K (R^T (X - C)) / z, written out from the matrix definition."""
    cam = random_camera(4)
    X = torch.randn(50, 3) + cam.center + 3 * cam.forward
    Xc = (X - cam.center) @ cam.c2w[:3, :3]  # R^T (X - C) for row vectors
    p = Xc @ cam.K.T
    ref = p[:, :2] / p[:, 2:]
    uv, z = project_points(X, cam)
    assert torch.allclose(uv, ref, atol=1e-3)
    assert torch.allclose(z, Xc[:, 2], atol=1e-5)


def test_rays_have_unit_z():
    cam = random_camera(5)
    origin, dirs = camera_rays(cam)
    z_cam = dirs @ cam.c2w[:3, :3]  # back to camera axes
    assert torch.allclose(z_cam[..., 2], torch.ones(30, 40), atol=1e-5)
    assert torch.allclose(origin, cam.center)


def test_look_at_points_at_target_with_up_up():
    eye, target = torch.tensor([1.0, -0.5, -2.0]), torch.tensor([0.0, 0.0, 3.0])
    c2w = look_at(eye, target)
    check_rigid(c2w)
    cam = Camera.from_fov(60, 64, 48, c2w)
    uv, z = project_points(target[None], cam)
    assert torch.allclose(uv[0], torch.tensor([32.0, 24.0]), atol=1e-3) and z[0] > 0
    # a point above the target (world up is -y) appears above the image centre (smaller v)
    uv_up, _ = project_points((target + torch.tensor([0.0, -1.0, 0.0]))[None], cam)
    assert uv_up[0, 1] < 24.0


def test_camera_dict_round_trip_and_resize():
    cam = random_camera(6)
    back = Camera.from_dict(cam.to_dict())
    assert torch.equal(back.K, cam.K) and torch.equal(back.c2w, cam.c2w)
    half = cam.resized(20, 15)
    assert half.fx == pytest.approx(cam.fx / 2) and half.cy == pytest.approx(cam.cy / 2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(K=torch.eye(3)[:2], c2w=torch.eye(4), width=4, height=4), "K must have shape"),
        (dict(K=torch.eye(3), c2w=torch.eye(4) * 2, width=4, height=4), "last row"),
        (dict(K=torch.eye(3), c2w=rigid(torch.eye(3) * 1.5, [0, 0, 0]), width=4, height=4), "not rigid"),
        (dict(K=torch.eye(3), c2w=rigid(torch.diag(torch.tensor([1.0, 1, -1])), [0, 0, 0]), width=4, height=4),
         "reflection"),
        (dict(K=torch.eye(3), c2w=torch.eye(4), width=0, height=4), "positive integer"),
        (dict(K=torch.eye(3), c2w=torch.full((4, 4), math.nan), width=4, height=4), "non-finite"),
        (dict(K=-torch.eye(3), c2w=torch.eye(4), width=4, height=4), "positive focal"),
    ],
)
def test_camera_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Camera(**kwargs)


def test_image_size_mismatch_is_named():
    cam = Camera.from_fov(60, 64, 48)
    with pytest.raises(ValueError, match=r"\(48, 64\)"):
        cam.check_image(torch.zeros(64, 48, 3))
