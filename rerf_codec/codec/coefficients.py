"""Quantised coefficient levels <-> (side info tables, range-coded words, mantissa bytes).

Layout (FORMAT.md §9.4–9.5): channels form two groups, density (channel 0) and
features (channels 1..C). Each group's levels ``(Cg, N, 512)`` are stored
frequency-major and grouped into 22 bands by ``u + v + w``; within a band the order
is (frequency in band order, channel, block). Mode 0: one table per (group, band), so
a frame carries ``2 × (1 + 22)`` tables, group-major, band-minor. Mode 1: each band's
(channel, block) pairs are split into 4 contexts by how many levels of their previous
band are non-zero (a band after a busy band is busy too), one table per (group, band,
context): ``2 × (1 + 22 × 4)`` tables, any of which a residual frame may declare as
"the same as in the previous frame" (2 bytes instead of the counts).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rerf_codec.codec.entropy import (
    DIRECT as DIRECT_CLASSES,
)
from rerf_codec.codec.entropy import (
    MERGE,
    REPEAT,
    UNUSED,
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


MODE_BANDS = 0
"""Coefficient coding mode 0 (format 1.0): one table per (group, band)."""
MODE_CONTEXT = 1
"""Mode 1 (format 1.1): one table per (group, band, context) and tables repeatable from
the previous frame of the GOF (FORMAT.md §9.5)."""
MODES = (MODE_BANDS, MODE_CONTEXT)
N_CONTEXTS = 4
"""Contexts of mode 1: how many levels of the (channel, block)'s previous band are non-zero."""


def n_contexts(mode: int) -> int:
    return 1 if mode == MODE_BANDS else N_CONTEXTS


def n_tables(mode: int) -> int:
    """Tables in a frame's side info: per group the last-band table, then 22 bands × contexts."""
    return N_GROUPS * (1 + N_BANDS * n_contexts(mode))


def band_context(nonzero_prev: np.ndarray, band: int) -> np.ndarray:
    """Mode 1 context of band ``band`` from the non-zero count of band ``band - 1`` of the
    same (channel, block): 0 none, 1 up to a quarter of the band, 2 up to half, 3 more."""
    if band == 0:
        return np.zeros(nonzero_prev.shape, dtype=np.int64)
    size = int(BAND_STARTS[band] - BAND_STARTS[band - 1])
    nz = nonzero_prev.astype(np.int64)
    return (nz > 0).astype(np.int64) + (4 * nz > size) + (2 * nz > size)


def _reusable(prev: Table | None, seg: np.ndarray) -> bool:
    """Can ``seg`` be coded with the previous frame's table ``prev`` (every class codable)?"""
    if prev is None or prev.empty or seg.size == 0:
        return False
    lo, hi = int(seg.min()), int(seg.max())
    if lo < prev.lo or hi > prev.hi:
        return False
    if prev.trivial:
        return True
    counts = np.asarray(prev.counts)
    return bool((counts[np.unique(seg) - prev.lo] > 0).all())


@dataclass(frozen=True)
class CodedLevels:
    """The three byte strings a frame's coefficients become, plus accounting."""

    side_info: bytes
    words: bytes
    mantissa: bytes
    ideal_bits: float
    """Model entropy of the coded classes plus raw mantissa bits (the coder's target)."""
    tables: tuple[Table, ...] = ()
    """The table in effect in every slot (repeats resolved): what the next frame may repeat."""


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


def encode_levels(
    levels: np.ndarray,
    enc: SymbolEncoder | None = None,
    mode: int = MODE_BANDS,
    prev_tables: tuple[Table, ...] | None = None,
    finish: bool = True,
) -> CodedLevels:
    """Code ``(C_total, N, 512)`` int64 levels (all channels of one frame).

    Per group: first the *last band* symbol of every (channel, block) — one table —
    then band by band only the (channel, block) pairs whose last band reaches it, so
    trailing zero bands cost nothing and are not even decoded. Mode 1 splits each band's
    pairs by :func:`band_context` (one table each) and, given the previous frame's tables
    (``prev_tables``, residual frames), repeats a slot's old table whenever that codes
    its symbols in fewer bits than a new table plus its side info.
    """
    enc = enc or SymbolEncoder()
    written: list[Table] = []
    effective: list[Table] = []
    nbits_all = []
    mant_all = []
    ideal = 0.0
    k_ctx = n_contexts(mode)
    repeat_ok = mode == MODE_CONTEXT and prev_tables is not None

    def side_bits(table: Table) -> float:
        return 8.0 * len(write_tables([table]))

    def choose(segs: list[np.ndarray]) -> list[tuple[Table, Table]]:
        """(written, effective) table of each context slot of one band (mode 1): a new table,
        a repeat of the previous frame's, or one table shared with the slot before (MERGE),
        whichever codes the symbols plus side info in the fewest bits (greedy, in order)."""
        slot0 = len(written)
        kind: list[str] = []
        runs: list[list[int]] = []  # slots sharing one new table
        run_of: list[int] = []
        own: dict[int, Table] = {}  # run index -> its table
        for k, seg in enumerate(segs):
            if seg.size == 0:
                kind.append("unused")
                run_of.append(-1)
                continue
            table = build_table(seg)
            options = {"new": table.bits(seg) + side_bits(table)}
            prev = prev_tables[slot0 + k] if repeat_ok else None  # type: ignore[index]
            if _reusable(prev, seg):
                options["repeat"] = prev.bits(seg)  # type: ignore[union-attr]
            merged = None
            if k > 0 and kind[k - 1] in ("new", "merge"):
                r = run_of[k - 1]
                union = np.concatenate([segs[j] for j in runs[r]] + [seg])
                merged = build_table(union)
                before = own[r].bits(union[: union.size - seg.size]) + side_bits(own[r])
                options["merge"] = merged.bits(union) + side_bits(merged) - before
            best = min(options, key=lambda o: options[o])
            kind.append(best)
            if best == "merge":
                r = run_of[k - 1]
                runs[r].append(k)
                own[r] = merged  # type: ignore[assignment]
                run_of.append(r)
            elif best == "new":
                runs.append([k])
                own[len(runs) - 1] = table
                run_of.append(len(runs) - 1)
            else:
                run_of.append(-1)
        out = []
        for k in range(len(segs)):
            if kind[k] == "unused":
                out.append((UNUSED, UNUSED))
            elif kind[k] == "repeat":
                out.append((REPEAT, prev_tables[slot0 + k]))  # type: ignore[index]
            else:
                t = own[run_of[k]]
                out.append((MERGE if kind[k] == "merge" else t, t))
        return out

    def code(segs: list[np.ndarray]) -> None:
        nonlocal ideal
        picked = choose(segs) if k_ctx > 1 else [(t, t) for t in map(build_table, segs)]
        for seg, (w, use) in zip(segs, picked, strict=True):
            written.append(w)
            effective.append(use)
            enc.encode(seg, use)
            ideal += use.bits(seg)

    for g in channel_groups(levels.shape[0]):
        sorted_levels = levels[g].transpose(2, 0, 1)[BAND_ORDER]  # (512, Cg, N) band-sorted
        last = last_bands(sorted_levels)
        code([last.ravel()])
        nonzero = np.zeros(last.shape, dtype=np.int64)
        for b in range(N_BANDS):
            band = sorted_levels[BAND_STARTS[b] : BAND_STARTS[b + 1]]
            sel = last >= b
            ctx = band_context(nonzero, b) if k_ctx > 1 else None
            segs = []
            for k in range(k_ctx):
                pick = sel if ctx is None else sel & (ctx == k)
                classes, nbits, mant = levels_to_classes(band[:, pick].ravel())
                segs.append(classes)
                nbits_all.append(nbits)
                mant_all.append(mant)
            code(segs)
            if k_ctx > 1:
                nonzero = (band != 0).sum(axis=0)
    nbits_cat = np.concatenate(nbits_all)
    ideal += float(nbits_cat.sum())
    mant_bytes = pack_mantissas(nbits_cat, np.concatenate(mant_all))
    words = enc.finish() if finish else b""  # not finished: the caller codes another set into ``enc``
    return CodedLevels(write_tables(written), words, mant_bytes, ideal, tuple(effective))


def decode_levels(
    side_info: bytes,
    words: bytes,
    mantissa: bytes,
    num_channels: int,
    num_blocks: int,
    mode: int = MODE_BANDS,
    prev_tables: tuple[Table, ...] | None = None,
) -> np.ndarray:
    """Mirror of :func:`encode_levels` -> ``(num_channels, num_blocks, 512)`` int32 levels."""
    return decode_levels_tables(side_info, words, mantissa, num_channels, num_blocks, mode, prev_tables)[0]


def decode_levels_tables(
    side_info: bytes,
    words: bytes,
    mantissa: bytes,
    num_channels: int,
    num_blocks: int,
    mode: int = MODE_BANDS,
    prev_tables: tuple[Table, ...] | None = None,
) -> tuple[np.ndarray, tuple[Table, ...]]:
    """:func:`decode_levels` plus the tables in effect (for the next frame's repeats).

    ``prev_tables`` is None for a keyframe: a repeat marker there is an error.
    """
    levels, (tables,) = decode_level_sets(
        side_info, words, mantissa, num_channels, num_blocks, [np.arange(num_blocks)], mode, [prev_tables]
    )
    return levels, tables


def decode_level_sets(
    side_info: bytes,
    words: bytes,
    mantissa: bytes,
    num_channels: int,
    num_blocks: int,
    set_rows: list[np.ndarray],
    mode: int,
    prev_tables: list[tuple[Table, ...] | None],
) -> tuple[np.ndarray, list[tuple[Table, ...]]]:
    """Decode one or more *level sets* sharing a frame's three coefficient sections
    (FORMAT.md §10.6: a frame with block modes codes its inter blocks, then its intra blocks).

    ``set_rows[k]`` are the block indices (ascending, disjoint) of set ``k``. The side info
    holds each set's tables one after the other, one range decoder reads the sets' classes in
    order, and the mantissa section is each set's mantissa bits, each padded to whole bytes,
    one after the other. Returns the frame's ``(num_channels, num_blocks, 512)`` int32 levels
    (zero for blocks in no set) and each set's tables in effect.
    """
    if mode not in MODES:
        raise RerfFormatError(f"unknown coefficient coding mode {mode}")
    count = n_tables(mode)
    raw = read_tables(side_info, count * len(set_rows), allow_repeat=mode == MODE_CONTEXT)
    dec = SymbolDecoder(words)
    effective = [
        _resolve_tables(raw[k * count : (k + 1) * count], prev) for k, prev in enumerate(prev_tables)
    ]
    levels = np.zeros((num_channels, num_blocks, 512), dtype=np.int32)  # |level| <= 2**31 - 1
    groups = channel_groups(num_channels)
    per_group = count // N_GROUPS
    k_ctx = n_contexts(mode)
    runs: list[tuple[np.ndarray, np.ndarray]] = []  # per set: (flat indices into levels, classes), decoding order
    for rows, tables in zip(set_rows, effective, strict=True):
        rows = np.asarray(rows, dtype=np.int64)
        if dec.native is not None:
            from rerf_codec.codec import native

            flat = levels.reshape(-1)
            bigs = []
            for gi, g in enumerate(groups):
                cg = g.stop - g.start
                row_map = (np.arange(g.start, g.stop)[:, None] * num_blocks + rows[None, :]).ravel()
                bigs.append(
                    native.decode_group(
                        dec.native, tables[gi * per_group : (gi + 1) * per_group], cg, rows.size, k_ctx,
                        _BAND_ORDER32, _BAND_STARTS32, levels, row_map,
                    )
                )
            big = np.concatenate(bigs)
            runs.append((big, flat[big].astype(np.int64)))
        else:
            placed = _decode_classes(dec, tables, num_channels, rows.size, mode)
            classes = np.concatenate([p[3] for p in placed]) if placed else np.zeros(0, dtype=np.int32)
            idx = _place(placed, levels, rows)
            big = np.abs(classes) >= DIRECT_CLASSES
            runs.append((idx[big], classes[big].astype(np.int64)))
    pos = 0
    flat = levels.reshape(-1)
    for k, (idx, classes) in enumerate(runs):
        nbits = mantissa_bits(classes)
        size = (int(nbits.sum()) + 7) // 8
        last_set = k == len(runs) - 1
        part = mantissa[pos:] if last_set else mantissa[pos : pos + size]
        if not last_set and len(part) < size:
            raise RerfFormatError(f"mantissa section holds {len(mantissa)} bytes, the classes need more")
        pos += size
        values = classes_to_levels(classes, unpack_mantissas(nbits, part))
        if idx.size:
            flat[idx] = values
    return levels, effective


_BAND_ORDER32 = np.ascontiguousarray(BAND_ORDER, dtype=np.int32)
_BAND_STARTS32 = np.ascontiguousarray(BAND_STARTS, dtype=np.int32)


def _resolve_tables(raw: list[Table], prev_tables: tuple[Table, ...] | None) -> tuple[Table, ...]:
    """Replace repeat and merge markers of one set's tables by the tables they stand for."""
    count = len(raw)
    effective: list[Table] = []
    per_group = count // N_GROUPS
    for i, t in enumerate(raw):
        if t == MERGE:
            if (i % per_group - 1) % N_CONTEXTS == 0 or i % per_group == 0:
                raise RerfFormatError(f"side info table {i} shares the table before it, but is not a context 1..3 table")
            if effective[i - 1].empty:
                raise RerfFormatError(f"side info table {i} shares the table before it, which is unused")
            t = effective[i - 1]
        elif t == REPEAT:
            if prev_tables is None:
                raise RerfFormatError(f"side info table {i} repeats a table, but the frame is a keyframe")
            if len(prev_tables) != count or prev_tables[i].empty:
                raise RerfFormatError(f"side info table {i} repeats a table the previous frame did not have")
            t = prev_tables[i]
        effective.append(t)
    return tuple(effective)


def _decode_classes(
    dec: SymbolDecoder, effective: tuple[Table, ...], num_channels: int, num_blocks: int, mode: int
) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
    """Classes of one level set, as ``(group, band, rows, classes)`` runs in decoding order."""
    tables = iter(effective)
    groups = channel_groups(num_channels)
    k_ctx = n_contexts(mode)
    placed: list[tuple[int, int, np.ndarray, np.ndarray]] = []  # (group, band, rows, classes)
    for gi, g in enumerate(groups):
        cg = g.stop - g.start
        last_table = next(tables)
        last = dec.decode(cg * num_blocks, last_table)
        if last.size and (last.min() < -1 or last.max() >= N_BANDS):
            raise RerfFormatError("last-band symbol outside -1..21")
        nonzero = np.zeros(last.shape, dtype=np.int64)
        for b in range(N_BANDS):
            size = int(BAND_STARTS[b + 1] - BAND_STARTS[b])
            sel = last >= b
            ctx = band_context(nonzero, b) if k_ctx > 1 else None
            if k_ctx > 1:
                nonzero = np.zeros(last.shape, dtype=np.int64)
            for k in range(k_ctx):
                table = next(tables)
                rows = np.flatnonzero(sel if ctx is None else sel & (ctx == k))  # (channel, block) pairs, C order
                n = size * rows.size
                if n == 0:
                    if not table.empty:
                        raise RerfFormatError("side info declares a table for a band with no symbols")
                    continue
                cls = dec.decode(n, table)
                placed.append((gi, b, rows, cls))
                if k_ctx > 1:
                    nonzero[rows] = (cls.reshape(size, rows.size) != 0).sum(axis=0)
    return placed


def _place(placed: list[tuple[int, int, np.ndarray, np.ndarray]], levels: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Scatter decoded classes (in decoding order) into the frame's ``levels`` (the set's block
    ``j`` is frame block ``rows[j]``); returns each class's flat index into ``levels``."""
    num_channels, num_blocks, _ = levels.shape
    groups = channel_groups(num_channels)
    n_set = rows.size
    flat = levels.reshape(-1)
    out = []
    for gi, b, sel, cls in placed:
        g = groups[gi]
        s0, s1 = BAND_STARTS[b], BAND_STARTS[b + 1]
        chan = g.start + sel // n_set
        block = rows[sel % n_set]
        base = (chan * num_blocks + block) * 512  # (rows of the run,)
        idx = (base[None, :] + BAND_ORDER[s0:s1][:, None]).ravel()  # frequency-major, as decoded
        flat[idx] = cls
        out.append(idx)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
