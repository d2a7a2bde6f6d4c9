"""Benchmark of the JavaScript decoder under Node next to the Python decoder (BENCHMARKS.md).

On the synthetic 128³ × 13 sequence (``SyntheticSpec()``, the codec benchmark's), encoded
three ways: all intra (GOF 1), one residual GOF (GOF 13), and GOF 4 (several GOFs to decode in
parallel). Measures, in one run: Python decode frames/s (``reuse_buffers=True``, no hash),
JS decode frames/s single-threaded (reused buffers, no hash) and with GOFs spread over
``worker_threads``, per-frame-type times, the JS decoder's peak memory, bytes fetched and
time to the first frame over HTTP Range from a local server, and that both decoders give the
same SHA-256.

    python -m rerf_codec.bench.js_decoder_bench --out bench-out/js [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from rerf_codec.bench.codec_bench import machine_info
from rerf_codec.codec.decoder import Decoder
from rerf_codec.codec.encoder import EncoderConfig, encode_frames
from rerf_codec.grids import GridFrame, SequenceMeta
from rerf_codec.synthetic import SyntheticSpec, synthetic_frames, synthetic_meta
from rerf_codec.web.node_runner import js_hash_files, require_node
from rerf_codec.web.verify import python_hash_file

NODE_BENCH = Path(__file__).with_name("js_decode_bench.mjs")
STREAMS = {"intra": 1, "residual": 13, "gof4": 4}


def _log(msg: str) -> None:
    print(f"[js-bench] {msg}", file=sys.stderr, flush=True)


def make_streams(out: Path, quality: int = 75) -> dict[str, Path]:
    """Encode the synthetic sequence once per GOF setting (kept in ``out`` for later runs)."""
    paths = {name: out / f"synthetic128_{name}.rerf" for name in STREAMS}
    if all(p.exists() for p in paths.values()):
        return paths
    spec = SyntheticSpec()
    meta = SequenceMeta.from_json_dict(synthetic_meta(spec), "<synthetic>")
    _log("generating the synthetic 128^3 x 13 sequence ...")
    frames = [GridFrame(d, f) for d, f, _motion in synthetic_frames(spec)]
    for name, gof in STREAMS.items():
        if paths[name].exists():
            continue
        _log(f"encoding {name} (GOF {gof}, quality {quality}) ...")
        tmp = paths[name].with_suffix(".tmp")
        with open(tmp, "wb") as f:
            encode_frames(meta, list(enumerate(frames)), f, EncoderConfig(quality=quality, gof=gof))
        os.replace(tmp, paths[name])
    return paths


def python_speed(path: Path, runs: int) -> dict[str, Any]:
    times = []
    n = 0
    for _ in range(runs):
        with open(path, "rb") as f:
            t = time.perf_counter()
            n = sum(1 for _ in Decoder(f).frames(reuse_buffers=True))
            times.append(time.perf_counter() - t)
    sec = statistics.median(times)
    return {"runs": times, "seconds": sec, "frames": n, "fps": n / sec}


def node(*args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [require_node(), "--expose-gc", str(NODE_BENCH), *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"node bench failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


class _RangeHandler(BaseHTTPRequestHandler):
    server: Any

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        data = self.server.data
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if not m:
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if m.group(1):
            start, stop = int(m.group(1)), min(len(data), int(m.group(2) or len(data) - 1) + 1)
        else:
            start, stop = max(0, len(data) - int(m.group(2))), len(data)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{len(data)}")
        self.send_header("Content-Length", str(stop - start))
        self.end_headers()
        self.wfile.write(data[start:stop])


def http_first_frame(path: Path) -> dict[str, Any]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    srv.data = path.read_bytes()  # type: ignore[attr-defined]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        out = node("http", f"http://127.0.0.1:{srv.server_address[1]}/s.rerf")
    finally:
        srv.shutdown()
        srv.server_close()
    out["file_bytes"] = path.stat().st_size
    return out


def run(out: Path, runs: int) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    paths = make_streams(out)
    res: dict[str, Any] = {"machine": machine_info(), "runs": runs, "streams": {}}
    shas = {r["path"]: r for r in js_hash_files([str(p) for p in paths.values()])}
    for name, p in paths.items():
        _log(f"{name}: python ...")
        entry: dict[str, Any] = {"file_bytes": p.stat().st_size, "gof": STREAMS[name]}
        entry["python"] = python_speed(p, runs)
        _log(f"{name}: js ...")
        entry["js"] = node("speed", str(p), str(runs))
        entry["js_2_workers"] = node("workers", str(p), "2", str(runs)) if STREAMS[name] < 13 else None
        py_sha = python_hash_file(str(p))["sha256"]
        entry["sha256"] = {"python": py_sha, "js": shas[str(p)]["sha256"], "equal": py_sha == shas[str(p)]["sha256"]}
        entry["js_vs_python"] = entry["js"]["fps"] / entry["python"]["fps"]
        res["streams"][name] = entry
    res["memory"] = node("memory", str(paths["residual"]))
    res["http"] = {name: http_first_frame(paths[name]) for name in ("intra", "residual")}
    res["http"]["demo"] = http_first_frame(demo_stream(out))
    return res


def demo_stream(out: Path) -> Path:
    """The stream of ``rerf demo --codec-only`` (64³ × 12 synthetic frames), made once."""
    from rerf_codec.demo import run_codec_demo

    path = out / "demo" / "demo.rerf"
    if not path.exists():
        _log("running rerf demo --codec-only for the demo stream ...")
        run_codec_demo(out / "demo", force=True)
    return path


def format_table(res: dict[str, Any]) -> str:
    lines = ["| Stream | File | Python fps | JS fps (1 thread) | JS fps (2 workers) | JS ms/frame by type | SHA-256 equal |",
             "|---|---|---|---|---|---|---|"]
    for name, e in res["streams"].items():
        w = e["js_2_workers"]
        types = ", ".join(f"{k} {v:.1f}" for k, v in e["js"]["per_type_ms"].items())
        lines.append(
            f"| {name} (GOF {e['gof']}) | {e['file_bytes'] / 1e6:.2f} MB | {e['python']['fps']:.2f} | {e['js']['fps']:.2f} | "
            f"{w['fps']:.2f} ({w['gofs']} GOFs)" if w else f"| {name} (GOF {e['gof']}) | {e['file_bytes'] / 1e6:.2f} MB | "
            f"{e['python']['fps']:.2f} | {e['js']['fps']:.2f} | — (1 GOF)"
        )
        lines[-1] += f" | {types} | {'yes' if e['sha256']['equal'] else 'NO'} |"
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="bench-out/js", help="folder for the encoded streams and results.json")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args(argv)
    res = run(Path(args.out), args.runs)
    Path(args.out, "results.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2) if args.json else format_table(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
