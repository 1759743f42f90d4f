"""The gradio app, served in a subprocess and called the way visitors and scripts call it.

One server for the module (``--models synthetic --threads 1``): the scene endpoint with the
procedural world, the zoom endpoint with tiny random models, two visitors at once, uploads that
must be refused with a message, Stop, and a headless Chromium screenshot of the page.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client", reason="the app needs the 'app' extra: pip install -e '.[app]'")
pytest.importorskip("gradio", reason="the app needs the 'app' extra: pip install -e '.[app]'")

from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from apps.inputs import IMAGE_TYPES, InputError, Limits, check_number, check_upload, copy_upload, safe_session_id  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64
# prompt, photo, depth, negative, trajectory, trajectory file, views, steps, guidance, seed, gaussian iterations,
# model set, size, video frames
SCENE = ["", None, None, "", "lookaround", None, 2, 2, 7.5, 0, 30, "synthetic", SIZE, 8]
ZOOM = ["a galaxy\na planet", None, 2, 2, 2, 7.5, 0, SIZE, "tiny"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    out = tmp_path_factory.mktemp("app")
    port = _free_port()
    # an empty, offline model cache: the 'default' models are certainly missing
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "True", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "HF_HUB_CACHE": str(out / "hf-cache"), "HF_HOME": str(out / "hf-home")}
    log = open(out / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "apps.gradio_app", "--models", "synthetic", "--port", str(port), "--out", str(out),
         "--threads", "1", "--keep-outputs"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with {proc.returncode}:\n{(out / 'server.log').read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.time() > deadline:
            proc.kill()
            raise RuntimeError(f"the app did not answer in 120 s:\n{(out / 'server.log').read_text()[-3000:]}")
        time.sleep(0.5)
    yield {"url": url, "out": out, "proc": proc}
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _client(server, tmp_path, name="dl") -> Client:
    return Client(server["url"], verbose=False, download_files=str(tmp_path / name))


def _frames(path) -> int:
    return imageio_ffmpeg.count_frames_and_secs(str(path))[0]


def _image_size(path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def test_the_app_turns_analytics_off_itself(monkeypatch):
    import importlib

    import apps.gradio_app

    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "True")
    importlib.reload(apps.gradio_app)
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"


@pytest.mark.slow
def test_scene_endpoint_returns_splats_videos_views_and_downloads(server, tmp_path):
    from dreamer.splats import Gaussians

    ply, video, depth_video, gallery, downloads, status = _client(server, tmp_path).predict(
        *SCENE, api_name="/scene")
    gaussians = Gaussians.load_ply(ply)
    assert len(gaussians) > 100
    assert _frames(video) == 8 and _frames(depth_video) == 8
    assert len(gallery) == 2
    for item in gallery:
        assert _image_size(item["image"]) == (SIZE, SIZE)
    names = {Path(p).name for p in downloads}
    assert {"gaussians.ply", "points.ply", "cameras.json", "transforms.json"} <= names
    archive = next(p for p in downloads if p.endswith(".zip"))
    with zipfile.ZipFile(archive) as zf:
        listed = zf.namelist()
    assert any(n.endswith("/gaussians.ply") for n in listed) and any(n.endswith("views/001.png") for n in listed)
    assert not any("/checkpoint/" in n for n in listed)
    assert "2 views" in status


@pytest.mark.slow
def test_zoom_endpoint_returns_levels_and_video(server, tmp_path):
    gallery, video, downloads, status = _client(server, tmp_path).predict(*ZOOM, api_name="/zoom")
    assert [g["caption"] for g in gallery] == ["level 0: a galaxy", "level 1: a planet"]
    for item in gallery:
        assert _image_size(item["image"]) == (SIZE, SIZE)
    assert _frames(video) > 2
    assert len(downloads) == 3 and "2 levels" in status


@pytest.mark.slow
def test_photo_and_depth_uploads_with_tiny_models(server, tmp_path):
    photo = tmp_path / "my holiday photo.jpg"
    Image.fromarray((np.random.default_rng(0).random((90, 120, 3)) * 255).astype(np.uint8)).save(photo)
    depth = tmp_path / "depth.npy"
    np.save(depth, np.full((90, 120), 2.0, dtype=np.float32))
    client = _client(server, tmp_path)
    scene = ["a garden", handle_file(str(photo)), handle_file(str(depth)), *SCENE[3:11], "tiny", SIZE, 8]
    ply, video, depth_video, gallery, downloads, status = client.predict(*scene, api_name="/scene")
    assert _frames(video) == 8 and len(gallery) == 2
    assert all(_image_size(g["image"]) == (SIZE, SIZE) for g in gallery)
    # the uploads were copied into the run under fixed names, whatever they were called
    inputs = next((server["out"] / "sessions" / safe_session_id(client.session_hash)).glob("scene-*/inputs"))
    assert sorted(p.name for p in inputs.iterdir()) == ["depth.npy", "photo.jpg"]


@pytest.mark.slow
def test_zoom3d_endpoint_flies_into_the_visitors_scene(server, tmp_path):
    from dreamer.splats import Gaussians

    client = _client(server, tmp_path)
    # scene, view, zoom point x, y (fractions), levels, p, prompts, steps, seed, fly-in frames
    zoom3d = [None, 1, 0.5, 0.5, 2, 2, "", 2, 0, 8]
    with pytest.raises(AppError, match="Generate a scene in the Scene tab first"):
        client.predict(*zoom3d, api_name="/zoom3d")
    *_, status = client.predict(*SCENE, api_name="/scene")
    fly, flat, gallery, ply, downloads, status = client.predict(*zoom3d, api_name="/zoom3d")
    assert _frames(fly) == 8 and _frames(flat) > 2
    assert len(gallery) == 2 and all(_image_size(g["image"]) == (SIZE, SIZE) for g in gallery)
    assert len(Gaussians.load_ply(ply)) > 100
    assert any(p.endswith(".zip") for p in downloads) and "2 levels" in status
    with pytest.raises(AppError, match="not one of yours"):
        client.predict("scene-999", *zoom3d[1:], api_name="/zoom3d")


@pytest.mark.slow
def test_two_visitors_get_separate_results(server, tmp_path):
    a, b = _client(server, tmp_path, "a"), _client(server, tmp_path, "b")
    assert a.session_hash != b.session_hash
    job_a = a.submit(*SCENE[:4], "lookaround", *SCENE[5:], api_name="/scene")
    job_b = b.submit(*SCENE[:4], "forward", *SCENE[5:], api_name="/scene")
    # one job at a time (--concurrency 1): whichever visitor comes second waits and is told their place
    ranks, deadline = set(), time.time() + 120
    while not (job_a.done() and job_b.done()) and time.time() < deadline:
        for job in (job_a, job_b):
            status = job.status()
            if status.code.name == "IN_QUEUE" and status.rank is not None:
                ranks.add(status.rank)
        time.sleep(0.05)
    assert ranks, "the queued job was never told its position"
    out_a, out_b = job_a.result(timeout=120), job_b.result(timeout=120)
    cams_a = next(p for p in out_a[4] if p.endswith("cameras.json"))
    cams_b = next(p for p in out_b[4] if p.endswith("cameras.json"))
    assert Path(cams_a).read_bytes() != Path(cams_b).read_bytes()
    # each visitor's run sits in its own session folder, under the app's output root
    sessions = server["out"] / "sessions"
    for client, traj in ((a, "lookaround"), (b, "forward")):
        folder = sessions / safe_session_id(client.session_hash)
        configs = list(folder.glob("scene-*/config.json"))
        assert len(configs) == 1 and f'"trajectory": "{traj}"' in configs[0].read_text()


@pytest.mark.slow
def test_bad_inputs_get_a_message_and_the_app_stays_usable(server, tmp_path):
    client = _client(server, tmp_path)
    not_image = tmp_path / "photo.png"
    not_image.write_text("this is not an image")
    with pytest.raises(AppError, match="Photo: not a readable image"):
        client.predict("a room", handle_file(str(not_image)), *SCENE[2:], api_name="/scene")
    wrong_type = tmp_path / "path.txt"
    wrong_type.write_text("{}")
    with pytest.raises(AppError, match=r"(Invalid file type|not accepted).*\.json"):
        client.predict(*SCENE[:5], handle_file(str(wrong_type)), *SCENE[6:], api_name="/scene")
    with pytest.raises(AppError, match="Prompt is 5000 characters long"):
        client.predict("x" * 5000, *SCENE[1:], api_name="/scene")
    with pytest.raises(AppError, match="Views must be between 1 and 64|999 is greater than maximum value 64"):
        client.predict(*SCENE[:6], 999, *SCENE[7:], api_name="/scene")
    with pytest.raises(AppError, match="Size must be a multiple of 32"):
        client.predict(*ZOOM[:7], 80, "tiny", api_name="/zoom")
    with pytest.raises(AppError, match="The models of this set are not available here"):
        client.predict("a room", *SCENE[1:11], "default", *SCENE[12:], api_name="/scene")
    # after the refusals and the failure the same visitor still gets results
    gallery, *_ = client.predict(*ZOOM, api_name="/zoom")
    assert len(gallery) == 2


@pytest.mark.slow
def test_stop_ends_a_run_with_a_message(server, tmp_path):
    client = _client(server, tmp_path)
    long_scene = [*SCENE[:6], 6, 2, 7.5, 0, 30000, "synthetic", SIZE, 600]
    job = client.submit(*long_scene, api_name="/scene")
    deadline = time.time() + 60
    while job.status().code.name not in ("PROCESSING", "PROGRESS", "FINISHED") and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    client.predict(api_name="/stop")
    with pytest.raises(AppError, match="Stopped during"):
        job.result(timeout=60)


@pytest.mark.slow
def test_screenshot_of_the_page_is_not_blank(server, tmp_path):
    from apps.screenshot import find_chromium, take_screenshot

    if find_chromium() is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium); the page screenshot needs it")
    shot = take_screenshot(server["url"], tmp_path / "page.png", width=1280, height=1000)
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape == (1000, 1280, 3)
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 50, f"the page looks blank ({len(colours)} colours)"
    assert pixels.std() > 10


# ---------------------------------------------------------------------------- input checks, no server
def test_session_ids_and_uploaded_names_never_make_paths(tmp_path):
    assert safe_session_id("../../etc/passwd") == "etcpasswd"
    assert safe_session_id("abc_DEF-123") == "abc_DEF-123"
    assert safe_session_id("") .startswith("anon-") and safe_session_id(None).startswith("anon-")
    evil = tmp_path / "up" / "..%2f..%2fevil name.PNG"
    evil.parent.mkdir()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(evil, format="PNG")
    checked = check_upload(str(evil), "Photo", IMAGE_TYPES, Limits())
    copied = Path(copy_upload(checked, tmp_path / "session" / "inputs", "photo"))
    assert copied == tmp_path / "session" / "inputs" / "photo.png" and copied.read_bytes() == evil.read_bytes()


def test_upload_limits(tmp_path):
    big = tmp_path / "big.png"
    Image.new("RGB", (300, 20)).save(big)
    with pytest.raises(InputError, match="at most 200 px per side"):
        check_upload(str(big), "Photo", IMAGE_TYPES, Limits(max_image_side=200))
    with pytest.raises(InputError, match="at least 32 px"):
        check_upload(str(big), "Photo", IMAGE_TYPES, Limits(min_image_side=32))
    with pytest.raises(InputError, match="MB"):
        check_upload(str(big), "Photo", IMAGE_TYPES, Limits(max_upload_mb=1e-5))
    assert check_upload(None, "Photo", IMAGE_TYPES, Limits()) is None
    assert check_number("12", "Views", 1, 64, integer=True) == 12
    for bad in (0, 65, 2.5, "x", float("nan"), True, None):
        with pytest.raises(InputError, match="Views"):
            check_number(bad, "Views", 1, 64, integer=True)
