"""Summarise a trained grid sequence's ``train_log.jsonl`` for BENCHMARKS.md.

``python -m rerf_codec.bench.train_report SEQ`` prints the per-frame table and the
figures the trainer issue asks for (keyframe PSNR and time, residual-frame PSNR gap to
the keyframe, seconds per frame as median, residual sparsity), straight from the log the
trainer wrote — no figure is typed by hand.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any


def load_log(seq: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (seq / "train_log.jsonl").read_text().splitlines() if line.strip()]


def figures(log: list[dict[str, Any]]) -> dict[str, Any]:
    key = log[0]
    later = log[1:]
    gaps = [key["test_psnr"] - r["test_psnr"] for r in later]
    res = [r for r in later if r["kind"] == "residual"]
    return {
        "frames": len(log),
        "keyframe_test_psnr": key["test_psnr"],
        "keyframe_seconds": key["seconds"],
        "max_gap_to_keyframe_db": max(gaps) if gaps else None,
        "mean_later_test_psnr": statistics.mean(r["test_psnr"] for r in later) if later else None,
        "median_seconds_per_later_frame": statistics.median(r["seconds"] for r in later) if later else None,
        "max_seconds_per_later_frame": max(r["seconds"] for r in later) if later else None,
        "min_residual_zero_fraction": min(r["residual_zero_fraction"] for r in res) if res else None,
        "refreshed_frames": [r["frame"] for r in later if r["kind"] == "refresh"],
    }


def markdown(log: list[dict[str, Any]]) -> str:
    rows = ["| frame | kind | test PSNR (dB) | seconds | residual zeros | mean abs motion (voxels) |", "|---|---|---|---|---|---|"]
    for r in log:
        z = r.get("residual_zero_fraction")
        m = r.get("motion_mean_voxels")
        rows.append(
            f"| {r['frame']} | {r['kind']} | {r['test_psnr']:.2f} | {r['seconds']:.1f} | "
            f"{'' if z is None else f'{100 * z:.1f} %'} | {'' if m is None else f'{m:.3f}'} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("seq", type=Path)
    args = ap.parse_args(argv)
    log = load_log(args.seq)
    print(markdown(log))
    print()
    print(json.dumps(figures(log), indent=2))


if __name__ == "__main__":
    main()
