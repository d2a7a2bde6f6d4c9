"""8³ block transform: float forward DCT (encoder) and exact integer inverse (decoder).

Why integer: the decoder must give the same bits on every machine, BLAS and thread
count (DESIGN.md decision 1). The inverse DCT therefore uses an integer matrix
``T = round(C * 2**B)`` (``C`` the orthonormal 8-point DCT-II) applied separably along
the three axes, with a defined rounding right-shift after every pass. Each pass is
computed as a float64 matrix product on integer-valued data; that is exact in any
summation order because every product and partial sum stays below 2**53:

* dequantised coefficients are capped at ``|Y| <= 2**30`` (checked before the transform),
* ``|T| <= 2009 < 2**11`` and each output sums 8 products, so pass 1 sums stay below
  ``2**3 * 2**30 * 2**11 = 2**44``; after a shift of ``B - G = 9`` bits ``|R1| < 2**35 + 1``,
* pass 2 sums stay below ``2**49``, shift ``B = 12`` leaves ``|R2| < 2**37 + 1``,
* pass 3 sums stay below ``2**51``, shift ``B + G = 15`` gives the output.

The guard bits ``G`` keep 3 extra bits of precision between passes so the integer
inverse differs from the exact real inverse by well under one lattice unit.
Rounding is ``floor((z + 2**(s-1)) / 2**s)``; with power-of-two divisors and values
below 2**53 every step is an exact IEEE operation.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as _fft

BLOCK = 8
"""Edge of a transform block (voxels)."""
BLOCK_VOLUME = BLOCK**3
TRANSFORM_BITS = 12
"""B: fractional bits of the integer DCT matrix."""
GUARD_BITS = 3
"""G: extra precision kept between the three inverse passes."""
MAX_COEFF = 2**30
"""Largest |dequantised coefficient| (lattice units) the inverse accepts."""
MAX_SAMPLE = 2**24 - 1
"""Reconstructed lattice values are clamped to ±MAX_SAMPLE so they are exact in float32."""

_SHIFTS = (TRANSFORM_BITS - GUARD_BITS, TRANSFORM_BITS, TRANSFORM_BITS + GUARD_BITS)


def dct_matrix() -> np.ndarray:
    """Orthonormal 8-point DCT-II matrix ``C[k, n]`` (float64)."""
    k = np.arange(BLOCK)[:, None]
    n = np.arange(BLOCK)[None, :]
    c = np.cos(np.pi * (2 * n + 1) * k / (2 * BLOCK)) * np.sqrt(2.0 / BLOCK)
    c[0, :] = np.sqrt(1.0 / BLOCK)
    return c


def integer_dct_matrix() -> np.ndarray:
    """``T = round(C * 2**B)`` as float64 holding integers (the values are fixed by FORMAT.md).

    Computed from ``cos`` once, but the result is pinned by a test against the
    integer table in FORMAT.md, so a libm difference cannot change it silently.
    """
    return np.round(dct_matrix() * 2.0**TRANSFORM_BITS)


INT_DCT = integer_dct_matrix()
INT_DCT_T = np.ascontiguousarray(INT_DCT.T)


def forward_dct(blocks: np.ndarray) -> np.ndarray:
    """Orthonormal 3D DCT-II of ``(..., 8, 8, 8)`` blocks, float64 (encoder only)."""
    return _fft.dctn(np.asarray(blocks, dtype=np.float64), type=2, norm="ortho", axes=(-3, -2, -1))


def _round_shift(z: np.ndarray, shift: int) -> np.ndarray:
    """``floor((z + 2**(shift-1)) / 2**shift)`` on integer-valued float64, in place."""
    z += 2.0 ** (shift - 1)
    z *= 2.0**-shift
    np.floor(z, out=z)
    return z


def inverse_dct_exact(coeffs: np.ndarray) -> np.ndarray:
    """Exact integer inverse 3D DCT of ``(N, 8, 8, 8)`` integer coefficients.

    Args:
        coeffs: integer-valued array (any int or float dtype) with ``|value| <= MAX_COEFF``;
            the caller checks the bound (it is a stream error, not a programming error).

    Returns:
        float64 array ``(N, 8, 8, 8)`` of integers in ``[-MAX_SAMPLE, MAX_SAMPLE]``.
    """
    n = coeffs.shape[0]
    x = np.asarray(coeffs, dtype=np.float64).reshape(n, BLOCK, BLOCK, BLOCK)
    # Pass along w (last axis): x[..., w] -> sum_k T[k, n] * x[..., k]
    for shift in _SHIFTS:
        y = x.reshape(-1, BLOCK) @ INT_DCT  # (M, k) @ (k, n): inverse = C^T applied to coefficient index
        _round_shift(y, shift)
        # rotate axes so the next pass works on the (new) last axis: (N,a,b,c) -> (N,c,a,b)
        x = np.ascontiguousarray(y.reshape(n, BLOCK, BLOCK, BLOCK).transpose(0, 3, 1, 2))
    # After three rotations the axes are back in (u, v, w) -> (x, y, z) order.
    np.clip(x, -MAX_SAMPLE, MAX_SAMPLE, out=x)
    return x
