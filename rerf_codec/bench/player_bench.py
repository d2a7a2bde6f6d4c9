"""Player benchmark: decode + render frames/s of the 128³ × 13 synthetic stream (BENCHMARKS.md, "Player").

It lives on top of the library (bench/), so the player module stays free of benchmark code.
"""

from __future__ import annotations

import json
from pathlib import Path

from rerf_codec.player import play


def main(argv: list[str] | None = None) -> None:
    """``python -m rerf_codec.bench.player_bench --bench DIR``: decode + render fps of a 128³ × 13 stream (BENCHMARKS.md).

    Builds (once, under DIR) the codec benchmark's synthetic sequence (``SyntheticSpec()``:
    128³, 12 features, 13 frames, ~10 % occupied blocks of opaque shells) with a seeded colour MLP
    of the trainer's default shape (12 features, view PE 4, width 128, 3 layers) and white
    background, encodes it with the default settings, then plays it ``--runs`` times along the
    orbit at ``--size`` into an mp4 and prints the median decode and render ms/frame and fps.
    """
    import argparse
    import statistics

    import torch

    from rerf_codec.codec.encoder import EncoderConfig, encode_sequence
    from rerf_codec.field import MLPConfig, RenderSettings, seeded_mlp
    from rerf_codec.grids import SequenceMeta
    from rerf_codec.gridseq import SequenceWriter, iter_full_frames
    from rerf_codec.synthetic import SyntheticSpec, synthetic_meta, write_synthetic_sequence

    ap = argparse.ArgumentParser(prog="python -m rerf_codec.bench.player_bench")
    ap.add_argument("--bench", required=True, metavar="DIR", help="work folder (reused between runs)")
    ap.add_argument("--size", type=int, nargs=2, default=[256, 256])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(args.bench)
    root.mkdir(parents=True, exist_ok=True)
    spec = SyntheticSpec()
    raw, seq, stream = root / "synthetic", root / "sequence", root / "bench.rerf"
    if not stream.exists():
        if not raw.exists():
            write_synthetic_sequence(raw, spec)
        mlp = MLPConfig(spec.feature_channels, 4, 128, 3)
        d = synthetic_meta(spec) | {"mlp": mlp.to_json(), "render": RenderSettings().to_json()}
        meta = SequenceMeta.from_json_dict(d, "<bench>")
        with SequenceWriter(seq, meta, decoder=seeded_mlp(mlp, 0).to_arrays(), force=True) as w:
            for i, fr in iter_full_frames(raw):
                w.write_frame(i, fr)
        encode_sequence(seq, stream, EncoderConfig())
    results = []
    for r in range(args.runs):
        with open(stream, "rb") as f:
            rep = play(f, root / f"run{r}.mp4", size=tuple(args.size), device=args.device, force=True)
        j = rep.to_json()
        results.append(j)
        print(
            f"run {r}: decode {j['decode_ms_per_frame']:.1f} ms/frame, render {j['render_ms_per_frame']:.1f} ms/frame, "
            f"{j['frames_per_second']:.2f} frames/s, real-time factor {j['realtime_factor']:.3f}",
            flush=True,
        )
    med = {k: statistics.median(j[k] for j in results)
           for k in ("decode_ms_per_frame", "render_ms_per_frame", "frames_per_second", "realtime_factor")}  # fmt: skip
    print(json.dumps({"stream_bytes": stream.stat().st_size, "size": args.size, "device": args.device,
                      "threads": torch.get_num_threads(), "frames": results[0]["num_frames"], "median": med}))  # fmt: skip


if __name__ == "__main__":  # pragma: no cover
    main()
