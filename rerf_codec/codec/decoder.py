"""Streaming decoder: GOF by GOF, from a file or a non-seekable stream.

Never imports torch (a test checks ``sys.modules``). Frames come out as soon as
their GOF chunk has been read; only the current GOF's records and the previous
reconstruction are held in memory. With a seekable input a frame range starts at
the GOF that contains it, found through the index.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

from rerf_codec.bitstream import (
    FRAME_INTRA,
    FRAME_RESIDUAL,
    FRAME_TYPE_NAMES,
    DamagedChunk,
    GofChunk,
    SequenceHeader,
    StreamReader,
)
from rerf_codec.codec.intra import BufferPool, parse_intra, reconstruct_intra
from rerf_codec.codec.quant import gof_steps
from rerf_codec.codec.residual import GofState, initial_state, parse_residual, reconstruct_residual
from rerf_codec.codec.threads import single_blas_thread
from rerf_codec.errors import RerfFormatError
from rerf_codec.framerange import FrameRange, parse_frame_range
from rerf_codec.grids import GridFrame, SequenceMeta, update_frame_hash


@dataclass(frozen=True)
class DecodedFrame:
    index: int
    frame_type: str
    frame: GridFrame


@dataclass(frozen=True)
class DamagedFrames:
    """Frames lost to a damaged GOF chunk (yielded only with ``skip_damaged``)."""

    frames: range | None
    offset: int
    reason: str


def decode_gof(gof: GofChunk, header: SequenceHeader, buffers: BufferPool | None = None) -> Iterator[DecodedFrame]:
    """Decode every frame of one GOF in order (a GOF depends on nothing outside itself).

    With ``buffers`` frames are written into the pool's reused arrays: a yielded frame
    stays valid until the next frame is decoded.
    """
    # Every GOF's quantiser steps must be in range, whether or not a frame needs them.
    try:
        gof_steps(header.qmatrix, gof.channels)
    except RerfFormatError as exc:
        raise RerfFormatError(f"GOF at frame {gof.first_frame}: {exc}") from None
    state: GofState | None = None
    for i, record in enumerate(gof.frames):
        idx = gof.first_frame + i
        out = buffers.slot(needs_reference=record.frame_type != FRAME_INTRA) if buffers else None
        try:
            with single_blas_thread():
                if record.frame_type == FRAME_INTRA:
                    mask, levels, tables = parse_intra(record, header)
                    frame = reconstruct_intra(header, gof.channels, mask, levels, out)
                    state = initial_state(header, out.padded() if out else frame, mask, tables)
                elif record.frame_type == FRAME_RESIDUAL:
                    if state is None:
                        raise RerfFormatError("residual frame without a preceding keyframe in its GOF")
                    sym = parse_residual(record, header, state)
                    frame = reconstruct_residual(
                        header, gof.channels, sym.mask, sym.mv, sym.levels, state.prev, out, modes=sym.modes
                    )
                    state = sym.next_state(out.padded() if out else frame, state)
                else:  # pragma: no cover - the parser rejects unknown types
                    raise RerfFormatError(f"unsupported frame type {record.frame_type}")
        except RerfFormatError as exc:
            raise RerfFormatError(f"frame {idx}: {exc}") from None
        yield DecodedFrame(idx, FRAME_TYPE_NAMES[record.frame_type], frame)


class Decoder:
    """Decode a .rerf stream.

    Example:
        >>> import io
        >>> from rerf_codec.codec.decoder import Decoder
        >>> # Decoder(open("x.rerf", "rb")).frames(range(10, 20)) yields DecodedFrame objects
    """

    def __init__(self, f: BinaryIO) -> None:
        self.reader = StreamReader(f)
        self.header = self.reader.header

    @property
    def frame_range(self) -> range:
        h = self.header
        return range(h.first_frame, h.first_frame + h.num_frames)

    def sequence_meta(self, frames: range | None = None) -> SequenceMeta:
        """Grid-sequence metadata for the decoded output (frame numbers of the range kept)."""
        seq = dict(self.header.meta.get("sequence", {}))
        seq.pop("keyframes", None)  # decoded output is full frames: no GOF starts to request
        frames = frames or self.frame_range
        h = self.header
        seq.update(
            {
                "format": "rerf-grid-sequence",
                "version": 1,
                "num_frames": len(frames),
                "first_frame": frames.start,
                "fps": h.fps,
                "grid_shape": list(h.grid_shape),
                "feature_channels": h.feature_channels,
                "xyz_min": list(h.xyz_min),
                "xyz_max": list(h.xyz_max),
                "density_shift": h.density_shift,
                "motion_block": h.motion_block,
                "decoder": "decoder.npz" if h.tensors else None,
            }
        )
        return SequenceMeta.from_json_dict(seq, "<stream header>")

    def resolve_range(self, frames: FrameRange | range | str | None) -> range:
        """The stream's frames selected by ``frames`` (``None``: all of them)."""
        fr = parse_frame_range(frames)
        return self.frame_range if fr is None else fr.resolve(self.frame_range)

    def session(
        self, frames: FrameRange | range | str | None = None, *, skip_damaged: bool = False, reuse_buffers: bool = False
    ) -> DecodeSession:
        """Every frame of ``frames`` in order, damaged GOFs concealed: see :class:`DecodeSession`."""
        return DecodeSession(self, self.resolve_range(frames), skip_damaged=skip_damaged, reuse_buffers=reuse_buffers)

    def frames(
        self, frames: FrameRange | range | str | None = None, *, skip_damaged: bool = False, reuse_buffers: bool = False
    ) -> Iterator[DecodedFrame | DamagedFrames]:
        """Yield decoded frames in ``frames`` (default: all), GOF by GOF.

        With ``skip_damaged`` a damaged GOF yields one :class:`DamagedFrames` and decoding
        goes on with the next GOF; otherwise the first damage raises RerfFormatError.
        With ``reuse_buffers`` a yielded frame's arrays are only valid until the next
        frame is requested (copy them to keep them); this saves an allocation per frame
        and keeps peak memory near two dense frames.
        """
        want = self.resolve_range(frames)
        buffers = BufferPool(self.header.grid_shape, self.header.feature_channels) if reuse_buffers else None
        if want.start != self.frame_range.start and self.reader.seekable:
            entries = self.reader.read_index()
            start = next(e for e in entries if e.first_frame <= want.start < e.first_frame + e.num_frames)
            self.reader.seek_to(start)
        for item in self.reader.iter_gofs(skip_damaged=skip_damaged):
            if isinstance(item, DamagedChunk):
                lost = None
                if item.first_frame is not None and item.num_frames is not None:
                    lost = range(item.first_frame, item.first_frame + item.num_frames)
                    if lost.stop <= want.start:
                        continue
                    if lost.start >= want.stop:
                        return
                yield DamagedFrames(lost, item.offset, item.reason)
                continue
            gof_range = item.frame_range
            if gof_range.stop <= want.start:
                continue  # before the range: skipped without decoding
            if gof_range.start >= want.stop:
                return
            try:
                for decoded in decode_gof(item, self.header, buffers):
                    if decoded.index >= want.stop:
                        break
                    if decoded.index >= want.start:
                        yield decoded
            except RerfFormatError as exc:
                if not skip_damaged:
                    raise
                yield DamagedFrames(gof_range, item.offset, str(exc))
            if gof_range.stop >= want.stop and want.stop < self.frame_range.stop:
                return  # a range that runs to the end reads on: the index and footer get checked


def empty_frame(header: SequenceHeader) -> GridFrame:
    """The concealment frame used when no earlier frame decoded: transparent and featureless.

    Density ``min(0, occupancy_threshold - 1)`` (below the occupancy threshold, so every
    block is empty by the codec's own definition), features 0.
    """
    dens = np.float32(min(0.0, header.occupancy_threshold - 1.0))
    return GridFrame(
        np.full(header.grid_shape, dens, dtype=np.float32),
        np.zeros((header.feature_channels, *header.grid_shape), dtype=np.float32),
    )


def _fmt_range(r: range) -> str:
    return f"{r.start}" if len(r) == 1 else f"{r.start}:{r.stop}"


def _clip(r: range | None, to: range) -> range | None:
    return None if r is None else range(max(r.start, to.start), min(r.stop, to.stop))


@dataclass(frozen=True)
class DamagedReport:
    """One damaged stretch of the stream met by a :class:`DecodeSession` that conceals damage."""

    frames: range | None  # frames lost inside the requested range (None: unknown)
    offset: int | None  # byte offset of the damaged chunk (None: end of a truncated stream)
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "frames": None if self.frames is None else [self.frames.start, self.frames.stop],
            "offset": self.offset,
            "reason": self.reason,
        }

    def describe(self) -> str:
        where = "frames ?" if self.frames is None else f"frames {_fmt_range(self.frames)}"
        at = "" if self.offset is None else f" (chunk at byte {self.offset})"
        return f"{where} damaged{at}: {self.reason}"


@dataclass(frozen=True)
class SessionFrame:
    """One frame of a :class:`DecodeSession`, in order."""

    index: int
    frame: GridFrame | None
    """The decoded grids; for a concealed frame the last good frame's, or ``None`` before any."""
    concealed: bool
    decode_seconds: float
    """Time spent waiting for the decoder (reading + decoding) for this frame; 0 when concealed."""


@dataclass
class DecodeSession:
    """The one loop that every consumer of decoded frames uses (``rerf decode``, the player, eval, the bench).

    Yields every frame of ``want`` in order. Without ``skip_damaged`` the first damage raises
    ``RerfFormatError``. With it a damaged GOF is recorded once in ``damaged`` and each of its
    frames is *concealed* like a video player freezing: the last good frame again (or ``None``
    when no frame has decoded yet: the caller shows an empty scene); a truncated stream conceals
    the rest of the range; if no frame at all decodes it is an error.

    ``reuse_buffers`` lets the decoder write every frame into the same arrays (valid until the
    next frame is requested). It is ignored when concealing, which must keep the last good frame.
    """

    decoder: Decoder
    want: range
    skip_damaged: bool = False
    reuse_buffers: bool = False
    damaged: list[DamagedReport] = field(default_factory=list)
    decoded: int = 0

    def __iter__(self) -> Iterator[SessionFrame]:
        want = self.want
        frames = self.decoder.frames(
            want, skip_damaged=self.skip_damaged, reuse_buffers=self.reuse_buffers and not self.skip_damaged
        )
        expected = want.start
        last: GridFrame | None = None
        while True:
            t0 = time.perf_counter()
            try:
                item = next(frames)
            except StopIteration:
                break
            except RerfFormatError as exc:
                if not self.skip_damaged:
                    raise
                if expected < want.stop:  # truncated stream or unreadable index: nothing more to read
                    self.damaged.append(DamagedReport(range(expected, want.stop), None, str(exc)))
                break
            seconds = time.perf_counter() - t0
            if isinstance(item, DamagedFrames):
                self.damaged.append(DamagedReport(_clip(item.frames, want), item.offset, item.reason))
                continue
            if item.index < expected or item.index >= want.stop:
                raise RuntimeError(f"decoder yielded frame {item.index}, expected {expected}")
            for idx in range(expected, item.index):
                yield SessionFrame(idx, last, True, 0.0)
            yield SessionFrame(item.index, item.frame, False, seconds)
            self.decoded += 1
            last = item.frame
            expected = item.index + 1
        if self.skip_damaged and self.decoded == 0:
            reasons = "; ".join(d.reason for d in self.damaged) or "no frame in the range"
            raise RerfFormatError(f"no frame could be decoded ({reasons}); nothing was written")
        for idx in range(expected, want.stop):
            yield SessionFrame(idx, last, True, 0.0)


def decode_all(f: BinaryIO, frames: range | None = None) -> tuple[list[DecodedFrame], str]:
    """Convenience for tests and small streams: every frame in memory plus the SHA-256."""
    dec = Decoder(f)
    out = []
    sha = hashlib.sha256()
    for item in dec.frames(frames):
        assert isinstance(item, DecodedFrame)
        update_frame_hash(sha, item.frame)
        out.append(item)
    return out, sha.hexdigest()
