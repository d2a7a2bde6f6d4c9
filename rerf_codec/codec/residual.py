"""Residual (P) frame coding: occupancy, block motion, motion-compensated residual.

ReRF's compression comes from coding frame t as a small motion grid plus a sparse
residual against frame t−1. Here the prediction is always made from the *decoded*
previous frame (closed loop, DESIGN.md decision 2), through the same
:func:`reconstruct_residual` in encoder and decoder, so errors never accumulate.

Per frame:

* mask — occupancy of the current frame, coded with the previous frame's mask as
  context (``occupancy.encode_mask_inter``);
* motion — one eighth-voxel vector per occupied block (``motion.encode_motion``);
* residual — current minus prediction, block DCT, the GOF's quantiser, and the same
  coefficient coder as intra frames. A block whose residual quantises to zero costs
  only its "last band = −1" symbols (the coded-block flag), a small fraction of a bit.

Blocks that become empty decode to the GOF fill value; newly occupied blocks are
predicted from wherever their motion points (often fill) and carry the difference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rerf_codec.bitstream import FRAME_RESIDUAL, ChannelParams, FrameRecord, SequenceHeader, encode_side_info
from rerf_codec.codec.coefficients import decode_levels_tables, encode_levels
from rerf_codec.codec.entropy import SymbolDecoder, SymbolEncoder, Table
from rerf_codec.codec.intra import (
    FrameBuffers,
    block_coords,
    channel_scales,
    gather_blocks,
    write_blocks,
)
from rerf_codec.codec.motion import (
    decode_motion,
    encode_motion,
    motion_compensate,
    superblock_count,
    superblock_index,
)
from rerf_codec.codec.occupancy import block_grid_shape, decode_mask_inter, encode_mask_inter, occupancy_mask
from rerf_codec.codec.quant import DeadZone, dequantize, gof_steps, quantize
from rerf_codec.codec.rdoq import rdoq
from rerf_codec.codec.transform import BLOCK, MAX_SAMPLE, forward_dct, inverse_dct_exact
from rerf_codec.grids import GridFrame


@dataclass
class GofState:
    """What a residual frame needs from earlier frames of its GOF (decoder and encoder)."""

    prev: GridFrame
    """Previous decoded frame; arrays C-contiguous, possibly padded beyond the grid."""
    prev_mask: np.ndarray
    """Previous frame's block occupancy."""
    prev_coarse: np.ndarray
    """``(n_superblocks, 3)`` coarse motion of the latest residual frame (zeros after a keyframe)."""
    tables: tuple[Table, ...] = ()
    """Coefficient tables in effect in the previous frame (coefficient mode 1 may repeat them)."""


def initial_state(
    header: SequenceHeader, prev: GridFrame, mask: np.ndarray, tables: tuple[Table, ...] = ()
) -> GofState:
    """State after a keyframe (``tables``: its coefficient tables in effect)."""
    n_sb = superblock_count(block_grid_shape(header.grid_shape))
    return GofState(prev=prev, prev_mask=mask, prev_coarse=np.zeros((n_sb, 3), dtype=np.int64), tables=tables)


def reconstruct_residual(
    header: SequenceHeader,
    channels: tuple[ChannelParams, ...],
    mask: np.ndarray,
    mv: np.ndarray,
    levels: np.ndarray,
    prev: GridFrame,
    out: FrameBuffers | None = None,
    prediction: np.ndarray | None = None,
) -> GridFrame:
    """Prediction + decoded residual for the occupied blocks; exact integer arithmetic.

    ``prediction`` lets the encoder pass the ``motion_compensate`` result it already
    computed for the same (prev, mask, mv); the decoder computes it here, per chunk.
    """
    scales = channel_scales(channels)
    blocks = block_coords(mask)
    n = blocks[0].size
    steps = gof_steps(header.qmatrix, channels)

    def produce(sl: slice) -> np.ndarray:
        k = sl.stop - sl.start
        if prediction is not None:
            values = prediction[sl].copy()
        else:
            values = motion_compensate(prev.density, prev.features, header.grid_shape, scales, blocks, mv, sl)
        flat_levels = levels[sl].reshape(k * n, -1)
        coded = np.flatnonzero(flat_levels.any(axis=1))  # (channel, block) rows with a residual
        if coded.size:
            coeffs = dequantize(flat_levels[coded][:, None, :], steps[sl][coded // n])
            resid = inverse_dct_exact(coeffs.reshape(-1, BLOCK, BLOCK, BLOCK))
            flat_values = values.reshape(k * n, BLOCK, BLOCK, BLOCK)
            flat_values[coded] += resid
        np.clip(values, -MAX_SAMPLE, MAX_SAMPLE, out=values)
        return values

    return write_blocks(header, channels, mask, produce, out)


def encode_residual(
    frame: GridFrame,
    header: SequenceHeader,
    channels: tuple[ChannelParams, ...],
    deadzone: DeadZone,
    state: GofState,
    mv_for: Callable[[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray, np.ndarray], np.ndarray],
    out: FrameBuffers | None = None,
) -> tuple[FrameRecord, GridFrame, GofState, dict[str, float]]:
    """Code one residual frame against ``state.prev``.

    Args:
        mv_for: ``mv_for(blocks, cur_blocks_lattice, scales) -> (N, 3) int`` eighth-voxel
            motion for the occupied blocks (motion search, or quantised trainer motion).
    """
    mask = occupancy_mask(frame.density, header.occupancy_threshold)
    mask_enc = SymbolEncoder()
    encode_mask_inter(mask, state.prev_mask, mask_enc)
    scales = channel_scales(channels)
    blocks = block_coords(mask)
    cur = gather_blocks(frame, mask, scales)  # (C, N, 512) lattice units (floats)
    c_total, n, _ = cur.shape
    mv = np.asarray(mv_for(blocks, cur, scales), dtype=np.int64).reshape(n, 3)
    block_shape = block_grid_shape(header.grid_shape)
    sb = superblock_index(blocks, block_shape)
    motion_bytes, coarse, motion_bits = encode_motion(mv, sb, state.prev_coarse.shape[0], state.prev_coarse)
    pred = motion_compensate(state.prev.density, state.prev.features, header.grid_shape, scales, blocks, mv)  # all channels
    resid = cur - pred.reshape(c_total, n, BLOCK**3)
    _replicate_edges(resid.reshape(c_total, n, BLOCK, BLOCK, BLOCK), blocks, header.grid_shape)
    coeffs = forward_dct(resid.reshape(c_total * n, BLOCK, BLOCK, BLOCK)).reshape(c_total, n, BLOCK**3)
    steps = gof_steps(header.qmatrix, channels)
    levels = quantize(coeffs, steps, deadzone)
    if deadzone.rdoq_lambda > 0:
        levels = rdoq(coeffs, steps, levels, deadzone.rdoq_lambda, header.coeff_mode)
    coded = encode_levels(levels, mode=header.coeff_mode, prev_tables=state.tables)
    record = FrameRecord(
        frame_type=FRAME_RESIDUAL,
        mask=mask_enc.finish(),
        motion=motion_bytes,
        side_info=encode_side_info(coded.side_info),
        coeff_words=coded.words,
        mantissa=coded.mantissa,
    )
    recon = reconstruct_residual(header, channels, mask, mv, levels, state.prev, out, prediction=pred)
    new_state = GofState(prev=_padded(recon, out), prev_mask=mask, prev_coarse=coarse, tables=coded.tables)
    stats = {"occupied_blocks": float(n), "ideal_coefficient_bits": coded.ideal_bits, "motion_bits": motion_bits}
    return record, recon, new_state, stats


def _replicate_edges(
    resid: np.ndarray, blocks: tuple[np.ndarray, np.ndarray, np.ndarray], grid_shape: tuple[int, int, int]
) -> None:
    """In place: voxels of partial edge blocks beyond the grid take the residual of the last
    voxel inside it (per axis). The decoder crops them; replicating the *residual* (not the
    input) keeps them smooth and free, where input minus a clamped prediction would not be."""
    for axis in range(3):
        valid = grid_shape[axis] - blocks[axis] * BLOCK  # voxels inside the grid, per block
        for v in np.unique(valid[valid < BLOCK]):
            rows = np.flatnonzero(valid == v)
            src = [slice(None)] * 3
            dst = [slice(None)] * 3
            src[axis] = slice(int(v) - 1, int(v))
            dst[axis] = slice(int(v), BLOCK)
            sub = resid[:, rows]
            sub[(slice(None), slice(None), *dst)] = sub[(slice(None), slice(None), *src)]
            resid[:, rows] = sub


def _padded(frame: GridFrame, out: FrameBuffers | None) -> GridFrame:
    """The C-contiguous (padded when buffers are used) arrays behind a reconstruction."""
    return GridFrame(out.density, out.features) if out is not None else frame


def parse_residual(
    record: FrameRecord, header: SequenceHeader, state: GofState
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[Table, ...]]:
    """Entropy-decode a residual record -> (mask, motion ``(N, 3)``, levels, new coarse field,
    coefficient tables in effect)."""
    from rerf_codec.bitstream import decode_side_info

    mask = decode_mask_inter(state.prev_mask, SymbolDecoder(record.mask))
    blocks = block_coords(mask)
    n = blocks[0].size
    sb = superblock_index(blocks, mask.shape)
    mv, coarse = decode_motion(record.motion, sb, state.prev_coarse.shape[0], state.prev_coarse)
    levels, tables = decode_levels_tables(
        decode_side_info(record.side_info), record.coeff_words, record.mantissa, header.num_channels, n,
        header.coeff_mode, state.tables,
    )
    return mask, mv, levels, coarse, tables
