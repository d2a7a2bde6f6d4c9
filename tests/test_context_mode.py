"""Coefficient coding mode 1 (format 1.1): previous-band contexts, table repeats, the mode id,
and rate–distortion-optimised quantisation (encoder only)."""

from __future__ import annotations

import dataclasses
import io
import struct
import zlib

import numpy as np
import pytest

from rerf_codec import bitstream as bs
from rerf_codec.codec import coefficients as co
from rerf_codec.codec.decoder import decode_all
from rerf_codec.codec.encoder import EncoderConfig, encode_frames
from rerf_codec.codec.entropy import MERGE, REPEAT, UNUSED, Table, read_tables, write_tables
from rerf_codec.codec.quant import DeadZone, quantize
from rerf_codec.codec.rdoq import rdoq
from rerf_codec.errors import RerfFormatError, RerfUsageError
from rerf_codec.grids import GridFrame, SequenceMeta
from rerf_codec.synthetic import SyntheticSpec, synthetic_frames, synthetic_meta

SPEC = SyntheticSpec(shape=(24, 20, 17), feature_channels=3, num_frames=4, occupancy=0.3, seed=3)


def _levels(rng: np.random.Generator, c: int = 4, n: int = 60, scale: float = 3.0) -> np.ndarray:
    """Sparse, low-pass-heavy levels like a real frame's (big ones included)."""
    f = np.arange(512)
    decay = np.exp(-((f // 64) + (f // 8) % 8 + f % 8) / 3.0)
    lv = np.round(rng.laplace(0, scale, (c, n, 512)) * decay).astype(np.int64)
    lv[0, 0, 0] = 2**20 + 5
    lv[1, 3, 7] = -40000
    lv[:, -5:] = 0  # blocks with nothing to code
    return lv


def _stream(config: EncoderConfig) -> tuple[bytes, str]:
    buf = io.BytesIO()
    meta = SequenceMeta.from_json_dict(synthetic_meta(SPEC), "synthetic")
    frames = [(i, GridFrame(d, f)) for i, (d, f, _m) in enumerate(synthetic_frames(SPEC))]
    rep = encode_frames(meta, frames, buf, config)
    return buf.getvalue(), rep.sha256


def test_band_context_values():
    nz = np.arange(0, 7)
    assert co.band_context(nz, 0).tolist() == [0] * 7
    # band 1 has 3 frequencies, band 0 has 1: context of band 2 from band 1's count
    assert co.band_context(np.array([0, 1, 2, 3]), 2).tolist() == [0, 2, 3, 3]
    assert co.band_context(np.array([0, 1]), 1).tolist() == [0, 3]
    size = int(co.BAND_STARTS[11] - co.BAND_STARTS[10])  # 48
    assert co.band_context(np.array([0, 1, 12, 13, 24, 25, 48]), 11).tolist() == [0, 1, 1, 2, 2, 3, 3]
    assert size == 48


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mode1_round_trip_with_and_without_repeats(seed):
    rng = np.random.default_rng(seed)
    key = _levels(rng)
    coded = co.encode_levels(key, mode=co.MODE_CONTEXT)
    assert len(coded.tables) == co.n_tables(co.MODE_CONTEXT) == 178
    assert REPEAT not in read_tables(coded.side_info, 178, allow_repeat=True)  # keyframe: never repeats
    out, tables = co.decode_levels_tables(coded.side_info, coded.words, coded.mantissa, 4, 60, co.MODE_CONTEXT)
    assert np.array_equal(out, key) and tables == coded.tables
    # a similar next frame repeats some tables
    nxt = _levels(rng)
    coded2 = co.encode_levels(nxt, mode=co.MODE_CONTEXT, prev_tables=coded.tables)
    written = read_tables(coded2.side_info, 178, allow_repeat=True)
    assert REPEAT in written
    out2, tables2 = co.decode_levels_tables(
        coded2.side_info, coded2.words, coded2.mantissa, 4, 60, co.MODE_CONTEXT, tables
    )
    assert np.array_equal(out2, nxt) and tables2 == coded2.tables
    # the repeated slots carry the previous frame's tables
    for i, t in enumerate(written):
        if t == REPEAT:
            assert tables2[i] == coded.tables[i]


def test_mode1_codes_fewer_bits_on_structured_levels():
    rng = np.random.default_rng(5)
    lv = _levels(rng, c=13, n=200, scale=2.0)
    b0 = co.encode_levels(lv, mode=co.MODE_BANDS)
    b1 = co.encode_levels(lv, mode=co.MODE_CONTEXT)
    assert b1.ideal_bits < b0.ideal_bits


def test_mode0_is_unchanged_by_the_new_mode():
    lv = _levels(np.random.default_rng(6))
    coded = co.encode_levels(lv)
    assert coded.side_info == co.encode_levels(lv, mode=co.MODE_BANDS, prev_tables=None).side_info
    assert len(read_tables(coded.side_info, 46)) == 46
    assert np.array_equal(co.decode_levels(coded.side_info, coded.words, coded.mantissa, 4, 60), lv)


def test_repeat_marker_is_rejected_where_it_has_no_meaning():
    lv = _levels(np.random.default_rng(7))
    coded = co.encode_levels(lv, mode=co.MODE_CONTEXT)
    tables = read_tables(coded.side_info, 178, allow_repeat=True)
    used = next(i for i, t in enumerate(tables) if not t.empty)
    unused = next(i for i, t in enumerate(tables) if t == UNUSED)
    forged = list(tables)
    forged[used] = REPEAT
    side = write_tables(forged)
    # keyframe (no previous tables)
    with pytest.raises(RerfFormatError, match="keyframe"):
        co.decode_levels(side, coded.words, coded.mantissa, 4, 60, co.MODE_CONTEXT)
    # previous frame's slot unused
    prev = list(coded.tables)
    prev[used] = UNUSED
    with pytest.raises(RerfFormatError, match="did not have"):
        co.decode_levels(side, coded.words, coded.mantissa, 4, 60, co.MODE_CONTEXT, tuple(prev))
    # wrong number of previous tables
    with pytest.raises(RerfFormatError, match="did not have"):
        co.decode_levels(side, coded.words, coded.mantissa, 4, 60, co.MODE_CONTEXT, coded.tables[:46])
    # mode 0 knows no repeat marker
    with pytest.raises(RerfFormatError, match="bad range"):
        read_tables(write_tables([REPEAT]), 1)
    # a repeat for a slot that has no symbols must have been unused
    forged = list(tables)
    forged[unused] = REPEAT
    with pytest.raises(RerfFormatError):
        co.decode_levels(write_tables(forged), coded.words, coded.mantissa, 4, 60, co.MODE_CONTEXT, coded.tables)
    # and the valid repeat of the same tables decodes
    forged = list(tables)
    forged[used] = REPEAT
    out = co.decode_levels(write_tables(forged), coded.words, coded.mantissa, 4, 60, co.MODE_CONTEXT, coded.tables)
    assert np.array_equal(out, lv)


def test_merge_marker_shares_the_previous_context_table():
    # few symbols per frame: splitting a band into contexts does not pay for its side info
    rng = np.random.default_rng(13)
    lv = _levels(rng, c=3, n=20, scale=3.0)
    coded = co.encode_levels(lv, mode=co.MODE_CONTEXT)
    written = read_tables(coded.side_info, 178, allow_repeat=True)
    merged = [i for i, t in enumerate(written) if t == MERGE]
    assert merged
    for i in merged:
        assert coded.tables[i] == coded.tables[i - 1] and not coded.tables[i].empty
    out = co.decode_levels(coded.side_info, coded.words, coded.mantissa, 3, 20, co.MODE_CONTEXT)
    assert np.array_equal(out, lv)
    # a merge marker on a last-band table or a context-0 table, or after an unused table, is rejected
    for slot in (0, 1, 89, 90):
        forged = list(written)
        forged[slot] = MERGE
        with pytest.raises(RerfFormatError, match="shares the table before it"):
            co.decode_levels(write_tables(forged), coded.words, coded.mantissa, 3, 20, co.MODE_CONTEXT)
    after_unused = next(i for i in range(2, 89) if (i - 1) % 4 and written[i - 1] == UNUSED)
    forged = list(written)
    forged[after_unused] = MERGE
    with pytest.raises(RerfFormatError, match="unused"):
        co.decode_levels(write_tables(forged), coded.words, coded.mantissa, 3, 20, co.MODE_CONTEXT)
    with pytest.raises(RerfFormatError, match="bad range"):
        read_tables(write_tables([MERGE]), 1)  # mode 0 knows no markers


def test_corrupt_mode1_side_info_raises_format_error():
    lv = _levels(np.random.default_rng(8))
    key = co.encode_levels(lv, mode=co.MODE_CONTEXT)
    coded = co.encode_levels(_levels(np.random.default_rng(9)), mode=co.MODE_CONTEXT, prev_tables=key.tables)
    rng = np.random.default_rng(10)
    damaged = 0
    for trial in range(300):
        side = bytearray(coded.side_info)
        if trial % 3 == 0:
            side = side[: int(rng.integers(0, len(side)))]
        else:
            for _ in range(int(rng.integers(1, 4))):
                side[int(rng.integers(0, len(side)))] = int(rng.integers(0, 256))
        if bytes(side) == coded.side_info:  # a byte overwritten with itself: nothing to detect
            continue
        damaged += 1
        with pytest.raises(RerfFormatError):
            co.decode_levels(bytes(side), coded.words, coded.mantissa, 4, 60, co.MODE_CONTEXT, key.tables)
    assert damaged > 250


def test_unknown_mode_id_is_rejected():
    with pytest.raises(RerfFormatError, match="mode"):
        co.decode_levels(b"", b"", b"", 2, 1, mode=2)
    with pytest.raises(RerfUsageError, match="coefficient mode"):
        EncoderConfig(coeff_mode=7).validate()


def _patch_header(data: bytes, *, minor: int | None = None, mode: int | None = None) -> bytes:
    magic, major, old_minor, flags, size, _ = bs.FILE_HEADER.unpack_from(data)
    body = bytearray(data[bs.FILE_HEADER.size : bs.FILE_HEADER.size + size])
    if mode is not None:
        body[83] = mode
    head = bs.FILE_HEADER.pack(magic, major, old_minor if minor is None else minor, flags, size, zlib.crc32(body))
    return head + bytes(body) + data[bs.FILE_HEADER.size + size :]


def test_header_mode_id_validated():
    data, sha = _stream(EncoderConfig(gof=4, coeff_mode=1))
    assert data[bs.FILE_HEADER.size + 83] == bs.COEFF_MODE_CONTEXT
    assert struct.unpack_from("<BB", data, 4) == (1, bs.VERSION_MINOR)  # version 1.1 or later
    assert decode_all(io.BytesIO(data))[1] == sha
    with pytest.raises(RerfFormatError, match="unknown coefficient coding mode 9"):
        decode_all(io.BytesIO(_patch_header(data, mode=9)))
    with pytest.raises(RerfFormatError, match="reserved byte"):
        decode_all(io.BytesIO(_patch_header(data, minor=0)))  # a 1.0 stream cannot use mode 1
    # mode 0 streams are still written and decoded (as 1.0 ones are)
    data0, sha0 = _stream(EncoderConfig(gof=4, coeff_mode=0))
    assert data0[bs.FILE_HEADER.size + 83] == bs.COEFF_MODE_BANDS
    assert decode_all(io.BytesIO(data0))[1] == sha0
    assert decode_all(io.BytesIO(_patch_header(data0, minor=0)))[1] == sha0


@pytest.mark.parametrize("mode", [0, 1])
@pytest.mark.parametrize("lam", [0.0, 0.12, 0.5])
def test_closed_loop_with_rdoq_and_both_modes(mode, lam):
    data, sha = _stream(EncoderConfig(gof=3, coeff_mode=mode, rdoq_lambda=lam, rdoq_lambda_residual=lam))
    frames, got = decode_all(io.BytesIO(data))
    assert got == sha and len(frames) == SPEC.num_frames


def test_rdoq_only_moves_levels_toward_zero_and_lowers_the_cost():
    rng = np.random.default_rng(11)
    coeffs = rng.laplace(0, 40.0, (4, 50, 512)) * np.exp(-np.arange(512) / 150.0)
    steps = np.full((4, 512), 10, dtype=np.int64)
    plain = quantize(coeffs, steps, DeadZone(ac=0.5, dc=0.5))
    opt = rdoq(coeffs, steps, quantize(coeffs, steps, DeadZone(ac=0.3, dc=0.5)), 0.15)
    assert np.all(np.abs(opt) <= np.abs(plain))
    assert np.all((opt == 0) | (np.sign(opt) == np.sign(plain)))
    assert np.array_equal(opt[:, :, 0], plain[:, :, 0])  # DC keeps its dead-zone level (0.5 here)
    a = coeffs / steps[:, None, :]

    def cost(lv: np.ndarray) -> float:
        return float(((a - lv) ** 2).sum()) + 0.15 * co.encode_levels(lv).ideal_bits

    assert cost(opt) < cost(quantize(coeffs, steps, DeadZone(ac=0.3, dc=0.5)))
    assert cost(opt) < cost(plain)
    assert rdoq(coeffs, steps, plain, 0.0) is plain


def test_build_table_never_loses_a_class():
    rng = np.random.default_rng(12)
    for n in (2, 17, 300, 5000):
        classes = rng.integers(-5, 6, n).astype(np.int32)
        t = co.build_table(classes)
        assert all(t.counts[c - t.lo] > 0 for c in np.unique(classes))
        assert isinstance(t, Table)


def test_fuzzed_mode1_records_raise_only_format_errors():
    """Random damage to the side info and coefficient sections of the context_mode vector's
    frames (the chunk CRC bypassed): every decode ends in RerfFormatError or in frames."""
    from pathlib import Path

    from rerf_codec.codec.decoder import decode_gof

    path = Path(__file__).resolve().parents[1] / "bitstreams" / "conformance" / "context_mode" / "stream.rerf"
    reader = bs.StreamReader(io.BytesIO(path.read_bytes()))
    (gof,) = list(reader.iter_gofs())
    grid = tuple(reader.header.grid_shape)
    features = (reader.header.feature_channels, *grid)
    rng = np.random.default_rng(14)
    outcomes = {"rejected": 0, "decoded": 0}
    for trial in range(120):
        frames = list(gof.frames)
        i = int(rng.integers(0, len(frames)))
        name = ("side_info", "coeff_words", "mantissa")[trial % 3]
        data = bytearray(getattr(frames[i], name))
        if name == "side_info" and trial % 2:  # damage the (raw) table bytes, not the zstd frame
            raw = bytearray(bs.decode_side_info(bytes(data)))
            if raw:
                raw[int(rng.integers(0, len(raw)))] = int(rng.integers(0, 256))
            data = bytearray([bs.SIDE_INFO_RAW]) + raw
        elif data:
            data[int(rng.integers(0, len(data)))] ^= 1 << int(rng.integers(0, 8))
        frames[i] = dataclasses.replace(frames[i], **{name: bytes(data)})
        damaged = dataclasses.replace(gof, frames=tuple(frames))
        decoded = []
        try:
            for item in decode_gof(damaged, reader.header):
                decoded.append((item.index, item.frame.density.shape, item.frame.features.shape))
        except RerfFormatError:
            outcomes["rejected"] += 1
            # what came out before the error is frames in order, each of the stream's shape
            assert decoded == [(gof.first_frame + k, grid, features) for k in range(len(decoded))]
            continue
        # or it decodes: every frame of the GOF, in order, each of the stream's shape
        outcomes["decoded"] += 1
        assert decoded == [(gof.first_frame + k, grid, features) for k in range(len(gof.frames))]
    # both outcomes happen, so neither branch above is dead
    assert outcomes["rejected"] > 0 and outcomes["decoded"] > 0, outcomes
