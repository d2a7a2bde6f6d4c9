"""Stream description and byte accounting: what ``rerf info`` shows and what encode reports add up.

* :func:`describe_stream`: header, GOFs, per-frame byte accounting, and byte totals per category
  that add up exactly to the file size;
* :func:`encode_byte_totals`: the same accounting for an :class:`EncodeReport`;
* :func:`frame_type_summary`: per-frame bytes grouped by frame type (intra / residual);
* :func:`encoded_gofs`: the GOFs of a freshly encoded file (frames, qualities, bytes).

Parsing only (through ``bitstream.StreamReader``): nothing is decoded, and torch is never imported.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

from rerf_codec import bitstream
from rerf_codec.bitstream import (
    COEFF_MODE_NAMES,
    FRAME_FLAG_BLOCK_MODES,
    FRAME_TYPE_NAMES,
    GOF_REASON_NAMES,
    StreamReader,
)
from rerf_codec.grids import raw_float32_bytes

__all__ = ["CATEGORIES", "describe_stream", "encode_byte_totals", "encoded_gofs", "frame_type_summary"]

FRAME_TYPES = tuple(FRAME_TYPE_NAMES[k] for k in sorted(FRAME_TYPE_NAMES))
"""Frame type names in type-id order: ``intra`` (keyframe), ``residual``."""
FRAME_CATEGORIES = ("mask", "motion", "coefficients", "side_info")
"""Per-frame byte categories (``FrameRecord.section_sizes``)."""
CATEGORIES = (*FRAME_CATEGORIES, "header", "container")
"""Whole-file byte categories. ``header``: file header + sequence header (metadata, quantisation
matrices, MLP tensors); ``container``: GOF chunk framing + GOF headers + channel parameters +
index chunk + footer. Bytes after the footer (never written by rerf) appear as ``trailing``."""

CODER_NAMES = {bitstream.CODER_RANGE: "range"}
TRANSFORM_NAMES = {bitstream.TRANSFORM_DCT8_INT: "dct8-int"}


class _CountingReader:
    """Forward-only reader that counts the bytes consumed and keeps the first few.

    Reports itself non-seekable so the stream reader iterates GOFs sequentially, which
    is what makes ``describe_stream`` work on pipes too.
    """

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self.count = 0
        self.head = b""

    def read(self, n: int = -1) -> bytes:
        b = self._f.read(n)
        if len(self.head) < 16:
            self.head += b[: 16 - len(self.head)]
        self.count += len(b)
        return b

    def seekable(self) -> bool:
        return False

    def drain(self) -> int:
        """Read to the end; return the number of bytes that were left."""
        extra = 0
        while True:
            b = self._f.read(1 << 20)
            if not b:
                return extra
            extra += len(b)


def _sum_sections(sizes: list[dict[str, int]]) -> dict[str, int]:
    out = dict.fromkeys(FRAME_CATEGORIES, 0)
    for s in sizes:
        for k in FRAME_CATEGORIES:
            out[k] += int(s.get(k, 0))
    return out


def _num(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def describe_stream(f: BinaryIO) -> dict[str, Any]:
    """Everything ``rerf info`` shows, as a JSON-ready dict.

    Reads the stream once, front to back (works on stdin): header, every GOF chunk
    (offset, bytes on disk, frames, qualities, channel parameters, container overhead) and
    every frame (type and bytes per category). ``totals`` has the bytes per category
    (:data:`CATEGORIES`) and adds up exactly to ``file_bytes``.
    """
    cf = _CountingReader(f)
    reader = StreamReader(cf)  # type: ignore[arg-type]
    h = reader.header
    _, major, minor, flags, _, _ = bitstream.FILE_HEADER.unpack(cf.head[: bitstream.FILE_HEADER.size])
    gofs: list[dict[str, Any]] = []
    frames: list[dict[str, Any]] = []
    frame_sizes: list[dict[str, int]] = []
    gof_bytes = 0
    for gof in reader.iter_gofs():
        assert isinstance(gof, bitstream.GofChunk)
        sizes = [r.section_sizes() for r in gof.frames]
        payload = sum(sum(s.values()) for s in sizes)
        types = [FRAME_TYPE_NAMES[r.frame_type] for r in gof.frames]
        gofs.append(
            {
                "offset": gof.offset,
                "bytes": gof.size,
                "first_frame": gof.first_frame,
                "num_frames": gof.num_frames,
                "quality": gof.quality_features,
                "density_quality": gof.quality_density,
                "start_reason": GOF_REASON_NAMES[gof.frames[0].gof_reason],
                "frame_types": {t: types.count(t) for t in FRAME_TYPES if t in types},
                "frame_bytes": {
                    t: sum(sum(s.values()) for s, ty in zip(sizes, types, strict=True) if ty == t)
                    for t in FRAME_TYPES
                    if t in types
                },
                "container_bytes": gof.size - payload,
                "channels": [
                    {"exponent": c.exponent, "fill": c.fill, "qscale": c.qscale} for c in gof.channels
                ],
            }
        )
        for i, (rec, s) in enumerate(zip(gof.frames, sizes, strict=True)):
            frames.append(
                {
                    "index": gof.first_frame + i,
                    "type": FRAME_TYPE_NAMES[rec.frame_type],
                    "gof": len(gofs) - 1,
                    "block_modes": bool(rec.flags & FRAME_FLAG_BLOCK_MODES),
                    "bytes": {k: int(s.get(k, 0)) for k in FRAME_CATEGORIES},
                    "total_bytes": int(sum(s.values())),
                }
            )
        frame_sizes.extend(sizes)
        gof_bytes += gof.size
    consumed = cf.count
    trailing = cf.drain()
    totals = _sum_sections(frame_sizes)
    totals["header"] = reader.header_size
    totals["container"] = consumed - reader.header_size - sum(totals[k] for k in FRAME_CATEGORIES)
    if trailing:
        totals["trailing"] = trailing
    file_bytes = consumed + trailing
    assert sum(totals.values()) == file_bytes
    raw = raw_float32_bytes(h.grid_shape, h.num_channels, h.num_frames)
    header = {
        "format_version": f"{major}.{minor}",
        "has_decoder": bool(flags & 1),
        "num_frames": h.num_frames,
        "first_frame": h.first_frame,
        "frames": [h.first_frame, h.first_frame + h.num_frames],
        "fps": h.fps,
        "grid_shape": list(h.grid_shape),
        "feature_channels": h.feature_channels,
        "xyz_min": list(h.xyz_min),
        "xyz_max": list(h.xyz_max),
        "density_shift": h.density_shift,
        "motion_block": h.motion_block,
        "coder_id": h.coder_id,
        "coder": CODER_NAMES.get(h.coder_id, "unknown"),
        "transform_id": h.transform_id,
        "transform": TRANSFORM_NAMES.get(h.transform_id, "unknown"),
        "coeff_mode_id": h.coeff_mode,
        "coeff_mode": COEFF_MODE_NAMES.get(h.coeff_mode, "unknown"),
        "gof_size": h.gof_size,
        "occupancy_threshold": h.occupancy_threshold,
        "encoder": h.meta.get("encoder", {}),
        "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in sorted(h.tensors.items())},
        "header_bytes": reader.header_size,
    }
    return {
        "file_bytes": file_bytes,
        "raw_float32_bytes": raw,
        "compression_ratio": _num(raw / file_bytes) if file_bytes else None,
        "bytes_per_frame": file_bytes / h.num_frames,
        "header": header,
        "gofs": gofs,
        "frames": frames,
        "frame_types": frame_type_summary((f["type"], f["bytes"]) for f in frames),
        "totals": totals,
    }


def encode_byte_totals(report: Any) -> dict[str, int]:
    """Bytes per category (:data:`CATEGORIES`) of an ``EncodeReport``; they add up to its file size."""
    totals = _sum_sections([fr.bytes for fr in report.frames])
    totals["header"] = int(report.header_bytes)
    totals["container"] = int(report.container_bytes)
    return totals


def frame_type_summary(frames: Iterable[tuple[str, dict[str, int]]]) -> dict[str, dict[str, Any]]:
    """Per frame type (``intra``, ``residual``; only types present): frame count, bytes,
    mean bytes per frame and bytes per category (:data:`FRAME_CATEGORIES`).

    ``frames``: ``(type, section_sizes)`` per frame.
    """
    out: dict[str, dict[str, Any]] = {}
    for ftype, sizes in frames:
        e = out.setdefault(
            ftype, {"frames": 0, "bytes": 0, "bytes_per_frame": 0.0, "by_category": dict.fromkeys(FRAME_CATEGORIES, 0)}
        )
        e["frames"] += 1
        for k in FRAME_CATEGORIES:
            v = int(sizes.get(k, 0))
            e["by_category"][k] += v
            e["bytes"] += v
    for e in out.values():
        e["bytes_per_frame"] = e["bytes"] / e["frames"]
    order = {t: i for i, t in enumerate(FRAME_TYPES)}
    return dict(sorted(out.items(), key=lambda kv: order.get(kv[0], len(order))))


def encoded_gofs(path: str | Path, report: Any) -> list[dict[str, Any]]:
    """The GOFs of the file an :class:`EncodeReport` describes (what ``rerf encode --json`` lists).

    Reads only the file's header, index and footer: per GOF its byte offset, bytes on disk
    (chunk framing included), first frame, frame count, qualities (``quality`` = features,
    ``density_quality``; chosen per GOF by rate control) and frames per type.
    """
    with open(path, "rb") as f:
        reader = StreamReader(f)
        entries = reader.read_index()
        file_bytes = f.seek(0, 2)
    if len(entries) != len(report.gof_qualities):
        raise RuntimeError(f"{path}: {len(entries)} GOFs in the index, the encoder reported {len(report.gof_qualities)}")
    index_chunk = bitstream.CHUNK_HEAD.size + 4 + bitstream.INDEX_ENTRY.size * len(entries) + 4
    ends = [e.offset for e in entries[1:]] + [file_bytes - bitstream.FOOTER.size - index_chunk]
    types = {fr.index: fr.frame_type for fr in report.frames}
    reasons = {fr.index: fr.gof_start for fr in report.frames}
    out = []
    for e, end, (qd, qf) in zip(entries, ends, report.gof_qualities, strict=True):
        ts = [types.get(i) for i in range(e.first_frame, e.first_frame + e.num_frames)]
        out.append(
            {
                "first_frame": e.first_frame,
                "num_frames": e.num_frames,
                "quality": qf,
                "density_quality": qd,
                "bytes": end - e.offset,
                "offset": e.offset,
                "start_reason": reasons.get(e.first_frame),
                "frame_types": {t: ts.count(t) for t in FRAME_TYPES if t in ts},
            }
        )
    return out
