"""The app's WebGL splat viewer (apps/viewer/splat_viewer.js) in headless Chromium with software
WebGL, against the project's own renderer: the same picture from the same camera (random
anisotropic Gaussians with view-dependent colour), after navigation too; and the camera it
reports, checked the way the app reads it."""

from __future__ import annotations

import base64
import functools
import http.server
import io
import json
import math
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from apps.browser import find_chromium, have_playwright, headless_page
from apps.viewer import camera_from_json, standalone_page
from dreamer.cameras import Camera
from dreamer.splats import Gaussians

# Measured: 58.8 dB (the 8-bit quantization of the canvas is most of the difference).
MIN_PSNR = 40.0


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(1.0 / max(float(((a - b) ** 2).mean()), 1e-12))


def _random_gaussians(n: int = 2000, degree: int = 3, seed: int = 0) -> Gaussians:
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 3, generator=g) * torch.tensor([4.0, 3.0, 3.0]) + torch.tensor([-2.0, -1.5, 2.0])
    return Gaussians(means, torch.randn(n, 4, generator=g), torch.log(torch.rand(n, 3, generator=g) * 0.08 + 0.01),
                     torch.randn(n, generator=g) * 2, torch.randn(n, 1, 3, generator=g) * 0.8,
                     torch.randn(n, (degree + 1) ** 2 - 1, 3, generator=g) * 0.2)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A local web server for a folder (the viewer fetches its .ply over HTTP, as in the app)."""
    folder = tmp_path_factory.mktemp("site")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(scope="module")
def page():
    """One headless Chromium for the module (starting it takes seconds)."""
    if find_chromium() is None or not have_playwright():
        pytest.skip("needs Debian's chromium and the playwright package (the dev extra)")
    with headless_page(width=400, height=300) as page:
        yield page


def _canvas(page) -> np.ndarray:
    data = page.evaluate("window.dreamerViewers.viewer.canvas.toDataURL('image/png')")
    image = Image.open(io.BytesIO(base64.b64decode(data.split(",", 1)[1]))).convert("RGB")
    return np.asarray(image, dtype=np.float64) / 255.0


def _reference(gaussians: Gaussians, cam: dict) -> np.ndarray:
    camera = Camera(torch.tensor(cam["K"]), torch.tensor(cam["c2w"]), cam["width"], cam["height"])
    return gaussians.render(camera)[0].numpy().astype(np.float64)


@pytest.mark.slow
def test_the_viewer_draws_what_gaussians_render_draws(site, page):
    folder, url = site
    gaussians = _random_gaussians()
    gaussians.save_ply(folder / "scene.ply")
    (folder / "index.html").write_text(standalone_page(width=160, height=120))
    start = {"c2w": torch.eye(4).tolist(), "K": [[60.0, 0, 32], [0, 60.0, 32], [0, 0, 1]], "width": 64, "height": 64}
    page.goto(url + "index.html")
    page.evaluate("spec => window.dreamerViewers.viewer.load(spec)",
                  json.dumps({"ply": "scene.ply", "cameras": [start], "token": "t"}))
    page.wait_for_function("window.dreamerViewers.viewer.state !== 'loading'")
    assert page.evaluate("window.dreamerViewers.viewer.state") == "ready"
    assert page.evaluate("window.dreamerViewers.viewer.count") == len(gaussians)
    cam = page.evaluate("window.dreamerViewers.viewer.camera()")
    # the canvas's own pixel grid, the scene camera's vertical field of view
    assert (cam["width"], cam["height"]) == (160, 120)
    assert cam["K"][1][1] == pytest.approx(60.0 * 120 / 64) and cam["c2w"] == start["c2w"]
    first = _canvas(page)
    psnr = _psnr(first, _reference(gaussians, cam))
    print(f"viewer vs Gaussians.render, first camera: {psnr:.1f} dB")
    assert psnr >= MIN_PSNR
    # walk right and turn left (keys), then orbit (a drag): the reported camera still matches
    page.focus("#viewer canvas")
    for key in ("d", "d", "ArrowLeft"):
        page.keyboard.down(key)
        page.wait_for_timeout(50)
        page.keyboard.up(key)
    box = page.locator("#viewer canvas").bounding_box()
    page.mouse.move(box["x"] + 80, box["y"] + 60)
    page.mouse.down()
    page.mouse.move(box["x"] + 110, box["y"] + 50, steps=5)
    page.mouse.up()
    page.wait_for_timeout(200)
    moved = page.evaluate("window.dreamerViewers.viewer.camera()")
    assert not np.allclose(moved["c2w"], cam["c2w"], atol=1e-3)
    page.evaluate("window.dreamerViewers.viewer.renderNow()")
    shot = _canvas(page)
    psnr = _psnr(shot, _reference(gaussians, moved))
    print(f"viewer vs Gaussians.render, after navigation: {psnr:.1f} dB")
    assert psnr >= MIN_PSNR
    assert _psnr(shot, first) < 30  # it did move
    # what the app reads back is the same camera
    read = camera_from_json(json.dumps(moved))
    assert torch.allclose(read.c2w, torch.tensor(moved["c2w"]), atol=1e-5)
    assert (read.width, read.height) == (160, 120)


@pytest.mark.slow
def test_a_file_that_is_not_splats_gives_a_message_not_a_broken_page(site, page):
    folder, url = site
    (folder / "bad.ply").write_text("ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n0\n")
    (folder / "small.html").write_text(standalone_page(width=80, height=60))
    page.goto(url + "small.html")
    page.evaluate("spec => window.dreamerViewers.viewer.load(spec)", json.dumps({"ply": "bad.ply"}))
    page.wait_for_function("window.dreamerViewers.viewer.state !== 'loading'")
    state = page.evaluate("window.dreamerViewers.viewer.state")
    assert state == "error: only binary little endian PLY files are supported"
    assert "could not be shown" in page.inner_text("#viewer")
    page.evaluate("spec => window.dreamerViewers.viewer.load(spec)", json.dumps({"ply": "missing.ply"}))
    page.wait_for_function("window.dreamerViewers.viewer.state !== 'loading'")
    assert page.evaluate("window.dreamerViewers.viewer.state") == "error: HTTP 404"


def test_the_camera_the_app_reads_is_checked():
    good = {"c2w": torch.eye(4).tolist(), "K": [[100.0, 0, 80], [0, 100.0, 60], [0, 0, 1]], "width": 160, "height": 120}
    cam = camera_from_json(json.dumps(good))
    assert (cam.width, cam.height, cam.fx) == (160, 120, 100.0)
    bad = {
        "": "no camera came from the 3D view",
        "{": "not valid JSON",
        json.dumps([good]): "expected an object with c2w, K, width and height",
        json.dumps({**good, "width": 100000}): r"width must be a whole number of pixels in \[1, 4096\]",
        json.dumps({**good, "c2w": (2 * torch.eye(4)).tolist()}): "c2w is non-rigid",
        json.dumps({**good, "K": [[1, 0], [0, 1]]}): "K must be 3x3",
    }
    for text, message in bad.items():
        with pytest.raises(ValueError, match=message):
            camera_from_json(text)
