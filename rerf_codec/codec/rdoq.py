"""Rate–distortion-optimised quantisation (encoder only; the stream syntax is unchanged).

Dead-zone rounding (``quant.quantize``) decides every level from its own value. RDOQ
decides with the coder's rates: for each coefficient it keeps the nearest level ``L``
or ``L - 1`` (toward zero), whichever minimises

    J = (|y| / step - level)**2 + lam * bits(level)

(distortion in step² units: the transform is orthonormal, so coefficient-domain squared
error is the voxel-domain one), then per (channel, block) it truncates trailing bands
when the bits they cost (their symbols and the last-band symbol) are worth more than
the distortion of dropping them. ``bits`` comes from the per-(group, band) histograms
of the levels being coded (one refinement pass), the same tables the entropy coder
builds, so the model tracks each band's real statistics: high-frequency bands where a
±1 is rare get zeroed more eagerly than a fixed dead zone would.

High-rate theory for a uniform quantiser with entropy coding gives
``dD/dR = -2 ln2 · step²/12``, i.e. ``lam ≈ 0.12`` in these units; the default is
chosen by the rate–distortion bench (BENCHMARKS.md tuning log). The DC coefficient
keeps its dead-zone rounding (it carries the block mean, where a bias shows).
"""

from __future__ import annotations

import numpy as np

from rerf_codec.codec.coefficients import (
    BAND_ORDER,
    BAND_STARTS,
    MODE_BANDS,
    N_BANDS,
    band_context,
    channel_groups,
    last_bands,
    n_contexts,
)
from rerf_codec.codec.entropy import DIRECT, MAX_CLASS, levels_to_classes

_UNSEEN_EXTRA_BITS = 4.0
"""An unseen class costs this many bits more than a class seen once (it widens the table)."""
_BAND_OF_SORTED = np.repeat(np.arange(N_BANDS), np.diff(BAND_STARTS))
"""Band of each position of ``BAND_ORDER``."""


def _class_bits(classes: np.ndarray) -> np.ndarray:
    """``(2*MAX_CLASS+1,)`` estimated bits per class (index ``class + MAX_CLASS``) of one table."""
    n = classes.size
    hist = np.bincount(classes.ravel().astype(np.int64) + MAX_CLASS, minlength=2 * MAX_CLASS + 1).astype(np.float64)
    if n == 0:
        return np.zeros(hist.size)
    with np.errstate(divide="ignore"):
        bits = -np.log2(hist / n)
    return np.where(hist > 0, bits, np.log2(n) + _UNSEEN_EXTRA_BITS)


def _contexts(signed_sorted: np.ndarray, k_ctx: int) -> np.ndarray:
    """``(512, Cg, N)``: the coding context of every band-sorted level (all 0 in mode 0)."""
    if k_ctx == 1:
        return np.zeros(signed_sorted.shape, dtype=np.int64)
    nz = np.add.reduceat((signed_sorted != 0).astype(np.int64), BAND_STARTS[:-1], axis=0)  # (22, Cg, N)
    per_band = np.stack([band_context(nz[b - 1] if b else nz[0], b) for b in range(N_BANDS)])
    return per_band[_BAND_OF_SORTED]


def _classes(levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``levels_to_classes`` (classes as int64, mantissa bit counts), fast for mostly small levels."""
    classes = levels.astype(np.int64)
    nbits = np.zeros(levels.shape, dtype=np.int64)
    big = (levels >= DIRECT) | (levels <= -DIRECT)
    if big.any():
        c, nb, _ = levels_to_classes(levels[big])
        classes[big] = c
        nbits[big] = nb
    return classes, nbits


def _level_bits(levels: np.ndarray, lut: np.ndarray, ctx: np.ndarray) -> np.ndarray:
    """Bits of each band-sorted ``(512, Cg, N)`` level: its class in its (band, context) row of
    ``lut`` + mantissa bits."""
    classes, nbits = _classes(levels)
    bits: np.ndarray = lut[_BAND_OF_SORTED[:, None, None], ctx, classes + MAX_CLASS] + nbits
    return bits


def rdoq(
    coeffs: np.ndarray, steps: np.ndarray, levels: np.ndarray, lam: float, mode: int = MODE_BANDS, passes: int = 2
) -> np.ndarray:
    """RD-optimise dead-zone ``levels`` of ``(C, N, 512)`` ``coeffs`` with ``(C, 512)`` ``steps``
    for coefficient coding mode ``mode`` (whose tables the rate model mirrors).

    Returns new int64 levels, each either the nearest level or one closer to zero (never
    larger in magnitude than plain rounding, so the format's range checks still hold).
    """
    if lam <= 0 or levels.size == 0:
        return levels
    out = levels.copy()
    for g in channel_groups(levels.shape[0]):
        a = (np.abs(coeffs[g]) / steps[g][:, None, :]).transpose(2, 0, 1)[BAND_ORDER]  # (512, Cg, N) band-sorted
        sign = np.sign(coeffs[g]).transpose(2, 0, 1)[BAND_ORDER]
        cur = np.abs(levels[g]).transpose(2, 0, 1)[BAND_ORDER]
        hi = np.floor(a + 0.5)
        hi[0] = cur[0]  # DC keeps its dead-zone level
        lo = np.maximum(hi - 1, 0)
        lo[0] = cur[0]
        hi_i = hi.astype(np.int64)
        lo_i = lo.astype(np.int64)
        sign_i = np.where(sign < 0, -1, 1).astype(np.int64)
        k_ctx = n_contexts(mode)
        cand = np.nonzero(hi_i != lo_i)  # the only levels with a choice (AC, nearest level >= 1)
        band_c = _BAND_OF_SORTED[cand[0]]
        a_c, s_c = a[cand], sign_i[cand]
        hi_c, lo_c = hi_i[cand], lo_i[cand]
        d_hi, d_lo = (a_c - hi_c) ** 2, (a_c - lo_c) ** 2
        cls_hi, nb_hi = _classes(hi_c * s_c)
        cls_lo, nb_lo = _classes(lo_c * s_c)
        cur = np.where(hi_i == lo_i, hi_i, cur)
        for _ in range(passes):
            lut, ctx = _tables(cur * sign_i, k_ctx)  # (22, K, 85) bits per class of each table
            ctx_c = ctx[cand]
            j_hi = d_hi + lam * (lut[band_c, ctx_c, cls_hi + MAX_CLASS] + nb_hi)
            j_lo = d_lo + lam * (lut[band_c, ctx_c, cls_lo + MAX_CLASS] + nb_lo)
            cur[cand] = np.where(j_lo < j_hi, lo_c, hi_c)
        cur = _truncate_bands(a, cur * sign_i, lam, k_ctx)
        out[g] = cur[np.argsort(BAND_ORDER)].transpose(1, 2, 0)
    return out


def _tables(signed_sorted: np.ndarray, k_ctx: int) -> tuple[np.ndarray, np.ndarray]:
    """``(22, K, 85)`` bits per class of each (band, context) table (as coded: only the
    (channel, block) pairs whose last band reaches the band), and the contexts of the levels."""
    last = last_bands(signed_sorted)
    classes, _ = _classes(signed_sorted)
    ctx = _contexts(signed_sorted, k_ctx)
    width = 2 * MAX_CLASS + 1
    coded = _BAND_OF_SORTED[:, None, None] <= last[None]  # levels the coder codes
    key = (_BAND_OF_SORTED[:, None, None] * k_ctx + ctx) * width + classes + MAX_CLASS
    hist = np.bincount(key[coded], minlength=N_BANDS * k_ctx * width).reshape(N_BANDS, k_ctx, width)
    hist = hist.astype(np.float64)
    n = hist.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        bits = -np.log2(hist / n)
        unseen = np.log2(n) + _UNSEEN_EXTRA_BITS
    rows = np.where(hist > 0, bits, np.where(n > 0, unseen, 0.0))
    return rows, ctx


def _truncate_bands(a: np.ndarray, signed_sorted: np.ndarray, lam: float, k_ctx: int) -> np.ndarray:
    """Per (channel, block), keep bands ``0..t`` with the ``t`` (−1..last) of least
    ``sum of dropped distortion + lam * (bits of kept bands + bits of the last-band symbol)``."""
    last = last_bands(signed_sorted)
    lut, ctx = _tables(signed_sorted, k_ctx)
    bits = _level_bits(signed_sorted, lut, ctx)
    mag = np.abs(signed_sorted)
    dz = a**2 - (a - mag) ** 2  # distortion added by zeroing each level (0 where it is 0)
    band_bits = np.add.reduceat(bits, BAND_STARTS[:-1], axis=0)  # (22, Cg, N)
    band_dz = np.add.reduceat(dz, BAND_STARTS[:-1], axis=0)
    last_bits = _class_bits(last)[np.arange(-1, N_BANDS) + MAX_CLASS]  # (23,) for t = -1..21
    # J(t) = lam * (sum_{b<=t} band_bits + last_bits[t]) + sum_{b>t} band_dz, t = -1..21
    kept_bits = np.concatenate([np.zeros((1, *last.shape)), np.cumsum(band_bits, axis=0)])
    dropped = np.concatenate([np.cumsum(band_dz[::-1], axis=0)[::-1], np.zeros((1, *last.shape))])
    j = lam * (kept_bits + last_bits[:, None, None]) + dropped  # (23, Cg, N)
    t = np.arange(-1, N_BANDS)[:, None, None]
    j = np.where(t <= last[None], j, np.inf)
    best = np.argmin(j, axis=0) - 1  # (Cg, N)
    keep = _BAND_OF_SORTED[:, None, None] <= best[None]
    return np.where(keep, signed_sorted, 0)


def block_bits(levels: np.ndarray, mode: int = MODE_BANDS) -> np.ndarray:
    """Estimated coefficient bits of each block, ``(N,)``, summed over channels: every coded
    level's class in its (band, context) histogram plus mantissa bits, plus the last-band
    symbols, with the histograms of ``levels`` itself (what the tables will be). The
    encoder's block-mode decision compares these between candidate codings."""
    n = levels.shape[1]
    out = np.zeros(n)
    if n == 0:
        return out
    k_ctx = n_contexts(mode)
    for g in channel_groups(levels.shape[0]):
        signed = np.asarray(levels[g]).transpose(2, 0, 1)[BAND_ORDER]  # (512, Cg, N)
        last = last_bands(signed)
        lut, ctx = _tables(signed, k_ctx)
        bits = _level_bits(signed, lut, ctx)
        coded = _BAND_OF_SORTED[:, None, None] <= last[None]
        out += np.where(coded, bits, 0.0).sum(axis=(0, 1))
        out += _class_bits(last)[last + MAX_CLASS].sum(axis=0)
    return out
