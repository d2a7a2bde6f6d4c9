"""Quantised coefficient levels <-> (side info tables, range-coded words, mantissa bytes).

Layout (FORMAT.md "Coefficient coding"): channels form two groups, density (channel
0) and features (channels 1..C). Each group's levels ``(Cg, N, 512)`` are stored
frequency-major and grouped into 22 bands by ``u + v + w``; within a band the order
is (frequency in band order, channel, block). One table per (group, band), so a frame
carries ``2 × 22`` tables, in group-major, band-minor order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rerf_codec.codec.entropy import (
    SymbolDecoder,
    SymbolEncoder,
    Table,
    build_table,
    classes_to_levels,
    levels_to_classes,
    mantissa_bits,
    pack_mantissas,
    read_tables,
    unpack_mantissas,
    write_tables,
)
from rerf_codec.codec.quant import frequency_index
from rerf_codec.errors import RerfFormatError

N_GROUPS = 2
_F = frequency_index().sum(axis=1)
N_BANDS = int(_F.max()) + 1  # 22
BAND_ORDER = np.argsort(_F, kind="stable")
"""Frequencies sorted by band (u+v+w), ties by flat index."""
BAND_STARTS = np.searchsorted(_F[BAND_ORDER], np.arange(N_BANDS + 1))
"""``BAND_ORDER[BAND_STARTS[b]:BAND_STARTS[b+1]]`` are band b's frequencies."""


def channel_groups(num_channels: int) -> list[slice]:
    """Channel slices of the groups: density, then all feature channels."""
    return [slice(0, 1), slice(1, num_channels)]


@dataclass(frozen=True)
class CodedLevels:
    """The three byte strings a frame's coefficients become, plus accounting."""

    side_info: bytes
    words: bytes
    mantissa: bytes
    ideal_bits: float
    """Model entropy of the coded classes plus raw mantissa bits (the coder's target)."""


def last_bands(levels_sorted: np.ndarray) -> np.ndarray:
    """Per (channel, block): the last band holding a non-zero level, -1 when all are zero.

    Args:
        levels_sorted: ``(512, Cg, N)`` band-sorted levels.
    """
    nz = (levels_sorted != 0).astype(np.int32)
    per_band = np.add.reduceat(nz, BAND_STARTS[:-1], axis=0) > 0  # (22, Cg, N)
    any_nz = per_band.any(axis=0)
    last = N_BANDS - 1 - np.argmax(per_band[::-1], axis=0)
    return np.where(any_nz, last, -1).astype(np.int32)


def encode_levels(levels: np.ndarray, enc: SymbolEncoder | None = None) -> CodedLevels:
    """Code ``(C_total, N, 512)`` int64 levels (all channels of one frame).

    Per group: first the *last band* symbol of every (channel, block) — one table —
    then band by band only the (channel, block) pairs whose last band reaches it, so
    trailing zero bands cost nothing and are not even decoded.
    """
    enc = enc or SymbolEncoder()
    tables: list[Table] = []
    nbits_all = []
    mant_all = []
    ideal = 0.0

    def code(seg: np.ndarray) -> None:
        nonlocal ideal
        table = build_table(seg)
        tables.append(table)
        enc.encode(seg, table)
        ideal += table.bits(seg)

    for g in channel_groups(levels.shape[0]):
        sorted_levels = levels[g].transpose(2, 0, 1)[BAND_ORDER]  # (512, Cg, N) band-sorted
        last = last_bands(sorted_levels)
        code(last.ravel())
        for b in range(N_BANDS):
            sel = last >= b
            seg_levels = sorted_levels[BAND_STARTS[b] : BAND_STARTS[b + 1]][:, sel].ravel()
            classes, nbits, mant = levels_to_classes(seg_levels)
            code(classes)
            nbits_all.append(nbits)
            mant_all.append(mant)
    nbits_cat = np.concatenate(nbits_all)
    ideal += float(nbits_cat.sum())
    mant_bytes = pack_mantissas(nbits_cat, np.concatenate(mant_all))
    return CodedLevels(write_tables(tables), enc.finish(), mant_bytes, ideal)


def decode_levels(side_info: bytes, words: bytes, mantissa: bytes, num_channels: int, num_blocks: int) -> np.ndarray:
    """Mirror of :func:`encode_levels` -> ``(num_channels, num_blocks, 512)`` int64 levels."""
    tables = iter(read_tables(side_info, N_GROUPS * (N_BANDS + 1)))
    dec = SymbolDecoder(words)
    groups = channel_groups(num_channels)
    placed: list[tuple[int, int, np.ndarray, np.ndarray]] = []  # (group, band, sel, classes)
    for gi, g in enumerate(groups):
        cg = g.stop - g.start
        last_table = next(tables)
        last = dec.decode(cg * num_blocks, last_table).reshape(cg, num_blocks)
        if last.size and (last.min() < -1 or last.max() >= N_BANDS):
            raise RerfFormatError("last-band symbol outside -1..21")
        for b in range(N_BANDS):
            table = next(tables)
            sel = last >= b
            n = int(BAND_STARTS[b + 1] - BAND_STARTS[b]) * int(sel.sum())
            if n == 0:
                if not table.empty:
                    raise RerfFormatError("side info declares a table for a band with no symbols")
                continue
            placed.append((gi, b, sel, dec.decode(n, table)))
    classes = np.concatenate([p[3] for p in placed]) if placed else np.zeros(0, dtype=np.int32)
    mant = unpack_mantissas(mantissa_bits(classes), mantissa)
    flat = classes_to_levels(classes, mant)
    out = np.zeros((num_channels, num_blocks, 512), dtype=np.int32)  # |level| <= 2**31 - 1
    pos = 0
    for gi, b, sel, cls in placed:
        g = groups[gi]
        rows = np.flatnonzero(sel)  # (channel, block) pairs of the group, C order
        n = cls.size
        s0, s1 = BAND_STARTS[b], BAND_STARTS[b + 1]
        view = out[g].reshape(-1, 512)
        view[np.ix_(rows, BAND_ORDER[s0:s1])] = flat[pos : pos + n].reshape(s1 - s0, rows.size).T
        pos += n
    return out
