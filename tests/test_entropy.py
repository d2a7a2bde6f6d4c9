"""Entropy layer: golden words (STYLE.md lesson 7), class mapping, mantissas, tables, coding efficiency.

The golden values below were computed once with constriction 0.5.0 and are pinned:
a change in any of them changes the bitstream, which needs a new format version (or a
proof that only the encoder side moved and old streams still decode).
"""

from __future__ import annotations

import numpy as np
import pytest

from rerf_codec.codec import coefficients, entropy, occupancy, quant
from rerf_codec.codec.entropy import SymbolDecoder, SymbolEncoder, Table
from rerf_codec.errors import RerfFormatError

# --------------------------------------------------------------------------- fixed inputs

TABLE = Table(-3, 4, (1, 5, 20, 100, 30, 8, 2, 1))
CLASSES = np.array([0, 0, 1, -1, 2, 0, -3, 4, 0, 1, 0, -2, 0, 0, 1, 3], dtype=np.int32)
BITS = np.array([1, 0, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1], dtype=np.int32)
UNIFORM = np.array([0, 255, 17, 128, 3, 254], dtype=np.int32)


def _levels() -> np.ndarray:
    lv = np.zeros((3, 2, 512), np.int64)
    lv[0, 0, 0], lv[0, 0, 1], lv[0, 0, 8], lv[0, 0, 64], lv[0, 1, 0] = 37, -2, 1, -1, -5
    lv[1, 0, 0], lv[1, 0, 3], lv[1, 1, 0], lv[1, 1, 511] = 1000, 17, -16, 2**31 - 1
    lv[2, 0, 0], lv[2, 1, 9], lv[2, 1, 73] = 15, -(2**20) + 3, 1
    return lv


def _mask() -> np.ndarray:
    mask = np.zeros((3, 2, 5), bool)
    for i in [(0, 0, 0), (0, 1, 0), (1, 1, 1), (2, 0, 4), (2, 1, 4), (1, 0, 2)]:
        mask[i] = True
    return mask


def _words(data: bytes) -> list[int]:
    assert len(data) % 4 == 0
    return [int(w) for w in np.frombuffer(data, "<u4")]


# --------------------------------------------------------------------------- golden words

GOLDEN_TABLE = [0x876E5D2A, 0x48867E77]
GOLDEN_BITS = [0xD7EF2CBB]  # P(1) = 77/256
GOLDEN_UNIFORM = [0x00FF1180, 0x026DFC02]
GOLDEN_MIXED = [0x876E5D2A, 0x488748DD, 0x4295B60B, 0xD6BC520F]
GOLDEN_LEVEL_WORDS = [0xA487CBF4, 0xF2F8228A]
GOLDEN_LEVEL_MANTISSA = "2fa03fffe8fffffffe"
GOLDEN_LEVEL_SIDE_INFO_LEN = 230
GOLDEN_LEVEL_SIDE_INFO = (
    "00012020fb112000000000000000000000000000000000000000000020fe0155550055010001000100010001000100010001"
    "00010001000100010001000100010001000100010001000100001510000020000000000000000000000000000000000010f0"
    "1540000000000000000000000000000000400000000000000000000000000000400000000000400000e10004000000000000"
    "0000000000000000000000000000000000000000000000003c00103c02000000000000000000000000000002000000000000"
    "000000000000000000000000000000000000000000000000000000002a2a"
)
GOLDEN_MASK = [0xFFC0E2F6, 0xE718909F]


def test_golden_table_words():
    enc = SymbolEncoder()
    enc.encode(CLASSES, TABLE)
    data = enc.finish()
    assert len(data) == 8
    assert _words(data) == GOLDEN_TABLE
    assert np.array_equal(SymbolDecoder(data).decode(CLASSES.size, TABLE), CLASSES)


def test_golden_bits_words():
    enc = SymbolEncoder()
    enc.encode_bits(BITS, 77)
    data = enc.finish()
    assert len(data) == 4
    assert _words(data) == GOLDEN_BITS
    assert np.array_equal(SymbolDecoder(data).decode_bits(BITS.size, 77), BITS)


def test_golden_uniform_words():
    enc = SymbolEncoder()
    enc.encode_uniform(UNIFORM, 256)
    data = enc.finish()
    assert len(data) == 8
    assert _words(data) == GOLDEN_UNIFORM
    assert np.array_equal(SymbolDecoder(data).decode_uniform(UNIFORM.size, 256), UNIFORM)


def test_golden_mixed_stream_and_trivial_table_costs_nothing():
    enc = SymbolEncoder()
    enc.encode(CLASSES, TABLE)
    enc.encode_bits(BITS, 200)
    enc.encode_uniform(UNIFORM, 256)
    enc.encode(CLASSES[:3], Table(0, 0, (1,)))  # trivial table: no bits
    enc.encode(np.zeros(0, np.int32), TABLE)  # nothing to code
    data = enc.finish()
    assert len(data) == 16
    assert _words(data) == GOLDEN_MIXED
    dec = SymbolDecoder(data)
    assert np.array_equal(dec.decode(CLASSES.size, TABLE), CLASSES)
    assert np.array_equal(dec.decode_bits(BITS.size, 200), BITS)
    assert np.array_equal(dec.decode_uniform(UNIFORM.size, 256), UNIFORM)
    assert np.array_equal(dec.decode(3, Table(0, 0, (1,))), np.zeros(3, np.int32))
    assert dec.decode(0, TABLE).size == 0


def test_words_are_little_endian_bytes():
    enc = SymbolEncoder()
    enc.encode(CLASSES, TABLE)
    data = enc.finish()
    assert data[:4] == bytes([0x2A, 0x5D, 0x6E, 0x87])
    assert entropy.words_to_bytes(np.array(GOLDEN_TABLE, dtype=np.uint32)) == data
    assert np.array_equal(entropy.bytes_to_words(data), np.array(GOLDEN_TABLE, dtype=np.uint32))
    with pytest.raises(RerfFormatError):
        entropy.bytes_to_words(data[:-1])


def test_golden_encode_levels():
    lv = _levels()
    coded = coefficients.encode_levels(lv)
    assert _words(coded.words) == GOLDEN_LEVEL_WORDS
    assert coded.mantissa.hex() == GOLDEN_LEVEL_MANTISSA
    assert len(coded.side_info) == GOLDEN_LEVEL_SIDE_INFO_LEN
    assert coded.side_info.hex() == GOLDEN_LEVEL_SIDE_INFO
    out = coefficients.decode_levels(coded.side_info, coded.words, coded.mantissa, 3, 2)
    assert out.dtype == np.int32  # |level| <= 2**31 - 1
    assert np.array_equal(out, lv)


def test_golden_encode_mask():
    mask = _mask()
    enc = SymbolEncoder()
    occupancy.encode_mask(mask, enc)
    data = enc.finish()
    assert len(data) == 8
    assert _words(data) == GOLDEN_MASK
    assert np.array_equal(occupancy.decode_mask(mask.shape, SymbolDecoder(data)), mask)


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 3, 1), (4, 4, 4), (5, 2, 7), (17, 1, 9)])
@pytest.mark.parametrize("density", [0.0, 0.05, 0.5, 1.0])
def test_mask_round_trip(shape, density):
    rng = np.random.default_rng([*shape, int(density * 100)])
    mask = rng.random(shape) < density
    enc = SymbolEncoder()
    occupancy.encode_mask(mask, enc)
    got = occupancy.decode_mask(shape, SymbolDecoder(enc.finish()))
    assert got.shape == shape and got.dtype == bool
    assert np.array_equal(got, mask)


# --------------------------------------------------------------------------- levels <-> classes

_POW2 = [2**k for k in range(31)]
SPECIAL_LEVELS = sorted(
    {0, 1, 14, 15, 16, 17, 31, 32, 33, 255, 256, 257, 2**31 - 2, 2**31 - 1}
    | set(_POW2)
    | {p - 1 for p in _POW2}
    | {p + 1 for p in _POW2[:-1]}
)


def test_levels_to_classes_special_values():
    pos = np.array(SPECIAL_LEVELS, dtype=np.int64)
    levels = np.concatenate([pos, -pos])
    classes, nbits, mant = entropy.levels_to_classes(levels)
    assert classes.dtype == np.int32
    for v, c, nb, m in zip(levels.tolist(), classes.tolist(), nbits.tolist(), mant.tolist(), strict=True):
        a = abs(v)
        if a < 16:
            assert (c, nb, m) == (v, 0, 0)
        else:
            k = a.bit_length()
            assert abs(c) == 11 + k and (c > 0) == (v > 0)
            assert nb == k - 1 and m == a - 2 ** (k - 1) and 0 <= m < 2**nb
    assert np.abs(classes).max() <= entropy.MAX_CLASS
    assert np.array_equal(entropy.mantissa_bits(classes), nbits)
    assert np.array_equal(entropy.classes_to_levels(classes, mant), levels)


def test_levels_to_classes_random_round_trip():
    rng = np.random.default_rng(0)
    levels = np.concatenate(
        [
            rng.integers(-(2**31) + 1, 2**31, 5000),
            (rng.laplace(0, 20, 5000)).astype(np.int64),
            rng.integers(-40, 40, 2000),
        ]
    )
    classes, nbits, mant = entropy.levels_to_classes(levels)
    assert np.array_equal(entropy.classes_to_levels(classes, mant), levels)
    packed = entropy.pack_mantissas(nbits, mant)
    assert len(packed) == (int(nbits.sum()) + 7) // 8
    assert np.array_equal(entropy.unpack_mantissas(nbits, packed), mant)


def test_levels_out_of_range_are_rejected():
    for bad in (2**31, -(2**31), 2**40):
        with pytest.raises(RerfFormatError):
            entropy.levels_to_classes(np.array([0, bad], dtype=np.int64))


def test_pack_unpack_mantissas_fixed():
    nbits = np.array([0, 3, 1, 0, 8, 30, 4], dtype=np.int64)
    values = np.array([0, 5, 1, 0, 0xA5, 2**30 - 1, 9], dtype=np.int64)
    packed = entropy.pack_mantissas(nbits, values)
    # 101 1 10100101 111...1 (30) 1001 -> 47 bits, MSB first, zero padded to 6 bytes
    bits = "101" + "1" + "10100101" + "1" * 30 + "1001"
    assert packed == int(bits + "0" * (48 - len(bits)), 2).to_bytes(6, "big")
    assert np.array_equal(entropy.unpack_mantissas(nbits, packed), values)
    assert entropy.pack_mantissas(np.zeros(4, np.int64), np.zeros(4, np.int64)) == b""
    with pytest.raises(RerfFormatError):
        entropy.unpack_mantissas(nbits, packed[:-1])
    with pytest.raises(RerfFormatError):
        entropy.unpack_mantissas(nbits, packed + b"\0")


# --------------------------------------------------------------------------- tables


def test_table_serialisation_round_trip():
    tables = [
        TABLE,
        entropy.UNUSED,
        Table(5, 5, (1,)),
        Table(-42, 42, tuple(range(1, 86))),
        Table(-1, 0, (16384, 1)),
        Table(0, 2, (0, 300000, 1)),
    ]
    data = entropy.write_tables(tables)
    assert entropy.read_tables(data, len(tables)) == tables
    with pytest.raises(RerfFormatError):
        entropy.read_tables(data[:-1], len(tables))
    with pytest.raises(RerfFormatError):
        entropy.read_tables(data + b"\0", len(tables))
    with pytest.raises(RerfFormatError):
        entropy.read_tables((-44).to_bytes(1, "little", signed=True) + b"\0", 1)  # lo = -44: outside the alphabet


def test_build_table_counts():
    classes = np.array([0] * 900 + [1] * 90 + [-2] * 10, dtype=np.int32)
    t = entropy.build_table(classes)
    assert (t.lo, t.hi) == (-2, 1)
    assert t.counts[1] == 0  # -1 never occurs
    assert all(c >= 1 for i, c in enumerate(t.counts) if i != 1)
    assert any(abs(sum(t.counts) - total) <= len(t.counts) for total in entropy.COUNT_TOTALS)
    few = entropy.build_table(classes[::10])  # 100 symbols: coarse counts (cheap side info) win
    assert sum(few.counts) < sum(t.counts) or sum(t.counts) <= 1 << 6 + len(t.counts)
    assert entropy.build_table(np.zeros(0, np.int32)) == entropy.UNUSED
    assert entropy.build_table(np.full(7, -4, np.int32)) == Table(-4, -4, (1,))
    assert entropy.read_tables(entropy.write_tables([t]), 1) == [t]


# --------------------------------------------------------------------------- efficiency


def test_coded_size_close_to_ideal_bits():
    """Range coder + raw mantissas within 1% of the model entropy on a large Laplacian level array."""
    rng = np.random.default_rng(1)
    scale = 40.0 * np.exp(-quant.frequency_index().sum(axis=1) / 4.0)
    levels = np.round(rng.laplace(0.0, 1.0, (4, 500, 512)) * scale).astype(np.int64)
    coded = coefficients.encode_levels(levels)
    size = len(coded.words) + len(coded.mantissa)
    ideal = coded.ideal_bits / 8
    assert ideal > 100_000
    assert abs(size - ideal) <= 0.01 * ideal, (size, ideal)
    out = coefficients.decode_levels(coded.side_info, coded.words, coded.mantissa, 4, 500)
    assert out.dtype == np.int32 and np.array_equal(out, levels)
