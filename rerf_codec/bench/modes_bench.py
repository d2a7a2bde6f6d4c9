"""Benchmark of issue 13: block modes, adaptive keyframes and the compiled decode path.

Two parts, each optional:

* ``--speed``: decode frames/s over one residual GOF and over an intra-only stream of the
  synthetic R³ × F sequence, and encode frames/s, on the compiled path and on the numpy
  path (``RERF_DECODER=numpy``) in the same process, median of ``--runs``; decoded hashes
  must agree between the paths. CPU seconds per frame are reported too (the wall clock of
  a shared machine says little on its own).
* ``--seq DIR``: the bytes of the whole stream at equal grid PSNR for five encoder variants
  on a grid sequence (for example a trained one): today's codec (format 1.1: every block
  inter, fixed GOFs), ``--gof 1``, block modes alone, adaptive keyframes alone, and both (the
  new default). Each variant is encoded at ``--qualities``; "bytes at equal grid PSNR" is the
  BD-rate against today's codec over the PSNR range the curves share.

    python -m rerf_codec.bench.modes_bench --speed --json-out bench-out/modes.json
    python -m rerf_codec.bench.modes_bench --seq demo-out/sequence --qualities 55,65,75,85
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rerf_codec.bench.bdrate import bd_rate
from rerf_codec.bench.rd import combined_psnr
from rerf_codec.codec import native
from rerf_codec.codec.decoder import Decoder
from rerf_codec.codec.encoder import EncoderConfig, encode_frames
from rerf_codec.codec.occupancy import default_threshold, occupancy_mask
from rerf_codec.grids import GridFrame, SequenceMeta, iter_frames_with_motion, read_meta, update_frame_hash
from rerf_codec.metrics import grid_psnr
from rerf_codec.synthetic import SyntheticSpec, synthetic_frames, synthetic_meta

VARIANTS: dict[str, dict[str, Any]] = {
    "today (1.1: all inter, fixed GOFs)": {"block_modes": False, "gof_fixed": True},
    "--gof 1 (intra only)": {"gof": 1},
    "block modes alone": {"block_modes": True, "gof_fixed": True},
    "adaptive keyframes alone": {"block_modes": False, "gof_fixed": False},
    "both (default)": {},
}
ANCHOR = "today (1.1: all inter, fixed GOFs)"


def _on_path(path: str) -> None:
    os.environ[native.ENV] = path


def _decode(data: bytes) -> tuple[int, str]:
    sha = hashlib.sha256()
    n = 0
    for item in Decoder(io.BytesIO(data)).frames(reuse_buffers=True):
        update_frame_hash(sha, item.frame)  # type: ignore[union-attr]
        n += 1
    return n, sha.hexdigest()


def _timed(fn: Callable[[], Any], runs: int) -> tuple[float, float, Any]:
    """Median wall and CPU seconds of ``fn()`` over ``runs`` runs, and its last result."""
    walls, cpus = [], []
    out = None
    for _ in range(runs):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus), out


def speed(resolution: int, frames: int, channels: int, runs: int, encode_frames_n: int) -> dict[str, Any]:
    spec = SyntheticSpec(shape=(resolution,) * 3, feature_channels=channels, num_frames=frames)
    meta = SequenceMeta.from_json_dict(synthetic_meta(spec), "synthetic")
    seq = [GridFrame(d, f) for d, f, _ in synthetic_frames(spec)]
    rows: dict[str, Any] = {"sequence": f"synthetic {resolution}³ × {frames} frames, {1 + channels} channels",
                            "threads": os.environ.get("RERF_THREADS", "default"), "runs": runs,
                            "loadavg_before": list(os.getloadavg())}
    streams = {}
    for name, gof in (("residual GOF", frames), ("intra only", 1)):
        buf = io.BytesIO()
        encode_frames(meta, enumerate(seq), buf, EncoderConfig(gof=gof))
        streams[name] = buf.getvalue()
    for name, data in streams.items():
        shas = {}
        for path in ("numpy", "native"):
            _on_path(path)
            _decode(data)  # warm: buffers, caches
            wall, cpu, (n, sha) = _timed(lambda data=data: _decode(data), runs)
            shas[path] = sha
            rows[f"decode {name} {path}"] = {"fps": n / wall, "cpu_ms_per_frame": 1e3 * cpu / n, "bytes": len(data)}
            print(f"decode {name:12} {path:6}: {n / wall:6.2f} frames/s, {1e3 * cpu / n:6.1f} CPU ms/frame", file=sys.stderr)
        rows[f"decode {name} same bits"] = shas["numpy"] == shas["native"]
    enc_meta = SequenceMeta.from_json_dict({**synthetic_meta(spec), "num_frames": encode_frames_n}, "synthetic")
    for path in ("numpy", "native"):
        _on_path(path)

        def enc() -> bytes:
            buf = io.BytesIO()
            encode_frames(enc_meta, enumerate(seq[:encode_frames_n]), buf, EncoderConfig(gof=frames))
            return buf.getvalue()

        wall, cpu, data = _timed(enc, max(1, runs // 2))
        rows[f"encode {path}"] = {"fps": encode_frames_n / wall, "cpu_ms_per_frame": 1e3 * cpu / encode_frames_n,
                                  "sha256_of_stream": hashlib.sha256(data).hexdigest()}
        print(f"encode {path:6}: {encode_frames_n / wall:6.2f} frames/s", file=sys.stderr)
    rows["encode same bytes"] = rows["encode numpy"]["sha256_of_stream"] == rows["encode native"]["sha256_of_stream"]
    rows["loadavg_after"] = list(os.getloadavg())
    os.environ.pop(native.ENV, None)
    return rows


def variants(seq_dir: str, qualities: list[int], gof: int) -> dict[str, Any]:
    meta = read_meta(seq_dir)
    items = list(iter_frames_with_motion(seq_dir, meta))
    threshold = default_threshold(meta.density_shift)
    voxels = []
    for _, fr, _ in items:
        m = occupancy_mask(fr.density, threshold)
        full = m.repeat(8, 0).repeat(8, 1).repeat(8, 2)
        x, y, z = fr.density.shape
        voxels.append(full[:x, :y, :z])
    out: dict[str, Any] = {"sequence": str(seq_dir), "frames": meta.num_frames, "gof": gof, "qualities": qualities,
                           "variants": {}}
    for name, overrides in VARIANTS.items():
        points = []
        for q in qualities:
            cfg = EncoderConfig(**{"quality": q, "gof": gof, **overrides})
            buf = io.BytesIO()
            rep = encode_frames(meta, items, buf, cfg)
            data = buf.getvalue()
            gp, fp = [], []
            for k, item in enumerate(Decoder(io.BytesIO(data)).frames()):
                o = items[k][1]
                f = grid_psnr(o.features, item.frame.features, voxels[k])  # type: ignore[union-attr]
                d = grid_psnr(o.density, item.frame.density, voxels[k])  # type: ignore[union-attr]
                fp.append(f)
                gp.append(combined_psnr(f, d, meta.feature_channels))
            starts = [f.gof_start for f in rep.frames if f.gof_start]
            modes = [f.block_modes for f in rep.frames if f.block_modes]
            point = {
                "quality": q, "bytes": len(data), "grid_psnr": statistics.fmean(v for v in gp if v is not None),
                "feature_psnr": statistics.fmean(v for v in fp if v is not None), "gof_starts": starts,
                "block_modes": {k: sum(m[k] for m in modes) for k in ("inter", "skip", "intra")} if modes else None,
            }
            points.append(point)
            print(f"{name:36} q{q}: {len(data):>10,} B, grid PSNR {point['grid_psnr']:.2f} dB", file=sys.stderr)
        out["variants"][name] = points
    anchor = out["variants"][ANCHOR]
    for name, points in out["variants"].items():
        out.setdefault("bd_rate_vs_today_percent", {})[name] = bd_rate(
            [p["bytes"] for p in anchor], [p["grid_psnr"] for p in anchor],
            [p["bytes"] for p in points], [p["grid_psnr"] for p in points],
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rerf_codec.bench.modes_bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--speed", action="store_true", help="decode/encode frames/s, compiled and numpy paths")
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--frames", type=int, default=13)
    ap.add_argument("--channels", type=int, default=12)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--encode-frames", type=int, default=4, help="frames of the timed encodes")
    ap.add_argument("--seq", help="grid sequence for the bytes-at-equal-PSNR comparison of the variants")
    ap.add_argument("--qualities", default="55,65,75,85")
    ap.add_argument("--gof", type=int, default=20)
    ap.add_argument("--json-out")
    args = ap.parse_args(argv)
    result: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "compiled_path": native.available()}}
    if args.speed:
        result["speed"] = speed(args.resolution, args.frames, args.channels, args.runs, args.encode_frames)
    if args.seq:
        result["variants"] = variants(args.seq, [int(q) for q in args.qualities.split(",")], args.gof)
    text = json.dumps(result, indent=2)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
