"""Format 1.2: block modes in residual frames, GOF start reasons, adaptive keyframes.

* every mode occurs and encoder reconstruction == decoder output (closed loop), in both
  coefficient modes, streaming and with reused buffers;
* the modes section decoded in plain Python exactly as FORMAT.md §10.6 writes it (contexts from
  the previous-mode map, count tables, the §9.1 range decoder) equals the codec's decoding;
* a cut (two unrelated contents back to back) starts a GOF, and the cut frame costs within 5 % of
  coding it intra on its own; ``gof_fixed`` keeps fixed GOFs; listed keyframes start GOFs; the
  reason is stored and shown by ``rerf info``;
* damaged modes sections (symbol out of range, wrong block count, counts off, truncated at any
  length, altered words) are a one-line RerfFormatError — never a crash or a wrong-sized frame;
  the CLI exits 2.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import io
import json
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import encode_to_bytes, make_meta

from cli.main import cli
from rerf_codec import bitstream as bs
from rerf_codec.codec.decoder import Decoder, decode_all
from rerf_codec.codec.encoder import EncoderConfig, encode_frames
from rerf_codec.codec.entropy import Table, read_tables, write_tables
from rerf_codec.codec.intra import parse_intra, reconstruct_intra
from rerf_codec.codec.modes import decode_modes, mode_contexts, no_previous_modes
from rerf_codec.codec.residual import initial_state, parse_residual, reconstruct_residual
from rerf_codec.errors import RerfFormatError
from rerf_codec.grids import GridFrame, update_frame_hash

_ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("make_conformance", _ROOT / "bitstreams" / "make_conformance.py")
assert _spec is not None and _spec.loader is not None
mc = importlib.util.module_from_spec(_spec)
sys.modules.setdefault(_spec.name, mc)
_spec.loader.exec_module(mc)
sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_format_doc as spec  # noqa: E402  (the plain-Python §9.1 range decoder and §9.4 tables)


def scene(frames: int = 3, phase: float = 0.0, channels: int = 2) -> list[GridFrame]:
    d, f = mc.mode_scene(channels=channels, frames=frames, phase=phase)
    return [GridFrame(d[t], f[t]) for t in range(frames)]


@pytest.fixture(scope="module")
def modes_stream() -> tuple[bytes, object]:
    return encode_to_bytes(scene(4), EncoderConfig(gof=4))


# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("coeff_mode", [0, 1])
def test_every_mode_round_trips_closed_loop(coeff_mode: int) -> None:
    data, report = encode_to_bytes(scene(4), EncoderConfig(gof=4, coeff_mode=coeff_mode))
    seen = {k: 0 for k in ("inter", "skip", "intra")}
    for fr in report.frames[1:]:
        assert fr.block_modes is not None
        for k, v in fr.block_modes.items():
            seen[k] += v
    assert all(v > 0 for v in seen.values()), seen
    _, sha = decode_all(io.BytesIO(data))
    assert sha == report.sha256
    digest = hashlib.sha256()
    for item in Decoder(io.BytesIO(data)).frames(reuse_buffers=True):
        update_frame_hash(digest, item.frame)  # type: ignore[union-attr]  # hashed before the buffers are reused
    assert digest.hexdigest() == sha
    reader = bs.StreamReader(io.BytesIO(data))
    records = [r for g in reader.iter_gofs() for r in g.frames]  # type: ignore[union-attr]
    assert [bool(r.flags & bs.FRAME_FLAG_BLOCK_MODES) for r in records] == [False, True, True, True]


def test_block_modes_off_writes_plain_residual_frames() -> None:
    data, report = encode_to_bytes(scene(3), EncoderConfig(gof=3, block_modes=False))
    reader = bs.StreamReader(io.BytesIO(data))
    records = [r for g in reader.iter_gofs() for r in g.frames]  # type: ignore[union-attr]
    assert all(r.flags == 0 and not r.modes for r in records)
    assert decode_all(io.BytesIO(data))[1] == report.sha256


def test_block_modes_lower_the_rate_distortion_cost() -> None:
    """On content made of still, moving and new parts, the mode decision pays: fewer bytes for
    at most the same squared error (measured here on the test scene, not a benchmark)."""
    frames = scene(4)
    results = {}
    for on in (False, True):
        data, _ = encode_to_bytes(frames, EncoderConfig(gof=4, block_modes=on))
        decoded, _ = decode_all(io.BytesIO(data))
        err = sum(float(((d.frame.features - f.features) ** 2).sum()) for d, f in zip(decoded, frames, strict=True))
        results[on] = (len(data), err)
    assert results[True][0] < results[False][0], results


# --- the spec, in plain Python ----------------------------------------------------------------------


def spec_mode_context(prev: np.ndarray, b: tuple[int, int, int]) -> int:
    """§10.6 mctx(b), evaluated as written."""
    t = int(prev[b])
    n_s = n_i = 0
    for axis in range(3):
        for step in (-1, 1):
            nb = list(b)
            nb[axis] += step
            if 0 <= nb[axis] < prev.shape[axis]:
                v = int(prev[tuple(nb)])
                n_s += v == 1
                n_i += v == 2
    q = 0 if n_s + n_i == 0 else (1 if n_s >= n_i else 2)
    return 3 * t + q


def spec_decode_modes(section: bytes, mask: np.ndarray, prev: np.ndarray) -> list[int]:
    n = int(mask.sum())
    num_blocks, tables_size = struct.unpack_from("<IH", section, 0)
    assert num_blocks == n
    tables = spec.spec_tables(section[6 : 6 + tables_size], 12)
    words = spec._words(section[6 + tables_size :])
    occupied = [b for b in spec.raster(mask.shape) if mask[b]]
    ctx = [spec_mode_context(prev, b) for b in occupied]
    dec = spec.SpecDecoder(words)
    modes = [0] * n
    for c in range(12):
        rows = [i for i in range(n) if ctx[i] == c]
        t = tables[c]
        assert (t is None) == (not rows)
        for i in rows:
            assert t is not None
            lo, _hi, cdf = t
            modes[i] = lo if cdf is None else lo + dec.decode(cdf)
    return modes


def test_modes_section_follows_the_spec(modes_stream) -> None:
    data, _ = modes_stream
    reader = bs.StreamReader(io.BytesIO(data))
    header = reader.header
    checked = 0
    for g in reader.iter_gofs():
        assert isinstance(g, bs.GofChunk)
        state = None
        for rec in g.frames:
            if rec.frame_type == bs.FRAME_INTRA:
                mask, levels, tables = parse_intra(rec, header)
                state = initial_state(header, reconstruct_intra(header, g.channels, mask, levels), mask, tables)
                continue
            assert state is not None
            sym = parse_residual(rec, header, state)
            prev = state.prev_modes if state.prev_modes is not None else no_previous_modes(state.prev_mask.shape)
            ctx = mode_contexts(prev).reshape(prev.shape)
            for b in spec.raster(prev.shape)[:: max(1, prev.size // 50)]:
                assert ctx[b] == spec_mode_context(prev, b)
            if rec.modes:
                assert spec_decode_modes(rec.modes, sym.mask, prev) == sym.modes.tolist()
                assert decode_modes(rec.modes, sym.mask, prev).tolist() == sym.modes.tolist()
                checked += 1
            frame = reconstruct_residual(header, g.channels, sym.mask, sym.mv, sym.levels, state.prev, modes=sym.modes)
            state = sym.next_state(frame, state)
    assert checked >= 2


# --- GOF starts ---------------------------------------------------------------------------------


def _reasons(data: bytes) -> list[tuple[int, str]]:
    reader = bs.StreamReader(io.BytesIO(data))
    return [(g.first_frame, bs.GOF_REASON_NAMES[g.frames[0].gof_reason]) for g in reader.iter_gofs()]  # type: ignore[union-attr]


def cut_sequence() -> list[GridFrame]:
    a = scene(3)
    b = scene(3, phase=2.0)
    b = [GridFrame(np.ascontiguousarray(f.density[::-1, ::-1]), np.ascontiguousarray(3.0 * f.features[:, ::-1, ::-1]))
         for f in b]
    return a + b


def test_a_cut_starts_a_gof_and_costs_about_an_intra_frame() -> None:
    frames = cut_sequence()
    data, report = encode_to_bytes(frames, EncoderConfig(gof=20))
    assert _reasons(data) == [(0, "first"), (3, "cost")]
    assert report.frames[3].frame_type == "intra" and report.frames[3].gof_start == "cost"
    assert decode_all(io.BytesIO(data))[1] == report.sha256
    # the same frame coded intra on its own (a one-frame stream)
    _, alone = encode_to_bytes(frames[3:4], EncoderConfig(gof=1))
    cut_bytes, intra_bytes = report.frames[3].total_bytes, alone.frames[0].total_bytes
    assert abs(cut_bytes - intra_bytes) <= 0.05 * intra_bytes, (cut_bytes, intra_bytes)
    # --gof-fixed: today's behaviour, one GOF
    fixed, _ = encode_to_bytes(frames, EncoderConfig(gof=20, gof_fixed=True))
    assert _reasons(fixed) == [(0, "first")]


def test_listed_keyframes_and_maximum_length_start_gofs() -> None:
    frames = scene(6)
    meta = dataclasses.replace(make_meta(frames[0].density.shape, frames[0].features.shape[0], 6), keyframes=(2,))
    buf = io.BytesIO()
    report = encode_frames(meta, list(enumerate(frames)), buf, EncoderConfig(gof=3))
    assert _reasons(buf.getvalue()) == [(0, "first"), (2, "listed"), (5, "max-length")]
    assert [f.gof_start for f in report.frames] == ["first", None, "listed", None, None, "max-length"]
    # rate control honours listed keyframes too
    buf = io.BytesIO()
    encode_frames(meta, list(enumerate(frames)), buf, EncoderConfig(gof=3, target_kbpf=5.0))
    assert _reasons(buf.getvalue())[:2] == [(0, "first"), (2, "listed")]


def test_info_shows_why_each_gof_starts(tmp_path: Path) -> None:
    data, _ = encode_to_bytes(cut_sequence(), EncoderConfig(gof=20))
    path = tmp_path / "cut.rerf"
    path.write_bytes(data)
    runner = CliRunner()
    res = runner.invoke(cli, ["info", str(path), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert [g["start_reason"] for g in info["gofs"]] == ["first", "cost"]
    assert info["header"]["format_version"] == f"1.{bs.VERSION_MINOR}"
    assert any(f["block_modes"] for f in info["frames"])
    text = runner.invoke(cli, ["info", str(path)])
    assert text.exit_code == 0 and "starts (reason)" in text.output and "cost" in text.output


# --- damaged modes sections ----------------------------------------------------------------------


def _with_record(data: bytes, frame: int, **changes: object) -> bytes:
    """``data`` with record ``frame`` of its single GOF changed, CRC, index and footer rebuilt."""
    reader = bs.StreamReader(io.BytesIO(data))
    (g,) = list(reader.iter_gofs())
    assert isinstance(g, bs.GofChunk)
    frames = list(g.frames)
    frames[frame] = dataclasses.replace(frames[frame], **changes)
    payload = bs.encode_gof_payload(dataclasses.replace(g, frames=tuple(frames)))
    out = bytearray(data[: reader.header_size])
    offset = len(out)
    out += bs.CHUNK_HEAD.pack(bs.CHUNK_GOF, 0, 0, len(payload)) + payload + struct.pack("<I", zlib.crc32(payload))
    index = struct.pack("<I", 1) + bs.INDEX_ENTRY.pack(offset, g.first_frame, g.num_frames)
    index_offset = len(out)
    out += bs.CHUNK_HEAD.pack(bs.CHUNK_INDEX, 0, 0, len(index)) + index + struct.pack("<I", zlib.crc32(index))
    out += bs.FOOTER.pack(index_offset, bs.FOOTER_MAGIC)
    return bytes(out)


def _modes(data: bytes, frame: int) -> bytes:
    (g,) = list(bs.StreamReader(io.BytesIO(data)).iter_gofs())
    return g.frames[frame].modes  # type: ignore[union-attr]


def _fails(data: bytes, contains: str | None = None) -> str:
    with pytest.raises(RerfFormatError) as info:
        decode_all(io.BytesIO(data))
    msg = str(info.value)
    assert msg.strip() and "\n" not in msg
    if contains:
        assert contains.lower() in msg.lower(), msg
    return msg


def _rewrite_tables(section: bytes, change) -> bytes:  # type: ignore[no-untyped-def]
    """The modes section with its 12 tables passed through ``change(list) -> list``."""
    n, size = struct.unpack_from("<IH", section)
    tables = change(read_tables(section[6 : 6 + size], 12))
    raw = write_tables(tables)
    return struct.pack("<IH", n, len(raw)) + raw + section[6 + size :]


def _first_count_table(tables: list[Table]) -> int:
    return next(i for i, t in enumerate(tables) if not t.empty and not t.trivial)


def test_mode_symbol_out_of_range(modes_stream) -> None:
    data, _ = modes_stream

    def widen(tables: list[Table]) -> list[Table]:
        i = _first_count_table(tables)
        t = tables[i]
        tables[i] = Table(t.lo, t.hi + 3, (*t.counts, 0, 0, 0))  # symbols up to 4 (no such mode)
        return tables

    def negative(tables: list[Table]) -> list[Table]:
        i = _first_count_table(tables)
        t = tables[i]
        tables[i] = Table(t.lo - 1, t.hi, (0, *t.counts))
        return tables

    def trivial_3(tables: list[Table]) -> list[Table]:
        i = next(i for i, t in enumerate(tables) if not t.empty)
        tables[i] = Table(3, 3, (1,))
        return tables

    for change in (widen, negative, trivial_3):
        _fails(_with_record(data, 1, modes=_rewrite_tables(_modes(data, 1), change)), "outside 0..2")


@pytest.mark.parametrize("delta", [-1, 1, 1000])
def test_mode_section_for_more_or_fewer_blocks(modes_stream, delta: int) -> None:
    data, _ = modes_stream
    sec = bytearray(_modes(data, 1))
    (n,) = struct.unpack_from("<I", sec)
    struct.pack_into("<I", sec, 0, n + delta)
    _fails(_with_record(data, 1, modes=bytes(sec)), "occupied blocks")


def test_mode_counts_that_do_not_add_up(modes_stream) -> None:
    data, _ = modes_stream
    for delta in (1, -1):

        def shift(tables: list[Table], delta: int = delta) -> list[Table]:
            i = _first_count_table(tables)
            t = tables[i]
            k = int(np.argmax(t.counts))
            counts = list(t.counts)
            counts[k] += delta  # the context's counts add up to one block more or less than it has
            tables[i] = Table(t.lo, t.hi, tuple(counts))
            return tables

        _fails(_with_record(data, 1, modes=_rewrite_tables(_modes(data, 1), shift)), "counts")

    def swap(tables: list[Table]) -> list[Table]:  # same total, other histogram
        i = _first_count_table(tables)
        t = tables[i]
        counts = list(t.counts)
        k = int(np.argmax(counts))
        j = (k + 1) % len(counts)
        counts[k] -= 1
        counts[j] += 1
        tables[i] = Table(t.lo, t.hi, tuple(counts))
        return tables

    _fails(_with_record(data, 1, modes=_rewrite_tables(_modes(data, 1), swap)))


def test_truncated_modes_section_never_crashes(modes_stream) -> None:
    data, _ = modes_stream
    full = _modes(data, 1)
    shape = decode_all(io.BytesIO(data))[0][0].frame.density.shape
    errors = 0
    for n in range(len(full)):
        try:
            frames, _ = decode_all(io.BytesIO(_with_record(data, 1, modes=full[:n])))
        except RerfFormatError as exc:
            assert "\n" not in str(exc)
            errors += 1
            continue
        assert all(f.frame.density.shape == shape for f in frames)  # a lost all-zero tail word decodes the same
    assert errors >= len(full) - 4  # only the optional final zero word may go unnoticed
    _fails(_with_record(data, 1, modes=full[:5]), "truncated")
    _fails(_with_record(data, 1, modes=full[:7]), "truncated")


def test_altered_mode_words_fail_cleanly(modes_stream) -> None:
    data, _ = modes_stream
    full = _modes(data, 1)
    _, size = struct.unpack_from("<IH", full)
    start = 6 + size
    rng = np.random.default_rng(0)
    for _ in range(40):
        sec = bytearray(full)
        if len(sec) > start:
            i = int(rng.integers(start, len(sec)))
            sec[i] ^= 1 << int(rng.integers(0, 8))
        else:
            sec += bytes(rng.integers(0, 256, 4, dtype=np.uint8))
        try:
            frames, _ = decode_all(io.BytesIO(_with_record(data, 1, modes=bytes(sec))))
        except RerfFormatError as exc:
            assert "\n" not in str(exc)
            continue
        assert len(frames) == 4


def test_modes_section_on_an_intra_frame_or_without_the_flag(modes_stream) -> None:
    data, _ = modes_stream
    with pytest.raises(ValueError):
        _with_record(data, 1, flags=0)  # the writer refuses a modes section without the flag
    _fails(_with_record(data, 1, flags=0, modes=b""))  # the symbols do not parse as a plain residual frame
    _fails(_with_record(data, 1, modes=b""), "truncated")


def test_cli_exits_2_on_a_damaged_modes_section(modes_stream, tmp_path: Path) -> None:
    data, _ = modes_stream
    sec = bytearray(_modes(data, 1))
    struct.pack_into("<I", sec, 0, 0)
    path = tmp_path / "bad.rerf"
    path.write_bytes(_with_record(data, 1, modes=bytes(sec)))
    res = CliRunner().invoke(cli, ["decode", str(path), "-o", str(tmp_path / "out")])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert lines[-1].startswith("rerf: error:") and "occupied blocks" in lines[-1]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.npz"))
