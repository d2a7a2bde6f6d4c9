"""``rerf render`` and ``rerf eval``: play a ``.rerf`` along a camera path; measure it against a capture.

Thin layer: the work is in ``rerf_codec.player`` and ``rerf_codec.eval``.
"""

from __future__ import annotations

import math
from typing import Any

import click

from cli.common import FRAMES, note, one_line, print_json, progress_bar
from rerf_codec.framerange import FrameRange


def _stderr(msg: str) -> None:
    click.echo(msg, err=True)


def _db(v: float | None) -> str:
    if v is None:
        return "-"
    return "inf" if not math.isfinite(v) else f"{v:.2f}"


@click.command()
@click.argument("input_path", metavar="IN.rerf")
@click.option("-o", "--output", required=True, metavar="OUT",
              help="OUT.mp4 (H.264), OUT.gif, or a directory name for PNG frames (frame_NNNNNN.png + render.json).")
@click.option("--camera", "camera", default="orbit", show_default=True, metavar="orbit|spiral|dataset:DATA|FILE.json",
              help="Camera path: a ring around the grid box (one revolution over the frames), the same ring with "
              "oscillating elevation, a fixed camera of dataset DATA (its first test camera, or --camera-name), or a "
              "fixed camera from FILE.json (a transforms.json camera entry: fl_x, fl_y, cx, cy, w, h, "
              "transform_matrix; its w×h is the picture size unless --size rescales it).")
@click.option("--camera-name", default=None, metavar="NAME", help="With dataset:DATA, the camera to use.")
@click.option("--size", type=(click.IntRange(1, 8192), click.IntRange(1, 8192)), default=None, metavar="W H",
              help="Picture size in pixels.  [default: 256 256; a fixed camera's own size]")
@click.option("--frames", "frames", type=FRAMES, default=None,
              help="Render frames A..B-1 (half-open, the stream's numbers); from a file the decoder seeks to the "
              "GOF holding A through the index.")
@click.option("--fps", type=click.FloatRange(0, 1000, min_open=True), default=None,
              help="Frame rate of the video.  [default: the stream's]")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--skip-damaged", is_flag=True,
              help="Conceal damaged GOFs (the scene freezes on the last good frame, the camera keeps moving) "
              "instead of failing.")
@click.option("--force", is_flag=True, help="Replace an existing output.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON report on stdout (no progress).")
def render(
    input_path: str, output: str, camera: str, camera_name: str | None, size: tuple[int, int] | None,
    frames: FrameRange | None, fps: float | None, device: str, skip_damaged: bool, force: bool, as_json: bool,
) -> None:  # fmt: skip
    """Decode IN.rerf (or - for stdin) GOF by GOF and render every frame along a camera path.

    The MLP and render settings come from the stream; frames are decoded while rendering,
    never the whole sequence in memory, so `cat x.rerf | rerf render - -o out.mp4` works.
    Reports decode and render time per frame and the real-time factor (stream seconds
    played per second of decode + render; above 1 keeps up with the stream).
    """
    from rerf_codec.codec.files import open_input
    from rerf_codec.player import play, precheck_output

    precheck_output(output, force)
    with progress_bar(not as_json) as bar, open_input(input_path) as src:

        def progress(fr: Any, done: int, total: int) -> None:
            tag = " (concealed)" if fr.concealed else ""
            info = f"frame {fr.index} decode {1e3 * fr.decode_seconds:.0f} ms render {1e3 * fr.render_seconds:.0f} ms{tag}"
            bar.update("render", done, total, info=info)

        report = play(
            src, output, camera=camera, camera_name=camera_name, size=size, frames=frames, fps=fps, device=device,
            skip_damaged=skip_damaged, force=force, progress=progress,
        )  # fmt: skip
    for d in report.damaged:
        _stderr(f"rerf: warning: {one_line(d.describe())}")
    for text in report.notes:
        note(text)
    if as_json:
        print_json(report.to_json())
        return
    j = report.to_json()
    w, h = j["camera"]["size"]
    fr = report.frames
    what = {"mp4": "H.264 mp4", "gif": "GIF", "png": "PNG frames"}[report.format]
    click.echo(
        f"rendered {report.num_frames} frames {fr.start}:{fr.stop} ({j['camera']['kind']}, {w}×{h}, {what}) → {output}"
    )
    fps_txt = "-" if report.frames_per_second is None else f"{report.frames_per_second:.2f} frames/s"
    rt = "-" if report.realtime_factor is None else f"{report.realtime_factor:.3g}×"
    click.echo(
        f"  decode {j['decode_ms_per_frame']:.1f} ms/frame, render {j['render_ms_per_frame']:.1f} ms/frame "
        f"→ {fps_txt} on {device}; real-time factor {rt} (stream {report.stream_fps:g} fps)"
    )
    if report.concealed_frames:
        from cli.common import compact

        click.echo(f"  {len(report.concealed_frames)} damaged frames concealed: {compact(report.concealed_frames)}")
    click.echo(f"  total {report.seconds:.2f} s (writing {j['write_ms_per_frame']:.1f} ms/frame)")


@click.command("eval")
@click.argument("input_path", metavar="IN.rerf")
@click.argument("data", metavar="DATA")
@click.option("--reference", metavar="SEQ", default=None,
              help="The uncompressed grid sequence the stream was encoded from: also render it, to separate "
              "the codec's loss from the trainer's.")
@click.option("--frames", "frames", type=FRAMES, default=None, help="Evaluate frames A..B-1 only (half-open).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON report on stdout (no progress).")
def eval_(input_path: str, data: str, reference: str | None, frames: FrameRange | None, device: str, as_json: bool) -> None:
    """Render DATA's test cameras for every frame of IN.rerf (or -) and measure PSNR and SSIM.

    Ground truth: DATA's images (RGBA composited on its background); frames are matched
    by number. With --reference SEQ the uncompressed grids are rendered too: their PSNR
    against ground truth, and the stream's PSNR against them (the codec's own loss).
    LPIPS is not reported (its backbone weights need a download; not available offline).
    """
    from rerf_codec.codec.files import open_input
    from rerf_codec.eval import LPIPS_STATUS, evaluate

    with progress_bar(not as_json) as bar, open_input(input_path) as src:

        def progress(done: int, total: int, m: dict[str, Any]) -> None:
            bar.update("eval", done, total, info=f"frame {m['frame']} PSNR {_db(m['psnr'])} dB")

        name = "<stdin>" if input_path == "-" else input_path
        report = evaluate(src, data, reference=reference, frames=frames, device=device, stream_name=name,
                          progress=progress)  # fmt: skip
    for text in report.notes:
        note(text)
    if as_json:
        print_json(report.to_json())
        return
    ref = report.reference is not None
    fr = report.frames
    click.echo(
        f"evaluated {len(fr)} frames {fr.start}:{fr.stop} × {len(report.cameras)} test cameras "
        f"({', '.join(report.cameras)}) of {data}"
    )
    head = f"{'frame':>7} {'PSNR dB':>8} {'SSIM':>7}"
    if ref:
        head += f" {'ref PSNR':>9} {'ref SSIM':>9} {'vs ref dB':>10}"
    click.echo(head)

    def line(label: str, m: dict[str, Any]) -> str:
        s = f"{label:>7} {_db(m['psnr']):>8} {m['ssim']:>7.4f}"
        if ref:
            s += f" {_db(m['reference_psnr']):>9} {m['reference_ssim']:>9.4f} {_db(m['psnr_vs_reference']):>10}"
        return s

    for m in report.per_frame():
        click.echo(line(str(m["frame"]), m))
    mean = report.means()
    click.echo(line("mean", mean))
    if ref:
        click.echo(f"PSNR loss from coding: {mean['psnr_loss_from_coding']:.2f} dB (reference − stream, vs ground truth)")
    click.echo(f"lpips: {LPIPS_STATUS}")
    click.echo(f"{report.seconds:.2f} s")
