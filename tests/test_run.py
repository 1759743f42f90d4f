"""The command line: every output file, resume, batch, shards, failures, missing models."""

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from forked import run_in_fork
from PIL import Image

from dreamer.io import read_json
from dreamer.pointcloud import PointCloud
from dreamer.run import _parse_shard, load_batch, main

SMALL = ["--width", "64", "--height", "64", "--no-splats", "-q"]


def run_cli(*args):
    return main([*map(str, args)])


def test_synthetic_run_writes_every_file(tmp_path):
    out = tmp_path / "demo"
    assert run_cli("--models", "synthetic", "--trajectory", "lookaround", "--views", 3, "--out", out, *SMALL) == 0
    for name in ("points.ply", "cameras.json", "transforms.json", "metrics.json", "config.json", "run.log",
                 "first_view.png", "prompt.txt", "DONE"):
        assert (out / name).exists(), name
    for i in range(3):
        for suffix in (".png", "_depth.npy", "_depth.png", "_mask.png"):
            assert (out / "views" / f"{i:03d}{suffix}").exists()
    depth = np.load(out / "views" / "001_depth.npy")
    assert depth.shape == (64, 64) and np.isfinite(depth).all() and (depth > 0).all()
    cloud = PointCloud.load_ply(out / "points.ply")
    assert len(cloud) > 64 * 64 and cloud.rgb.max() <= 1.0
    cams = read_json(out / "cameras.json")
    assert cams["convention"] == "opencv" and len(cams["cameras"]) == 3
    tf = read_json(out / "transforms.json")
    assert len(tf["frames"]) == 3 and (out / tf["frames"][1]["file_path"]).exists()
    # transforms.json holds OpenGL-axes c2w: its -z column is our +z (viewing) direction
    c2w_gl = torch.tensor(tf["frames"][1]["transform_matrix"])
    c2w_cv = torch.tensor(cams["cameras"][1]["c2w"])
    assert torch.allclose(-c2w_gl[:3, 2], c2w_cv[:3, 2], atol=1e-6)
    # Either export given back as --trajectory: the run's cameras (transforms.json in OpenGL axes)
    from dreamer.trajectories import load_trajectory

    for a, b in zip(load_trajectory(out / "cameras.json").cameras, load_trajectory(out / "transforms.json").cameras,
                    strict=True):
        assert (a.width, a.height) == (b.width, b.height) == (64, 64)
        assert torch.allclose(a.K, b.K) and torch.allclose(a.c2w, b.c2w, atol=1e-6)
    m = read_json(out / "metrics.json")
    assert m["views"] == 3 and m["abs_rel_aligned"] < m["abs_rel_unaligned"]
    cfg = read_json(out / "config.json")
    assert cfg["scene"]["trajectory"] == "lookaround" and cfg["models"]["models"] == "synthetic" and cfg["hash"]


def test_rerun_skips_and_a_changed_config_is_refused_until_overwrite(tmp_path, capsys):
    out = tmp_path / "s"
    args = ["--models", "synthetic", "--views", 2, "--out", out, *SMALL]
    assert run_cli(*args) == 0
    stamp = (out / "points.ply").stat().st_mtime_ns
    assert run_cli(*args) == 0
    assert "1 skipped" in capsys.readouterr().out
    assert (out / "points.ply").stat().st_mtime_ns == stamp
    # Other dream settings: one line naming what changed and the flag; nothing is touched.
    assert run_cli(*args, "--grow-px", 5) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "grow_px 3 -> 5" in err and "--overwrite" in err
    assert (out / "points.ply").stat().st_mtime_ns == stamp and (out / "DONE").exists()
    assert read_json(out / "config.json")["dream"]["grow_px"] == 3
    assert run_cli(*args, "--grow-px", 5, "--overwrite") == 0
    assert (out / "points.ply").stat().st_mtime_ns != stamp
    assert read_json(out / "config.json")["dream"]["grow_px"] == 5


def test_a_batch_refuses_a_changed_scene_before_any_work(tmp_path, capsys):
    batch = tmp_path / "scenes.jsonl"
    _write_batch(batch, [{"name": "a", "models": "synthetic", "views": 2}])
    assert run_cli("--batch", batch, "--out", tmp_path / "runs", *SMALL) == 0
    stamp = (tmp_path / "runs" / "a" / "points.ply").stat().st_mtime_ns
    _write_batch(batch, [{"name": "a", "models": "synthetic", "views": 2, "seed": 7},
                         {"name": "b", "models": "synthetic", "views": 2}])
    assert run_cli("--batch", batch, "--out", tmp_path / "runs", *SMALL) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "seed 0 -> 7" in err and "--overwrite" in err
    assert f"{batch}:1: scene 0 (a): " in err  # as a bad input of the scene is named
    assert not (tmp_path / "runs" / "b").exists()  # refused before anything ran
    assert (tmp_path / "runs" / "a" / "points.ply").stat().st_mtime_ns == stamp  # a was left alone
    assert run_cli("--batch", batch, "--out", tmp_path / "runs", "--overwrite", *SMALL) == 0
    assert read_json(tmp_path / "runs" / "a" / "config.json")["dream"]["seed"] == 7


def test_one_scene_in_a_terminal_asks_before_starting_over(tmp_path, monkeypatch, capsys):
    import builtins

    out = tmp_path / "s"
    args = ["--models", "synthetic", "--views", 2, "--out", out, *SMALL]
    assert run_cli(*args) == 0
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    asked = []
    monkeypatch.setattr(builtins, "input", lambda q: asked.append(q) or "n")
    assert run_cli(*args, "--seed", 3) == 2  # no: refused, nothing deleted
    assert "seed 0 -> 3" in asked[0] and read_json(out / "config.json")["dream"]["seed"] == 0
    monkeypatch.setattr(builtins, "input", lambda q: "y")
    assert run_cli(*args, "--seed", 3) == 0
    assert read_json(out / "config.json")["dream"]["seed"] == 3


def test_a_default_that_resolves_the_same_way_continues_the_scene(tmp_path, capsys):
    """--preset auto on this CPU resolves to 'quick': the same values given by hand are the same
    scene (skipped), and the preset is recorded beside the settings without being hashed."""
    from dreamer.pipeline.presets import PRESETS

    out = tmp_path / "s"
    assert run_cli("--models", "synthetic", "--views", 2, "--no-splats", "-q", "--out", out) == 0
    cfg = read_json(out / "config.json")
    assert cfg["preset"] == "quick" and cfg["scene"]["width"] == PRESETS["quick"]["width"]
    assert cfg["scene"]["render_frames"] == PRESETS["quick"]["render_frames"]
    quick = PRESETS["quick"]
    explicit = ["--width", quick["width"], "--height", quick["height"], "--render-frames", quick["render_frames"],
                "--gs-iters", quick["iterations"], "--preset", "full"]
    capsys.readouterr()
    assert run_cli("--models", "synthetic", "--views", 2, "--no-splats", "-q", "--out", out, *explicit) == 0
    assert "1 skipped" in capsys.readouterr().out
    # an explicit value wins over the preset
    assert run_cli("--models", "synthetic", "--views", 2, "--no-splats", "-q", "--width", 64, "--height", 64,
                   "--out", tmp_path / "t") == 0
    assert read_json(tmp_path / "t" / "config.json")["scene"]["width"] == 64


@pytest.mark.slow  # several runs of the command, 1-3 s
def test_only_the_changed_stage_is_redone(tmp_path, monkeypatch, capsys):
    """Changing only --render-frames: the finished dream, its metrics and the splats are reloaded
    (no model, no joint refinement, no training, no file rewritten), only the videos are made."""
    import dreamer.pipeline.stages as stages
    import dreamer.scene.joint_refinement as joint
    import dreamer.scene.metrics as metrics
    import dreamer.splats.train as train

    out = tmp_path / "s"
    args = ["--models", "synthetic", "--views", 2, "--width", 64, "--height", 64, "--gs-iters", 4, "-q", "--out", out]
    assert run_cli(*args, "--render-frames", 4) == 0
    assert not (out / "splats" / "checkpoint.pt").exists() and not list((out / "checkpoint").glob("view_*"))
    kept = [out / n for n in ("points.ply", "cameras.json", "transforms.json", "first_view.png",
                              "gaussians.ply", "checkpoint/result.pt", "splats/done.json")]
    kept += sorted((out / "views").iterdir())
    stamps = {p: p.stat().st_mtime_ns for p in kept}
    video = (out / "videos" / "llff.mp4").stat().st_mtime_ns
    before = read_json(out / "metrics.json")

    def forbidden(what):
        def call(*a, **k):
            raise AssertionError(f"{what} ran again")
        return call

    monkeypatch.setattr(stages, "dream", forbidden("the dream loop"))
    monkeypatch.setattr(joint, "refine_scene", forbidden("the joint refinement"))
    monkeypatch.setattr(metrics, "world_metrics", forbidden("the metrics"))
    monkeypatch.setattr(train, "build_training_views", forbidden("splat training"))
    assert run_cli(*args, "--render-frames", 6) == 0
    assert {p: p.stat().st_mtime_ns for p in kept} == stamps
    assert (out / "videos" / "llff.mp4").stat().st_mtime_ns != video
    # metrics.json: the ground-truth figures kept, the video's figures those of the new path
    after = read_json(out / "metrics.json")
    assert {k: v for k, v in after.items() if k != "splats"} == {k: v for k, v in before.items() if k != "splats"}
    assert (before["splats"]["video_frames"], after["splats"]["video_frames"]) == (4, 6)
    # and nothing at all when nothing changed but the scene is run again without its DONE marker
    (out / "DONE").unlink()
    video = (out / "videos" / "llff.mp4").stat().st_mtime_ns
    assert run_cli(*args, "--render-frames", 6) == 0
    assert (out / "videos" / "llff.mp4").stat().st_mtime_ns == video


@pytest.mark.slow  # every stage of a run, twice
def test_checkpoints_are_dropped_when_a_stage_completes_and_disk_use_is_reported(tmp_path, capsys, caplog):
    from dreamer.pipeline.folder import disk_usage, format_bytes

    out, kept = tmp_path / "s", tmp_path / "k"
    args = ["--models", "synthetic", "--views", 2, "--width", 64, "--height", 64, "--gs-iters", 4,
            "--render-frames", 4, "-q"]
    with caplog.at_level("INFO", logger="dreamer.pipeline.stages"):
        assert run_cli(*args, "--out", out) == 0
    summary = capsys.readouterr().out
    size = disk_usage(out)
    assert f"({format_bytes(size)}" in summary.split(str(out))[1] or format_bytes(size) in summary
    assert f"{format_bytes(size)} on disk" in caplog.text
    assert sorted(p.name for p in (out / "checkpoint").iterdir()) == ["result.pt"]
    assert sorted(p.name for p in (out / "splats").iterdir()) == ["config.json", "done.json", "gaussians.ply"]
    # the scene's splats and the stage's result are one file on disk (counted once)
    assert (out / "gaussians.ply").stat().st_ino == (out / "splats" / "gaussians.ply").stat().st_ino
    assert run_cli(*args, "--out", kept, "--keep-checkpoints") == 0
    assert (kept / "splats" / "checkpoint.pt").exists() and (kept / "checkpoint" / "view_001.pt").exists()
    assert (kept / "gaussians.ply").read_bytes() == (out / "gaussians.ply").read_bytes()
    # The kept splat checkpoint holds at least the Gaussians again (with 4 iterations at SH degree 0
    # the optimizer has no moments for the higher SH coefficients, most of a Gaussian's floats).
    assert disk_usage(kept) > size + (out / "gaussians.ply").stat().st_size


def test_config_file_round_trip(tmp_path):
    out = tmp_path / "a"
    assert run_cli("--models", "synthetic", "--views", 2, "--close-px", 2, "--out", out, *SMALL) == 0
    out2 = tmp_path / "b"
    assert run_cli("--config", out / "config.json", "--out", out2, "-q") == 0
    a, b = read_json(out / "config.json"), read_json(out2 / "config.json")
    assert a["hash"] == b["hash"] and b["dream"]["close_px"] == 2


def _write_batch(path: Path, scenes):
    path.write_text("\n".join(json.dumps(s) for s in scenes) + "\n")


@pytest.mark.slow  # several runs of the command, 1-3 s
def test_batch_with_a_failing_scene(tmp_path, capsys, monkeypatch):
    import dreamer.pipeline.stages as stages

    real = stages.write_scene

    def write_scene(out, result):
        if out.name == "bad":
            raise OSError(28, "No space left on device")
        real(out, result)

    monkeypatch.setattr(stages, "write_scene", write_scene)
    batch = tmp_path / "scenes.jsonl"
    _write_batch(batch, [
        {"name": "good", "models": "synthetic", "views": 2},
        {"name": "bad", "models": "synthetic", "views": 2},
        {"name": "also-good", "models": "synthetic", "views": 2, "trajectory": "forward"},
    ])
    code = run_cli("--batch", batch, "--out", tmp_path / "runs", *SMALL)
    text = capsys.readouterr().out
    assert code == 1
    assert "2 done" in text and "1 failed" in text and "No space left on device" in text
    assert (tmp_path / "runs" / "good" / "DONE").exists() and (tmp_path / "runs" / "also-good" / "DONE").exists()
    assert "Traceback" in (tmp_path / "runs" / "bad" / "run.log").read_text()


def test_bad_inputs_in_a_batch_stop_it_before_any_work_and_are_all_named(tmp_path, capsys, monkeypatch):
    batch = tmp_path / "scenes.jsonl"
    _write_batch(batch, [
        {"name": "good", "models": "synthetic", "views": 2},
        {"name": "bad", "models": "synthetic", "image": str(tmp_path / "missing.png")},
        {"name": "worse", "models": "synthetic", "views": -1},
    ])
    import dreamer.backends.model_sets as model_sets

    monkeypatch.setattr(model_sets, "build_backends", lambda *a, **k: pytest.fail("a model was built"))
    assert run_cli("--batch", batch, "--out", tmp_path / "runs", *SMALL) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "Traceback" not in "".join(err)
    assert f"error: {batch}:2: scene 1 (bad): " in err[0] and "missing.png" in err[0]
    assert f"error: {batch}:3: scene 2 (worse): " in err[1] and "views" in err[1]
    assert not (tmp_path / "runs" / "good").exists()


def test_shards_cover_the_batch_exactly_once(tmp_path):
    batch = tmp_path / "scenes.yaml"
    batch.write_text("scenes:\n" + "".join(f"  - {{name: s{i}, models: synthetic, views: 1}}\n" for i in range(5)))
    for i in range(3):
        assert run_cli("--batch", batch, "--out", tmp_path / "runs", "--shard", f"{i}/3", *SMALL) == 0
    done = sorted(p.parent.name for p in (tmp_path / "runs").glob("*/DONE"))
    assert done == [f"s{i}" for i in range(5)]
    assert _parse_shard("1/3") == (1, 3)
    for bad in ("3/3", "a/b", "1/0"):
        with pytest.raises(ValueError):
            _parse_shard(bad)


def test_batch_file_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"prompt": \n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        load_batch(bad)
    unknown = tmp_path / "unknown.jsonl"
    _write_batch(unknown, [{"promt": "typo"}])
    assert run_cli("--batch", unknown, "--out", tmp_path / "r", "-q") == 2


@pytest.mark.slow
def test_tiny_models_text_image_and_rgbd(tmp_path):
    base = ["--models", "tiny", "--steps", 2, "--views", 2, "--trajectory", "lookaround", *SMALL]
    assert run_cli("--prompt", "a cozy room", "--out", tmp_path / "text", *base) == 0
    photo = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((90, 120, 3)) * 255).astype(np.uint8)).save(photo)
    depth = tmp_path / "depth.npy"
    np.save(depth, np.full((90, 120), 2.5, np.float32))
    assert run_cli("--image", photo, "--prompt", "a room", "--out", tmp_path / "photo", *base) == 0
    assert run_cli("--image", photo, "--depth", depth, "--fit", "pad", "--out", tmp_path / "rgbd", *base) == 0
    d0 = np.load(tmp_path / "rgbd" / "views" / "000_depth.npy")
    assert np.allclose(d0, 2.5)
    for name in ("text", "photo", "rgbd"):
        assert (tmp_path / name / "points.ply").exists()


def test_missing_model_fails_fast_with_a_hint(tmp_path, capsys, monkeypatch):
    """A model folder that does not exist, or (offline) a hub id that is not cached, is a bad input
    refused before any model loads; whether an existing folder loads is known when it loads (1)."""
    import dreamer.backends.model_sets as model_sets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    built = []
    monkeypatch.setattr(model_sets, "build_backends", lambda *a, **k: built.append(1))
    code = run_cli("--models", "default", "--inpaint-model", str(tmp_path / "no-such-model"), "--prompt", "x",
                   "--out", tmp_path / "m", *SMALL)
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--inpaint-model" in err and "no-such-model" in err and len(err.splitlines()) == 1
    (tmp_path / "empty-model").mkdir()
    local = ["--inpaint-model", tmp_path / "empty-model", "--text2img-model", tmp_path / "empty-model"]
    code = run_cli("--models", "default", *local, "--depth-model", "someone/not-cached", "--prompt", "x",
                   "--out", tmp_path / "m", *SMALL)
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--depth-model 'someone/not-cached'" in err and "HF_HUB_OFFLINE" in err
    assert not built and not (tmp_path / "m").exists()
    monkeypatch.undo()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = run_cli("--models", "default", *local, "--depth-model", tmp_path / "empty-model", "--prompt", "x",
                   "--out", tmp_path / "m2", *SMALL)
    assert code == 1 and "empty-model" in capsys.readouterr().out


@pytest.mark.slow
def test_help_reads_like_documentation():
    text = subprocess.run([sys.executable, "-m", "dreamer.run", "--help"], capture_output=True, text=True,
                          check=True).stdout
    for flag in ("--prompt", "--image", "--depth", "--trajectory", "--batch", "--shard", "--models", "--grow-px",
                 "--seed"):
        assert flag in text
    # help texts come from the config fields' docstrings (one source of truth)
    assert "Margin in pixels by which holes are grown" in " ".join(text.split())
    # the costly settings say what they default to on this kind of machine
    assert ("(default: 128 (256 with --models default) on a CPU, 512 on a GPU, 64 with --models tiny; see --preset)"
            in " ".join(text.split()))


@pytest.mark.parametrize("module", ["dreamer.run", "zoom.run"])
def test_reading_the_arguments_imports_no_model_code(module):
    """--help, bad usage and the parse itself come before torch and the models' libraries."""
    code = (f"import sys; from {module} import build_parser; p = build_parser(); "
            f"p.format_help(); print(sorted(m for m in ('torch', 'diffusers', 'transformers', 'numpy', 'scipy') "
            f"if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    bad = subprocess.run([sys.executable, "-X", "importtime", "-m", module, "--no-such-flag"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "torch" not in {line.split("|")[-1].strip() for line in bad.stderr.splitlines()}


def test_the_parser_reads_the_same_settings_as_the_classes():
    """The parser reads the settings' dataclasses from their source (no import); it must agree
    with the classes themselves, field by field."""
    from dreamer.configs import field_specs
    from dreamer.pipeline.settings import CONFIG_SECTIONS
    from dreamer.run import _SECTION_CLASSES, _section_specs, build_parser

    assert list(_SECTION_CLASSES) == list(CONFIG_SECTIONS)
    for section, get_cls in CONFIG_SECTIONS.items():
        assert _SECTION_CLASSES[section] == (get_cls().__module__, get_cls().__name__)
    assert _section_specs(from_source=True) == {s: field_specs(g()) for s, g in CONFIG_SECTIONS.items()}
    assert build_parser(from_source=True).format_help() == build_parser(from_source=False).format_help()


def test_presets_follow_the_models_and_the_device():
    from dreamer.pipeline.presets import PRESETS, auto_preset, preset_values

    assert auto_preset("tiny") == "plumbing" and auto_preset("synthetic", "cpu") == "quick"
    assert auto_preset("default", "cpu") == "quick"
    assert preset_values("quick", models="default")[1]["width"] == 256  # diffusion models want 256 px at least
    assert preset_values("quick", models="synthetic")[1]["width"] == PRESETS["quick"]["width"]
    name, values = preset_values("auto", models="synthetic", device="cpu", explicit={"width"})
    assert name == "quick" and "width" not in values and values["height"] == PRESETS["quick"]["height"]
    name, values = preset_values("auto", models="tiny", trajectory="my_path.json")
    assert name == "plumbing" and "views" not in values  # a trajectory file brings its own cameras
    assert preset_values("full", models="synthetic")[1] == {}
    with pytest.raises(ValueError, match="--preset"):
        preset_values("fast", models="synthetic")


@pytest.mark.slow
def test_a_clean_run_prints_progress_and_results_only(tmp_path):
    """The tiny models (transformers and diffusers behind them) and the procedural world, through
    the command line: no library warning, no deprecation notice, no absurd progress rate. One
    process runs both scenes (a batch): a warning is printed by the first scene that meets it."""
    import re

    batch = tmp_path / "scenes.jsonl"
    _write_batch(batch, [{"name": "tiny", "models": "tiny", "prompt": "a room"},
                         {"name": "synthetic", "models": "synthetic"}])
    run = subprocess.run([sys.executable, "-m", "dreamer.run", "--batch", str(batch), "--views", "2", "--width", "64",
                          "--height", "64", "--steps", "2", "--gs-iters", "3", "--render-frames", "4",
                          "--out", str(tmp_path / "runs")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "2 done" in run.stdout and (tmp_path / "runs" / "tiny" / "DONE").exists()
    text = run.stdout + run.stderr
    for noise in ("Warning", "warn(", "deprecated", "[transformers]", "torchvision", "symlinks", "Traceback"):
        assert noise not in text, (noise, text[-3000:])
    rates = [float(r) for r in re.findall(r"([0-9.]+)it/s", text)]
    assert all(r < 1000 for r in rates), rates  # a rate is shown only once two steps were timed
    for line in run.stderr.splitlines():  # what is not a progress bar is a log line of ours
        line = line.split("\r")[-1].strip()
        assert not line or line.startswith(("INFO dreamer", "WARNING dreamer")) or "|" in line, line


def _killed_batch(after: int, args) -> int:
    """The batch, killed (SIGKILL) once the victim checkpointed ``after`` views; run in a forked copy
    of this process (tests/forked.py), whose patch stays there."""
    import dreamer.pipeline.stages as pipeline

    real = pipeline.save_checkpoint

    def save_then_die(folder, result):
        real(folder, result)
        if len(result.views) == after and "victim" in str(folder):
            os.kill(os.getpid(), signal.SIGKILL)  # as abrupt as a crash or a killed job

    pipeline.save_checkpoint = save_then_die
    return run_cli(*args)


@pytest.mark.slow
def test_killed_batch_resumes_to_the_same_outputs(tmp_path):
    batch = tmp_path / "scenes.jsonl"
    _write_batch(batch, [
        {"name": "first", "models": "synthetic", "views": 2},
        {"name": "victim", "models": "synthetic", "views": 5},
        {"name": "last", "models": "synthetic", "views": 2, "trajectory": "forward"},
    ])
    log = tmp_path / "killed.log"
    killed = run_in_fork(log, _killed_batch, 3, ["--batch", batch, "--out", tmp_path / "a", *SMALL])
    assert killed == -signal.SIGKILL, log.read_text()[-2000:]
    victim = tmp_path / "a" / "victim"
    assert (victim / "checkpoint" / "view_002.pt").exists() and not (victim / "DONE").exists()
    assert not list(victim.rglob("*.tmp*"))  # atomic writes: no half-written files
    assert run_cli("--batch", batch, "--out", tmp_path / "a", *SMALL) == 0
    assert run_cli("--batch", batch, "--out", tmp_path / "b", *SMALL) == 0  # uninterrupted
    for name in ("first", "victim", "last"):
        a, b = tmp_path / "a" / name, tmp_path / "b" / name
        assert (a / "points.ply").read_bytes() == (b / "points.ply").read_bytes(), name
        for f in sorted((b / "views").iterdir()):
            assert (a / "views" / f.name).read_bytes() == f.read_bytes(), f"{name}/{f.name}"


def test_a_resume_removes_the_temporaries_a_killed_run_left(tmp_path):
    out = tmp_path / "s"
    assert run_cli("--models", "synthetic", "--views", 2, "--out", out, *SMALL) == 0
    (out / "DONE").unlink()  # killed before the end
    leftover = out / "videos" / ".llff.mp4.a1b2c3d4.tmp.mp4"  # a video writer killed mid-write
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(b"\0" * 100)
    assert run_cli("--models", "synthetic", "--views", 2, "--out", out, *SMALL) == 0
    assert not leftover.exists() and not list(out.rglob("*.tmp*"))


@pytest.mark.slow  # several runs of the command, 1-3 s
def test_a_damaged_checkpoint_names_the_file_and_restart_starts_over(tmp_path, capsys):
    out = tmp_path / "s"
    args = ["--models", "synthetic", "--views", 2, "--out", out, *SMALL]
    assert run_cli(*args) == 0
    (out / "DONE").unlink()
    (out / "checkpoint" / "result.pt").write_bytes(b"not a checkpoint")
    capsys.readouterr()
    assert run_cli(*args) == 2  # found before any model loads
    reason = capsys.readouterr().err
    assert "result.pt cannot be loaded safely" in reason and "--restart" in reason
    torch.save({"something": "else"}, out / "checkpoint" / "result.pt")  # a readable file of another layout
    assert run_cli(*args) == 2
    reason = capsys.readouterr().err
    assert "result.pt holds a checkpoint of another layout (no points, views)" in reason and "--restart" in reason
    torch.save({"views": [{"camera": 1}], "points": {}}, out / "checkpoint" / "result.pt")  # nested entries missing
    assert run_cli(*args) == 2
    reason = capsys.readouterr().err
    assert "(no points.radius, points.rgb, points.xyz, views[0].depth and 4 more)" in reason
    view = {"camera": 1, "image": None, "depth": None, "mask": None, "prompt": "", "stats": {}}
    torch.save({"views": [view], "points": {"xyz": 1, "rgb": 1, "radius": 1}}, out / "checkpoint" / "result.pt")
    assert run_cli(*args) == 1  # the layout's entries, each of another kind: found when it is loaded
    reason = capsys.readouterr().out
    assert "result.pt holds a result of another layout" in reason and "--restart" in reason
    assert run_cli(*args, "--restart") == 0
    assert (out / "DONE").exists() and (out / "checkpoint" / "result.pt").stat().st_size > 100


def test_rerun_removes_temporary_files_of_a_killed_write(tmp_path):
    """A process killed between a write and its rename (kill -9 at any instant) leaves the
    temporary file of dreamer.io.atomic_path behind; the next run of the scene removes it."""
    out = tmp_path / "s"
    args = ["--models", "synthetic", "--views", 2, "--out", out, *SMALL]
    assert run_cli(*args) == 0
    stale = [out / "checkpoint" / ".points.pt.k2_x9qzz.tmp.pt", out / "views" / ".001.png.a1b2c3d4.tmp.png",
             out / ".DONE.zz00aa11.tmp"]
    for p in stale:
        p.write_bytes(b"half a file")
    keep = out / ".keep"
    keep.write_text("not ours\n")
    assert run_cli(*args) == 0
    assert not [p for p in stale if p.exists()] and keep.exists()


@pytest.mark.slow  # two runs of the command
def test_a_one_camera_scene_writes_standard_json_and_reads_its_metrics_back(tmp_path, capsys, caplog):
    """One camera: the depth metrics have no data (NaN), written as null (JSON has no NaN; jq and
    JavaScript refuse it). A second run that reuses the dream (splats added) reads them back as
    NaN and reports them without a logging error."""
    caplog.set_level(logging.INFO)
    out = tmp_path / "one"
    args = ["--models", "synthetic", "--views", 1, "--out", out, "--width", 32, "--height", 32]
    assert run_cli(*args, "--no-splats") == 0
    assert run_cli(*args, "--render-frames", 4) == 0
    assert "Logging error" not in capsys.readouterr().err
    reports = [r.getMessage() for r in caplog.records if "AbsRel" in r.msg]
    assert len(reports) == 2 and all("AbsRel aligned nan" in line for line in reports)

    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    m = json.loads((out / "metrics.json").read_text(), parse_constant=refuse)
    assert m["views"] == 1 and m["abs_rel_aligned"] is None and m["splats"]["video_frames"] == 4


def test_what_an_input_makes_the_run_guess_is_said_once_per_run(tmp_path, caplog):
    """A depth map mostly unknown (a 16-bit PNG of zeros) was said 3 times in one run, and a float
    photo's clipping as often: the planner's checks, run_scene's own checks and the first view each
    read the files. The checks now read them quietly: one warning per scene, where the first view
    reads them (so in the scene's run.log too), for one scene, each scene of a batch, and the app's
    way (its request check, then run_scene)."""
    from apps.inputs import Limits as AppLimits
    from apps.inputs import check_scene_request
    from dreamer.backends.model_sets import build_backends
    from dreamer.pipeline import configs_from_flat, run_scene

    photo, depth = tmp_path / "photo.tif", tmp_path / "sparse.png"
    Image.fromarray(np.random.default_rng(0).uniform(0, 2, (48, 64)).astype(np.float32)).save(photo)  # mode F
    mm = np.zeros((48, 64), np.uint16)
    mm[:12] = 2000  # a quarter known
    Image.fromarray(mm).save(depth)
    said = ("sparse.png: 2304 of its 3072 depth values are 0 (unknown, 75.00%)", "photo.tif: floating-point image")

    def warned():
        found = [next(s for s in said if s in r.getMessage()) for r in caplog.records
                 if r.levelno == logging.WARNING and any(s in r.getMessage() for s in said)]
        caplog.clear()
        return sorted(found)

    def in_log(scene):
        text = (scene / "run.log").read_text()
        return sorted(s for s in said for _ in range(text.count(s)))

    caplog.set_level(logging.INFO)
    scene = ["--models", "synthetic", "--views", 1, "--image", photo, "--depth", depth, *SMALL]
    assert run_cli(*scene, "--out", tmp_path / "one") == 0
    assert warned() == in_log(tmp_path / "one") == sorted(said)
    batch = tmp_path / "scenes.jsonl"
    _write_batch(batch, [{"name": "a"}, {"name": "b", "seed": 1}])
    assert run_cli("--batch", batch, *scene, "--out", tmp_path / "runs") == 0
    assert warned() == sorted(said * 2)
    assert in_log(tmp_path / "runs" / "a") == in_log(tmp_path / "runs" / "b") == sorted(said)
    configs = configs_from_flat({"models": "synthetic", "views": 1, "width": 64, "height": 64, "image": str(photo),
                                 "depth": str(depth)})  # no splats: the default here
    check_scene_request(configs, tmp_path, AppLimits())
    run_scene(configs, tmp_path / "app", build_backends(configs.models))
    assert warned() == in_log(tmp_path / "app") == sorted(said)


@pytest.mark.slow  # three runs with splats and videos, about 5 s
def test_a_finished_scene_renders_its_videos_again_for_a_replaced_render_trajectory_file(tmp_path, caplog):
    """The rerun of a finished scene whose render trajectory file was replaced at the same path was
    "skipped (already complete)" with the old path's videos; it now renders the new path (and only
    that: the dream and the splats are reloaded)."""
    def path(fov):
        cams = [np.eye(4) for _ in range(3)]
        for i, c2w in enumerate(cams):
            c2w[0, 3] = 0.05 * i
        return json.dumps({"fov": fov, "cameras": [{"c2w": m.tolist()} for m in cams]})

    render, out = tmp_path / "render.json", tmp_path / "scene"
    render.write_text(path(60))
    args = ["--models", "synthetic", "--views", 2, "--width", 64, "--height", 64, "--gs-iters", 5,
            "--render-trajectory", render, "--out", out, "-q"]
    assert run_cli(*args) == 0
    first = json.loads((out / "videos" / "done.json").read_text())
    render.write_text(path(40))  # a narrower view: the same splats cover more of each frame
    caplog.set_level(logging.INFO)
    assert run_cli(*args) == 0
    assert "the dream is finished (2 views); reusing it" in caplog.text
    assert "splats/done.json says this stage is finished; loading its result" in caplog.text
    assert f"render_trajectory {render}: the file changed since the scene was made" in caplog.text
    again = json.loads((out / "videos" / "done.json").read_text())
    assert again["key"] != first["key"] and again["coverage"] != first["coverage"]
    assert (out / "DONE").exists()
    caplog.clear()
    assert run_cli(*args) == 0 and "already complete" in caplog.text
