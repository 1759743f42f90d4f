"""The zoom CLI with tiny models: files, resume, starting over. CPU, no weights."""

import json
import logging

import imageio.v2 as imageio
import pytest
import torch

from dreamer.io import save_image
from zoom import run as zrun
from zoom import sampler as zsampler

BASE = ["--models", "tiny", "--steps", "2", "--size", "64", "--fps", "4", "--seconds-per-level", "0.5",
        "--quiet"]


def _files(out, n):
    return [out / f"level_{i:02d}.png" for i in range(n)] + [out / n_ for n_ in
                                                              ("zoom.mp4", "config.json", "stack.pt", "done.json")]


def _forbid_sampling(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("sampled again")
    monkeypatch.setattr(zsampler, "sample_zoom_stack", boom)


def test_cli_writes_files_and_a_second_run_skips(tmp_path, monkeypatch, caplog):
    out = tmp_path / "zoom"
    args = ["--prompts", "a galaxy", "a solar system", "a planet", "--out", str(out), *BASE]
    assert zrun.main(args) == 0
    for f in _files(out, 3):
        assert f.exists(), f
    config = json.loads((out / "config.json").read_text())
    assert config["zoom"]["prompts"] == ["a galaxy", "a solar system", "a planet"]
    assert config["zoom"]["models"] == "tiny" and config["settings"]["steps"] == 2
    frames = imageio.mimread(out / "zoom.mp4")
    assert len(frames) == 2 * 2 + 1 and frames[0].shape == (64, 64, 3)
    png = imageio.imread(out / "level_01.png")
    assert png.shape == (64, 64, 3)
    stack = torch.load(out / "stack.pt", weights_only=True)
    assert stack["levels"].shape == (3, 64, 64, 3)
    assert not list(out.glob(".*tmp*"))  # atomic writes leave no temporaries

    before = {f.name: f.stat().st_mtime_ns for f in _files(out, 3)}
    _forbid_sampling(monkeypatch)
    with caplog.at_level(logging.INFO, logger="zoom.run"):
        assert zrun.main(args) == 0
    assert "nothing to do" in caplog.text
    assert {f.name: f.stat().st_mtime_ns for f in _files(out, 3)} == before


@pytest.mark.slow
def test_output_settings_reuse_the_stack_and_a_new_config_starts_over(tmp_path, monkeypatch):
    out = tmp_path / "zoom"
    config = zrun.ZoomConfig(prompts=("a", "b", "c"), steps=2, height=64, width=64, models="tiny")
    first = zrun.run_zoom(config, out, zrun.OutputConfig(fps=4, seconds_per_level=0.5))
    assert first["sampled"] and not first["skipped"]
    levels = torch.load(out / "stack.pt", weights_only=True)["levels"]

    with monkeypatch.context() as m:  # only the video changes: no sampling
        _forbid_sampling(m)
        second = zrun.run_zoom(config, out, zrun.OutputConfig(fps=4, seconds_per_level=1.0))
    assert not second["sampled"] and not second["skipped"]
    assert len(imageio.mimread(out / "zoom.mp4")) == 2 * 4 + 1

    changed = zrun.ZoomConfig(prompts=("a", "b"), steps=2, height=64, width=64, models="tiny", seed=1)
    third = zrun.run_zoom(changed, out, zrun.OutputConfig(fps=4, seconds_per_level=0.5))
    assert third["sampled"]
    assert not (out / "level_02.png").exists()  # nothing stale from the previous config
    new_levels = torch.load(out / "stack.pt", weights_only=True)["levels"]
    assert new_levels.shape[0] == 2 and not torch.equal(new_levels, levels[:2])
    assert json.loads((out / "done.json").read_text())["hash"] == third["config"]["hash"]


def test_prompts_file_and_photo(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# a zoom\na forest\n\na tree\n")
    photo = tmp_path / "photo.png"
    save_image(photo, torch.rand(80, 96, 3))
    out = tmp_path / "zoom"
    rc = zrun.main(["--prompts-file", str(prompts), "--photo", str(photo), "--photo-mode", "replace_low",
                    "--out", str(out), *BASE])
    assert rc == 0
    config = json.loads((out / "config.json").read_text())
    assert config["zoom"]["prompts"] == ["a forest", "a tree"]
    assert len(config["zoom"]["photo_sha256"]) == 64 and config["settings"]["photo"]
    assert zrun.read_prompts(prompts) == ["a forest", "a tree"]


def test_missing_model_fails_with_a_clear_message(tmp_path, caplog):
    out = tmp_path / "zoom"
    with caplog.at_level(logging.ERROR):
        rc = zrun.main(["--prompts", "a", "--model", str(tmp_path / "no_such_model"), "--device", "cpu",
                        "--out", str(out), "--quiet"])
    assert rc == 2
    assert "does not exist" in caplog.text
    assert not (out / "done.json").exists()


def test_bad_arguments(tmp_path):
    with pytest.raises(SystemExit):
        zrun.main(["--prompts", "a", "--p", "3", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        zrun.main(["--out", str(tmp_path)])
