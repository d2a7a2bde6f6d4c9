"""Intra (keyframe) coding: occupancy mask + block DCT + quantisation + entropy coding.

Three steps, kept apart so that encoder and decoder share reconstruction:

* :func:`encode_intra` (encoder): analyse, transform, quantise, entropy-code, then call
  :func:`reconstruct_intra` — the decoder's own function — for the closed loop;
* :func:`parse_intra` (decoder): bytes -> (mask, levels, tables), entropy decoding only;
* :func:`reconstruct_intra` (both): (mask, levels, GOF parameters) -> dense grids,
  exact integer arithmetic only.

Values live on a per-channel lattice ``integer × 2**-exponent`` (GOF parameters); the
reconstruction is exactly representable in float32.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rerf_codec.bitstream import FRAME_INTRA, ChannelParams, FrameRecord, SequenceHeader, encode_side_info
from rerf_codec.codec import native
from rerf_codec.codec.coefficients import decode_levels_tables, encode_levels
from rerf_codec.codec.entropy import SymbolDecoder, SymbolEncoder, Table
from rerf_codec.codec.occupancy import block_grid_shape, decode_mask, encode_mask, occupancy_mask
from rerf_codec.codec.quant import DeadZone, dequantize, gof_steps, quantize
from rerf_codec.codec.rdoq import rdoq
from rerf_codec.codec.threads import parallel_map
from rerf_codec.codec.transform import BLOCK, forward_dct, inverse_dct_exact
from rerf_codec.errors import RerfFormatError
from rerf_codec.grids import GridFrame


@dataclass(frozen=True)
class IntraStats:
    """Encoder-side accounting of one intra frame."""

    occupied_blocks: int
    ideal_coefficient_bits: float
    tables: tuple[Table, ...] = ()
    """Coefficient tables in effect (what the next frame of the GOF may repeat)."""


def channel_scales(channels: tuple[ChannelParams, ...]) -> np.ndarray:
    """``2**exponent`` per channel (float64, exact): multiply a value to get lattice units."""
    return np.array([2.0 ** ch.exponent for ch in channels])


def block_coords(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Block coordinates of occupied blocks in raster (x, y, z) order."""
    ix, iy, iz = np.nonzero(mask)
    return ix, iy, iz


def _padded_shape(grid_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    return tuple(b * BLOCK for b in block_grid_shape(grid_shape))  # type: ignore[return-value]


def _blocked(arr: np.ndarray) -> np.ndarray:
    """View a padded ``(..., X, Y, Z)`` array as ``(..., bx, by, bz, 8, 8, 8)``."""
    *lead, x, y, z = arr.shape
    v = arr.reshape(*lead, x // BLOCK, BLOCK, y // BLOCK, BLOCK, z // BLOCK, BLOCK)
    k = len(lead)
    return v.transpose(*range(k), k, k + 2, k + 4, k + 1, k + 3, k + 5)


def gather_blocks(frame: GridFrame, mask: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Occupied blocks of every channel in lattice units, ``(C_total, N, 512)`` float64.

    Partial edge blocks are padded by edge replication (smooth, so cheap to code);
    the decoder crops the padding away.
    """
    ix, iy, iz = block_coords(mask)
    n = ix.size
    c_total = 1 + frame.features.shape[0]
    out = np.empty((c_total, n, BLOCK**3), dtype=np.float64)
    if n == 0:
        return out
    target = _padded_shape(frame.density.shape)
    pad = [(0, t - s) for t, s in zip(target, frame.density.shape, strict=True)]
    dens = frame.density if not any(p[1] for p in pad) else np.pad(frame.density, pad, mode="edge")
    feats = frame.features if not any(p[1] for p in pad) else np.pad(frame.features, [(0, 0), *pad], mode="edge")
    out[0] = _blocked(dens)[ix, iy, iz].reshape(n, -1)
    out[1:] = _blocked(feats)[:, ix, iy, iz].reshape(c_total - 1, n, -1)
    out *= scales[:, None, None]
    return out


class FrameBuffers:
    """Padded dense output arrays, reused across frames to avoid fresh-page faults.

    Freshly allocated pages cost more than the decode itself at 128³×13 (DESIGN.md
    engine figures), so the streaming decoder rotates two of these.
    """

    def __init__(self, grid_shape: tuple[int, int, int], feature_channels: int) -> None:
        padded = _padded_shape(grid_shape)
        self.grid_shape = grid_shape
        self.density = np.empty(padded, dtype=np.float32)
        self.features = np.empty((feature_channels, *padded), dtype=np.float32)
        # What the arrays hold outside the last written blocks: (fill values, block mask).
        # When the next frame has the same fills only the blocks that held data are refilled.
        self.fill_key: tuple[int, ...] | None = None
        self.written: np.ndarray | None = None

    def padded(self) -> GridFrame:
        """The whole padded, C-contiguous arrays (what motion compensation reads)."""
        return GridFrame(density=self.density, features=self.features)

    def view(self) -> GridFrame:
        """Read-only views of the valid (cropped) region: the buffers are reused, and
        writing into a yielded frame would corrupt the next one."""
        x, y, z = self.grid_shape
        density = self.density[:x, :y, :z]
        features = self.features[:, :x, :y, :z]
        density.flags.writeable = False
        features.flags.writeable = False
        return GridFrame(density=density, features=features)


class BufferPool:
    """Two lazily allocated :class:`FrameBuffers`: the frame being built and its reference.

    An intra frame needs no reference, so it reuses the slot of the previous frame;
    an intra-only stream therefore touches one dense buffer, a residual frame the other.
    """

    def __init__(self, grid_shape: tuple[int, int, int], feature_channels: int) -> None:
        self._args = (grid_shape, feature_channels)
        self._slots: list[FrameBuffers | None] = [None, None]
        self.current = 0

    def slot(self, needs_reference: bool) -> FrameBuffers:
        """Buffers to decode the next frame into (not the reference's when one is needed)."""
        if needs_reference:
            self.current = 1 - self.current
        buf = self._slots[self.current]
        if buf is None:
            buf = self._slots[self.current] = FrameBuffers(*self._args)
        return buf


CHANNEL_CHUNK = 4
"""Channels reconstructed at a time: bounds the decoder's working memory (levels,
coefficients, prediction and transform intermediates) to a few channels' worth."""


def write_blocks(
    header: SequenceHeader,
    channels: tuple[ChannelParams, ...],
    mask: np.ndarray,
    produce: Callable[[slice], np.ndarray],
    out: FrameBuffers | None = None,
    native_channel: Callable[[int, np.ndarray], None] | None = None,
) -> GridFrame:
    """Dense frame: fill values everywhere, then the occupied blocks' lattice values.

    Args:
        produce: ``produce(channel_slice)`` returns ``(len, N, 8, 8, 8)`` integers (lattice
            units) for the occupied blocks of those channels, in raster order of ``mask``;
            it is called for chunks of :data:`CHANNEL_CHUNK` channels.
        out: buffers to write into (the result views them); None for fresh arrays.
        native_channel: the compiled path instead of ``produce``: ``native_channel(c, plane)``
            writes channel ``c``'s occupied blocks into its padded float32 ``plane``.
    """
    c_total = header.num_channels
    bufs = out if out is not None else FrameBuffers(header.grid_shape, header.feature_channels)
    inv = 1.0 / channel_scales(channels)  # exact: powers of two
    fills = np.array([ch.fill for ch in channels], dtype=np.float64) * inv
    key = tuple(ch.fill for ch in channels) + tuple(ch.exponent for ch in channels)
    if bufs.fill_key == key and bufs.written is not None and bufs.written.shape == mask.shape:
        stale = np.nonzero(bufs.written & ~mask)  # blocks that held data and are empty now
        if stale[0].size:
            _blocked(bufs.density)[stale] = fills[0]
            _blocked(bufs.features)[:, stale[0], stale[1], stale[2]] = fills[1:, None, None, None, None]
    else:
        bufs.density.fill(fills[0])
        for c in range(1, c_total):
            bufs.features[c - 1].fill(fills[c])
    bufs.fill_key = key
    bufs.written = mask.copy()
    ix, iy, iz = block_coords(mask)
    if ix.size and native_channel is not None:
        planes = [bufs.density] + [bufs.features[c] for c in range(c_total - 1)]
        parallel_map(lambda c: native_channel(c, planes[c]), range(c_total))
    elif ix.size:
        for start in range(0, c_total, CHANNEL_CHUNK):
            sl = slice(start, min(c_total, start + CHANNEL_CHUNK))
            values = produce(sl)
            values *= inv[sl, None, None, None, None]
            for j, c in enumerate(range(sl.start, sl.stop)):
                plane = bufs.density if c == 0 else bufs.features[c - 1]
                _blocked(plane)[ix, iy, iz] = values[j]
    if out is None:  # fresh arrays the caller owns
        x, y, z = header.grid_shape
        if (x, y, z) == bufs.density.shape:
            return GridFrame(bufs.density, bufs.features)
        return GridFrame(
            np.ascontiguousarray(bufs.density[:x, :y, :z]), np.ascontiguousarray(bufs.features[:, :x, :y, :z])
        )
    return bufs.view()


def reconstruct_intra(
    header: SequenceHeader,
    channels: tuple[ChannelParams, ...],
    mask: np.ndarray,
    levels: np.ndarray,
    out: FrameBuffers | None = None,
) -> GridFrame:
    """Dense grids from decoded symbols; exact integer arithmetic, shared by encoder and decoder.

    With ``out`` the result is written into (and views) those buffers; otherwise the
    returned arrays are fresh and C-contiguous.
    """
    n = levels.shape[1]
    steps = gof_steps(header.qmatrix, channels)

    def produce(sl: slice) -> np.ndarray:
        k = sl.stop - sl.start
        coeffs = dequantize(levels[sl], steps[sl]).reshape(k * n, BLOCK, BLOCK, BLOCK)
        return inverse_dct_exact(coeffs).reshape(k, n, BLOCK, BLOCK, BLOCK)

    compiled = None
    if native.enabled():
        blocks = np.ascontiguousarray(np.stack(block_coords(mask), axis=1), dtype=np.int64)

        def compiled(c: int, plane: np.ndarray) -> None:
            native.reconstruct_channel(
                plane, None, header.grid_shape, channels[c].exponent, blocks, None, None, levels[c], steps[c]
            )

    return write_blocks(header, channels, mask, produce, out, compiled)


def encode_intra(
    frame: GridFrame,
    header: SequenceHeader,
    channels: tuple[ChannelParams, ...],
    deadzone: DeadZone,
    out: FrameBuffers | None = None,
    mask: np.ndarray | None = None,
) -> tuple[FrameRecord, GridFrame, IntraStats]:
    """Code one keyframe; returns the record, the decoder's reconstruction (in ``out``
    when given) and stats. ``mask`` is the frame's occupancy if the caller already has it."""
    if mask is None:
        mask = occupancy_mask(frame.density, header.occupancy_threshold)
    mask_enc = SymbolEncoder()
    encode_mask(mask, mask_enc)
    scales = channel_scales(channels)
    blocks = gather_blocks(frame, mask, scales)
    c_total, n, _ = blocks.shape
    coeffs = forward_dct(blocks.reshape(c_total * n, BLOCK, BLOCK, BLOCK)).reshape(c_total, n, BLOCK**3)
    steps = gof_steps(header.qmatrix, channels)
    levels = quantize(coeffs, steps, deadzone)
    if deadzone.rdoq_lambda > 0:
        levels = rdoq(coeffs, steps, levels, deadzone.rdoq_lambda, header.coeff_mode)
    coded = encode_levels(levels, mode=header.coeff_mode)
    record = FrameRecord(
        frame_type=FRAME_INTRA,
        mask=mask_enc.finish(),
        motion=b"",
        side_info=encode_side_info(coded.side_info),
        coeff_words=coded.words,
        mantissa=coded.mantissa,
    )
    recon = reconstruct_intra(header, channels, mask, levels, out)
    return record, recon, IntraStats(int(n), coded.ideal_bits, coded.tables)


def parse_intra(record: FrameRecord, header: SequenceHeader) -> tuple[np.ndarray, np.ndarray, tuple[Table, ...]]:
    """Entropy-decode an intra record -> (block mask, levels ``(C_total, N, 512)``, coefficient
    tables in effect)."""
    from rerf_codec.bitstream import decode_side_info

    if record.motion:
        raise RerfFormatError("intra frame carries a motion section")
    mask = decode_mask(block_grid_shape(header.grid_shape), SymbolDecoder(record.mask))
    n = int(mask.sum())
    levels, tables = decode_levels_tables(
        decode_side_info(record.side_info), record.coeff_words, record.mantissa, header.num_channels, n,
        header.coeff_mode,
    )
    return mask, levels, tables
