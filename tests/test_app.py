"""The gradio app, served in a subprocess and called the way visitors and scripts call it.

One server for the module (``--models synthetic --threads 1``): the scene endpoint with the
procedural world, the zoom endpoint with tiny random models, two visitors at once, uploads that
must be refused with a message, the limits of uploads, which files are served, Stop; and a
visitor in headless Chromium with software WebGL: the 3D view shows what ``Gaussians.render``
renders, "Dream here" grows the scene and Undo takes it back. The jobs' limits (one job per
visitor, a time limit, stoppable reads) are tested on the jobs layer itself.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import math
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image

# Found, not imported: importing gradio takes seconds and gradio_client one, which every pytest worker
# would pay at collection; the server fixture imports the client for the tests that call the app.
if importlib.util.find_spec("gradio") is None or importlib.util.find_spec("gradio_client") is None:
    pytest.skip("the app needs the 'app' extra: pip install -e '.[app]'", allow_module_level=True)
Client = handle_file = AppError = None  # gradio_client's, set by the server fixture

from apps.inputs import IMAGE_TYPES, InputError, Limits, check_number, check_upload, copy_upload, safe_session_id  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64
# prompt, photo, depth, negative, trajectory, trajectory file, views, steps, guidance, seed, gaussian iterations,
# model set, size, video frames: the form's smallest size, iterations and frames (the jobs' plumbing is under test,
# not the training)
SCENE = ["", None, None, "", "lookaround", None, 2, 2, 7.5, 0, 10, "synthetic", SIZE, 8]
ZOOM = ["a galaxy\na planet", None, 2, 2, 2, 7.5, 0, SIZE, "tiny"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    global Client, handle_file, AppError
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    out = tmp_path_factory.mktemp("app")
    port = _free_port()
    # an empty, offline model cache: the 'default' models are certainly missing
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "True", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "HF_HUB_CACHE": str(out / "hf-cache"), "HF_HOME": str(out / "hf-home"),
           "GRADIO_TEMP_DIR": str(out / "gradio")}  # the served copies stay in the test's folder
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
        time.sleep(0.1)
    yield {"url": url, "out": out, "proc": proc}
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _client(server, tmp_path, name="dl") -> Client:
    return Client(server["url"], verbose=False, download_files=str(tmp_path / name))


@pytest.fixture(scope="module")
def visitor(server, tmp_path_factory):
    """One visitor's client and the outputs of its plain scene, for the tests that only read them
    (what the endpoint returns, which files are served, a 3D zoom into it) and for Dream here,
    whose undo gives the scene back as it was."""
    client = _client(server, tmp_path_factory.mktemp("visitor"))
    return client, client.predict(*SCENE, api_name="/scene")


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


def _ply(downloads) -> str:
    return next(p for p in downloads if Path(p).name == "gaussians.ply")


@pytest.mark.slow
def test_scene_endpoint_returns_splats_videos_views_and_downloads(visitor):
    from dreamer.splats import Gaussians

    viewer, video, depth_video, gallery, downloads, status = visitor[1]
    gaussians = Gaussians.load_ply(_ply(downloads))
    spec = json.loads(viewer)  # what the 3D view loads: the splats' URL and the first camera
    assert spec["ply"].startswith("gradio_api/file=") and spec["ply"].endswith("/gaussians.ply")
    assert len(spec["cameras"]) == 1 and spec["cameras"][0]["width"] == SIZE
    assert len(gaussians) > 100
    assert _frames(video) == 8 and _frames(depth_video) == 8
    assert len(gallery) == 2
    for item in gallery:
        assert _image_size(item["image"]) == (SIZE, SIZE)
    names = {Path(p).name for p in downloads}
    assert {"gaussians.ply", "gaussians.spz", "points.ply", "cameras.json", "transforms.json"} <= names
    from dreamer.splats import Gaussians
    spz = Gaussians.load_spz(next(p for p in downloads if Path(p).name == "gaussians.spz"))
    assert len(spz) == len(Gaussians.load_ply(next(p for p in downloads if Path(p).name == "gaussians.ply")))
    archive = next(p for p in downloads if p.endswith(".zip"))
    with zipfile.ZipFile(archive) as zf:
        listed = zf.namelist()
    assert any(n.endswith("/gaussians.ply") for n in listed) and any(n.endswith("views/001.png") for n in listed)
    assert not any("/checkpoint/" in n or "/splats/" in n for n in listed)  # resume state, not the scene
    assert "2 views" in status


@pytest.mark.slow
def test_scene_endpoint_runs_the_refine_step_when_ticked(server, tmp_path):
    *_, downloads, status = _client(server, tmp_path).predict(*SCENE, True, api_name="/scene")
    assert "views" in status
    archive = next(p for p in downloads if p.endswith(".zip"))
    with zipfile.ZipFile(archive) as zf:
        top = {Path(n).name: n for n in zf.namelist() if n.count("/") == 1}  # the scene folder's own files
        metrics, config = (json.loads(zf.read(top[name])) for name in ("metrics.json", "config.json"))
    assert config["refine"]["refine"] is True
    assert metrics["refine"]["completion_path_cameras"] == 8 and "video_coverage_min" in metrics["splats"]


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
    viewer, video, depth_video, gallery, downloads, status = client.predict(*scene, api_name="/scene")
    assert _frames(video) == 8 and len(gallery) == 2
    assert all(_image_size(g["image"]) == (SIZE, SIZE) for g in gallery)
    # the uploads were copied into the run under fixed names, whatever they were called
    inputs = next((server["out"] / "sessions" / safe_session_id(client.session_hash)).glob("scene-*/inputs"))
    assert sorted(p.name for p in inputs.iterdir()) == ["depth.npy", "photo.jpg"]


@pytest.mark.slow
def test_zoom3d_endpoint_flies_into_the_visitors_scene(server, visitor, tmp_path):
    from dreamer.splats import Gaussians

    # scene, view, zoom point x, y (fractions), levels, p, prompts, steps, seed, fly-in frames
    zoom3d = [None, 1, 0.5, 0.5, 2, 2, "", 2, 0, 8]
    with pytest.raises(AppError, match="Generate a scene in the Scene tab first"):
        _client(server, tmp_path).predict(*zoom3d, api_name="/zoom3d")  # a new visitor has no scene
    client = visitor[0]
    fly, flat, gallery, viewer, downloads, status = client.predict(*zoom3d, api_name="/zoom3d")
    assert _frames(fly) == 8 and _frames(flat) > 2
    assert len(gallery) == 2 and all(_image_size(g["image"]) == (SIZE, SIZE) for g in gallery)
    assert len(Gaussians.load_ply(_ply(downloads))) > 100
    assert json.loads(viewer)["ply"].endswith("/gaussians.ply")
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
    # Stop once the job reports progress: it is inside the run then, past the start of the job, which
    # clears the visitor's Stop flag (a Stop pressed before would be forgotten); no fixed wait.
    deadline = time.time() + 60
    while job.status().code.name not in ("PROGRESS", "FINISHED") and time.time() < deadline:
        time.sleep(0.05)
    client.predict(api_name="/stop")
    with pytest.raises(AppError, match="Stopped during"):
        job.result(timeout=60)


@pytest.mark.slow
def test_only_the_files_handed_to_a_visitor_are_served(server, visitor):
    """The session's folder is not served (run.log, config.json, checkpoints, inputs): only the
    copies the handlers returned are, under a path nobody can guess from the session id."""
    client, (viewer, *_) = visitor
    run = next(p for p in (server["out"] / "sessions" / safe_session_id(client.session_hash)).glob("scene-*")
               if p.is_dir())
    for name in ("run.log", "config.json", "splats/done.json", "checkpoint/result.pt", "gaussians.ply"):
        assert (run / name).exists(), name
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(server["url"] + "gradio_api/file=" + str(run / name), timeout=10)
        assert refused.value.code == 403, name
    with urllib.request.urlopen(server["url"] + json.loads(viewer)["ply"], timeout=10) as r:
        assert r.read() == (run / "gaussians.ply").read_bytes()
    assert "/sessions/" not in json.loads(viewer)["ply"]  # a copy, not the session's file


@pytest.mark.slow
def test_an_uploaded_trajectory_obeys_the_forms_limits(server, tmp_path):
    client = _client(server, tmp_path)
    eye = np.eye(4).tolist()
    shifted = [[1, 0, 0, 0.5], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    endless = tmp_path / "keyframes.json"  # about 200 bytes that ask for two million cameras
    endless.write_text(json.dumps({"keyframes": [{"c2w": eye}, {"c2w": shifted}], "frames": 2_000_000}))
    huge = tmp_path / "huge.json"
    huge.write_text(json.dumps({"cameras": [{"c2w": eye, "width": 100000, "height": 100000}]}))
    odd = tmp_path / "odd.json"  # the command line's checks (dreamer.pipeline.preflight) hold in the app
    odd.write_text(json.dumps({"cameras": [{"c2w": eye, "width": 60, "height": 64, "fov": 50}]}))
    t0 = time.time()
    for path, message in ((endless, "asks for 2000000 cameras; a scene here has 1 to 64"),
                          (huge, "a camera's width is 100000 px; at most 1024 px per side"),
                          (odd, "trajectory.json: camera 0: width 60 must be a multiple of 8")):
        job = client.submit(*SCENE[:5], handle_file(str(path)), *SCENE[6:], api_name="/scene")
        with pytest.raises(AppError, match=f"Trajectory file: the file {message}|Trajectory file: {message}"):
            job.result(timeout=60)
    assert time.time() - t0 < 30
    gallery, *_ = client.predict(*ZOOM, api_name="/zoom")  # the slot is free again
    assert len(gallery) == 2


@pytest.mark.slow
def test_a_depth_upload_has_the_photos_pixel_limit(server, tmp_path):
    photo = tmp_path / "photo.png"
    Image.fromarray(np.zeros((90, 120, 3), np.uint8)).save(photo)
    depth = tmp_path / "depth.png"
    Image.new("I;16", (10000, 10000)).save(depth)  # a few hundred kB, 10^8 pixels
    assert depth.stat().st_size < 1_000_000
    client = _client(server, tmp_path)
    with pytest.raises(AppError, match="Depth map: the depth map is 10000x10000 px; at most 4096 px per side"):
        client.submit("a garden", handle_file(str(photo)), handle_file(str(depth)), *SCENE[3:11], "tiny", SIZE,
                      8, api_name="/scene").result(timeout=60)


@pytest.mark.slow
def test_dream_here_and_undo_over_the_api(server, visitor, tmp_path):
    from dreamer.splats import Gaussians

    with pytest.raises(AppError, match="Generate a scene in the Scene tab first"):
        _client(server, tmp_path).predict("", "", 0, api_name="/dream_here")  # a new visitor has no scene
    # The visitor's scene (not one of its own: a scene is a few seconds of the server's time); the undo
    # at the end gives it back unchanged, file for file, to the tests that read it after this one.
    client, (viewer, *_, downloads, status) = visitor
    start = json.loads(viewer)["cameras"][0]
    with pytest.raises(AppError, match="Viewer camera: no camera came from the 3D view"):
        client.predict("", "", 0, api_name="/dream_here")
    turned = np.array(start["c2w"])
    turned[:3, :3] = turned[:3, :3] @ np.array([[0.9063, 0, 0.4226], [0, 1, 0], [-0.4226, 0, 0.9063]])  # 25 deg
    camera = json.dumps({**start, "c2w": turned.tolist()})
    viewer2, gallery2, downloads2, status2 = client.predict(camera, "a new wing", 1, api_name="/dream_here")
    assert "extension 1: dreamed 2 camera(s)" in status2 and len(gallery2) == 4
    assert {Path(p).name for p in downloads2} - {Path(p).name for p in downloads} == {"extension_001.json"}
    grown = len(Gaussians.load_ply(_ply(downloads2)))
    assert grown > len(Gaussians.load_ply(_ply(downloads)))
    viewer3, gallery3, downloads3, status3 = client.predict(api_name="/undo")
    assert "extension 1 undone" in status3 and len(gallery3) == 2
    assert Path(_ply(downloads3)).read_bytes() == Path(_ply(downloads)).read_bytes()
    assert json.loads(viewer3)["ply"] == json.loads(viewer)["ply"]  # the same splats, so the same copy
    with pytest.raises(AppError, match="has no extension to undo"):
        client.predict(api_name="/undo")


def _canvas_pixels(page, viewer: str) -> np.ndarray:
    data = page.evaluate(f"{viewer}.canvas.toDataURL('image/png')")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data.split(",", 1)[1]))).convert("RGB"),
                      dtype=np.float64) / 255.0


def _set_slider(page, elem_id: str, value: int) -> None:
    box, bar = page.locator(f"#{elem_id} input[type=number]"), page.locator(f"#{elem_id} input[type=range]")
    for _ in range(20):  # a slider inside a just-opened accordion may miss the first entry
        box.fill(str(value))
        box.press("Enter")
        page.wait_for_timeout(100)
        if bar.input_value() == str(value):
            return
    raise AssertionError(f"{elem_id} did not take {value}")


# The 3D view against Gaussians.render from the same camera: measured 59 dB; 18 dB is the bar
# that "it shows this scene" must clear (a black canvas scores about 10 dB here).
MIN_VIEWER_PSNR = 18.0


@pytest.mark.slow
def test_the_3d_view_shows_the_scene_and_dream_here_grows_it(server, tmp_path):
    from apps.browser import find_chromium, have_playwright, headless_page
    from dreamer.cameras import Camera
    from dreamer.splats import Gaussians

    if find_chromium() is None or not have_playwright():
        pytest.skip("needs Debian's chromium and the playwright package (the dev extra)")
    viewer = "window.dreamerViewers['scene-viewer']"
    url = server["url"]

    def parity(page, name: str) -> tuple[float, dict, int]:
        """PSNR of the canvas against the project's render of the viewer's own camera."""
        camera = page.evaluate(f"{viewer}.camera()")
        page.evaluate(f"{viewer}.renderNow()")
        shown = _canvas_pixels(page, viewer)
        ply = tmp_path / f"{name}.ply"
        ply.write_bytes(page.request.get(url + page.evaluate(f"{viewer}.source")).body())  # as the page got it
        gaussians = Gaussians.load_ply(ply)
        cam = Camera(torch.tensor(camera["K"]), torch.tensor(camera["c2w"]), camera["width"], camera["height"])
        rendered = gaussians.render(cam)[0].numpy().astype(np.float64)
        assert shown.shape == rendered.shape
        assert shown.mean() > 0.05 and shown.std() > 0.05, "the 3D view is black or empty"
        psnr = 10 * math.log10(1 / ((shown - rendered) ** 2).mean())
        black = 10 * math.log10(1 / (rendered ** 2).mean())
        print(f"3D view '{name}' ({camera['width']}x{camera['height']}, {len(gaussians)} Gaussians) vs "
              f"Gaussians.render: {psnr:.1f} dB (a black canvas: {black:.1f} dB)")
        return psnr, camera, len(gaussians)

    def counts(page) -> tuple[int, int, int]:
        return (page.locator("#scene-gallery img").count(), page.locator("#scene-downloads a").count(),
                page.evaluate(f"{viewer}.count"))

    def wait_for_new_splats(page, token: str) -> None:
        page.wait_for_function(f"{viewer}.token !== '{token}' && {viewer}.state === 'ready'", timeout=300_000)
        page.wait_for_timeout(500)  # the gallery and downloads update with the same event

    with headless_page(width=1280, height=1000) as page:
        page.goto(url)
        page.wait_for_selector("#scene-viewer canvas")
        page.get_by_text("Size and video").click()
        page.wait_for_selector("#scene-size input[type=number]")
        for elem_id, value in (("scene-views", 2), ("scene-iterations", 10), ("scene-size", SIZE),
                               ("scene-frames", 8)):
            _set_slider(page, elem_id, value)
        page.click("#scene-generate")
        wait_for_new_splats(page, "null")
        assert "2 views" in page.inner_text("#scene-status")
        # a small 3D view keeps the reference render quick; the viewer follows its element's size
        page.evaluate("document.getElementById('scene-viewer').style.cssText += ';width:240px;height:180px'")
        page.wait_for_function(f"{viewer}.canvas.width === 240 && {viewer}.canvas.height === 180")
        page.evaluate(f"{viewer}.showOverlays(false)")
        psnr, first, _ = parity(page, "first")
        assert psnr >= MIN_VIEWER_PSNR, psnr
        assert page.locator("#scene-viewer canvas").screenshot()  # it is on the page, not only in memory

        # look elsewhere: orbit (drag), walk (keys); the view still matches the project's render
        box = page.locator("#scene-viewer canvas").bounding_box()
        page.mouse.move(box["x"] + 120, box["y"] + 90)
        page.mouse.down()
        page.mouse.move(box["x"] + 60, box["y"] + 90, steps=6)
        page.mouse.up()
        page.focus("#scene-viewer canvas")
        for key in ("ArrowRight", "ArrowRight", "d"):
            page.keyboard.down(key)
            page.wait_for_timeout(60)
            page.keyboard.up(key)
        page.wait_for_timeout(200)
        psnr, moved, _ = parity(page, "moved")
        assert psnr >= MIN_VIEWER_PSNR, psnr
        assert not np.allclose(moved["c2w"], first["c2w"], atol=1e-3)

        before = counts(page)
        token = page.evaluate(f"{viewer}.token")
        page.click("#dream-here")
        wait_for_new_splats(page, token)
        status = page.inner_text("#scene-status")
        assert "extension 1: dreamed 1 camera(s)" in status, status
        grown = re.search(r"points ([\d,]+) → ([\d,]+)", status)
        assert grown and int(grown[2].replace(",", "")) > int(grown[1].replace(",", "")), status
        after = counts(page)
        assert after[0] == before[0] + 1 and after[1] == before[1] + 1 and after[2] > before[2], (before, after)
        # the viewer kept the visitor's camera and shows the extended splats
        psnr, extended, n = parity(page, "extended")
        assert psnr >= MIN_VIEWER_PSNR and extended["c2w"] == moved["c2w"] and n == after[2]

        token = page.evaluate(f"{viewer}.token")
        page.click("#dream-undo")
        wait_for_new_splats(page, token)
        assert "extension 1 undone" in page.inner_text("#scene-status")
        assert counts(page) == before
        assert (tmp_path / "first.ply").read_bytes() == page.request.get(url + page.evaluate(f"{viewer}.source")).body()


# ---------------------------------------------------------------------------- the jobs' limits, no server
class _Visitor:
    def __init__(self, session: str):
        self.session_hash = session


@pytest.mark.slow  # imports gradio (4-5 s)
def test_a_job_past_its_time_limit_stops_and_frees_its_slot(tmp_path):
    import gradio as gr

    from apps.jobs import Jobs

    jobs = Jobs(tmp_path, max_minutes=0.5 / 60)  # half a second

    def endless(job):
        bridge = job.bridge(None, {})
        while True:
            bridge("splats", 1, 10)
            time.sleep(0.02)

    t0 = time.time()
    with pytest.raises(gr.Error, match="Stopped during 'splats': a job may run 0.00833333 minutes here"):
        jobs.run(_Visitor("a"), "scene", endless)
    assert time.time() - t0 < 3
    assert jobs.run(_Visitor("a"), "scene", lambda job: "next") == "next"


@pytest.mark.slow  # imports gradio (4-5 s)
def test_reading_the_inputs_can_be_stopped(tmp_path):
    import gradio as gr

    from apps.jobs import Jobs

    jobs = Jobs(tmp_path, max_minutes=60)
    reading = threading.Event()

    def slow_read():
        reading.set()
        time.sleep(20)  # a long decode that reports no progress

    def work(job):
        return job.stoppable(slow_read, "reading the inputs")

    threading.Thread(target=lambda: (reading.wait(10), jobs.stop(_Visitor("a")))).start()
    t0 = time.time()
    with pytest.raises(gr.Error, match="Stopped during 'reading the inputs' \\(you pressed Stop\\)"):
        jobs.run(_Visitor("a"), "scene", work)
    assert time.time() - t0 < 5


@pytest.mark.slow  # imports gradio (4-5 s)
def test_one_visitor_runs_one_job_at_a_time(tmp_path):
    import gradio as gr

    from apps.jobs import Jobs

    jobs = Jobs(tmp_path, max_minutes=60)
    inside, release, results = threading.Event(), threading.Event(), []

    def first(job):
        inside.set()
        release.wait(10)
        return "first"

    worker = threading.Thread(target=lambda: results.append(jobs.run(_Visitor("a"), "scene", first)))
    worker.start()
    assert inside.wait(10)
    with pytest.raises(gr.Error, match="One of your jobs is running already"):
        jobs.run(_Visitor("a"), "zoom", lambda job: "second")
    assert jobs.run(_Visitor("b"), "zoom", lambda job: "another visitor") == "another visitor"
    release.set()
    worker.join()
    assert results == ["first"] and jobs.run(_Visitor("a"), "zoom", lambda job: "later") == "later"


def test_help_lists_every_tab_in_plain_text():
    out = subprocess.run([sys.executable, "-m", "apps.gradio_app", "--help"], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    for text in ("Scene", "Zoom", "3D zoom", "Dream here", "--max-job-minutes"):
        assert text in out, text
    for markup in ("``", ":func:", ":class:", ":mod:", "**"):
        assert markup not in out, markup


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


def test_trajectory_and_depth_limits_come_from_the_files_headers(tmp_path):
    """Counted and measured before anything is made or decoded: keyframe totals and per-segment
    counts, nerfstudio frames, camera sizes; .npy shapes and dtypes, OpenEXR data windows."""
    import struct

    from apps.inputs import DEPTH_TYPES, TRAJECTORY_TYPES, check_trajectory_limits

    eye = np.eye(4).tolist()
    lim = Limits()
    ok = {"cameras": [{"c2w": eye, "width": 512, "height": 512}] * 64}
    check_trajectory_limits(ok, "Trajectory file", lim)
    too_many = {
        "cameras": {"cameras": [{"c2w": eye}] * 65},
        "keyframe total": {"keyframes": [{"c2w": eye}, {"c2w": eye}], "frames": 10_000_000},
        "keyframe segments": {"keyframes": [{"c2w": eye, "frames": 40}, {"c2w": eye, "frames": 40}, {"c2w": eye}]},
        "transforms.json": {"frames": [{"transform_matrix": eye}] * 100},
        "a bare list": [{"c2w": eye}] * 65,
    }
    for data in too_many.values():
        with pytest.raises(InputError, match="cameras; a scene here has 1 to 64"):
            check_trajectory_limits(data, "Trajectory file", lim)
    for data in ({"width": 2048, "cameras": [{"c2w": eye}]}, {"frames": [{"transform_matrix": eye, "h": 5000}]}):
        with pytest.raises(InputError, match="at most 1024 px per side"):
            check_trajectory_limits(data, "Trajectory file", lim)

    def npy(name, shape, descr="<f4", data=True):
        path = tmp_path / name
        with open(path, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": descr, "fortran_order": False, "shape": shape})
            if data:
                f.write(b"\0" * int(np.prod(shape)) * np.dtype(descr).itemsize)
        return path

    assert check_upload(npy("ok.npy", (90, 120)), "Depth map", DEPTH_TYPES, lim) is not None
    assert check_upload(npy("torch.npy", (1, 1, 90, 120)), "Depth map", DEPTH_TYPES, lim) is not None
    bad = {npy("complex.npy", (9, 12), "<c8"): "must hold real numbers .* got dtype complex64",
           npy("huge.npy", (200_000, 400_000), data=False): "is 400000x200000 px; at most 4096",
           npy("short.npy", (90, 120), data=False): "a truncated or damaged file",
           npy("cube.npy", (4, 4, 4)): r"must hold an \[H,W\] array"}
    exr = tmp_path / "depth.exr"  # a header only: magic, version, one box2i attribute, the end byte
    exr.write_bytes(b"\x76\x2f\x31\x01" + struct.pack("<i", 2) + b"dataWindow\0box2i\0" + struct.pack("<i", 16)
                    + struct.pack("<4i", 0, 0, 9999, 7999) + b"\0")
    bad[exr] = "the depth map is 10000x8000 px; at most 4096"
    for path, message in bad.items():
        with pytest.raises(InputError, match=message):
            check_upload(path, "Depth map", DEPTH_TYPES, lim)
    traj = tmp_path / "t.json"
    traj.write_text(json.dumps(too_many["keyframe total"]))
    with pytest.raises(InputError, match="asks for 10000000 cameras"):
        check_upload(traj, "Trajectory file", TRAJECTORY_TYPES, lim)


def test_a_scene_request_is_checked_within_the_apps_limits_and_its_message_names_no_server_path(tmp_path):
    """Both tabs that run scenes (Scene, 3D zoom) check a request with the command line's checks
    within the app's limits; the visitor's message leaves out the job's folder on the server."""
    from apps.inputs import check_scene_request
    from dreamer.pipeline import configs_from_flat

    small = Limits(max_views=8, max_size=128)
    check_scene_request(configs_from_flat({"models": "synthetic", "views": 8, "width": 128, "height": 128}),
                        tmp_path, small)
    with pytest.raises(InputError, match=r"views must be <= 8 \(the limit on dreamed views\), got 9$"):
        check_scene_request(configs_from_flat({"models": "synthetic", "views": 9, "width": 128, "height": 128}),
                            tmp_path, small)
    with pytest.raises(InputError, match=r"width must be <= 128 \(the limit on image sides\), got 256$"):
        check_scene_request(configs_from_flat({"models": "synthetic", "views": 2, "width": 256, "height": 256}),
                            tmp_path, small)
    job = tmp_path / "jobs" / "abc123"
    (job / "inputs").mkdir(parents=True)
    (job / "inputs" / "trajectory.json").write_text("{not json")
    with pytest.raises(InputError) as caught:
        check_scene_request(configs_from_flat({"models": "synthetic", "width": 128, "height": 128,
                                               "trajectory": str(job / "inputs" / "trajectory.json")}),
                            job / "inputs", small)
    assert "trajectory.json" in str(caught.value) and str(tmp_path) not in str(caught.value)
    # No hint of the command line's --allow-large, in any of its messages' forms: a trajectory of
    # more cameras than the limit, and one larger than the limit on text inputs (which the
    # upload's own limit, 25 MB, lets through).
    cams = [{"K": [[100, 0, 64], [0, 100, 64], [0, 0, 1]], "width": 128, "height": 128,
             "c2w": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0.1 * i], [0, 0, 0, 1]]} for i in range(9)]
    many = job / "inputs" / "many.json"
    many.write_text(json.dumps({"cameras": cams}))
    large = job / "inputs" / "large.json"
    large.write_text(json.dumps({"cameras": cams[:2]}) + " " * (17 * 2**20))
    for path, expected in ((many, r"many.json: has 9 cameras, more than the limit of 8; use fewer$"),
                           (large, r"large.json is 17.0 MiB, more than the limit of 16 MiB for a text input$")):
        with pytest.raises(InputError, match=expected):
            check_scene_request(configs_from_flat({"models": "synthetic", "width": 128, "height": 128,
                                                   "trajectory": str(path)}), job / "inputs", small)


def test_a_refusal_quotes_a_long_value_in_a_message_of_bounded_length():
    """A form value (an API caller's) or a file's 50000 unknown keys made a message as long as they were."""
    from apps.inputs import check_text
    from dreamer.cli import MAX_MESSAGE

    for call in (lambda: check_number("9" * 10**6 + "x", "Views", 1, 64, integer=True),
                 lambda: check_text(5, "Prompt" + "!" * 10**5, 10)):
        with pytest.raises(InputError) as refused:
            call()
        assert len(str(refused.value)) <= MAX_MESSAGE + 60 and "characters left out" in str(refused.value)


def test_the_forms_prompts_refuse_control_characters_with_their_line():
    """Only NUL was refused: an escape sequence or a bell went to the models and the logs. Tabs and
    line breaks stay prompts' text; the line named is the one the visitor sees (blank ones count)."""
    from apps.inputs import check_prompt_lines, check_text

    assert check_text(" a room\twith a view\r\n", "Prompt", 100) == "a room\twith a view"
    assert check_prompt_lines("\na forest\r\n\nthe trees\n", "Prompts", Limits()) == ["a forest", "the trees"]
    for value, call, message in [
        ("a \x1b[31mred room", lambda v: check_text(v, "Prompt", 100),
         r"^Prompt .*'\\x1b' \(U\+001B\) at character 3$"),
        ("a room\x00", lambda v: check_text(v, "Negative prompt", 100), r"^Negative prompt .*U\+0000"),
        ("\n\na forest\nthe \x07tree\n", lambda v: check_prompt_lines(v, "Prompts", Limits()),
         r"^Prompts .*'\\x07' \(U\+0007\) at line 4, character 5$"),
    ]:
        with pytest.raises(InputError, match=message):
            call(value)


@pytest.mark.slow  # the Scene tab's module imports gradio (about 3 s)
def test_the_forms_fields_of_the_wrong_kind_are_refused_with_a_message(tmp_path):
    """Each handler's check called as an API caller may call it: an upload given as {"path": 5}
    raised TypeError, a keyframe file of "frames": Infinity OverflowError (neither an InputError:
    the visitor saw no message), "frames": -5 was "asks for -4 cameras", and the Refine checkbox
    took any value as bool ("no" ran the refine step)."""
    from apps.inputs import TRAJECTORY_TYPES, check_flag, check_trajectory_limits
    from apps.scene_tab import SceneTab
    from apps.settings import AppSettings

    tab = SceneTab(AppSettings(models="synthetic"), jobs=None, files=None)
    form = ["a room", None, None, "", "lookaround", None, 2, 2, 7.5, 0, 10, "synthetic", 64, 8, False]
    assert tab.check(*form)["refine"] is False
    for field in (1, 2, 5):
        for value in ({"path": 5}, {"path": ["a.png"]}, {"path": None}, 3.5, object()):
            bad = list(form)
            bad[field] = value
            with pytest.raises(InputError, match="unexpected upload value"):
                tab.check(*bad)
    for value in ("no", "false", 1, 0.0, []):
        with pytest.raises(InputError, match="Refine must be true or false"):
            tab.check(*form[:-1], value)
    assert check_flag(None, "Refine") is False and check_flag(True, "Refine") is True
    eye = np.eye(4).tolist()
    path = tmp_path / "keyframes.json"
    for frames in (float("inf"), float("nan"), -5, 2.5, "10"):
        data = {"keyframes": [{"c2w": eye}, {"c2w": eye}], "frames": frames}
        check_trajectory_limits(data, "Trajectory file", Limits())  # the reader names such counts
        per_segment = {"keyframes": [{"c2w": eye, "frames": frames}, {"c2w": eye}]}
        check_trajectory_limits(per_segment, "Trajectory file", Limits())
        path.write_text(json.dumps(data))
        check_upload(path, "Trajectory file", TRAJECTORY_TYPES, Limits())
    check_trajectory_limits({"cameras": [{"c2w": eye, "width": float("nan")}]}, "Trajectory file", Limits())
    for data in ({"keyframes": [{"c2w": eye}, {"c2w": eye}], "frames": 65.0},
                 {"keyframes": [{"c2w": eye, "frames": 64}, {"c2w": eye}]}):
        with pytest.raises(InputError, match="asks for 65 cameras"):
            check_trajectory_limits(data, "Trajectory file", Limits())


@pytest.mark.slow  # the Zoom tab's module imports gradio (about 3 s)
def test_the_zoom_tab_reads_a_photo_as_the_command_line_does(tmp_path):
    """The Zoom tab read its photo with a plain Pillow convert: a phone photo's EXIF orientation was
    ignored, a 16-bit PNG clipped to white, and a truncated JPEG (which passes the upload's header
    check) failed the job as "The run failed (OSError ...)"."""
    from apps.zoom_tab import ZoomTab
    from dreamer.pipeline.inputs import load_image

    rng = np.random.default_rng(0)
    im = Image.fromarray((rng.random((48, 64, 3)) * 255).astype(np.uint8))
    exif = im.getexif()
    exif[0x0112] = 6  # stored sideways: displayed rotated by 90 degrees
    im.save(tmp_path / "photo.jpg", exif=exif, quality=95)
    got = ZoomTab.read_photo(str(tmp_path / "photo.jpg"), 64)  # load_image honours EXIF: tests/test_inputs.py
    assert got.shape == (64, 64, 3) and torch.equal(got, load_image(tmp_path / "photo.jpg", 64, 64).image)
    Image.fromarray(np.full((32, 32), 32768, np.uint16)).save(tmp_path / "photo.png")
    assert abs(ZoomTab.read_photo(str(tmp_path / "photo.png"), 64).mean().item() - 0.5) < 0.01  # not clipped to 1
    data = (tmp_path / "photo.jpg").read_bytes()
    (tmp_path / "photo.jpg").write_bytes(data[: len(data) // 2])
    assert check_upload(tmp_path / "photo.jpg", "Photo", IMAGE_TYPES, Limits()) is not None  # its header is whole
    with pytest.raises(InputError, match="^Photo: photo.jpg could not be decoded as an image"):
        ZoomTab.read_photo(str(tmp_path / "photo.jpg"), 64)


@pytest.mark.slow  # the tabs' modules import gradio (about 3 s)
def test_the_app_takes_the_seeds_the_command_lines_take(tmp_path):
    """The app's form and its three tabs capped seeds at 2**31 - 1 while ``--seed`` (dreamer.run
    and zoom.run) takes 0 .. 2**32 - 1: a scene dreamed with --seed 3000000000 could not be made
    again in the app. Each seed is now accepted or refused alike by the command lines' checks, the
    tabs' checks and the form's Seed fields (which gradio checks against their maximum)."""
    import gradio as gr

    from apps.layout import build_app
    from apps.scene_tab import SceneTab
    from apps.settings import AppSettings
    from apps.zoom3d_tab import Zoom3DTab
    from apps.zoom_tab import ZoomTab
    from dreamer.pipeline import configs_from_flat
    from dreamer.pipeline.preflight import check_scene
    from zoom.run import ZoomConfig, check_zoom

    settings = AppSettings(models="synthetic")
    scene, zoom = SceneTab(settings, jobs=None, files=None), ZoomTab(settings, jobs=None, files=None)
    zoom3d = Zoom3DTab(scene)
    form = ["a room", None, None, "", "lookaround", None, 2, 2, 7.5, None, 10, "synthetic", 64, 8]
    demo = build_app(settings)
    fields = [b for b in demo.blocks.values() if isinstance(b, gr.Number) and b.label == "Seed"]
    assert len(fields) == 3  # Scene, Zoom, 3D zoom

    def command_lines(seed):
        check_scene(configs_from_flat({"models": "synthetic", "width": 64, "height": 64, "views": 2, "seed": seed}))
        check_zoom(ZoomConfig(prompts=["a", "b"], models="tiny", width=64, height=64, seed=seed))

    def app(seed):
        form[9] = seed
        assert scene.check(*form)["seed"] == seed
        assert zoom.check("a\nb", None, 2, 2, 2, 7.5, seed, 64, "tiny")["seed"] == seed
        assert zoom3d.check(0, 0.5, 0.5, 2, 2, "", 2, seed, 8)["zoom_seed"] == seed
        for field in fields:
            assert field.preprocess(seed) == seed

    for seed in (0, 2**31 - 1, 2**31, 3_000_000_000, 2**32 - 1):
        command_lines(seed)
        app(seed)
    for seed in (-1, 2**32, 2**40):
        with pytest.raises(ValueError, match="seed must be an integer >= 0 and <= 4294967295"):
            command_lines(seed)
        with pytest.raises(InputError, match=f"Seed must be between 0 and 4294967295, got {seed}$"):
            app(seed)
        for field in fields:
            with pytest.raises(gr.Error):
                field.preprocess(seed)
