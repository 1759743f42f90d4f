"""Screenshots of the app with headless Chromium (Debian's ``chromium`` package).

    python -m apps.screenshot                      # docs/screenshot.png: the Scene tab after its first example
    python -m apps.screenshot --url http://127.0.0.1:7860/ --out page.png    # any running app

Without ``--url`` it starts the app (``--models synthetic --showcase``: the first Scene example is
run before the page is served) on a free port, waits for it, takes the screenshot and stops it.
With Playwright installed (:mod:`apps.browser`) the page is opened with software WebGL and the
screenshot waits until the splat viewer shows the scene; without it Chromium's own
``--screenshot`` is used, with ``--virtual-time-budget`` to let gradio render the page.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from apps.browser import CHROMIUM_FLAGS, WEBGL_FLAGS, find_chromium, have_playwright, headless_page
from apps.settings import SCENE_VIEWER_ID

__all__ = ["find_chromium", "chromium_command", "take_screenshot", "main"]

FLAGS = CHROMIUM_FLAGS + WEBGL_FLAGS


def chromium_command(chromium: str, url: str, path: str | Path, profile: str | Path, *, width: int = 1280,
                     height: int = 1000, budget_ms: int = 8000) -> list[str]:
    """The command line that screenshots ``url`` into ``path`` (a fresh ``profile`` folder)."""
    return [chromium, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
            f"--virtual-time-budget={budget_ms}", f"--screenshot={path}", url]


def take_screenshot(url: str, path: str | Path, *, width: int = 1280, height: int = 1000, budget_ms: int = 8000,
                    timeout: float = 120, wait_for_viewer: bool = False) -> Path:
    """Screenshot ``url`` into ``path`` (PNG); raises RuntimeError when Chromium is missing or fails.
    ``wait_for_viewer`` (needs Playwright): wait until the Scene tab's 3D view shows splats."""
    if wait_for_viewer:
        return _viewer_screenshot(url, Path(path), width=width, height=height, timeout=timeout)
    chromium = find_chromium()
    if chromium is None:
        raise RuntimeError("chromium is not installed (apt-get install -y chromium)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        proc = subprocess.run(chromium_command(chromium, url, path, profile, width=width, height=height,
                                               budget_ms=budget_ms), capture_output=True, text=True, timeout=timeout)
    if not path.exists():
        raise RuntimeError(f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return path


def _viewer_screenshot(url: str, path: Path, *, width: int, height: int, timeout: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    viewer = f"window.dreamerViewers && window.dreamerViewers['{SCENE_VIEWER_ID}']"
    with headless_page(width=width, height=height) as page:
        page.goto(url)
        page.wait_for_function(f"{viewer} && {viewer}.state === 'ready'", timeout=timeout * 1000)
        page.wait_for_timeout(2000)  # the videos' first frames
        page.screenshot(path=str(path))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen, seconds: float) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(1.0)
    raise RuntimeError(f"the app did not answer within {seconds:.0f} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m apps.screenshot", description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default=None, help="screenshot this running app instead of starting one")
    ap.add_argument("--out", type=Path, default=Path("docs/screenshot.png"), help="PNG to write")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=1250)
    ap.add_argument("--wait", type=float, default=1200, help="seconds to wait for the app (it runs the example first)")
    args = ap.parse_args(argv)
    if args.url:
        take_screenshot(args.url, args.out, width=args.width, height=args.height, budget_ms=15000,
                        wait_for_viewer=have_playwright())
        print(args.out)
        return 0
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="dreamer-showcase-") as out:
        # gradio's cache (the served copies) in the same temporary folder: nothing is left behind
        proc = subprocess.Popen([sys.executable, "-m", "apps.gradio_app", "--models", "synthetic", "--showcase",
                                 "--port", str(port), "--out", out, "--threads", "2"],
                                env={**os.environ, "GRADIO_TEMP_DIR": str(Path(out) / "gradio")})
        try:
            url = f"http://127.0.0.1:{port}/"
            _wait(url, proc, args.wait)
            take_screenshot(url, args.out, width=args.width, height=args.height, budget_ms=15000,
                            wait_for_viewer=have_playwright())
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
