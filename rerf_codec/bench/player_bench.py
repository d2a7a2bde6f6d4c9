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
    ``--shading both`` (the default) builds one stream per shading mode, identical but for
    ``render.shading``, and alternates their runs in this process, so the ratio is like for like.
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
    ap.add_argument("--shading", choices=["per_sample", "deferred", "both"], default="both")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(args.bench)
    root.mkdir(parents=True, exist_ok=True)
    spec = SyntheticSpec()
    raw = root / "synthetic"
    modes = ["per_sample", "deferred"] if args.shading == "both" else [args.shading]
    streams = {}
    for mode in modes:
        seq, stream = root / f"sequence-{mode}", root / f"bench-{mode}.rerf"
        if not stream.exists():
            if not raw.exists():
                write_synthetic_sequence(raw, spec)
            mlp = MLPConfig(spec.feature_channels, 4, 128, 3)
            render = RenderSettings(shading=mode).to_json()
            d = synthetic_meta(spec) | {"mlp": mlp.to_json(), "render": render}
            meta = SequenceMeta.from_json_dict(d, "<bench>")
            with SequenceWriter(seq, meta, decoder=seeded_mlp(mlp, 0).to_arrays(), force=True) as w:
                for i, fr in iter_full_frames(raw):
                    w.write_frame(i, fr)
            encode_sequence(seq, stream, EncoderConfig())
        streams[mode] = stream
    results: dict[str, list[dict]] = {m: [] for m in modes}
    for r in range(args.runs):
        for mode in modes:  # alternated, so a change in the machine's load hits both alike
            with open(streams[mode], "rb") as f:
                rep = play(f, root / f"run{r}-{mode}.mp4", size=tuple(args.size), device=args.device, force=True)
            j = rep.to_json()
            results[mode].append(j)
            print(
                f"run {r} {mode:>10}: decode {j['decode_ms_per_frame']:.1f} ms/frame, render "
                f"{j['render_ms_per_frame']:.1f} ms/frame, {j['frames_per_second']:.2f} frames/s, "
                f"real-time factor {j['realtime_factor']:.3f}",
                flush=True,
            )
    keys = ("decode_ms_per_frame", "render_ms_per_frame", "frames_per_second", "realtime_factor")
    median = {m: {k: statistics.median(j[k] for j in results[m]) for k in keys} for m in modes}
    out = {"stream_bytes": {m: streams[m].stat().st_size for m in modes}, "size": args.size, "device": args.device,
           "threads": torch.get_num_threads(), "frames": results[modes[0]][0]["num_frames"], "median": median}  # fmt: skip
    if len(modes) == 2:
        out["render_speedup_deferred"] = median["per_sample"]["render_ms_per_frame"] / median["deferred"]["render_ms_per_frame"]
    print(json.dumps(out))


if __name__ == "__main__":  # pragma: no cover
    main()
