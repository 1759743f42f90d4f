"""Extending a finished scene ("Dream here"), without a browser: the scene grows, the CLI
reproduces it from its config.json byte for byte, undo restores every file, a failed extension
leaves the scene as it was; and per-job log files when two scenes run at once."""

from __future__ import annotations

import hashlib
import logging
import shutil
import threading
from pathlib import Path

import pytest
import torch

from dreamer.backends.model_sets import ModelConfig, build_backends
from dreamer.io import read_json
from dreamer.pipeline import configs_from_flat, run_scene
from dreamer.pipeline.extend import (dream_here_cameras, extend_scene, list_extensions, scene_camera,
                                     undo_extension)
from dreamer.pointcloud import PointCloud
from dreamer.run import main
from dreamer.splats import Gaussians
from dreamer.trajectories import load_trajectory, rotate_camera

BASE = ["--models", "synthetic", "--views", "2", "--width", "64", "--height", "64", "--gs-iters", "10",
        "--render-frames", "8", "--extension-iterations", "5", "-q"]
# The files "Dream here" rewrites, and the folder it adds views to.
TOP = ("gaussians.ply", "points.ply", "cameras.json", "transforms.json", "config.json", "DONE")


def _digests(scene: Path) -> dict[str, str]:
    files = {name: scene / name for name in TOP}
    files |= {f"views/{p.name}": p for p in sorted((scene / "views").iterdir())}
    return {name: hashlib.sha256(p.read_bytes()).hexdigest() for name, p in files.items()}


@pytest.fixture(scope="module")
def base_scene(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("extend") / "base"
    assert main([*BASE, "--out", str(out)]) == 0
    return out


@pytest.fixture
def scene(base_scene, tmp_path) -> Path:
    copy = tmp_path / "scene"
    shutil.copytree(base_scene, copy)
    return copy


@pytest.fixture(scope="module")
def backends():
    return build_backends(ModelConfig(models="synthetic"))


def _new_camera(scene: Path, yaw: float = 25.0):
    """A camera turned away from the last view: most of what it sees is not dreamed yet."""
    last = read_json(scene / "cameras.json")["cameras"][-1]
    return rotate_camera(scene_camera(scene, torch.tensor(last["c2w"])), yaw=yaw)


@pytest.mark.slow  # a tiny scene is dreamed and its splats trained first
def test_an_extension_grows_the_scene_and_undo_restores_every_file(scene, backends):
    before = _digests(scene)
    n_points = len(PointCloud.load_ply(scene / "points.ply"))
    n_gaussians = len(Gaussians.load_ply(scene / "gaussians.ply"))
    record = extend_scene(scene, dream_here_cameras(_new_camera(scene), around=1), backends, prompt="a new wing")
    assert (record.index, record.cameras, record.views_before, record.views_after) == (1, 2, 2, 4)
    assert record.points_before == n_points and record.gaussians_before == n_gaussians
    assert len(PointCloud.load_ply(scene / "points.ply")) == record.points_after > n_points
    assert len(Gaussians.load_ply(scene / "gaussians.ply")) == record.gaussians_after > n_gaussians
    assert len(read_json(scene / "cameras.json")["cameras"]) == 4
    assert len(read_json(scene / "transforms.json")["frames"]) == 4
    assert (scene / "views" / "003.png").exists() and (scene / "views" / "003_depth.npy").exists()
    # the extension is recorded: its cameras as a trajectory file, listed in config.json
    config = read_json(scene / "config.json")
    assert config["scene"]["extensions"] == [record.trajectory]
    traj = load_trajectory(record.trajectory)
    assert len(traj.cameras) == 2 and traj.prompts == ["a new wing", "a new wing"]
    assert (scene / "DONE").read_text().strip() == config["hash"]
    assert list_extensions(scene) == [record]
    # the existing views are kept as they were (no second joint refinement)
    for name in ("views/000.png", "views/001_depth.npy"):
        assert _digests(scene)[name] == before[name]
    undone = undo_extension(scene)
    assert undone == record
    assert _digests(scene) == before
    assert not (scene / "extensions" / "001").exists() and list_extensions(scene) == []
    assert undo_extension(scene) is None


@pytest.mark.slow  # a tiny scene is dreamed and its splats trained first
def test_the_cli_reproduces_an_extended_scene_from_its_config(scene, backends, tmp_path):
    extend_scene(scene, [_new_camera(scene, 25.0)], backends)
    second = extend_scene(scene, [_new_camera(scene, 20.0)], backends)
    assert second.index == 2 and second.views_before == 3 and second.gaussians_before > 0
    copy = tmp_path / "copy"
    assert main(["--config", str(scene / "config.json"), "--out", str(copy), "-q"]) == 0
    for name in ("gaussians.ply", "points.ply", "cameras.json", "views/003.png"):
        assert (copy / name).read_bytes() == (scene / name).read_bytes(), name
    # the copy dreamed its extensions itself (in its own folder), it did not load the original's
    assert (copy / "extensions" / "002" / "extension.json").exists()
    assert read_json(copy / "extensions" / "002" / "extension.json")["fingerprint"] == second.fingerprint
    # a rerun in place finds everything done
    stamp = (scene / "gaussians.ply").stat().st_mtime_ns
    assert main(["--config", str(scene / "config.json"), "--out", str(scene), "-q"]) == 0
    assert (scene / "gaussians.ply").stat().st_mtime_ns == stamp


@pytest.mark.slow  # a tiny scene is dreamed and its splats trained first
def test_a_failed_extension_leaves_the_scene_as_it_was(scene, backends):
    class Broken:
        def inpaint(self, *args, **kwargs):
            raise RuntimeError("the inpainter broke")

    before = _digests(scene)
    broken = type("B", (), {"inpainter": Broken(), "depth_estimator": backends.depth_estimator})()
    with pytest.raises(RuntimeError, match="the inpainter broke"):
        extend_scene(scene, [_new_camera(scene)], broken)
    assert _digests(scene) == before
    assert not (scene / "extensions" / "001").exists()
    assert "the inpainter broke" not in (scene / "config.json").read_text()


@pytest.mark.slow  # a tiny scene is dreamed and its splats trained first
def test_extension_cameras_must_have_the_scenes_size(scene, backends):
    cam = _new_camera(scene).resized(32, 32)
    with pytest.raises(ValueError, match=r"camera 0 is 32x32; an extension's cameras have the scene's size, 64x64"):
        extend_scene(scene, [cam], backends)
    assert read_json(scene / "config.json")["scene"]["extensions"] == []


def test_dream_here_cameras_turn_right_then_left():
    from dreamer.cameras import Camera

    cam = Camera.from_focal(50.0, 64, 64)
    cams = dream_here_cameras(cam, around=3, degrees=10.0)
    yaws = [float(torch.rad2deg(torch.atan2(c.forward[0], c.forward[2]))) for c in cams]
    assert yaws == pytest.approx([0.0, 10.0, -10.0, 20.0], abs=1e-4)
    assert all(torch.allclose(c.center, cam.center) for c in cams)
    with pytest.raises(ValueError, match="around must be"):
        dream_here_cameras(cam, around=9)


def test_concurrent_scenes_write_only_their_own_log(tmp_path, caplog):
    """Two jobs in two threads of one process (the app with --concurrency 2): each run.log holds
    its own scene's lines and none of the other's."""
    caplog.set_level(logging.INFO)
    backends = build_backends(ModelConfig(models="synthetic"))
    both_running = threading.Barrier(2, timeout=300)  # generous: a loaded CI machine
    errors = []

    def job(name: str, trajectory: str):
        met = []

        def on_progress(stage, done, total):
            if not met:  # both jobs log while both are inside their log's scope
                met.append(both_running.wait())
                logging.getLogger("tests").info("%s is running", name)
                both_running.wait()

        try:
            configs = configs_from_flat({"models": "synthetic", "views": 2, "width": 32, "height": 32,
                                         "trajectory": trajectory})  # splats off by default
            run_scene(configs, tmp_path / name, backends, on_progress=on_progress, name=name)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=job, args=("scene-a", "lookaround")),
               threading.Thread(target=job, args=("scene-b", "forward"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    log_a, log_b = (tmp_path / "scene-a" / "run.log").read_text(), (tmp_path / "scene-b" / "run.log").read_text()
    assert "scene-a is running" in log_a and "scene-a: AbsRel" in log_a
    assert "scene-b is running" in log_b and "scene-b: AbsRel" in log_b
    assert "scene-b" not in log_a and "scene-a" not in log_b
