"""Shading benchmark: per-sample vs deferred shading of trained grid sequences (BENCHMARKS.md, "Deferred shading").

Issue 12 asks for deferred shading's test PSNR and CPU render time against per-sample
shading on the same scene. Each sequence is rendered by the renderer every command uses
(``RadianceField``, the shading mode its ``sequence.json`` records), on the dataset's test
cameras, in one process so the ratios compare like with like. Render time is the median of
``--runs`` passes over all test views (after one warm-up pass), on ``--threads`` torch threads.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def measure(data: str | Path, seq: str | Path, frame: int, runs: int, size: int | None) -> dict[str, Any]:
    """PSNR against ground truth, MLP evaluations, samples and render ms per test view of one sequence frame."""
    import numpy as np
    import torch

    from rerf_codec.datasets import open_dataset
    from rerf_codec.field import RadianceField
    from rerf_codec.gridseq import iter_full_frames, read_decoder, read_meta
    from rerf_codec.train.driver import heldout_psnr

    ds = open_dataset(data)
    meta = read_meta(seq)
    field = RadianceField.for_sequence(meta, read_decoder(seq, meta))
    grids = next((fr for i, fr in iter_full_frames(seq) if i == frame), None)
    if grids is None:
        raise SystemExit(f"error: {seq} has no frame {frame}")
    field.set_grids(grids.density, grids.features)
    cams = list(ds.meta.test_cameras)
    if size:
        cams = [c.resized((size, size)) for c in cams]
    rays = [(torch.from_numpy(o.reshape(-1, 3)), torch.from_numpy(d.reshape(-1, 3))) for o, d in (c.rays() for c in cams)]
    outs = [field.render_rays(o, d) for o, d in rays]  # warm-up, and the work counts
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        for o, d in rays:
            field.render_rays(o, d)
        times.append((time.perf_counter() - t) / len(rays))
    result: dict[str, Any] = {
        "sequence": str(seq),
        "shading": field.settings.shading,
        "views": len(cams),
        "pixels_per_view": int(rays[0][0].shape[0]),
        "samples_per_view": float(np.mean([o.samples for o in outs])),
        "mlp_evaluations_per_view": float(np.mean([o.shaded for o in outs])),
        "render_ms_per_view": 1000 * statistics.median(times),
        "render_ms_runs": [round(1000 * t, 2) for t in times],
    }
    if not size:  # at the dataset's own image size, as the trainer's log measures it
        result["test_psnr"] = heldout_psnr(ds, frame, field)
    return result


def main(argv: list[str] | None = None) -> None:
    """``python -m rerf_codec.bench.shading_bench DATA SEQ [SEQ ...]``: render cost and PSNR per shading mode."""
    import argparse

    import torch

    ap = argparse.ArgumentParser(prog="python -m rerf_codec.bench.shading_bench")
    ap.add_argument("data", help="dataset folder (its test cameras are rendered)")
    ap.add_argument("sequences", nargs="+", help="grid sequences trained on DATA (the first is the baseline)")
    ap.add_argument("--frame", type=int, default=0)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--size", type=int, default=0, help="render SIZE×SIZE views instead (no PSNR then)")
    ap.add_argument("--json", action="store_true", help="print one JSON report")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    for seq in args.sequences:
        if not (Path(seq) / "sequence.json").is_file():
            raise SystemExit(f"error: {seq} is not a grid sequence (no sequence.json)")
    rows = []
    for seq in args.sequences:
        r = measure(args.data, seq, args.frame, args.runs, args.size or None)
        rows.append(r)
        if not args.json:
            p = f"{r['test_psnr']:.2f} dB, " if "test_psnr" in r else ""
            print(f"{seq}: {r['shading']}, {p}{r['mlp_evaluations_per_view']:.0f} MLP evaluations and "
                  f"{r['samples_per_view']:.0f} samples per view, {r['render_ms_per_view']:.1f} ms per view", file=sys.stderr)  # fmt: skip
    base = rows[0]
    for r in rows:
        r["render_speedup_vs_first"] = base["render_ms_per_view"] / r["render_ms_per_view"]
        r["mlp_evaluation_ratio_vs_first"] = base["mlp_evaluations_per_view"] / max(r["mlp_evaluations_per_view"], 1)
        if "test_psnr" in r:
            r["psnr_vs_first_db"] = r["test_psnr"] - base["test_psnr"]
    report = {"threads": args.threads, "runs": args.runs, "frame": args.frame, "size": args.size or None, "rows": rows}
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        for r in rows[1:]:
            d = f", {r['psnr_vs_first_db']:+.2f} dB" if "psnr_vs_first_db" in r else ""
            print(f"{r['sequence']} vs {base['sequence']}: render {r['render_speedup_vs_first']:.2f}x faster, "
                  f"{r['mlp_evaluation_ratio_vs_first']:.1f}x fewer MLP evaluations{d}")  # fmt: skip


if __name__ == "__main__":  # pragma: no cover
    main()
