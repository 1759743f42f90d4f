"""The refine step from the command line: its flags, its figures in metrics.json, and a run
killed (SIGKILL) in the completion pass or in splat training that resumes to the same files."""

import os
import signal

import pytest
from forked import run_in_fork

from dreamer.io import read_json
from dreamer.run import build_parser, main

SMALL = ["--models", "synthetic", "--width", "32", "--height", "32", "--views", "3", "--gs-iters", "30",
         "--render-frames", "6", "--refine", "--repair-start", "5", "--repair-every", "10", "--repair-rounds", "3",
         "--repair-views", "2", "--checkpoint-every", "10", "--complete-path-frames", "6", "--complete-max-views", "3",
         "-q"]


def test_refine_flags_are_documented():
    text = " ".join(build_parser().format_help().split())
    for flag in ("--refine ", "--refine-model", "--refine-strength", "--complete-threshold", "--repair-rounds",
                 "--repair-weight", "--depth-weight", "--refine-video", "--complete-suspect-views",
                 "--refine-min-scale-px", "--min-scale-px"):
        assert flag in text, flag
    assert "refine step (completion pass, repaired novel views, depth supervision)" in text


def _killed_run(where: str, out) -> int:
    """The refine run, killed (SIGKILL) after the first completion view or after two repair rounds
    of splat training; run in a forked copy of this process (tests/forked.py), whose patches stay
    there."""
    import dreamer.pipeline.stages as stages
    import dreamer.splats.train as train

    real_scene, real_splats = stages.save_checkpoint, train._save_checkpoint

    def scene_then_die(folder, result, extra=None):
        real_scene(folder, result, extra)
        if where == "complete" and folder.name == "complete":
            os.kill(os.getpid(), signal.SIGKILL)  # after the first completion view

    def splats_then_die(folder, **kw):
        real_splats(folder, **kw)
        if where == "splats" and kw["iteration"] == 20:
            os.kill(os.getpid(), signal.SIGKILL)  # after two repair rounds

    stages.save_checkpoint = scene_then_die
    train._save_checkpoint = splats_then_die
    return main([*SMALL, "--out", str(out)])


@pytest.mark.slow
def test_killed_refine_run_resumes_to_the_same_outputs(tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    assert main([*SMALL, "--out", str(straight)]) == 0
    m = read_json(straight / "metrics.json")
    assert m["refine"]["completion_views"] >= 1 and m["refine"]["completion_path_cameras"] == 6
    # The disagreement round ran too (the kill below lands before it; the resumed run makes it).
    assert m["refine"]["completion_suspect_views"] >= 1 and m["refine"]["completion_suspect_lifted"] > 0
    assert m["splats"]["repaired_views"] == 2 + 2 + 2 and m["splats"]["depth_weight"] == 0.3
    assert 0.0 < m["splats"]["video_coverage_min"] <= 1.0
    views = read_json(straight / "cameras.json")["cameras"]
    assert len(views) == 3 + m["refine"]["completion_views"]
    assert any(v["stats"].get("completion") for v in views)

    for where in ("complete", "splats"):
        out = tmp_path / where
        log = tmp_path / f"{where}.log"
        assert run_in_fork(log, _killed_run, where, out) == -signal.SIGKILL, log.read_text()[-2000:]
        assert not (out / "DONE").exists()
        assert main([*SMALL, "--out", str(out)]) == 0
        for name in ("gaussians.ply", "points.ply", "cameras.json"):
            assert (out / name).read_bytes() == (straight / name).read_bytes(), (where, name)
        assert read_json(out / "metrics.json") == m

    # Switched off on a rerun: the dream is reused (no model runs), the completion views leave the exports.
    import dreamer.pipeline.stages as stages

    def no_dream(*a, **k):
        raise AssertionError("the dream loop ran again")

    monkeypatch.setattr(stages, "dream", no_dream)
    plain = [a for a in SMALL if a != "--refine"]
    assert main([*plain, "--out", str(straight)]) == 0
    assert len(read_json(straight / "cameras.json")["cameras"]) == 3
    assert len(read_json(straight / "transforms.json")["frames"]) == 3
    assert not (straight / "complete").exists()
    m_plain = read_json(straight / "metrics.json")
    assert "refine" not in m_plain and "repaired_views" not in m_plain["splats"]
    assert m_plain["splats"]["depth_weight"] == 0.0
