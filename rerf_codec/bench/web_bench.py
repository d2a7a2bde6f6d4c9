"""Browser player figures (BENCHMARKS.md "Browser player"): time to first frame over a throttled
loopback, decode/render ms per frame, counted GPU work per frame, tab memory.

    PYTHONPATH=. python -m rerf_codec.bench.web_bench STREAM.rerf [STREAM.rerf ...] [--mbit 20]

Headless Debian Chromium with SwiftShader (a CPU floor, not a GPU figure); Chromium's
network emulation (CDP) throttles the loopback link.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

from rerf_codec.web.server import PlayServer, SiteFiles

ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--enable-precise-memory-info"]  # fmt: skip


def measure(stream: Path, mbit: float, runs: int, count_size: tuple[int, int]) -> dict:
    from playwright.sync_api import sync_playwright

    server = PlayServer(SiteFiles(stream), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out: dict = {"stream": str(stream), "bytes": stream.stat().st_size, "mbit": mbit, "ttff_s": []}
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        for _ in range(runs):
            page = b.new_page(viewport={"width": 400, "height": 300})
            cdp = page.context.new_cdp_session(page)
            cdp.send("Network.enable")
            cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 5,
                     "downloadThroughput": mbit * 1e6 / 8, "uploadThroughput": mbit * 1e6 / 8})  # fmt: skip
            t0 = time.perf_counter()
            page.goto(server.url)
            page.wait_for_function("() => window.rerfPlayer && window.rerfPlayer.shownFrame >= 0", timeout=300000)
            out["ttff_s"].append(time.perf_counter() - t0)
            page.close()
        page = b.new_page(viewport={"width": 400, "height": 300})
        page.goto(server.url)
        page.wait_for_function("() => window.rerfPlayer && window.rerfPlayer.shownFrame >= 0", timeout=300000)
        w, h = count_size
        res = page.evaluate("""async ([w, h]) => {
            const p = window.rerfPlayer; const r = p.renderer;
            const cam = p.orbit.camera(w, h);
            const n = Math.min(p.numFrames, 8);
            const t = [];
            for (let k = 0; k < n; k++) { await p.seek(p.firstFrame + k); }
            for (let i = 0; i < 5; i++) { const t0 = performance.now(); r.render(cam); r.finish(); t.push(performance.now() - t0); }
            const work = r.render(cam, { count: true });
            const mem = performance.memory ? performance.memory.usedJSHeapSize : null;
            return { stats: p.stats(), renderMs: t, work, pixels: w * h, jsHeap: mem };
        }""", [w, h])  # fmt: skip
        out.update(res)
        b.close()
    server.shutdown()
    server.server_close()
    out["ttff_median_s"] = statistics.median(out["ttff_s"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("streams", nargs="+", type=Path)
    ap.add_argument("--mbit", type=float, default=20.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--count-size", type=int, nargs=2, default=(320, 180))
    a = ap.parse_args()
    json.dump([measure(s, a.mbit, a.runs, tuple(a.count_size)) for s in a.streams], sys.stdout, indent=1)


if __name__ == "__main__":
    main()
