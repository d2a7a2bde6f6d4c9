"""How long one residual frame takes to train, with the compiled training kernels and without.

``python -m rerf_codec.bench.residual_frame_bench SEQ DATA [--frames 5,15] [--runs 3] [--json]``

For each frame t of a trained sequence ``SEQ`` (trained from dataset ``DATA``), trains frame t
again from the sequence's frame t-1 exactly as ``rerf train`` does (its settings, seed, motion
start and refresh yardsticks from ``train_log.jsonl``), ``--runs`` times with the compiled kernels
(``native_train``) and as many times on the torch path (``RERF_RENDERER=torch``), alternating, in
one process; reports the median CPU seconds (this process's, on the threads torch is given), the
held-out test PSNR of each path and the ratio. Why: the CPU seconds per residual frame is an issue
target, and the two paths must train the same frame up to rounding. The compiled path is the
trainer's own (its PSNR is the logged one); the torch path's motion warp is ``grid_sample``, whose
rounding differs in the last bits, and the motion and residual fits carry such differences to
±0.3 dB on single frames of a fast scene (the demo; BENCHMARKS.md, "Session 9").
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rerf_codec.bench.train_report import load_log
from rerf_codec.datasets import open_dataset
from rerf_codec.errors import RerfError
from rerf_codec.field import ColorMLP, MLPConfig, native_render
from rerf_codec.gridseq import iter_frames_with_motion, read_decoder, read_meta
from rerf_codec.train.config import TrainConfig
from rerf_codec.train.gofs import _FrameContext
from rerf_codec.train.residual import BLOCK, train_residual_frame


def _inputs(ctx: _FrameContext, seq: Path, t: int) -> tuple[Any, ...]:
    """Frame t-1 as trained (grids and motion), t-1's hull, and frame t's rays and hull: read once per frame."""
    prev, motion = None, None
    for _, fr, m in iter_frames_with_motion(seq, read_meta(seq), range(t - 1, t)):
        prev, motion = fr, m
    assert prev is not None
    if motion is None:
        motion = np.zeros((3, *[-(-n // BLOCK) for n in ctx.geometry.shape]), np.float32)
    _, prev_hull = ctx.frame_inputs(t - 1)
    rays, hull = ctx.frame_inputs(t)
    return prev, motion, prev_hull, rays, hull


def _one(ctx: _FrameContext, mlp: ColorMLP, t: int, inputs: tuple[Any, ...], refs: tuple[float, float | None]) -> tuple[float, float]:
    prev, motion, prev_hull, rays, hull = inputs
    cfg = ctx.config
    c0 = time.process_time()
    res = train_residual_frame(prev, motion, rays, hull, ctx.field(mlp), cfg, cfg.seed + t, None,
                               reference_silhouette=refs[0], reference_fit=refs[1], prev_hull=prev_hull)  # fmt: skip
    cpu = time.process_time() - c0
    return cpu, ctx.test_psnr(mlp, t, res.full)


def run(seq: Path, data: Path, frames: list[int], runs: int) -> dict[str, Any]:
    meta = read_meta(seq)
    cfg = TrainConfig.from_json(json.loads((seq / "sequence.json").read_text())["trainer"]["config"])
    log = {int(r["frame"]): r for r in load_log(seq)}
    first_residual = next((r for k, r in sorted(log.items()) if r.get("kind") == "residual"), None)
    refs = (float(log[min(log)]["silhouette_error"]), None if first_residual is None else float(first_residual["fit_mse"]))
    ctx = _FrameContext(open_dataset(data), cfg, torch.device("cpu"))
    decoder = read_decoder(seq, meta)
    if decoder is None:
        raise RerfError(f"{seq}: no decoder weights")
    mlp = ColorMLP.from_arrays(MLPConfig(cfg.feature_channels, cfg.viewbase_pe, cfg.mlp_width, 3), decoder).eval()
    rows = []
    saved = os.environ.get(native_render.ENV)
    try:
        for t in frames:
            if t - 1 not in log or t not in log:
                raise RerfError(f"frame {t}: the sequence has no frames {t - 1} and {t}")
            inputs = _inputs(ctx, seq, t)
            cpu: dict[str, list[float]] = {"compiled": [], "torch": []}
            psnr: dict[str, float] = {}
            for i in range(runs):
                for path in ("compiled", "torch"):
                    os.environ[native_render.ENV] = "native" if path == "compiled" else "torch"
                    seconds, p = _one(ctx, mlp, t, inputs, refs)
                    cpu[path].append(seconds)
                    psnr[path] = p
                    print(f"frame {t} run {i + 1}/{runs} {path}: {seconds:.1f} CPU-s, {p:.3f} dB", file=sys.stderr, flush=True)
            med = {k: statistics.median(v) for k, v in cpu.items()}
            rows.append({"frame": t, "cpu_seconds": med, "runs": cpu, "test_psnr": psnr, "logged_psnr": log[t]["test_psnr"],
                         "speedup": med["torch"] / med["compiled"]})  # fmt: skip
    finally:
        if saved is None:
            os.environ.pop(native_render.ENV, None)
        else:
            os.environ[native_render.ENV] = saved
    return {"sequence": str(seq), "data": str(data), "threads": torch.get_num_threads(), "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rerf_codec.bench.residual_frame_bench", description=__doc__.split("\n")[0])
    ap.add_argument("sequence", type=Path)
    ap.add_argument("data", type=Path)
    ap.add_argument("--frames", default="5,15", help="residual frames to retrain, comma-separated (default 5,15)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        frames = [int(x) for x in args.frames.split(",") if x.strip()]
        if not frames or min(frames) < 1 or args.runs < 1:
            raise ValueError
    except ValueError:
        print(f"error: --frames must list frames >= 1 and --runs must be >= 1, got {args.frames!r} / {args.runs}", file=sys.stderr)
        return 2
    try:
        if not native_render.available():
            raise RerfError("the compiled kernels are not built (pip install -e .)")
        report = run(args.sequence, args.data, frames, args.runs)
    except (RerfError, OSError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"residual frame training, {report['threads']} thread(s), median of {args.runs}")
    for r in report["rows"]:
        c, p = r["cpu_seconds"], r["test_psnr"]
        print(f"  frame {r['frame']:3d}: compiled {c['compiled']:6.1f} CPU-s ({p['compiled']:.3f} dB)  torch path "
              f"{c['torch']:6.1f} CPU-s ({p['torch']:.3f} dB)  {r['speedup']:.2f}x  (logged {r['logged_psnr']:.3f} dB)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
