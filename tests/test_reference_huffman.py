"""Baseline JPEG Huffman coding of the rerf-reference codec: the standard tables' codes, a
hand-encoded data unit, round trips (ZRL runs, full units without EOB, 0xFF stuffing) and refusals."""

from __future__ import annotations

import numpy as np
import pytest

from rerf_codec.errors import RerfFormatError, RerfUsageError
from rerf_codec.reference.huffman import AC_LUMINANCE, DC_LUMINANCE, ZIGZAG, decode_units, encode_units


def code(table, sym: int) -> str:
    return format(int(table.code[sym]), f"0{int(table.length[sym])}b")


def test_standard_luminance_codes_match_t81_annex_k():
    # Table K.3 (DC) and K.5 (AC) of ITU-T T.81.
    assert [code(DC_LUMINANCE, c) for c in range(12)] == [
        "00", "010", "011", "100", "101", "110", "1110", "11110", "111110", "1111110", "11111110", "111111110",
    ]
    assert code(AC_LUMINANCE, 0x00) == "1010"  # EOB
    assert code(AC_LUMINANCE, 0x01) == "00"
    assert code(AC_LUMINANCE, 0x02) == "01"
    assert code(AC_LUMINANCE, 0x03) == "100"
    assert code(AC_LUMINANCE, 0x11) == "1100"
    assert code(AC_LUMINANCE, 0xF0) == "11111111001"  # ZRL
    assert code(AC_LUMINANCE, 0xFA) == "1111111111111110"
    assert int((AC_LUMINANCE.length > 0).sum()) == 162


def test_zigzag_is_jpeg_order():
    assert ZIGZAG[:10].tolist() == [0, 1, 8, 16, 9, 2, 3, 10, 17, 24]
    assert ZIGZAG[-3:].tolist() == [55, 62, 63]
    assert sorted(ZIGZAG.tolist()) == list(range(64))


def test_hand_encoded_unit():
    # DC 5: category 3 "100" + "101"; AC -1 at k=1: run/size 0/1 "00" + "0"; EOB "1010";
    # 13 bits "1001010001010" padded with 1-bits -> 0x94 0x57.
    unit = np.zeros((1, 64), dtype=np.int64)
    unit[0, 0], unit[0, 1] = 5, -1
    assert encode_units(unit) == bytes([0x94, 0x57])
    assert decode_units(bytes([0x94, 0x57]), 1).tolist() == unit.tolist()


def test_dc_is_predicted_from_the_previous_unit():
    units = np.zeros((3, 64), dtype=np.int64)
    units[:, 0] = [7, 7, 7]
    # 7 (cat 3 "100"+"111"), then differences 0, 0 ("00" each), three EOBs.
    bits = "100111" + "1010" + "00" + "1010" + "00" + "1010"
    bits += "1" * (-len(bits) % 8)
    assert encode_units(units) == int(bits, 2).to_bytes(len(bits) // 8, "big")


@pytest.mark.parametrize("seed", [0, 1])
def test_round_trip(seed):
    rng = np.random.default_rng(seed)
    n = 500
    u = np.zeros((n, 64), dtype=np.int64)
    mask = rng.random((n, 64)) < 0.1
    u[mask] = rng.integers(-1023, 1024, int(mask.sum()))
    u[:, 0] = rng.integers(-1023, 1024, n)
    u[::7, 63] = 5  # full units: no EOB
    u[::11, 1:] = 0
    u[::11, 40] = -3  # a run of 38 zeros: two ZRLs
    data = encode_units(u)
    assert b"\xff\x00" in data  # stuffing happened somewhere in this much data
    assert decode_units(data, n).tolist() == u.tolist()


def test_empty_and_all_zero():
    assert encode_units(np.zeros((0, 64), dtype=np.int64)) == b""
    z = np.zeros((4, 64), dtype=np.int64)
    assert decode_units(encode_units(z), 4).tolist() == z.tolist()


def test_out_of_baseline_range_is_refused():
    u = np.zeros((1, 64), dtype=np.int64)
    u[0, 5] = 1024  # AC category 11
    with pytest.raises(RerfUsageError, match="category 11"):
        encode_units(u)
    u = np.zeros((2, 64), dtype=np.int64)
    u[:, 0] = [2047, -2047]  # difference 4094: category 12
    with pytest.raises(RerfUsageError, match="category 12"):
        encode_units(u)


def test_corrupt_segments_are_errors():
    rng = np.random.default_rng(3)
    u = np.zeros((50, 64), dtype=np.int64)
    u[:, :6] = rng.integers(-20, 21, (50, 6))
    data = encode_units(u)
    with pytest.raises(RerfFormatError):
        decode_units(data[: len(data) // 2], 50)
    with pytest.raises(RerfFormatError):
        decode_units(data + b"\x00\x00", 50)
    with pytest.raises(RerfFormatError):
        decode_units(b"\xff\xff\xff\xff", 1)  # invalid prefix / bad stuffing
