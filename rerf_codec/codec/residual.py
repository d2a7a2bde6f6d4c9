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

from rerf_codec.bitstream import (
    BLOCK_MODE_INTER,
    BLOCK_MODE_INTRA,
    BLOCK_MODE_SKIP,
    FRAME_FLAG_BLOCK_MODES,
    FRAME_RESIDUAL,
    ChannelParams,
    FrameRecord,
    SequenceHeader,
    encode_side_info,
)
from rerf_codec.codec import native
from rerf_codec.codec.coefficients import decode_level_sets, encode_levels
from rerf_codec.codec.entropy import SymbolDecoder, SymbolEncoder, Table, levels_to_classes
from rerf_codec.codec.intra import (
    FrameBuffers,
    block_coords,
    channel_scales,
    gather_blocks,
    write_blocks,
)
from rerf_codec.codec.modes import decode_modes, encode_modes, no_previous_modes, previous_modes
from rerf_codec.codec.motion import (
    coarse_vectors,
    decode_motion,
    encode_motion,
    motion_compensate,
    superblock_count,
    superblock_index,
)
from rerf_codec.codec.occupancy import block_grid_shape, decode_mask_inter, encode_mask_inter, occupancy_mask
from rerf_codec.codec.quant import DeadZone, dequantize, gof_steps, quantize
from rerf_codec.codec.rdoq import block_bits, rdoq
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
    prev_modes: np.ndarray | None = None
    """Block modes of the previous frame over the block grid (``modes.previous_modes``);
    None after a keyframe (no block has a mode)."""
    intra_tables: tuple[Table, ...] = ()
    """Tables of the latest intra-coded level set of the GOF (the keyframe's, or the intra
    blocks' of a later frame): what intra blocks may repeat."""


def initial_state(
    header: SequenceHeader, prev: GridFrame, mask: np.ndarray, tables: tuple[Table, ...] = ()
) -> GofState:
    """State after a keyframe (``tables``: its coefficient tables in effect)."""
    n_sb = superblock_count(block_grid_shape(header.grid_shape))
    return GofState(
        prev=prev, prev_mask=mask, prev_coarse=np.zeros((n_sb, 3), dtype=np.int64), tables=tables, intra_tables=tables
    )


@dataclass(frozen=True)
class ResidualSymbols:
    """Everything entropy decoding gives for one residual frame (before reconstruction)."""

    mask: np.ndarray
    mv: np.ndarray
    """``(N, 3)`` vectors of the occupied blocks (skip blocks: their coarse vector; intra: 0)."""
    levels: np.ndarray
    """``(C_total, N, 512)``: residual levels of inter blocks, keyframe levels of intra blocks,
    zeros for skip blocks."""
    coarse: np.ndarray
    tables: tuple[Table, ...]
    modes: np.ndarray | None
    """``(N,)`` block modes, None for a frame without the block_modes flag (all inter)."""
    intra_tables: tuple[Table, ...]

    def next_state(self, frame: GridFrame, state: GofState) -> GofState:
        """The GOF state after this frame, whose (padded) reconstruction is ``frame``."""
        return GofState(
            frame, self.mask, self.coarse, self.tables, previous_modes(self.mask, self.modes), self.intra_tables
        )


def _prev_modes(state: GofState) -> np.ndarray:
    return state.prev_modes if state.prev_modes is not None else no_previous_modes(state.prev_mask.shape)


def reconstruct_residual(
    header: SequenceHeader,
    channels: tuple[ChannelParams, ...],
    mask: np.ndarray,
    mv: np.ndarray,
    levels: np.ndarray,
    prev: GridFrame,
    out: FrameBuffers | None = None,
    prediction: np.ndarray | None = None,
    modes: np.ndarray | None = None,
) -> GridFrame:
    """Prediction + decoded residual for the occupied blocks; exact integer arithmetic.

    ``prediction`` lets the encoder pass the ``motion_compensate`` result it already
    computed for the same (prev, mask, mv, modes); the decoder computes it here, per chunk.
    ``modes`` (format 1.2): intra blocks have prediction 0 (their levels code the block
    itself); skip blocks have all-zero levels, so they keep the prediction.
    """
    scales = channel_scales(channels)
    blocks = block_coords(mask)
    n = blocks[0].size
    steps = gof_steps(header.qmatrix, channels)
    predicted = None if modes is None else np.flatnonzero(modes != BLOCK_MODE_INTRA)

    def produce(sl: slice) -> np.ndarray:
        k = sl.stop - sl.start
        if prediction is not None:
            values = prediction[sl].copy()
        elif predicted is None:
            values = motion_compensate(prev.density, prev.features, header.grid_shape, scales, blocks, mv, sl)
        else:
            values = np.zeros((k, n, BLOCK, BLOCK, BLOCK), dtype=np.float64)
            sub = tuple(b[predicted] for b in blocks)
            values[:, predicted] = motion_compensate(
                prev.density, prev.features, header.grid_shape, scales, sub, mv[predicted], sl  # type: ignore[arg-type]
            )
        flat_levels = levels[sl].reshape(k * n, -1)
        coded = np.flatnonzero(flat_levels.any(axis=1))  # (channel, block) rows with a residual
        if coded.size:
            coeffs = dequantize(flat_levels[coded][:, None, :], steps[sl][coded // n])
            resid = inverse_dct_exact(coeffs.reshape(-1, BLOCK, BLOCK, BLOCK))
            flat_values = values.reshape(k * n, BLOCK, BLOCK, BLOCK)
            flat_values[coded] += resid
        np.clip(values, -MAX_SAMPLE, MAX_SAMPLE, out=values)
        return values

    compiled = None
    if native.enabled():
        coords = np.ascontiguousarray(np.stack(blocks, axis=1), dtype=np.int64)
        flags = np.ones(n, dtype=np.uint8) if modes is None else (modes != BLOCK_MODE_INTRA).astype(np.uint8)
        planes = [prev.density] + [prev.features[c] for c in range(prev.features.shape[0])]

        def compiled(c: int, plane: np.ndarray) -> None:
            ref = np.ascontiguousarray(planes[c], dtype=np.float32)
            native.reconstruct_channel(
                plane, ref, header.grid_shape, channels[c].exponent, coords, flags, mv, levels[c], steps[c]
            )

    return write_blocks(header, channels, mask, produce, out, compiled)


DEFAULT_MODE_LAMBDA = 0.15
"""Lambda (step² per bit) of the block-mode decision when RDOQ of residual frames is off."""


def encode_residual(
    frame: GridFrame,
    header: SequenceHeader,
    channels: tuple[ChannelParams, ...],
    deadzone: DeadZone,
    state: GofState,
    mv_for: Callable[[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray, np.ndarray], np.ndarray],
    out: FrameBuffers | None = None,
    intra_deadzone: DeadZone | None = None,
) -> tuple[FrameRecord, GridFrame, GofState, dict[str, float]]:
    """Code one residual frame against ``state.prev``.

    Args:
        mv_for: ``mv_for(blocks, cur_blocks_lattice, scales) -> (N, 3) int`` eighth-voxel
            motion for the occupied blocks (motion search, or quantised trainer motion).
        intra_deadzone: with it, every block chooses inter, skip or intra by rate–distortion
            cost (format 1.2 block modes; intra blocks are quantised with this dead zone);
            without it every block is inter (a 1.1 residual frame).
    """
    mask = occupancy_mask(frame.density, header.occupancy_threshold)
    mask_enc = SymbolEncoder()
    encode_mask_inter(mask, state.prev_mask, mask_enc)
    scales = channel_scales(channels)
    blocks = block_coords(mask)
    cur = gather_blocks(frame, mask, scales)  # (C, N, 512) lattice units (floats)
    n = cur.shape[1]
    mv = np.asarray(mv_for(blocks, cur, scales), dtype=np.int64).reshape(n, 3)
    block_shape = block_grid_shape(header.grid_shape)
    sb = superblock_index(blocks, block_shape)
    n_sb = state.prev_coarse.shape[0]
    pred = motion_compensate(state.prev.density, state.prev.features, header.grid_shape, scales, blocks, mv)  # all channels
    steps = gof_steps(header.qmatrix, channels)
    coeffs = _residual_coeffs(cur, pred, blocks, header.grid_shape)
    levels = quantize(coeffs, steps, deadzone)
    if deadzone.rdoq_lambda > 0:
        levels = rdoq(coeffs, steps, levels, deadzone.rdoq_lambda, header.coeff_mode)
    modes = None
    if intra_deadzone is not None and n:
        used, coarse_used = coarse_vectors(mv, sb, n_sb)
        coarse_all = state.prev_coarse.copy()
        coarse_all[used] = coarse_used
        lam = deadzone.rdoq_lambda if deadzone.rdoq_lambda > 0 else DEFAULT_MODE_LAMBDA
        decision = _choose_modes(
            cur, pred, coeffs, levels, steps, mv, sb, coarse_all, lam, header, state, scales, blocks, intra_deadzone
        )
        if (decision.modes != BLOCK_MODE_INTER).any():
            modes = decision.modes
            pred, levels, mv = decision.prediction, decision.levels, decision.mv
    stats = {"occupied_blocks": float(n)}
    if modes is None:
        motion_bytes, coarse, motion_bits = encode_motion(mv, sb, n_sb, state.prev_coarse)
        coded = encode_levels(levels, mode=header.coeff_mode, prev_tables=state.tables)
        record = FrameRecord(
            frame_type=FRAME_RESIDUAL,
            mask=mask_enc.finish(),
            motion=motion_bytes,
            side_info=encode_side_info(coded.side_info),
            coeff_words=coded.words,
            mantissa=coded.mantissa,
        )
        parsed = ResidualSymbols(mask, mv, levels, coarse, coded.tables, None, state.intra_tables)
        ideal = coded.ideal_bits
    else:
        predicted = modes != BLOCK_MODE_INTRA
        inter = modes == BLOCK_MODE_INTER
        intra = ~predicted
        # the coarse field the skip decisions used: every block's searched vector took part
        motion_bytes, coarse, motion_bits = encode_motion(
            decision.searched[predicted], sb[predicted], n_sb, state.prev_coarse, fine=inter[predicted],
            coarse_field=decision.coarse_field,
        )
        enc = SymbolEncoder()
        a = encode_levels(levels[:, inter], enc, header.coeff_mode, state.tables, finish=False)
        b = encode_levels(levels[:, intra], enc, header.coeff_mode, state.intra_tables, finish=False)
        modes_bytes, mode_bits = encode_modes(modes, mask, _prev_modes(state))
        record = FrameRecord(
            frame_type=FRAME_RESIDUAL,
            mask=mask_enc.finish(),
            motion=motion_bytes,
            side_info=encode_side_info(a.side_info + b.side_info),
            coeff_words=enc.finish(),
            mantissa=a.mantissa + b.mantissa,
            modes=modes_bytes,
            flags=FRAME_FLAG_BLOCK_MODES,
        )
        parsed = ResidualSymbols(
            mask, mv, levels, coarse, a.tables, modes, b.tables if intra.any() else state.intra_tables
        )
        ideal = a.ideal_bits + b.ideal_bits
        motion_bits += mode_bits
        for name, m in (("inter", BLOCK_MODE_INTER), ("skip", BLOCK_MODE_SKIP), ("intra", BLOCK_MODE_INTRA)):
            stats[f"{name}_blocks"] = float(np.count_nonzero(modes == m))
    recon = reconstruct_residual(header, channels, mask, mv, levels, state.prev, out, prediction=pred, modes=modes)
    new_state = parsed.next_state(_padded(recon, out), state)
    stats.update({"ideal_coefficient_bits": ideal, "motion_bits": motion_bits})
    return record, recon, new_state, stats


def _residual_coeffs(
    cur: np.ndarray, pred: np.ndarray, blocks: tuple[np.ndarray, np.ndarray, np.ndarray], grid_shape: tuple[int, int, int]
) -> np.ndarray:
    """Float DCT of ``cur - pred`` per (channel, block), partial edge blocks replicated."""
    c_total, n, _ = cur.shape
    resid = cur - pred.reshape(c_total, n, BLOCK**3)
    _replicate_edges(resid.reshape(c_total, n, BLOCK, BLOCK, BLOCK), blocks, grid_shape)
    return forward_dct(resid.reshape(c_total * n, BLOCK, BLOCK, BLOCK)).reshape(c_total, n, BLOCK**3)


@dataclass
class _ModeDecision:
    modes: np.ndarray
    prediction: np.ndarray
    """``(C, N, 8, 8, 8)`` prediction as the decoder forms it (intra blocks 0)."""
    levels: np.ndarray
    mv: np.ndarray
    """Vectors as the decoder derives them (skip: coarse, intra: 0)."""
    searched: np.ndarray
    """The motion search's vectors (what the coarse field was chosen from)."""
    coarse_field: np.ndarray


def _distortion(coeffs: np.ndarray, levels: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Per block, squared coefficient error in step² units summed over channels (RDOQ's measure)."""
    err = coeffs - levels * steps[:, None, :]
    err /= steps[:, None, :]
    out: np.ndarray = np.einsum("cnf,cnf->n", err, err)
    return out


def _choose_modes(
    cur: np.ndarray,
    pred: np.ndarray,
    coeffs: np.ndarray,
    levels: np.ndarray,
    steps: np.ndarray,
    mv: np.ndarray,
    sb: np.ndarray,
    coarse_all: np.ndarray,
    lam: float,
    header: SequenceHeader,
    state: GofState,
    scales: np.ndarray,
    blocks: tuple[np.ndarray, np.ndarray, np.ndarray],
    intra_deadzone: DeadZone,
) -> _ModeDecision:
    """Rate–distortion choice of every block's mode: J = D + lam · R with D in step² (the
    RDOQ measure) and R the estimated bits of the block's levels, fine motion and mode."""
    c_total, n, _ = cur.shape
    mode_id = header.coeff_mode
    # inter: the levels already chosen, plus the fine motion difference
    fine_cls, fine_nb, _ = levels_to_classes((mv - coarse_all[sb]).ravel())
    hist = np.bincount(fine_cls.astype(np.int64) + 64, minlength=129).astype(np.float64)
    fine_bits = (-np.log2(hist[fine_cls.astype(np.int64) + 64] / fine_cls.size) + fine_nb).reshape(n, 3).sum(axis=1)
    j_inter = _distortion(coeffs, levels, steps) + lam * (block_bits(levels, mode_id) + fine_bits)
    # skip: the coarse vector's prediction, nothing coded
    mv_skip = coarse_all[sb]
    differs = np.flatnonzero((mv_skip != mv).any(axis=1))
    pred_skip = pred
    coeffs_skip = coeffs
    if differs.size:
        pred_skip = pred.copy()
        sub = tuple(b[differs] for b in blocks)
        pred_skip[:, differs] = motion_compensate(
            state.prev.density, state.prev.features, header.grid_shape, scales, sub, mv_skip[differs]  # type: ignore[arg-type]
        )
        coeffs_skip = coeffs.copy()
        coeffs_skip[:, differs] = _residual_coeffs(cur[:, differs], pred_skip[:, differs], sub, header.grid_shape)  # type: ignore[arg-type]
    j_skip = np.einsum("cnf,cnf->n", coeffs_skip / steps[:, None, :], coeffs_skip / steps[:, None, :])
    # intra: the block on its own, quantised as in a keyframe (decided on its dead-zone levels;
    # RDOQ, which only lowers the cost, runs on the blocks that choose intra)
    coeffs_intra = forward_dct(cur.reshape(c_total * n, BLOCK, BLOCK, BLOCK)).reshape(c_total, n, BLOCK**3)
    levels_intra = quantize(coeffs_intra, steps, intra_deadzone)
    j_intra = _distortion(coeffs_intra, levels_intra, steps) + lam * block_bits(levels_intra, mode_id)
    j = np.stack([j_inter, j_skip, j_intra])  # rows in mode-id order
    modes = np.argmin(j, axis=0)
    for _ in range(2):  # the mode symbols' own cost, from the decision's histogram
        p = np.bincount(modes, minlength=3) / n
        with np.errstate(divide="ignore"):
            cost = np.where(p > 0, -np.log2(np.maximum(p, 1e-12)), np.log2(n) + 4.0)
        modes = np.argmin(j + lam * cost[:, None], axis=0)
    modes = modes.astype(np.int8)
    skip = modes == BLOCK_MODE_SKIP
    intra = modes == BLOCK_MODE_INTRA
    if intra_deadzone.rdoq_lambda > 0 and intra.any():
        levels_intra[:, intra] = rdoq(
            coeffs_intra[:, intra], steps, levels_intra[:, intra], intra_deadzone.rdoq_lambda, mode_id
        )
    prediction = pred_skip.copy() if differs.size else pred.copy()
    prediction[:, ~skip] = pred[:, ~skip]
    prediction[:, intra] = 0.0
    out_levels = np.where(intra[None, :, None], levels_intra, levels)
    out_levels[:, skip] = 0
    out_mv = np.where(skip[:, None], mv_skip, mv)
    out_mv[intra] = 0
    return _ModeDecision(modes, prediction, out_levels, out_mv, mv, coarse_all)


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


def parse_residual(record: FrameRecord, header: SequenceHeader, state: GofState) -> ResidualSymbols:
    """Entropy-decode a residual record (FORMAT.md §10, §10.6 for block modes)."""
    from rerf_codec.bitstream import decode_side_info

    mask = decode_mask_inter(state.prev_mask, SymbolDecoder(record.mask))
    blocks = block_coords(mask)
    n = blocks[0].size
    sb = superblock_index(blocks, mask.shape)
    n_sb = state.prev_coarse.shape[0]
    side = decode_side_info(record.side_info)
    if not record.flags & FRAME_FLAG_BLOCK_MODES:
        mv, coarse = decode_motion(record.motion, sb, n_sb, state.prev_coarse)
        levels, (tables,) = decode_level_sets(
            side, record.coeff_words, record.mantissa, header.num_channels, n, [np.arange(n)], header.coeff_mode,
            [state.tables],
        )
        return ResidualSymbols(mask, mv, levels, coarse, tables, None, state.intra_tables)
    modes = decode_modes(record.modes, mask, _prev_modes(state))
    predicted = modes != BLOCK_MODE_INTRA
    inter = modes == BLOCK_MODE_INTER
    mv = np.zeros((n, 3), dtype=np.int64)
    mv_pred, coarse = decode_motion(record.motion, sb[predicted], n_sb, state.prev_coarse, fine=inter[predicted])
    mv[predicted] = mv_pred
    intra = ~predicted
    levels, (tables, intra_tables) = decode_level_sets(
        side, record.coeff_words, record.mantissa, header.num_channels, n,
        [np.flatnonzero(inter), np.flatnonzero(intra)], header.coeff_mode, [state.tables, state.intra_tables],
    )
    if not intra.any():
        intra_tables = state.intra_tables
    return ResidualSymbols(mask, mv, levels, coarse, tables, modes, intra_tables)
