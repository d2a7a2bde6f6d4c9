"""Browser player figures (BENCHMARKS.md "Browser player"): time to first frame over a throttled
loopback, decode/prepare/render ms per frame, counted GPU work per frame and the 1280×720
estimate that follows from it, tab memory.

    PYTHONPATH=. timeout 1800 nice -n 10 python -m rerf_codec.bench.web_bench demo-out/demo.rerf \\
        --build-128 bench-out/web128 --frames 4 --json-out bench-out/web.json

Headless Debian Chromium with SwiftShader (WebGL2 on the CPU: a floor, not a GPU figure).
Chromium's network emulation (CDP ``Network.emulateNetworkConditions``) throttles the loopback
link; every run uses a fresh browser context (nothing cached). Pictures are kept small (``--size``
square for render timing, 16:9 ``--count-size`` for counting work, scaled to 1280×720 per pixel)
because SwiftShader shades every pixel on the CPU. The machine's load average is recorded with
every stream: on a shared machine it changes the figures more than anything measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from rerf_codec.web.server import PlayServer, SiteFiles

CHROMIUM = os.environ.get("RERF_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist",
        "--enable-precise-memory-info"]  # fmt: skip
HD_PIXELS = 1280 * 720
# Scattered RGBA16F/32F texel fetches per second a mid-range desktop GPU sustains in practice
# (a range, not a spec sheet figure): turns counted fetches into an estimate.
FETCH_RATE = (100e9, 200e9)

# Installed before the page's scripts: timestamps of the player's first events (ms since navigation).
TIMELINE = """(() => { window.benchTimes = {}; let p;
  Object.defineProperty(window, 'rerfPlayer', { configurable: true, get() { return p; }, set(v) { p = v;
    for (const ev of ['loadedmetadata', 'progress', 'seeked']) v.addEventListener(ev, () => {
      if (!(ev in window.benchTimes)) window.benchTimes[ev] = performance.now(); }); } }); })()"""

FIRST_PICTURE = """() => { const p = window.rerfPlayer;
  return p && p.shownFrame >= 0 && p.counters.rendered > 0 ? performance.now() : false; }"""

MEASURE = """async ([size, count, maxFrames]) => {
  const p = window.rerfPlayer; const r = p.renderer;
  const orbit = (w, h) => { const c = p.orbit.camera(w, h); const m = c.c2w;
    return { fl_x: c.fx, fl_y: c.fy, cx: c.cx, cy: c.cy, w, h,
             transform_matrix: [m.slice(0, 4), m.slice(4, 8), m.slice(8, 12), m.slice(12, 16)] }; };
  p.setView(orbit(size, size));
  const n = Math.min(p.numFrames, maxFrames);
  const t0 = performance.now();
  for (let k = 0; k < n; k++) await p.seek(p.firstFrame + k);
  const stepS = (performance.now() - t0) / 1000;
  const cam = p.currentCamera();
  const renderMs = [];
  for (let i = 0; i < 3; i++) { const t = performance.now(); r.render(cam); r.finish(); renderMs.push(performance.now() - t); }
  const cc = p.orbit.camera(count[0], count[1]);
  const work = r.render(cc, { count: true });
  r.render(cam);
  return { frames: n, stepS, renderMs, work, countPixels: count[0] * count[1], stats: p.stats(),
           jsHeap: performance.memory ? performance.memory.usedJSHeapSize : null };
}"""


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _proc_tree_pss(tag: str) -> int | None:
    """PSS bytes of the Chromium process tree whose browser process carries ``tag`` (Linux /proc)."""
    parents: dict[int, int] = {}
    root = None
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
            parents[int(d)] = int(stat.rsplit(")", 1)[1].split()[1])
            if root is None and tag in Path(f"/proc/{d}/cmdline").read_bytes().decode(errors="replace"):
                root = int(d)
        except OSError:
            continue
    if root is None:
        return None
    tree, grew = {root}, True
    while grew:
        new = {p for p, pp in parents.items() if pp in tree} - tree
        grew = bool(new)
        tree |= new
    total = 0
    for pid in tree:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def measure(
    stream: Path, mbit: float, runs: int, size: int, count_size: tuple[int, int], max_frames: int
) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    server = PlayServer(SiteFiles(stream), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    out: dict[str, Any] = {
        "stream": str(stream),
        "bytes": stream.stat().st_size,
        "mbit": mbit,
        "load_before": loadavg(),
    }
    tag = f"--rerf-web-bench={uuid.uuid4().hex}"
    try:
        with sync_playwright() as pw:
            b = pw.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, tag])
            ttff = []
            for _ in range(runs):
                page = b.new_page(viewport={"width": 320, "height": 240})  # a fresh context: nothing cached
                page.add_init_script(TIMELINE)
                cdp = page.context.new_cdp_session(page)
                cdp.send("Network.enable")
                cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 2,
                         "downloadThroughput": mbit * 1e6 / 8, "uploadThroughput": mbit * 1e6 / 8})  # fmt: skip
                page.goto(server.url, wait_until="commit")
                shown_ms = page.wait_for_function(FIRST_PICTURE, timeout=600000, polling=20).json_value()
                s = page.evaluate("window.rerfPlayer.stats()")
                nav = page.evaluate("performance.getEntriesByType('navigation')[0].transferSize")
                app = page.evaluate("performance.getEntriesByType('resource').reduce((n, e) => n + e.transferSize, 0)")
                times = page.evaluate("window.benchTimes")
                ttff.append({"first_picture_s": shown_ms / 1000, "opened_s": times.get("loadedmetadata", 0) / 1000,
                             "first_frame_decoded_s": times.get("progress", 0) / 1000, "stream_bytes": s["bytesFetched"],
                             "requests": s["requests"], "app_bytes": nav + app, "decoder": s["decoder"],
                             "canvas": page.evaluate("[window.rerfPlayer.canvas.width, window.rerfPlayer.canvas.height]")})  # fmt: skip
                page.context.close()
            out["ttff"] = ttff
            for k in ("first_picture_s", "first_frame_decoded_s", "opened_s"):
                out[f"ttff_median_{k}"] = statistics.median(r[k] for r in ttff)
            page = b.new_page(viewport={"width": 320, "height": 240})
            page.goto(server.url)
            page.wait_for_function(FIRST_PICTURE, timeout=600000, polling=50)
            res = page.evaluate(MEASURE, [size, list(count_size), max_frames])
            cdp = page.context.new_cdp_session(page)
            cdp.send("Performance.enable")
            metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
            res["cdp_js_heap_used"] = metrics.get("JSHeapUsedSize")
            res["chromium_pss"] = _proc_tree_pss(tag)
            out.update(res)
            b.close()
    finally:
        server.shutdown()
        server.server_close()
    out["load_after"] = loadavg()
    out["render_ms_median"] = statistics.median(out["renderMs"][1:])  # the first includes shader compilation
    work = out.get("work")
    if work:
        per_px = {k: v / out["countPixels"] for k, v in work.items()}
        out["work_per_pixel"] = per_px
        fetches = per_px["fetches"] * HD_PIXELS
        out["hd_estimate"] = {"fetches": fetches, "mlp_evals": per_px["shaded"] * HD_PIXELS,
                              "samples": per_px["marched"] * HD_PIXELS,
                              "ms": [fetches / r * 1000 for r in reversed(FETCH_RATE)]}  # fmt: skip
    return out


def build_128(root: Path, frames: int) -> list[Path]:
    """The codec benchmark's synthetic 128³ sequence (``SyntheticSpec``, first ``frames`` frames) with
    the seeded MLP of ``player_bench`` (12 features, view PE 4, width 128, 3 layers), encoded with the
    default settings, once per shading mode. Built once under ``root``."""
    from dataclasses import replace

    from rerf_codec.codec.encoder import EncoderConfig, encode_sequence
    from rerf_codec.field import MLPConfig, RenderSettings, seeded_mlp
    from rerf_codec.grids import SequenceMeta
    from rerf_codec.gridseq import SequenceWriter, iter_full_frames
    from rerf_codec.synthetic import SyntheticSpec, synthetic_meta, write_synthetic_sequence

    spec = replace(SyntheticSpec(), num_frames=frames)
    raw = root / f"synthetic{frames}"
    if not raw.exists():
        write_synthetic_sequence(raw, spec)
    mlp = MLPConfig(spec.feature_channels, 4, 128, 3)
    outs = []
    for shading in ("per_sample", "deferred"):
        stream = root / f"s128x{frames}-{shading}.rerf"
        outs.append(stream)
        if stream.exists():
            continue
        render = RenderSettings().to_json()
        if shading != "per_sample":
            render["shading"] = shading
        meta = SequenceMeta.from_json_dict(synthetic_meta(spec) | {"mlp": mlp.to_json(), "render": render}, "<bench>")
        seq = root / f"seq-{shading}"
        with SequenceWriter(seq, meta, decoder=seeded_mlp(mlp, 0).to_arrays(), force=True) as w:
            for i, fr in iter_full_frames(raw):
                w.write_frame(i, fr)
        encode_sequence(seq, stream, EncoderConfig())
    return outs


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m rerf_codec.bench.web_bench")
    ap.add_argument("streams", nargs="*", type=Path)
    ap.add_argument("--build-128", type=Path, metavar="DIR", help="also build and measure the 128³ streams (under DIR)")
    ap.add_argument("--frames", type=int, default=4, help="frames of the 128³ streams")
    ap.add_argument("--mbit", type=float, default=20.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size", type=int, default=256, help="square picture for render timing")
    ap.add_argument("--count-size", type=int, nargs=2, default=(320, 180), help="16:9 picture for counting work")
    ap.add_argument("--max-frames", type=int, default=8, help="frames decoded for the per-frame figures")
    ap.add_argument("--json-out", type=Path)
    a = ap.parse_args(argv)
    streams = list(a.streams)
    if a.build_128:
        a.build_128.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        streams += build_128(a.build_128, a.frames)
        print(f"128³ streams ready ({time.perf_counter() - t:.0f} s)", file=sys.stderr, flush=True)
    results = []
    for s in streams:
        print(f"measuring {s} (load {loadavg()})", file=sys.stderr, flush=True)
        r = measure(s, a.mbit, a.runs, a.size, tuple(a.count_size), a.max_frames)
        print(json.dumps({k: r[k] for k in ("stream", "ttff_median_first_picture_s", "ttff_median_first_frame_decoded_s",
                                            "render_ms_median", "load_before", "load_after")}),
              file=sys.stderr, flush=True)  # fmt: skip
        results.append(r)
        if a.json_out:
            a.json_out.parent.mkdir(parents=True, exist_ok=True)
            a.json_out.write_text(json.dumps(results, indent=1))
    json.dump(results, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
