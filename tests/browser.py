"""Headless Chromium for the player's tests: Debian's /usr/bin/chromium driven by Playwright (no browser download).

``browser()`` skips the test with a reason when Playwright or Chromium is missing (``make
install`` / ``.ci/run`` install both); SwiftShader gives WebGL2 without a GPU.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rerf_codec.web.server import PlayServer, SiteFiles

CHROMIUM = os.environ.get("RERF_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist",
]  # fmt: skip


def _require() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (make install adds it; no browser is downloaded)")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.skip(f"{CHROMIUM} not found (apt-get install chromium; .ci/run does it)")
    return sync_playwright


@contextmanager
def browser() -> Iterator[Any]:
    sync_playwright = _require()
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@contextmanager
def serve(stream: Path, cameras: list[dict[str, Any]] | None = None) -> Iterator[PlayServer]:
    server = PlayServer(SiteFiles(stream, cameras=cameras), "127.0.0.1", 0)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def new_page(b: Any, url: str, width: int = 640, height: int = 480) -> Any:
    page = b.new_page(viewport={"width": width, "height": height}, device_scale_factor=1)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.errors = errors  # type: ignore[attr-defined]
    page.goto(url)
    return page


def png_rgb(data: bytes) -> np.ndarray:
    import imageio.v3 as iio

    img = np.asarray(iio.imread(data, extension=".png"))
    return img[..., :3].astype(np.float64) / 255.0


def foreground_psnr(a: np.ndarray, b: np.ndarray, background: tuple[float, float, float]) -> float:
    """PSNR over pixels where either picture differs from the background (the issue's measure)."""
    bg = np.asarray(background, np.float64)
    fg = (np.abs(a - bg).max(-1) > 1.5 / 255) | (np.abs(b - bg).max(-1) > 1.5 / 255)
    if not fg.any():
        return float("inf")
    mse = float(((a[fg] - b[fg]) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)
