"""8³ block transform: float forward DCT (encoder) and exact integer inverse (decoder).

Why integer: the decoder must give the same bits on every machine, BLAS and thread
count (DESIGN.md decision 1). The inverse DCT therefore uses an integer matrix
``T = round(C * 2**B)`` (``C`` the orthonormal 8-point DCT-II) applied separably along
the three axes, with a defined rounding right-shift after every pass. Each pass is
computed as a float64 matrix product on integer-valued data; that is exact in any
summation order because every product and partial sum stays below 2**53:

* dequantised coefficients are capped at ``|Y| <= 2**29`` (checked before the transform),
* ``|T| <= 8035 < 2**13`` and each output sums 8 products, so pass 1 sums stay below
  ``2**3 * 2**29 * 2**13 = 2**45``; after a shift of ``B - G = 11`` bits ``|R1| <= 2**34``,
* pass 2 sums stay below ``2**50``, shift ``B = 14`` leaves ``|R2| <= 2**36``,
* pass 3 sums stay below ``2**52``, shift ``B + G = 17`` gives the output.

``T / 2**B`` is orthonormal to within 1.3e-4 per entry, so the integer inverse is not
the exact real inverse: on random blocks at the encoder's largest lattice magnitude
(2**19) it is off by up to ~5e-4 of that magnitude (a fidelity ceiling near 66 dB; at
``B = 12`` it was ~8e-4). Quantisation error dominates at every quality setting. The
guard bits ``G`` keep 3 extra bits between passes.
Rounding is ``floor((z + 2**(s-1)) / 2**s)``; with power-of-two divisors and values
below 2**53 every step is an exact IEEE operation.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as _fft

from rerf_codec.codec.threads import chunks, parallel_map

BLOCK = 8
"""Edge of a transform block (voxels)."""
BLOCK_VOLUME = BLOCK**3
TRANSFORM_BITS = 14
"""B: fractional bits of the integer DCT matrix."""
GUARD_BITS = 3
"""G: extra precision kept between the three inverse passes."""
MAX_COEFF = 2**29
"""Largest |dequantised coefficient| (lattice units) the inverse accepts."""
MAX_SAMPLE = 2**24 - 1
"""Reconstructed lattice values are clamped to ±MAX_SAMPLE so they are exact in float32."""

_SHIFTS = (TRANSFORM_BITS - GUARD_BITS, TRANSFORM_BITS, TRANSFORM_BITS + GUARD_BITS)


def dct_matrix() -> np.ndarray:
    """Orthonormal 8-point DCT-II matrix ``C[k, n]`` (float64)."""
    k = np.arange(BLOCK)[:, None]
    n = np.arange(BLOCK)[None, :]
    c: np.ndarray = np.cos(np.pi * (2 * n + 1) * k / (2 * BLOCK)) * np.sqrt(2.0 / BLOCK)
    c[0, :] = np.sqrt(1.0 / BLOCK)
    return c


def integer_dct_matrix() -> np.ndarray:
    """``T = round(C * 2**B)`` as float64 holding integers (the values are fixed by FORMAT.md).

    Computed from ``cos`` once, but the result is pinned by a test against the
    integer table in FORMAT.md, so a libm difference cannot change it silently.
    """
    return np.round(dct_matrix() * 2.0**TRANSFORM_BITS)


INT_DCT = integer_dct_matrix()


def forward_dct(blocks: np.ndarray) -> np.ndarray:
    """Orthonormal 3D DCT-II of ``(..., 8, 8, 8)`` blocks, float64 (encoder only)."""
    return _fft.dctn(np.asarray(blocks, dtype=np.float64), type=2, norm="ortho", axes=(-3, -2, -1))


# The right shifts are folded into the matrices: T * 2**-s is exact (a power-of-two
# scale), every partial sum is an integer multiple of 2**-s below 2**(53-s), hence exact,
# and floor(z * 2**-s + 1/2) == floor((z + 2**(s-1)) / 2**s).
_PASS_W = INT_DCT * 2.0 ** -_SHIFTS[0]
_PASS_V = np.ascontiguousarray(INT_DCT.T * 2.0 ** -_SHIFTS[1])
_PASS_U = np.ascontiguousarray(INT_DCT.T * 2.0 ** -_SHIFTS[2])


def inverse_dct_exact(coeffs: np.ndarray) -> np.ndarray:
    """Exact integer inverse 3D DCT of ``(N, 8, 8, 8)`` integer coefficients (threaded by rows).

    See :func:`_inverse_dct_rows`; the row chunks are independent, so the result is the
    same for any thread count.
    """
    n = coeffs.shape[0]
    if n < 512:
        return _inverse_dct_rows(coeffs)
    out = np.empty((n, BLOCK, BLOCK, BLOCK), dtype=np.float64)

    def run(sl: slice) -> None:
        out[sl] = _inverse_dct_rows(coeffs[sl])

    parallel_map(run, chunks(n))
    return out


def _inverse_dct_rows(coeffs: np.ndarray) -> np.ndarray:
    """Exact integer inverse 3D DCT of ``(N, 8, 8, 8)`` integer coefficients.

    Passes run along w, then v, then u (FORMAT.md "Inverse transform"), each
    ``x -> floor((T^T x + 2**(s-1)) / 2**s)`` with s = 11, 14, 17.

    Args:
        coeffs: integer-valued array (any int or float dtype) with ``|value| <= MAX_COEFF``;
            the caller checks the bound (it is a stream error, not a programming error).

    Returns:
        float64 array ``(N, 8, 8, 8)`` of integers in ``[-MAX_SAMPLE, MAX_SAMPLE]``.
    """
    n = coeffs.shape[0]
    a = np.asarray(coeffs, dtype=np.float64).reshape(-1, BLOCK) @ _PASS_W  # along w
    a += 0.5
    np.floor(a, out=a)
    b = np.matmul(_PASS_V, a.reshape(n, BLOCK, BLOCK, BLOCK))  # along v: sum_v T[v, j] a[n, u, v, w]
    del a
    b += 0.5
    np.floor(b, out=b)
    c: np.ndarray = np.matmul(_PASS_U, b.reshape(n, BLOCK, BLOCK * BLOCK))  # along u
    del b
    c += 0.5
    np.floor(c, out=c)
    c = c.reshape(n, BLOCK, BLOCK, BLOCK)
    np.clip(c, -MAX_SAMPLE, MAX_SAMPLE, out=c)
    return c
