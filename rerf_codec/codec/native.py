"""The compiled decode path: the range decoder and block reconstruction in C (``_native.c``).

Why C through ctypes rather than numba: the loops are small and integer-only, a C file
built by the package's own install (``setup.py``, gcc) adds no dependency and no JIT
warm-up, and ctypes releases the GIL so channels run in parallel on the codec's thread
pool. The numpy path (constriction + ``motion.py`` / ``transform.py``) stays the
reference: both give the same bits (tests/test_native.py checks every conformance vector,
round trips and a fuzz corpus), and it is used when the library is missing — with a
one-line notice — or when ``RERF_DECODER=numpy`` asks for it.

Everything here is exact: the model tables are built from counts exactly as FORMAT.md
§9.1 specifies (IEEE binary64, one operation at a time, the same as constriction), and
the C code uses 64-bit integers only.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys
from functools import lru_cache

import numpy as np

from rerf_codec.errors import RerfFormatError, RerfUsageError

INVALID_RANGE_DATA = "range decoder failed: invalid data (q >= 2^24)"  # as entropy.INVALID_RANGE_DATA

ENV = "RERF_DECODER"
"""``numpy`` forces the reference path; ``native`` requires the compiled one; unset: compiled if built."""

_lib: ctypes.CDLL | None = None
_load_error: str | None = None
_noticed = False

_P = ctypes.c_void_p
_I64 = ctypes.c_int64


def _load() -> ctypes.CDLL | None:
    global _lib, _load_error
    if _lib is not None or _load_error is not None:
        return _lib
    try:
        spec = importlib.util.find_spec("rerf_codec.codec._native")
        if spec is None or not spec.origin:
            raise ImportError("the extension rerf_codec.codec._native is not built")
        lib = ctypes.CDLL(spec.origin)
        lib.rerf_rc_decode.restype = _I64
        lib.rerf_rc_decode.argtypes = [_P, _I64, _P, _P, ctypes.c_int32, _I64, _P]
        lib.rerf_decode_group.restype = _I64
        lib.rerf_decode_group.argtypes = [
            _P, _I64, _P, _I64, _I64, _I64, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _I64, _P, _P,
        ]
        lib.rerf_reconstruct_channel.restype = _I64
        lib.rerf_reconstruct_channel.argtypes = [
            _P, _I64, _I64, _P, _I64, _I64, _I64, _I64, _I64, ctypes.c_double, ctypes.c_double, _I64, _P, _P, _P, _P, _P,
        ]
        _lib = lib
    except (ImportError, OSError, AttributeError) as exc:
        _load_error = str(exc)
    return _lib


def available() -> bool:
    """Whether the compiled library is built and loads."""
    return _load() is not None


def enabled() -> bool:
    """Whether decoding (and the encoder's closed loop) uses the compiled path now."""
    global _noticed
    choice = os.environ.get(ENV, "").strip().lower()
    if choice == "numpy":
        return False
    if available():
        return True
    if choice in ("native", "compiled"):
        raise RerfUsageError(f"{ENV}={choice}: the compiled decoder is unavailable ({_load_error})")
    if not _noticed:
        _noticed = True
        print(f"rerf: note: compiled decoder unavailable ({_load_error}); using the numpy path", file=sys.stderr)
    return False


# --- model tables (FORMAT.md §9.1) ------------------------------------------------------------------


def cdf_from_probabilities(p: np.ndarray) -> np.ndarray:
    """``Categorical(p, perfect=False)``'s cumulative table, as §9.1 writes it (binary64)."""
    p = np.asarray(p, dtype=np.float64)
    n = p.size
    acc = np.add.accumulate(p)  # left-to-right binary64 sums, as the spec's loop
    scale = float((1 << 24) - n) / float(acc[-1])
    cum = np.concatenate([[0.0], acc[:-1]])
    cdf = np.empty(n + 1, dtype=np.uint32)
    cdf[:n] = np.trunc(cum * scale).astype(np.uint32) + np.arange(n, dtype=np.uint32)
    cdf[n] = 1 << 24
    return cdf


@lru_cache(maxsize=4096)
def count_cdf(counts: tuple[int, ...]) -> np.ndarray:
    """The cumulative table of a count table ``counts`` (§9.1: ``counts[i] / sum``)."""
    c = np.asarray(counts, dtype=np.float64)
    return cdf_from_probabilities(c / float(sum(counts)))


@lru_cache(maxsize=512)
def binary_cdf(p_one_256: int) -> np.ndarray:
    return cdf_from_probabilities(np.array([256 - p_one_256, p_one_256], dtype=np.float64) / 256.0)


@lru_cache(maxsize=8)
def uniform_cdf(size: int) -> np.ndarray:
    return cdf_from_probabilities(np.full(size, 1.0 / size))


class RangeDecoder:
    """§9.1's decoder over one section's words, state kept between calls."""

    def __init__(self, words: np.ndarray) -> None:
        lib = _load()
        assert lib is not None
        self._lib = lib
        self._words = np.ascontiguousarray(words, dtype=np.uint32)
        w = [int(v) for v in self._words[:2]]
        point = (w[0] << 32) | (w[1] if len(w) > 1 else 0) if w else 0
        self._state = np.array([0, 2**64 - 1, point, len(w)], dtype=np.uint64)

    def decode(self, n: int, cdf: np.ndarray) -> np.ndarray:
        out = np.empty(n, dtype=np.int32)
        if n:
            rc = self._lib.rerf_rc_decode(
                self._words.ctypes.data, self._words.size, self._state.ctypes.data, cdf.ctypes.data, cdf.size - 1, n,
                out.ctypes.data,
            )
            if rc:
                raise RerfFormatError(INVALID_RANGE_DATA)
        return out


_GROUP_ERRORS = {
    -1: INVALID_RANGE_DATA,
    -2: "last-band symbol outside -1..21",
    -3: "symbols coded with an unused table",
    -4: "side info declares a table for a band with no symbols",
}


def decode_group(
    dec: RangeDecoder,
    tables: tuple[object, ...],
    cg: int,
    nb: int,
    kctx: int,
    band_order: np.ndarray,
    band_starts: np.ndarray,
    levels: np.ndarray,
    row_map: np.ndarray | None = None,
) -> np.ndarray:
    """FORMAT.md §9.5 for one channel group of one level set, in C: classes go straight into
    ``levels`` (rows of 512 int32, C-contiguous, zeros; set row ``r`` goes to row ``row_map[r]``
    when given); returns the flat indices (``row * 512 + f``) of classes with mantissa bits,
    in decoding order."""
    rm = None if row_map is None else np.ascontiguousarray(row_map, dtype=np.int64)
    n_slots = len(tables)
    kind = np.zeros(n_slots, dtype=np.int32)
    lo = np.zeros(n_slots, dtype=np.int32)
    off = np.zeros(n_slots, dtype=np.int64)
    nsym = np.zeros(n_slots, dtype=np.int32)
    cdfs: list[np.ndarray] = []
    pos = 0
    for i, t in enumerate(tables):
        if t.empty:  # type: ignore[attr-defined]
            continue
        lo[i] = t.lo  # type: ignore[attr-defined]
        if t.trivial:  # type: ignore[attr-defined]
            kind[i] = 1
            continue
        kind[i] = 2
        cdf = count_cdf(t.counts)  # type: ignore[attr-defined]
        off[i], nsym[i] = pos, cdf.size - 1
        cdfs.append(cdf)
        pos += cdf.size
    flat_cdfs = np.concatenate(cdfs) if cdfs else np.zeros(1, dtype=np.uint32)
    m = cg * nb
    scratch = np.empty(4 * max(m, 1), dtype=np.int32)
    n_big = np.zeros(1, dtype=np.int64)
    cap = 1 << 14
    while True:
        big = np.empty(cap, dtype=np.int64)
        rc = dec._lib.rerf_decode_group(
            dec._words.ctypes.data, dec._words.size, dec._state.ctypes.data, cg, nb, kctx, kind.ctypes.data,
            lo.ctypes.data, off.ctypes.data, nsym.ctypes.data, flat_cdfs.ctypes.data, band_order.ctypes.data,
            band_starts.ctypes.data, levels.ctypes.data, None if rm is None else rm.ctypes.data, big.ctypes.data, cap,
            n_big.ctypes.data, scratch.ctypes.data,
        )
        if rc != -5:
            break
        cap *= 8
    if rc:
        raise RerfFormatError(_GROUP_ERRORS[int(rc)])
    return big[: int(n_big[0])]


# --- block reconstruction ---------------------------------------------------------------------


def reconstruct_channel(
    out: np.ndarray,
    prev: np.ndarray | None,
    grid_shape: tuple[int, int, int],
    exponent: int,
    blocks: np.ndarray,
    predicted: np.ndarray | None,
    mv: np.ndarray | None,
    levels: np.ndarray | None,
    steps: np.ndarray,
) -> None:
    """Write one channel's occupied blocks into ``out`` (a C-contiguous float32 plane, padded to
    whole blocks): prediction (where ``predicted``) + inverse transform of ``levels · steps``,
    clamped, times ``2**-exponent``. Raises RerfFormatError for a coefficient over 2^29."""
    lib = _load()
    assert lib is not None and out.flags.c_contiguous and out.dtype == np.float32
    n = blocks.shape[0]
    if prev is not None:
        assert prev.flags.c_contiguous and prev.dtype == np.float32
    lv = None if levels is None else np.ascontiguousarray(levels, dtype=np.int32)
    st = np.ascontiguousarray(steps, dtype=np.int64)
    pr = None if predicted is None else np.ascontiguousarray(predicted, dtype=np.uint8)
    mvc = None if mv is None else np.ascontiguousarray(mv, dtype=np.int64)
    rc = lib.rerf_reconstruct_channel(
        out.ctypes.data, out.shape[1], out.shape[2],
        None if prev is None else prev.ctypes.data, 0 if prev is None else prev.shape[1], 0 if prev is None else prev.shape[2],
        *grid_shape, 2.0**exponent, 2.0**-exponent, n, blocks.ctypes.data,
        None if pr is None else pr.ctypes.data, None if mvc is None else mvc.ctypes.data,
        None if lv is None else lv.ctypes.data, st.ctypes.data,
    )
    if rc:
        raise RerfFormatError("stream carries a coefficient outside the decodable range (corrupt data)")
