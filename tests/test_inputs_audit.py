"""What the input audit found, held in place: valid but unusual inputs that must work, and the
checks behind refusals that tests/test_bad_inputs.py runs through the command line.

Everything here goes through the parser, the planner and the checks themselves (no dream runs),
so the file takes about a second.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from dreamer.cameras import FOV_RANGE, Camera, check_input_camera, fov_from_focal, intrinsics_matrix
from dreamer.cli import parse_json
from dreamer.pipeline.folder import NotASceneFolder, check_scene_folder
from dreamer.pipeline.inputs import load_image
from dreamer.pipeline.limits import Limits
from dreamer.pipeline.settings import SceneConfig
from dreamer.run import build_parser, plan_jobs

SMALL = ["--models", "synthetic", "--width", "64", "--height", "64", "--views", "2", "--no-splats", "-q"]


def _plan(*argv):
    return plan_jobs(build_parser().parse_args([*map(str, argv)]), Limits())


# --------------------------------------------------------------------------- batch files
def test_a_batch_reads_yaml_nulls_whole_floats_a_bom_and_non_ascii_names(tmp_path):
    batch = tmp_path / "scenes.yaml"
    batch.write_text("\ufeff- name: café\n  prompt:\n  views: 3.0\n  seed: 7\n- {name: b, views: null}\n",
                     encoding="utf-8")
    jobs, refused = _plan("--batch", batch, "--out", tmp_path / "runs", "--prompt", "from the command line", *SMALL)
    assert refused == []
    (name_a, out_a, a, _), (name_b, _, b, _) = jobs
    assert name_a == "café" and out_a == tmp_path / "runs" / "café"
    assert a.scene.views == 3 and type(a.scene.views) is int and a.dream.seed == 7
    assert a.scene.prompt == "from the command line"  # null: not set, so the option's value holds
    assert b.scene.views == 2  # null: the option's value, not None
    batch.write_text("- {name: a, views: 1.0e+300}\n")  # not an integer anyone wrote: its 301 digits were shown
    reason, = _plan("--batch", batch, "--out", tmp_path / "runs", *SMALL)[1]
    assert reason.endswith("views must be an integer, got 1e+300")


def test_scene_names_take_letters_of_any_script_with_their_combining_marks(tmp_path):
    """The README's "letters of any script": Devanagari's vowel signs and virama are combining
    marks, as is the accent of a decomposed 'é' (macOS's spelling), which is one name with 'é'."""
    batch = tmp_path / "scenes.jsonl"
    names = ["नमस्ते", "cafe\u0301", "東京-1", "Ελλάδα_2"]
    batch.write_text("".join(json.dumps({"name": n}) + "\n" for n in names))
    jobs, refused = _plan("--batch", batch, "--out", tmp_path / "runs", *SMALL)
    assert refused == [] and [name for name, _, _, _ in jobs] == ["नमस्ते", "caf\u00e9", "東京-1", "Ελλάδα_2"]
    batch.write_text("".join(json.dumps({"name": n}) + "\n" for n in ["a b", "room🙂", "a/b", "x\u200by", ""]))
    jobs, refused = _plan("--batch", batch, "--out", tmp_path / "runs", *SMALL)
    assert jobs == [] and len(refused) == 5 and all("must be a folder name" in r for r in refused)
    batch.write_text(json.dumps({"name": "caf\u00e9"}) + "\n" + json.dumps({"name": "cafe\u0301"}) + "\n")
    with pytest.raises(ValueError, match=r"scenes.jsonl:2: scenes 0 \(line 1\) and 1 are both named 'café'"):
        _plan("--batch", batch, "--out", tmp_path / "runs", *SMALL)


def test_the_batch_plan_names_each_bad_scene_and_refuses_its_file_as_a_whole(tmp_path):
    """plan_jobs checks every scene and names each bad one with its reason (the command then runs
    none of them: tests/test_run.py); a file that is not a list of uniquely named scenes raises."""
    batch = tmp_path / "scenes.yaml"
    batch.write_text("- {name: good}\n- {name: bad, views: -1}\n- {name: ../up}\n- {name: also-good, seed: 3}\n")
    jobs, refused = _plan("--batch", batch, "--out", tmp_path / "runs", *SMALL)
    assert [name for name, _, _, _ in jobs] == ["good", "also-good"]
    # <file>:<line of the entry>: scene <index> (<name>): the reason
    assert refused == [
        f"{batch}:2: scene 1 (bad): views must be an integer >= 1, got -1",
        f"{batch}:3: scene 2: name '../up' must be a folder name of at most 100 letters, digits, '.', '_' and '-' "
        f"(no spaces or path separators, not '.' or '..')"]
    assert not (tmp_path / "runs").exists()  # planning writes nothing
    for text, fragment in [("- {name: a, name: b}\n", "'name' is given twice"),
                           ("scenes: [{name: a}]\nviews: 2\n", "unknown top-level key(s) ['views']"),
                           ("- {name: Hall}\n- {name: hall}\n", "up to case")]:
        batch.write_text(text)
        with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            _plan("--batch", batch, "--out", tmp_path / "runs", *SMALL)


def test_every_refusal_of_a_batchs_scene_names_its_file_line_and_index(tmp_path):
    """One form for every refusal of a scene, ``<file>:<line>: scene <i> (<name>): ...`` with the
    line where its entry starts (an editor jumps there): a bad setting, a bad name, an entry that is
    no mapping, a folder of changed settings (it said "<file> scene <name>"), in YAML (a list, or
    'scenes' after anchors) and JSON lines."""
    from dreamer.run import refuse_or_ask

    batch = tmp_path / "scenes.yaml"
    batch.write_text("x-d: &d {views: 2}\n\nscenes:\n  - {<<: *d, name: a}\n  # a comment\n  - <<: *d\n"
                     "    name: b\n    seed: -3\n  - {name: 'c d'}\n")
    jobs, refused = _plan("--batch", batch, "--out", tmp_path / "runs", *SMALL)
    assert [job[3] for job in jobs] == [f"{batch}:4: scene 0 (a)"]
    assert [r.split(": ")[:3] for r in refused] == [[f"{batch}:6", "scene 1 (b)",
                                                      "seed must be an integer >= 0 and <= 4294967295, got -3"],
                                                     [f"{batch}:9", "scene 2", "name 'c d' must be a folder name of "
                                                      "at most 100 letters, digits, '.', '_' and '-' (no spaces or "
                                                      "path separators, not '.' or '..')"]]
    jsonl = tmp_path / "scenes.jsonl"
    jsonl.write_text('{"name": "a"}\n\n# skipped\n"just a prompt"\n')
    with pytest.raises(ValueError, match=rf"^{re.escape(str(jsonl))}:4: scene 1 must be a mapping of settings"):
        _plan("--batch", jsonl, "--out", tmp_path / "runs", *SMALL)
    jsonl.write_text('{"name": "a"}\n\n{"name": "b", "models": "synthetic"}\n')
    args = build_parser().parse_args(["--batch", str(jsonl), "--out", str(tmp_path / "runs"), *map(str, SMALL)])
    jobs, refused = plan_jobs(args, Limits())
    assert refused == []
    (tmp_path / "runs" / "b").mkdir(parents=True)
    (tmp_path / "runs" / "b" / "config.json").write_text(json.dumps({"levels": 3}))  # another tool's
    _, refused = refuse_or_ask(args, jobs)
    assert len(refused) == 1 and refused[0].startswith(f"{jsonl}:3: scene 1 (b): ")


def test_a_batch_reads_yaml_merge_keys_and_refuses_a_collection_as_a_key(tmp_path):
    """Shared settings by an anchor and a merge (``<<: *defaults``): the scene's own keys override
    the merged ones (no key "given twice"). A list as a key is a bad YAML input named as such."""
    from dreamer.run import load_batch

    batch = tmp_path / "scenes.yaml"
    text = ("- &defaults {name: a, views: 3, seed: 5}\n- {<<: *defaults, name: b, seed: 6}\n"
            "- {<<: [*defaults], name: c}\n")
    batch.write_text(text)
    scenes = load_batch(batch)
    assert scenes == yaml.safe_load(text)  # what YAML means, merges included
    assert scenes[1:] == [{"name": "b", "views": 3, "seed": 6}, {"name": "c", "views": 3, "seed": 5}]
    batch.write_text("- {[a, b]: 1}\n")
    with pytest.raises(ValueError, match=f"{batch}: not valid YAML: .*unhashable key"):
        load_batch(batch)
    batch.write_text("- {<<: {views: 3}, name: a, seed: 1, seed: 2}\n")
    with pytest.raises(ValueError, match="'seed' is given twice"):
        load_batch(batch)
    # Anchors kept under a top-level key starting with 'x-' (as in Docker Compose files).
    batch.write_text("x-defaults: &d {views: 3, seed: 5}\nscenes:\n- {<<: *d, name: a}\n- {<<: *d, name: b, seed: 6}\n")
    assert load_batch(batch) == [{"name": "a", "views": 3, "seed": 5}, {"name": "b", "views": 3, "seed": 6}]


def test_a_config_without_a_splat_section_takes_no_splats(tmp_path):
    config = tmp_path / "config.json"
    config.write_text("{}")
    (_, _, configs, _), = _plan("--config", config, "--out", tmp_path / "s", *SMALL)[0]
    assert configs.splats is None


def test_json_inputs_refuse_keys_given_twice_and_skip_a_bom():
    assert parse_json('\ufeff{"a": 1}') == {"a": 1}
    with pytest.raises(ValueError, match="'a' is given twice"):
        parse_json('{"a": 1, "b": {"a": 2, "a": 3}}')
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_json("[" * 100_000)


# --------------------------------------------------------------------------- cameras
def test_the_field_of_view_of_an_input_camera_against_the_formula():
    refused = 0
    for focal, width in [(50.0, 64), (582.69, 512), (1e4, 512), (2.0, 64), (1e6, 512)]:
        cam = Camera.from_focal(focal, width, width)
        fov = fov_from_focal(focal, width)
        if FOV_RANGE[0] <= fov <= FOV_RANGE[1]:
            check_input_camera(cam)
        else:
            refused += 1
            with pytest.raises(ValueError, match="field of view"):
                check_input_camera(cam)
    assert refused == 2  # 172.8 and 0.029 degrees
    # An off-centre principal point: the angles to both edges add up.
    K = intrinsics_matrix(10.0, 10.0, 0.5, 32.0)
    fov = math.degrees(math.atan(0.5 / 10) + math.atan(63.5 / 10))
    assert 80 < fov < FOV_RANGE[1]
    check_input_camera(Camera(K, torch.eye(4), 64, 64))
    with pytest.raises(ValueError, match="principal point's x"):
        check_input_camera(Camera(intrinsics_matrix(10.0, 10.0, -1.0, 32.0), torch.eye(4), 64, 64))
    far = torch.eye(4)
    far[2, 3] = 2e5
    with pytest.raises(ValueError, match="from the origin"):
        check_input_camera(Camera(intrinsics_matrix(50.0, 50.0, 32.0, 32.0), far, 64, 64))


def test_a_skewed_camera_is_refused_as_the_dream_would_drop_its_skew():
    """The dream projects with fx, fy, cx, cy alone: a K with skew would be dreamed without it."""
    from dreamer.cameras import camera_points_to_pixels

    skewed = Camera(torch.tensor([[50.0, 20.0, 32.0], [0.0, 50.0, 32.0], [0.0, 0.0, 1.0]]), torch.eye(4), 64, 64)
    point = torch.tensor([[0.0, 0.5, 1.0]])
    uv, _ = camera_points_to_pixels(point, skewed)
    assert not torch.allclose(uv[0], (skewed.K @ point[0])[:2])  # the skew is not in the projection
    with pytest.raises(ValueError, match=r"K has off-diagonal terms \(K\[0\]\[1\] = 20"):
        check_input_camera(skewed, "camera 0")
    lower = Camera(torch.tensor([[50.0, 0.0, 32.0], [3.0, 50.0, 32.0], [0.0, 0.0, 1.0]]), torch.eye(4), 64, 64)
    with pytest.raises(ValueError, match="no skew"):
        check_input_camera(lower)


def test_a_trajectory_files_fov_has_the_range_of_every_input_camera(tmp_path):
    from dreamer.trajectories import load_trajectory

    for fov in (FOV_RANGE[0], 90.0, FOV_RANGE[1]):
        cam = load_trajectory({"width": 64, "height": 64, "fov": fov, "cameras": [{"c2w": np.eye(4).tolist()}]})
        check_input_camera(cam.cameras[0])
    for fov in (0.05, 175.0, 180.0, 200.0):
        with pytest.raises(ValueError, match=f"horizontal field of view of 0.1 to 170 degrees, got {fov}"):
            load_trajectory({"width": 64, "height": 64, "fov": fov, "cameras": [{"c2w": np.eye(4).tolist()}]})


def test_a_focal_length_float32_cannot_hold_is_refused_as_the_value_given(tmp_path):
    """A focal length of 1e-300 px (or 1e300) becomes 0 (or inf) in the float32 K: --focal 1e300
    was refused as "Camera.K has non-finite entries" (naming no flag), a file's focal 1e-300 as
    "Camera.K needs positive focal lengths, got fx=0.0", neither what was written. Each is now
    refused as its own value, with the field of view it means and the range a camera needs."""
    from dreamer.trajectories import load_trajectory

    for focal, fov in ((1e-300, 180), (1e300, 0)):
        given = re.escape(f"{focal:g}")
        with pytest.raises(ValueError, match=f"^--focal {given}: a focal length of {given} px lies beyond "
                                             f"float32's range \\(a field of view of {fov} degrees\\); a pinhole "
                                             f"camera needs 0.1 to 170 degrees"):
            SceneConfig(width=64, height=64, focal=focal).first_camera()
        eye = np.eye(4).tolist()
        path = tmp_path / "cameras.json"
        size = {"width": 64, "height": 64}
        for data, where in [({**size, "focal": focal, "cameras": [{"c2w": eye}]}, "top level: focal"),
                            ({**size, "cameras": [{"c2w": eye, "focal": focal}]}, "camera 0: focal"),
                            ({**size, "cameras": [{"c2w": eye, "K": [[50, 0, 32], [0, focal, 32], [0, 0, 1]]}]},
                             "camera 0: K"),
                            ({"w": 64, "h": 64, "fl_x": focal, "frames": [{"transform_matrix": eye}]},
                             "camera 0: fl_x, fl_y")]:
            path.write_text(json.dumps(data))
            with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: {where}: a focal length of {given} px"):
                load_trajectory(path)
    cam = SceneConfig(width=64, height=64, focal=3e4).first_camera()  # 0.12 degrees: in range, in float32
    assert float(cam.K[0, 0]) == pytest.approx(3e4)


def test_fov_or_focal_against_a_trajectory_files_own_intrinsics_is_refused(tmp_path):
    """Camera 0 of a trajectory file is the first view's camera, and its intrinsics won: --fov 30
    with a file of fov 60 dreamed every view at 60 degrees and recorded fov 30 in config.json (a
    size that differs was already refused). Flags that agree with the file, and files without
    intrinsics (camera 0 takes the flag's), still plan."""
    eye = np.eye(4).tolist()
    step = np.eye(4)
    step[0, 3] = 0.1
    cams = [{"c2w": eye}, {"c2w": step.tolist()}]
    own = tmp_path / "own.json"
    own.write_text(json.dumps({"width": 64, "height": 64, "fov": 60, "cameras": cams}))
    run = ["--models", "synthetic", "--width", "64", "--height", "64", "--no-splats", "--out", tmp_path / "o"]
    for flag, value, said in (("--fov", 30, "not 30 "), ("--focal", 10, "not 145.3 (10 px)")):
        path = re.escape(str(own))
        with pytest.raises(ValueError, match=f"^{flag} {value} conflicts with the trajectory file {path}, "
                                             f"whose camera 0 \\(the first view's camera\\) has its own intrinsics: a "
                                             f"field of view of 60 degrees .*{re.escape(said)}.*drop {flag} "):
            _plan("--trajectory", own, flag, value, *run)
    (jobs, refused) = _plan("--trajectory", own, "--fov", 60, *run)
    assert refused == [] and jobs[0][2].scene.fov == 60
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"width": 64, "height": 64, "cameras": cams}))
    for flag, value in (("--fov", 30), ("--focal", 10)):
        assert _plan("--trajectory", bare, flag, value, *run)[1] == []


@pytest.mark.parametrize("kwargs, fragment", [
    ({"fov": 170.0}, None), ({"fov": 0.1}, None), ({"fov": 170.5}, "--fov"), ({"fov": 0.05}, "--fov"),
    ({"focal": 1e-9}, "--focal"), ({"focal": 0.0}, "--focal"), ({"focal": 1e9}, "--focal"),
])
def test_the_first_camera_from_the_options(kwargs, fragment):
    config = SceneConfig(width=64, height=64, **kwargs)
    if fragment is None:
        assert config.first_camera().width == 64
    else:
        with pytest.raises(ValueError, match=fragment):
            config.first_camera()


def test_a_viewer_camera_is_checked_like_a_file_camera():
    from apps.viewer import camera_from_json

    good = {"c2w": np.eye(4).tolist(), "K": [[50, 0, 32], [0, 50, 32], [0, 0, 1]], "width": 64, "height": 64}
    assert camera_from_json(json.dumps(good)).width == 64
    far = dict(good, c2w=[[1, 0, 0, 1e9], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    with pytest.raises(ValueError, match="Viewer camera: camera: its centre is 1e\\+09 m"):
        camera_from_json(json.dumps(far))
    with pytest.raises(ValueError, match="nested too deeply"):
        camera_from_json("[" * 9000)


def test_model_settings_by_short_name_or_tiny_are_checked_as_the_loaders_read_them(tmp_path, monkeypatch):
    """Offline, a depth model's short name (``zoedepth``) is looked up in the cache by its hub id,
    and the tiny random models' names need no cache; a short name of nothing cached is refused."""
    from dreamer.pipeline.preflight import ModelSourceMissing

    cache = tmp_path / "hub"
    (cache / "models--Intel--zoedepth-nyu-kitti").mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    local = tmp_path / "sd"
    local.mkdir()
    models = ["--models", "default", "--prompt", "a room", "--inpaint-model", local, "--text2img-model", local]
    for depth in ("zoedepth", "Intel/zoedepth-nyu-kitti", "tiny", "tiny-depth-anything"):
        jobs, _ = _plan(*models, "--depth-model", depth, "--out", tmp_path / "s", *SMALL[2:])
        assert jobs[0][2].models.depth_model == depth
    _plan("--models", "default", "--prompt", "a room", "--inpaint-model", "tiny", "--text2img-model", "tiny",
          "--depth-model", "tiny", "--out", tmp_path / "s", *SMALL[2:])
    with pytest.raises(ModelSourceMissing, match="depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf"):
        _plan(*models, "--depth-model", "depth-anything-v2-indoor-small", "--out", tmp_path / "s", *SMALL[2:])


def test_devices_that_are_not_here_are_refused():
    from dreamer.backends.loading import resolve_device

    if not torch.backends.mps.is_available():
        with pytest.raises(ValueError, match="no Apple GPU"):
            resolve_device("mps")
    with pytest.raises(ValueError, match="cuda:99"):
        resolve_device("cuda:99")
    with pytest.raises(ValueError, match="unknown device 'meta'"):
        resolve_device("meta")


def test_ray_resources_per_scene_are_finite():
    """--cpus-per-scene nan passed the >0 check (NaN compares False) and raised a traceback where the
    pool is sized; inf GPUs were only refused by the cluster check, as not fitting."""
    from dreamer.batch.ray_executor import RayOptions

    assert RayOptions(cpus_per_scene=0.5, gpus_per_scene=0.25).cpus_per_scene == 0.5
    for kwargs, fragment in [({"cpus_per_scene": float("nan")}, "--cpus-per-scene must be a finite number > 0"),
                             ({"cpus_per_scene": 0.0}, "--cpus-per-scene"),
                             ({"gpus_per_scene": float("inf")}, "--gpus-per-scene must be a finite number >= 0"),
                             ({"gpus_per_scene": float("nan")}, "--gpus-per-scene")]:
        with pytest.raises(ValueError, match=fragment):
            RayOptions(**kwargs)


# --------------------------------------------------------------------------- output folders
def test_a_folder_of_other_files_is_refused_and_left_as_it_was(tmp_path):
    from dreamer.backends.model_sets import ModelConfig
    from dreamer.pipeline import SceneConfigs, run_scene

    src = tmp_path / "checkout"
    (src / "zoom").mkdir(parents=True)
    (src / "zoom" / "run.py").write_text("print('mine')\n")
    configs = SceneConfigs(scene=SceneConfig(width=64, height=64, views=2), models=ModelConfig(models="synthetic"))
    with pytest.raises(NotASceneFolder, match="zoom"):
        run_scene(configs, src, backends=None)  # the run's own guard, for the app and library callers
    assert sorted(p.relative_to(src).as_posix() for p in src.rglob("*")) == ["zoom", "zoom/run.py"]
    with pytest.raises(NotASceneFolder):
        check_scene_folder(src, take_over=True)  # no config.json: never a scene's folder
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"levels": 3}')
    with pytest.raises(NotASceneFolder, match="--overwrite"):
        check_scene_folder(other)
    check_scene_folder(other, take_over=True)
    odd = tmp_path / "odd"
    (odd / "config.json").mkdir(parents=True)  # a folder of that name: --overwrite does not take it over,
    (odd / "views").mkdir()  # so the message must not offer it
    for take_over in (False, True):
        with pytest.raises(NotASceneFolder, match="not a scene folder") as refused:
            check_scene_folder(odd, take_over=take_over)
        assert "--overwrite" not in str(refused.value)
    beside = tmp_path / "beside"
    beside.mkdir()
    Image.new("RGB", (8, 8)).save(beside / "photo.png")
    check_scene_folder(beside)  # a photo beside the scene is no clash


# --------------------------------------------------------------------------- photos
def test_a_sixteen_bit_rgb_png_keeps_its_range(tmp_path):
    import struct
    import zlib

    rgb = np.zeros((8, 8, 3), ">u2")
    rgb[..., 0] = 65535
    rgb[:, 4:, 1] = 32768
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\0" + row.tobytes() for row in rgb)
    path = tmp_path / "rgb16.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    out = load_image(path, 8, 8).image
    assert torch.allclose(out[..., 0], torch.ones(8, 8), atol=1 / 255)
    assert torch.allclose(out[:, :3, 1], torch.zeros(8, 3), atol=1 / 255)
    assert torch.allclose(out[:, 5:, 1], torch.full((8, 3), 0.5), atol=1 / 255)


def test_a_depth_npy_of_one_pixel_row_or_column_is_read(tmp_path):
    from dreamer.pipeline.inputs import load_depth

    for shape in [(1, 1), (1, 8), (8, 1), (1, 1, 1), (8, 8, 1), (1, 8, 8), (1, 1, 8, 8)]:
        np.save(tmp_path / "d.npy", np.full(shape, 2.5, np.float32))
        assert torch.equal(load_depth(tmp_path / "d.npy", 8, 8), torch.full((8, 8), 2.5)), shape
    for shape in [(8,), (2, 8, 8), (8, 8, 3), (8, 1, 8)]:
        np.save(tmp_path / "d.npy", np.full(shape, 2.5, np.float32))
        with pytest.raises(ValueError, match=r"must hold an \[H,W\] array"):
            load_depth(tmp_path / "d.npy", 8, 8)


def test_a_depth_file_of_another_kind_is_told_what_a_depth_map_may_be(tmp_path):
    """A depth map that was no image was refused as "not an image file Pillow can read (PNG, JPEG,
    WebP, ...)", formats a depth map may not be (8 bits hold no depth); a .npz named only that, and
    a .npy array saved without its suffix was refused although it is one."""
    from dreamer.pipeline.inputs import load_depth

    depth = np.full((8, 8), 2.5, np.float32)
    np.save(tmp_path / "d.npy", depth)
    (tmp_path / "d.npy").rename(tmp_path / "depth_map")
    assert torch.equal(load_depth(tmp_path / "depth_map", 8, 8), torch.from_numpy(depth))
    np.savez(tmp_path / "d.npz", depth=depth)
    with pytest.raises(ValueError, match=r"d.npz is a zip archive \(.npz\?\), not a depth map: .npy \(float metres\), "
                                         r"a 16-bit PNG or TIFF .* save the depth array alone with numpy.save"):
        load_depth(tmp_path / "d.npz", 8, 8)
    (tmp_path / "d.txt").write_text("2.5 2.5\n2.5 2.5\n")
    with pytest.raises(ValueError, match=r"d.txt is not a depth map: .npy \(float metres\), a 16-bit PNG or TIFF "
                                         r"\(millimetres\), a float TIFF \(metres\) or .exr \(metres\)$"):
        load_depth(tmp_path / "d.txt", 8, 8)


def test_a_depth_png_that_is_mostly_unknown_is_said_at_the_default_verbosity(tmp_path, caplog):
    """A 16-bit PNG with one known pixel (the rest 0, unknown) dreamed a flat first view at that
    pixel's depth, "done", with only an INFO line ("100.0% of the depth is 0") in run.log. Over
    half unknown is now a warning with the counts; a few unknown pixels stay an INFO line."""
    import logging

    from dreamer.pipeline.inputs import load_depth_with_mask

    mm = np.zeros((48, 64), np.uint16)
    mm[24, 32] = 2000
    Image.fromarray(mm).save(tmp_path / "sparse.png")
    with caplog.at_level(logging.INFO, logger="dreamer.pipeline.inputs"):
        depth, valid = load_depth_with_mask(tmp_path / "sparse.png", 64, 48)
    assert torch.equal(depth, torch.full((48, 64), 2.0)) and int(valid.sum()) == 1
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "sparse.png: 3071 of its 3072 depth values are 0 (unknown, 99.97%)" in warned[0].message
    caplog.clear()
    mm[:] = 2000
    mm[0, :10] = 0
    Image.fromarray(mm).save(tmp_path / "dense.png")
    with caplog.at_level(logging.INFO, logger="dreamer.pipeline.inputs"):
        load_depth_with_mask(tmp_path / "dense.png", 64, 48)
    assert [r.levelno for r in caplog.records if "are 0 (unknown" in r.message] == [logging.INFO]


def test_depth_values_outside_the_range_the_geometry_holds_are_refused(tmp_path):
    """1e30 m or 1e-30 m ran to a "done" scene with an infinite or NaN error; a float64 1e300 was
    called non-finite (after a RuntimeWarning of its cast). The range's ends are accepted."""
    from dreamer.pipeline.inputs import DEPTH_RANGE, load_depth

    lo, hi = DEPTH_RANGE
    for value, dtype in ((lo, np.float64), (hi, np.float32), (2.5, np.float16), (3, np.uint8)):
        np.save(tmp_path / "d.npy", np.full((8, 8), value, dtype))
        assert torch.allclose(load_depth(tmp_path / "d.npy", 8, 8), torch.full((8, 8), float(value)))
    for value, dtype in ((1e30, np.float32), (1e-30, np.float32), (2**63, np.uint64), (hi * 1.01, np.float64)):
        depth = np.full((8, 8), 2.0)
        depth[3, 4] = value
        np.save(tmp_path / "d.npy", depth.astype(dtype))
        with pytest.raises(ValueError, match="1 depth values outside 1e-06 to 100000 m"):
            load_depth(tmp_path / "d.npy", 8, 8)
    np.save(tmp_path / "d.npy", np.full((8, 8), 1e300))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="up to 1e\\+300 lie beyond float32's range"):
            load_depth(tmp_path / "d.npy", 8, 8)


def test_a_pipe_or_a_device_is_refused_without_reading_it(tmp_path):
    import os
    import threading

    from dreamer.pipeline.inputs import load_depth

    pipe = tmp_path / "photo.png"
    os.mkfifo(pipe)  # opening it for reading would wait for a writer forever
    done = []
    worker = threading.Thread(target=lambda: done.append(pytest.raises(ValueError, load_image, pipe, 8, 8)),
                              daemon=True)
    worker.start()
    worker.join(10)
    assert done and "not a regular file" in str(done[0].value)
    for path in (pipe, "/dev/zero"):
        with pytest.raises(ValueError, match="not a regular file"):
            load_depth(path, 8, 8)


def test_an_animated_gif_gives_its_first_frame_and_a_truncated_file_is_refused(tmp_path):
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    out = load_image(tmp_path / "anim.gif", 16, 16).image
    assert torch.allclose(out, torch.tensor([1.0, 0.0, 0.0]).expand(16, 16, 3), atol=0.02)
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(tmp_path / "p.png")
    data = (tmp_path / "p.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.png could not be decoded"):
        load_image(tmp_path / "cut.png", 16, 16)
    nan = np.full((8, 8), np.nan, np.float32)
    Image.fromarray(nan).save(tmp_path / "nan.tif")
    with pytest.raises(ValueError, match="nan.tif: floating-point image holds non-finite values"):
        load_image(tmp_path / "nan.tif", 8, 8)


# --------------------------------------------------------------------------- checkpoints
def test_a_checkpoint_lacking_an_entry_its_loader_reads_is_refused(tmp_path):
    """The layout check holds every entry load_checkpoint / load_finished read: a view file without
    its prompt or stats passed the check and failed the resume (exit 1, after the models loaded)."""
    from dreamer.pipeline.checkpoint import CheckpointError, check_checkpoints

    view = {"camera": {}, "image": torch.zeros(1), "depth": torch.zeros(1), "mask": torch.zeros(1),
            "prompt": "", "stats": {}}
    torch.save({"views": 1, "xyz": torch.zeros(1), "rgb": torch.zeros(1), "radius": torch.zeros(1)},
               tmp_path / "points.pt")
    torch.save(view, tmp_path / "view_000.pt")
    check_checkpoints(tmp_path)
    for key in ("prompt", "stats"):
        torch.save({k: v for k, v in view.items() if k != key}, tmp_path / "view_000.pt")
        with pytest.raises(CheckpointError, match=f"view_000.pt holds a checkpoint of another layout \\(no {key}\\)"):
            check_checkpoints(tmp_path)
    torch.save({"views": [view, {**view, "stats": None}, 3], "points": {"xyz": 1, "rgb": 1}}, tmp_path / "result.pt")
    with pytest.raises(CheckpointError, match=r"result.pt .* \(no points.radius, views\[2\] \(a mapping\)\)"):
        check_checkpoints(tmp_path)  # the finished dream, not the loop's files, is what a resume reads


# --------------------------------------------------------------------------- input files (third audit)
def test_every_input_file_is_checked_by_one_function(tmp_path):
    """Photos, depth maps and text inputs (batch, config, trajectory, prompts) go through
    check_input_file: a missing file, a URL, a folder, a folder on the way that is a file."""
    from dreamer.pipeline.inputs import InputFileMissing, check_input_file, load_depth
    from dreamer.pipeline.preflight import read_text_input

    (tmp_path / "a_file").write_text("x")
    readers = {"photo file": lambda p: load_image(p, 8, 8), "depth file": lambda p: load_depth(p, 8, 8),
               "batch file": lambda p: read_text_input(p, "batch file")}
    for what, read in readers.items():
        for path, fragment in [(tmp_path / "nope.png", "does not exist"),
                               (tmp_path / "a_file" / "x.png", "does not exist"),
                               ("https://example.com/a.png", "is a URL: only local files are read"),
                               ("s3://bucket/scene.npy", "is a URL")]:
            with pytest.raises(InputFileMissing, match=f"^{what} .*{fragment}"):
                read(path)
        with pytest.raises(ValueError, match=f"^{what} .* is a folder, not a file"):
            read(tmp_path)
    assert check_input_file(tmp_path / "a_file", "x") == tmp_path / "a_file"
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.png is empty \\(0 bytes\\), not an image file"):
        load_image(tmp_path / "empty.png", 8, 8)


def _as_another_user(target, *args):
    """``target(*args)`` in a forked child that cannot read what others cannot (root drops to
    nobody; permissions do not hold for root); its exit code."""
    import os

    from forked import run_in_fork

    def child():
        if os.geteuid() == 0:
            os.setgid(65534)
            os.setuid(65534)
        return target(*args)

    return run_in_fork(Path(args[0]) / "log.txt", child)


def _unreadable_inputs(folder: str) -> int:
    from dreamer.pipeline.inputs import load_depth
    from dreamer.pipeline.preflight import check_output_folder, read_text_input

    base = Path(folder)
    cases = [(lambda: load_image(base / "photo.png", 8, 8), r"photo file .*photo.png cannot be read \(Permission"),
             (lambda: load_depth(base / "photo.png", 8, 8), "depth file .*photo.png cannot be read"),
             (lambda: read_text_input(base / "t.json", "trajectory file"), "trajectory file .*t.json cannot be read"),
             (lambda: load_image(base / "closed" / "a.png", 8, 8), "photo file .*a.png cannot be read"),
             (lambda: check_output_folder(base / "closed" / "scene"),
              "Permission denied; choose a folder you can write to$")]
    for call, pattern in cases:
        try:
            call()
        except ValueError as e:
            if not re.search(pattern, str(e)):
                print("unexpected message:", e)
                return 1
        else:
            print("no error for", pattern)
            return 1
    return 0


def test_files_that_cannot_be_read_are_named_as_such(tmp_path):
    """A photo of mode 000 was "could not be decoded as an image: [Errno 13] ..."; an output folder
    under a folder that cannot be searched was "Permission denied; choose a shorter path"."""
    import os
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="dreamer-perm-"))  # under /tmp: another user can reach it
    try:
        folder.chmod(0o777)
        Image.new("RGB", (8, 8)).save(folder / "photo.png")
        (folder / "t.json").write_text("[]")
        (folder / "closed").mkdir()
        Image.new("RGB", (8, 8)).save(folder / "closed" / "a.png")
        for name in ("photo.png", "t.json"):
            (folder / name).chmod(0)
        (folder / "closed").chmod(0o600)  # readable names, but nothing in it can be reached
        assert _as_another_user(_unreadable_inputs, str(folder)) == 0, (folder / "log.txt").read_text()
    finally:
        for p in (folder / "closed", folder / "photo.png", folder / "t.json"):
            p.chmod(0o700)
        shutil.rmtree(folder)
    assert not os.path.exists(folder)


def test_only_a_word_clears_an_optional_setting_on_the_command_line(tmp_path):
    """'none' (or 'null') leaves an optional setting unset; an empty value is refused by the parser
    (--image "" quietly dreamed from the prompt), and an empty path in a batch or config by the checks."""
    parser = build_parser()
    args = parser.parse_args(["--image", "none", "--views", "NULL", "--focal", "none"])
    assert (args.image, args.views, args.focal) == (None, None, None)
    for flag in ("--image", "--depth", "--views", "--focal"):
        with pytest.raises(SystemExit):
            parser.parse_args([flag, " "])
    from dreamer.pipeline.preflight import check_scene
    from dreamer.pipeline.settings import configs_from_flat

    for name in ("image", "depth"):
        with pytest.raises(ValueError, match=f"^{name} is empty; give a file, or leave it out"):
            check_scene(configs_from_flat({"models": "synthetic", "width": 64, "height": 64, name: ""}))


def _reference_fit(path, width, height, fit):
    """load_image's result computed the plain way: the whole photo as floats, one Lanczos resampling
    of its source box (no draft, no box reduction: these do nothing for a PNG that the canvas shows
    at more than half its resolution)."""
    from dreamer.pipeline.inputs import PAD_VALUE, compute_fit

    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"), np.float32) / 255.0
    t = compute_fit(rgb.shape[1], rgb.shape[0], width, height, fit)
    tx0, ty0, tx1, ty1 = t.target_box
    canvas = np.full((height, width, 3), PAD_VALUE, np.float32)
    for c in range(3):
        channel = Image.fromarray(np.ascontiguousarray(rgb[..., c]))
        canvas[ty0:ty1, tx0:tx1, c] = np.asarray(channel.resize((tx1 - tx0, ty1 - ty0), Image.Resampling.LANCZOS,
                                                                box=t.source_box))
    return np.clip(canvas, 0, 1)


def test_a_photo_of_an_extreme_aspect_ratio_costs_its_visible_part(tmp_path):
    """Only the pixels the resampling reads become floats: a 16x400000 strip cropped to a square
    made 150 MB of float arrays for its 16x16 visible pixels (a 16x4000000 one 2 GB and 4 s, under
    the 64-megapixel limit). The result is the plain resampling's, up to Pillow's float32 box
    coordinates (which the crop makes more precise)."""
    import tracemalloc

    rng = np.random.default_rng(0)
    for (w, h), (width, height), fit in [((900, 24), (64, 64), "crop"), ((30, 700), (96, 64), "crop"),
                                         ((150, 200), (64, 128), "crop"), ((120, 12), (128, 64), "pad"),
                                         ((40, 90), (64, 48), "pad")]:
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(tmp_path / "p.png")
        got = load_image(tmp_path / "p.png", width, height, fit=fit).image.numpy()
        assert np.abs(got - _reference_fit(tmp_path / "p.png", width, height, fit)).max() < 2e-4, (w, h, fit)
    strip = np.zeros((400_000, 16, 3), np.uint8)
    strip[:, :, 0] = np.arange(400_000)[:, None] % 251  # compresses to a small file, not to nothing
    Image.fromarray(strip).save(tmp_path / "strip.png")
    tracemalloc.start()
    try:
        loaded = load_image(tmp_path / "strip.png", 64, 64)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8e6, f"{peak / 1e6:.0f} MB"
    middle = (200_000 - 8 + np.arange(16)) % 251 / 255.0  # the 16x16 visible rows, each red = its row % 251
    assert np.allclose(loaded.image[:, 0, 0].numpy(), np.interp(np.linspace(-0.375, 15.375, 64), np.arange(16),
                                                                middle), atol=0.02)


def test_every_refusal_of_a_trajectory_file_names_the_file(tmp_path, monkeypatch):
    """A transforms.json's camera_angle_x of 50 (degrees where radians belong) was refused by a
    helper as "field of view must be in (0, 180) degrees, got 2864.8", naming neither file nor
    camera; any helper's ValueError now carries the file's name."""
    import dreamer.trajectories.files as files
    from dreamer.trajectories import load_trajectory

    eye = np.eye(4).tolist()
    path = tmp_path / "transforms.json"
    for angle in (50, 0.0, -1.0, 3.0):
        path.write_text(json.dumps({"w": 64, "h": 64, "camera_angle_x": angle, "frames": [{"transform_matrix": eye}]}))
        with pytest.raises(ValueError, match=f"^{path}: camera 0: camera_angle_x must be .* radians.*got {angle:g}$"):
            load_trajectory(path)
    path.write_text(json.dumps({"w": 64, "h": 64, "camera_angle_x": 0.8, "frames": [{"transform_matrix": eye}]}))
    fx = float(load_trajectory(path).cameras[0].K[0, 0])
    assert abs(2 * math.atan(32 / fx) - 0.8) < 1e-6  # radians, as instant-ngp means them

    def refuse(*a, **k):
        raise ValueError("a helper's own words")

    monkeypatch.setattr(files, "interpolate_cameras", refuse)
    path.write_text(json.dumps({"fov": 60, "width": 64, "height": 64, "frames": 3,
                                "keyframes": [{"c2w": eye}, {"c2w": eye}]}))
    with pytest.raises(ValueError, match=f"^{path}: a helper's own words$"):
        load_trajectory(path)


def test_a_transforms_json_of_a_fisheye_or_distorted_camera_is_refused(tmp_path):
    """nerfstudio writes camera_model OPENCV_FISHEYE (or EQUIRECTANGULAR) and distortion k1..k4,
    p1, p2; instant-ngp an is_fisheye flag. The cameras here are pinholes (K alone), and such a
    file was read as one, so its views would be dreamed along other rays than its images show.
    Zero coefficients (a run's own transforms.json writes OPENCV with zeros) still load."""
    from dreamer.trajectories import load_trajectory

    eye = np.eye(4).tolist()
    path = tmp_path / "transforms.json"
    base = {"w": 64, "h": 64, "fl_x": 50.0}
    for extra, frame_extra, fragment in [
        ({"camera_model": "OPENCV_FISHEYE"}, {}, "camera 0: camera_model \"OPENCV_FISHEYE\" is not a pinhole"),
        ({"camera_model": "EQUIRECTANGULAR"}, {}, "camera 0: camera_model \"EQUIRECTANGULAR\" is not a pinhole"),
        ({"is_fisheye": True}, {}, "camera 0: is_fisheye is set"),
        ({"camera_model": "OPENCV", "k1": 0.3, "k2": 0.0}, {}, "camera 0: k1 = 0.3: lens distortion"),
        ({"camera_model": "OPENCV"}, {"p2": -1e-3}, "camera 0: p2 = -0.001: lens distortion"),
        ({"k4": "0.1"}, {}, "camera 0: k4 must be a number"),
    ]:
        path.write_text(json.dumps({**base, **extra, "frames": [{"transform_matrix": eye, **frame_extra}]}))
        with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: {fragment}"):
            load_trajectory(path)
    for extra in ({"camera_model": "OPENCV", "k1": 0.0, "k2": 0, "p1": 0.0, "p2": 0.0},
                  {"camera_model": "PINHOLE"}, {"is_fisheye": False}, {}):
        path.write_text(json.dumps({**base, **extra, "frames": [{"transform_matrix": eye}]}))
        assert float(load_trajectory(path).cameras[0].K[0, 0]) == 50.0


def test_an_inpainting_or_repair_strength_denoises_at_least_one_step():
    """diffusers denoises int(steps x strength) steps and raises at the first call when that is 0
    ("--steps 2 --strength 0.1" failed the run after the models loaded and the first view was made;
    the refine step's 2 x 0.1 with 'cannot reshape tensor of 0 elements', after the dream and the
    splats). The boundary is diffusers' own expression, float rounding included."""
    from dreamer.backends.diffusion import DiffusionSettings, check_strength

    for steps, strength in ((2, 0.5), (1, 1.0), (30, 0.04), (3, 1 / 3), (50, 0.02)):
        assert int(steps * strength) >= 1
        DiffusionSettings(steps=steps, strength=strength)
    for steps, strength in ((2, 0.1), (30, 0.03), (49, 1 / 49), (1, 0.999)):
        assert int(steps * strength) == 0  # 49 x (1/49) is 0.999...9 in floats
        with pytest.raises(ValueError, match=f"strength {strength:g} of steps {steps} denoises no step"):
            DiffusionSettings(steps=steps, strength=strength)
    with pytest.raises(ValueError, match="^refine_strength 0.1 of refine_steps 2"):
        check_strength(2, 0.1, ("refine_steps", "refine_strength"))


def test_an_output_folder_leaves_room_for_the_paths_a_run_writes_in_it(tmp_path):
    """An existing folder whose path is 4000 of Linux's 4096 bytes passed; the scene's first file
    below it failed the run ("File name too long", exit 1). Names over 255 bytes are refused in
    folders still to make as well (the file system reads a name once its parent exists)."""
    import os

    from dreamer.pipeline.preflight import check_output_folder

    deep = tmp_path
    while len(os.fsencode(str(deep))) < 3700:
        deep = deep / ("d" * 200)
    deep.mkdir(parents=True)
    check_output_folder(deep / "scene")
    near = deep / ("e" * (4000 - len(os.fsencode(str(deep))) - 1))
    assert len(os.fsencode(str(near))) == 4000
    with pytest.raises(ValueError, match="its path is 4000 bytes; the files a run writes in it need it to be at most"):
        check_output_folder(near)
    with pytest.raises(ValueError, match="is 256 bytes, more than the 255 the file system takes"):
        check_output_folder(tmp_path / "new" / ("x" * 256) / "scene")
    check_output_folder(tmp_path / "new" / ("x" * 255) / "scene")


def test_a_batchs_scenes_are_checked_without_resolving_the_settings_types_each_time(tmp_path, monkeypatch):
    """Resolving the dataclasses' type hints took 20 of the 33 s that checking 2000 scenes took
    (before the last scene's refusal, or the first scene's start); they are resolved once a class."""
    import typing

    batch = tmp_path / "scenes.yaml"
    batch.write_text("".join(f"- {{name: s{i}}}\n" for i in range(40)))
    calls = []
    real = typing.get_type_hints
    monkeypatch.setattr(typing, "get_type_hints", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    jobs, refused = _plan("--batch", batch, "--out", tmp_path / "runs", *SMALL)
    assert len(jobs) == 40 and refused == []
    assert len(calls) == len(set(calls)) <= 12, len(calls)  # a few config classes, once each


def test_a_depth_map_stored_like_a_turned_photo_is_told_to_be_upright(tmp_path):
    """A phone photo stored on its side (EXIF orientation 6) is read upright; its depth map must be
    upright too. Given as stored, the refusal said "the photo is 48x64" of a file of 64x48 pixels."""
    from dreamer.pipeline.inputs import load_depth

    im = Image.new("RGB", (64, 48), (90, 120, 150))
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(tmp_path / "photo.jpg", exif=exif)
    photo = load_image(tmp_path / "photo.jpg", 32, 32)
    assert photo.turned and (photo.transform.source_width, photo.transform.source_height) == (48, 64)
    np.save(tmp_path / "upright.npy", np.full((64, 48), 2.0, np.float32))
    assert torch.equal(load_depth(tmp_path / "upright.npy", 32, 32, like=photo), torch.full((32, 32), 2.0))
    np.save(tmp_path / "stored.npy", np.full((48, 64), 2.0, np.float32))
    with pytest.raises(ValueError, match=r"the photo is 48x64 upright \(its EXIF orientation turns the stored 64x48 "
                                         r"pixels\): give the depth map upright too$"):
        load_depth(tmp_path / "stored.npy", 32, 32, like=photo)
    np.save(tmp_path / "square.npy", np.full((50, 50), 2.0, np.float32))
    with pytest.raises(ValueError, match="aspect ratios differ"):
        load_depth(tmp_path / "square.npy", 32, 32, like=photo)


def test_out_under_an_existing_folder_named_like_a_scheme_is_local(tmp_path, monkeypatch):
    """An --out whose first folder exists here is a local path, even when its name ends in a
    colon as a URL's scheme does ('run:/scene' in a folder holding 'run:'); the URL refusal is
    for the folder a run would otherwise make ('s3:')."""
    from dreamer.pipeline.preflight import check_output_folder

    monkeypatch.chdir(tmp_path)
    (tmp_path / "run:").mkdir()
    assert check_output_folder("run:/scene") == Path("run:/scene")
    with pytest.raises(ValueError, match="is a URL"):
        check_output_folder("s3://bucket/scene")


def test_a_tilde_no_shell_expanded_is_refused_as_out_and_named_in_a_missing_input(tmp_path, monkeypatch):
    """'--out "~/runs"' (quoted, or a path from a batch, a config or the app: no shell expands it) ran
    to "done" into a folder named '~' in the working folder; an input under '~' was "does not exist"
    with no word of why. A folder that is named '~' and exists is still used."""
    from dreamer.pipeline.inputs import check_input_file
    from dreamer.pipeline.preflight import check_output_folder

    home = tmp_path / "home"
    (home / "photos").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with pytest.raises(ValueError, match=f"^--out ~/runs starts with '~', which no shell expanded here .*; write the "
                                         f"full path: {re.escape(str(home / 'runs'))}$"):
        check_output_folder("~/runs")
    with pytest.raises(FileNotFoundError, match=f"^photo file ~/photos/a.png does not exist \\(its '~' is not "
                                                f"expanded here: write the full path, "
                                                f"{re.escape(str(home / 'photos' / 'a.png'))}\\)$"):
        check_input_file("~/photos/a.png", "photo file")
    assert list(work.iterdir()) == []
    with pytest.raises(FileNotFoundError, match="^photo file photos/a.png does not exist$"):
        check_input_file("photos/a.png", "photo file")
    (work / "~").mkdir()
    assert check_output_folder("~/runs") == Path("~/runs")


def test_an_input_file_replaced_at_its_path_is_not_taken_for_the_scene_made_from_it(tmp_path):
    """The settings name an input's path, not its content: a photo replaced at the same path and the
    same command rerun was "skipped (already complete)", the old photo's scene handed back as the new
    one's (an interrupted one resumed on the old first view). The folder records each input's
    SHA-256 (inputs.json); a changed photo, depth map or trajectory file is refused as a change of
    settings, and --overwrite starts the scene over. Same contents, or a folder without a record
    (an older version's), reuse it as before."""
    from dreamer.pipeline.folder import INPUTS_RECORD, SettingsChanged, changed_settings
    from dreamer.pipeline.stages import _prepare_folder

    photo, depth, trajectory = tmp_path / "photo.png", tmp_path / "depth.npy", tmp_path / "path.json"
    Image.new("RGB", (64, 48), (120, 90, 60)).save(photo)
    np.save(depth, np.full((48, 64), 2.0, np.float32))
    step = np.eye(4)
    step[0, 3] = 0.1
    trajectory.write_text(json.dumps({"fov": 60, "cameras": [{"c2w": np.eye(4).tolist()}, {"c2w": step.tolist()}]}))
    out = tmp_path / "scene"
    ((_, _, configs, _),), _ = _plan("--image", photo, "--depth", depth, "--trajectory", trajectory, "--out", out,
                                    "--models", "synthetic", "--width", "64", "--height", "64", "--no-splats")
    _prepare_folder(out, configs)
    assert sorted(json.loads((out / INPUTS_RECORD).read_text())) == ["depth", "image", "trajectory"]
    (out / "points.ply").write_bytes(b"work")  # finished work of the scene
    assert changed_settings(out, configs) is None
    for path, key, change in ((photo, "image", lambda: Image.new("RGB", (64, 48), (1, 2, 3)).save(photo)),
                              (depth, "depth", lambda: np.save(depth, np.full((48, 64), 3.0, np.float32))),
                              (trajectory, "trajectory", lambda: trajectory.write_text(
                                  trajectory.read_text().replace('"fov": 60', '"fov": 50')))):
        kept = path.read_bytes()
        change()
        assert changed_settings(out, configs) == f"{key} {path}: the file changed since the scene was made"
        with pytest.raises(SettingsChanged, match=f"other settings \\({key} {re.escape(str(path))}: the file changed"):
            _prepare_folder(out, configs)
        path.write_bytes(kept)
        assert changed_settings(out, configs) is None
    Image.new("RGB", (64, 48), (1, 2, 3)).save(photo)
    _prepare_folder(out, configs, overwrite=True)  # starts over: the work is deleted, the new photo recorded
    assert not (out / "points.ply").exists() and changed_settings(out, configs) is None
    (out / "points.ply").write_bytes(b"work")
    (out / INPUTS_RECORD).unlink()  # an older version's folder
    Image.new("RGB", (64, 48), (9, 9, 9)).save(photo)
    assert changed_settings(out, configs) is None
    other = tmp_path / "other"  # another tool's inputs.json, in a folder that is no scene's: not overwritten
    other.mkdir()
    (other / INPUTS_RECORD).write_text("{}")
    with pytest.raises(NotASceneFolder, match="holds inputs.json, which a run would overwrite"):
        _prepare_folder(other, configs)


def test_a_later_stages_input_file_replaced_at_its_path_redoes_that_stage_not_the_dream(tmp_path, caplog):
    """inputs.json recorded the dream's input files only: a finished scene whose render trajectory
    file or extension file was replaced at the same path was "skipped (already complete)", its
    videos and extension those of the old file. Their digests are recorded too, and a change is
    what a change of their settings is: not a refusal (the dream still fits), but the scene is no
    longer finished, so the stages that read them run again (their own fingerprints hold the
    files' content), and it stays unfinished until they do (a rerun killed before they end)."""
    import logging

    from dreamer.pipeline.folder import INPUTS_RECORD, changed_settings
    from dreamer.pipeline.stages import _prepare_folder

    def cameras(fov):
        steps = [np.eye(4) for _ in range(2)]
        steps[1][0, 3] = 0.05
        return json.dumps({"fov": fov, "width": 64, "height": 64, "cameras": [{"c2w": m.tolist()} for m in steps]})

    render, extension = tmp_path / "render.json", tmp_path / "more.json"
    render.write_text(cameras(60))
    extension.write_text(cameras(60))
    out = tmp_path / "scene"
    ((_, _, configs, _),), _ = _plan("--render-trajectory", render, "--extensions", extension, "--out", out,
                                    "--models", "synthetic", "--width", "64", "--height", "64", "--views", "2")
    digest, done = _prepare_folder(out, configs)
    assert not done
    assert sorted(json.loads((out / INPUTS_RECORD).read_text())) == ["extensions[0]", "render_trajectory"]
    (out / "points.ply").write_bytes(b"work")  # finished work of the scene
    (out / "DONE").write_text(digest + "\n")
    assert _prepare_folder(out, configs) == (digest, True)
    caplog.set_level(logging.INFO, logger="dreamer.pipeline.stages")
    for path, key in ((render, "render_trajectory"), (extension, "extensions[0]")):
        path.write_text(cameras(50))
        assert changed_settings(out, configs) is None  # no refusal: the dream is the same
        caplog.clear()
        assert _prepare_folder(out, configs) == (digest, False)
        assert f"{key} {path}: the file changed since the scene was made: redoing the stages that read it" \
            in caplog.text
        assert _prepare_folder(out, configs) == (digest, False)  # killed before those stages ended: still to do
        (out / "DONE").write_text(digest + "\n")  # as the run that redid them leaves it
        assert _prepare_folder(out, configs) == (digest, True)


def test_two_jobs_of_one_process_probe_one_folder_at_once(tmp_path, monkeypatch):
    """The app runs jobs in threads of one process; two checking outputs in the same parent folder
    at once must not delete each other's probe file (a name per process did: "cannot write in ...
    (No such file or directory)" for a folder anyone can write to)."""
    import threading
    from pathlib import Path

    from dreamer.pipeline.preflight import check_output_folder

    both_wrote = threading.Barrier(2, timeout=60)
    real_unlink = Path.unlink

    def unlink(self, *args, **kwargs):
        if self.name.startswith(".dreamer-write-test-"):
            both_wrote.wait()  # both probes are written before either is deleted
        return real_unlink(self, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", unlink)
    errors = []

    def job(name):
        try:
            check_output_folder(tmp_path / name)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=job, args=(name,)) for name in ("scene-a", "scene-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert list(tmp_path.iterdir()) == []  # no probe left behind, no folder made
