"""Baseline JPEG Huffman coding of 8×8 data units (ITU-T T.81, Annex C, F.1.2, K.3).

This is the entropy coder of the ``rerf-reference`` baseline, written from the JPEG
specification (not copied from any codec): the standard luminance DC and AC tables of
Annex K.3 (Tables K.3 and K.5), code generation of Annex C (``BITS``/``HUFFVAL`` →
canonical codes), DC prediction from the previous data unit of the same stream,
run/size AC symbols with ZRL (16 zeros) and EOB, the magnitude-category extra bits of
F.1.2.1, padding of the last byte with 1-bits and 0xFF byte stuffing (F.1.2.3).

Why baseline Huffman and not something better: the point of the baseline is to measure
what the ReRF paper's coder costs, so it codes exactly as a baseline JPEG scan would.
Baseline JPEG limits DC differences to category 11 and AC values to category 10 (the
standard tables have no codes beyond); levels outside are refused with
``RerfUsageError`` (never silently wrapped, unlike ReRF's own coder).

The encoder is vectorised over all data units of a stream; the decoder is a table-driven
loop over symbols (Huffman decoding is sequential by nature).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rerf_codec.errors import RerfFormatError, RerfUsageError

__all__ = [
    "AC_LUMINANCE",
    "DC_LUMINANCE",
    "MAX_AC_CATEGORY",
    "MAX_DC_CATEGORY",
    "ZIGZAG",
    "HuffmanTable",
    "decode_units",
    "encode_units",
]

MAX_DC_CATEGORY = 11
"""Largest DC-difference magnitude category of baseline JPEG (8-bit samples)."""
MAX_AC_CATEGORY = 10
"""Largest AC magnitude category of baseline JPEG (the standard AC tables stop at size 10)."""
EOB = 0x00
ZRL = 0xF0


def _zigzag() -> np.ndarray:
    """``ZIGZAG[k]`` = natural (row-major) index of the k-th coefficient in zig-zag order (T.81 Figure 5)."""
    def key(rc: tuple[int, int]) -> tuple[int, int]:
        r, c = rc
        return (r + c, c if (r + c) % 2 == 0 else r)  # even diagonals run up-right, odd ones down-left

    order = sorted(((r, c) for r in range(8) for c in range(8)), key=key)
    return np.array([r * 8 + c for r, c in order], dtype=np.int64)


ZIGZAG = _zigzag()


@dataclass(frozen=True)
class HuffmanTable:
    """A JPEG Huffman table from ``bits`` (code counts per length 1..16) and ``values``.

    ``code[symbol]`` / ``length[symbol]`` (256 entries, length 0 = no code) come from the
    canonical generation procedure of T.81 Annex C (Figures C.1–C.3); ``lut`` maps every
    16-bit prefix to ``(symbol << 8) | length`` for the decoder (0 = invalid prefix).
    """

    bits: tuple[int, ...]
    values: tuple[int, ...]
    code: np.ndarray = field(init=False, repr=False, compare=False)
    length: np.ndarray = field(init=False, repr=False, compare=False)
    lut: np.ndarray = field(init=False, repr=False, compare=False)
    lut_list: list[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.bits) != 16 or sum(self.bits) != len(self.values):
            raise ValueError("HuffmanTable: bits must hold 16 counts adding up to len(values)")
        code = np.zeros(256, dtype=np.int64)
        length = np.zeros(256, dtype=np.int64)
        lut = np.zeros(1 << 16, dtype=np.int64)
        c, k = 0, 0
        for n in range(1, 17):  # Figure C.2: codes of each length are consecutive integers
            for _ in range(self.bits[n - 1]):
                sym = self.values[k]
                code[sym], length[sym] = c, n
                lo = c << (16 - n)
                lut[lo : lo + (1 << (16 - n))] = (sym << 8) | n
                c += 1
                k += 1
            c <<= 1
        object.__setattr__(self, "code", code)
        object.__setattr__(self, "length", length)
        object.__setattr__(self, "lut", lut)
        object.__setattr__(self, "lut_list", lut.tolist())



# Table K.3: luminance DC differences.
DC_LUMINANCE = HuffmanTable(
    bits=(0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0),
    values=tuple(range(12)),
)
# Table K.5: luminance AC coefficients (run/size symbols, 0x00 = EOB, 0xF0 = ZRL).
AC_LUMINANCE = HuffmanTable(
    bits=(0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D),
    values=(
        0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07,
        0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xA1, 0x08, 0x23, 0x42, 0xB1, 0xC1, 0x15, 0x52, 0xD1, 0xF0,
        0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0A, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x25, 0x26, 0x27, 0x28,
        0x29, 0x2A, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49,
        0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69,
        0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
        0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7,
        0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5,
        0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE1, 0xE2,
        0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8,
        0xF9, 0xFA,
    ),
)  # fmt: skip


def _category(v: np.ndarray) -> np.ndarray:
    """Magnitude category SSSS of T.81 Table F.1/F.2 = bit length of |v| (0 for 0)."""
    mag = np.abs(v)
    _, e = np.frexp(mag.astype(np.float64))
    return np.where(mag == 0, 0, e).astype(np.int64)


def _extra_bits(v: np.ndarray, cat: np.ndarray) -> np.ndarray:
    """The SSSS low-order bits appended after a symbol (F.1.2.1): v, or v − 1 in two's complement if v < 0."""
    return np.where(v < 0, v + (np.int64(1) << cat) - 1, v)


def encode_units(units: np.ndarray) -> bytes:
    """Huffman-code ``(n, 64)`` integer data units (zig-zag order) as one JPEG scan of one component.

    Returns the entropy-coded segment: codes MSB first, the last byte padded with 1-bits,
    every 0xFF byte followed by a stuffed 0x00. DC is predicted from the previous unit's
    DC (0 before the first), as within one JPEG component.
    """
    u = np.asarray(units, dtype=np.int64)
    if u.ndim != 2 or u.shape[1] != 64:
        raise ValueError(f"encode_units: expected (n, 64) levels, got {u.shape}")
    n = u.shape[0]
    if n == 0:
        return b""
    dc = u[:, 0]
    diff = np.diff(dc, prepend=0)
    dcat = _category(diff)
    if int(dcat.max()) > MAX_DC_CATEGORY:
        raise RerfUsageError(
            f"rerf-reference: a DC difference needs category {int(dcat.max())} > {MAX_DC_CATEGORY} (baseline JPEG); "
            "lower the reference quality"
        )
    # --- DC symbols: key unit * 8192
    keys = [np.arange(n, dtype=np.int64) * 8192]
    vals = [(DC_LUMINANCE.code[dcat] << dcat) | _extra_bits(diff, dcat)]
    lens = [DC_LUMINANCE.length[dcat] + dcat]
    # --- AC: nonzero coefficients with their zero runs
    ac = u[:, 1:]
    rows, cols = np.nonzero(ac)
    k = cols + 1  # zig-zag position 1..63
    if rows.size:
        v = ac[rows, cols]
        acat = _category(v)
        if int(acat.max()) > MAX_AC_CATEGORY:
            raise RerfUsageError(
                f"rerf-reference: an AC level needs category {int(acat.max())} > {MAX_AC_CATEGORY} (baseline JPEG); "
                "lower the reference quality"
            )
        first = np.ones(rows.size, dtype=bool)
        first[1:] = rows[1:] != rows[:-1]
        prev_k = np.where(first, 0, np.concatenate([[0], k[:-1]]))
        run = k - prev_k - 1
        zrl = run // 16
        rs = ((run % 16) << 4) | acat
        keys.append(rows * 8192 + k * 64 + 4)
        vals.append((AC_LUMINANCE.code[rs] << acat) | _extra_bits(v, acat))
        lens.append(AC_LUMINANCE.length[rs] + acat)
        for j in range(1, 4):  # ZRL symbols before the coefficient (at most 3: runs < 63)
            sel = zrl >= j
            if sel.any():
                keys.append(rows[sel] * 8192 + k[sel] * 64 + (j - 1))
                vals.append(np.full(int(sel.sum()), AC_LUMINANCE.code[ZRL], dtype=np.int64))
                lens.append(np.full(int(sel.sum()), AC_LUMINANCE.length[ZRL], dtype=np.int64))
    # --- EOB after every unit whose last coefficient (k = 63) is zero
    eob_units = np.flatnonzero(ac[:, -1] == 0)
    keys.append(eob_units * 8192 + 64 * 64)
    vals.append(np.full(eob_units.size, AC_LUMINANCE.code[EOB], dtype=np.int64))
    lens.append(np.full(eob_units.size, AC_LUMINANCE.length[EOB], dtype=np.int64))
    key = np.concatenate(keys)
    order = np.argsort(key, kind="stable")
    return _pack(np.concatenate(vals)[order], np.concatenate(lens)[order])


def _pack(vals: np.ndarray, lens: np.ndarray) -> bytes:
    """Concatenate ``vals[i]`` as ``lens[i]``-bit MSB-first fields, pad with 1-bits, stuff 0xFF.

    Fields are at most 32 bits, so each lands in one or two 32-bit words; the words are
    assembled with ``bincount`` (fields are disjoint, so adding is OR-ing, and float64
    sums of values below 2**32 are exact).
    """
    total = int(lens.sum())
    pad = (-total) % 8
    if pad:  # F.1.2.3: pad the last byte with 1-bits
        vals = np.append(vals, (1 << pad) - 1)
        lens = np.append(lens, pad)
        total += pad
    starts = np.cumsum(lens) - lens
    word = starts >> 5
    shift = (64 - (starts & 31) - lens).astype(np.uint64)
    pos = vals.astype(np.uint64) << shift
    n_words = (total + 31) // 32 + 1
    hi = np.bincount(word, weights=(pos >> np.uint64(32)).astype(np.float64), minlength=n_words)
    lo = np.bincount(word + 1, weights=(pos & np.uint64(0xFFFFFFFF)).astype(np.float64), minlength=n_words)
    words = (hi + lo).astype(">u4")
    data = np.frombuffer(words.tobytes(), dtype=np.uint8)[: total // 8]
    ff = data == 0xFF
    if ff.any():  # F.1.2.3: a 0x00 follows every 0xFF in the entropy-coded segment
        out = np.zeros(data.size + int(ff.sum()), dtype=np.uint8)
        out[np.arange(data.size) + np.concatenate([[0], np.cumsum(ff)[:-1]])] = data
        data = out
    return data.tobytes()


def _unstuff(data: bytes) -> np.ndarray:
    b = np.frombuffer(data, dtype=np.uint8)
    if b.size == 0:
        return b
    after_ff = np.zeros(b.size, dtype=bool)
    after_ff[1:] = b[:-1] == 0xFF
    # A stuffed byte is 0x00 and cannot itself be 0xFF, so "follows an 0xFF" is unambiguous
    # once stuffed bytes are skipped; check there are no FF FF runs.
    if (b[after_ff] != 0).any():
        raise RerfFormatError("rerf-reference: 0xFF not followed by a stuffed 0x00 in an entropy-coded segment")
    if b[-1] == 0xFF:
        raise RerfFormatError("rerf-reference: entropy-coded segment ends in an unstuffed 0xFF")
    return b[~after_ff]


def decode_units(data: bytes, n: int) -> np.ndarray:
    """Mirror of :func:`encode_units`: ``n`` data units ``(n, 64)`` int64 in zig-zag order.

    Raises RerfFormatError on an invalid code, a run past the end of a unit or a
    truncated segment.
    """
    out = np.zeros((n, 64), dtype=np.int64)
    if n == 0:
        if data:
            raise RerfFormatError("rerf-reference: entropy-coded segment for zero data units is not empty")
        return out
    b = _unstuff(data)
    nbits = 8 * b.size
    # 64-bit big-endian word at every byte offset (zero padded): 32 bits at bit p are
    # (word[p >> 3] >> (32 - (p & 7))) & 0xFFFFFFFF.
    # A unit reads at most 64 symbols of <= 27 bits: 256 bytes of zero padding keep every
    # read of a truncated segment in range until the end-of-unit check catches it.
    padded = np.concatenate([b, np.zeros(256 + 8, dtype=np.uint8)])
    words = np.lib.stride_tricks.sliding_window_view(padded, 8)[: b.size + 256]
    words = (words.astype(np.uint64) << (np.arange(56, -8, -8, dtype=np.uint64))).sum(axis=1, dtype=np.uint64)
    w = words.tolist()
    dc_lut, ac_lut = DC_LUMINANCE.lut_list, AC_LUMINANCE.lut_list
    flat_idx: list[int] = []
    flat_val: list[int] = []
    dc_vals = [0] * n
    p = 0
    pred = 0
    m32 = 0xFFFFFFFF
    for unit in range(n):
        x = (w[p >> 3] >> (32 - (p & 7))) & m32
        e = dc_lut[x >> 16]
        if e == 0:
            raise RerfFormatError(f"rerf-reference: invalid DC code in data unit {unit}")
        s, ln = e >> 8, e & 0xFF
        if s:
            extra = (x >> (32 - ln - s)) & ((1 << s) - 1)
            if extra < (1 << (s - 1)):
                extra -= (1 << s) - 1
            pred += extra
        p += ln + s
        dc_vals[unit] = pred
        k = 1
        base = unit * 64
        while k < 64:
            x = (w[p >> 3] >> (32 - (p & 7))) & m32
            e = ac_lut[x >> 16]
            if e == 0:
                raise RerfFormatError(f"rerf-reference: invalid AC code in data unit {unit}")
            rs, ln = e >> 8, e & 0xFF
            if rs == 0:  # EOB
                p += ln
                break
            s = rs & 15
            k += rs >> 4
            if s == 0:  # ZRL (rs == 0xF0): 16 zeros
                if rs != ZRL:
                    raise RerfFormatError(f"rerf-reference: invalid AC symbol {rs:#x} in data unit {unit}")
                k += 1
                p += ln
                continue
            if k > 63:
                raise RerfFormatError(f"rerf-reference: AC run past the end of data unit {unit}")
            extra = (x >> (32 - ln - s)) & ((1 << s) - 1)
            if extra < (1 << (s - 1)):
                extra -= (1 << s) - 1
            flat_idx.append(base + k)
            flat_val.append(extra)
            p += ln + s
            k += 1
        if k > 64:
            raise RerfFormatError(f"rerf-reference: AC run past the end of data unit {unit}")
        if p > nbits:
            raise RerfFormatError("rerf-reference: entropy-coded segment is truncated")
    if (nbits - p) >= 8:
        raise RerfFormatError("rerf-reference: entropy-coded segment has trailing bytes")
    out[:, 0] = dc_vals
    if flat_idx:
        out.reshape(-1)[np.array(flat_idx, dtype=np.int64)] = flat_val
    return out
