"""Native CPU renderer benchmark: per-sample vs deferred shading, torch vs compiled renderer (BENCHMARKS.md,
"Native CPU renderer (session 5)").

Issue 12 asks deferred shading to render at least 5x faster than per-sample shading on CPU.
Each case renders one frame of a trained sequence on one test camera with ``RadianceField``
(the renderer ``rerf eval``/``render``/the demo use) in all four combinations — shading mode
(whatever the sequence was trained with: the same grids, only the shading switched) and renderer
(``RERF_RENDERER=torch`` / ``native``) — in one process, on ``--threads`` torch threads. Time is the
median of ``--runs`` renders after one warm-up; the images of both renderers are compared too.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from dataclasses import replace
from typing import Any

RENDERERS = ("torch", "native")
SHADINGS = ("per_sample", "deferred")


def measure(seq: str, data: str, size: int, runs: int, frame: int = 0) -> dict[str, Any]:
    """Median ms per render, samples and MLP evaluations for each shading x renderer on one test camera."""
    import numpy as np
    import torch

    from rerf_codec.datasets import open_dataset
    from rerf_codec.field import RadianceField
    from rerf_codec.field import native_render as nr
    from rerf_codec.gridseq import read_decoder, read_frame, read_meta

    ds = open_dataset(data)
    meta = read_meta(seq)
    field = RadianceField.for_sequence(meta, read_decoder(seq, meta))
    grids = read_frame(seq, frame, meta)
    cam = ds.meta.test_cameras[0]
    if size:
        cam = cam.resized((size, size))
    saved = os.environ.get(nr.ENV)
    out: dict[str, Any] = {"sequence": seq, "grid": list(meta.grid_shape), "pixels": cam.w * cam.h, "cases": {}}
    try:
        images = {}
        for shading in SHADINGS:
            field.settings = replace(field.settings, shading=shading)
            for renderer in RENDERERS:
                os.environ[nr.ENV] = renderer
                field.set_grids(grids.density, grids.features)  # the renderer's own per-frame layout
                images[shading, renderer] = field.render_camera(cam)  # warm-up
                o, d = cam.rays()
                stats = field.render_rays(torch.from_numpy(o.reshape(-1, 3)), torch.from_numpy(d.reshape(-1, 3)))
                times = []
                for _ in range(runs):
                    t = time.perf_counter()
                    field.render_camera(cam)
                    times.append(time.perf_counter() - t)
                out["cases"][f"{shading}/{renderer}"] = {
                    "ms": round(1000 * statistics.median(times), 2),
                    "runs_ms": [round(1000 * t, 2) for t in times],
                    "samples": stats.samples,
                    "mlp_evaluations": stats.shaded,
                }
            diff = np.abs(images[shading, "torch"] - images[shading, "native"]).max()
            out["cases"][f"{shading}/native"]["max_abs_diff_vs_torch"] = float(diff)
    finally:
        if saved is None:
            os.environ.pop(nr.ENV, None)
        else:
            os.environ[nr.ENV] = saved
    c = {k: v["ms"] for k, v in out["cases"].items()}
    out["ratios"] = {
        "native_speedup_per_sample": c["per_sample/torch"] / c["per_sample/native"],
        "native_speedup_deferred": c["deferred/torch"] / c["deferred/native"],
        "deferred_vs_per_sample_torch": c["per_sample/torch"] / c["deferred/torch"],
        "deferred_vs_per_sample_native": c["per_sample/native"] / c["deferred/native"],
        "deferred_native_vs_per_sample_torch": c["per_sample/torch"] / c["deferred/native"],
    }
    return out


def main(argv: list[str] | None = None) -> None:
    """``python -m rerf_codec.bench.native_render_bench SEQ:DATA:SIZE [...]``: one row per case."""
    import argparse

    import torch

    from rerf_codec.errors import RerfError

    ap = argparse.ArgumentParser(prog="python -m rerf_codec.bench.native_render_bench")
    ap.add_argument("cases", nargs="+", help="SEQUENCE:DATASET:SIZE (SIZE 0: the test camera's own size)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--json", action="store_true", help="print one JSON report")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for case in args.cases:
        try:
            seq, data, size_text = case.rsplit(":", 2)
            size = int(size_text)
        except ValueError:
            raise SystemExit(f"error: {case!r} is not SEQUENCE:DATASET:SIZE") from None
        try:
            rows.append(measure(seq, data, size, args.runs))
        except RerfError as exc:
            raise SystemExit(f"error: {exc}") from None
        r = rows[-1]
        if not args.json:
            cells = ", ".join(f"{k} {v['ms']:.1f} ms" for k, v in r["cases"].items())
            ratios = ", ".join(f"{k} {v:.2f}x" for k, v in r["ratios"].items())
            print(f"{r['sequence']} ({r['pixels']} px): {cells}\n  {ratios}", file=sys.stderr)
    if args.json:
        print(json.dumps({"threads": args.threads, "runs": args.runs, "rows": rows}, indent=1))


if __name__ == "__main__":  # pragma: no cover
    main()
