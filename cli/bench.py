"""``rerf bench-rate-distortion``: rerf's rate–distortion curves against its baselines (thin CLI layer).

The work is in :mod:`rerf_codec.bench.rd` (the run, outputs, BD-rate) and
:mod:`rerf_codec.reference` (the ReRF paper's codec as a baseline).
"""

from __future__ import annotations

import shlex

import click

from rerf_codec.bench.report import to_json
from rerf_codec.codec.encoder import DEFAULT_GOF
from rerf_codec.errors import RerfUsageError


def _qualities(text: str, option: str) -> tuple[int, ...]:
    try:
        qs = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise RerfUsageError(f"{option} must be comma-separated integers 1..100, got {text!r}") from None
    if not qs:
        raise RerfUsageError(f"{option} must list at least one quality, got {text!r}")
    return qs


@click.command("bench-rate-distortion")
@click.argument("seq_dir", metavar="SEQ")
@click.option("-o", "--output", required=True, metavar="OUTDIR",
              help="Output directory: results.json, results.csv, rd.png, results.md (written atomically).")
@click.option("--dataset", default=None, metavar="DATA",
              help="Multi-view dataset for rendered PSNR/SSIM on its test cameras (needs a decoder MLP in SEQ).")
@click.option("--qualities", default="55,65,75,85,95", show_default=True, metavar="LIST",
              help="rerf qualities (also for rerf-intra and rerf-nomotion).")
@click.option("--reference-qualities", default="50,75,90,95,98", show_default=True, metavar="LIST",
              help="IJG qualities of rerf-reference (its own scale).")
@click.option("--gof", type=click.IntRange(1, 4096), default=DEFAULT_GOF, show_default=True,
              help="GOF of rerf and rerf-nomotion (rerf-reference uses the paper's 20).")
@click.option("--baselines", default="rerf-intra,rerf-nomotion,rerf-reference,float16-zstd,raw-float32",
              show_default=True, metavar="LIST",
              help="Baselines to measure besides rerf ('' for none); 2D-video baselines CODEC-PACKING "
                   "(x265, svt-av1, vvenc, x264 × blocks, slices), 'video' for x265-blocks,x265-slices,"
                   "svt-av1-blocks,vvenc-blocks,x264-blocks.")
@click.option("--video-sweep", "video_sweeps", multiple=True, metavar="CODEC=LIST",
              help="Settings swept for one video codec (CRF, or QP for vvenc; 'lossless' where the codec has it), "
                   "e.g. x265=lossless,8,24; repeatable. Defaults in rerf_codec/bench/ffmpeg_codecs.py.")
@click.option("--render-frames", type=click.IntRange(1, 10000), default=4, show_default=True,
              help="With --dataset: frames rendered (spread evenly over the sequence).")
@click.option("--force", is_flag=True, help="Replace an existing OUTDIR (one written by this command, or empty).")
@click.option("--json", "as_json", is_flag=True, help="Print results.json on stdout instead of progress and summary.")
def bench_rate_distortion(
    seq_dir: str, output: str, dataset: str | None, qualities: str, reference_qualities: str, gof: int,
    baselines: str, video_sweeps: tuple[str, ...], render_frames: int, force: bool, as_json: bool,
) -> None:
    """Measure rerf's rate–distortion curves on the grid sequence SEQ against its baselines.

    For each codec and quality, SEQ is encoded to a real file and decoded: bytes per frame
    (keyframe / residual; mask, motion, coefficients, side info), grid PSNR of features and
    density, encode and decode frames/s, and with --dataset rendered PSNR/SSIM. Baselines:
    rerf-intra (--gof 1), rerf-nomotion (--motion zero), rerf-reference (the ReRF paper's
    JPEG-style codec), float16-zstd (level 19), raw-float32, and the 2D-video baselines
    (grids packed into pictures, coded by x265 / SVT-AV1 / vvenc / x264 from the bundled
    ffmpeg). Prints BD-rates against rerf-reference and of rerf against the strongest video
    baseline. Progress goes to stderr, one line per setting.
    """
    from rerf_codec.bench.rd import (
        RDSettings,
        format_summary,
        parse_baselines,
        parse_video_sweeps,
        run_rate_distortion,
    )

    settings = RDSettings(
        qualities=_qualities(qualities, "--qualities"),
        reference_qualities=_qualities(reference_qualities, "--reference-qualities"),
        gof=gof,
        baselines=parse_baselines(baselines),
        video_sweeps=parse_video_sweeps(video_sweeps),
        render_frames=render_frames,
    )
    settings.validate()

    def log(msg: str) -> None:
        click.echo(msg, err=True)

    result = run_rate_distortion(
        seq_dir, output, settings, dataset=dataset, force=force, log=None if as_json else log,
        command=_command_line(seq_dir, output, dataset, qualities, reference_qualities, gof, baselines, render_frames,
                              video_sweeps),
    )
    if as_json:
        click.echo(to_json(result))
        return
    click.echo(format_summary(result))
    click.echo(f"results → {output}/ (results.json, results.csv, rd.png, results.md)")


def _command_line(
    seq_dir: str, output: str, dataset: str | None, qualities: str, reference_qualities: str, gof: int,
    baselines: str, render_frames: int, video_sweeps: tuple[str, ...] = (),
) -> str:
    """The equivalent command line, recorded in results.json (what BENCHMARKS.md quotes)."""
    args = ["rerf", "bench-rate-distortion", seq_dir, "-o", output, "--qualities", qualities,
            "--reference-qualities", reference_qualities, "--gof", str(gof), "--baselines", baselines]
    for v in video_sweeps:
        args += ["--video-sweep", v]
    if dataset is not None:
        args += ["--dataset", dataset, "--render-frames", str(render_frames)]
    return " ".join(shlex.quote(a) for a in args)
