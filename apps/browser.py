"""Headless Chromium for the app's checks and screenshots: Debian's ``chromium``, driven by
Playwright (``pip install playwright``; its own browser download is not needed).

WebGL2 works headless without a GPU through SwiftShader, Chromium's software renderer, which
newer Chromium versions only use when asked (``--enable-unsafe-swiftshader``). The other flags
keep Chromium off the network: no background services, no first-run pages.
"""

from __future__ import annotations

import contextlib
import shutil
from typing import Iterator

__all__ = ["CHROMIUM_FLAGS", "WEBGL_FLAGS", "find_chromium", "have_playwright", "headless_page"]

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")
"""Flags for a headless Chromium that reaches no outside host."""
WEBGL_FLAGS = ("--enable-unsafe-swiftshader", "--use-angle=swiftshader", "--disable-gpu-compositing")
"""Software WebGL (SwiftShader through ANGLE) for machines without a GPU. The page itself is
composited in software: composited through SwiftShader, an app page left open kept about one core
busy (about 1 s of CPU per second, measured on the app's Scene tab); in software about a third."""


def find_chromium() -> str | None:
    """The Chromium executable on PATH, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def have_playwright() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def headless_page(*, width: int = 1280, height: int = 1000) -> Iterator:
    """A Playwright page in headless Chromium with software WebGL (a ``width`` x ``height``
    viewport); raises RuntimeError when Chromium or Playwright is missing."""
    chromium = find_chromium()
    if chromium is None:
        raise RuntimeError("chromium is not installed (apt-get install -y chromium)")
    if not have_playwright():
        raise RuntimeError("playwright is not installed (pip install playwright; no browser download needed)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # Playwright adds --headless itself; the rest keep Chromium off the network and give it WebGL.
        flags = [f for f in CHROMIUM_FLAGS if f not in ("--headless", "--disable-gpu")] + list(WEBGL_FLAGS)
        browser = p.chromium.launch(executable_path=chromium, args=flags)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            browser.close()
