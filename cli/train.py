"""``rerf train``: fit a multi-view dataset into a grid sequence (thin CLI layer).

The work is in ``rerf_codec.train`` (``driver`` runs the frames and the checkpoint,
``keyframe``/``residual`` fit them); this module parses options and prints.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

import click

from cli.common import FRAMES, InterruptedWithHint, SegmentLines, isatty, note, print_json
from rerf_codec.framerange import FrameRange


def _fmt_record(r: dict[str, Any]) -> str:
    line = f"frame {r['frame']:>5} {r['kind']:<8} test PSNR {r['test_psnr']:6.2f} dB  loss {r['loss']:.5f}  {r['seconds']:6.1f} s"
    if r.get("residual_zero_fraction") is not None:
        line += f"  residual zeros {100 * r['residual_zero_fraction']:.1f}%  |motion| {r['motion_mean_voxels']:.3f} vox"
    return line


PLAIN_EVERY_S = 30.0
"""Off a terminal (a log file), a keyframe's progress is a plain line at most this often: a 128³
keyframe runs for minutes, and its frame line comes only at the end."""


class _TrainProgress:
    """A per-frame bar on a terminal (carriage-return redraw); one summary line per frame always; off a
    terminal, a plain line now and then while a keyframe trains."""

    def __init__(self, quiet: bool, gof_lines: SegmentLines | None = None) -> None:
        self.quiet = quiet
        self.tty = isatty(sys.stderr)
        self.gof_lines = gof_lines
        self.frame_start = self.last_line = time.monotonic()
        self.total = self.done = 0
        self.residual_seconds: list[float] = []

    def _standing(self, record: dict[str, Any]) -> str:
        """`` [12/30, ~4.2 min left]``: frames done of the run, and the rest at the median residual frame's time
        (a 30-frame 128³ run is ten minutes of frame lines; this says how many are still to come). GOF runs
        get the count only: their GOFs may train side by side."""
        self.done += 1
        if record["kind"] != "key":
            self.residual_seconds.append(float(record["seconds"]))
        left = self.total - self.done
        text = f"{self.done}/{self.total}"
        if left > 0 and self.residual_seconds and self.gof_lines is None:  # GOF tasks may run side by side
            secs = left * statistics.median(self.residual_seconds)
            text += f", ~{secs:.0f} s left" if secs < 90 else f", ~{secs / 60:.1f} min left"
        return f"  [{text}]"

    def __call__(self, kind: str, info: dict[str, Any]) -> None:
        if self.quiet:
            return
        if kind == "start":
            shape = "×".join(map(str, info["grid_shape"]))
            resumed = f", resuming after {info['resumed']} finished frame(s)" if info["resumed"] else ""
            click.echo(f"training frames {info['frames'][0]}:{info['frames'][1]} at {shape} on {info['device']}{resumed}",
                       err=True)  # fmt: skip
            self.frame_start = self.last_line = time.monotonic()
            self.total, self.done = info["frames"][1] - info["frames"][0], info["resumed"]
        elif kind == "iter":
            phase = {0.0: "motion", 1.0: "residual"}.get(info.get("stage", -1), "keyframe")
            if self.tty:
                width = 30
                filled = int(width * info["i"] / max(info["n"], 1))
                bar = "#" * filled + "-" * (width - filled)
                click.echo(f"\rframe {info['frame']:>5} {phase:<8} [{bar}] {info['i']}/{info['n']} mse {info['mse']:.5f}",
                           err=True, nl=False)  # fmt: skip
            elif phase == "keyframe" and time.monotonic() - self.last_line >= PLAIN_EVERY_S:
                self.last_line = now = time.monotonic()
                click.echo(f"frame {info['frame']:>5} key      {info['i']}/{info['n']} iterations  mse {info['mse']:.5f}"
                           f"  {now - self.frame_start:6.1f} s", err=True)  # fmt: skip
        elif kind == "note":
            note(info["text"])
        elif kind == "frame":
            if self.tty:
                click.echo("\r\033[K", err=True, nl=False)
            click.echo(_fmt_record(info) + self._standing(info), err=True)
            self.frame_start = self.last_line = time.monotonic()
        elif kind == "gof" and self.gof_lines is not None:
            self.gof_lines(info["result"], info["done"], info["total"])


@click.command()
@click.argument("data", metavar="DATA")
@click.option("-o", "--output", required=True, metavar="SEQ", help="Output grid-sequence directory (written atomically).")
@click.option("--frames", "frames", type=FRAMES, default=None, help="Dataset frames to train (half-open); default all.")
@click.option("--resolution", type=click.IntRange(8, 512), default=128, show_default=True,
              help="Voxels along the longest axis of the bounding box.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--iters-key", type=click.IntRange(1, 1_000_000), default=None, help="Keyframe iterations.")
@click.option("--iters-residual", type=click.IntRange(1, 1_000_000), default=None,
              help="Residual-grid iterations per frame (motion uses its own count, --iters-motion).")
@click.option("--iters-motion", type=click.IntRange(0, 1_000_000), default=None, help="Motion iterations per frame.")
@click.option("--l1", type=click.FloatRange(0, 1e3), default=None,
              help="L1 weight on the residual grids (per voxel, divided by the resolution squared).")
@click.option("--residual-coarse", type=click.FloatRange(0, 1, max_open=True), default=None, metavar="SHARE",
              help="Share of the residual iterations fitted first on a half-resolution lattice (coarse to fine; "
                   "default 0.5, 0: off, as ReRF).")
@click.option("--shading", type=click.Choice(["per_sample", "deferred"]), default=None,
              help="deferred (default: a composited diffuse colour plus the MLP once per pixel) or "
                   "per_sample (ReRF: the MLP on every sample); recorded in sequence.json render.shading.")
@click.option("--motion-model", type=click.Choice(["block", "pooled"]), default=None,
              help="block (default: the stored 8³ block vectors fitted directly) or pooled (ReRF/DeVRF: a smooth "
                   "field between block centres, pooled over each block's occupied voxels; follows turns inside a "
                   "block, converges more slowly: give it more --iters-motion).")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=0, show_default=True)
@click.option("--gof", type=click.IntRange(1, 4096), default=None,
              help="Train GOF by GOF: frame A (keyframe + MLP) first, then every GOF of this many frames on its own "
              "(its first frame a keyframe with the MLP frozen, from frame A's grids), listed in \"keyframes\". "
              "Needed for --workers; the output does not depend on --workers.")
@click.option("--workers", type=click.IntRange(1, 4096), default=1, show_default=True,
              help="GOFs trained at once, as Ray tasks (needs rerf[ray] and --gof); without --ray-address on a "
              "local Ray instance.")
@click.option("--ray-address", default=None, metavar="auto|ray://HOST:PORT", help="Train on this Ray cluster.")
@click.option("--gpus-per-task", type=click.FloatRange(0, 64), default=None,
              help="GPUs each GOF task asks Ray for.  [default: 1 with --device cuda, else 0]")
@click.option("--threads", "--threads-per-task", "threads", type=click.IntRange(1, 256), default=1, show_default=True,
              help="torch threads while training (with --gof: per GOF task, and the Ray CPUs each asks for); part "
              "of the result on CPU, so runs match byte for byte only at the same value.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its checkpoint.")
@click.option("--force", is_flag=True, help="Replace an existing output / discard an old checkpoint.")
@click.option("--json", "as_json", is_flag=True, help="Print the train.json summary on stdout (no progress).")
def train(
    data: str, output: str, frames: FrameRange | None, resolution: int, device: str, iters_key: int | None,
    iters_residual: int | None, iters_motion: int | None, l1: float | None, residual_coarse: float | None,
    shading: str | None, motion_model: str | None, seed: int,
    gof: int | None, workers: int, ray_address: str | None, gpus_per_task: float | None, threads: int,
    resume: bool, force: bool, as_json: bool,
) -> None:  # fmt: skip
    """Fit DATA (a multi-view dataset) into the grid sequence SEQ.

    Frame A becomes a density + 12-channel feature grid and the global colour MLP; each
    later frame a block motion grid plus sparse residual grids (the trainer form), ReRF
    style. Writes SEQ/sequence.json, frames/, decoder.npz, train.json and
    train_log.jsonl. A checkpoint after every frame lets --resume continue an
    interrupted run, losing at most the frame in progress.
    """
    from rerf_codec.train.config import TrainConfig
    from rerf_codec.train.driver import TrainRequest, train_sequence

    overrides: dict[str, Any] = {"resolution": resolution, "seed": seed}
    for key, value in (("iters_key", iters_key), ("iters_residual", iters_residual), ("iters_motion", iters_motion),
                       ("l1", l1), ("residual_coarse", residual_coarse), ("shading", shading),
                       ("motion_model", motion_model)):  # fmt: skip
        if value is not None:
            overrides[key] = value
    config = TrainConfig(**overrides)
    req = TrainRequest(Path(data), Path(output), frames=frames, device=device, resume=resume, force=force,
                       threads=threads)
    parallel = workers > 1 or ray_address is not None
    if gpus_per_task is None:
        gpus_per_task = 1.0 if device.startswith("cuda") else 0.0
    try:
        if gof is None:
            if parallel:
                raise click.UsageError("--workers / --ray-address train GOFs in parallel: give --gof N too")
            summary = train_sequence(req, config, _TrainProgress(quiet=as_json))
        else:
            from rerf_codec.train.gofs import train_sequence_gofs

            lines = SegmentLines(not as_json, 0, what="GOF")
            events = _TrainProgress(quiet=as_json, gof_lines=lines)

            def run(runner: Any = None) -> dict[str, Any]:
                def on(kind: str, info: dict[str, Any]) -> None:
                    if kind == "start":
                        lines.total_frames = info["frames"][1] - info["frames"][0] - info["resumed"]
                    events(kind, info)

                return train_sequence_gofs(req, config, gof, runner=runner, threads=threads, workers=workers,
                                           events=on)  # fmt: skip

            if parallel:
                from rerf_codec import cluster

                cluster.require_ray("--workers" if workers > 1 else "--ray-address")
                cluster.check_address(ray_address)
                with cluster.connect(workers, ray_address, gpus=gpus_per_task > 0) as ray_cluster:
                    summary = run(cluster.task_runner(ray_cluster, num_cpus=threads, num_gpus=gpus_per_task))
            else:
                summary = run()
    except KeyboardInterrupt:
        from rerf_codec.train.checkpoint import checkpoint_dir

        kept = checkpoint_dir(Path(output))
        if kept.is_dir():
            raise InterruptedWithHint(f"the frames finished so far are kept in {kept}: run the same command "
                                      "with --resume to continue") from None  # fmt: skip
        raise
    if as_json:
        print_json(summary)
        return
    line = f"trained {summary['frames']} frame(s) → {output} in {summary['seconds_this_session']:.1f} s; "
    line += f"keyframe test PSNR {summary['keyframe_test_psnr']:.2f} dB"
    if summary["residual_test_psnr_min"] is not None:
        line += (f", residual frames ≥ {summary['residual_test_psnr_min']:.2f} dB, "
                 f"median {summary['residual_seconds_median']:.1f} s/frame, "
                 f"≥ {100 * summary['residual_zero_fraction_min']:.1f}% residual zeros")  # fmt: skip
    click.echo(line)
