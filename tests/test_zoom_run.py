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
    with pytest.raises(zrun.StackOfOtherSettings, match="--overwrite"):  # a sampled stack is not lost silently
        zrun.run_zoom(changed, out, zrun.OutputConfig(fps=4, seconds_per_level=0.5))
    assert torch.equal(torch.load(out / "stack.pt", weights_only=True)["levels"], levels)
    third = zrun.run_zoom(changed, out, zrun.OutputConfig(fps=4, seconds_per_level=0.5), overwrite=True)
    assert third["sampled"]
    assert not (out / "level_02.png").exists()  # nothing stale from the previous config
    new_levels = torch.load(out / "stack.pt", weights_only=True)["levels"]
    assert new_levels.shape[0] == 2 and not torch.equal(new_levels, levels[:2])
    assert json.loads((out / "done.json").read_text())["hash"] == third["config"]["hash"]


def test_the_cli_refuses_a_folder_of_other_settings_before_loading_a_model(tmp_path, monkeypatch, capsys):
    out = tmp_path / "zoom"
    args = ["--prompts", "a", "b", "--out", str(out), *BASE]
    assert zrun.main(args) == 0
    monkeypatch.setattr(zrun, "_load_pipeline", lambda config: (_ for _ in ()).throw(AssertionError("loaded")))
    capsys.readouterr()
    assert zrun.main([*args, "--seed", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--overwrite" in err and "other settings" in err
    monkeypatch.undo()
    assert zrun.main([*args, "--seed", "5", "--overwrite"]) == 0


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


def test_photo_path_is_kept_as_typed(tmp_path, monkeypatch):
    """The stack's hash holds --photo as typed (an earlier version's stack of '--photo
    ./photo.png' is reused by the same command, not refused as sampled with other settings):
    the path type only refuses an empty value."""
    save_image(tmp_path / "photo.png", torch.rand(40, 40, 3))
    monkeypatch.chdir(tmp_path)
    seen = {}
    monkeypatch.setattr(zrun, "run_zoom", lambda config, *a, **k: seen.setdefault("config", config) and {
        "skipped": True, "sampled": False, "files": [], "config": {}})
    assert zrun.main(["--prompts", "a", "--photo", "./photo.png", "--out", "zoom", *BASE]) == 0
    assert seen["config"].photo == "./photo.png"


def test_missing_model_fails_with_a_clear_message(tmp_path, caplog, capsys):
    out = tmp_path / "zoom"
    rc = zrun.main(["--prompts", "a", "--model", str(tmp_path / "no_such_model"), "--device", "cpu",
                    "--out", str(out), "--quiet"])
    assert rc == 2  # a folder that does not exist: a bad input, before the model loads
    assert "--model" in capsys.readouterr().err and not out.exists()
    (tmp_path / "empty_model").mkdir()
    with caplog.at_level(logging.ERROR):
        rc = zrun.main(["--prompts", "a", "--model", str(tmp_path / "empty_model"), "--device", "cpu",
                        "--out", str(out), "--quiet"])
    assert rc == 1  # the run started and failed (as a failed scene of dreamer.run)
    assert "does not hold a loadable" in caplog.text
    assert not (out / "done.json").exists()


def test_bad_arguments(tmp_path):
    with pytest.raises(SystemExit):
        zrun.main(["--prompts", "a", "--p", "3", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        zrun.main(["--out", str(tmp_path)])


def test_zoom_run_and_the_3d_zoom_draw_the_same_noise_for_a_seed(tmp_path, monkeypatch):
    """Both entry points take their generator from zoom.sampler.seeded_generator: a CPU generator
    whatever the device (zoom.run once seeded a CUDA generator on a GPU, the 3D zoom a CPU one, so
    one seed gave two stacks). The device is forced to "cuda" here: the CPU generator needs none."""
    import dataclasses

    import zoom
    from dreamer.deepzoom import level_images
    from dreamer.cameras import Camera
    from zoom.sampler import ZoomResult

    seen = []

    def capture(pipe, prompts, *, generator, height, width, **kw):
        seen.append(torch.randn(16, generator=generator))
        n = len(prompts)
        return ZoomResult(torch.zeros(n, height, width, 3), torch.zeros(n, height, width, 3), list(prompts),
                          {"p": 2}, 0.0)

    monkeypatch.setattr(zsampler, "sample_zoom_stack", capture)
    monkeypatch.setattr(zoom, "sample_zoom_stack", capture)
    monkeypatch.setattr(zrun, "_load_pipeline", lambda config: (object(), None))
    monkeypatch.setattr("dreamer.pipeline.preflight.check_model_source", lambda *a: None)  # no model loads here
    monkeypatch.setattr(zrun, "_resolve", lambda c: dataclasses.replace(c, device="cuda", dtype="float16"))
    zrun.run_zoom(zrun.ZoomConfig(prompts=("a", "b"), seed=11, height=64, width=64), tmp_path / "z",
                  zrun.OutputConfig(fps=2, seconds_per_level=0.5))
    cams = [Camera.from_fov(50.0, 64, 64), Camera.from_fov(50.0, 64, 64)]
    level_images(cams, ["a", "b"], pipeline=object(), seed=11)
    assert len(seen) == 2 and torch.equal(seen[0], seen[1])
