"""The app's Gaussian splat viewer: our own WebGL2 code (``splat_viewer.js``), served inline.

The JavaScript renders a 3DGS ``.ply`` with the rules of :func:`dreamer.splats.rasterizer.rasterize`
(OpenCV cameras, pixel centres at +0.5, the same projection, alpha and SH), so a screenshot of
the canvas can be compared with ``Gaussians.render(camera)``. Nothing is fetched from another
host: the script travels inside the page.

Python talks to the viewer through two strings: a *spec* (JSON: the ``.ply`` URL and the scene's
cameras) that loads a scene, and the viewer's current *camera* (JSON: ``c2w``, ``K``, ``width``,
``height`` in the trajectory-file layout of :mod:`dreamer.trajectories.files`) that a button's
``js`` hook reads from the page and hands to a handler.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["VIEWER_JS", "viewer_script", "viewer_spec", "viewer_component", "camera_from_json", "standalone_page",
           "read_camera_js"]

VIEWER_JS = Path(__file__).with_name("splat_viewer.js")
"""The viewer's JavaScript (no dependencies)."""


@lru_cache(maxsize=1)
def viewer_script() -> str:
    """The viewer's JavaScript source."""
    return VIEWER_JS.read_text(encoding="utf-8")


def viewer_spec(ply_url: str | None, cameras: list[dict] | None = None, *, token: str = "",
                keep_camera: bool = False) -> str:
    """The JSON a viewer loads: ``ply_url`` (None: show nothing), the scene's cameras (the first
    one is where the viewer starts; each ``{"c2w", "K", "width", "height"}``), a ``token`` that
    names this load (the page can wait for it) and whether to keep the visitor's camera."""
    if ply_url is None:
        return json.dumps({"ply": None, "token": token})
    return json.dumps({"ply": ply_url, "cameras": cameras or [], "token": token, "keepCamera": keep_camera})


# Runs once per viewer on the page (gradio's gr.HTML js_on_load: `element`, `props`, `watch`).
_BOOT = """
const mount = element.querySelector('.dreamer-viewer-mount');
const viewer = window.DreamerSplatViewer.mount(mount, mount.dataset.viewer);
const show = () => viewer.load(props.value || '');
watch('value', show);
show();
"""


def viewer_component(viewer_id: str, *, height: int = 440):
    """A gradio component showing a splat viewer; its value is a :func:`viewer_spec`. The viewer
    is ``window.dreamerViewers[viewer_id]`` in the page, its canvas ``#<viewer_id> canvas``."""
    import gradio as gr

    if not viewer_id.replace("-", "").isalnum():
        raise ValueError(f"viewer_id must be letters, digits and '-', got {viewer_id!r}")
    template = (f'<div class="dreamer-viewer-mount" id="{viewer_id}" data-viewer="{viewer_id}" '
                f'style="width:100%;height:{int(height)}px;border-radius:6px;overflow:hidden"></div>')
    return gr.HTML(value=viewer_spec(None), html_template=template, js_on_load=viewer_script() + _BOOT,
                   apply_default_css=False, elem_id=f"{viewer_id}-block")


def camera_from_json(text: Any, *, max_side: int = 4096):
    """The :class:`~dreamer.cameras.Camera` a viewer reported (its JSON), checked.

    Raises ValueError naming what is wrong: not JSON, not one camera, a non-rigid ``c2w``, a
    size beyond ``max_side`` pixels.
    """
    from dreamer.trajectories import load_trajectory

    if not isinstance(text, str) or not text.strip():
        raise ValueError("Viewer camera: no camera came from the 3D view; wait until the scene is shown there")
    if len(text) > 10_000:
        raise ValueError(f"Viewer camera: {len(text)} characters is not one camera")
    from dreamer.cameras import check_input_camera
    from dreamer.cli import parse_json

    try:
        data = parse_json(text)
    except ValueError as e:
        raise ValueError(f"Viewer camera: {e}") from None
    if not isinstance(data, dict) or not {"c2w", "K", "width", "height"} <= set(data):
        raise ValueError("Viewer camera: expected an object with c2w, K, width and height")
    for key in ("width", "height"):
        v = data[key]
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= max_side:
            raise ValueError(f"Viewer camera: {key} must be a whole number of pixels in [1, {max_side}], got {v!r}")
    try:
        return check_input_camera(load_trajectory({"cameras": [data]}).cameras[0], "camera")
    except (ValueError, TypeError) as e:
        raise ValueError(f"Viewer camera: {str(e).replace('<trajectory dict>: ', '')}") from None


def read_camera_js(n_inputs: int, camera_index: int, viewer_id: str) -> str:
    """A gradio ``js`` hook for an event with ``n_inputs`` inputs that puts the viewer's current
    camera (JSON, or "" while it shows nothing) in place of input ``camera_index``."""
    return (f"(...args) => {{ const v = (window.dreamerViewers || {{}})[{json.dumps(viewer_id)}]; "
            f"args[{camera_index}] = v ? v.cameraJSON() : ''; return args.slice(0, {n_inputs}); }}")


def standalone_page(*, width: int, height: int, viewer_id: str = "viewer") -> str:
    """A bare HTML page with one viewer of ``width`` x ``height`` CSS pixels (for tests and checks)."""
    return (f"<!doctype html><html><head><meta charset='utf-8'></head>"
            f"<body style='margin:0;background:#222'>"
            f"<div id='{viewer_id}' style='width:{width}px;height:{height}px'></div>"
            f"<script>{viewer_script()}</script>"
            f"<script>window.DreamerSplatViewer.mount(document.getElementById('{viewer_id}'), '{viewer_id}');</script>"
            f"</body></html>")
