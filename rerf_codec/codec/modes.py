"""Block modes of residual frames (format 1.2): inter, skip or intra per occupied block.

Every video codec since MPEG-1 lets a predicted frame code some blocks on their own
(new content, a cut) and keep others as predicted without any residual (still
background). Here each occupied block of a residual frame with the ``block_modes``
frame flag carries one mode (FORMAT.md §10.6):

* ``inter`` (id 0): motion-compensated prediction plus a coded residual (1.0/1.1 behaviour);
* ``skip`` (id 1): the prediction with the superblock's coarse vector, no residual, no
  fine motion difference and no coefficients;
* ``intra`` (id 2): the block coded as in a keyframe (prediction 0), with its own set of
  coefficient tables.

The modes are range-coded with one count table per *context*, where the context of a
block depends only on the previous frame's modes (the same block and its six face
neighbours), so every context's symbols decode in one vectorised call. Each table
holds the exact per-context histogram (not rescaled): the decoder checks that the
symbols it decoded match it, which catches truncated or padded mode sections.
"""

from __future__ import annotations

import struct

import numpy as np

from rerf_codec.bitstream import BLOCK_MODE_INTER, BLOCK_MODE_INTRA, BLOCK_MODE_SKIP
from rerf_codec.codec.entropy import UNUSED, SymbolDecoder, SymbolEncoder, Table, read_tables, write_tables
from rerf_codec.errors import RerfFormatError

N_BLOCK_MODES = 3
"""Mode symbols are 0..2 (inter, skip, intra)."""
MODE_NONE = 3
"""Previous-mode value of a block that had no mode (unoccupied, or the previous frame was a
keyframe) — a context value only, never coded."""
N_MODE_CONTEXTS = 12
"""4 previous modes of the block × 3 neighbour classes."""
MODES_HEAD = struct.Struct("<IH")  # num_blocks, tables_size

assert (BLOCK_MODE_INTER, BLOCK_MODE_SKIP, BLOCK_MODE_INTRA) == (0, 1, 2)


def no_previous_modes(block_shape: tuple[int, int, int]) -> np.ndarray:
    """The previous-mode map after a keyframe: no block has a mode."""
    return np.full(block_shape, MODE_NONE, dtype=np.int8)


def previous_modes(mask: np.ndarray, modes: np.ndarray | None) -> np.ndarray:
    """The previous-mode map a frame leaves for the next one: its modes at occupied blocks
    (all inter for a residual frame without modes), :data:`MODE_NONE` elsewhere."""
    out = np.full(mask.shape, MODE_NONE, dtype=np.int8)
    out[mask] = BLOCK_MODE_INTER if modes is None else modes
    return out


def mode_contexts(prev_modes: np.ndarray) -> np.ndarray:
    """Context (0..11) of every block of the block grid, C order: ``3·t + q`` with ``t`` the
    block's previous mode (0..3) and ``q`` 0 when no face neighbour was skip or intra,
    1 when at least as many were skip as intra, 2 when more were intra."""
    p = np.pad(prev_modes.astype(np.int64), 1, constant_values=MODE_NONE)

    def count(mode: int) -> np.ndarray:
        m = (p == mode).astype(np.int64)
        total: np.ndarray = (
            m[:-2, 1:-1, 1:-1] + m[2:, 1:-1, 1:-1] + m[1:-1, :-2, 1:-1]
            + m[1:-1, 2:, 1:-1] + m[1:-1, 1:-1, :-2] + m[1:-1, 1:-1, 2:]
        )
        return total

    n_skip = count(BLOCK_MODE_SKIP)
    n_intra = count(BLOCK_MODE_INTRA)
    q = np.where(n_skip + n_intra == 0, 0, np.where(n_skip >= n_intra, 1, 2))
    ctx: np.ndarray = (3 * prev_modes.astype(np.int64) + q).ravel()
    return ctx


def encode_modes(modes: np.ndarray, mask: np.ndarray, prev_modes: np.ndarray) -> tuple[bytes, float]:
    """The modes section of a frame: ``modes`` (N,) for the occupied blocks of ``mask`` in
    block-index order. Returns the section and its ideal bits (for the encoder's accounting)."""
    modes = np.asarray(modes, dtype=np.int32)
    ctx = mode_contexts(prev_modes)[np.flatnonzero(mask.ravel())]
    tables: list[Table] = []
    enc = SymbolEncoder()
    bits = 0.0
    for c in range(N_MODE_CONTEXTS):
        sym = modes[ctx == c]
        if sym.size == 0:
            tables.append(UNUSED)
            continue
        lo, hi = int(sym.min()), int(sym.max())
        counts = np.bincount(sym - lo, minlength=hi - lo + 1)
        table = Table(lo, hi, tuple(int(v) for v in counts)) if lo < hi else Table(lo, hi, (1,))
        tables.append(table)
        enc.encode(sym, table)
        bits += table.bits(sym)
    table_bytes = write_tables(tables)
    section = MODES_HEAD.pack(int(modes.size), len(table_bytes)) + table_bytes + enc.finish()
    return section, bits + 8.0 * (MODES_HEAD.size + len(table_bytes))


def decode_modes(section: bytes, mask: np.ndarray, prev_modes: np.ndarray) -> np.ndarray:
    """Mirror of :func:`encode_modes` -> (N,) int8 modes; every inconsistency is a RerfFormatError."""
    n = int(mask.sum())
    if len(section) < MODES_HEAD.size:
        raise RerfFormatError("modes section truncated")
    num_blocks, tables_size = MODES_HEAD.unpack_from(section)
    if num_blocks != n:
        raise RerfFormatError(f"modes section codes {num_blocks} blocks, the frame has {n} occupied blocks")
    end = MODES_HEAD.size + tables_size
    if end > len(section):
        raise RerfFormatError("modes section truncated")
    try:
        tables = read_tables(section[MODES_HEAD.size : end], N_MODE_CONTEXTS)
    except RerfFormatError as exc:
        raise RerfFormatError(f"modes section: {exc}") from None
    ctx = mode_contexts(prev_modes)[np.flatnonzero(mask.ravel())]
    dec = SymbolDecoder(section[end:])
    out = np.zeros(n, dtype=np.int8)
    for c, table in enumerate(tables):
        rows = np.flatnonzero(ctx == c)
        if not table.empty and (table.lo < 0 or table.hi >= N_BLOCK_MODES):
            raise RerfFormatError(f"modes section: table {c} has mode symbols {table.lo}..{table.hi} outside 0..2")
        if rows.size == 0:
            if not table.empty:
                raise RerfFormatError(f"modes section declares a table for context {c}, which has no blocks")
            continue
        if table.empty:
            raise RerfFormatError(f"modes section has no table for context {c}, which has {rows.size} blocks")
        if not table.trivial and sum(table.counts) != rows.size:
            raise RerfFormatError(
                f"modes section: context {c} counts {sum(table.counts)} symbols, it has {rows.size} blocks"
            )
        sym = dec.decode(rows.size, table)
        if not table.trivial:
            got = np.bincount(sym - table.lo, minlength=len(table.counts))
            if got.size != len(table.counts) or tuple(int(v) for v in got) != table.counts:
                raise RerfFormatError(f"modes section: context {c} decodes to other counts than declared (corrupt data)")
        out[rows] = sym
    return out
