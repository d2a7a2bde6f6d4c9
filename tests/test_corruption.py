"""Bad input: truncated, corrupted, crafted and fuzzed ``.rerf`` streams.

Every case must end in :class:`RerfFormatError` with one readable line (or, for data
that is garbage but well formed, in decoded frames), never in another exception, a
hang or a huge allocation (DESIGN.md decision 5: caps checked before allocating).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import random
import signal
import struct
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest
import zstandard

from rerf_codec import bitstream as bs
from rerf_codec.codec.decoder import DamagedFrames, DecodedFrame, Decoder, decode_all
from rerf_codec.codec.encoder import EncoderConfig, encode_frames
from rerf_codec.codec.entropy import UNUSED, Table, read_tables, write_tables
from rerf_codec.codec.intra import parse_intra
from rerf_codec.errors import RerfFormatError
from rerf_codec.grids import GridFrame, SequenceMeta
from rerf_codec.synthetic import SyntheticSpec, synthetic_frames, synthetic_meta

SPEC = SyntheticSpec(shape=(24, 20, 17), feature_channels=3, num_frames=5, occupancy=0.3, seed=1)
GOF = 2
CASE_SECONDS = 5.0
"""Wall-clock guard of one decode (normal decodes of this stream take ~10 ms)."""
ALLOC_LIMIT = 50 * 2**20
"""Peak traced allocation allowed while rejecting a malicious header or size field."""
N_TABLES = 2 * 23
CORE_FIELDS = (
    "num_frames", "first_frame", "fps", "gx", "gy", "gz", "channels", "x0", "y0", "z0", "x1", "y1", "z1",
    "shift", "motion_block", "coder_id", "transform_id", "coeff_mode", "threshold", "gof_size",
)


# --- the stream under test -----------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    offset: int
    ctype: int
    payload: bytes

    @property
    def end(self) -> int:
        return self.offset + bs.CHUNK_HEAD.size + len(self.payload) + 4


@dataclass(frozen=True)
class Stream:
    data: bytes
    header: bs.SequenceHeader
    header_size: int
    gofs: list[Chunk]
    index: Chunk
    ranges: list[range]  # frame range of each GOF
    ref: list[GridFrame]  # undamaged decode, by frame number

    @property
    def footer_offset(self) -> int:
        return self.index.end


def _chunks(data: bytes, start: int) -> list[Chunk]:
    out = []
    pos = start
    while pos < len(data) - bs.FOOTER.size:
        ctype, _, _, size = bs.CHUNK_HEAD.unpack_from(data, pos)
        payload = data[pos + bs.CHUNK_HEAD.size : pos + bs.CHUNK_HEAD.size + size]
        out.append(Chunk(pos, ctype, payload))
        pos = out[-1].end
    assert pos == len(data) - bs.FOOTER.size
    return out


@pytest.fixture(scope="module")
def stream() -> Stream:
    meta = SequenceMeta.from_json_dict(synthetic_meta(SPEC), "synthetic")
    frames = [(i, GridFrame(d, f)) for i, (d, f, _m) in enumerate(synthetic_frames(SPEC))]
    buf = io.BytesIO()
    encode_frames(meta, frames, buf, EncoderConfig(gof=GOF, coeff_mode=0))  # the crafted tables below are mode 0
    data = buf.getvalue()
    reader = bs.StreamReader(io.BytesIO(data))
    chunks = _chunks(data, reader.header_size)
    gofs = [c for c in chunks if c.ctype == bs.CHUNK_GOF]
    assert chunks[-1].ctype == bs.CHUNK_INDEX and len(gofs) == len(chunks) - 1 == 3
    ranges = [bs.decode_gof_payload(g.payload, reader.header).frame_range for g in gofs]
    decoded, _ = decode_all(io.BytesIO(data))
    assert [d.index for d in decoded] == list(range(SPEC.num_frames))
    return Stream(data, reader.header, reader.header_size, gofs, chunks[-1], ranges, [d.frame for d in decoded])


# --- helpers --------------------------------------------------------------------------------


class CaseTimeout(Exception):
    """A single decode ran past its wall-clock guard."""


@contextlib.contextmanager
def deadline(seconds: float = CASE_SECONDS) -> Iterator[None]:
    """Fail a case that runs longer than ``seconds`` (SIGALRM interrupts a Python-level loop)."""
    use_alarm = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if use_alarm:

        def on_alarm(signum: int, frame: object) -> None:
            raise CaseTimeout(f"decode did not finish within {seconds} s")

        old = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.monotonic()
    try:
        yield
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    assert time.monotonic() - start < seconds, "decode took too long"


class Pipe(io.RawIOBase):
    """A non-seekable input that hands out short reads, like stdin on a pipe."""

    def __init__(self, data: bytes, max_read: int = 1000) -> None:
        self._src = io.BytesIO(data)
        self._max = max_read

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        piece = self._src.read(min(len(b), self._max))
        b[: len(piece)] = piece
        return len(piece)


def check_message(exc: BaseException) -> str:
    msg = str(exc)
    assert msg.strip() and "\n" not in msg, f"not one readable line: {msg!r}"
    return msg


def fails(data: bytes, contains: str | None = None, frames: range | None = None) -> str:
    """Decoding ``data`` raises RerfFormatError (any other exception propagates and fails the test)."""
    with deadline(), pytest.raises(RerfFormatError) as info:
        decode_all(io.BytesIO(data), frames)
    msg = check_message(info.value)
    if contains is not None:
        assert contains.lower() in msg.lower(), msg
    return msg


def outcome(data: bytes, *, seekable_range: bool = True) -> str:
    """Decode every way the decoder can; each must succeed or raise RerfFormatError."""
    results = []
    with deadline():
        try:
            frames, _ = decode_all(io.BytesIO(data))
            for d in frames:
                assert d.frame.density.dtype == np.float32 and d.frame.features.dtype == np.float32
                assert np.isfinite(d.frame.density).all() and np.isfinite(d.frame.features).all()
            results.append("ok")
        except RerfFormatError as exc:
            check_message(exc)
            results.append("error")
    with deadline():
        try:
            dec = Decoder(io.BytesIO(data))
            dec.sequence_meta()
            # (after a clean decode, skipping damage would decode the same frames again)
            for item in dec.frames(skip_damaged=True) if results[0] == "error" else ():
                assert isinstance(item, DecodedFrame | DamagedFrames)
                if isinstance(item, DamagedFrames):
                    check_message(RerfFormatError(item.reason))
        except RerfFormatError as exc:
            check_message(exc)
    if seekable_range:
        with deadline():
            try:
                dec = Decoder(io.BytesIO(data))
                start = dec.frame_range.start
                list(dec.frames(range(start + 2, min(start + 4, dec.frame_range.stop))))
            except RerfFormatError as exc:
                check_message(exc)
    return results[0]


def same(a: GridFrame, b: GridFrame) -> bool:
    return (
        a.density.dtype == b.density.dtype
        and np.array_equal(a.density, b.density)
        and np.array_equal(a.features, b.features)
    )


def flip(data: bytes, pos: int, mask: int = 0x5A) -> bytes:
    out = bytearray(data)
    out[pos] ^= mask
    return bytes(out)


def rebuild(s: Stream, payloads: list[bytes]) -> bytes:
    """The stream with new GOF payloads: CRCs, index offsets and footer recomputed."""
    out = bytearray(s.data[: s.header_size])
    entries = []
    for payload, r in zip(payloads, s.ranges, strict=True):
        entries.append(bs.INDEX_ENTRY.pack(len(out), r.start, len(r)))
        out += bs.CHUNK_HEAD.pack(bs.CHUNK_GOF, 0, 0, len(payload)) + payload + struct.pack("<I", zlib.crc32(payload))
    index_offset = len(out)
    index = struct.pack("<I", len(entries)) + b"".join(entries)
    out += bs.CHUNK_HEAD.pack(bs.CHUNK_INDEX, 0, 0, len(index)) + index + struct.pack("<I", zlib.crc32(index))
    out += bs.FOOTER.pack(index_offset, bs.FOOTER_MAGIC)
    return bytes(out)


def with_gof(s: Stream, k: int, gof: bs.GofChunk | bytes) -> bytes:
    """The stream with GOF ``k`` replaced (a GofChunk is re-encoded), CRC-valid."""
    payload = gof if isinstance(gof, bytes) else bs.encode_gof_payload(gof)
    payloads = [g.payload for g in s.gofs]
    payloads[k] = payload
    return rebuild(s, payloads)


def gof(s: Stream, k: int) -> bs.GofChunk:
    return bs.decode_gof_payload(s.gofs[k].payload, s.header)


def with_header(s: Stream, body: bytes, *, flags: int | None = None, rest: bytes | None = None) -> bytes:
    """A new sequence header body with a correct CRC, followed by ``rest`` (default: the GOFs etc.)."""
    magic, major, minor, old_flags, _, _ = bs.FILE_HEADER.unpack_from(s.data)
    head = bs.FILE_HEADER.pack(magic, major, minor, old_flags if flags is None else flags, len(body), zlib.crc32(body))
    if rest is None:
        # offsets after the header shift when its size changes: rebuild index and footer
        delta = bs.FILE_HEADER.size + len(body) - s.header_size
        rest = rebuild(s, [g.payload for g in s.gofs])[s.header_size :]
        if delta:
            return head + body + _shift_offsets(rest, delta, s)
    return head + body + rest


def _shift_offsets(rest: bytes, delta: int, s: Stream) -> bytes:
    out = bytearray(rest)
    index_pos = s.index.offset - s.header_size
    payload = bytearray(out[index_pos + 8 : index_pos + 8 + len(s.index.payload)])
    for i in range(len(s.gofs)):
        pos = 4 + i * bs.INDEX_ENTRY.size
        off, first, n = bs.INDEX_ENTRY.unpack_from(payload, pos)
        bs.INDEX_ENTRY.pack_into(payload, pos, off + delta, first, n)
    out[index_pos + 8 : index_pos + 8 + len(payload)] = payload
    struct.pack_into("<I", out, index_pos + 8 + len(payload), zlib.crc32(payload))
    struct.pack_into("<Q", out, len(out) - bs.FOOTER.size, s.index.offset + delta)
    return bytes(out)


def header_body(s: Stream) -> bytes:
    return s.data[bs.FILE_HEADER.size : s.header_size]


def with_core(s: Stream, **changes: float) -> bytes:
    """The stream with sequence-header core fields changed (CRC fixed)."""
    body = bytearray(header_body(s))
    values = dict(zip(CORE_FIELDS, bs.SEQ_CORE.unpack_from(body), strict=True))
    assert set(changes) <= set(values)
    values.update(changes)
    bs.SEQ_CORE.pack_into(body, 0, *(values[f] for f in CORE_FIELDS))
    return with_header(s, bytes(body))


def header_sections(s: Stream) -> tuple[bytes, bytes, bytes]:
    """(core + qmatrix, meta zstd, tensors zstd) of the sequence header body."""
    body = header_body(s)
    pos = bs.SEQ_CORE.size + 2 * bs.N_QMATRIX_GROUPS * bs.QMATRIX_SIZE
    (meta_size,) = struct.unpack_from("<I", body, pos)
    meta = body[pos + 4 : pos + 4 + meta_size]
    (tensors_size,) = struct.unpack_from("<I", body, pos + 4 + meta_size)
    tensors = body[pos + 8 + meta_size : pos + 8 + meta_size + tensors_size]
    assert pos + 8 + meta_size + tensors_size == len(body)
    return body[:pos], meta, tensors


def with_sections(s: Stream, *, meta: bytes | None = None, tensors: bytes | None = None, flags: int | None = None) -> bytes:
    fixed, old_meta, old_tensors = header_sections(s)
    meta = old_meta if meta is None else meta
    tensors = old_tensors if tensors is None else tensors
    body = fixed + struct.pack("<I", len(meta)) + meta + struct.pack("<I", len(tensors)) + tensors
    return with_header(s, body, flags=flags)


def forged_zstd(content_size: int) -> bytes:
    """A tiny zstd frame whose header claims ``content_size`` bytes (a decompression bomb)."""
    small = zstandard.ZstdCompressor(level=3).compress(b"abc")
    assert small[4] == 0x20  # single segment, 1-byte content size
    return small[:4] + bytes([0xE0]) + content_size.to_bytes(8, "little") + small[6:]


@contextlib.contextmanager
def bounded_allocation(limit: int = ALLOC_LIMIT) -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < limit, f"peak allocation {peak / 2**20:.0f} MiB"


# --- truncation ----------------------------------------------------------------------------


def _cut_points(s: Stream) -> list[int]:
    cuts = {0, 1, 3, 4, 5, 15, 16, 17, s.header_size - 1, s.header_size}
    cuts.update(range(0, s.header_size, 97))
    for c in [*s.gofs, s.index]:
        size = len(c.payload)
        cuts.update({c.offset, c.offset + 1, c.offset + 4, c.offset + 7, c.offset + 8, c.offset + 9})
        cuts.update(c.offset + 8 + size * j // 7 for j in range(1, 7))
        cuts.update({c.end - 5, c.end - 4, c.end - 3, c.end - 1, c.end})
    cuts.update(range(len(s.data) - 40, len(s.data)))
    return sorted(p for p in cuts if 0 <= p < len(s.data))


def test_truncated_in_header_or_gofs(stream: Stream) -> None:
    s = stream
    cuts = [n for n in _cut_points(s) if n < s.index.offset]
    assert {g.offset for g in s.gofs} <= set(cuts)
    for n in cuts:
        msg = fails(s.data[:n])
        if n >= bs.FILE_HEADER.size:
            assert "truncated" in msg.lower(), (n, msg)


def test_truncated_in_index_or_footer(stream: Stream) -> None:
    """A full decode reads the index chunk and the footer too, so a cut there is reported."""
    s = stream
    cuts = [n for n in _cut_points(s) if n >= s.index.offset]
    assert len(s.data) - 1 in cuts and set(range(len(s.data) - 40, len(s.data))) <= set(cuts)
    for n in cuts:
        fails(s.data[:n], contains="truncated")


def test_truncated_range_decode_uses_index_and_fails(stream: Stream) -> None:
    """A range that does not start at frame 0 goes through footer → index: truncation is caught there."""
    s = stream
    for n in [s.header_size, *(g.offset for g in s.gofs), s.index.offset, s.footer_offset, *range(len(s.data) - 40, len(s.data))]:
        fails(s.data[:n], frames=range(2, 4))


def _stream_items(data: bytes, **kw: bool) -> tuple[list[DecodedFrame | DamagedFrames], RerfFormatError | None]:
    items: list[DecodedFrame | DamagedFrames] = []
    with deadline():
        try:
            for item in Decoder(Pipe(data)).frames(**kw):
                items.append(item)
        except RerfFormatError as exc:
            check_message(exc)
            return items, exc
    return items, None


def test_streaming_truncation_yields_complete_gofs_then_fails(stream: Stream) -> None:
    s = stream
    items, err = _stream_items(s.data)
    assert err is None and all(same(d.frame, s.ref[d.index]) for d in items) and len(items) == SPEC.num_frames
    for n in _cut_points(s):
        items, err = _stream_items(s.data[:n])
        assert isinstance(err, RerfFormatError), n
        complete = [i for g, r in zip(s.gofs, s.ranges, strict=True) if g.end <= n for i in r]
        assert [d.index for d in items] == complete, n
        assert all(isinstance(d, DecodedFrame) and same(d.frame, s.ref[d.index]) for d in items)


def test_pipe_with_one_byte_reads(stream: Stream) -> None:
    """Short reads from a raw stream (even one byte at a time) are not mistaken for the end."""
    with deadline():
        items = list(Decoder(Pipe(stream.data, max_read=1)).frames())
    assert len(items) == SPEC.num_frames


# --- flipped bytes -------------------------------------------------------------------------


def test_flipped_byte_in_each_gof_is_a_crc_error(stream: Stream) -> None:
    s = stream
    for k, (g, r) in enumerate(zip(s.gofs, s.ranges, strict=True)):
        for pos in (g.offset + 8 + GOF_HEAD_SKIP, g.offset + 8 + len(g.payload) // 2, g.end - 5):
            bad = flip(s.data, pos)
            fails(bad, contains="CRC")
            for source in (io.BytesIO(bad), Pipe(bad)):
                with deadline():
                    items = list(Decoder(source).frames(skip_damaged=True))
                damaged = [i for i in items if isinstance(i, DamagedFrames)]
                assert len(damaged) == 1, (k, pos)
                assert damaged[0].frames == r and damaged[0].offset == g.offset
                assert "crc" in damaged[0].reason.lower()
                good = [i for i in items if isinstance(i, DecodedFrame)]
                assert [d.index for d in good] == [i for i in range(SPEC.num_frames) if i not in r]
                assert all(same(d.frame, s.ref[d.index]) for d in good)


GOF_HEAD_SKIP = bs.GOF_HEAD.size + 3  # a byte inside the channel parameters, past the frame count


def test_flipped_crc_index_or_footer(stream: Stream) -> None:
    s = stream
    for g in s.gofs:
        fails(flip(s.data, g.end - 1), contains="CRC")  # the stored CRC itself
        fails(flip(s.data, g.offset, 0x04))  # chunk type
        fails(flip(s.data, g.offset + 1, 0x01))  # reserved byte
    fails(flip(s.data, s.index.offset + 9), contains="CRC")
    fails(flip(s.data, len(s.data) - 1), contains="footer")  # footer magic
    fails(flip(s.data, len(s.data) - 12, 0x01), contains="footer")  # footer index offset
    fails(flip(s.data, len(s.data) - 12, 0x01), frames=range(2, 4))
    fails(flip(s.data, 30), contains="CRC")  # sequence header body


def test_trailing_bytes_after_footer_rejected_by_seeking_reader(stream: Stream) -> None:
    fails(stream.data + b"\0" * 7, frames=range(2, 4))


# --- file header -------------------------------------------------------------------------


def test_wrong_magic(stream: Stream) -> None:
    fails(b"RERG" + stream.data[4:], contains="magic")
    fails(b"\x89PNG\r\n\x1a\n" + bytes(100), contains="magic")


def test_future_major_version(stream: Stream) -> None:
    msg = fails(stream.data[:4] + bytes([2]) + stream.data[5:], contains="version")
    assert "2." in msg


def test_unknown_flags(stream: Stream) -> None:
    for flags in (2, 0x8000):
        fails(stream.data[:6] + struct.pack("<H", flags) + stream.data[8:], contains="flags")


def test_header_crc_mismatch(stream: Stream) -> None:
    fails(stream.data[:12] + struct.pack("<I", zlib.crc32(b"x")) + stream.data[16:], contains="CRC")


def test_garbage_inputs(stream: Stream) -> None:
    rng = np.random.default_rng(7)
    fails(b"", contains="magic")
    fails(b"R", contains="magic")
    fails(b"RERF", contains="truncated")
    fails(b"RERF\x01\x00", contains="truncated")
    fails(bs.MAGIC + rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    for seed in range(5):
        fails(np.random.default_rng(seed).integers(0, 256, 4096, dtype=np.uint8).tobytes(), contains="magic")
    head = stream.data[: stream.header_size]
    fails(head, contains="truncated")
    fails(head + b"\0" * 3, contains="truncated")
    for seed in range(10):
        garbage = np.random.default_rng(seed).integers(0, 256, 3000, dtype=np.uint8).tobytes()
        fails(head + garbage)
        _items, err = _stream_items(head + garbage, skip_damaged=True)
        assert err is not None


# --- caps before allocation ---------------------------------------------------------------------


ABSURD_CORE = [
    {"gx": 2048, "gy": 2048, "gz": 2048},
    {"gx": 2048, "gy": 2048, "gz": 512},  # exactly MAX_VOXELS, but the frame exceeds the byte cap
    {"gx": 2049},
    {"gx": 65535, "gy": 65535, "gz": 65535},
    {"gx": 0},
    {"gx": 1024, "gy": 1024, "gz": 1024, "channels": 1},
    {"gx": 1024, "gy": 1024, "gz": 64, "channels": 256},
    {"channels": 257},
    {"channels": 65535},
    {"channels": 0},
    {"num_frames": 2**31},
    {"num_frames": 2**32 - 1},
    {"num_frames": 0},
    {"first_frame": 2**31},
    {"gof_size": 0},
    {"gof_size": 65535},
    {"fps": 0.0},
    {"fps": float("nan")},
    {"fps": float("inf")},
    {"x0": float("nan")},
    {"threshold": float("inf")},
    {"motion_block": 16},
    {"coder_id": 9},
    {"transform_id": 0},
    {"coeff_mode": 9},  # unknown coefficient coding mode id
    {"coeff_mode": 255},
]


@pytest.mark.parametrize("changes", ABSURD_CORE, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_absurd_sequence_header_rejected_before_allocating(stream: Stream, changes: dict) -> None:
    data = with_core(stream, **changes)
    with bounded_allocation():
        fails(data, contains="sequence header")


def test_zero_qmatrix_entry(stream: Stream) -> None:
    body = bytearray(header_body(stream))
    struct.pack_into("<H", body, bs.SEQ_CORE.size + 100, 0)
    fails(with_header(stream, bytes(body)), contains="qmatrix")


def test_huge_header_size_on_small_inputs(stream: Stream, tmp_path) -> None:
    head = stream.data[:8] + struct.pack("<II", bs.MAX_HEADER_SIZE, 0) + stream.data[16:2000]
    path = tmp_path / "huge_header.rerf"
    path.write_bytes(head)
    with bounded_allocation():
        fails(head, contains="truncated")
        with open(path, "rb") as f, deadline(), pytest.raises(RerfFormatError, match="truncated"):
            Decoder(f)
        with deadline(), pytest.raises(RerfFormatError, match="truncated"):
            Decoder(Pipe(head, max_read=1 << 20))
    too_big = stream.data[:8] + struct.pack("<II", bs.MAX_HEADER_SIZE + 1, 0) + stream.data[16:2000]
    fails(too_big, contains="limit")


@pytest.mark.parametrize("size", [2**24 + 1, 2**31, 2**31 + 1, 2**32 - 1])
def test_chunk_claiming_huge_size(stream: Stream, tmp_path, size: int) -> None:
    s = stream
    g = s.gofs[1]
    data = s.data[: g.offset + 4] + struct.pack("<I", size) + s.data[g.offset + 8 :]
    path = tmp_path / "huge_chunk.rerf"
    path.write_bytes(data)
    expect = "truncated" if size <= bs.MAX_CHUNK_SIZE else "limit"
    with bounded_allocation():
        fails(data, contains=expect)
        with open(path, "rb") as f, deadline(), pytest.raises(RerfFormatError, match=expect):
            decode_all(f)
        with open(path, "rb", buffering=0) as f, deadline(), pytest.raises(RerfFormatError, match=expect):
            decode_all(f)  # unbuffered FileIO
        items, err = _stream_items(data)
    assert isinstance(err, RerfFormatError) and expect in str(err)
    assert [d.index for d in items] == list(s.ranges[0])
    with bounded_allocation():
        _, err = _stream_items(data, skip_damaged=True)
    assert err is not None


def with_index(s: Stream, payload: bytes) -> bytes:
    """The stream with a new index payload (CRC and footer fixed)."""
    index = bs.CHUNK_HEAD.pack(bs.CHUNK_INDEX, 0, 0, len(payload)) + payload + struct.pack("<I", zlib.crc32(payload))
    return s.data[: s.index.offset] + index + bs.FOOTER.pack(s.index.offset, bs.FOOTER_MAGIC)


def _index_payload(entries: list[tuple[int, int, int]]) -> bytes:
    return struct.pack("<I", len(entries)) + b"".join(bs.INDEX_ENTRY.pack(*e) for e in entries)


def _index_cases(s: Stream) -> dict[str, bytes]:
    good = [(g.offset, r.start, len(r)) for g, r in zip(s.gofs, s.ranges, strict=True)]
    cases = {}
    for name, offset in [("2**64-1", 2**64 - 1), ("2**63", 2**63), ("zero", 0), ("in header", 20),
                         ("the index", s.index.offset), ("past the end", len(s.data) + 100)]:
        cases[f"offset {name}"] = _index_payload([good[0], (offset, *good[1][1:]), good[2]])
    cases["swapped offsets"] = _index_payload([good[0], (good[2][0], *good[1][1:]), (good[1][0], *good[2][1:])])
    cases["mid-chunk offset"] = _index_payload([good[0], (good[1][0] + 8, *good[1][1:]), good[2]])
    cases["gap in frames"] = _index_payload([good[0], good[2]])
    cases["overlap"] = _index_payload([good[0], (good[1][0], 1, 2), good[2]])
    cases["zero frames"] = _index_payload([good[0], (good[1][0], 2, 0), good[1], good[2]])
    cases["short"] = _index_payload(good)[:-3]
    cases["long"] = _index_payload(good) + b"\0"
    cases["huge count"] = struct.pack("<I", 2**32 - 1) + _index_payload(good)[4:]
    cases["empty"] = b""
    return cases


def test_crafted_index(stream: Stream) -> None:
    s = stream
    for name, payload in _index_cases(s).items():
        data = with_index(s, payload)
        with bounded_allocation():
            fails(data, contains="index")  # streaming: all frames decode, then the index is checked
            if name != "mid-chunk offset":  # read_index checks offsets; a wrong one fails at the chunk
                fails(data, contains="index", frames=range(2, 4))
            else:
                fails(data, frames=range(2, 4))
        outcome(data)


def test_index_claiming_huge_gof_count(stream: Stream) -> None:
    s = stream
    payload = struct.pack("<I", 2**32 - 1) + s.index.payload[4:]
    index = bs.CHUNK_HEAD.pack(bs.CHUNK_INDEX, 0, 0, len(payload)) + payload + struct.pack("<I", zlib.crc32(payload))
    data = s.data[: s.index.offset] + index + s.data[s.index.end :]
    with bounded_allocation():
        fails(data, contains="index")
        fails(data, contains="index", frames=range(2, 4))


def _tensor_table(entries: list[tuple[str | bytes, int, tuple[int, ...], bytes]], count: int | None = None) -> bytes:
    out = bytearray(struct.pack("<I", len(entries) if count is None else count))
    for name, dtype_id, shape, raw in entries:
        raw_name = name.encode() if isinstance(name, str) else name
        out += struct.pack("<H", len(raw_name)) + raw_name + struct.pack("<BB", dtype_id, len(shape))
        out += struct.pack(f"<{len(shape)}I", *shape) + raw
    return zstandard.ZstdCompressor().compress(bytes(out))


@pytest.mark.parametrize(
    ("table", "contains"),
    [
        (_tensor_table([("w", 1, (65536, 65536), b"")]), "too large"),
        (_tensor_table([("w", 1, (65536,) * 4, b"")]), "too large"),  # int64 product wraps to 0
        (_tensor_table([("w", 1, (2**32 - 1,) * 8, b"")]), "too large"),
        (_tensor_table([], count=2**32 - 1), "limit"),
        (_tensor_table([("w", 99, (1,), b"\0")]), "dtype"),
        (_tensor_table([("w", 1, (1,) * 9, b"\0" * 4)]), "dimensions"),
        (_tensor_table([("w", 1, (3,), b"\0" * 11)]), "truncated"),
        (_tensor_table([("w", 1, (1,), b"\0" * 4), ("w", 1, (1,), b"\0" * 4)]), "duplicate"),
        (_tensor_table([("w", 1, (1,), b"\0" * 5)]), "trailing"),
        (_tensor_table([(b"\xff\xfe", 1, (1,), b"\0" * 4)]), "UTF-8"),
        (b"\x28\xb5\x2f\xfd" + bytes(20), "zstd"),
        (forged_zstd(2**40), "limit"),
        (forged_zstd(bs.MAX_TENSOR_BYTES + 1), "limit"),
    ],
)
def test_malicious_tensor_table(stream: Stream, table: bytes, contains: str) -> None:
    data = with_sections(stream, tensors=table, flags=1)
    with bounded_allocation():
        fails(data, contains=contains)


def test_tensor_flag_disagreement(stream: Stream) -> None:
    fails(with_sections(stream, flags=1), contains="flag")
    fails(with_sections(stream, tensors=_tensor_table([("w", 1, (1,), b"\0" * 4)]), flags=0), contains="flag")


@pytest.mark.parametrize(
    ("meta", "contains"),
    [
        (forged_zstd(2**40), "limit"),
        (forged_zstd(2**62), "limit"),
        (zstandard.ZstdCompressor().compress(b"[1, 2]"), "JSON object"),
        (zstandard.ZstdCompressor().compress(b"\xff\xfe{"), "JSON"),
        (zstandard.ZstdCompressor().compress(b'{"a": '), "JSON"),
        (b"", "zstd"),
        (b"not zstd at all", "zstd"),
        (zstandard.ZstdCompressor().compress(b"[" * 100_000), "JSON"),  # nesting: RecursionError
        (zstandard.ZstdCompressor().compress(b'{"a": ' + b"1" * 5000 + b"}"), "JSON"),  # int digit limit
        (zstandard.ZstdCompressor().compress(b'{"sequence": "abc"}'), "sequence"),
        (zstandard.ZstdCompressor().compress(b'{"encoder": [1]}'), "encoder"),
        (zstandard.ZstdCompressor().compress(b"{}") + b"junk", "trailing"),
        (zstandard.ZstdCompressor().compress(b"{}")[:-2], "zstd"),
    ],
)
def test_malicious_meta(stream: Stream, meta: bytes, contains: str) -> None:
    with bounded_allocation():
        fails(with_sections(stream, meta=meta), contains=contains)


def test_zstd_bomb_without_declared_size(stream: Stream) -> None:
    bomb = zstandard.ZstdCompressor(level=1, write_content_size=False).compress(b"{" + b" " * (40 * 2**20))
    with bounded_allocation(3 * bs.MAX_JSON_SIZE):
        fails(with_sections(stream, meta=bomb), contains="exceeds")


# --- crafted, CRC-valid GOF payloads ----------------------------------------------------


def _record(g: bs.GofChunk, i: int, **changes: object) -> bs.GofChunk:
    frames = list(g.frames)
    frames[i] = dataclasses.replace(frames[i], **changes)
    return dataclasses.replace(g, frames=tuple(frames))


def _channel(g: bs.GofChunk, c: int, **changes: int) -> bs.GofChunk:
    channels = list(g.channels)
    channels[c] = dataclasses.replace(channels[c], **changes)
    return dataclasses.replace(g, channels=tuple(channels))


def _raw_side(tables: list[Table]) -> bytes:
    return bytes([bs.SIDE_INFO_RAW]) + write_tables(tables)


def _tables(g: bs.GofChunk, i: int = 0) -> list[Table]:
    return read_tables(bs.decode_side_info(g.frames[i].side_info), N_TABLES)


def _full_bands(band: Table) -> list[Table]:
    """Every (channel, block) reaches the last band; every band uses ``band``."""
    group = [Table(21, 21, (1,))] + [band] * 22
    return group + group


def _num_blocks(s: Stream, g: bs.GofChunk, i: int = 0) -> int:
    mask, _, _ = parse_intra(g.frames[i], s.header)
    return int(mask.sum())


def _payload_patch(g: bs.GofChunk, pos: int, value: bytes) -> bytes:
    raw = bytearray(bs.encode_gof_payload(g))
    raw[pos : pos + len(value)] = value
    return bytes(raw)


def _rand(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


FRAME0 = bs.GOF_HEAD.size + 4 * bs.CHANNEL_PARAMS.size  # offset of frame 0's header in a GOF payload

# name -> (craft(stream, gof0) -> GofChunk | payload bytes, expected message fragment)
MUST_FAIL: dict[str, tuple[Callable[[Stream, bs.GofChunk], bs.GofChunk | bytes], str]] = {
    "table hi 43": (lambda s, g: _record(g, 0, side_info=b"\x00" + bytes([0, 43]) + b"\x01" * 44), "outside"),
    "table lo -43": (lambda s, g: _record(g, 0, side_info=b"\x00" + bytes([0xD5, 0]) + b"\x01" * 44), "outside"),
    "table bad empty range": (lambda s, g: _record(g, 0, side_info=b"\x00" + bytes([5, 3])), "bad range"),
    "side info trailing byte": (
        lambda s, g: _record(g, 0, side_info=b"\x00" + bs.decode_side_info(g.frames[0].side_info) + b"\x00"),
        "trailing",
    ),
    "side info truncated": (
        lambda s, g: _record(g, 0, side_info=b"\x00" + bs.decode_side_info(g.frames[0].side_info)[:-1]),
        "truncated",
    ),
    "side info empty": (lambda s, g: _record(g, 0, side_info=b""), "side info"),
    "side info mode 5": (lambda s, g: _record(g, 0, side_info=b"\x05" + g.frames[0].side_info[1:]), "mode"),
    "side info zstd garbage": (lambda s, g: _record(g, 0, side_info=b"\x01" + _rand(200, 1)), "zstd"),
    "side info zstd bomb": (lambda s, g: _record(g, 0, side_info=b"\x01" + forged_zstd(2**40)), "limit"),
    "side info count too large": (
        lambda s, g: _record(g, 0, side_info=_raw_side([Table(-1, 0, (2**25, 1)), *_tables(g)[1:]])), "too large"
    ),
    "side info all counts zero": (
        lambda s, g: _record(g, 0, side_info=_raw_side([Table(-1, 0, (0, 0)), *_tables(g)[1:]])), "zero"
    ),
    "side info endless count": (
        lambda s, g: _record(g, 0, side_info=b"\x00" + bytes([0xFF, 0]) + b"\xff" * 10), "too long"
    ),
    "too few tables": (lambda s, g: _record(g, 0, side_info=_raw_side(_tables(g)[:-1])), "truncated"),
    "table for a band without symbols": (
        lambda s, g: _record(g, 0, side_info=_raw_side(([Table(-1, -1, (1,)), Table(0, 1, (1, 1))] + [UNUSED] * 21) * 2)),
        "no symbols",
    ),
    "symbols with an unused table": (
        lambda s, g: _record(g, 0, side_info=_raw_side(_full_bands(UNUSED))), "unused table"
    ),
    "last band 22": (
        lambda s, g: _record(g, 0, side_info=_raw_side([Table(22, 22, (1,)), *_tables(g)[1:]])), "last-band"
    ),
    "last band -2": (
        lambda s, g: _record(g, 0, side_info=_raw_side([Table(-2, -2, (1,)), *_tables(g)[1:]])), "last-band"
    ),
    "huge levels, mantissa too short": (
        lambda s, g: _record(g, 0, side_info=_raw_side(_full_bands(Table(42, 42, (1,))))), "mantissa"
    ),
    "huge levels, exact mantissa": (
        lambda s, g: _record(
            g, 0, side_info=_raw_side(_full_bands(Table(42, 42, (1,)))),
            mantissa=b"\xff" * math.ceil(30 * 512 * 4 * _num_blocks(s, g) / 8),
        ),
        "range",
    ),
    "mantissa extra byte": (lambda s, g: _record(g, 0, mantissa=g.frames[0].mantissa + b"\x00"), "mantissa"),
    "mantissa on all-small levels": (
        lambda s, g: _record(g, 0, side_info=_raw_side(_full_bands(Table(1, 1, (1,)))), mantissa=b"\x80"),
        "mantissa",
    ),
    "mantissa empty with huge levels": (
        lambda s, g: _record(g, 0, side_info=_raw_side(_full_bands(Table(16, 17, (1, 1)))), mantissa=b""), "mantissa"
    ),
    "coeff words odd length": (lambda s, g: _record(g, 0, coeff_words=g.frames[0].coeff_words + b"\0"), "multiple of 4"),
    "mask odd length": (lambda s, g: _record(g, 0, mask=g.frames[0].mask[:-1]), "multiple of 4"),
    "motion on an intra frame": (lambda s, g: _record(g, 0, motion=b"\0\0\0\0"), "motion"),
    "frame type 7": (lambda s, g: _record(g, 1, frame_type=7), "frame type 7"),
    "frame type 0": (lambda s, g: _record(g, 0, frame_type=0), "frame type 0"),
    "GOF starts with a residual": (lambda s, g: _record(g, 0, frame_type=bs.FRAME_RESIDUAL), "intra"),
    "residual record marked intra": (
        lambda s, g: _record(g, 1, frame_type=bs.FRAME_INTRA, flags=0, modes=b""), "motion"
    ),
    "block_modes flag on an intra frame": (lambda s, g: _payload_patch(g, FRAME0 + 1, b"\x01"), "not residual"),
    "residual without motion": (lambda s, g: _record(g, 1, motion=b""), "motion"),
    "residual motion one byte": (lambda s, g: _record(g, 1, motion=b"\x05"), "motion"),
    "residual motion table size 65535": (lambda s, g: _record(g, 1, motion=b"\xff\xff" + g.frames[1].motion[2:]), "motion"),
    "residual motion cut short": (lambda s, g: _record(g, 1, motion=g.frames[1].motion[:5]), None),
    "residual mask odd length": (lambda s, g: _record(g, 1, mask=g.frames[1].mask + b"\0"), "multiple of 4"),
    "frame flags": (lambda s, g: _payload_patch(g, FRAME0 + 1, b"\x02"), "reserved"),
    "frame GOF reason 7": (lambda s, g: _payload_patch(g, FRAME0 + 2, b"\x07"), "GOF reason"),
    "GOF reason inside a GOF": (lambda s, g: _record(g, 1, gof_reason=bs.GOF_REASON_COST), "GOF reason"),
    "frame reserved": (lambda s, g: _payload_patch(g, FRAME0 + 3, b"\x80"), "reserved"),
    "exponent 100": (lambda s, g: _channel(g, 0, exponent=100), "exponent"),
    "exponent -100": (lambda s, g: _channel(g, 2, exponent=-100), "exponent"),
    "qscale 0": (lambda s, g: _channel(g, 1, qscale=0), "qscale"),
    "qscale 2**32-1": (lambda s, g: _channel(g, 0, qscale=2**32 - 1), "step"),
    "fill 2**30": (lambda s, g: _channel(g, 3, fill=2**30), "fill"),
    "fill -2**31": (lambda s, g: _channel(g, 0, fill=-(2**31)), "fill"),
    "channel padding": (lambda s, g: _payload_patch(g, bs.GOF_HEAD.size + 1, b"\x07"), None),
    "quality 0": (lambda s, g: dataclasses.replace(g, quality_density=0), "quality"),
    "quality 101": (lambda s, g: dataclasses.replace(g, quality_features=101), "quality"),
    "quality 255": (lambda s, g: dataclasses.replace(g, quality_features=255), "quality"),
    "first frame 1": (lambda s, g: dataclasses.replace(g, first_frame=1), "expected 0"),
    "frames past the end": (lambda s, g: dataclasses.replace(g, first_frame=4), "outside the sequence"),
    "no frames": (lambda s, g: dataclasses.replace(g, frames=()), "num_frames"),
    "frame count 4096": (lambda s, g: _payload_patch(g, 4, struct.pack("<H", 4096)), None),
    "frame count 65535": (lambda s, g: _payload_patch(g, 4, struct.pack("<H", 65535)), None),
    "section size 2**32-1": (lambda s, g: _payload_patch(g, FRAME0 + 4, b"\xff\xff\xff\xff"), "truncated"),
    "trailing payload bytes": (lambda s, g: bs.encode_gof_payload(g) + b"\0", "trailing"),
    "payload cut short": (lambda s, g: bs.encode_gof_payload(g)[:-1], "truncated"),
    "empty payload": (lambda s, g: b"", "truncated"),
}


@pytest.mark.parametrize("name", list(MUST_FAIL))
def test_crafted_gof_payload_fails(stream: Stream, name: str) -> None:
    craft, contains = MUST_FAIL[name]
    data = with_gof(stream, 0, craft(stream, gof(stream, 0)))
    with bounded_allocation():
        fails(data, contains=contains)
    items, err = _stream_items(data, skip_damaged=True)
    assert err is None, name
    damaged = [i for i in items if isinstance(i, DamagedFrames)]
    assert len(damaged) == 1 and damaged[0].offset == stream.gofs[0].offset
    if damaged[0].frames is not None:
        assert damaged[0].frames.start == 0
    good = [i for i in items if isinstance(i, DecodedFrame)]
    assert all(same(d.frame, stream.ref[d.index]) for d in good)


def _words(seed: int, n: int = 64) -> bytes:
    return np.random.default_rng(seed).integers(0, 2**32, n, dtype=np.uint64).astype("<u4").tobytes()


# Well-formed but meaningless content: a range decoder happily decodes garbage, so the
# outcome may be frames or RerfFormatError; it must be nothing else.
MAY_DECODE: dict[str, Callable[[Stream, bs.GofChunk], bs.GofChunk | bytes]] = {
    **{f"mask random words {i}": (lambda s, g, i=i: _record(g, 0, mask=_words(i))) for i in range(4)},
    "mask all ones": lambda s, g: _record(g, 0, mask=b"\xff" * 64),
    "mask all zeros": lambda s, g: _record(g, 0, mask=b"\0" * 64),
    "mask empty": lambda s, g: _record(g, 0, mask=b""),
    **{f"coeff random words {i}": (lambda s, g, i=i: _record(g, 1, coeff_words=_words(i, 500))) for i in range(4)},
    "coeff words empty": lambda s, g: _record(g, 0, coeff_words=b""),
    "coeff words all ones": lambda s, g: _record(g, 0, coeff_words=b"\xff" * 400),
    "coeff words truncated": lambda s, g: _record(g, 0, coeff_words=g.frames[0].coeff_words[:8]),
    "mask from another frame": lambda s, g: _record(g, 0, mask=g.frames[1].mask),
    "full bands, wide tables": lambda s, g: _record(
        g, 0, side_info=_raw_side(_full_bands(Table(-42, 42, tuple(range(1, 86))))), coeff_words=_words(9, 4000)
    ),
    "exponent 64": lambda s, g: _channel(_channel(g, 0, exponent=64), 1, exponent=64),
    "exponent -64, largest fill": lambda s, g: _channel(g, 0, exponent=-64, fill=2**24 - 1),
    **{f"residual motion random bytes {i}": (lambda s, g, i=i: _record(g, 1, motion=_rand(len(g.frames[1].motion), i)))
       for i in range(4)},
    **{f"residual motion random words {i}": (
        lambda s, g, i=i: _record(g, 1, motion=g.frames[1].motion[:-8] + _words(i, 2))) for i in range(4)},
    **{f"residual mask random words {i}": (lambda s, g, i=i: _record(g, 1, mask=_words(i, 8))) for i in range(3)},
    "residual mask all ones": lambda s, g: _record(g, 1, mask=b"\xff" * 64),
    "residual mask empty": lambda s, g: _record(g, 1, mask=b""),
    "residual with the intra frame's sections": lambda s, g: _record(
        g, 1, mask=g.frames[0].mask, side_info=g.frames[0].side_info, coeff_words=g.frames[0].coeff_words,
        mantissa=g.frames[0].mantissa,
    ),
    "qscale 1": lambda s, g: _channel(g, 2, qscale=1),
    "large qscale": lambda s, g: _channel(g, 0, qscale=2**18),
}


@pytest.mark.parametrize("name", list(MAY_DECODE))
def test_crafted_gof_payload_decodes_or_fails_cleanly(stream: Stream, name: str) -> None:
    data = with_gof(stream, 0, MAY_DECODE[name](stream, gof(stream, 0)))
    outcome(data)


@pytest.mark.parametrize(
    "changes",
    [{"gx": 8, "gy": 8, "gz": 8}, {"gx": 40, "gy": 40, "gz": 40}, {"gx": 1, "gy": 1, "gz": 1}, {"channels": 2}, {"channels": 4}],
    ids=str,
)
def test_header_lying_about_the_grid(stream: Stream, changes: dict) -> None:
    """The GOFs were coded for another grid: the mask and levels decode to garbage or fail cleanly."""
    outcome(with_core(stream, **changes))


# --- bounded random-mutation fuzzing ---------------------------------------------------------


def _mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    kind = rng.randrange(8)
    pos = rng.randrange(len(out))
    if kind == 0:
        for _ in range(rng.randint(1, 8)):
            p = rng.randrange(len(out))
            out[p] ^= 1 << rng.randrange(8)
    elif kind == 1:
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(len(out))] = rng.randrange(256)
    elif kind == 2:
        out[pos:pos] = rng.randbytes(rng.randint(1, 16))
    elif kind == 3:
        del out[pos : pos + rng.randint(1, 64)]
    elif kind == 4:
        del out[pos:]
    elif kind == 5:
        n = rng.randint(1, 256)
        out[pos:pos] = out[max(0, pos - n) : pos]
    elif kind == 6:
        value = rng.choice([0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, rng.getrandbits(32)])
        out[pos : pos + 4] = struct.pack("<I", value)
    else:
        n = rng.randint(1, 512)
        out[pos : pos + n] = rng.randbytes(min(n, len(out) - pos))
    return bytes(out)


def _run_fuzz(cases: list[bytes]) -> dict[str, int]:
    counts = {"ok": 0, "error": 0}
    for i, data in enumerate(cases):
        try:
            counts[outcome(data)] += 1
        except AssertionError as exc:  # pragma: no cover - report which case
            raise AssertionError(f"fuzz case {i}: {exc}") from exc
    return counts


def test_fuzz_whole_file(stream: Stream) -> None:
    rng = random.Random(20240601)
    cases = [_mutate(stream.data, rng) for _ in range(300)]
    counts = _run_fuzz(cases)
    assert counts["error"] > 200, counts


def _raw_side_gof(g: bs.GofChunk) -> bs.GofChunk:
    """Side info stored uncompressed, so byte mutations reach the table parser."""
    frames = tuple(dataclasses.replace(f, side_info=b"\x00" + bs.decode_side_info(f.side_info)) for f in g.frames)
    return dataclasses.replace(g, frames=frames)


def test_fuzz_gof_payloads_with_valid_crc(stream: Stream) -> None:
    """Mutated payloads with recomputed CRCs: the GOF parser and the frame decoders see the damage."""
    s = stream
    rng = random.Random(77)
    raw = [bs.encode_gof_payload(_raw_side_gof(gof(s, k))) for k in range(len(s.gofs))]
    cases = []
    for _ in range(200):
        k = rng.randrange(len(raw))
        payloads = list(raw)
        payloads[k] = _mutate(raw[k], rng)
        cases.append(rebuild(s, payloads))
    counts = _run_fuzz(cases)
    assert counts["error"] > 100, counts


def _mutate_section(g: bs.GofChunk, rng: random.Random) -> bs.GofChunk:
    i = rng.randrange(g.num_frames)
    if rng.random() < 0.15:
        c = rng.randrange(len(g.channels))
        return _channel(
            g, c,
            exponent=rng.randint(-64, 64),
            fill=rng.randint(-(2**24) + 1, 2**24 - 1),
            qscale=rng.choice([1, rng.randint(1, 2**20), rng.getrandbits(32) or 1]),
        )
    name = rng.choice(["mask", "motion", "side_info", "coeff_words", "mantissa"])
    value = bytearray(getattr(g.frames[i], name))
    if name == "side_info":
        with contextlib.suppress(RerfFormatError):  # already mutated: keep as is
            value = bytearray(b"\x00" + bs.decode_side_info(bytes(value)))
    kind = rng.randrange(4)
    if kind == 0 and value:
        for _ in range(rng.randint(1, 4)):
            value[rng.randrange(len(value))] ^= 1 << rng.randrange(8)
    elif kind == 1 and value:
        p = rng.randrange(len(value))
        value[p : p + 4] = rng.randbytes(4)
    elif kind == 2:
        value = bytearray(rng.randbytes(len(value)))
    else:
        value = value[: rng.randrange(len(value) + 1)]
    return _record(g, i, **{name: bytes(value)})


def test_fuzz_frame_sections_with_valid_crc(stream: Stream) -> None:
    """Structured mutations of one section or channel of a frame, everything else valid."""
    s = stream
    rng = random.Random(4242)
    gofs = [gof(s, k) for k in range(len(s.gofs))]
    cases = []
    for _ in range(200):
        k = rng.randrange(len(gofs))
        payloads = [g.payload for g in s.gofs]
        payloads[k] = bs.encode_gof_payload(_mutate_section(gofs[k], rng))
        cases.append(rebuild(s, payloads))
    counts = _run_fuzz(cases)
    assert counts["error"] > 30 and counts["ok"] > 10, counts


def test_fuzz_index_with_valid_crc(stream: Stream) -> None:
    s = stream
    rng = random.Random(5)
    cases = [with_index(s, _mutate(s.index.payload, rng)) for _ in range(50)]
    counts = _run_fuzz(cases)
    assert counts["error"] > 25, counts


def test_fuzz_sequence_header_with_valid_crc(stream: Stream) -> None:
    s = stream
    rng = random.Random(99)
    body = header_body(s)
    cases = []
    for _ in range(100):
        mutated = _mutate(body, rng)
        cases.append(with_header(s, mutated))
    with bounded_allocation(8 * ALLOC_LIMIT):
        counts = _run_fuzz(cases)
    assert counts["error"] > 50, counts


# --- the command line: exit 2 and one line -------------------------------------------------------


def test_cli_bad_input_exit_2_one_line(stream: Stream, tmp_path) -> None:
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:  # `cli` is a top-level package next to rerf_codec
        sys.path.insert(0, root)
    from click.testing import CliRunner

    from cli.main import cli

    s = stream
    cases = {
        "truncated mid-GOF": s.data[: s.gofs[1].offset + 100],
        "truncated footer": s.data[:-5],
        "flipped byte": flip(s.data, s.gofs[1].offset + 8 + len(s.gofs[1].payload) // 2),
        "wrong magic": b"XXXX" + s.data[4:],
        "future version": s.data[:4] + b"\x02" + s.data[5:],
        "absurd grid": with_core(s, gx=2048, gy=2048, gz=2048),
        "empty": b"",
        "garbage": _rand(5000, 3),
        "crafted GOF": with_gof(s, 0, MUST_FAIL["exponent 100"][0](s, gof(s, 0))),
    }
    header_level = {"wrong magic", "future version", "absurd grid", "empty", "garbage"}
    runner = CliRunner()
    for name, data in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.rerf"
        path.write_bytes(data)
        out = tmp_path / f"out_{path.stem}"
        runs = [(["decode", str(path), "-o", str(out)], None), (["decode", "-", "-o", str(out)], data)]
        if name in header_level:
            runs.append((["info", str(path)], None))
        for args, stdin in runs:
            with deadline():
                res = runner.invoke(cli, args, input=stdin)
            assert res.exit_code == 2, (name, args, res.exit_code, res.stderr)
            lines = res.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("rerf: error: "), (name, res.stderr)
            assert "Traceback" not in res.stderr + res.stdout
            assert not out.exists(), name
    # concealment: the flipped GOF is reported on one warning line and decoding succeeds
    res = runner.invoke(cli, ["decode", str(tmp_path / "flipped_byte.rerf"), "-o", str(tmp_path / "c"), "--skip-damaged"])
    assert res.exit_code == 0, res.stderr
    assert [ln for ln in res.stderr.splitlines() if ln.startswith("rerf: warning: ")]
