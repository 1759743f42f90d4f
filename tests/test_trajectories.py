"""Trajectory presets, interpolation, trajectory files and the scene-centre depth."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dreamer.cameras import Camera, invert_rigid, look_at, opencv_to_opengl, project_points, rotation_x, rotation_y
from dreamer.trajectories import (
    GENERATION_PRESETS,
    PRESETS,
    RENDER_PRESETS,
    Trajectory,
    TrajectoryFileError,
    center_depth_from,
    interpolate_cameras,
    load_trajectory,
    lookaround,
    make_trajectory,
    orbit_camera,
    rotate_camera,
    save_trajectory,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "trajectories"
CD = 2.0  # scene-centre depth used throughout

# Small sizes for the render presets so the whole file runs in about a second.
SMALL = {"back_and_forth": {"n": 21}, "llff": {"n": 40}, "headbanging": {"n": 36}, "rotate360": {"n": 10}}


@pytest.fixture
def first() -> Camera:
    return Camera.from_focal(582.69, 512, 512)


@pytest.fixture
def posed_first() -> Camera:
    """A rotated and translated first camera (a pose that is not the world frame)."""
    c2w = look_at(torch.tensor([1.0, -0.5, 2.0]), torch.tensor([-1.0, 0.3, 5.0]))
    c2w[:3, :3] = c2w[:3, :3] @ rotation_x(7.0) @ rotation_y(-12.0)  # some roll too
    return Camera.from_focal(500.0, 640, 480, c2w)


def rot_angle(a: torch.Tensor, b: torch.Tensor) -> float:
    """Geodesic angle in degrees between the rotation blocks of two c2w [4,4]."""
    r = a[:3, :3].double().T @ b[:3, :3].double()
    return math.degrees(math.acos(max(-1.0, min(1.0, (float(torch.trace(r)) - 1.0) / 2.0))))


def yaw_pitch(cam: Camera) -> tuple[float, float]:
    """Yaw (right +) and pitch (up +) of a camera's viewing direction in the world (degrees)."""
    f = cam.forward.double()
    return math.degrees(math.atan2(f[0], f[2])), math.degrees(math.asin(-f[1]))


def relative(first: Camera, traj: Trajectory) -> torch.Tensor:
    """c2w of every camera relative to the first camera, [N,4,4] float64."""
    w2c0 = invert_rigid(first.c2w.double())
    return torch.stack([w2c0 @ c.c2w.double() for c in traj.cameras])


# ------------------------------------------------------------------------------------------------
# Rotation presets
# ------------------------------------------------------------------------------------------------
def test_lookaround_is_the_21_view_grid_around_one_centre(first):
    traj = lookaround(first, CD)
    assert len(traj) == 21 and traj.prompts == [None] * 21
    assert traj.cameras[0] is first
    for cam in traj.cameras:
        assert torch.allclose(cam.center, first.center, atol=1e-6)
        assert torch.equal(cam.K, first.K) and (cam.width, cam.height) == (512, 512)
    angles = sorted((round(y, 3), round(p, 3)) for y, p in map(yaw_pitch, traj.cameras))
    grid = sorted((float(y), p) for y in (0, 20, -20, 40, -40, 60, -60) for p in (0.0, 22.5, -22.5))
    assert angles == grid
    # 21 distinct rotations
    for i in range(21):
        for j in range(i):
            assert rot_angle(traj.cameras[i].c2w, traj.cameras[j].c2w) > 10.0
    # no roll: the x axis stays horizontal
    assert all(abs(float(c.c2w[1, 0])) < 1e-6 for c in traj.cameras)


def test_lookaround_order_grows_outward_and_every_view_overlaps_an_earlier_one(first):
    traj = lookaround(first, CD)
    ordered = [tuple(round(v, 3) for v in yaw_pitch(c)) for c in traj.cameras]
    assert ordered[:7] == [(0.0, 0.0), (20.0, 0.0), (-20.0, 0.0), (40.0, 0.0), (-40.0, 0.0), (60.0, 0.0),
                           (-60.0, 0.0)]
    assert ordered[7:9] == [(0.0, 22.5), (20.0, 22.5)]  # the up row from its centre
    assert ordered[14:16] == [(0.0, -22.5), (20.0, -22.5)]  # then the down row
    for i in range(1, len(traj)):
        nearest = min(rot_angle(traj.cameras[i].c2w, traj.cameras[j].c2w) for j in range(i))
        assert nearest <= 25.0, f"camera {i} is {nearest:.1f} deg from every earlier camera"


def test_lookaround_parameters(first):
    traj = lookaround(first, CD, yaws=(30,), pitches=())
    assert [round(yaw_pitch(c)[0], 3) for c in traj.cameras] == [0.0, 30.0, -30.0]
    assert len(lookaround(first, CD, yaws=(15, 30, 45, 60), pitches=(20, 40))) == 9 * 5
    # the pipeline passes a uniform n: a prefix of the outward order
    head = make_trajectory("lookaround", first, CD, n=9)
    assert [c.c2w.tolist() for c in head.cameras] == [c.c2w.tolist() for c in lookaround(first, CD).cameras[:9]]
    with pytest.raises(ValueError, match="more than the 14 views"):
        make_trajectory("lookdown", first, CD, n=15)


def test_lookdown_rows(first):
    traj = make_trajectory("lookdown", first, CD)
    assert len(traj) == 14 and traj.cameras[0] is first
    angles = [tuple(round(v, 3) for v in yaw_pitch(c)) for c in traj.cameras]
    assert all(p == 0.0 for _, p in angles[:7]) and all(p == -22.5 for _, p in angles[7:])
    assert [y for y, _ in angles[7:]] == [0.0, 20.0, -20.0, 40.0, -40.0, 60.0, -60.0]
    assert all(float(c.forward[1]) > 0.3 for c in traj.cameras[7:])  # +y is down: looking down
    assert all(torch.allclose(c.center, first.center) for c in traj.cameras)


def test_rotate360(first):
    traj = make_trajectory("rotate360", first, CD, n=10)
    assert len(traj) == 10 and traj.cameras[0] is first
    yaws = [yaw_pitch(c)[0] % 360.0 for c in traj.cameras]
    assert np.allclose(yaws, np.arange(10) * 36.0, atol=1e-4)
    assert all(torch.allclose(c.center, first.center) for c in traj.cameras)
    auto = make_trajectory("rotate360", first, CD)  # steps of at most half the field of view
    assert 360.0 / len(auto) <= first.fov_x / 2 + 1e-6 and 360.0 / (len(auto) - 1) > first.fov_x / 2
    alt = make_trajectory("rotate360", first, CD, n=10, order="alternate")
    alt_yaws = [round(yaw_pitch(c)[0], 3) for c in alt.cameras]
    assert alt_yaws[:5] == [0.0, 36.0, -36.0, 72.0, -72.0]
    assert sorted(y % 360.0 for y in alt_yaws) == pytest.approx(sorted(yaws), abs=1e-3)


def test_headbanging_rotates_in_place(first):
    traj = make_trajectory("headbanging", first, CD, n=40, max_yaw=15.0)
    assert len(traj) == 40 and traj.cameras[0] is first
    yaws = [yaw_pitch(c)[0] for c in traj.cameras]
    assert max(yaws) == pytest.approx(15.0, abs=1e-3) and min(yaws) == pytest.approx(-15.0, abs=1e-3)
    assert all(torch.allclose(c.center, first.center) for c in traj.cameras)


# ------------------------------------------------------------------------------------------------
# Translating presets
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cam_name", ["first", "posed_first"])
def test_forward_backward_moveright_follow_the_first_camera_axes(cam_name, request):
    cam = request.getfixturevalue(cam_name)
    for name, axis, sign in (("forward", 2, 1.0), ("backward", 2, -1.0), ("moveright", 0, 1.0)):
        traj = make_trajectory(name, cam, CD, n=5, distance=0.5)
        assert len(traj) == 5 and traj.cameras[0] is cam
        direction = sign * cam.c2w[:3, axis]
        for i, c in enumerate(traj.cameras):
            assert torch.allclose(c.center, cam.center + (0.5 * CD * i / 4) * direction, atol=1e-5)
            assert torch.allclose(c.c2w[:3, :3], cam.c2w[:3, :3], atol=1e-6)
    absolute = make_trajectory("forward", cam, CD, n=3, distance=0.3, relative=False)
    assert torch.allclose(absolute.cameras[-1].center, cam.center + 0.3 * cam.forward, atol=1e-5)
    left = make_trajectory("moveright", cam, CD, n=2, distance=-0.25)
    assert torch.allclose(left.cameras[-1].center, cam.center - 0.5 * cam.c2w[:3, 0], atol=1e-5)


@pytest.mark.parametrize("cam_name", ["first", "posed_first"])
def test_orbit_keeps_the_pivot_at_the_principal_point(cam_name, request):
    cam = request.getfixturevalue(cam_name)
    traj = make_trajectory("orbit", cam, CD, n=7, angle=30.0)
    assert len(traj) == 7 and traj.cameras[0] is cam
    pivot = (cam.center + CD * cam.forward)[None]
    for c in traj.cameras:
        uv, z = project_points(pivot, c)
        assert torch.allclose(uv[0], torch.tensor([c.cx, c.cy]), atol=1e-3)
        assert float(z[0]) == pytest.approx(CD, abs=1e-5)
        assert float((c.center - pivot[0]).norm()) == pytest.approx(CD, abs=1e-5)
    # symmetric order: 0, +10, -10, +20, ... (positive = the camera moves to its right)
    w2c0 = invert_rigid(cam.c2w)
    local_x = [float((w2c0[:3, :3] @ c.center + w2c0[:3, 3])[0]) for c in traj.cameras]
    assert local_x[1] > 0 > local_x[2] and local_x[3] > local_x[1]
    angles = [rot_angle(cam.c2w, c.c2w) for c in traj.cameras]
    assert angles == pytest.approx([0, 10, 10, 20, 20, 30, 30], abs=1e-3)
    one_side = make_trajectory("orbit", cam, CD, n=4, angle=30.0, symmetric=False, pivot_depth=1.0)
    assert [rot_angle(cam.c2w, c.c2w) for c in one_side.cameras] == pytest.approx([0, 10, 20, 30], abs=1e-3)
    uv, z = project_points((cam.center + cam.forward)[None], one_side.cameras[-1])
    assert float(z[0]) == pytest.approx(1.0, abs=1e-5)


def test_render_presets(first):
    bf = make_trajectory("back_and_forth", first, CD, n=21, distance=0.5)
    zs = [float(c.center[2]) for c in bf.cameras]
    assert len(bf) == 21 and bf.cameras[0] is first
    assert zs[10] == pytest.approx(1.0, abs=1e-5) and zs[-1] == pytest.approx(0.0, abs=1e-5) and min(zs) >= 0
    llff = make_trajectory("llff", first, CD, n=40, angle=5.0)
    assert len(llff) == 40 and llff.cameras[0] is first
    pivot = torch.tensor([[0.0, 0.0, CD]])
    for c in llff.cameras:
        uv, z = project_points(pivot, c)
        assert torch.allclose(uv[0], torch.tensor([256.0, 256.0]), atol=1e-3)
        assert rot_angle(first.c2w, c.c2w) <= 5.0 + 1e-3
    assert max(rot_angle(first.c2w, c.c2w) for c in llff.cameras) == pytest.approx(5.0, abs=0.1)
    steps = [rot_angle(a.c2w, b.c2w) for a, b in zip(llff.cameras, llff.cameras[1:])]
    assert max(steps) < 2.0  # smooth


def test_every_preset_composes_with_a_posed_first_camera(first, posed_first):
    for name, fn in PRESETS.items():
        params = SMALL.get(name, {})
        a = fn(first, CD, **params)
        b = fn(posed_first, CD, **params)
        assert len(a) == len(b) and b.cameras[0] is posed_first, name
        assert torch.allclose(relative(first, a), relative(posed_first, b), atol=1e-5), name
        assert all(torch.equal(c.K, posed_first.K) and c.width == 640 for c in b.cameras), name


def test_registry_and_make_trajectory(first):
    assert set(GENERATION_PRESETS) | set(RENDER_PRESETS) == set(PRESETS)
    with pytest.raises(ValueError, match="unknown trajectory preset 'spiral'.*lookaround.*llff"):
        make_trajectory("spiral", first, CD)
    with pytest.raises(ValueError, match="no parameter 'steps'.*n, distance"):
        make_trajectory("forward", first, CD, steps=3)


@pytest.mark.parametrize("call, message", [
    (lambda f: lookaround(f, 0.0), "center_depth"),
    (lambda f: lookaround(f, float("nan")), "center_depth"),
    (lambda f: lookaround(f, CD, yaws=(40, 20)), "yaws"),
    (lambda f: lookaround(f, CD, pitches=(95,)), "pitches"),
    (lambda f: make_trajectory("rotate360", f, CD, n=0), "n must be"),
    (lambda f: make_trajectory("rotate360", f, CD, order="spin"), "order"),
    (lambda f: make_trajectory("forward", f, CD, distance=-1.0), "distance"),
    (lambda f: make_trajectory("orbit", f, CD, angle=200.0), "angle"),
    (lambda f: make_trajectory("headbanging", f, CD, max_yaw=0.0, max_pitch=0.0), "max_yaw"),
    (lambda f: lookaround("camera", CD), "first must be a Camera"),
])
def test_preset_parameters_are_validated(first, call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call(first)


def test_single_camera_helpers(first):
    turned = rotate_camera(first, yaw=20.0, pitch=10.0)
    assert yaw_pitch(turned) == pytest.approx((20.0, 10.0), abs=1e-4)
    moved = orbit_camera(first, 3.0, yaw=5.0, elevation=5.0)
    uv, z = project_points(torch.tensor([[0.0, 0.0, 3.0]]), moved)
    assert torch.allclose(uv[0], torch.tensor([256.0, 256.0]), atol=1e-3) and float(z[0]) == pytest.approx(3.0)
    assert float(moved.center[0]) > 0 and float(moved.center[1]) < 0  # right and up (-y)


# ------------------------------------------------------------------------------------------------
# Trajectory container
# ------------------------------------------------------------------------------------------------
def test_trajectory_validates_and_resolves_prompts(first):
    traj = Trajectory([first, first], [None, "a door"])
    assert traj.resolved_prompts("a room") == ["a room", "a door"]
    assert traj.c2w.shape == (2, 4, 4)
    with pytest.raises(ValueError, match="2 cameras but 1 prompts"):
        Trajectory([first, first], ["x"])
    with pytest.raises(ValueError, match="at least one camera"):
        Trajectory([])
    with pytest.raises(TypeError, match="prompts\\[0\\]"):
        Trajectory([first], [3])


# ------------------------------------------------------------------------------------------------
# Interpolation
# ------------------------------------------------------------------------------------------------
def test_interpolation_hits_keyframes_and_stays_rigid(first, posed_first):
    k0 = first
    k1 = Camera.from_focal(800.0, 512, 512, rotate_camera(first, yaw=170.0, pitch=30.0).c2w.clone())
    k1.c2w[:3, 3] = torch.tensor([1.0, 2.0, 3.0])
    k2 = posed_first.resized(512, 512)
    for position in ("linear", "catmull_rom"):
        cams = interpolate_cameras([k0, k1, k2], [7, 5], position=position)
        assert len(cams) == 13
        assert cams[0] is k0 and cams[7] is k1 and cams[12] is k2
        for c in cams:  # Camera() runs check_rigid; check tighter here
            r = c.c2w[:3, :3].double()
            assert torch.allclose(r.T @ r, torch.eye(3, dtype=torch.float64), atol=1e-5)
            assert torch.det(r) > 0
        steps = [rot_angle(a.c2w, b.c2w) for a, b in zip(cams[:7], cams[1:8])]
        assert steps == pytest.approx([rot_angle(k0.c2w, k1.c2w) / 7] * 7, abs=1e-3)  # constant-speed slerp
    lin = interpolate_cameras([k0, k1], 3)  # a total: k0, middle, k1
    assert len(lin) == 3
    assert lin[1].fx == pytest.approx(math.sqrt(582.69 * 800.0), rel=1e-5)  # geometric focal
    assert torch.allclose(lin[1].center, torch.tensor([0.5, 1.0, 1.5]), atol=1e-5)
    with pytest.raises(ValueError, match="share one image size"):
        interpolate_cameras([first, posed_first], 4)
    with pytest.raises(ValueError, match="cannot hit 3 keyframes"):
        interpolate_cameras([k0, k1, k0], 2)


# ------------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------------
def _assert_same(a: Trajectory, b: Trajectory, atol: float = 1e-6) -> None:
    assert len(a) == len(b) and a.prompts == b.prompts
    for x, y in zip(a.cameras, b.cameras):
        assert (x.width, x.height) == (y.width, y.height)
        assert torch.allclose(x.c2w, y.c2w, atol=atol) and torch.allclose(x.K, y.K, atol=atol)


@pytest.mark.parametrize("convention", ["opencv", "opengl"])
def test_json_round_trip(tmp_path, posed_first, convention):
    traj = make_trajectory("orbit", posed_first, CD, n=5)
    traj.prompts[2] = "a staircase"
    path = tmp_path / "sub" / "traj.json"
    save_trajectory(path, traj, convention=convention)
    data = json.loads(path.read_text())
    assert data["convention"] == convention
    if convention == "opengl":  # the file holds OpenGL axes, the loader converts them back
        assert np.allclose(data["cameras"][1]["c2w"], opencv_to_opengl(traj.cameras[1].c2w).tolist(), atol=1e-7)
    _assert_same(load_trajectory(path), traj)
    _assert_same(load_trajectory(data), traj)
    assert not list(path.parent.glob(".*.tmp*"))  # atomic write leaves no temporary file


def test_a_runs_cameras_json_loads_as_its_cameras(tmp_path, posed_first):
    """The cameras.json a run exports (its cameras beside index, image path, prompt and alignment
    figures) is a trajectory file: it loads back as the run's cameras (it was refused for its
    'depth' key). Its prompts record the old run's; the new run's prompt applies."""
    from dreamer.pipeline.exports import write_cameras_json
    from dreamer.scene.result import DreamView

    cams = make_trajectory("orbit", posed_first, CD, n=5).cameras
    cams[3] = Camera(cams[3].K * torch.tensor([[1.2], [1.2], [1.0]]), cams[3].c2w, 512, 512)  # its own zoom
    views = [DreamView(c, torch.zeros(1, 1, 3), torch.ones(1, 1), torch.zeros(1, 1, dtype=torch.bool),
                       prompt=f"view {i}\x1b", stats={"rmse": float("nan"), "n": i}) for i, c in enumerate(cams)]
    path = tmp_path / "cameras.json"
    write_cameras_json(path, cams, views)
    loaded = load_trajectory(path)
    _assert_same(loaded, Trajectory(cams))
    assert loaded.prompts == [None] * 5
    data = json.loads(path.read_text())
    for bad, message in [({"depth": "ray length"}, "'depth' marks a run's cameras.json and must be 'z-depth'"),
                         ({"prompts": ["a"] * 5}, "pass --prompts instead")]:
        with pytest.raises(TrajectoryFileError, match=message):
            load_trajectory({**data, **bad})
    with pytest.raises(TrajectoryFileError, match="unknown key.*'stats'"):  # only a run's file has them
        load_trajectory({k: v for k, v in data.items() if k != "depth"})


def test_opengl_flag_converts_axes(first):
    gl = opencv_to_opengl(torch.eye(4)).tolist()  # an OpenGL camera looking down -z = OpenCV identity
    traj = load_trajectory({"convention": "opengl", "cameras": [{"c2w": gl}]}, first)
    assert torch.allclose(traj.cameras[0].c2w, torch.eye(4))
    assert torch.equal(traj.cameras[0].K, first.K)  # missing intrinsics come from first


def test_intrinsics_and_sizes_from_the_file_or_first(first):
    eye = torch.eye(4).tolist()
    traj = load_trajectory({
        "width": 256, "height": 128, "fov": 90.0,
        "cameras": [{"c2w": eye}, {"c2w": eye, "focal": 100.0}, {"c2w": eye, "width": 64, "height": 64,
                                                                  "K": [[50, 0, 30], [0, 60, 31], [0, 0, 1]]}],
    }, first)
    c0, c1, c2 = traj.cameras
    assert (c0.width, c0.height) == (256, 128) and c0.fx == pytest.approx(128.0) and c0.cx == 128.0
    assert c1.fx == 100.0 and c1.cy == 64.0
    assert (c2.width, c2.fx, c2.fy, c2.cx) == (64, 50.0, 60.0, 30.0)
    only_first = load_trajectory([{"c2w": eye, "width": 1024, "height": 1024}], first)
    assert only_first.cameras[0].fx == pytest.approx(2 * 582.69, rel=1e-6)  # first's K, resized


def test_keyframe_files(first):
    eye = torch.eye(4)
    far = eye.clone()
    far[:3, :3] = rotation_y(90.0)
    far[:3, 3] = torch.tensor([0.0, 0.0, 4.0])
    data = {"keyframes": [{"c2w": eye.tolist(), "frames": 4, "prompt": "a hall"},
                          {"c2w": far.tolist(), "fov": 30.0}]}
    traj = load_trajectory(data, first)
    assert len(traj) == 5
    assert traj.cameras[0].c2w.tolist() == eye.tolist() and torch.allclose(traj.cameras[4].c2w, far, atol=1e-6)
    assert torch.allclose(traj.cameras[2].center, torch.tensor([0.0, 0.0, 2.0]), atol=1e-6)
    assert rot_angle(eye, traj.cameras[2].c2w) == pytest.approx(45.0, abs=1e-3)
    assert traj.prompts == ["a hall"] * 4 + [None]
    total = load_trajectory({"frames": 9, "interpolation": "catmull_rom",
                             "keyframes": [{"c2w": eye.tolist()}, {"c2w": far.tolist()}, {"c2w": eye.tolist()}]},
                            first)
    assert len(total) == 9 and torch.allclose(total.cameras[4].c2w, far, atol=1e-6)


def test_example_files_load(first):
    files = sorted(EXAMPLES.glob("*.json"))
    assert len(files) >= 2
    for path in files:
        traj = load_trajectory(path, first)
        assert len(traj) >= 2, path.name
        assert torch.allclose(traj.cameras[0].center, torch.zeros(3)), path.name


def test_nerfstudio_transforms_json(first):
    c2w_gl = opencv_to_opengl(rotate_camera(first, yaw=30.0).c2w).tolist()
    data = {"fl_x": 300.0, "fl_y": 310.0, "cx": 100.0, "cy": 80.0, "w": 200, "h": 160,
            "frames": [{"file_path": "images/0.png", "transform_matrix": c2w_gl}]}
    cam = load_trajectory(data).cameras[0]
    assert (cam.width, cam.height, cam.fx, cam.fy, cam.cx) == (200, 160, 300.0, 310.0, 100.0)
    assert yaw_pitch(cam) == pytest.approx((30.0, 0.0), abs=1e-4)


# -- bad input ------------------------------------------------------------------------------------
def test_invalid_json_names_file_line_and_column(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "cameras": [\n    {"c2w": [[1, 0, 0, 0],]}\n  ]\n}\n')
    with pytest.raises(TrajectoryFileError, match=r"broken\.json: not valid JSON: .* line 3, column \d+"):
        load_trajectory(path)


def _bad(first, camera_2: dict, **top):
    eye = torch.eye(4).tolist()
    return {"cameras": [{"c2w": eye}, {"c2w": eye}, camera_2], **top}


@pytest.mark.parametrize("data, message", [
    (lambda: _bad(None, {"c2w": torch.eye(4)[:3].tolist()}), r"camera 2: c2w must be 4x4 .* got 3x4"),
    (lambda: _bad(None, {"c2w": [[1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}), r"camera 2: c2w must be 4x4"),
    (lambda: _bad(None, {"c2w": torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0])).tolist()}),
     r"camera 2: c2w is non-rigid.*R\^T R - I"),
    (lambda: _bad(None, {"c2w": torch.eye(4).tolist(), "width": float("inf")}), r"camera 2: width \(pixels\) must be"),
    (lambda: _bad(None, {"c2w": torch.diag(torch.tensor([1.0, 1.0, -1.0, 1.0])).tolist()}),
     r"camera 2: c2w is non-rigid.*reflection"),
    (lambda: _bad(None, {"c2w": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]]}),
     r"camera 2: c2w is non-rigid"),
    (lambda: _bad(None, {"K": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}), r"camera 2: missing 'c2w'"),
    (lambda: _bad(None, {"c2w": torch.eye(4).tolist(), "fov": 200}), r"camera 2: fov must be"),
    (lambda: _bad(None, {"c2w": torch.eye(4).tolist(), "fov": 50, "focal": 50}), r"camera 2: give at most one"),
    (lambda: _bad(None, {"c2w": torch.eye(4).tolist(), "K": [[-5, 0, 1], [0, 5, 1], [0, 0, 1]]}),
     r"camera 2: K needs positive"),
    (lambda: _bad(None, {"c2w": torch.eye(4).tolist(), "width": 12.5}),
     r"camera 2: width \(pixels\) must be an integer >= 1"),
    (lambda: _bad(None, {"c2w": torch.eye(4).tolist(), "prompt": 5}), r"camera 2: prompt must be a string"),
    (lambda: _bad(None, {"c2w": torch.eye(4).tolist(), "pose": 1}), r"camera 2: unknown key\(s\) 'pose'"),
    (lambda: _bad(None, {"c2w": torch.eye(4).tolist()}, prompts=["a", "b"]),
     r"'prompts' has 2 entries but there are 3 cameras"),
    (lambda: _bad(None, {"c2w": torch.eye(4).tolist(), "prompt": "x"}, prompts=["a", "b", "c"]), r"not both"),
    (lambda: _bad(None, {"c2w": torch.eye(4).tolist()}, convention="blender"), r"'convention' must be"),
    (lambda: _bad(None, {"c2w": torch.eye(4).tolist()}, camera=[]), r"unknown top-level key\(s\) 'camera'"),
    (lambda: {"cameras": []}, r"zero cameras"),
    (lambda: [], r"zero cameras"),
    (lambda: {"convention": "opencv"}, r"neither, so zero cameras"),
    (lambda: {"keyframes": [{"c2w": torch.eye(4).tolist(), "frames": 3}, {"c2w": torch.eye(4).tolist(), "frames": 2}]},
     r"keyframe 1: is the last keyframe"),
    (lambda: {"keyframes": [{"c2w": torch.eye(4).tolist()}, {"c2w": torch.eye(4).tolist()}]},
     r"keyframe 0: has no 'frames'"),
    (lambda: {"keyframes": [{"c2w": torch.eye(4).tolist(), "frames": 0}, {"c2w": torch.eye(4).tolist()}]},
     r"keyframe 0: 'frames' must be an integer >= 1"),
    (lambda: {"frames": 1, "keyframes": [{"c2w": torch.eye(4).tolist()}, {"c2w": torch.eye(4).tolist()}]},
     r"'frames' .* must be an integer >= 2"),
    (lambda: {"frames": 5, "cameras": [{"c2w": torch.eye(4).tolist()}]}, r"only applies to 'keyframes'"),
])
def test_bad_files_raise_clear_errors(tmp_path, first, data, message):
    path = tmp_path / "traj.json"
    path.write_text(json.dumps(data()))
    with pytest.raises(TrajectoryFileError, match=rf"traj\.json: {message}|traj\.json: .*{message}"):
        load_trajectory(path, first)
    with pytest.raises(TrajectoryFileError, match=r"<trajectory dict>"):
        load_trajectory(data(), first)


def test_missing_intrinsics_without_first_camera():
    with pytest.raises(TrajectoryFileError, match=r"camera 0: no width"):
        load_trajectory({"cameras": [{"c2w": torch.eye(4).tolist()}]})
    with pytest.raises(TrajectoryFileError, match=r"camera 0: no intrinsics"):
        load_trajectory({"width": 64, "height": 64, "cameras": [{"c2w": torch.eye(4).tolist()}]})


# ------------------------------------------------------------------------------------------------
# Scene-centre depth
# ------------------------------------------------------------------------------------------------
def test_center_depth_is_the_median_of_the_central_patch():
    depth = torch.full((1080, 1920), 10.0)
    depth[1080 // 2 - 60:1080 // 2 + 60, 1920 // 2 - 100:1920 // 2 + 100] = 3.0
    depth[540, 960] = 1e6  # one outlier does not move the median
    assert center_depth_from(depth) == pytest.approx(3.0)
    assert center_depth_from(depth.numpy()) == pytest.approx(3.0)


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (7, 2), (512, 512), (2048, 3072)])
def test_center_depth_is_finite_for_any_size(shape):
    depth = torch.rand(shape) + 0.5
    d = center_depth_from(depth)
    assert math.isfinite(d) and 0.5 <= d <= 1.5


def test_center_depth_skips_invalid_values_and_fails_clearly():
    depth = torch.full((64, 64), 4.0)
    depth[24:40, 24:40] = float("nan")  # a hole in the centre: the whole map is used instead
    assert center_depth_from(depth) == pytest.approx(4.0)
    depth[28:36, 28:36] = 0.0
    assert center_depth_from(depth) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="no finite positive"):
        center_depth_from(torch.zeros(8, 8))
    with pytest.raises(ValueError, match=r"\[H,W\]"):
        center_depth_from(torch.ones(1, 8, 8))
    with pytest.raises(ValueError, match="fraction"):
        center_depth_from(torch.ones(8, 8), fraction=0.0)
