"""The ``.rerf`` container: one writer and one reader that mirror ``bitstreams/FORMAT.md``.

Parsing only: this module turns bytes into frozen dataclasses (and back) and checks
every field as it reads it; it knows nothing about transforms or entropy coding and
never imports torch. Field names follow FORMAT.md. Everything is little-endian.

Layout::

    file    = file_header  chunk*  index_chunk  footer
    chunk   = u8 chunk_type | u8 0 | u16 0 | u32 payload_size | payload | u32 crc32(payload)

A streaming reader (stdin, a socket) decodes GOF chunks in order until the index
chunk; a seeking reader jumps to any GOF through the footer → index.
"""

from __future__ import annotations

import io
import json
import math
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
import zstandard

from rerf_codec.errors import RerfFormatError

MAGIC = b"RERF"
FOOTER_MAGIC = b"RIDX"
VERSION_MAJOR = 1
VERSION_MINOR = 2

# Hand-assigned ids (FORMAT.md "Enumerations"). Never renumber; only append.
CHUNK_GOF = 1
CHUNK_INDEX = 2
FRAME_INTRA = 1
FRAME_RESIDUAL = 2
FRAME_TYPE_NAMES = {FRAME_INTRA: "intra", FRAME_RESIDUAL: "residual"}
FRAME_FLAG_BLOCK_MODES = 1  # frame flags bit 0 (1.2): a residual frame with a modes section (inter/skip/intra blocks)
_FRAME_FLAGS_KNOWN = FRAME_FLAG_BLOCK_MODES
BLOCK_MODE_INTER = 0  # motion-compensated prediction + coded residual (1.2)
BLOCK_MODE_SKIP = 1  # prediction with the superblock's coarse vector, nothing else coded (1.2)
BLOCK_MODE_INTRA = 2  # coded as in a keyframe, prediction 0 (1.2)
BLOCK_MODE_NAMES = {BLOCK_MODE_INTER: "inter", BLOCK_MODE_SKIP: "skip", BLOCK_MODE_INTRA: "intra"}
# Why a GOF starts (1.2, frame header byte 2 of a GOF's first record; 0 = not recorded, as 1.0/1.1 writers).
GOF_REASON_UNKNOWN = 0
GOF_REASON_FIRST = 1  # the stream's first frame
GOF_REASON_MAX_LENGTH = 2  # the previous GOF reached the maximum length
GOF_REASON_COST = 3  # coding the frame whole cost less than coding it as a residual frame (a cut)
GOF_REASON_LISTED = 4  # the grid sequence lists the frame in "keyframes"
GOF_REASON_LATTICE = 5  # the frame's values do not fit the previous GOF's lattice
GOF_REASON_SEGMENT = 6  # the encoder's segment (its unit of parallel work) starts here
GOF_REASON_NAMES = {
    GOF_REASON_UNKNOWN: "unknown", GOF_REASON_FIRST: "first", GOF_REASON_MAX_LENGTH: "max-length",
    GOF_REASON_COST: "cost", GOF_REASON_LISTED: "listed", GOF_REASON_LATTICE: "lattice",
    GOF_REASON_SEGMENT: "segment",
}
CODER_RANGE = 1  # constriction queue.RangeEncoder/RangeDecoder, Categorical(perfect=False), u32 words LE
TRANSFORM_DCT8_INT = 1  # 8³ DCT-II, integer inverse B=14 G=3 (transform.py)
COEFF_MODE_BANDS = 0  # one table per (group, band) (format 1.0)
COEFF_MODE_CONTEXT = 1  # tables per (group, band, previous-band context), repeatable within a GOF (1.1)
COEFF_MODE_NAMES = {COEFF_MODE_BANDS: "bands", COEFF_MODE_CONTEXT: "context"}
SIDE_INFO_RAW = 0
SIDE_INFO_ZSTD = 1
DTYPE_IDS: dict[int, str] = {
    1: "<f4", 2: "<f2", 3: "<f8", 4: "<i4", 5: "<i8", 6: "|u1", 7: "|i1", 8: "<i2", 9: "<u2", 10: "<u4", 11: "|b1",
}
DTYPE_TO_ID = {np.dtype(v).str: k for k, v in DTYPE_IDS.items()}

# Caps checked before allocating anything (DESIGN.md decision 5).
MAX_GRID_DIM = 2048
MAX_VOXELS = 2**31
MAX_CHANNELS = 256
MAX_FRAME_BYTES = 2 * 2**30  # one dense decoded frame, float32, density + features (a decoder holds ~2-3)
MAX_FRAMES = 1_000_000
MAX_HEADER_SIZE = 256 * 2**20
MAX_JSON_SIZE = 16 * 2**20
MAX_TENSOR_BYTES = 256 * 2**20
MAX_CHUNK_SIZE = 2**31
MAX_GOF_FRAMES = 4096
MAX_SIDE_INFO = 64 * 2**20
N_QMATRIX_GROUPS = 2
QMATRIX_SIZE = 512

FILE_HEADER = struct.Struct("<4sBBHII")  # magic, major, minor, flags, header_size, header_crc32
CHUNK_HEAD = struct.Struct("<BBHI")  # chunk_type, 0, 0, payload_size
FOOTER = struct.Struct("<Q4s")  # index_offset, b"RIDX"
SEQ_CORE = struct.Struct("<IId3HH3d3ddBBBBdH")
GOF_HEAD = struct.Struct("<IHBB")  # first_frame, num_frames, quality_density, quality_features
CHANNEL_PARAMS = struct.Struct("<bxxxiI")  # exponent, pad, fill, qscale  (12 bytes)
FRAME_HEAD = struct.Struct("<BBBB")  # frame_type, flags, gof_reason, reserved
SECTION_NAMES = ("mask", "motion", "side_info", "coeff_words", "mantissa", "modes")
"""The sections of a frame record in order; ``modes`` is present only with FRAME_FLAG_BLOCK_MODES."""
INDEX_ENTRY = struct.Struct("<QIH2x")


# --- data model ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SequenceHeader:
    """Everything a decoder needs before the first GOF (FORMAT.md "Sequence header")."""

    num_frames: int
    first_frame: int
    fps: float
    grid_shape: tuple[int, int, int]
    feature_channels: int
    xyz_min: tuple[float, float, float]
    xyz_max: tuple[float, float, float]
    density_shift: float
    motion_block: int
    coder_id: int
    transform_id: int
    occupancy_threshold: float
    gof_size: int
    qmatrix: np.ndarray  # (2, 512) uint16: group 0 density, group 1 features
    meta: dict[str, Any]  # {"sequence": sequence.json dict, "encoder": config dict}
    tensors: dict[str, np.ndarray] = field(default_factory=dict)  # decoder MLP weights
    coeff_mode: int = COEFF_MODE_BANDS  # coefficient coding mode id (FORMAT.md §4.1, §9.5)

    @property
    def num_channels(self) -> int:
        """Density plus feature channels."""
        return 1 + self.feature_channels


@dataclass(frozen=True)
class ChannelParams:
    """Per-channel coding parameters of one GOF: value = integer × 2**-exponent."""

    exponent: int
    fill: int
    qscale: int


@dataclass(frozen=True)
class FrameRecord:
    """One coded frame: its type and the five byte sections of FORMAT.md."""

    frame_type: int
    mask: bytes
    motion: bytes
    side_info: bytes
    coeff_words: bytes
    mantissa: bytes
    modes: bytes = b""
    """Block modes section (1.2); written exactly when ``flags`` has FRAME_FLAG_BLOCK_MODES."""
    flags: int = 0
    gof_reason: int = GOF_REASON_UNKNOWN
    """Why the GOF starts here (first record of a GOF only; 0 elsewhere)."""

    @property
    def num_sections(self) -> int:
        return len(SECTION_NAMES) if self.flags & FRAME_FLAG_BLOCK_MODES else len(SECTION_NAMES) - 1

    def section_sizes(self) -> dict[str, int]:
        """Bytes per accounting category; they add up to the record's size on disk. The
        modes section counts as motion (prediction information)."""
        return {
            "mask": len(self.mask),
            "motion": len(self.motion) + len(self.modes),
            "coefficients": len(self.coeff_words) + len(self.mantissa),
            "side_info": len(self.side_info) + FRAME_HEAD.size + 4 * self.num_sections,
        }


@dataclass(frozen=True)
class GofChunk:
    """A parsed GOF chunk: header, per-channel parameters and frame records."""

    first_frame: int
    quality_density: int
    quality_features: int
    channels: tuple[ChannelParams, ...]
    frames: tuple[FrameRecord, ...]
    offset: int = -1  # file offset of the chunk (set by the reader)
    size: int = 0  # bytes on disk including chunk framing (set by the reader)

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def frame_range(self) -> range:
        return range(self.first_frame, self.first_frame + len(self.frames))


@dataclass(frozen=True)
class DamagedChunk:
    """A chunk that failed its checks; yielded instead of raising when asked to skip damage."""

    offset: int
    reason: str
    first_frame: int | None = None
    num_frames: int | None = None


@dataclass(frozen=True)
class IndexEntry:
    offset: int
    first_frame: int
    num_frames: int


# --- helpers ------------------------------------------------------------------------------


class _Buf:
    """Bounds-checked little-endian reader over bytes; errors name the structure being read."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def take(self, n: int, field_name: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise RerfFormatError(f"{self.what}: truncated while reading {field_name}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, st: struct.Struct, field_name: str) -> tuple[Any, ...]:
        return st.unpack(self.take(st.size, field_name))

    def u32(self, field_name: str) -> int:
        return int(struct.unpack("<I", self.take(4, field_name))[0])

    def done(self) -> None:
        if self.pos != len(self.data):
            raise RerfFormatError(f"{self.what}: {len(self.data) - self.pos} unexpected trailing bytes")


def _zstd_compress(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=19).compress(data)


_ZSTD_PIECE = 256
"""Compressed bytes fed per step: one step can expand to a few MiB at most (RLE blocks)."""


def _zstd_decompress(data: bytes, limit: int, what: str) -> bytes:
    """One complete zstd frame, at most ``limit`` bytes once decompressed.

    ``ZstdDecompressor.decompress`` trusts a declared content size (ignoring
    ``max_output_size``) and otherwise pre-allocates ``max_output_size``; a crafted
    section could make either huge. So the input is fed in small pieces and the output
    is checked as it grows.
    """
    try:
        declared = zstandard.get_frame_parameters(data).content_size
        if declared != zstandard.CONTENTSIZE_UNKNOWN and declared > limit:
            raise RerfFormatError(f"{what}: declared size {declared} exceeds the limit {limit} bytes")
        dobj = zstandard.ZstdDecompressor().decompressobj()
        out = []
        total = 0
        pos = 0
        while pos < len(data) and not dobj.eof:
            piece = dobj.decompress(data[pos : pos + _ZSTD_PIECE])
            pos += _ZSTD_PIECE
            total += len(piece)
            if total > limit:
                raise RerfFormatError(f"{what}: decompressed size exceeds {limit} bytes")
            out.append(piece)
    except zstandard.ZstdError as exc:
        raise RerfFormatError(f"{what}: corrupt zstd data ({exc})") from None
    if not dobj.eof:
        raise RerfFormatError(f"{what}: corrupt zstd data (incomplete frame)")
    if dobj.unused_data or pos < len(data):
        raise RerfFormatError(f"{what}: trailing bytes after the zstd frame")
    return b"".join(out)


_READ_PIECE = 16 * 2**20


def _bytes_left(f: BinaryIO) -> int | None:
    """Bytes between the position and the end of a seekable input; None when unknown."""
    try:
        if not f.seekable():
            return None
        pos = f.tell()
        end = f.seek(0, io.SEEK_END)
        f.seek(pos)
    except (AttributeError, OSError, ValueError):
        return None
    return end - pos


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    """Read exactly ``n`` bytes. A size field read from a corrupt stream can be huge, and
    ``f.read(n)`` allocates ``n`` bytes up front, so a seekable input is checked against
    its length first and anything else is read in bounded pieces."""
    piece = n
    if n > _READ_PIECE:
        left = _bytes_left(f)
        if left is None:
            piece = _READ_PIECE  # the data may not exist: let memory grow only as it arrives
        elif left < n:
            raise RerfFormatError(f"truncated stream: expected {n} bytes of {what}, got {max(left, 0)}")
    chunks = []
    remaining = n
    while remaining:
        b = f.read(min(remaining, piece))
        if not b:
            raise RerfFormatError(f"truncated stream: expected {n} bytes of {what}, got {n - remaining}")
        chunks.append(b)
        remaining -= len(b)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _read_upto(f: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes, fewer only at the end of the input (raw streams may return short reads)."""
    chunks = []
    remaining = n
    while remaining:
        b = f.read(remaining)
        if not b:
            break
        chunks.append(b)
        remaining -= len(b)
    return b"".join(chunks)


def accept(prefix: bytes) -> bool:
    """True when ``prefix`` starts like a .rerf file (magic sniffing)."""
    return prefix[:4] == MAGIC


# --- sequence header ----------------------------------------------------------------------


def encode_sequence_header(h: SequenceHeader) -> bytes:
    """Serialise the file header (magic, version, size, CRC) and the sequence header payload."""
    body = bytearray()
    body += SEQ_CORE.pack(
        h.num_frames, h.first_frame, h.fps, *h.grid_shape, h.feature_channels, *h.xyz_min, *h.xyz_max,
        h.density_shift, h.motion_block, h.coder_id, h.transform_id, h.coeff_mode, h.occupancy_threshold, h.gof_size,
    )
    qm = np.asarray(h.qmatrix, dtype="<u2")
    if qm.shape != (N_QMATRIX_GROUPS, QMATRIX_SIZE):
        raise ValueError(f"qmatrix must be (2, 512), got {qm.shape}")
    body += qm.tobytes()
    meta = _zstd_compress(json.dumps(h.meta, sort_keys=True, separators=(",", ":")).encode())
    body += struct.pack("<I", len(meta)) + meta
    tensors = bytearray(struct.pack("<I", len(h.tensors)))
    for name in sorted(h.tensors):
        arr = np.asarray(h.tensors[name])
        dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
        dtype_id = DTYPE_TO_ID.get(np.dtype(dt).str)
        if dtype_id is None:
            raise ValueError(f"tensor {name!r}: unsupported dtype {arr.dtype}")
        raw_name = name.encode()
        tensors += struct.pack("<H", len(raw_name)) + raw_name + struct.pack("<BB", dtype_id, arr.ndim)
        tensors += struct.pack(f"<{arr.ndim}I", *arr.shape)
        tensors += np.ascontiguousarray(arr, dtype=DTYPE_IDS[dtype_id]).tobytes()
    packed = _zstd_compress(bytes(tensors))
    body += struct.pack("<I", len(packed)) + packed
    flags = 1 if h.tensors else 0
    return FILE_HEADER.pack(MAGIC, VERSION_MAJOR, VERSION_MINOR, flags, len(body), zlib.crc32(body)) + bytes(body)


def _check_finite(values: tuple[float, ...], name: str) -> None:
    if not all(np.isfinite(v) for v in values):
        raise RerfFormatError(f"sequence header: {name} is not finite")


def decode_sequence_header(f: BinaryIO) -> tuple[SequenceHeader, int]:
    """Read and validate the file header + sequence header; returns it and its size in bytes."""
    head = _read_upto(f, FILE_HEADER.size)
    if len(head) < 4 or not accept(head):
        raise RerfFormatError("not a .rerf stream (bad magic)")
    if len(head) < FILE_HEADER.size:
        raise RerfFormatError("truncated stream: file header incomplete")
    _magic, major, minor, flags, size, crc = FILE_HEADER.unpack(head)
    if major != VERSION_MAJOR:
        raise RerfFormatError(f"unsupported .rerf version {major}.{minor} (this decoder reads {VERSION_MAJOR}.x)")
    if flags & ~1:
        raise RerfFormatError(f"file header: unknown flags 0x{flags:04x}")
    if size > MAX_HEADER_SIZE:
        raise RerfFormatError(f"file header: header_size {size} exceeds the limit {MAX_HEADER_SIZE}")
    body = _read_exact(f, size, "sequence header")
    if zlib.crc32(body) != crc:
        raise RerfFormatError("sequence header: CRC32 mismatch (corrupt header)")
    b = _Buf(body, "sequence header")
    (num_frames, first_frame, fps, gx, gy, gz, channels, x0, y0, z0, x1, y1, z1, shift, motion_block,
     coder_id, transform_id, coeff_mode, threshold, gof_size) = b.unpack(SEQ_CORE, "core fields")
    grid = (gx, gy, gz)
    if not 1 <= num_frames <= MAX_FRAMES:
        raise RerfFormatError(f"sequence header: num_frames {num_frames} outside 1..{MAX_FRAMES}")
    if first_frame > MAX_FRAMES:
        raise RerfFormatError(f"sequence header: first_frame {first_frame} exceeds {MAX_FRAMES}")
    if not (np.isfinite(fps) and fps > 0):
        raise RerfFormatError(f"sequence header: fps {fps} is not a positive number")
    if min(grid) < 1 or max(grid) > MAX_GRID_DIM or gx * gy * gz > MAX_VOXELS:
        raise RerfFormatError(f"sequence header: grid_shape {grid} outside the limits (1..{MAX_GRID_DIM} per axis)")
    if not 1 <= channels <= MAX_CHANNELS:
        raise RerfFormatError(f"sequence header: feature_channels {channels} outside 1..{MAX_CHANNELS}")
    if gx * gy * gz * (1 + channels) * 4 > MAX_FRAME_BYTES:
        raise RerfFormatError(
            f"sequence header: a {gx}x{gy}x{gz}x{1 + channels} frame exceeds the {MAX_FRAME_BYTES >> 30} GiB decode limit"
        )
    _check_finite((x0, y0, z0, x1, y1, z1), "xyz_min/xyz_max")
    _check_finite((shift, threshold), "density_shift/occupancy_threshold")
    if motion_block != 8:
        raise RerfFormatError(f"sequence header: motion_block {motion_block} unsupported (must be 8)")
    if coder_id != CODER_RANGE:
        raise RerfFormatError(f"sequence header: unknown coder id {coder_id}")
    if transform_id != TRANSFORM_DCT8_INT:
        raise RerfFormatError(f"sequence header: unknown transform id {transform_id}")
    if minor == 0 and coeff_mode != COEFF_MODE_BANDS:
        raise RerfFormatError("sequence header: reserved byte is not zero (a 1.0 stream has no coefficient mode)")
    if coeff_mode not in COEFF_MODE_NAMES:
        raise RerfFormatError(f"sequence header: unknown coefficient coding mode {coeff_mode}")
    if not 1 <= gof_size <= MAX_GOF_FRAMES:
        raise RerfFormatError(f"sequence header: gof_size {gof_size} outside 1..{MAX_GOF_FRAMES}")
    qmatrix = np.frombuffer(b.take(2 * N_QMATRIX_GROUPS * QMATRIX_SIZE, "qmatrix"), dtype="<u2")
    qmatrix = qmatrix.reshape(N_QMATRIX_GROUPS, QMATRIX_SIZE).astype(np.uint16)
    if (qmatrix == 0).any():
        raise RerfFormatError("sequence header: qmatrix has a zero entry")
    meta_raw = _zstd_decompress(b.take(b.u32("meta_size"), "meta"), MAX_JSON_SIZE, "sequence header meta")
    try:
        meta = json.loads(meta_raw)
    except (ValueError, RecursionError):  # also: integers too long to convert, nesting too deep
        raise RerfFormatError("sequence header: meta is not valid JSON") from None
    if not isinstance(meta, dict):
        raise RerfFormatError("sequence header: meta is not a JSON object")
    for key in ("sequence", "encoder"):
        if not isinstance(meta.get(key, {}), dict):
            raise RerfFormatError(f"sequence header: meta field {key!r} is not a JSON object")
    tensors = _parse_tensors(
        _zstd_decompress(b.take(b.u32("tensors_size"), "tensors"), MAX_TENSOR_BYTES, "sequence header tensors")
    )
    b.done()
    if bool(flags & 1) != bool(tensors):
        raise RerfFormatError("file header: has-decoder flag disagrees with the tensor table")
    header = SequenceHeader(
        num_frames=num_frames, first_frame=first_frame, fps=fps, grid_shape=grid, feature_channels=channels,
        xyz_min=(x0, y0, z0), xyz_max=(x1, y1, z1), density_shift=shift, motion_block=motion_block,
        coder_id=coder_id, transform_id=transform_id, occupancy_threshold=threshold, gof_size=gof_size,
        qmatrix=qmatrix, meta=meta, tensors=tensors, coeff_mode=coeff_mode,
    )
    return header, FILE_HEADER.size + size


def _parse_tensors(data: bytes) -> dict[str, np.ndarray]:
    b = _Buf(data, "tensor table")
    count = b.u32("count")
    if count > 4096:
        raise RerfFormatError(f"tensor table: {count} tensors exceeds the limit 4096")
    out: dict[str, np.ndarray] = {}
    for i in range(count):
        (nlen,) = b.unpack(struct.Struct("<H"), f"tensor {i} name length")
        try:
            name = b.take(nlen, f"tensor {i} name").decode()
        except UnicodeDecodeError:
            raise RerfFormatError(f"tensor table: tensor {i} name is not UTF-8") from None
        dtype_id, ndim = b.unpack(struct.Struct("<BB"), f"tensor {name!r} dtype")
        if dtype_id not in DTYPE_IDS:
            raise RerfFormatError(f"tensor table: tensor {name!r} has unknown dtype id {dtype_id}")
        if ndim > 8:
            raise RerfFormatError(f"tensor table: tensor {name!r} has {ndim} dimensions (max 8)")
        shape = b.unpack(struct.Struct(f"<{ndim}I"), f"tensor {name!r} shape")
        dt = np.dtype(DTYPE_IDS[dtype_id])
        nbytes = math.prod(shape) * dt.itemsize  # Python ints: a numpy product could wrap
        if nbytes > MAX_TENSOR_BYTES:
            raise RerfFormatError(f"tensor table: tensor {name!r} is too large")
        arr = np.frombuffer(b.take(nbytes, f"tensor {name!r} data"), dtype=dt).reshape(shape)
        if name in out:
            raise RerfFormatError(f"tensor table: duplicate tensor {name!r}")
        out[name] = arr.astype(dt.newbyteorder("="))
    b.done()
    return out


# --- GOF chunks ---------------------------------------------------------------------------


def encode_side_info(raw: bytes) -> bytes:
    """Side info section: a mode byte then the table bytes, zstd'd only when that is smaller."""
    packed = _zstd_compress(raw)
    if len(packed) < len(raw):
        return bytes([SIDE_INFO_ZSTD]) + packed
    return bytes([SIDE_INFO_RAW]) + raw


def decode_side_info(section: bytes) -> bytes:
    if not section:
        raise RerfFormatError("frame record: empty side info section")
    mode = section[0]
    if mode == SIDE_INFO_RAW:
        return section[1:]
    if mode == SIDE_INFO_ZSTD:
        return _zstd_decompress(section[1:], MAX_SIDE_INFO, "side info")
    raise RerfFormatError(f"frame record: unknown side info mode {mode}")


def encode_gof_payload(gof: GofChunk) -> bytes:
    out = bytearray(GOF_HEAD.pack(gof.first_frame, len(gof.frames), gof.quality_density, gof.quality_features))
    for ch in gof.channels:
        out += CHANNEL_PARAMS.pack(ch.exponent, ch.fill, ch.qscale)
    for fr in gof.frames:
        if fr.modes and not fr.flags & FRAME_FLAG_BLOCK_MODES:
            raise ValueError("a modes section needs the block_modes frame flag")
        out += FRAME_HEAD.pack(fr.frame_type, fr.flags, fr.gof_reason, 0)
        for name in SECTION_NAMES[: fr.num_sections]:
            data = getattr(fr, name)
            out += struct.pack("<I", len(data)) + data
    return bytes(out)


def decode_gof_payload(payload: bytes, header: SequenceHeader) -> GofChunk:
    """Parse a GOF payload, checking every field against the sequence header."""
    b = _Buf(payload, "GOF chunk")
    first, n, qd, qf = b.unpack(GOF_HEAD, "GOF header")
    last = header.first_frame + header.num_frames
    if not 1 <= n <= MAX_GOF_FRAMES:
        raise RerfFormatError(f"GOF chunk: num_frames {n} outside 1..{MAX_GOF_FRAMES}")
    if first < header.first_frame or first + n > last:
        raise RerfFormatError(f"GOF chunk: frames {first}..{first + n - 1} outside the sequence")
    if not (1 <= qd <= 100 and 1 <= qf <= 100):
        raise RerfFormatError(f"GOF chunk at frame {first}: quality {qd}/{qf} outside 1..100")
    channels = []
    for c in range(header.num_channels):
        raw = b.take(CHANNEL_PARAMS.size, f"channel {c} parameters")
        if raw[1:4] != b"\0\0\0":
            raise RerfFormatError(f"GOF chunk at frame {first}: channel {c} padding bytes are not zero")
        e, fill, qscale = CHANNEL_PARAMS.unpack(raw)
        if not -64 <= e <= 64:
            raise RerfFormatError(f"GOF chunk at frame {first}: channel {c} exponent {e} outside -64..64")
        if abs(fill) >= 2**24:
            raise RerfFormatError(f"GOF chunk at frame {first}: channel {c} fill {fill} out of range")
        if qscale < 1:
            raise RerfFormatError(f"GOF chunk at frame {first}: channel {c} qscale is zero")
        channels.append(ChannelParams(e, fill, qscale))
    frames = []
    for i in range(n):
        ftype, flags, reason, reserved = b.unpack(FRAME_HEAD, f"frame {first + i} header")
        if ftype not in FRAME_TYPE_NAMES:
            raise RerfFormatError(f"frame {first + i}: unknown frame type {ftype}")
        if i == 0 and ftype != FRAME_INTRA:
            raise RerfFormatError(f"frame {first}: a GOF must start with an intra frame")
        if reserved or flags & ~_FRAME_FLAGS_KNOWN:
            raise RerfFormatError(f"frame {first + i}: reserved header bits set")
        if flags & FRAME_FLAG_BLOCK_MODES and ftype != FRAME_RESIDUAL:
            raise RerfFormatError(f"frame {first + i}: the block_modes flag is set on a frame that is not residual")
        if reason not in GOF_REASON_NAMES or (reason and i):
            raise RerfFormatError(f"frame {first + i}: invalid GOF reason {reason}")
        count = len(SECTION_NAMES) if flags & FRAME_FLAG_BLOCK_MODES else len(SECTION_NAMES) - 1
        sections = [
            b.take(b.u32(f"frame {first + i} {name} size"), f"frame {first + i} {name}") for name in SECTION_NAMES[:count]
        ]
        mask, motion, side_info, coeff_words, mantissa = sections[:5]
        modes = sections[5] if len(sections) > 5 else b""
        frames.append(
            FrameRecord(ftype, mask, motion, side_info, coeff_words, mantissa, modes, flags=flags, gof_reason=reason)
        )
    b.done()
    return GofChunk(first, qd, qf, tuple(channels), tuple(frames))


def _chunk_bytes(chunk_type: int, payload: bytes) -> bytes:
    return CHUNK_HEAD.pack(chunk_type, 0, 0, len(payload)) + payload + struct.pack("<I", zlib.crc32(payload))


# --- writer -------------------------------------------------------------------------------


class StreamWriter:
    """Writes header, GOF chunks, then index + footer (``finish``). Tracks offsets itself,
    so it also works on non-seekable outputs."""

    def __init__(self, f: BinaryIO, header: SequenceHeader) -> None:
        self._f = f
        data = encode_sequence_header(header)
        f.write(data)
        self._pos = len(data)
        self.header_size = len(data)
        self._index: list[IndexEntry] = []
        self._next_frame = header.first_frame
        self._end = header.first_frame + header.num_frames

    def write_gof(self, gof: GofChunk) -> int:
        """Append one GOF chunk; returns its size on disk."""
        if gof.first_frame != self._next_frame:
            raise ValueError(f"GOF starts at {gof.first_frame}, expected {self._next_frame}")
        data = _chunk_bytes(CHUNK_GOF, encode_gof_payload(gof))
        if len(data) > MAX_CHUNK_SIZE:
            raise ValueError("GOF chunk exceeds the 2 GiB chunk limit; use shorter GOFs")
        self._index.append(IndexEntry(self._pos, gof.first_frame, gof.num_frames))
        self._f.write(data)
        self._pos += len(data)
        self._next_frame += gof.num_frames
        return len(data)

    def finish(self) -> int:
        """Write the index chunk and the footer; returns the bytes they took."""
        if self._next_frame != self._end:
            raise ValueError(f"stream ends at frame {self._next_frame}, header promised {self._end}")
        payload = struct.pack("<I", len(self._index)) + b"".join(
            INDEX_ENTRY.pack(e.offset, e.first_frame, e.num_frames) for e in self._index
        )
        data = _chunk_bytes(CHUNK_INDEX, payload) + FOOTER.pack(self._pos, FOOTER_MAGIC)
        self._f.write(data)
        self._pos += len(data)
        return len(data)

    @property
    def bytes_written(self) -> int:
        return self._pos


# --- reader -------------------------------------------------------------------------------


def _parse_index(payload: bytes, header: SequenceHeader, first_offset: int, index_offset: int) -> list[IndexEntry]:
    """Parse and check the index: entries tile the frames and point, in order, between the
    sequence header (``first_offset``) and the index chunk itself (``index_offset``)."""
    b = _Buf(payload, "index chunk")
    n = b.u32("num_gofs")
    if n > header.num_frames:
        raise RerfFormatError(f"index chunk: {n} GOFs for {header.num_frames} frames")
    entries = [IndexEntry(*b.unpack(INDEX_ENTRY, f"index entry {i}")) for i in range(n)]
    b.done()
    expect = header.first_frame
    min_chunk = CHUNK_HEAD.size + 4
    next_offset = first_offset
    for e in entries:
        if e.first_frame != expect or e.num_frames < 1:
            raise RerfFormatError("index chunk: GOF entries do not tile the sequence")
        if not next_offset <= e.offset <= index_offset - min_chunk:
            raise RerfFormatError(f"index chunk: GOF offset {e.offset} is out of order or outside the file")
        expect += e.num_frames
        next_offset = e.offset + min_chunk
    if expect != header.first_frame + header.num_frames:
        raise RerfFormatError("index chunk: GOF entries do not cover the sequence")
    return entries


class StreamReader:
    """Reads a .rerf stream. Works on non-seekable inputs for sequential GOF iteration;
    ``read_index`` / ``read_gof_at`` need a seekable file."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self.header, self.header_size = decode_sequence_header(f)
        self._pos = self.header_size
        self._expect = self.header.first_frame

    @property
    def seekable(self) -> bool:
        try:
            return bool(self._f.seekable())
        except (AttributeError, ValueError, io.UnsupportedOperation):
            return False

    def _read_chunk(self) -> tuple[int, bytes, int, str | None]:
        """Read one chunk at the current position: (type, payload, offset, crc_error)."""
        offset = self._pos
        head = _read_exact(self._f, CHUNK_HEAD.size, "chunk header")
        ctype, r0, r1, size = CHUNK_HEAD.unpack(head)
        if ctype not in (CHUNK_GOF, CHUNK_INDEX) or r0 or r1:
            raise RerfFormatError(f"chunk at byte {offset}: unknown chunk type {ctype} (corrupt stream)")
        if size > MAX_CHUNK_SIZE:
            raise RerfFormatError(f"chunk at byte {offset}: size {size} exceeds the limit")
        payload = _read_exact(self._f, size, "chunk payload")
        (crc,) = struct.unpack("<I", _read_exact(self._f, 4, "chunk CRC32"))
        self._pos = offset + CHUNK_HEAD.size + size + 4
        err = None if zlib.crc32(payload) == crc else f"CRC32 mismatch in chunk at byte {offset}"
        return ctype, payload, offset, err

    def iter_gofs(self, *, skip_damaged: bool = False) -> Iterator[GofChunk | DamagedChunk]:
        """Yield GOF chunks in order until the index chunk, then check index + footer.

        With ``skip_damaged`` a GOF chunk that fails its CRC or parse is yielded as
        :class:`DamagedChunk` (its length prefix lets the reader go on); otherwise it raises.
        """
        expect = self._expect
        end = self.header.first_frame + self.header.num_frames
        floor = None  # after damage: the end of the last good GOF, from where a good GOF may resync
        seen: list[IndexEntry] = []
        while True:
            ctype, payload, offset, err = self._read_chunk()
            if ctype == CHUNK_INDEX:
                if err:
                    raise RerfFormatError(f"index chunk: {err}")
                listed = set(_parse_index(payload, self.header, self.header_size, offset))
                if any(e not in listed for e in seen):
                    raise RerfFormatError("index chunk: entries disagree with the GOF chunks read")
                if expect != end and not skip_damaged:
                    raise RerfFormatError(f"stream ends at frame {expect}, header promised {end}")
                footer = _read_exact(self._f, FOOTER.size, "footer")
                index_offset, magic = FOOTER.unpack(footer)
                if magic != FOOTER_MAGIC or index_offset != offset:
                    raise RerfFormatError("footer: bad magic or index offset")
                return
            size = CHUNK_HEAD.size + len(payload) + 4
            try:
                if err:
                    raise RerfFormatError(err)
                gof = decode_gof_payload(payload, self.header)
                if gof.first_frame != expect and not (floor is not None and gof.first_frame >= floor):
                    raise RerfFormatError(f"GOF chunk at byte {offset} starts at frame {gof.first_frame}, expected {expect}")
            except RerfFormatError as exc:
                if not skip_damaged:
                    raise
                n = _guess_num_frames(payload, end - expect)
                yield DamagedChunk(offset, str(exc), expect, n)
                if floor is None:
                    floor = expect
                if n is not None:
                    expect += n
                continue
            # A damaged chunk's frame count is only a guess: an intact GOF after it that
            # starts at or after the last intact frame is trusted and resynchronises.
            floor = None
            expect = gof.first_frame + gof.num_frames
            seen.append(IndexEntry(offset, gof.first_frame, gof.num_frames))
            yield _with_position(gof, offset, size)

    def read_index(self) -> list[IndexEntry]:
        """Read the GOF index through the footer (seekable inputs only)."""
        if not self.seekable:
            raise RerfFormatError("cannot seek in this input; the index needs a seekable file")
        self._f.seek(0, io.SEEK_END)
        total = self._f.tell()
        if total < self.header_size + FOOTER.size:
            raise RerfFormatError("truncated stream: no room for the footer")
        self._f.seek(total - FOOTER.size)
        index_offset, magic = FOOTER.unpack(_read_exact(self._f, FOOTER.size, "footer"))
        if magic != FOOTER_MAGIC or not self.header_size <= index_offset < total - FOOTER.size:
            raise RerfFormatError("footer: bad magic or index offset (truncated or corrupt stream)")
        self._f.seek(index_offset)
        self._pos = index_offset
        ctype, payload, _, err = self._read_chunk()
        if ctype != CHUNK_INDEX or err:
            raise RerfFormatError(f"index chunk: {err or 'not an index chunk'}")
        if self._pos != total - FOOTER.size:
            raise RerfFormatError("footer: trailing bytes after the index chunk")
        return _parse_index(payload, self.header, self.header_size, index_offset)

    def read_gof_at(self, entry: IndexEntry) -> GofChunk:
        """Read and verify the GOF chunk an index entry points to."""
        self._f.seek(entry.offset)
        self._pos = entry.offset
        ctype, payload, offset, err = self._read_chunk()
        if ctype != CHUNK_GOF:
            raise RerfFormatError(f"index points at byte {offset}, which is not a GOF chunk")
        if err:
            raise RerfFormatError(err)
        gof = decode_gof_payload(payload, self.header)
        if gof.first_frame != entry.first_frame or gof.num_frames != entry.num_frames:
            raise RerfFormatError(f"GOF at byte {offset} disagrees with the index")
        return _with_position(gof, offset, CHUNK_HEAD.size + len(payload) + 4)

    def seek_to(self, entry: IndexEntry) -> None:
        """Position the sequential reader at a GOF chunk (then ``iter_gofs`` continues from there)."""
        self._f.seek(entry.offset)
        self._pos = entry.offset
        self._expect = entry.first_frame


def _with_position(gof: GofChunk, offset: int, size: int) -> GofChunk:
    return GofChunk(gof.first_frame, gof.quality_density, gof.quality_features, gof.channels, gof.frames, offset, size)


def _guess_num_frames(payload: bytes, frames_left: int) -> int | None:
    """Frame count claimed by a damaged GOF payload (used only to report which frames are lost)."""
    if len(payload) < GOF_HEAD.size:
        return None
    _, n, _, _ = GOF_HEAD.unpack_from(payload)
    return int(n) if 1 <= n <= min(MAX_GOF_FRAMES, frames_left) else None
