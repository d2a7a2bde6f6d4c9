"""GOF-parallel training (``rerf train --gof N``): frame A first, then every GOF on its own.

The serial trainer (``driver.train_sequence``) is one chain: frame t starts from frame
t-1, so a 4000-frame capture is 4000 frames in a row. Here the chain is cut into GOFs:

1. **Frame A** (the first frame): keyframe + the global colour MLP, exactly as the serial
   trainer fits it (``train_keyframe``, seed ``seed + A``).
2. **Every GOF** ``[s, e)`` is then an independent unit of work: its first frame is fitted as
   a keyframe with the MLP frozen, starting from frame A's grids (a fixed choice, so the
   result never depends on which GOFs happen to be finished: density outside frame s's
   visual hull is emptied first, then the whole grid is optimised exactly as a refresh is:
   MLP frozen, no L1, the keyframe's learning rate, ``iters_refresh`` iterations — a warm
   start needs fewer than a keyframe from nothing, and each GOF pays it once, so it is the
   price of the parallelism); its residual frames follow in order as in the serial trainer,
   their refresh yardsticks taken from their own GOF. GOF 0's first frame is frame A.
   Frame t always uses seed ``seed + t``.

Each GOF is written by the function that fitted it into ``<checkpoint>/gofs/<start>/``,
atomically (a temporary folder, then ``os.replace``), with ``manifest.json`` listing the
SHA-256 of each frame file, the run's identity hash and the frames' log records; the
driver commits it to ``state.json`` (the manifest's SHA-256). ``--resume`` keeps every GOF
whose manifest checks out and re-does none of them. The same functions run in-process
(serial) or as Ray tasks; with the same GOF layout and torch thread count per GOF the
output is bit-identical on CPU. The output lists every GOF start after frame A (and, as the
serial trainer does, every refreshed frame) in ``"keyframes"`` (DESIGN.md decision 14), so the
encoder starts a GOF there.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rerf_codec.datasets import open_dataset
from rerf_codec.errors import RerfError, RerfUsageError
from rerf_codec.field import (
    STEP_RATIO,
    ColorMLP,
    GridGeometry,
    MLPConfig,
    RadianceField,
    RenderSettings,
    resolve_device,
)
from rerf_codec.framerange import parse_frame_range
from rerf_codec.grids import GridFrame, SequenceMeta, TrainerFrame
from rerf_codec.gridseq import SequenceWriter
from rerf_codec.jsonfile import loads_strict, read_bounded
from rerf_codec.train.checkpoint import checkpoint_dir, dataset_fingerprint
from rerf_codec.train.config import TrainConfig
from rerf_codec.train.context import FieldContext
from rerf_codec.train.data import frame_rays, load_frame_images, visual_hull
from rerf_codec.train.driver import (
    TRAIN_JSON,
    TRAIN_LOG,
    Events,
    Interrupted,
    TrainRequest,
    check_request,
    check_threads,
    heldout_psnr,
    torch_threads,
    train_summary,
)
from rerf_codec.train.keyframe import density_floor, train_keyframe
from rerf_codec.train.residual import BLOCK, fit_errors, fit_residual, train_residual_frame

STATE_VERSION = 1
MODE = "gofs"

Runner = Callable[[Callable[[Any], Any], list[Any], Callable[[Any], str]], Iterable[Any]]
"""``runner(fn, jobs, describe)``: ``fn(job)`` for every job, results in any order (Ray: ``rerf_codec.cluster``)."""


def in_process(fn: Callable[[Any], Any], jobs: list[Any], describe: Callable[[Any], str]) -> Iterator[Any]:
    """The serial runner: each job here, in order."""
    for job in jobs:
        yield fn(job)


def gof_layout(frames: range, gof: int) -> list[range]:
    """``frames`` cut into GOFs of ``gof`` frames (the last may be shorter)."""
    if gof < 1:
        raise RerfUsageError(f"must be at least 1, got {gof}", param="gof")
    return [range(s, min(s + gof, frames.stop)) for s in range(frames.start, frames.stop, gof)]


# --------------------------------------------------------------------------- jobs (what a task receives)


@dataclass(frozen=True)
class FirstFrameJob:
    data: str
    ckdir: str
    frame: int
    config: TrainConfig
    device: str
    threads: int

    def describe(self) -> str:
        return f"frame {self.frame} (keyframe + MLP)"


@dataclass(frozen=True)
class GofJob:
    data: str
    ckdir: str
    number: int
    start: int
    stop: int
    first_frame: int
    """Frame A: its grids start every GOF's keyframe; its MLP is everyone's."""
    config: TrainConfig
    device: str
    threads: int
    identity: str
    """Hash of the run's settings, written into the GOF's manifest."""

    def describe(self) -> str:
        return f"GOF {self.number} (frames {self.start}:{self.stop})"


@dataclass
class GofResult:
    number: int
    start: int
    stop: int
    records: list[dict[str, Any]]
    seconds: float
    worker: str
    manifest_sha256: str
    reused: bool = False
    """True when the GOF was found finished (``--resume``), not trained."""


def _worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# --------------------------------------------------------------------------- files


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    np.savez(path, **arrays)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _frame_arrays(frame: GridFrame | TrainerFrame) -> dict[str, np.ndarray]:
    if isinstance(frame, GridFrame):
        return {"density": frame.density, "features": frame.features}
    return {"motion": frame.motion, "residual_density": frame.residual_density,
            "residual_features": frame.residual_features}  # fmt: skip


def _frame_from(arrays: dict[str, np.ndarray]) -> GridFrame | TrainerFrame:
    if "density" in arrays:
        return GridFrame(density=arrays["density"], features=arrays["features"])
    return TrainerFrame(motion=arrays["motion"], residual_density=arrays["residual_density"],
                        residual_features=arrays["residual_features"])  # fmt: skip


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _commit_dir(tmp: Path, final: Path) -> None:
    """``tmp`` becomes ``final`` atomically; if a twin (a retried task) got there first, keep it."""
    try:
        os.replace(tmp, final)
    except OSError:
        if not final.is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def _write_manifest(folder: Path, content: dict[str, Any]) -> None:
    files = sorted(p.name for p in folder.iterdir() if p.suffix == ".npz")
    content = {**content, "files": {name: _sha256(folder / name) for name in files}}
    (folder / "manifest.json").write_text(json.dumps(content, indent=1, allow_nan=False) + "\n")


def read_manifest(folder: Path, identity: str) -> dict[str, Any] | None:
    """A finished unit's manifest if its files are all there and unchanged, else None."""
    path = folder / "manifest.json"
    if not path.is_file():
        return None
    try:
        man = loads_strict(read_bounded(path, 16 * 2**20, ""), str(path))
    except RerfError:
        return None
    if not isinstance(man, dict) or man.get("identity") != identity or not isinstance(man.get("files"), dict):
        return None
    for name, digest in man["files"].items():
        f = folder / str(name)
        if not f.is_file() or _sha256(f) != digest:
            return None
    return man


# --------------------------------------------------------------------------- the per-unit functions


@dataclass
class _FrameContext:
    """Dataset, geometry and rendering settings shared by the frames of one task."""

    ds: Any
    config: TrainConfig
    device: torch.device
    geometry: GridGeometry = field(init=False)
    settings: RenderSettings = field(init=False)
    background: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        m = self.ds.meta
        self.geometry = GridGeometry.for_resolution(m.xyz_min, m.xyz_max, self.config.resolution)
        self.settings = RenderSettings(m.background, STEP_RATIO, self.config.shading)
        self.background = torch.tensor(m.background, dtype=torch.float32, device=self.device)

    def frame_inputs(self, t: int) -> tuple[Any, np.ndarray]:
        cams = self.ds.meta.train_cameras
        images = load_frame_images(self.ds, t, cams)
        return frame_rays(cams, images, self.ds.meta.background, t, self.device), visual_hull(self.geometry, cams, images)

    def field(self, mlp: ColorMLP) -> FieldContext:
        """The trainer's frozen field context for ``mlp`` (geometry, shift, background, shading of this run)."""
        return FieldContext(mlp, self.geometry, self.config.density_shift, self.background, self.config.shading)

    def test_psnr(self, mlp: ColorMLP, t: int, full: GridFrame) -> float:
        fld = RadianceField(mlp, self.geometry, self.config.density_shift, self.settings, self.device)
        fld.set_grids(full.density, full.features)
        return round(heldout_psnr(self.ds, t, fld), 3)


def train_first_frame(job: FirstFrameJob) -> dict[str, Any]:
    """Frame A: keyframe + global MLP, into ``<checkpoint>/first/`` (atomically). Returns its log record."""
    with torch_threads(job.threads):
        t0, c0 = time.perf_counter(), time.process_time()
        ctx = _FrameContext(open_dataset(job.data), job.config, resolve_device(job.device))
        rays, hull = ctx.frame_inputs(job.frame)
        key = train_keyframe(rays, hull, ctx.geometry, ctx.background, job.config, job.config.seed + job.frame,
                             ctx.device)  # fmt: skip
        full = GridFrame(density=key.density, features=key.features)
        silhouette = fit_errors(full, rays, ctx.field(key.mlp))[1]
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        record = {"frame": job.frame, "kind": "key", "iterations": key.iterations, "loss": key.final_loss,
                  "residual_zero_fraction": None, "silhouette_error": round(silhouette, 6),
                  "test_psnr": ctx.test_psnr(key.mlp, job.frame, full), "seconds": round(seconds, 3),
                  "cpu_seconds": round(cpu, 3), "worker": _worker()}  # fmt: skip
    root = Path(job.ckdir)
    tmp = root / f".first.tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    _save_npz(tmp / "decoder.npz", key.mlp.to_arrays())
    _save_npz(tmp / f"{job.frame:06d}.npz", _frame_arrays(full))
    _write_manifest(tmp, {"identity": "first", "record": record, "silhouette": silhouette})
    _commit_dir(tmp, root / "first")
    return record


def train_gof(job: GofJob) -> GofResult:
    """One GOF: its keyframe (frozen MLP, from frame A's grids), then its residual frames in
    order; written to ``<checkpoint>/gofs/<start>/`` atomically with its manifest. Errors name the GOF."""
    try:
        return _train_gof(job)
    except RerfError as exc:
        raise type(exc)(f"{job.describe()}: {exc}") from None


def _train_gof(job: GofJob) -> GofResult:
    t_start = time.perf_counter()
    root = Path(job.ckdir)
    cfg = job.config
    with torch_threads(job.threads):
        ctx = _FrameContext(open_dataset(job.data), cfg, resolve_device(job.device))
        first = root / "first"
        mlp_config = MLPConfig(cfg.feature_channels, cfg.viewbase_pe, cfg.mlp_width, 3)
        mlp = ColorMLP.from_arrays(mlp_config, _load_npz(first / "decoder.npz"), str(first / "decoder.npz"))
        mlp = mlp.to(ctx.device).eval()
        frame_a = _frame_from(_load_npz(first / f"{job.first_frame:06d}.npz"))
        assert isinstance(frame_a, GridFrame)
        stored: dict[int, GridFrame | TrainerFrame] = {}
        records: list[dict[str, Any]] = []
        prev: GridFrame | None = None
        field_ctx = ctx.field(mlp)
        motion = np.zeros((3, *[-(-n // BLOCK) for n in ctx.geometry.shape]), np.float32)
        prev_hull: np.ndarray | None = None
        ref_silhouette: float | None = None
        ref_fit: float | None = None
        for t in range(job.start, job.stop):
            t0, c0 = time.perf_counter(), time.process_time()
            rays = None  # the previous frame's are not alive while this frame's are built (peak memory)
            rays, hull = ctx.frame_inputs(t)
            record: dict[str, Any] = {"frame": t}
            if prev is None and t == job.first_frame:  # GOF 0 starts with frame A itself
                full = frame_a
                stored[t] = frame_a
                ref_silhouette = fit_errors(full, rays, field_ctx)[1]
                prev, prev_hull = full, hull
                continue
            if prev is None:
                full, loss = _fit_gof_keyframe(frame_a, rays, hull, mlp, ctx, cfg.seed + t)
                stored[t] = full
                ref_silhouette = fit_errors(full, rays, field_ctx)[1]
                record.update(kind="gof-key", iterations=max(1, cfg.iters_refresh), loss=loss, residual_zero_fraction=None,
                              silhouette_error=round(ref_silhouette, 6))  # fmt: skip
            else:
                res = train_residual_frame(prev, motion, rays, hull, field_ctx, cfg, cfg.seed + t, None,
                                           reference_silhouette=ref_silhouette, reference_fit=ref_fit,
                                           prev_hull=prev_hull)  # fmt: skip
                full, stored[t], motion = res.full, res.frame, res.motion
                if not res.refreshed and ref_fit is None:
                    ref_fit = res.fit_mse  # the GOF's first residual frame is its colour yardstick
                record.update(kind="refresh" if res.refreshed else "residual", loss=res.final_loss,
                              residual_zero_fraction=None if res.refreshed else res.zero_fraction,
                              motion_seconds=round(res.motion_seconds, 3),
                              residual_seconds=round(res.residual_seconds, 3),
                              motion_mean_voxels=float(np.abs(motion).mean()),
                              silhouette_error=round(res.silhouette_error, 6), fit_mse=res.fit_mse)  # fmt: skip
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            record["test_psnr"] = ctx.test_psnr(mlp, t, full)
            record["seconds"] = round(seconds, 3)
            record["cpu_seconds"] = round(cpu, 3)
            records.append(record)
            prev, prev_hull = full, hull
    tmp = root / "gofs" / f".{job.start:06d}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir(parents=True)
    for t, fr in stored.items():
        if t != job.first_frame:  # frame A lives in first/
            _save_npz(tmp / f"{t:06d}.npz", _frame_arrays(fr))
    worker = _worker()
    _write_manifest(tmp, {"identity": job.identity, "gof": job.number, "frames": [job.start, job.stop],
                          "log": records, "worker": worker})  # fmt: skip
    final = root / "gofs" / f"{job.start:06d}"
    _commit_dir(tmp, final)
    return GofResult(job.number, job.start, job.stop, records, time.perf_counter() - t_start, worker,
                     _sha256(final / "manifest.json"))  # fmt: skip


def _fit_gof_keyframe(
    frame_a: GridFrame, rays: Any, hull: np.ndarray, mlp: ColorMLP, ctx: _FrameContext, seed: int
) -> tuple[GridFrame, float]:
    """A GOF's first frame: frame A's grids, emptied outside this frame's visual hull, then the
    whole grid optimised with the MLP frozen (as a refresh, ``iters_refresh`` iterations; at
    least one)."""
    cfg = ctx.config
    floor = np.float32(density_floor(cfg.density_shift))
    init = GridFrame(density=np.where(hull, frame_a.density, floor).astype(np.float32), features=frame_a.features.copy())
    fit = replace(cfg, l1=0.0, lr_residual=cfg.lr_grid, iters_residual=max(1, cfg.iters_refresh))
    gen = torch.Generator(device="cpu").manual_seed(seed)
    hull_t = torch.from_numpy(hull).to(ctx.device)
    r_d, r_f, mse = fit_residual(init, rays, hull_t, ctx.field(mlp), fit, gen)
    density = np.where(hull, init.density + r_d, floor).astype(np.float32)  # outside the hull: nothing was seen
    return GridFrame(density=density, features=(init.features + r_f).astype(np.float32)), float(mse)


# --------------------------------------------------------------------------- the driver


def _identity_hash(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


class _State:
    """``<checkpoint>/state.json``: the run's identity and the committed GOFs (the manifest entries)."""

    def __init__(self, root: Path, identity: dict[str, Any], resume: bool) -> None:
        self.root = root
        self.path = root / "state.json"
        self.identity = identity
        if resume and self.path.is_file():
            st = loads_strict(read_bounded(self.path, 64 * 2**20, ""), str(self.path))
            if not isinstance(st, dict) or st.get("version") != STATE_VERSION or st.get("mode") != MODE:
                raise RerfUsageError(f"{self.path}: not a GOF-parallel checkpoint this version of rerf can resume")
            if st.get("identity") != identity:
                old = st.get("identity", {})
                diff = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
                raise RerfUsageError(
                    f"--resume: the checkpoint at {root} was made with different settings ({', '.join(diff)}); "
                    "rerun with the same arguments, or use --force to start over"
                )
            self.state = st
        else:
            if root.exists():
                shutil.rmtree(root)
            (root / "gofs").mkdir(parents=True)
            self.state = {"version": STATE_VERSION, "mode": MODE, "identity": identity, "gofs": {}}
            self.write()

    def write(self) -> None:
        tmp = self.path.with_name(".state.json.tmp")
        tmp.write_text(json.dumps(self.state, indent=1, allow_nan=False) + "\n")
        os.replace(tmp, self.path)

    def commit(self, start: int, manifest_sha256: str) -> None:
        self.state["gofs"][str(start)] = manifest_sha256
        self.write()


def train_sequence_gofs(
    req: TrainRequest,
    config: TrainConfig,
    gof: int,
    *,
    runner: Runner | None = None,
    threads: int | None = None,
    workers: int = 1,
    events: Events | None = None,
    stop_after_gofs: int | None = None,
) -> dict[str, Any]:
    """Train ``req.data`` into ``req.out`` GOF by GOF (see the module docstring); ``runner``
    runs the units (default: here, in order); ``threads``: torch threads per unit (default
    ``req.threads``, or the process's count when that is None). Returns the ``train.json`` summary."""
    emit = events or (lambda kind, info: None)
    run = runner or in_process
    if threads is None:
        threads = req.threads if req.threads is not None else torch.get_num_threads()
    check_threads(threads)
    ds = open_dataset(req.data)
    wanted = parse_frame_range(req.frames)
    frames = ds.meta.frame_indices if wanted is None else wanted.resolve(ds.meta.frame_indices)
    device = resolve_device(req.device)
    out = Path(req.out)
    # the memory only in this process: Ray tasks may run on other machines
    check_request(req, ds.meta, config, device.type, emit, check_memory=runner is None)
    layout = gof_layout(frames, gof)
    identity = {
        "dataset": dataset_fingerprint(Path(req.data) / "transforms.json"),
        "frames": [frames.start, frames.stop],
        "gof": gof,
        "threads_per_gof": threads,
        "config": config.identity_json(),
        "device": device.type,
        "torch": torch.__version__,
    }
    ckdir = checkpoint_dir(out)
    if ckdir.exists() and not req.resume and not req.force:
        raise RerfUsageError(
            f"an interrupted run left a checkpoint at {ckdir}; use --resume to continue it or --force to start over"
        )
    state = _State(ckdir, identity, req.resume)
    ident = _identity_hash(identity)
    wall = time.perf_counter()
    data, dev = str(Path(req.data).resolve()), req.device
    root = str(ckdir.resolve())

    first_job = FirstFrameJob(data, root, frames.start, config, dev, threads)
    first_man = read_manifest(ckdir / "first", "first")
    done: dict[int, GofResult] = {}
    for number, r in enumerate(layout):
        man = read_manifest(ckdir / "gofs" / f"{r.start:06d}", ident) if first_man is not None else None
        if man is not None:
            done[number] = GofResult(number, r.start, r.stop, man["log"], 0.0, str(man.get("worker", "")),
                                     _sha256(ckdir / "gofs" / f"{r.start:06d}" / "manifest.json"), reused=True)  # fmt: skip
            if state.state["gofs"].get(str(r.start)) != done[number].manifest_sha256:
                state.commit(r.start, done[number].manifest_sha256)
    jobs = [
        GofJob(data, root, n, r.start, r.stop, frames.start, config, dev, threads, ident)
        for n, r in enumerate(layout) if n not in done
    ]  # fmt: skip
    emit("start", {"frames": [frames.start, frames.stop], "resumed": sum(len(range(g.start, g.stop)) for g in
                   done.values()), "grid_shape": list(GridGeometry.for_resolution(ds.meta.xyz_min, ds.meta.xyz_max,
                   config.resolution).shape), "device": str(device), "gofs": len(layout), "gofs_done": len(done)})  # fmt: skip
    if first_man is None:
        (first_record,) = list(run(train_first_frame, [first_job], lambda j: j.describe()))
        emit("frame", first_record)
    else:
        first_record = read_manifest(ckdir / "first", "first")["record"]  # type: ignore[index]
    for finished, result in enumerate(run(train_gof, jobs, lambda j: j.describe()), 1):
        state.commit(result.start, result.manifest_sha256)
        done[result.number] = result
        for rec in result.records:
            emit("frame", rec)
        emit("gof", {"result": result, "done": len(done), "total": len(layout)})
        if stop_after_gofs is not None and finished >= stop_after_gofs and len(done) < len(layout):
            raise Interrupted(f"stopped after {finished} GOF(s)")
    return _assemble(req, config, frames, layout, ckdir, first_record, done, gof, threads, workers,
                     time.perf_counter() - wall, emit)  # fmt: skip


def _assemble(
    req: TrainRequest, config: TrainConfig, frames: range, layout: list[range], ckdir: Path,
    first_record: dict[str, Any], done: dict[int, GofResult], gof: int, threads: int, workers: int, seconds: float,
    emit: Events,
) -> dict[str, Any]:  # fmt: skip
    ds = open_dataset(req.data)
    m = ds.meta
    geometry = GridGeometry.for_resolution(m.xyz_min, m.xyz_max, config.resolution)
    mlp_config = MLPConfig(config.feature_channels, config.viewbase_pe, config.mlp_width, 3)
    settings = RenderSettings(m.background, STEP_RATIO, config.shading)
    log = [first_record] + [rec for n in range(len(layout)) for rec in done[n].records]
    log = [{k: v for k, v in r.items() if k != "worker"} for r in log]
    meta = SequenceMeta(
        num_frames=len(frames), fps=m.fps, grid_shape=geometry.shape, feature_channels=config.feature_channels,
        xyz_min=geometry.xyz_min, xyz_max=geometry.xyz_max, density_shift=config.density_shift, motion_block=BLOCK,
        first_frame=frames.start,
        keyframes=tuple(sorted({r.start for r in layout[1:]} | {r["frame"] for r in log if r["kind"] == "refresh"})),
        extra={"mlp": mlp_config.to_json(), "render": settings.to_json(),
               "trainer": {"seed": config.seed, "config": config.to_json(), "gof": gof,
                           "threads_per_gof": threads}},
    )  # fmt: skip
    first = ckdir / "first"
    with SequenceWriter(Path(req.out), meta, force=req.force, decoder=_load_npz(first / "decoder.npz")) as w:
        for t in frames:
            folder = first if t == frames.start else ckdir / "gofs" / f"{_gof_of(layout, t).start:06d}"
            w.write_frame(t, _frame_from(_load_npz(folder / f"{t:06d}.npz")))
        summary = _summary(req, config, geometry, log, seconds, gof, threads, workers, layout, done)
        w.write_file(TRAIN_JSON, (json.dumps(summary, indent=2, allow_nan=False) + "\n").encode())
        w.write_file(TRAIN_LOG, "".join(json.dumps(r, allow_nan=False) + "\n" for r in log).encode())
    shutil.rmtree(ckdir, ignore_errors=True)
    emit("done", summary)
    return summary


def _gof_of(layout: list[range], t: int) -> range:
    return next(r for r in layout if t in r)


def _summary(
    req: TrainRequest, config: TrainConfig, geometry: GridGeometry, log: list[dict[str, Any]], seconds: float,
    gof: int, threads: int, workers: int, layout: list[range], done: dict[int, GofResult],
) -> dict[str, Any]:  # fmt: skip
    res = [r for r in log if r["kind"] == "residual"]
    summary = train_summary(req, config, geometry, log, seconds, threads)
    seconds_this_session = summary.pop("seconds_this_session")
    summary.update({
        "gof": gof,
        "threads_per_gof": threads,
        "workers": workers,
        "gof_keyframe_test_psnr_min": min((r["test_psnr"] for r in log if r["kind"] == "gof-key"), default=None),
        # GOF keyframes are refits, not residual frames: the median is over residual frames only
        "residual_seconds_median": float(np.median([r["seconds"] for r in res])) if res else None,
        "gofs": [
            {"gof": n, "frames": [layout[n].start, layout[n].stop], "seconds": round(done[n].seconds, 3),
             "worker": done[n].worker, "resumed": done[n].reused}
            for n in range(len(layout))
        ],
        "seconds_this_session": seconds_this_session,
    })  # fmt: skip
    return summary
