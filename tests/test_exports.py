"""The scene folder's files as other tools read them: transforms.json the way nerfstudio's
dataparser reads it (a reader written here after nerfstudio's logic; nerfstudio itself needs
torchvision and open3d, which cannot be installed here)."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dreamer import Camera, dream
from dreamer.backends.synthetic import WorldDepthEstimator, WorldInpainter
from dreamer.cameras import opengl_to_opencv
from dreamer.pipeline.exports import write_scene
from dreamer.trajectories import center_depth_from, make_trajectory
from dreamer.worlds import ProceduralWorld


def read_like_nerfstudio(folder: Path, depth_unit_scale_factor: float = 1e-3) -> dict:
    """What nerfstudio's ``Nerfstudio`` dataparser and ``InputDataset`` make of ``transforms.json``:
    frames sorted by file name; intrinsics from the top level when given there, else per frame;
    ``mask_path`` and ``depth_file_path`` for every frame or for none; a mask trains the pixels
    where it is non-zero; a 16-bit depth PNG times ``depth_unit_scale_factor`` is metres."""
    meta = json.loads((folder / "transforms.json").read_text())
    frames = sorted(meta["frames"], key=lambda f: f["file_path"])
    images, masks, depths, c2w, intrinsics = [], [], [], [], []
    for frame in frames:
        images.append(folder / frame["file_path"])
        if "mask_path" in frame:
            masks.append(folder / frame["mask_path"])
        if "depth_file_path" in frame:
            depths.append(folder / frame["depth_file_path"])
        c2w.append(np.array(frame["transform_matrix"], dtype=np.float64))
        intrinsics.append([float(meta[k]) if k in meta else float(frame[k]) for k in ("fl_x", "fl_y", "cx", "cy")]
                          + [int(meta[k]) if k in meta else int(frame[k]) for k in ("w", "h")])
    assert len(masks) in (0, len(images)) and len(depths) in (0, len(images))
    out = {"images": images, "c2w_opengl": c2w, "intrinsics": intrinsics, "depths": [], "trained": []}
    for i, path in enumerate(images):
        w, h = Image.open(path).size
        assert (w, h) == tuple(intrinsics[i][4:])
        trained = np.array(Image.open(masks[i])) > 0 if masks else np.ones((h, w), dtype=bool)
        out["trained"].append(trained if trained.ndim == 2 else trained[..., 0])
        if depths:
            out["depths"].append(np.array(Image.open(depths[i])).astype(np.float32) * depth_unit_scale_factor)
    return out


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    world = ProceduralWorld()
    cam = Camera.from_fov(50.0, 64, 64)
    truth = world.render(cam)
    traj = make_trajectory("lookaround", cam, center_depth_from(truth.depth), n=3)
    result = dream(truth.image, traj.cameras, "a room", inpainter=WorldInpainter(world),
                   depth_estimator=WorldDepthEstimator(world, seed=1), depth=truth.depth)
    folder = tmp_path_factory.mktemp("scene")
    write_scene(folder, result)
    return folder, result


def test_nerfstudio_trains_on_every_pixel_of_every_dreamed_view(scene):
    folder, result = scene
    data = read_like_nerfstudio(folder)
    assert len(data["images"]) == len(result.views) == 3
    # The views' own masks mark only where new points came from: nerfstudio must not see them as
    # "train only here" masks.
    assert any(float(v.mask.float().mean()) < 0.9 for v in result.views[1:])
    for trained in data["trained"]:
        assert trained.all()


def test_nerfstudio_reads_our_cameras_and_depth(scene):
    folder, result = scene
    data = read_like_nerfstudio(folder)
    for view, c2w_gl, (fx, fy, cx, cy, w, h), depth in zip(result.views, data["c2w_opengl"], data["intrinsics"],
                                                          data["depths"]):
        cam = view.camera
        assert (fx, fy, cx, cy, w, h) == pytest.approx((cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height))
        assert torch.allclose(opengl_to_opencv(torch.tensor(c2w_gl, dtype=torch.float32)), cam.c2w.cpu(), atol=1e-5)
        assert np.abs(depth - view.depth.numpy()).max() <= 0.5e-3 + 1e-6  # millimetre PNG, rounded


def test_nerfstudio_reads_each_views_own_intrinsics_when_the_field_of_view_changes(tmp_path):
    """A trajectory that zooms (a keyframe with another fov): nerfstudio takes a top-level
    intrinsic for every frame, so only what all views share is written there; each frame reads
    back with its own focal length, and our trajectory reader agrees."""
    from dreamer.trajectories import load_trajectory

    world = ProceduralWorld()
    cam = Camera.from_fov(50.0, 48, 32)
    truth = world.render(cam)
    cams = make_trajectory("lookaround", cam, center_depth_from(truth.depth), n=3).cameras
    cams = [cams[0]] + [Camera(Camera.from_fov(fov, 48, 32).K, c.c2w, 48, 32) for fov, c in zip((40.0, 30.0), cams[1:])]
    result = dream(truth.image, cams, "a room", inpainter=WorldInpainter(world),
                   depth_estimator=WorldDepthEstimator(world, seed=1), depth=truth.depth)
    write_scene(tmp_path, result)
    seen = read_like_nerfstudio(tmp_path)["intrinsics"]
    assert [fx for fx, *_ in seen] == pytest.approx([c.fx for c in cams])
    assert len({round(fx, 3) for fx, *_ in seen}) == 3
    meta = json.loads((tmp_path / "transforms.json").read_text())
    assert "fl_x" not in meta and (meta["w"], meta["h"], meta["cx"], meta["cy"]) == (48, 32, 24.0, 16.0)
    ours = load_trajectory(tmp_path / "transforms.json").cameras
    assert all(torch.allclose(a.K, b.K) for a, b in zip(ours, cams))


def test_a_scene_of_one_camera_writes_files_strict_readers_take(tmp_path):
    """One camera: no dreamed view, so the depth metrics have no data (NaN). Every JSON file is
    standard JSON (what JavaScript's JSON.parse and jq read: null, not NaN), and transforms.json
    holds the one frame, read as nerfstudio reads it."""
    from dreamer.io import write_json
    from dreamer.scene.metrics import world_metrics

    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    world = ProceduralWorld()
    cam = Camera.from_fov(50.0, 32, 32)
    truth = world.render(cam)
    estimator = WorldDepthEstimator(world, seed=1)
    result = dream(truth.image, [cam], "a room", inpainter=WorldInpainter(world), depth_estimator=estimator,
                   depth=truth.depth)
    write_scene(tmp_path, result)
    metrics = world_metrics(result, world, estimator)
    assert math.isnan(metrics["abs_rel_aligned"])
    write_json(tmp_path / "metrics.json", metrics)
    for name in ("metrics.json", "cameras.json", "transforms.json"):
        json.loads((tmp_path / name).read_text(), parse_constant=refuse)
    assert json.loads((tmp_path / "metrics.json").read_text())["abs_rel_aligned"] is None
    seen = read_like_nerfstudio(tmp_path)
    assert len(seen["images"]) == 1 and seen["trained"][0].all()
    assert np.allclose(opengl_to_opencv(torch.tensor(seen["c2w_opengl"][0])).numpy(), cam.c2w.numpy(), atol=1e-6)


@pytest.mark.parametrize("loader", ["points", "gaussians"])
def test_a_file_that_is_no_ply_is_a_value_error_naming_it(tmp_path, loader):
    """A PNG or a text file renamed .ply, an empty file, a truncated PLY, a header whose counts
    the data lacks, list properties: each a ValueError naming the file and what was expected
    (PointCloud.load_ply raised plyfile's exceptions, numpy's or a UnicodeDecodeError); non-finite
    points are refused on reading as on writing."""
    from dreamer.pointcloud import PointCloud
    from dreamer.splats import Gaussians

    load = PointCloud.load_ply if loader == "points" else Gaussians.load_ply
    good = tmp_path / "good.ply"
    PointCloud(torch.rand(40, 3), torch.rand(40, 3), torch.full((40,), 0.01)).save_ply(good)
    data = good.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    Image.new("RGB", (4, 4)).save(tmp_path / "photo.ply", format="PNG")
    files = {
        "photo.ply": None, "text.ply": b"x y z\n1 2 3\n", "empty.ply": b"",
        "truncated.ply": data[: end + 100], "header.ply": data[: end - 5],
        "counts.ply": data.replace(b"element vertex 40", b"element vertex -4"),
        "latin1.ply": b"ply\nformat ascii 1.0\ncomment caf\xe9\nelement vertex 1\nproperty float x\nend_header\n1\n",
        "lists.ply": (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty list uchar float x\nproperty float y\n"
                      b"property float z\nend_header\n2 1 2 3 4\n"),
    }
    for name, content in files.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=rf"^{re.escape(str(tmp_path / name))}: .*expected a .*PLY") as e:
            load(tmp_path / name)
        assert type(e.value) is ValueError, name
    if loader == "points":
        arr = np.frombuffer(data[end:], dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"),
                                               ("b", "u1"), ("radius", "<f4")]).copy()
        arr["y"][7] = np.inf
        (tmp_path / "inf.ply").write_bytes(data[:end] + arr.tobytes())
        with pytest.raises(ValueError, match="inf.ply: 1 of 40 points have non-finite x y z .*index 7"):
            load(tmp_path / "inf.ply")
        assert len(load(good)) == 40


def test_points_ply_round_trip_and_edge_clouds(tmp_path):
    """points.ply as an independent reader (plyfile) and ours read it: float32 x y z, uchar
    colours rounded from [0, 1] (clamped outside), the radius; one point and no point at all
    are files both read. NaN or inf anywhere (a float64 value beyond float32 too) is refused
    before anything is written: a viewer would frame the cloud around it and show garbage."""
    from plyfile import PlyData

    from dreamer.pointcloud import PointCloud

    xyz = torch.tensor([[0.5, -1.25, 3.0], [1e-3, 2.0, -7.5]])
    rgb = torch.tensor([[0.0, 0.5, 1.0], [-0.2, 1.3, 0.25]])
    radius = torch.tensor([0.01, 0.5])
    PointCloud(xyz, rgb, radius).save_ply(tmp_path / "p.ply")
    v = PlyData.read(str(tmp_path / "p.ply"))["vertex"].data
    assert list(v.dtype.names) == ["x", "y", "z", "red", "green", "blue", "radius"]
    assert np.array_equal(np.stack([v["x"], v["y"], v["z"]], 1), xyz.numpy())
    assert np.stack([v["red"], v["green"], v["blue"]], 1).tolist() == [[0, 128, 255], [0, 255, 64]]
    back = PointCloud.load_ply(tmp_path / "p.ply")
    assert torch.equal(back.xyz, xyz) and torch.equal(back.radius, radius)
    for n in (1, 0):
        PointCloud(xyz[:n], rgb[:n].clamp(0, 1), radius[:n]).save_ply(tmp_path / f"{n}.ply")
        assert len(PlyData.read(str(tmp_path / f"{n}.ply"))["vertex"].data) == n
        assert len(PointCloud.load_ply(tmp_path / f"{n}.ply")) == n
    bad = tmp_path / "bad"
    for name, cloud in (("xyz", PointCloud(xyz.clone().index_fill_(0, torch.tensor([1]), math.nan), rgb, radius)),
                        ("rgb", PointCloud(xyz, rgb.clone().index_fill_(0, torch.tensor([1]), math.nan), radius)),
                        ("radius", PointCloud(xyz, rgb, torch.tensor([0.01, math.inf]))),
                        ("xyz", PointCloud(xyz.double() * torch.tensor([1.0, 1e39]).double()[:, None], rgb,
                                           radius))):
        with pytest.raises(ValueError, match=f"PointCloud.{name} has NaN or inf.* 1 of 2 points .*index 1"):
            cloud.save_ply(bad / "points.ply")
        assert not bad.exists() or list(bad.iterdir()) == []
