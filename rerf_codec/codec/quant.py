"""Quantisation: frequency-dependent matrices, quality mapping, dead-zone rounding.

The decoder-side step table is pure integer arithmetic on values carried in the
stream (``qmatrix`` in the sequence header, ``qscale`` per channel in each GOF), so it
is identical everywhere:

    qstep[c, f] = max(1, (qmatrix[group(c)][f] * qscale[c] + 8) >> 4)      (lattice units)

``qmatrix`` entries are in 1/16 units (16 = the base step). The encoder picks
``qscale`` from ``--quality`` and the data's range; that choice uses floats freely.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rerf_codec.bitstream import ChannelParams
from rerf_codec.codec.transform import BLOCK, MAX_COEFF
from rerf_codec.errors import RerfFormatError, RerfUsageError

QMATRIX_UNIT = 16
"""qmatrix entry that means "1× the base step"."""
MAX_QSTEP = 2**30
MAX_QSCALE = 2**31 - 1


def frequency_index() -> np.ndarray:
    """``(512, 3)`` array of (u, v, w) for each flattened frequency (C order)."""
    u, v, w = np.meshgrid(np.arange(BLOCK), np.arange(BLOCK), np.arange(BLOCK), indexing="ij")
    return np.stack([u.ravel(), v.ravel(), w.ravel()], axis=1)


def default_qmatrix(slope: float, exponent: float = 1.0) -> np.ndarray:
    """A smooth 3D JPEG-like matrix: ``16 * (1 + slope * (u + v + w)) ** exponent`` as uint16.

    Higher frequencies get coarser steps, as in JPEG's luminance table and ReRF's 3D
    extension of it; the exact numbers are tuned by the rate–distortion bench.
    """
    f = frequency_index().sum(axis=1).astype(np.float64)
    q: np.ndarray = QMATRIX_UNIT * (1.0 + slope * f) ** exponent
    return np.clip(np.round(q), 1, 65535).astype(np.uint16)


def quality_to_step(quality: int) -> float:
    """Relative base step for ``quality`` 1..100: halves every 10 quality points.

    The absolute step is this times the channel group's value range (over occupied
    voxels), so a quality means the same fidelity for any data scale. Quality 75 (the
    default) is a step of 1/40 of the range: about 43 dB feature PSNR on the synthetic
    benchmark sequence (BENCHMARKS.md).
    """
    if not 1 <= int(quality) <= 100:
        raise RerfUsageError(f"quality must be in 1..100, got {quality}")
    return float(2.0 ** ((75 - int(quality)) / 10.0) / 40.0)


def qstep_table(qmatrix: np.ndarray, qscale: np.ndarray) -> np.ndarray:
    """Integer step per (channel, frequency) ``(n_channels, 512)`` int64 (decoder side).

    Args:
        qmatrix: ``(2, 512)`` matrices of the density and feature groups.
        qscale: per-channel scales, channel 0 is density.
    """
    qm = np.asarray(qmatrix, dtype=np.int64)
    qs = np.asarray(qscale, dtype=np.int64)
    per_channel = np.where(np.arange(qs.size)[:, None] == 0, qm[0][None, :], qm[1][None, :])
    steps: np.ndarray = (per_channel * qs[:, None] + 8) >> 4
    np.maximum(steps, 1, out=steps)
    if steps.max(initial=1) > MAX_QSTEP:
        raise RerfFormatError(f"quantiser step {int(steps.max())} exceeds the limit {MAX_QSTEP}")
    return steps


def gof_steps(qmatrix: np.ndarray, channels: Sequence[ChannelParams]) -> np.ndarray:
    """The quantiser steps of one GOF (:func:`qstep_table` of its channels' scales), computed once.

    Every frame of a GOF (encoder and decoder, intra and residual) uses the same table, so it is
    memoised on the GOF's integers; the result is read-only because it is shared.
    """
    return _gof_steps(np.asarray(qmatrix, dtype=np.int64).tobytes(), tuple(int(ch.qscale) for ch in channels))


@functools.lru_cache(maxsize=16)
def _gof_steps(qmatrix_bytes: bytes, qscales: tuple[int, ...]) -> np.ndarray:
    steps = qstep_table(np.frombuffer(qmatrix_bytes, dtype=np.int64).reshape(2, -1), np.array(qscales, dtype=np.int64))
    steps.flags.writeable = False
    return steps


@dataclass(frozen=True)
class DeadZone:
    """Rounding offsets: ``level = sign(y) * floor(|y| / step + offset)``.

    0.5 is plain rounding; smaller offsets widen the zero bin (fewer, cheaper
    non-zero levels at a small distortion cost). DC gets its own offset because it
    carries the block mean, where a bias is visible.
    """

    ac: float = 0.5
    dc: float = 0.5
    zero_threshold: float = 0.0
    """|y| / step below this quantises to 0 whatever the offset (0 = off). Residual frames use
    it to skip lone ±1 levels, mostly the reference's own quantisation error."""
    rdoq_lambda: float = 0.0
    """Rate–distortion-optimised quantisation after the dead zone (``rdoq.rdoq``) with this
    lambda in step² per bit; 0 = off (dead-zone levels are coded as they are)."""


def quantize(coeffs: np.ndarray, steps: np.ndarray, deadzone: DeadZone) -> np.ndarray:
    """Quantise ``(C, N, 512)`` float coefficients with ``(C, 512)`` steps -> int64 levels.

    Raises RerfUsageError when a level would leave the range the stream can carry
    (never wraps).
    """
    q: np.ndarray = np.abs(coeffs)
    q *= (1.0 / steps)[:, None, :]
    offsets = np.full(coeffs.shape[-1], deadzone.ac)
    offsets[0] = deadzone.dc
    if deadzone.zero_threshold > 0:
        small = q < deadzone.zero_threshold
    q += offsets
    np.floor(q, out=q)
    if deadzone.zero_threshold > 0:
        q[small] = 0.0
    if q.size and float((q.max(axis=1) * steps).max()) > MAX_COEFF:
        raise RerfUsageError(
            "a dequantised coefficient exceeds the format's range; the input values are too "
            "large for the chosen lattice (please report this)"
        )
    np.copysign(q, coeffs, out=q)
    return q.astype(np.int64)


def dequantize(levels: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """``(C, N, 512)`` levels × steps -> float64 integer coefficients, range-checked."""
    y: np.ndarray = np.multiply(levels, steps[:, None, :].astype(np.float64))
    if y.size and float(np.abs(y).max()) > MAX_COEFF:
        raise RerfFormatError("stream carries a coefficient outside the decodable range (corrupt data)")
    return y
