"""Intra reference: every frame of a trained sequence fitted again alone, as a keyframe (BENCHMARKS.md).

Why: issue 12 measures a residual frame against *the keyframe's* test PSNR, but frames are
not equally hard — what the few held-out cameras see changes as the scene moves. On the
demo scene, frames fitted alone with the very same settings range from 26.3 to 29.5 dB
(frame 0: 28.9), so "within 1 dB of frame 0" mixes the scene's difficulty with what the
motion + residual chain loses. The fair yardstick for ReRF's claim ("large motion without
losing quality") is the same frame fitted alone, an all-keyframe sequence: that is what
refreshing every frame would give, at a keyframe's bytes per frame.

``python -m rerf_codec.bench.intra_bench DATA SEQ [--frames A:B] [--json]`` trains each frame
of SEQ (or of ``--frames``) as a one-frame sequence with SEQ's recorded trainer config and
the seed the trainer gives that frame (``seed + t``), on the same dataset, and reports per
frame the chain's test PSNR (from SEQ's training log), the intra fit's, and the gap.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _chain_log(seq: Path) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """SEQ's recorded trainer config and its training log by frame (a clear error for anything else)."""
    from rerf_codec.bench.train_report import load_log
    from rerf_codec.gridseq import read_meta

    try:
        config = read_meta(seq).extra["trainer"]["config"]
        log = load_log(seq)
    except (OSError, ValueError, KeyError, TypeError) as exc:  # RerfError is a ValueError
        raise SystemExit(
            f"error: {seq} is not a grid sequence written by rerf train ({exc.__class__.__name__}: {exc})"
        ) from None
    return config, {int(r["frame"]): r for r in log}


def intra_fits(data: Path, seq: Path, frames: str | None = None, progress: bool = False) -> dict[str, Any]:
    """Fit each frame alone with SEQ's settings; per-frame chain vs intra test PSNR and a summary."""
    import torch

    from rerf_codec.framerange import parse_frame_range
    from rerf_codec.train.config import TrainConfig
    from rerf_codec.train.driver import TrainRequest, train_sequence

    config_json, chain = _chain_log(seq)
    config = TrainConfig.from_json(config_json)
    held = range(min(chain), max(chain) + 1)
    fr = parse_frame_range(frames)
    todo = [t for t in (held if fr is None else fr.resolve(held)) if t in chain]
    rows = []
    with tempfile.TemporaryDirectory(prefix="rerf-intra-") as tmp:
        for n, t in enumerate(todo):
            cpu, wall = time.process_time(), time.perf_counter()
            out = Path(tmp) / f"frame{t}"
            # the driver seeds frame t's keyframe with config.seed; the chain seeded this frame with seed + t
            cfg = TrainConfig.from_json({**config_json, "seed": config.seed + t})
            summary = train_sequence(TrainRequest(data, out, frames=range(t, t + 1), threads=None), cfg)  # --threads
            intra = float(summary["keyframe_test_psnr"])
            r = chain[t]
            rows.append({"frame": t, "kind": r["kind"], "chain_test_psnr": r["test_psnr"], "intra_test_psnr": intra,
                         "gap_db": r["test_psnr"] - intra, "intra_cpu_seconds": time.process_time() - cpu,
                         "intra_seconds": time.perf_counter() - wall})  # fmt: skip
            if progress:
                print(f"[{n + 1}/{len(todo)}] frame {t}: chain {r['test_psnr']:.2f} dB, alone {intra:.2f} dB",
                      file=sys.stderr)  # fmt: skip
    key = chain[min(chain)]["test_psnr"]
    later = [r for r in rows if r["kind"] != "key"]
    return {
        "dataset": str(data),
        "sequence": str(seq),
        "threads": torch.get_num_threads(),
        "keyframe_test_psnr": key,
        "rows": rows,
        "later_frames": len(later),
        "later_within_1db_of_keyframe": sum(r["chain_test_psnr"] >= key - 1 for r in later),
        "later_within_1db_of_intra": sum(r["gap_db"] >= -1 for r in later),
        "median_gap_to_intra_db": statistics.median(r["gap_db"] for r in later) if later else None,
        "worst_gap_to_intra_db": min((r["gap_db"] for r in later), default=None),
        "intra_test_psnr_range": [min(r["intra_test_psnr"] for r in rows), max(r["intra_test_psnr"] for r in rows)],
    }


def markdown(report: dict[str, Any]) -> str:
    lines = ["| frame | kind | chain test PSNR (dB) | fitted alone (dB) | gap (dB) |", "|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['frame']} | {r['kind']} | {r['chain_test_psnr']:.2f} | {r['intra_test_psnr']:.2f} | "
                     f"{r['gap_db']:+.2f} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """``python -m rerf_codec.bench.intra_bench DATA SEQ``: each frame fitted alone against the chain."""
    import torch

    from rerf_codec.errors import RerfError

    ap = argparse.ArgumentParser(prog="python -m rerf_codec.bench.intra_bench", description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="the dataset SEQ was trained on")
    ap.add_argument("seq", type=Path, help="a grid sequence written by rerf train (its log and config are read)")
    ap.add_argument("--frames", help="A:B, half-open (default: every frame of SEQ)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--json", action="store_true", help="print one JSON report")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        report = intra_fits(args.data, args.seq, args.frames, progress=not args.json)
    except RerfError as exc:
        raise SystemExit(f"error: {exc}") from None
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(markdown(report))
    print(f"\n{report['later_frames']} later frames: {report['later_within_1db_of_keyframe']} within 1 dB of the "
          f"keyframe ({report['keyframe_test_psnr']:.2f} dB), {report['later_within_1db_of_intra']} within 1 dB of the "
          f"same frame fitted alone; median gap {report['median_gap_to_intra_db']:+.2f} dB, worst "
          f"{report['worst_gap_to_intra_db']:+.2f} dB; frames alone {report['intra_test_psnr_range'][0]:.2f}–"
          f"{report['intra_test_psnr_range'][1]:.2f} dB")  # fmt: skip


if __name__ == "__main__":  # pragma: no cover
    main()
