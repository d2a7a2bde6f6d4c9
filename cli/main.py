"""``rerf``: encode, decode, inspect and demo the ReRF grid-sequence codec.

Thin layer: parsing and printing only; the work is done by ``rerf_codec`` (file-level
operations in ``rerf_codec.codec.files``, the demo in ``rerf_codec.demo``).

Exit codes: 0 ok; 2 bad input or usage (one line on stderr: ``rerf: error: ...``);
1 unexpected internal error (one line; ``RERF_DEBUG=1`` adds the traceback);
130 interrupted (Ctrl-C or SIGTERM). ``--json`` prints exactly one JSON document on stdout and no progress.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

import click

import rerf_codec
from cli.bench import bench_rate_distortion
from cli.common import (
    FRAMES,
    PositiveFloat,
    RerfGroup,
    SegmentLines,
    category_line,
    compact,
    fmt_bytes,
    fmt_fps,
    fmt_range,
    one_line,
    print_json,
    progress_bar,
    terminate_as_interrupt,
)
from cli.dataset import dataset
from cli.render import eval_, render
from cli.train import train
from cli.verify import verify
from cli.web import export_web, play
from rerf_codec.codec.encoder import DEFAULT_GOF, DEFAULT_QUALITY, MOTION_MODES

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_PIPE = 0, 1, 2, 130, 141


# --------------------------------------------------------------------------- commands


@click.group(cls=RerfGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(rerf_codec.__version__, "--version", prog_name="rerf", message="%(prog)s %(version)s")
def cli() -> None:
    """rerf: a bit-exact free-viewpoint-video codec for ReRF grid sequences.

    \b
    Typical use:
      rerf encode SEQ_DIR -o clip.rerf --quality 80
      rerf info clip.rerf
      rerf decode clip.rerf -o decoded --verify <sha256 printed by encode>
      rerf demo                       (the whole pipeline on a built-in scene)

    Exit codes: 0 ok, 2 bad input or usage (one line on stderr), 1 internal error,
    130 interrupted (Ctrl-C or SIGTERM). --json prints exactly one JSON document on stdout.
    """


@cli.command()
@click.argument("seq_dir", metavar="SEQ_DIR")
@click.option("-o", "--output", required=True, metavar="OUT.rerf", help="Output .rerf file (written atomically).")
@click.option(
    "--quality", type=click.IntRange(1, 100), default=DEFAULT_QUALITY, show_default=True,
    help="Feature quality 1..100 (higher = better, larger); also density unless --density-quality. "
    "With --target-kbpf only the starting point.",
)
@click.option(
    "--density-quality", type=click.IntRange(1, 100), default=None,
    help="Density grid quality 1..100.  [default: --quality]",
)
@click.option(
    "--gof", type=click.IntRange(1, 4096), default=DEFAULT_GOF, show_default=True,
    help="Maximum frames per group of frames: one keyframe (intra), then residual frames predicted from "
    "the previous frame. The unit of seeking and of rate control; --gof 1 = intra only. A GOF also "
    "starts at a cut (a frame cheaper as a keyframe) unless --gof-fixed, and at every frame the "
    "sequence lists in \"keyframes\".",
)
@click.option(
    "--gof-fixed", is_flag=True,
    help="GOFs of exactly --gof frames (no keyframes at cuts; listed keyframes and the lattice still end a GOF).",
)
@click.option(
    "--block-modes/--no-block-modes", default=True, show_default=True,
    help="Per-block inter / skip / intra choice in residual frames (format 1.2); off: every block inter.",
)
@click.option(
    "--target-kbpf", type=PositiveFloat(), default=None, metavar="K",
    help="Rate control: choose the quality of each GOF so the whole file averages K kilobytes "
    "(1000 B) per frame.",
)
@click.option(
    "--motion", type=click.Choice(MOTION_MODES), default="search", show_default=True,
    help="Motion of residual frames: search (encoder search, seeded with the trainer's motion when the "
    "input has it), trainer (the input's motion as given), zero (no motion compensation).",
)
@click.option(
    "--segment-frames", type=click.IntRange(1, None), default=None, metavar="K",
    help="Frames per segment, a multiple of --gof: the unit of parallel encoding; a GOF never spans two "
    "segments and rate control budgets per segment. Part of the config (the bytes depend on it, never on "
    "--workers).  [default: 5 × --gof]",
)
@click.option(
    "--workers", type=click.IntRange(1, 4096), default=1, show_default=True,
    help="Segments encoded at once, as Ray tasks (needs rerf[ray]); without --ray-address on a local Ray "
    "instance of that many CPUs. 1: in this process.",
)
@click.option(
    "--ray-address", default=None, metavar="auto|ray://HOST:PORT",
    help="Run the segments on this Ray cluster (auto: the one this machine belongs to).",
)
@click.option(
    "--sha256/--no-sha256", "sha256", default=True, show_default=True,
    help="Compute the SHA-256 of the reconstruction (for `rerf decode --verify`). With --workers the driver "
    "decodes the whole stream for it, one frame after another; --no-sha256 skips that.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON report on stdout instead of the summary.")
def encode(
    seq_dir: str, output: str, quality: int, density_quality: int | None, gof: int, gof_fixed: bool,
    block_modes: bool, target_kbpf: float | None, motion: str, segment_frames: int | None, workers: int,
    ray_address: str | None, sha256: bool, force: bool, as_json: bool,
) -> None:
    """Encode the grid-sequence directory SEQ_DIR into a .rerf file.

    Prints the SHA-256 of the encoder's reconstruction: `rerf decode --verify` checks
    that a decoder reproduces it bit for bit.
    """
    from rerf_codec.codec.accounting import encode_byte_totals, encoded_gofs, frame_type_summary
    from rerf_codec.codec.encoder import EncoderConfig, encode_sequence
    from rerf_codec.gridseq import read_meta

    config = EncoderConfig(
        quality=quality, density_quality=density_quality, gof=gof, motion=motion, target_kbpf=target_kbpf,
        gof_fixed=gof_fixed, block_modes=block_modes, segment_frames=segment_frames,
    )
    config.validate()
    parallel = workers > 1 or ray_address is not None
    if parallel:
        from rerf_codec import cluster

        cluster.require_ray("--workers" if workers > 1 else "--ray-address")
        cluster.check_address(ray_address)
    meta = read_meta(seq_dir)
    if parallel:
        with cluster.connect(workers, ray_address) as ray_cluster:
            lines = SegmentLines(not as_json, meta.num_frames)
            report = encode_sequence(
                seq_dir, output, config, force=force, runner=cluster.segment_runner(ray_cluster), workers=workers,
                on_segment=lines, reconstruction_hash=sha256,
            )
    else:
        with progress_bar(not as_json) as bar:

            def progress(fr: Any) -> None:
                info = f"frame {fr.index} {fr.frame_type} {fmt_bytes(fr.total_bytes)}"
                bar.update("encode", fr.index - meta.first_frame + 1, meta.num_frames, info=info)

            report = encode_sequence(
                seq_dir, output, config, force=force, progress=progress, reconstruction_hash=sha256
            )
    x, y, z = meta.grid_shape
    n = report.num_frames
    raw = report.raw_float32_bytes
    totals = encode_byte_totals(report)
    types = frame_type_summary((fr.frame_type, fr.bytes) for fr in report.frames)
    gofs = encoded_gofs(output, report)
    kbpf = report.kb_per_frame
    if as_json:
        print_json({**report.to_json(), "target_kbpf": target_kbpf, "totals": totals, "frame_types": types,
                    "gofs": gofs})  # fmt: skip
        return
    echo = click.echo
    echo(
        f"encoded {n} frames {fmt_range(meta.first_frame, meta.first_frame + n)} of {x}×{y}×{z} "
        f"(density + {meta.feature_channels} features) → {output}"
    )
    target = "" if target_kbpf is None else f" (target {target_kbpf:,.2f}, {kbpf / target_kbpf - 1:+.1%})"
    echo(
        f"  {report.file_bytes:,} bytes, {kbpf:,.2f} kB/frame{target}, "
        f"{raw / report.file_bytes:,.1f}× smaller than raw float32 ({fmt_bytes(raw)})"
    )
    echo(f"  frames: {_types_line(types)}")
    echo(f"  bytes: {category_line(totals, report.file_bytes)}")
    qualities = [f"{fmt_range(g['first_frame'], g['first_frame'] + g['num_frames'])} {_fmt_q(g)}" for g in gofs]
    for line in _wrap("  GOF qualities (density/features): ", qualities):
        echo(line)
    mode = f"rate control from quality {quality}" if target_kbpf is not None else f"quality {quality}"
    if target_kbpf is None:
        mode += f" (density {config.effective_density_quality})"
    echo(
        f"  {mode}, gof {gof}, motion {motion}; {report.seconds:.2f} s, "
        f"{fmt_fps(n / report.seconds if report.seconds > 0 else None)}"
    )
    if len(report.segments) > 1 or parallel:
        echo(
            f"  {len(report.segments)} segment(s) of {config.segment_length} frames, "
            f"{'in this process' if not parallel else f'{workers} at once on Ray'}"
        )
    echo(f"sha256 {report.sha256}" if report.sha256 else "sha256 not computed (--no-sha256)")


def _fmt_q(g: dict[str, Any]) -> str:
    return f"{g['density_quality']}/{g['quality']}"


def _types_line(types: dict[str, dict[str, Any]]) -> str:
    """'2 intra (avg 23.05 kB), 6 residual (avg 15.93 kB); motion 545 B'."""
    parts = [f"{e['frames']} {t} (avg {e['bytes_per_frame'] / 1e3:,.2f} kB)" for t, e in types.items()]
    motion = sum(e["by_category"]["motion"] for e in types.values())
    return ", ".join(parts) + (f"; motion {fmt_bytes(motion)}" if motion else "")


def _wrap(prefix: str, items: list[str], width: int = 100) -> list[str]:
    """``prefix`` then the comma-separated ``items``; continuation lines are indented under the first."""
    pieces = [it + "," for it in items[:-1]] + items[-1:]
    lines: list[str] = []
    cur, fresh = prefix, True
    for piece in pieces:
        if not fresh and len(cur) + len(piece) > width:
            lines.append(cur.rstrip())
            cur = " " * len(prefix)
        cur += piece + " "
        fresh = False
    lines.append(cur.rstrip())
    return lines


@cli.command()
@click.argument("input_path", metavar="IN.rerf")
@click.option("-o", "--output", required=True, metavar="OUT_DIR", help="Output grid-sequence directory.")
@click.option(
    "--frames", "frames", type=FRAMES, default=None,
    help="Decode frames A..B-1 only (half-open like a Python slice; A or B may be omitted). "
    "Output keeps the original frame numbers.",
)
@click.option(
    "--verify", metavar="SHA256", default=None,
    help="Expected SHA-256 of the decoded grids; on a mismatch exit 2 and write nothing.",
)
@click.option(
    "--skip-damaged", is_flag=True,
    help="Conceal damaged GOFs instead of failing (see below).",
)
@click.option("--force", is_flag=True, help="Replace an existing output grid sequence (or empty directory).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON report on stdout instead of the summary.")
def decode(
    input_path: str, output: str, frames: str | None, verify: str | None, skip_damaged: bool, force: bool,
    as_json: bool,
) -> None:
    """Decode IN.rerf (or - for stdin, streamed GOF by GOF) into a grid sequence.

    Writes full frames (frames/NNNNNN.npz), sequence.json, and decoder.npz when the
    stream carries MLP weights; the directory appears only when decoding succeeded.
    Prints the SHA-256 of the decoded grids (raw little-endian float32 density then
    features of each frame, in frame order).

    With --skip-damaged a damaged GOF does not stop decoding: each of its frames is
    replaced by the nearest earlier decoded frame (the picture freezes, as in a video
    player) or, before the first decoded frame, by an empty transparent frame. Damaged
    stretches are reported on stderr (one line each) and in --json, and sequence.json
    lists the replaced frames under "damaged_frames". Without it a damaged stream is an
    error (exit 2) and nothing is written.
    """
    from rerf_codec.codec.files import decode_to_directory, open_input

    with progress_bar(not as_json) as bar, open_input(input_path) as src:
        report = decode_to_directory(
            src, output, frames=frames, force=force, verify=verify, skip_damaged=skip_damaged,
            progress=lambda done, total: bar.update("decode", done, total),
        )
    for d in report.damaged:
        click.echo(f"rerf: warning: {one_line(d.describe())}", err=True)
    if as_json:
        print_json(report.to_json())
        return
    fr = report.frames
    click.echo(
        f"decoded {report.num_frames} frames {fmt_range(fr.start, fr.stop)} → {output}  "
        f"({report.seconds:.2f} s, {fmt_fps(report.frames_per_second)})"
    )
    if report.damaged_frames:
        click.echo(f"  {len(report.damaged_frames)} damaged frames concealed: {compact(report.damaged_frames)}")
    click.echo(f"sha256 {report.sha256}" + ("  (verified)" if report.verified else ""))


@cli.command()
@click.argument("input_path", metavar="IN.rerf")
@click.option("--json", "as_json", is_flag=True, help="Print everything as one JSON document.")
def info(input_path: str, as_json: bool) -> None:
    """Describe IN.rerf (or - for stdin): header, GOFs, and per-frame byte accounting.

    Byte categories: mask (occupancy), motion, coefficients, side info (entropy tables,
    frame headers and section sizes), header (file + sequence header incl. MLP weights),
    container (chunk framing, GOF headers and parameters, index, footer). They add up
    exactly to the file size.
    """
    from rerf_codec.codec.accounting import describe_stream
    from rerf_codec.codec.files import open_input

    with open_input(input_path) as src:
        d = describe_stream(src)
    if as_json:
        print_json(d)
        return
    _print_info(input_path, d)


def _print_info(name: str, d: dict[str, Any]) -> None:
    h = d["header"]
    x, y, z = h["grid_shape"]
    total = d["file_bytes"]
    enc = h["encoder"]
    echo = click.echo
    echo(f"{'<stdin>' if name == '-' else name}: rerf stream v{h['format_version']}, {total:,} bytes")
    echo(
        f"  grid {x}×{y}×{z}, density + {h['feature_channels']} features, "
        f"frames {fmt_range(*h['frames'])} ({h['num_frames']} @ {h['fps']:g} fps), gof {h['gof_size']}"
    )
    lo = ", ".join(f"{v:g}" for v in h["xyz_min"])
    hi = ", ".join(f"{v:g}" for v in h["xyz_max"])
    echo(
        f"  bbox [{lo}]..[{hi}], density_shift {h['density_shift']:.4g}, "
        f"occupancy threshold {h['occupancy_threshold']:.4g}"
    )
    echo(f"  coder {h['coder']} (id {h['coder_id']}), transform {h['transform']} (id {h['transform_id']})")
    if enc:
        keys = ("quality", "density_quality", "gof", "target_kbpf", "motion", "search_range", "rerf_version")
        echo("  encoder " + ", ".join(f"{k}={enc[k]}" for k in keys if enc.get(k) is not None))
    tensors = h["tensors"]
    if tensors:
        echo("  tensors " + ", ".join(f"{k} {'×'.join(map(str, t['shape']))} {t['dtype']}" for k, t in tensors.items()))
    else:
        echo("  tensors none (codec-only stream)")
    echo(
        f"  {total / h['num_frames'] / 1e3:,.2f} kB/frame, {d['compression_ratio']:,.1f}× smaller than raw float32 "
        f"({fmt_bytes(d['raw_float32_bytes'])})"
    )
    echo("")
    echo(
        f"{'GOF':>5} {'offset':>12} {'bytes':>12} {'frames':>13} {'q dens/feat':>12} {'intra B':>10} "
        f"{'residual B/frame':>17} {'starts (reason)':>16}"
    )
    for i, g in enumerate(d["gofs"]):
        fr = fmt_range(g["first_frame"], g["first_frame"] + g["num_frames"])
        counts, fb = g["frame_types"], g["frame_bytes"]
        intra = f"{fb['intra']:,}" if "intra" in fb else "-"
        res = f"{fb['residual'] / counts['residual']:,.0f} ×{counts['residual']}" if "residual" in fb else "-"
        echo(
            f"{i:>5} {g['offset']:>12,} {g['bytes']:>12,} {fr:>13} "
            f"{str(g['density_quality']) + '/' + str(g['quality']):>12} {intra:>10} {res:>17} "
            f"{g['start_reason']:>16}"
        )
    echo("")
    echo(f"{'frame':>7} {'type':<8} {'mask':>10} {'motion':>10} {'coeffs':>12} {'side info':>10} {'total':>12}")
    for f in d["frames"]:
        b = f["bytes"]
        modes = "  block modes" if f.get("block_modes") else ""
        echo(
            f"{f['index']:>7} {f['type']:<8} {b['mask']:>10,} {b['motion']:>10,} {b['coefficients']:>12,} "
            f"{b['side_info']:>10,} {f['total_bytes']:>12,}{modes}"
        )
    echo("")
    echo(
        f"{'frame type':<10} {'frames':>7} {'mask':>10} {'motion':>10} {'coeffs':>12} {'side info':>10} "
        f"{'total':>12} {'per frame':>10}"
    )
    for t, e in d["frame_types"].items():
        c = e["by_category"]
        echo(
            f"{t:<10} {e['frames']:>7} {c['mask']:>10,} {c['motion']:>10,} {c['coefficients']:>12,} "
            f"{c['side_info']:>10,} {e['bytes']:>12,} {e['bytes_per_frame']:>10,.0f}"
        )
    echo("")
    echo(f"{'category':<14} {'bytes':>12} {'share':>7}")
    for k, v in d["totals"].items():
        echo(f"{k.replace('_', ' '):<14} {v:>12,} {v / total:>7.2%}")
    echo(f"{'total':<14} {total:>12,} {1:>7.2%}")


@cli.command()
@click.option(
    "-o", "--output", "out_dir", default="demo-out", show_default=True, metavar="DIR",
    help="Folder for everything the demo writes.",
)
@click.option("--force", is_flag=True, help="Reuse an existing DIR (replacing the demo's outputs in it).")
@click.option("--quick", is_flag=True, help="Small run for CI: a tiny scene and a few seconds of training.")
@click.option("--codec-only", is_flag=True,
              help="Only the codec, on a synthetic grid sequence (64³ × 12 frames; with --quick 32³ × 6).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N (training and rendering).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON document.")
def demo(out_dir: str, force: bool, quick: bool, codec_only: bool, device: str, as_json: bool) -> None:
    """Run the whole pipeline on the built-in scene, end to end.

    \b
    built-in scene → multi-view dataset → train (short, small) → encode → decode
    → eval (test cameras, against ground truth and the uncompressed grids)
    → turntable video + contact sheet, and one summary table.

    Everything goes under DIR (dataset/, sequence/, demo.rerf, decoded/, eval.json,
    turntable.mp4, contact_sheet.png, summary.json). About 5-10 minutes on a 2-core CPU;
    --quick well under 2. --codec-only runs the codec alone on a synthetic grid sequence
    (encode, decode, bit-exactness check, grid PSNR) in seconds.
    """
    from rerf_codec.demo import run_codec_demo, run_demo

    with progress_bar(not as_json) as bar:
        if codec_only:
            s = run_codec_demo(out_dir, quick=quick, force=force, progress=bar.update)
        else:
            from rerf_codec.field import resolve_device

            resolve_device(device)
            s = run_demo(out_dir, quick=quick, force=force, progress=bar.update, device=device)
    if as_json:
        print_json(s)
    elif codec_only:
        _print_demo(s)
    else:
        _print_pipeline_demo(s)
    if not s["sha256_match"]:
        click.echo("rerf: error: decoder output differs from the encoder's reconstruction (SHA-256)", err=True)
        raise click.exceptions.Exit(EXIT_INTERNAL)


def _print_pipeline_demo(s: dict[str, Any]) -> None:
    x, y, z = s["grid_shape"]
    w, h = s["render_size"]

    def fps(v: float | None) -> str:
        return "-" if v is None else f"{v:,.2f} frames/s"

    sc = s["scene"]
    rows = [
        ("frames", f"{s['frames']} (scene: {sc['cameras']} train + {sc['test_cameras']} test cameras, "
                   f"{sc['size']} px)"),
        ("grid", f"{x}×{y}×{z}, density + {s['feature_channels']} features (trained {s['train_seconds']:.0f} s, "
                 f"{s['train_seconds_per_frame']:.1f} s/frame)"),
        ("raw float32", f"{s['raw_float32_mb']:,.2f} MB"),
        (".rerf", f"{s['file_bytes']:,} bytes = {s['kb_per_frame']:,.2f} kB/frame (quality {s['quality']}, "
                  f"gof {s['gof']})"),
        ("compression", f"{s['compression_ratio']:,.1f}× vs raw float32"),
        ("PSNR vs GT", f"{s['psnr_db']:.2f} dB stream, {s['reference_psnr_db']:.2f} dB uncompressed grids "
                       f"(test cameras {', '.join(s['test_cameras'])})"),
        ("coding loss", f"{s['psnr_loss_from_coding_db']:.2f} dB (stream vs uncompressed renders: "
                        f"{s['psnr_vs_reference_db']:.2f} dB PSNR)"),
        ("SSIM vs GT", f"{s['ssim']:.4f} stream, {s['reference_ssim']:.4f} uncompressed; lpips {s['lpips']}"),
        ("encode", f"{fps(s['encode_fps'])} ({s['encode_seconds']:.2f} s)"),
        ("decode", f"{fps(s['decode_fps'])} ({s['decode_seconds']:.2f} s, incl. writing frames)"),
        ("render", f"{fps(s['render_fps'])} at {w}×{h} on {s['device']}; player decode+render "
                   f"{fps(s['player_fps'])}, real-time factor {s['realtime_factor']:.3g}×"),
        ("sha256 match", ("yes " if s["sha256_match"] else "NO ") + s["decoder_sha256"][:16] + "…"),
        ("total", f"{s['seconds']:.1f} s"),
    ]  # fmt: skip
    click.echo(
        f"rerf demo → {s['out_dir']}/ (dataset/, sequence/, demo.rerf, decoded/, eval.json, turntable.mp4, "
        "contact_sheet.png, summary.json)"
    )
    for k, v in rows:
        click.echo(f"  {k:<13} {v}")
    click.echo(f"watch it in the browser: {s['play_command']}")


def _demo_residual(s: dict[str, Any]) -> str:
    if not s["residual_frames"]:
        return "none"
    return (
        f"{s['residual_frames']} × {s['residual_kb_per_frame']:,.2f} kB on average "
        f"(motion-compensated; motion {fmt_bytes(s['motion_bytes'])} in all)"
    )


def _print_demo(s: dict[str, Any]) -> None:
    x, y, z = s["grid_shape"]

    def db(v: float | None) -> str:
        return "lossless" if v is None else f"{v:.2f} dB"

    rows = [
        ("frames", f"{s['frames']}"),
        ("grid", f"{x}×{y}×{z}, density + {s['feature_channels']} features"),
        ("raw float32", f"{s['raw_float32_mb']:,.2f} MB"),
        (".rerf", f"{s['file_bytes']:,} bytes = {s['kb_per_frame']:,.2f} kB/frame (quality {s['quality']})"),
        ("keyframes", f"{s['intra_frames']} × {s['intra_kb_per_frame']:,.2f} kB (intra; one per GOF of {s['gof']})"),
        ("residual", _demo_residual(s)),
        ("compression", f"{s['compression_ratio']:,.1f}× vs raw float32"),
        ("feature PSNR", db(s["feature_psnr_db"])),
        ("density PSNR", db(s["density_psnr_db"])),
        ("encode", f"{fmt_fps(s['encode_fps'])} ({s['encode_seconds']:.2f} s)"),
        ("decode", f"{fmt_fps(s['decode_fps'])} ({s['decode_seconds']:.2f} s, incl. writing frames)"),
        ("sha256 match", ("yes " if s["sha256_match"] else "NO ") + s["decoder_sha256"][:16] + "…"),
    ]
    click.echo(f"rerf demo --codec-only → {s['out_dir']}/ (sequence/, demo.rerf, decoded/)")
    for k, v in rows:
        click.echo(f"  {k:<13} {v}")
    click.echo(f"watch it in the browser: {s['play_command']}")


# Commands defined in their own modules (they import cli.common, never this module).
for _command in (bench_rate_distortion, dataset, render, eval_, train, verify, play, export_web):
    cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Console-script entry point (``rerf``)."""
    terminate_as_interrupt()
    cli.main(args=argv, prog_name="rerf")


if __name__ == "__main__":  # pragma: no cover
    main()
