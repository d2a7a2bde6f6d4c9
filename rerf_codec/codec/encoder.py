"""Sequence encoder: GOF chunking, per-GOF parameters, closed-loop frame coding.

The encoder predicts from its *own reconstruction*, produced by the decoder's
functions (``reconstruct_intra``), never from the input (DESIGN.md decision 2).
Until residual frames land every frame of a GOF is an intra frame, but GOFs are
real chunks with their own parameters, index entries and CRCs.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import constriction
import numpy as np

import rerf_codec
from rerf_codec.atomic import atomic_file
from rerf_codec.bitstream import (
    CODER_RANGE,
    FRAME_TYPE_NAMES,
    TRANSFORM_DCT8_INT,
    ChannelParams,
    GofChunk,
    SequenceHeader,
    StreamWriter,
)
from rerf_codec.codec.intra import BufferPool, encode_intra
from rerf_codec.codec.occupancy import block_grid_shape, default_threshold, occupancy_mask
from rerf_codec.codec.quant import MAX_QSTEP, QMATRIX_UNIT, DeadZone, default_qmatrix, quality_to_step
from rerf_codec.codec.transform import BLOCK, MAX_SAMPLE
from rerf_codec.errors import RerfUsageError
from rerf_codec.grids import GridFrame, SequenceMeta, iter_full_frames, read_decoder, read_meta, update_frame_hash

DEFAULT_QUALITY = 75
DEFAULT_GOF = 20
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
    """Frames per group of frames (the first of each is a keyframe)."""
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
    occupancy_threshold: float | None = None
    """Raw density above which a block is occupied; None = derived from density_shift."""

    def validate(self) -> None:
        if not 1 <= self.quality <= 100:
            raise RerfUsageError(f"--quality must be in 1..100, got {self.quality}")
        if self.density_quality is not None and not 1 <= self.density_quality <= 100:
            raise RerfUsageError(f"--density-quality must be in 1..100, got {self.density_quality}")
        if not 1 <= self.gof <= 4096:
            raise RerfUsageError(f"--gof must be in 1..4096, got {self.gof}")
        if not (0.0 < self.deadzone_ac <= 0.5 and 0.0 < self.deadzone_dc <= 0.5):
            raise RerfUsageError("dead-zone offsets must be in (0, 0.5]")
        if self.occupancy_threshold is not None and not math.isfinite(self.occupancy_threshold):
            raise RerfUsageError("occupancy threshold must be finite")

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
    sha256: str
    config: dict[str, Any]
    frames: list[FrameReport] = field(default_factory=list)
    gof_qualities: list[tuple[int, int]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "num_frames": self.num_frames,
            "file_bytes": self.file_bytes,
            "bytes_per_frame": self.file_bytes / max(1, self.num_frames),
            "header_bytes": self.header_bytes,
            "container_bytes": self.container_bytes,
            "seconds": self.seconds,
            "frames_per_second": self.num_frames / self.seconds if self.seconds > 0 else None,
            "sha256": self.sha256,
            "config": self.config,
            "frames": [
                {**asdict(f), "total_bytes": f.total_bytes} for f in self.frames
            ],
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
        return r if r > 0 else max(abs(hi), 1.0)

    r_dens = group_range([dens])
    r_feat = group_range([feats[c] for c in range(feats.shape[0])])
    step_d = quality_to_step(config.effective_density_quality) * r_dens * config.density_step_ratio
    step_f = quality_to_step(config.quality) * r_feat
    # Largest qscale whose steps (qmatrix * qscale + 8) >> 4 stay within the format's limit.
    qscale_cap = [int((MAX_QSTEP * QMATRIX_UNIT - 8) // int(header.qmatrix[g].max())) for g in (0, 1)]
    params = []
    for c in range(header.num_channels):
        v = dens if c == 0 else feats[c - 1]
        e = _exponent_for(float(np.abs(v).max(initial=0.0)))
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


def encode_frames(
    meta: SequenceMeta,
    frames: Iterable[tuple[int, GridFrame]],
    out: BinaryIO,
    config: EncoderConfig,
    *,
    tensors: dict[str, np.ndarray] | None = None,
    progress: ProgressFn | None = None,
    output_name: str = "<stream>",
) -> EncodeReport:
    """Encode full frames (in order) into ``out``; the library entry point.

    Returns a report with per-frame byte accounting and the SHA-256 of the encoder's
    reconstruction (which the decoder must reproduce).
    """
    config.validate()
    t0 = time.perf_counter()
    header = sequence_header(meta, config, tensors)
    writer = StreamWriter(out, header)
    sha = hashlib.sha256()
    reports: list[FrameReport] = []
    gof_q: list[tuple[int, int]] = []
    container = 0
    expected = iter(meta.frame_indices)
    pending: list[tuple[int, GridFrame]] = []
    # Reconstructions go into reused buffers: the current frame and (for residual frames) its reference.
    buffers = BufferPool(header.grid_shape, header.feature_channels)

    def flush(batch: list[tuple[int, GridFrame]]) -> None:
        nonlocal container
        first_idx, first = batch[0]
        mask = occupancy_mask(first.density, header.occupancy_threshold)
        channels = gof_parameters(first, header, config, mask)
        deadzone = DeadZone(ac=config.deadzone_ac, dc=config.deadzone_dc)
        records = []
        for idx, frame in batch:
            tf = time.perf_counter()
            record, recon, stats = encode_intra(frame, header, channels, deadzone, buffers.slot(needs_reference=False))
            update_frame_hash(sha, recon)
            rep = FrameReport(
                idx, FRAME_TYPE_NAMES[record.frame_type], record.section_sizes(), stats.occupied_blocks,
                stats.ideal_coefficient_bits, time.perf_counter() - tf,
            )
            records.append(record)
            reports.append(rep)
            if progress:
                progress(rep)
        gof = GofChunk(first_idx, config.effective_density_quality, config.quality, channels, tuple(records))
        size = writer.write_gof(gof)
        container += size - sum(r.total_bytes for r in reports[-len(batch) :])
        gof_q.append((config.effective_density_quality, config.quality))

    for idx, frame in frames:
        exp = next(expected, None)
        if exp != idx:
            raise RerfUsageError(f"frame {idx} arrived where frame {exp} was expected")
        _check_frame(frame, meta, idx)
        pending.append((idx, frame))
        if len(pending) == config.gof:
            flush(pending)
            pending = []
    if pending:
        flush(pending)
    if next(expected, None) is not None:
        raise RerfUsageError(f"the sequence has fewer frames than its num_frames ({meta.num_frames})")
    tail = writer.finish()
    container += tail
    seconds = time.perf_counter() - t0
    return EncodeReport(
        output=output_name,
        num_frames=meta.num_frames,
        file_bytes=writer.bytes_written,
        header_bytes=writer.header_size,
        container_bytes=container,
        seconds=seconds,
        sha256=sha.hexdigest(),
        config=header.meta["encoder"],
        frames=reports,
        gof_qualities=gof_q,
    )


def _check_frame(frame: GridFrame, meta: SequenceMeta, idx: int) -> None:
    shape = tuple(meta.grid_shape)
    if frame.density.shape != shape or frame.features.shape != (meta.feature_channels, *shape):
        raise RerfUsageError(f"frame {idx}: grid shapes do not match the sequence metadata")
    if frame.density.dtype != np.float32 or frame.features.dtype != np.float32:
        raise RerfUsageError(f"frame {idx}: grids must be float32")


def encode_sequence(
    seq_dir: str | Path,
    out_path: str | Path,
    config: EncoderConfig,
    *,
    force: bool = False,
    progress: ProgressFn | None = None,
) -> EncodeReport:
    """Encode a grid-sequence directory into a .rerf file, atomically."""
    config.validate()
    meta = read_meta(seq_dir)
    tensors = read_decoder(seq_dir, meta)
    block_grid_shape(meta.grid_shape)
    with atomic_file(out_path, force=force) as f:
        return encode_frames(
            meta, iter_full_frames(seq_dir, meta), f, config, tensors=tensors, progress=progress,
            output_name=str(out_path),
        )
