"""Sequence encoder: GOF chunking, per-GOF parameters, closed-loop frame coding.

The encoder predicts from its *own reconstruction*, produced by the decoder's
functions (``reconstruct_intra``, ``reconstruct_residual``), never from the input
(DESIGN.md decision 2), so its drift is exactly the decoder's. A GOF is an intra frame
followed by residual frames (motion-compensated from the previous reconstruction); it
ends after ``gof`` frames, or earlier when a frame no longer fits the GOF's lattice, so
that each GOF is a chunk decodable on its own, with its own parameters, index entry and CRC.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

import constriction
import numpy as np

import rerf_codec
from rerf_codec.atomic import atomic_file
from rerf_codec.bitstream import (
    CHANNEL_PARAMS,
    CHUNK_HEAD,
    CODER_RANGE,
    COEFF_MODE_NAMES,
    FOOTER,
    FRAME_TYPE_NAMES,
    GOF_HEAD,
    GOF_REASON_COST,
    GOF_REASON_FIRST,
    GOF_REASON_LATTICE,
    GOF_REASON_LISTED,
    GOF_REASON_MAX_LENGTH,
    GOF_REASON_NAMES,
    GOF_REASON_SEGMENT,
    INDEX_ENTRY,
    TRANSFORM_DCT8_INT,
    ChannelParams,
    FrameRecord,
    GofChunk,
    SequenceHeader,
    StreamWriter,
    encode_gof_payload,
)
from rerf_codec.codec.decoder import decode_gof
from rerf_codec.codec.intra import BufferPool, encode_intra
from rerf_codec.codec.motion import MAX_MV, MV_UNIT
from rerf_codec.codec.motion_search import SearchConfig, search_motion
from rerf_codec.codec.occupancy import block_grid_shape, default_threshold, occupancy_mask
from rerf_codec.codec.quant import MAX_QSTEP, QMATRIX_UNIT, DeadZone, default_qmatrix, gof_steps, quality_to_step
from rerf_codec.codec.residual import GofState, encode_residual, initial_state
from rerf_codec.codec.threads import single_blas_thread
from rerf_codec.codec.transform import BLOCK, MAX_SAMPLE
from rerf_codec.errors import RerfError, RerfUsageError
from rerf_codec.grids import GridFrame, SequenceMeta, raw_float32_bytes, update_frame_hash
from rerf_codec.gridseq import frame_path, iter_frames_with_motion, read_decoder, read_meta

MOTION_MODES = ("search", "trainer", "zero")
DEFAULT_QUALITY = 75
DEFAULT_GOF = 20  # the knee of the GOF-length sweep (BENCHMARKS.md, rerf_codec.bench.gof_sweep)
DEFAULT_SEGMENT_GOFS = 5
"""Default segment length in maximum-length GOFs (BENCHMARKS.md, "Scale-out on Ray")."""
LATTICE_HEADROOM_BITS = 4
"""The lattice exponent leaves this many bits above the keyframe's largest value."""


@dataclass(frozen=True)
class EncoderConfig:
    """Every encoder setting that changes the bits; recorded in the stream header."""

    quality: int = DEFAULT_QUALITY
    """1..100, features (and density unless ``density_quality`` is set); higher = better."""
    density_quality: int | None = None
    """1..100 for the density grid; None = ``quality``."""
    gof: int = DEFAULT_GOF
    """Maximum frames per group of frames (the first of each is a keyframe)."""
    gof_fixed: bool = False
    """True: every GOF has ``gof`` frames (unless the lattice or a listed keyframe ends it
    early), as before format 1.2. False: a frame that costs more as a residual frame than as
    a keyframe of a new GOF (a cut) starts one."""
    block_modes: bool = True
    """Residual frames choose inter / skip / intra per block by rate–distortion cost (format
    1.2 block modes); False: every block is inter (1.1 residual frames)."""
    density_step_ratio: float = 0.5
    """Density base step relative to the feature one at equal quality (geometry is more sensitive)."""
    qmatrix_slope_density: float = 0.0
    """Slope of the density quantisation matrix over u+v+w (0 = flat: MSE-optimal for an
    orthonormal transform, and the best measured on the synthetic bench)."""
    qmatrix_slope_features: float = 0.0
    """Slope of the feature quantisation matrix over u+v+w."""
    deadzone_ac: float = 0.3
    """Rounding offset for AC levels (0.5 = plain rounding)."""
    deadzone_dc: float = 0.5
    """Rounding offset for DC levels."""
    deadzone_residual: float = 0.3
    """Rounding offset for all levels of residual frames (their small values are mostly the
    previous frame's quantisation error, not worth re-coding)."""
    residual_zero_threshold: float = 0.0
    """Residual-frame coefficients below this many steps quantise to zero (0 = off)."""
    rdoq_lambda: float = 0.04
    """Rate–distortion-optimised quantisation of keyframes (``codec/rdoq.py``): lambda in
    step² per bit, 0 = off (dead-zone rounding only). Lower than the residual one: a
    keyframe's error propagates through its GOF (BENCHMARKS.md tuning log)."""
    rdoq_lambda_residual: float = 0.15
    """The same for residual frames."""
    coeff_mode: int = 1
    """Coefficient coding mode id (FORMAT.md §9.5): 0 = a table per band (format 1.0),
    1 = tables per band and previous-band context, repeatable within a GOF (format 1.1)."""
    """Residual-frame coefficients below this many steps quantise to zero (0 = off)."""
    occupancy_threshold: float | None = None
    """Raw density above which a block is occupied; None = derived from density_shift."""
    motion: str = "search"
    """Where residual frames get motion: "search" (encoder search, seeded with the trainer's
    motion when the input has it), "trainer" (the input's motion, quantised; search for
    frames stored full), or "zero" (no motion compensation)."""
    search_range: float = 16.0
    """Largest searched motion component, voxels."""
    search_channels: int = 5
    """Channels the motion search compares: density plus the strongest features."""
    target_kbpf: float | None = None
    """Rate control: average kilobytes (1000 B) per frame of the whole file; None = fixed quality."""
    segment_frames: int | None = None
    """Frames per segment, a multiple of ``gof`` (None = ``DEFAULT_SEGMENT_GOFS`` × ``gof``). A
    segment is the unit of parallel encoding: it is coded knowing nothing of the others (its
    first frame starts a GOF; rate control keeps its budget within it), so the bytes depend on
    this setting and never on how many workers ran."""

    def validate(self) -> None:
        if not 1 <= self.quality <= 100:
            raise RerfUsageError(f"must be in 1..100, got {self.quality}", param="quality")
        if self.density_quality is not None and not 1 <= self.density_quality <= 100:
            raise RerfUsageError(f"must be in 1..100, got {self.density_quality}", param="density_quality")
        if not 1 <= self.gof <= 4096:
            raise RerfUsageError(f"must be in 1..4096, got {self.gof}", param="gof")
        if not all(0.0 < v <= 0.5 for v in (self.deadzone_ac, self.deadzone_dc, self.deadzone_residual)):
            raise RerfUsageError("dead-zone offsets must be in (0, 0.5]")
        if self.occupancy_threshold is not None and not math.isfinite(self.occupancy_threshold):
            raise RerfUsageError("occupancy threshold must be finite")
        if self.motion not in MOTION_MODES:
            raise RerfUsageError(f"motion must be one of {', '.join(MOTION_MODES)}, got {self.motion!r}")
        if self.target_kbpf is not None and not (math.isfinite(self.target_kbpf) and self.target_kbpf > 0):
            raise RerfUsageError(f"must be a positive number, got {self.target_kbpf}", param="target_kbpf")
        if self.coeff_mode not in COEFF_MODE_NAMES:
            raise RerfUsageError(f"coefficient mode must be one of {sorted(COEFF_MODE_NAMES)}, got {self.coeff_mode}")
        if not all(0.0 <= v <= 100.0 for v in (self.rdoq_lambda, self.rdoq_lambda_residual)):
            raise RerfUsageError("RDOQ lambdas must be in 0..100")
        if not 0 <= self.search_range <= 1024:
            raise RerfUsageError("search range must be in 0..1024 voxels")
        if self.segment_frames is not None and (
            isinstance(self.segment_frames, bool) or not isinstance(self.segment_frames, int)
            or self.segment_frames < 1 or self.segment_frames % self.gof
        ):
            raise RerfUsageError(
                f"must be a positive multiple of gof ({self.gof}), got {self.segment_frames}", param="segment_frames"
            )

    @property
    def segment_length(self) -> int:
        """Frames per segment (``segment_frames`` resolved)."""
        return self.segment_frames if self.segment_frames is not None else DEFAULT_SEGMENT_GOFS * self.gof

    @property
    def effective_density_quality(self) -> int:
        return self.quality if self.density_quality is None else self.density_quality

    def qmatrix(self) -> np.ndarray:
        return np.stack([default_qmatrix(self.qmatrix_slope_density), default_qmatrix(self.qmatrix_slope_features)])


@dataclass
class FrameReport:
    index: int
    frame_type: str
    bytes: dict[str, int]
    occupied_blocks: int
    ideal_coefficient_bits: float
    seconds: float
    gof_start: str | None = None
    """Why a GOF starts at this frame (``bitstream.GOF_REASON_NAMES``); None inside a GOF."""
    block_modes: dict[str, int] | None = None
    """Blocks per mode of a residual frame with block modes."""

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())


@dataclass
class EncodeReport:
    """What ``encode`` did; ``to_json`` is what ``rerf encode --json`` prints."""

    output: str
    num_frames: int
    file_bytes: int
    header_bytes: int
    container_bytes: int
    seconds: float
    sha256: str | None
    """SHA-256 of the encoder's reconstruction (what ``rerf decode --verify`` checks); None
    when ``encode_sequence`` was asked not to compute it."""
    config: dict[str, Any]
    frames: list[FrameReport] = field(default_factory=list)
    gof_qualities: list[tuple[int, int]] = field(default_factory=list)
    segments: list[dict[str, Any]] = field(default_factory=list)
    """Per segment: number, frames [start, stop), GOFs, bytes on disk, seconds and worker."""
    workers: int = 1
    """Segments coded at once (1: in this process, in order)."""
    raw_float32_bytes: int = 0
    """The same frames uncompressed (float32 density + features): the compression yardstick."""

    @property
    def kb_per_frame(self) -> float:
        return self.file_bytes / max(1, self.num_frames) / 1e3

    @property
    def compression_ratio(self) -> float | None:
        return self.raw_float32_bytes / self.file_bytes if self.file_bytes else None

    def to_json(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "num_frames": self.num_frames,
            "file_bytes": self.file_bytes,
            "bytes_per_frame": self.file_bytes / max(1, self.num_frames),
            "kb_per_frame": self.kb_per_frame,
            "raw_float32_bytes": self.raw_float32_bytes,
            "compression_ratio": self.compression_ratio,
            "header_bytes": self.header_bytes,
            "container_bytes": self.container_bytes,
            "seconds": self.seconds,
            "frames_per_second": self.num_frames / self.seconds if self.seconds > 0 else None,
            "sha256": self.sha256,
            "config": self.config,
            "frames": [
                {**asdict(f), "total_bytes": f.total_bytes} for f in self.frames
            ],
            "workers": self.workers,
            "segments": self.segments,
        }


def sequence_header(meta: SequenceMeta, config: EncoderConfig, tensors: dict[str, np.ndarray] | None) -> SequenceHeader:
    """Build the stream's sequence header from the grid-sequence metadata and config."""
    threshold = (
        config.occupancy_threshold
        if config.occupancy_threshold is not None
        else default_threshold(meta.density_shift)
    )
    encoder_meta = {
        **asdict(config),
        "segment_frames": config.segment_length,
        "occupancy_threshold": threshold,
        "rerf_version": rerf_codec.__version__,
        "constriction_version": _constriction_version(),
    }
    return SequenceHeader(
        num_frames=meta.num_frames,
        first_frame=meta.first_frame,
        fps=float(meta.fps),
        grid_shape=tuple(meta.grid_shape),  # type: ignore[arg-type]
        feature_channels=meta.feature_channels,
        xyz_min=tuple(float(v) for v in meta.xyz_min),  # type: ignore[arg-type]
        xyz_max=tuple(float(v) for v in meta.xyz_max),  # type: ignore[arg-type]
        density_shift=float(meta.density_shift),
        motion_block=meta.motion_block,
        coder_id=CODER_RANGE,
        transform_id=TRANSFORM_DCT8_INT,
        occupancy_threshold=float(threshold),
        gof_size=config.gof,
        qmatrix=config.qmatrix(),
        meta={"sequence": meta.to_json_dict(), "encoder": encoder_meta},
        tensors=dict(tensors or {}),
        coeff_mode=config.coeff_mode,
    )


def _constriction_version() -> str:
    try:
        from importlib.metadata import version

        return version("constriction")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        return getattr(constriction, "__version__", "unknown")


def _exponent_for(max_abs: float) -> int:
    """Lattice exponent: the largest value gets 2**(23 - headroom) units."""
    if not max_abs > 0:
        return 16
    e = math.floor(math.log2((2 ** (23 - LATTICE_HEADROOM_BITS)) / max_abs))
    return int(min(64, max(-64, e)))


def gof_parameters(
    frame: GridFrame, header: SequenceHeader, config: EncoderConfig, mask: np.ndarray
) -> tuple[ChannelParams, ...]:
    """Per-channel lattice exponent, fill value and quantiser scale for a GOF (encoder side).

    The base step is relative to the value range of the channel group over occupied
    voxels, so a given quality means the same relative fidelity for any data scale.
    """
    dens = frame.density
    feats = frame.features
    occ_voxels = _voxel_mask(mask, dens.shape)
    any_occ = bool(occ_voxels.any())
    any_empty = not bool(occ_voxels.all())

    def group_range(values: list[np.ndarray]) -> float:
        if any_occ:
            lo = min(float(v[occ_voxels].min()) for v in values)
            hi = max(float(v[occ_voxels].max()) for v in values)
        else:
            lo = min(float(v.min()) for v in values)
            hi = max(float(v.max()) for v in values)
        r = hi - lo
        if r > 0:
            return r
        return max(abs(hi), abs(lo)) or 1.0  # constant group: relative to its magnitude

    r_dens = group_range([dens])
    r_feat = group_range([feats[c] for c in range(feats.shape[0])])
    step_d = quality_to_step(config.effective_density_quality) * r_dens * config.density_step_ratio
    step_f = quality_to_step(config.quality) * r_feat
    # Largest qscale whose steps (qmatrix * qscale + 8) >> 4 stay within the format's limit.
    qscale_cap = [int((MAX_QSTEP * QMATRIX_UNIT - 8) // int(header.qmatrix[g].max())) for g in (0, 1)]
    params = []
    for c in range(header.num_channels):
        v = dens if c == 0 else feats[c - 1]
        e = _exponent_for(_peak(v))
        scale = 2.0**e
        fill = float(v[~occ_voxels].mean()) if any_empty else 0.0
        fill_int = int(np.clip(round(fill * scale), -MAX_SAMPLE, MAX_SAMPLE))
        step = step_d if c == 0 else step_f
        qscale = int(np.clip(round(step * scale), 1, qscale_cap[0 if c == 0 else 1]))
        params.append(ChannelParams(e, fill_int, qscale))
    return tuple(params)


def _voxel_mask(mask: np.ndarray, grid_shape: tuple[int, ...]) -> np.ndarray:
    """Expand a block mask to voxels (cropped to the grid)."""
    full = np.repeat(np.repeat(np.repeat(mask, BLOCK, 0), BLOCK, 1), BLOCK, 2)
    return full[: grid_shape[0], : grid_shape[1], : grid_shape[2]]


ProgressFn = Callable[[FrameReport], None]


InputFrame = tuple[int, GridFrame] | tuple[int, GridFrame, np.ndarray | None]


def encode_frames(
    meta: SequenceMeta,
    frames: Iterable[InputFrame],
    out: BinaryIO,
    config: EncoderConfig,
    *,
    tensors: dict[str, np.ndarray] | None = None,
    progress: ProgressFn | None = None,
    output_name: str = "<stream>",
) -> EncodeReport:
    """Encode full frames (in order) into ``out``; the library entry point.

    Each item is ``(index, frame)`` or ``(index, frame, motion)`` where ``motion`` is the
    trainer's backward block motion into the previous frame (voxels, ``(3, bx, by, bz)``)
    or None. Frames stream through one segment (:class:`_SegmentCoder`) after another;
    the bytes equal :func:`encode_sequence`'s, serial or parallel, for the same config.

    Returns a report with per-frame byte accounting and the SHA-256 of the encoder's
    reconstruction (which the decoder must reproduce).
    """
    config.validate()
    t0 = time.perf_counter()
    header = sequence_header(meta, config, tensors)
    writer = StreamWriter(out, header)
    ctx = _EncodeContext(header, config)
    digest = _Digest(hashlib.sha256())
    assembly = _Assembly(writer)
    length = config.segment_length
    listed = frozenset(meta.keyframes)
    for number, items in itertools.groupby(
        _checked_frames(frames, meta), key=lambda item: (item[0] - meta.first_frame) // length
    ):
        seg = _segment_range(meta, length, number)
        coder = _SegmentCoder(ctx, config, listed, seg, meta, writer.header_size, digest, progress)
        ts, cs = time.perf_counter(), time.process_time()
        size = sum(assembly.add_gof(gof.finish(), gof.reports) for gof in coder.run(items))  # streaming
        seconds, cpu = time.perf_counter() - ts, time.process_time() - cs
        assembly.segments.append(
            SegmentResult(number, seg.start, seg.stop, [], [], seconds, _worker_name(), cpu).to_json(size)
            | {"gofs": len(coder.finished)}
        )
    assert digest.h is not None
    return assembly.finish(meta, header, config, output_name, digest.h.hexdigest(), time.perf_counter() - t0)


def _segment_range(meta: SequenceMeta, length: int, number: int) -> range:
    start = meta.first_frame + number * length
    return range(start, min(start + length, meta.first_frame + meta.num_frames))


def plan_segments(meta: SequenceMeta, config: EncoderConfig) -> list[range]:
    """The frame ranges of the segments of a sequence (every ``segment_length`` frames)."""
    length = config.segment_length
    return [_segment_range(meta, length, k) for k in range(-(-meta.num_frames // length))]


@dataclass(frozen=True)
class SegmentJob:
    """One segment of a grid-sequence directory to encode: what a worker receives (paths and a
    frame range, never arrays)."""

    seq_dir: str
    number: int
    start: int
    stop: int
    config: EncoderConfig
    header_bytes: int
    """Bytes of the stream's header (the first segment's rate-control budget pays for it)."""

    @property
    def frames(self) -> range:
        return range(self.start, self.stop)

    def describe(self) -> str:
        return f"segment {self.number} (frames {self.start}:{self.stop})"


@dataclass
class SegmentResult:
    """What a segment returns: its GOF chunks in order and a small report."""

    number: int
    start: int
    stop: int
    chunks: list[GofChunk]
    frames: list[FrameReport]
    seconds: float
    worker: str
    """``host:pid`` of the process that coded it."""
    cpu_seconds: float = 0.0
    """CPU time of that process while it coded the segment (all threads)."""

    @property
    def num_frames(self) -> int:
        return self.stop - self.start

    def to_json(self, size: int | None = None) -> dict[str, Any]:
        return {
            "segment": self.number, "frames": [self.start, self.stop], "gofs": len(self.chunks),
            "bytes": size, "seconds": self.seconds, "cpu_seconds": self.cpu_seconds, "worker": self.worker,
        }


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def encode_segment(job: SegmentJob, digest: _Digest | None = None, progress: ProgressFn | None = None) -> SegmentResult:
    """Encode one segment of ``job.seq_dir``: the per-segment function that the serial encoder
    runs in order and ``rerf encode --workers`` runs as remote tasks.

    Reads only its own frames (and, for trainer-form frames, those back to the latest full
    frame); ``digest`` (serial runs) continues the stream's reconstruction hash. Errors
    name the segment.
    """
    try:
        return _encode_segment(job, digest, progress)
    except RerfError as exc:
        raise type(exc)(f"{job.describe()}: {exc}") from None


def _encode_segment(job: SegmentJob, digest: _Digest | None, progress: ProgressFn | None) -> SegmentResult:
    t0, c0 = time.perf_counter(), time.process_time()
    job.config.validate()
    meta = read_meta(job.seq_dir)
    header = sequence_header(meta, job.config, None)  # the tensors do not change how frames are coded
    ctx = _EncodeContext(header, job.config)
    seg = job.frames
    if seg != _segment_range(meta, job.config.segment_length, job.number):
        raise RerfUsageError(f"frames {seg.start}:{seg.stop} are not segment {job.number} of {job.seq_dir}")
    items = _checked_range(iter_frames_with_motion(job.seq_dir, meta, frames=seg), meta, seg)
    coder = _SegmentCoder(
        ctx, job.config, frozenset(meta.keyframes), seg, meta, job.header_bytes, digest or _Digest(), progress
    )
    chunks = [gof.finish() for gof in coder.run(items)]
    reports = [rep for gof in coder.finished for rep in gof.reports]
    return SegmentResult(
        job.number, seg.start, seg.stop, chunks, reports, time.perf_counter() - t0, _worker_name(),
        time.process_time() - c0,
    )


class _SegmentCoder:
    """Codes one segment's frames into GOFs (streaming, or a GOF at a time under rate control).

    The segment's first frame starts a GOF: reason "first" for the stream's first frame,
    "listed" if the sequence lists it, else "segment"; inside, GOFs start as in one long
    stream (listed keyframes, maximum length, lattice, cuts).
    """

    def __init__(
        self,
        ctx: _EncodeContext,
        config: EncoderConfig,
        listed: frozenset[int],
        frames: range,
        meta: SequenceMeta,
        header_bytes: int,
        digest: _Digest,
        progress: ProgressFn | None,
    ) -> None:
        self.ctx, self.config, self.listed, self.frames = ctx, config, listed, frames
        self.digest, self.progress = digest, progress
        first = frames.start == meta.first_frame
        last = frames.stop == meta.first_frame + meta.num_frames
        if first:
            self.first_reason = GOF_REASON_FIRST
        elif frames.start in listed:
            self.first_reason = GOF_REASON_LISTED
        else:
            self.first_reason = GOF_REASON_SEGMENT
        self.rate = (
            _RateControl(config, len(frames), header_bytes if first else 0, stream_tail=last)
            if config.target_kbpf else None
        )
        self.finished: list[_GofEncoder] = []

    def _done(self, gof: _GofEncoder) -> _GofEncoder:
        self.finished.append(gof)
        if self.rate:
            self.rate.spent(len(encode_gof_payload(gof.finish())) + CHUNK_HEAD.size + 4, len(gof.records))
        return gof

    def run(self, frames: Iterable[InputFrame3]) -> Iterator[_GofEncoder]:
        """Yield each finished GOF (in order) of the segment's ``frames``."""
        ctx, config, listed, digest, progress = self.ctx, self.config, self.listed, self.digest, self.progress
        rate = self.rate
        gof: _GofEncoder | None = None
        batch: list[InputFrame3] = []
        batch_lattice: tuple[ChannelParams, ...] = ()  # of batch[0], computed once per batch
        batch_reason = self.first_reason
        for item in frames:
            if rate is None:  # streaming: one frame in memory at a time
                if gof is None:
                    reason: int | None = self.first_reason
                else:
                    reason = _gof_start_reason(gof, item[0], item[1], listed)
                    if reason is None and not gof.add(*item, adaptive=not config.gof_fixed):
                        reason = GOF_REASON_COST
                if reason is not None:
                    if gof is not None:
                        yield self._done(gof)
                    gof = _GofEncoder(ctx, config, item[1], digest.h, progress, reason)
                    gof.add(*item)
                continue
            # Rate control holds one GOF of input frames and encodes it at trial qualities
            # (GOFs end at the maximum length, the lattice rule and listed keyframes only).
            reason = None
            if batch:
                if item[0] in listed:
                    reason = GOF_REASON_LISTED
                elif len(batch) == config.gof:
                    reason = GOF_REASON_MAX_LENGTH
                elif not _frame_fits(batch_lattice, item[1]):
                    reason = GOF_REASON_LATTICE
            if reason is not None:
                yield self._done(rate.encode_gof(ctx, batch, digest, progress, len(self.finished), batch_reason))
                batch = []
                batch_reason = reason
            if not batch:
                batch_lattice = _gof_lattice(ctx, config, item[1])
            batch.append(item)
        if gof is not None:
            yield self._done(gof)
        if batch:
            assert rate is not None
            yield self._done(rate.encode_gof(ctx, batch, digest, progress, len(self.finished), batch_reason))


class _Assembly:
    """The driver's side: segment results in, GOF chunks written in order, the report out."""

    def __init__(self, writer: StreamWriter) -> None:
        self.writer = writer
        self.reports: list[FrameReport] = []
        self.gof_q: list[tuple[int, int]] = []
        self.segments: list[dict[str, Any]] = []
        self.container = 0

    def add_gof(self, chunk: GofChunk, frames: list[FrameReport]) -> int:
        """Write one GOF chunk (``frames``: its frames' reports); returns its bytes on disk."""
        size = self.writer.write_gof(chunk)
        self.gof_q.append((chunk.quality_density, chunk.quality_features))
        self.container += size - sum(r.total_bytes for r in frames)
        self.reports.extend(frames)
        return size

    def add(self, result: SegmentResult) -> None:
        """Write a whole segment's chunks (the next segment in order)."""
        size, pos = 0, 0
        for chunk in result.chunks:
            size += self.add_gof(chunk, result.frames[pos : pos + chunk.num_frames])
            pos += chunk.num_frames
        self.segments.append(result.to_json(size))

    def finish(
        self, meta: SequenceMeta, header: SequenceHeader, config: EncoderConfig, output_name: str, sha256: str | None,
        seconds: float,
    ) -> EncodeReport:
        self.container += self.writer.finish()
        return EncodeReport(
            output=output_name,
            num_frames=meta.num_frames,
            file_bytes=self.writer.bytes_written,
            header_bytes=self.writer.header_size,
            container_bytes=self.container,
            seconds=seconds,
            sha256=sha256,
            config=header.meta["encoder"],
            frames=self.reports,
            gof_qualities=self.gof_q,
            segments=self.segments,
            raw_float32_bytes=raw_float32_bytes(meta.grid_shape, 1 + meta.feature_channels, meta.num_frames),
        )


InputFrame3 = tuple[int, GridFrame, np.ndarray | None]


def _checked_frames(frames: Iterable[InputFrame], meta: SequenceMeta) -> Iterable[InputFrame3]:
    """Frames in order with their shapes checked; the count is checked at the end."""
    return _checked_range(frames, meta, meta.frame_indices)


def _checked_range(frames: Iterable[InputFrame], meta: SequenceMeta, wanted: range) -> Iterator[InputFrame3]:
    expected = iter(wanted)
    for item in frames:
        idx, frame = item[0], item[1]
        motion = item[2] if len(item) > 2 else None
        exp = next(expected, None)
        if exp != idx:
            raise RerfUsageError(f"frame {idx} arrived where frame {exp} was expected")
        _check_frame(frame, meta, idx)
        yield idx, frame, motion
    if next(expected, None) is not None:
        raise RerfUsageError(f"the sequence has fewer frames than its num_frames ({meta.num_frames})")


class _EncodeContext:
    """Per-stream encoder state shared by GOFs: header, reused buffers, settings."""

    def __init__(self, header: SequenceHeader, config: EncoderConfig) -> None:
        self.header = header
        self.buffers = BufferPool(header.grid_shape, header.feature_channels)
        self.deadzone = DeadZone(ac=config.deadzone_ac, dc=config.deadzone_dc, rdoq_lambda=config.rdoq_lambda)
        self.deadzone_residual = DeadZone(
            ac=config.deadzone_residual, dc=config.deadzone_residual, zero_threshold=config.residual_zero_threshold,
            rdoq_lambda=config.rdoq_lambda_residual,
        )
        self.search = SearchConfig(search_range=config.search_range)
        self.block_shape = block_grid_shape(header.grid_shape)


INDEX_CHUNK_BASE = CHUNK_HEAD.size + 4 + 4  # chunk framing + GOF count
LATTICE_LIMIT = 2.0**23
"""A frame joins the current GOF only if its values stay below this many lattice units
(half the format's clamp, leaving room for quantisation overshoot); otherwise the GOF
ends early and the frame starts a new one with its own lattice."""


def _gof_lattice(ctx: _EncodeContext, config: EncoderConfig, first: GridFrame) -> tuple[ChannelParams, ...]:
    """The per-channel parameters (hence lattice) a GOF starting with ``first`` gets."""
    return gof_parameters(first, ctx.header, config, occupancy_mask(first.density, ctx.header.occupancy_threshold))


def _peak(values: np.ndarray) -> float:
    """max |values| without materialising ``abs`` of a large array."""
    return max(float(values.max(initial=0.0)), -float(values.min(initial=0.0)))


def _gof_start_reason(gof: _GofEncoder | None, idx: int, frame: GridFrame, listed: frozenset[int]) -> int | None:
    """Why ``frame`` must start a new GOF before any coding is tried (None: it may join ``gof``)."""
    if gof is None:
        return GOF_REASON_FIRST
    if idx in listed:
        return GOF_REASON_LISTED
    if gof.full:
        return GOF_REASON_MAX_LENGTH
    if not gof.fits(frame):
        return GOF_REASON_LATTICE
    return None


def _frame_fits(channels: tuple[ChannelParams, ...], frame: GridFrame) -> bool:
    planes = [frame.density] + [frame.features[c] for c in range(frame.features.shape[0])]
    return all(_peak(v) * 2.0**ch.exponent < LATTICE_LIMIT for v, ch in zip(planes, channels, strict=True))


class _GofEncoder:
    """Encodes one GOF frame by frame (closed loop); ``finish`` returns the chunk."""

    def __init__(
        self,
        ctx: _EncodeContext,
        config: EncoderConfig,
        first: GridFrame,
        sha: hashlib._Hash | None,
        progress: ProgressFn | None,
        reason: int = GOF_REASON_FIRST,
    ) -> None:
        self.reason = reason
        self.ctx = ctx
        self.config = config
        self.sha = sha
        self.progress = progress
        header = ctx.header
        self.first_mask = occupancy_mask(first.density, header.occupancy_threshold)  # the keyframe's
        self.channels = gof_parameters(first, header, config, self.first_mask)
        steps = gof_steps(header.qmatrix, self.channels)
        self.weights = 1.0 / steps[:, 0].astype(np.float64) ** 2
        self.records: list[FrameRecord] = []
        self.reports: list[FrameReport] = []
        self.state: GofState | None = None
        self.prev_mv = np.zeros((*ctx.block_shape, 3), dtype=np.int64)  # last frame's vectors, per block
        self.first_idx: int | None = None

    @property
    def full(self) -> bool:
        return len(self.records) >= self.config.gof

    def fits(self, frame: GridFrame) -> bool:
        return _frame_fits(self.channels, frame)

    def add(self, idx: int, frame: GridFrame, trainer_motion: np.ndarray | None, adaptive: bool = False) -> bool:
        """Code the next frame of the GOF. With ``adaptive``, a residual frame that would cost
        more than the same frame as the keyframe of a new GOF is not added: returns False
        (the caller starts a new GOF with it)."""
        with single_blas_thread():
            return self._add(idx, frame, trainer_motion, adaptive)

    def _add(self, idx: int, frame: GridFrame, trainer_motion: np.ndarray | None, adaptive: bool) -> bool:
        ctx, header = self.ctx, self.ctx.header
        tf = time.perf_counter()
        if self.first_idx is None:
            self.first_idx = idx
        modes = None
        if self.state is None:
            out = ctx.buffers.slot(needs_reference=False)
            record, recon, st = encode_intra(frame, header, self.channels, ctx.deadzone, out, self.first_mask)
            record = replace(record, gof_reason=self.reason)
            self.state = initial_state(header, out.padded(), self.first_mask, st.tables)
            stats = {"occupied_blocks": st.occupied_blocks, "ideal_coefficient_bits": st.ideal_coefficient_bits}
            self.prev_mv[:] = 0
        else:
            out = ctx.buffers.slot(needs_reference=True)
            chooser = _MotionChooser(
                self.config, ctx.search, self.state, header, trainer_motion, self.prev_mv, self.weights
            )
            record, recon, state, stats = encode_residual(
                frame, header, self.channels, ctx.deadzone_residual, self.state, chooser, out,
                intra_deadzone=ctx.deadzone if self.config.block_modes else None,
            )
            if adaptive and self._cut_pays(record, frame):
                return False
            self.state = state
            self.prev_mv[:] = 0
            if chooser.blocks is not None:
                self.prev_mv[chooser.blocks] = chooser.chosen
            if "inter_blocks" in stats:
                modes = {k: int(stats[f"{k}_blocks"]) for k in ("inter", "skip", "intra")}
        if self.sha is not None:
            update_frame_hash(self.sha, recon)
        rep = FrameReport(
            idx, FRAME_TYPE_NAMES[record.frame_type], record.section_sizes(), int(stats["occupied_blocks"]),
            float(stats["ideal_coefficient_bits"]), time.perf_counter() - tf,
            GOF_REASON_NAMES[self.reason] if not self.records else None, modes,
        )
        self.records.append(record)
        self.reports.append(rep)
        if self.progress:
            self.progress(rep)
        return True

    def _cut_pays(self, record: FrameRecord, frame: GridFrame) -> bool:
        """Would ``frame`` cost fewer bytes as the keyframe of a new GOF (its own lattice and
        quantiser, plus the GOF's container bytes) than as this residual ``record``? Tried only
        when the residual frame costs at least half of this GOF's keyframe."""
        cost = sum(record.section_sizes().values())
        if cost < 0.5 * sum(self.records[0].section_sizes().values()):
            return False
        header = self.ctx.header
        mask = occupancy_mask(frame.density, header.occupancy_threshold)
        channels = gof_parameters(frame, header, self.config, mask)
        key, _, _ = encode_intra(frame, header, channels, self.ctx.deadzone, None, mask)
        return sum(key.section_sizes().values()) + gof_container_bytes(header) < cost

    def finish(self) -> GofChunk:
        assert self.first_idx is not None
        return GofChunk(
            self.first_idx, self.config.effective_density_quality, self.config.quality, self.channels,
            tuple(self.records),
        )


def gof_container_bytes(header: SequenceHeader) -> int:
    """Bytes a GOF costs besides its frame records: chunk framing, GOF header, channel
    parameters and its index entry."""
    return CHUNK_HEAD.size + 4 + GOF_HEAD.size + CHANNEL_PARAMS.size * header.num_channels + INDEX_ENTRY.size


class _RateControl:
    """Chooses the quality of each GOF so the file averages ``target_kbpf`` kB (1000 B) per frame.

    The budget is kept per segment (the unit of parallel work; the stream's header counts
    in the first, the index chunk and footer in the last, each GOF's index entry in its
    own segment), so a segment's qualities never depend on another's. Each GOF gets the
    segment's budget left (target × frames so far − bytes so far), clamped to [0.5, 2] ×
    its share; its quality is found by a secant search on log(bytes) over integer
    qualities (bytes roughly double every 10 quality points), at most ``MAX_TRIALS`` trial
    encodes, keeping the trial closest to the budget. With one segment this is the
    whole-file budget.
    """

    MAX_TRIALS = 5
    TOLERANCE = 0.02
    """Stop searching once a trial is within this fraction of the GOF's budget."""

    def __init__(self, config: EncoderConfig, num_frames: int, header_bytes: int, stream_tail: bool) -> None:
        self.config = config
        self.target = float(config.target_kbpf or 0.0) * 1000.0
        self.bytes = float(header_bytes)
        self.frames = 0
        self.num_frames = num_frames
        self.stream_tail = stream_tail
        self.last_quality = config.quality

    def spent(self, size: int, frames: int) -> None:
        self.bytes += size
        self.frames += frames

    def encode_gof(
        self,
        ctx: _EncodeContext,
        batch: list[InputFrame3],
        digest: _Digest,
        progress: ProgressFn | None,
        gofs_written: int,
        reason: int = GOF_REASON_FIRST,
    ) -> _GofEncoder:
        """Encode ``batch`` (one GOF's frames) at the quality that best meets the budget;
        ``gofs_written``: GOFs of this segment so far."""
        n = len(batch)
        share = self.target * n
        budget = self.target * (self.frames + n) - self.bytes
        if self.frames + n >= self.num_frames:  # the segment's last GOF: its index entries count too
            budget -= INDEX_ENTRY.size * (gofs_written + 1)
            if self.stream_tail:  # the stream's last GOF: and the index chunk and footer
                budget -= INDEX_CHUNK_BASE + FOOTER.size
        budget = min(max(budget, 0.5 * share), 2.0 * share)
        tried: dict[int, tuple[int, _GofEncoder, hashlib._Hash | None]] = {}

        def trial(q: int) -> int:
            q = min(100, max(1, q))
            if q not in tried:
                cfg = _with_quality(self.config, q)
                h = digest.h.copy() if digest.h is not None else None
                gof = _GofEncoder(ctx, cfg, batch[0][1], h, None, reason)
                for item in batch:
                    gof.add(*item)
                size = len(encode_gof_payload(gof.finish())) + CHUNK_HEAD.size + 4  # + chunk framing
                tried[q] = (size, gof, h)
            return q

        q0 = trial(self.last_quality)
        if abs(tried[q0][0] - budget) > self.TOLERANCE * budget:
            step = round(10.0 * math.log2(budget / tried[q0][0]))
            if step == 0:  # close but outside the tolerance: one quality point towards the budget
                step = 1 if tried[q0][0] < budget else -1
            trial(q0 + step)
        for _ in range(self.MAX_TRIALS - 2):
            if len(tried) < 2 or min(abs(b - budget) for b, _, _ in tried.values()) <= self.TOLERANCE * budget:
                break
            ranked = sorted(tried.items(), key=lambda kv: abs(math.log(kv[1][0] / budget)))
            (qa, (ba, _, _)), (qb, (bb, _, _)) = ranked[0], ranked[1]
            if ba == bb or qa == qb:
                break
            slope = (math.log(bb) - math.log(ba)) / (qb - qa)
            if slope <= 0:
                break
            q_next = min(100, max(1, round(qa + (math.log(budget) - math.log(ba)) / slope)))
            if q_next in tried:
                break
            trial(q_next)
        best_q = min(tried, key=lambda q: abs(tried[q][0] - budget))
        _, gof, h = tried[best_q]
        self.last_quality = best_q
        digest.h = h
        if progress:
            for rep in gof.reports:
                progress(rep)
        return gof


class _Digest:
    """The running SHA-256 of the reconstruction; rate control swaps in the chosen trial's.
    ``h`` is None where no hash is kept (a segment coded apart from its predecessors)."""

    def __init__(self, h: hashlib._Hash | None = None) -> None:
        self.h = h


def _with_quality(config: EncoderConfig, q: int) -> EncoderConfig:
    """The config at feature quality ``q``, density quality moved by the same amount."""
    dq = None
    if config.density_quality is not None:
        dq = min(100, max(1, config.density_quality + q - config.quality))
    return replace(config, quality=q, density_quality=dq)


class _MotionChooser:
    """Picks the motion of a residual frame's occupied blocks (called by ``encode_residual``)."""

    def __init__(
        self,
        config: EncoderConfig,
        search: SearchConfig,
        state: GofState,
        header: SequenceHeader,
        trainer_motion: np.ndarray | None,
        prev_mv: np.ndarray,
        weights: np.ndarray,
    ) -> None:
        self.config = config
        self.search = search
        self.state = state
        self.header = header
        self.trainer_motion = trainer_motion
        self.prev_mv = prev_mv
        self.weights = weights
        self.blocks: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.chosen = np.zeros((0, 3), dtype=np.int64)

    def __call__(self, blocks: tuple[np.ndarray, ...], cur: np.ndarray, scales: np.ndarray) -> np.ndarray:
        ix, iy, iz = blocks
        n = ix.size
        self.blocks = (ix, iy, iz)
        limit = round(self.config.search_range * MV_UNIT)
        trainer = None
        if self.trainer_motion is not None:
            m = np.asarray(self.trainer_motion, dtype=np.float64)[:, ix, iy, iz].T
            trainer = np.clip(np.round(m * MV_UNIT), -MAX_MV, MAX_MV).astype(np.int64)
        if self.config.motion == "zero" or n == 0:
            mv = np.zeros((n, 3), dtype=np.int64)
        elif self.config.motion == "trainer" and trainer is not None:
            mv = trainer
        else:
            prev = self.state.prev
            planes = [prev.density] + [prev.features[c] for c in range(prev.features.shape[0])]
            sel = _search_channels(cur, self.weights, self.config.search_channels)
            candidates = [self.prev_mv[ix, iy, iz]]
            if trainer is not None:
                candidates.append(np.clip(trainer, -limit, limit))
            mv = search_motion(
                cur[sel], [planes[c] for c in sel], self.header.grid_shape, (ix, iy, iz), self.weights[sel],
                candidates, self.search, scales[sel],
            )
        self.chosen = mv
        return mv


def _search_channels(cur: np.ndarray, weights: np.ndarray, count: int) -> np.ndarray:
    """Channels the motion search looks at: density, plus the features with the most
    (step-weighted) variance. One vector serves all channels, so a few strong ones find
    it as well as all of them, at a fraction of the cost."""
    if count >= cur.shape[0]:
        return np.arange(cur.shape[0])
    energy = cur[1:].var(axis=(1, 2)) * weights[1:]
    top = 1 + np.argsort(-energy, kind="stable")[: max(0, count - 1)]
    return np.concatenate([[0], np.sort(top)])


def _check_frame(frame: GridFrame, meta: SequenceMeta, idx: int) -> None:
    shape = tuple(meta.grid_shape)
    if frame.density.shape != shape or frame.features.shape != (meta.feature_channels, *shape):
        raise RerfUsageError(f"frame {idx}: grid shapes do not match the sequence metadata")
    if frame.density.dtype != np.float32 or frame.features.dtype != np.float32:
        raise RerfUsageError(f"frame {idx}: grids must be float32")


SegmentRunner = Callable[[list[SegmentJob]], Iterable[SegmentResult]]
"""Runs segment jobs (``encode_segment`` each, e.g. as Ray tasks) and yields the results in
any order; ``rerf_codec.cluster`` has the Ray one."""
SegmentDone = Callable[[SegmentResult, int, int], None]
"""``on_segment(result, segments_done, segments_total)`` as each segment finishes."""


def encode_sequence(
    seq_dir: str | Path,
    out_path: str | Path,
    config: EncoderConfig,
    *,
    force: bool = False,
    progress: ProgressFn | None = None,
    runner: SegmentRunner | None = None,
    workers: int = 1,
    on_segment: SegmentDone | None = None,
    reconstruction_hash: bool = True,
) -> EncodeReport:
    """Encode a grid-sequence directory into a .rerf file, atomically.

    Without ``runner`` the segments are coded here, in order (``progress`` per frame). With
    one, every segment is a job for it (``workers`` of them at once, say; results come back in
    any order) and this process, the driver, writes their chunks in order, the index and
    footer: the same bytes. The reconstruction's SHA-256 is then computed by decoding the
    chunks as they are written (a hash cannot be continued across processes): one serial
    decode of the whole stream, which ``reconstruction_hash=False`` skips (the report's
    ``sha256`` is then None). Everything that can be checked is checked before the first job
    is handed out.
    """
    config.validate()
    seq = Path(seq_dir)
    meta = read_meta(seq)
    tensors = read_decoder(seq, meta)
    block_grid_shape(meta.grid_shape)
    missing = [i for i in meta.frame_indices if not frame_path(seq, i).is_file()]
    if missing:
        raise RerfUsageError(f"{seq}: frame file {frame_path(seq, missing[0])} is missing ({len(missing)} missing)")
    t0 = time.perf_counter()
    header = sequence_header(meta, config, tensors)
    with atomic_file(out_path, force=force) as f:
        writer = StreamWriter(f, header)
        assembly = _Assembly(writer)
        ranges = plan_segments(meta, config)
        jobs = [
            SegmentJob(str(seq), k, r.start, r.stop, config, writer.header_size) for k, r in enumerate(ranges)
        ]
        sha: str | None = None
        if runner is None:
            digest = _Digest(hashlib.sha256() if reconstruction_hash else None)
            for job in jobs:
                result = encode_segment(job, digest, progress)
                assembly.add(result)
                if on_segment:
                    on_segment(result, job.number + 1, len(jobs))
            sha = digest.h.hexdigest() if digest.h is not None else None
        else:
            hasher = _ReconstructionHash(header) if reconstruction_hash else None
            pending: dict[int, SegmentResult] = {}
            done = 0
            for result in runner(jobs):
                pending[result.number] = result
                done += 1
                while len(assembly.segments) in pending:
                    ready = pending.pop(len(assembly.segments))
                    assembly.add(ready)
                    if hasher is not None:
                        hasher.add(ready.chunks)
                if on_segment:
                    on_segment(result, done, len(jobs))
            if pending or len(assembly.segments) != len(jobs):
                raise RuntimeError(f"the runner returned {done} of {len(jobs)} segments")
            sha = hasher.hexdigest() if hasher is not None else None
        report = assembly.finish(meta, header, config, str(out_path), sha, time.perf_counter() - t0)
    report.workers = 1 if runner is None else workers
    return report


class _ReconstructionHash:
    """The stream's reconstruction SHA-256 from its GOF chunks, decoded in order."""

    def __init__(self, header: SequenceHeader) -> None:
        self.header = header
        self.buffers = BufferPool(header.grid_shape, header.feature_channels)
        self.h = hashlib.sha256()

    def add(self, chunks: Iterable[GofChunk]) -> None:
        for chunk in chunks:
            for frame in decode_gof(chunk, self.header, self.buffers):
                update_frame_hash(self.h, frame.frame)

    def hexdigest(self) -> str:
        return self.h.hexdigest()
