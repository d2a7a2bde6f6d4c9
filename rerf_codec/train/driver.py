"""Sequential driver: dataset → grid sequence (keyframe, then residual frames), with resume.

The library reports through an ``events`` callback (the CLI draws bars and lines);
it never prints. Frame t trains from frame t-1's *stored* reconstruction with seed
``config.seed + t``, so an uninterrupted run and a resumed one write the same bytes
(tested); the output appears atomically only when every frame is done.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rerf_codec.datasets import Dataset, DatasetMeta, composite, open_dataset
from rerf_codec.errors import RerfUsageError
from rerf_codec.field import (
    STEP_RATIO,
    ColorMLP,
    GridGeometry,
    MLPConfig,
    RadianceField,
    RenderSettings,
    resolve_device,
)
from rerf_codec.framerange import FrameRange, parse_frame_range
from rerf_codec.grids import GridFrame, SequenceMeta
from rerf_codec.gridseq import SequenceWriter
from rerf_codec.metrics import psnr
from rerf_codec.train.checkpoint import Checkpoint, checkpoint_dir, dataset_fingerprint
from rerf_codec.train.config import TrainConfig
from rerf_codec.train.context import FieldContext
from rerf_codec.train.data import frame_rays, load_frame_images, visual_hull
from rerf_codec.train.keyframe import train_keyframe
from rerf_codec.train.memory import check_run
from rerf_codec.train.residual import BLOCK, fit_errors, train_residual_frame

TRAIN_JSON = "train.json"
TRAIN_LOG = "train_log.jsonl"

Events = Callable[[str, dict[str, Any]], None]
"""``events(kind, info)``: kind is "start", "iter" (frame, phase, i, n, stats), "frame" (a log record), "done"."""

PSNR_CAP = 100.0
"""Test PSNR is capped in the training log (JSON has no infinity)."""


class Interrupted(Exception):
    """Raised by ``stop_after`` (tests simulate a crash between frames with it)."""


def check_threads(threads: object) -> None:
    """A torch thread count must be a positive integer (both trainers take one)."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise RerfUsageError(f"must be a positive integer, got {threads!r}", param="threads")


class torch_threads:
    """Fix torch's intra-op thread count for one unit of work (results depend on it on CPU); None: as is."""

    def __init__(self, n: int | None) -> None:
        self.n = n

    def __enter__(self) -> None:
        self.old = torch.get_num_threads()
        if self.n is not None:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.old)


@dataclass(frozen=True)
class TrainRequest:
    data: Path
    out: Path
    frames: FrameRange | range | None = None
    device: str = "cpu"
    resume: bool = False
    force: bool = False
    threads: int | None = 1
    """torch's intra-op threads while training (None: the process's setting). The last bits of every
    frame depend on it on the CPU, so it is part of the checkpoint's identity and train.json. One by
    default, whatever the machine: then a run repeats byte for byte on any core count, as the GOF
    tasks (``--threads``) do, and on the 2-core machine a second thread bought little — the demo
    trains 10 % faster on one, crane's keyframe and residual frames 4 % / 8 % slower — and cost a
    lot when another process held the other core (a demo residual fit 2.6x slower; BENCHMARKS,
    "Session 12")."""


def _frames(ds: Dataset, frames: FrameRange | range | str | None) -> range:
    fr = parse_frame_range(frames)
    return ds.meta.frame_indices if fr is None else fr.resolve(ds.meta.frame_indices)


def heldout_psnr(ds: Dataset, frame: int, field: RadianceField) -> float:
    """Mean PSNR over the dataset's test cameras (the held-out views), background composited."""
    cams = ds.meta.test_cameras
    vals = [min(psnr(field.render_camera(c), composite(ds.load_image(frame, c), ds.meta.background)), PSNR_CAP) for c in cams]
    return float(np.mean(vals)) if vals else float("nan")


def train_sequence(
    req: TrainRequest, config: TrainConfig, events: Events | None = None, stop_after: int | None = None
) -> dict[str, Any]:
    """Train ``req.data`` into the grid sequence ``req.out`` on ``req.threads`` torch threads; returns the
    ``train.json`` summary."""
    if req.threads is not None:
        check_threads(req.threads)
    with torch_threads(req.threads):
        return _train_sequence(req, config, events, stop_after)


def check_request(req: TrainRequest, meta: DatasetMeta, config: TrainConfig, device_type: str, emit: Events,
                  check_memory: bool = True) -> None:  # fmt: skip
    """What both trainers refuse before any work: an output that ``--force`` may not replace (after the
    training was too late), a dataset without train and test cameras, and (``check_memory``) a CPU run
    that cannot fit — a note when it needs more than is free now."""
    SequenceWriter.check_destination(Path(req.out), req.force)
    if not meta.test_cameras or not meta.train_cameras:
        raise RerfUsageError(f"{req.data}: needs both train and test cameras")
    if check_memory:
        note = check_run(meta, config, device_type)
        if note is not None:
            emit("note", {"text": note})


def _train_sequence(req: TrainRequest, config: TrainConfig, events: Events | None, stop_after: int | None) -> dict[str, Any]:
    emit = events or (lambda kind, info: None)
    ds = open_dataset(req.data)
    frames = _frames(ds, req.frames)
    device = resolve_device(req.device)
    out = Path(req.out)
    check_request(req, ds.meta, config, device.type, emit)
    meta_ds = ds.meta
    geometry = GridGeometry.for_resolution(meta_ds.xyz_min, meta_ds.xyz_max, config.resolution)
    identity = {
        "dataset": dataset_fingerprint(Path(req.data) / "transforms.json"),
        "frames": [frames.start, frames.stop],
        "config": config.identity_json(),
        "device": device.type,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    ckdir = checkpoint_dir(out)
    if ckdir.exists() and req.resume:
        ckpt = Checkpoint.open(ckdir, identity)
    elif ckdir.exists() and not req.force:
        raise RerfUsageError(
            f"an interrupted run left a checkpoint at {ckdir}; use --resume to continue it or --force to start over"
        )
    else:
        ckpt = Checkpoint.create(ckdir, identity)

    mlp_config = MLPConfig(config.feature_channels, config.viewbase_pe, config.mlp_width, 3)
    settings = RenderSettings(meta_ds.background, STEP_RATIO, config.shading)
    background = torch.tensor(meta_ds.background, dtype=torch.float32, device=device)
    shift = config.density_shift
    done = ckpt.done
    emit("start", {"frames": [frames.start, frames.stop], "resumed": len(done), "grid_shape": list(geometry.shape),
                   "device": str(device)})  # fmt: skip
    mlp: ColorMLP | None = None
    prev: GridFrame | None = None
    prev_motion: np.ndarray | None = None
    prev_hull: np.ndarray | None = None
    if done:
        mlp = ColorMLP.from_arrays(mlp_config, ckpt.load_decoder(), str(ckpt.root / "decoder.npz")).to(device).eval()
        prev, prev_motion = ckpt.load_last()
    field: RadianceField | None = None
    wall = time.perf_counter()
    for t in frames:
        if t in done:
            continue
        if stop_after is not None and len(ckpt.done) >= stop_after:
            raise Interrupted(f"stopped after {stop_after} frames")
        start, cpu_start = time.perf_counter(), time.process_time()
        cams = meta_ds.train_cameras
        images = load_frame_images(ds, t, cams)
        rays = frame_rays(cams, images, meta_ds.background, t, device)
        hull = visual_hull(geometry, cams, images)
        if prev is not None and prev_hull is None:  # resumed: frame t-1's hull, as an uninterrupted run has it
            prev_hull = visual_hull(geometry, cams, load_frame_images(ds, t - 1, cams))
        seed = config.seed + t

        def progress(i: int, n: int, stats: dict[str, float], t: int = t) -> None:
            emit("iter", {"frame": t, "i": i, "n": n, **stats})

        record: dict[str, Any] = {"frame": t}
        if prev is None:
            key = train_keyframe(rays, hull, geometry, background, config, seed, device, progress)
            mlp = key.mlp
            ckpt.save_decoder(mlp.to_arrays())
            full = GridFrame(density=key.density, features=key.features)
            stored: Any = full
            motion = np.zeros((3, *[-(-n // BLOCK) for n in geometry.shape]), np.float32)
            record.update(kind="key", iterations=key.iterations, loss=key.final_loss, residual_zero_fraction=None)
            context = FieldContext(mlp, geometry, shift, background, config.shading)
            ckpt.state["reference_silhouette"] = fit_errors(full, rays, context)[1]
            record["silhouette_error"] = round(ckpt.state["reference_silhouette"], 6)
        else:
            assert mlp is not None and prev_motion is not None
            context = FieldContext(mlp, geometry, shift, background, config.shading)
            res = train_residual_frame(prev, prev_motion, rays, hull, context, config, seed,
                                       progress, reference_silhouette=ckpt.state.get("reference_silhouette"),
                                       reference_fit=ckpt.state.get("reference_fit"), prev_hull=prev_hull)  # fmt: skip
            full, stored, motion = res.full, res.frame, res.motion
            kind = "refresh" if res.refreshed else "residual"
            if not res.refreshed and ckpt.state.get("reference_fit") is None:
                # The first residual frame is the yardstick for the whole sequence: re-basing it after a
                # refresh let a bad frame right after one become the reference (crane frame 17: -7 dB).
                ckpt.state["reference_fit"] = res.fit_mse
            zeros = None if res.refreshed else res.zero_fraction
            record.update(kind=kind, loss=res.final_loss, residual_zero_fraction=zeros,
                          motion_seconds=round(res.motion_seconds, 3), residual_seconds=round(res.residual_seconds, 3),
                          motion_mean_voxels=float(np.abs(motion).mean()),
                          silhouette_error=round(res.silhouette_error, 6), fit_mse=res.fit_mse)  # fmt: skip
        train_seconds = time.perf_counter() - start
        cpu_seconds = time.process_time() - cpu_start
        if field is None:
            assert mlp is not None
            field = RadianceField(mlp, geometry, shift, settings, device)
        field.set_grids(full.density, full.features)
        record["test_psnr"] = round(heldout_psnr(ds, t, field), 3)
        record["seconds"] = round(train_seconds, 3)  # wall clock, training only (not the evaluation)
        record["cpu_seconds"] = round(cpu_seconds, 3)  # all threads; differs from wall on a shared machine
        ckpt.commit_frame(t, stored, full, motion, record)
        emit("frame", record)
        prev, prev_motion, prev_hull = full, motion, hull
        del images, rays  # not alive while the next frame's are built (peak memory)

    assert mlp is not None
    log = ckpt.state["log"]
    summary = train_summary(req, config, geometry, log, time.perf_counter() - wall, torch.get_num_threads())
    meta = SequenceMeta(
        num_frames=len(frames), fps=meta_ds.fps, grid_shape=geometry.shape, feature_channels=config.feature_channels,
        xyz_min=geometry.xyz_min, xyz_max=geometry.xyz_max, density_shift=shift, motion_block=BLOCK,
        first_frame=frames.start,
        keyframes=tuple(r["frame"] for r in log if r["kind"] == "refresh"),
        extra={"mlp": mlp_config.to_json(), "render": settings.to_json(),
               "trainer": {"seed": config.seed, "config": config.to_json()}},
    )  # fmt: skip
    with SequenceWriter(out, meta, force=req.force, decoder=ckpt.load_decoder()) as w:
        for t in frames:
            w.write_frame(t, ckpt.load_frame(t))
        w.write_file(TRAIN_JSON, (json.dumps(summary, indent=2, allow_nan=False) + "\n").encode())
        w.write_file(TRAIN_LOG, "".join(json.dumps(r, allow_nan=False) + "\n" for r in log).encode())
    ckpt.remove()
    emit("done", summary)
    return summary


def train_summary(
    req: TrainRequest, config: TrainConfig, geometry: GridGeometry, log: list[dict[str, Any]], seconds: float,
    threads: int,
) -> dict[str, Any]:  # fmt: skip
    """The ``train.json`` summary from the training log (the GOF-parallel trainer extends it); ``threads``:
    torch's intra-op thread count the frames were trained with (results depend on it in the last bits)."""
    res = [r for r in log if r["kind"] == "residual"]
    later = [r for r in log if r["kind"] != "key"]
    key = [r for r in log if r["kind"] == "key"]
    key_psnr = key[0]["test_psnr"] if key else None
    return {
        "dataset": str(req.data),
        "output": str(req.out),
        "frames": len(log),
        "grid_shape": list(geometry.shape),
        "seed": config.seed,
        "config": config.to_json(),
        "device": req.device,
        "torch": torch.__version__,
        "threads": threads,
        "keyframe_test_psnr": key_psnr,
        "keyframe_seconds": key[0]["seconds"] if key else None,
        "residual_test_psnr_min": min((r["test_psnr"] for r in later), default=None),
        "residual_test_psnr_mean": float(np.mean([r["test_psnr"] for r in later])) if later else None,
        "residual_seconds_median": float(np.median([r["seconds"] for r in later])) if later else None,
        "refreshed_frames": [r["frame"] for r in later if r["kind"] == "refresh"],
        "residual_zero_fraction_min": min((r["residual_zero_fraction"] for r in res), default=None),
        "seconds_this_session": round(seconds, 3),
    }
