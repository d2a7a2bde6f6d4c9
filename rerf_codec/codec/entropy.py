"""Entropy coding of quantised levels and of binary decisions, with constriction.

Coefficient levels are mapped to a small *class alphabet* plus raw mantissa bits
(like JPEG's magnitude categories, but with a wide direct region):

* ``|v| < 16``: the class is ``v`` itself (no mantissa);
* otherwise ``k = bit_length(|v|)`` (5..31) and the class is ``sign(v) * (11 + k)``
  (so ``|class|`` is 16..42), followed by the ``k - 1`` bits of ``|v| - 2**(k-1)``.

Classes are range-coded with one ``Categorical(perfect=False)`` model per table,
built from integer counts carried as side info (``counts / sum(counts)`` is one
correctly-rounded IEEE division per entry, the same on every machine); mantissa
bits are appended raw. A table whose classes are all equal costs no coded bits.

Range coding (``constriction.stream.queue``) is the backend id 1 of FORMAT.md.
Compressed words are written little-endian explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass

import constriction
import numpy as np

from rerf_codec.errors import RerfFormatError

DIRECT = 16
"""|levels| below this are their own class."""
MAX_CLASS = 42
"""Largest |class|: bit length 31."""
ALPHABET = 2 * MAX_CLASS + 1
MAX_LEVEL = 2**31 - 1
COUNT_TOTAL = 1 << 14
"""Histogram counts are rescaled to about this total before they go into the stream."""

_model = constriction.stream.model
_queue = constriction.stream.queue


# --- level <-> (class, mantissa) -------------------------------------------------------


def levels_to_classes(levels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split int64 levels into classes (int32), mantissa bit counts and mantissa values."""
    mag = np.abs(levels)
    if mag.size and int(mag.max()) > MAX_LEVEL:
        raise RerfFormatError("level magnitude exceeds 2**31 - 1")
    big = mag >= DIRECT
    nbits = np.zeros(levels.shape, dtype=np.int64)
    classes = levels.astype(np.int32)
    if big.any():
        k = np.zeros(levels.shape, dtype=np.int64)
        # bit_length via float log2 is exact for ints < 2**53 only when not near powers; use frexp.
        _, e = np.frexp(mag[big].astype(np.float64))
        k[big] = e  # frexp: mag = m * 2**e with 0.5 <= m < 1 -> bit_length == e
        classes[big] = (np.sign(levels[big]) * (11 + k[big])).astype(np.int32)
        nbits[big] = k[big] - 1
    mant = np.where(big, mag - (np.int64(1) << np.maximum(nbits, 0)), 0)
    return classes, nbits, mant


def classes_to_levels(classes: np.ndarray, mantissas: np.ndarray) -> np.ndarray:
    """Inverse of :func:`levels_to_classes` given the decoded mantissa values."""
    c = classes.astype(np.int64)
    mag = np.abs(c)
    big = mag >= DIRECT
    out = c.copy()
    if big.any():
        k = mag[big] - 11
        out[big] = np.sign(c[big]) * ((np.int64(1) << (k - 1)) + mantissas[big])
    return out


def mantissa_bits(classes: np.ndarray) -> np.ndarray:
    """Number of raw mantissa bits each class carries."""
    mag = np.abs(classes.astype(np.int64))
    return np.where(mag >= DIRECT, mag - 12, 0)


def pack_mantissas(nbits: np.ndarray, values: np.ndarray) -> bytes:
    """Concatenate ``values[i]`` as ``nbits[i]``-bit big-endian fields, MSB-first, zero padded."""
    sel = nbits > 0
    if not sel.any():
        return b""
    nb = nbits[sel]
    vals = values[sel]
    total = int(nb.sum())
    # bit j (from MSB) of value i goes to position start_i + j
    starts = np.concatenate([[0], np.cumsum(nb)[:-1]])
    owner = np.repeat(np.arange(nb.size), nb)
    j = np.arange(total) - starts[owner]
    bits = (vals[owner] >> (nb[owner] - 1 - j)) & 1
    return np.packbits(bits.astype(np.uint8)).tobytes()


def unpack_mantissas(nbits: np.ndarray, data: bytes) -> np.ndarray:
    """Inverse of :func:`pack_mantissas`; raises RerfFormatError when ``data`` is too short."""
    out = np.zeros(nbits.shape, dtype=np.int64)
    sel = nbits > 0
    if not sel.any():
        if data:
            raise RerfFormatError(f"mantissa section holds {len(data)} bytes, the classes need none")
        return out
    nb = nbits[sel].astype(np.int64)
    total = int(nb.sum())
    if (total + 7) // 8 != len(data):
        raise RerfFormatError(f"mantissa section holds {len(data)} bytes, the classes need {(total + 7) // 8}")
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[:total].astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(nb)[:-1]])
    owner = np.repeat(np.arange(nb.size), nb)
    j = np.arange(total) - starts[owner]
    contrib = bits << (nb[owner] - 1 - j)
    out[sel] = np.add.reduceat(contrib, starts)
    return out


# --- tables -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """A coding table over classes ``lo..hi`` with integer ``counts`` (side info).

    ``lo > hi`` marks an unused table (no symbols). ``lo == hi`` codes nothing:
    every symbol is ``lo``.
    """

    lo: int
    hi: int
    counts: tuple[int, ...]

    @property
    def empty(self) -> bool:
        return self.lo > self.hi

    @property
    def trivial(self) -> bool:
        return self.lo == self.hi

    def probabilities(self) -> np.ndarray:
        """``counts / sum`` in float64: exact-rounded IEEE divisions only."""
        c = np.asarray(self.counts, dtype=np.float64)
        p: np.ndarray = c / c.sum()
        return p

    def model(self) -> object:
        return _model.Categorical(self.probabilities(), perfect=False)

    def bits(self, classes: np.ndarray) -> float:
        """Ideal code length (bits) of ``classes`` under this table: the entropy bound."""
        if self.empty or self.trivial or classes.size == 0:
            return 0.0
        p = self.probabilities()
        # constriction gives zero-count symbols the minimal probability; they never occur here.
        idx = classes.astype(np.int64) - self.lo
        hist = np.bincount(idx, minlength=p.size)
        nz = hist > 0
        return float(-(hist[nz] * np.log2(p[nz])).sum())


UNUSED = Table(1, 0, ())
REPEAT = Table(2, 0, ())
"""Side-info marker (coefficient mode 1 only): "the table this slot had in the previous
frame of the GOF". Never used to code; the decoder substitutes that table."""
MERGE = Table(3, 0, ())
"""Side-info marker (coefficient mode 1 only, context tables 1..3): "the same table as the
slot before this one" (so a band's contexts can share one table when splitting them does
not pay for its side info)."""


COUNT_TOTALS = (COUNT_TOTAL, 1 << 12, 1 << 10, 1 << 8, 1 << 6)
"""Totals a table's counts may be rescaled to; :func:`build_table` picks per table."""


def build_table(classes: np.ndarray) -> Table:
    """Histogram ``classes`` and rescale the counts to one of :data:`COUNT_TOTALS`
    (every seen class keeps >= 1).

    The total is chosen per table (encoder side; the decoder takes any counts): the one
    that minimises the classes' code length under the rescaled model plus the counts' own
    LEB128 bytes. Small tables get coarse counts, whose side info costs less than the
    precision would save.
    """
    if classes.size == 0:
        return UNUSED
    lo = int(classes.min())
    hi = int(classes.max())
    if lo == hi:
        return Table(lo, hi, (1,))
    hist = np.bincount(classes.astype(np.int64) - lo, minlength=hi - lo + 1).astype(np.float64)
    seen = hist > 0
    best: tuple[float, np.ndarray] | None = None
    for total in COUNT_TOTALS:
        scaled = np.where(seen, np.maximum(1, np.round(hist * (total / classes.size))), 0)
        p = scaled[seen] / scaled.sum()
        cost = float(-(hist[seen] * np.log2(p)).sum()) + 8.0 * float(_leb128_len(scaled).sum())
        if best is None or cost < best[0]:
            best = (cost, scaled)
    assert best is not None
    return Table(lo, hi, tuple(int(c) for c in best[1]))


def _leb128_len(values: np.ndarray) -> np.ndarray:
    """Bytes of each value's LEB128 encoding (values below 2**21)."""
    return np.where(values < 1 << 7, 1, np.where(values < 1 << 14, 2, 3))


def write_tables(tables: list[Table]) -> bytes:
    """Serialise tables: per table ``i8 lo, i8 hi`` then ``hi - lo + 1`` LEB128 counts (if lo < hi)."""
    out = bytearray()
    for t in tables:
        if t == REPEAT:
            out += bytes([2, 0])
            continue
        if t == MERGE:
            out += bytes([3, 0])
            continue
        if t.empty:
            out += bytes([1, 0])  # lo=1 > hi=0
            continue
        out += int(t.lo).to_bytes(1, "little", signed=True) + int(t.hi).to_bytes(1, "little", signed=True)
        if t.lo < t.hi:
            for c in t.counts:
                out += _leb128(c)
    return bytes(out)


def read_tables(data: bytes, n_tables: int, allow_repeat: bool = False) -> list[Table]:
    """Parse :func:`write_tables` output, validating ranges; raises RerfFormatError.

    With ``allow_repeat`` (coefficient mode 1) the pairs ``(2, 0)`` and ``(3, 0)`` are accepted
    and returned as :data:`REPEAT` and :data:`MERGE`."""
    tables: list[Table] = []
    pos = 0
    for i in range(n_tables):
        if pos + 2 > len(data):
            raise RerfFormatError(f"side info truncated in table {i}")
        lo = int.from_bytes(data[pos : pos + 1], "little", signed=True)
        hi = int.from_bytes(data[pos + 1 : pos + 2], "little", signed=True)
        pos += 2
        if lo > hi:
            if allow_repeat and (lo, hi) == (2, 0):
                tables.append(REPEAT)
                continue
            if allow_repeat and (lo, hi) == (3, 0):
                tables.append(MERGE)
                continue
            if (lo, hi) != (1, 0):
                raise RerfFormatError(f"side info table {i}: bad range {lo}..{hi}")
            tables.append(UNUSED)
            continue
        if lo < -MAX_CLASS or hi > MAX_CLASS:
            raise RerfFormatError(f"side info table {i}: class range {lo}..{hi} outside ±{MAX_CLASS}")
        if lo == hi:
            tables.append(Table(lo, hi, (1,)))
            continue
        counts = []
        for _ in range(hi - lo + 1):
            c, pos = _read_leb128(data, pos)
            if c > 1 << 24:
                raise RerfFormatError(f"side info table {i}: count {c} too large")
            counts.append(c)
        if sum(counts) == 0:
            raise RerfFormatError(f"side info table {i}: all counts are zero")
        tables.append(Table(lo, hi, tuple(counts)))
    if pos != len(data):
        raise RerfFormatError(f"side info has {len(data) - pos} trailing bytes")
    return tables


def _leb128(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_leb128(data: bytes, pos: int) -> tuple[int, int]:
    v = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise RerfFormatError("side info truncated inside a count")
        b = data[pos]
        pos += 1
        v |= (b & 0x7F) << shift
        if not b & 0x80:
            return v, pos
        shift += 7
        if shift > 28:
            raise RerfFormatError("side info count too long")


# --- range coder ------------------------------------------------------------------------


def words_to_bytes(words: np.ndarray) -> bytes:
    """constriction's uint32 words as little-endian bytes (explicit, any host)."""
    return np.asarray(words, dtype=np.uint32).astype("<u4").tobytes()


def bytes_to_words(data: bytes) -> np.ndarray:
    if len(data) % 4:
        raise RerfFormatError(f"range-coded section has {len(data)} bytes, not a multiple of 4")
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)


class SymbolEncoder:
    """Range-codes successive (symbols, table) runs into one word stream."""

    def __init__(self) -> None:
        self._enc = _queue.RangeEncoder()

    def encode(self, classes: np.ndarray, table: Table) -> None:
        if table.empty or table.trivial or classes.size == 0:
            return
        self._enc.encode(np.ascontiguousarray(classes, dtype=np.int32) - np.int32(table.lo), table.model())

    def encode_bits(self, bits: np.ndarray, p_one_256: int) -> None:
        """Binary symbols with P(1) = p_one_256 / 256 (1..255)."""
        if bits.size == 0:
            return
        probs = np.array([256 - p_one_256, p_one_256], dtype=np.float64) / 256.0
        self._enc.encode(np.ascontiguousarray(bits, dtype=np.int32), _model.Categorical(probs, perfect=False))

    def encode_uniform(self, values: np.ndarray, size: int) -> None:
        """Integers in ``0..size-1``, each with probability ``1/size``."""
        if values.size == 0:
            return
        probs = np.full(size, 1.0 / size)
        self._enc.encode(np.ascontiguousarray(values, dtype=np.int32), _model.Categorical(probs, perfect=False))

    def finish(self) -> bytes:
        return words_to_bytes(self._enc.get_compressed())


INVALID_RANGE_DATA = "range decoder failed: invalid data (q >= 2^24)"
"""The one error of the range decoder itself (FORMAT.md §9.1 step 3), on either path."""


class SymbolDecoder:
    """Mirror of :class:`SymbolEncoder`.

    constriction's range decoder shifts in zeros past the end of the data instead of
    failing, so truncation inside a section is caught by the surrounding length and
    consistency checks (and the chunk CRC), not here. When the compiled path is enabled
    (``native.enabled()``) the same decoder runs in C on tables built by FORMAT.md §9.1;
    the symbols are identical.
    """

    def __init__(self, data: bytes) -> None:
        from rerf_codec.codec import native

        words = bytes_to_words(data)
        self.native = native.RangeDecoder(words) if native.enabled() else None
        if self.native is not None:
            return
        try:
            self._dec = _queue.RangeDecoder(words)
        except Exception as exc:
            raise RerfFormatError(f"range decoder failed: {exc}") from None

    def decode(self, n: int, table: Table) -> np.ndarray:
        if n == 0:
            return np.zeros(0, dtype=np.int32)
        if table.empty:
            raise RerfFormatError("symbols coded with an unused table")
        if table.trivial:
            return np.full(n, table.lo, dtype=np.int32)
        if self.native is not None:
            from rerf_codec.codec.native import count_cdf

            got = self.native.decode(n, count_cdf(table.counts))
            got += np.int32(table.lo)
            return got
        try:
            out = self._dec.decode(table.model(), n)
        except Exception:  # constriction raises on invalid data (§9.1 step 3)
            raise RerfFormatError(INVALID_RANGE_DATA) from None
        out = np.asarray(out, dtype=np.int32)
        out += np.int32(table.lo)
        return out

    def decode_uniform(self, n: int, size: int) -> np.ndarray:
        if self.native is not None:
            from rerf_codec.codec.native import uniform_cdf

            return self.native.decode(n, uniform_cdf(size))
        probs = np.full(size, 1.0 / size)
        try:
            return np.asarray(self._dec.decode(_model.Categorical(probs, perfect=False), n), dtype=np.int32)
        except Exception:
            raise RerfFormatError(INVALID_RANGE_DATA) from None

    def decode_bits(self, n: int, p_one_256: int) -> np.ndarray:
        if n == 0:
            return np.zeros(0, dtype=np.int32)
        if self.native is not None:
            from rerf_codec.codec.native import binary_cdf

            return self.native.decode(n, binary_cdf(p_one_256))
        probs = np.array([256 - p_one_256, p_one_256], dtype=np.float64) / 256.0
        try:
            return np.asarray(self._dec.decode(_model.Categorical(probs, perfect=False), n), dtype=np.int32)
        except Exception:
            raise RerfFormatError(INVALID_RANGE_DATA) from None
