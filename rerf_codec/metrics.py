"""Image and grid quality metrics shared by the rate–distortion bench and the player.

Definitions are fixed here once so every figure in BENCHMARKS.md means the same thing:

* :func:`psnr` — ``10 log10(peak² / MSE)`` over all pixels and channels (peak 1 for
  images in [0, 1]); ``inf`` for identical inputs.
* :func:`ssim` — Wang et al. 2004 structural similarity, the standard setting: an 11-tap
  gaussian window with σ = 1.5 (separable, "valid" region only, as the reference
  MATLAB code and ``skimage(gaussian_weights=True, use_sample_covariance=False)``),
  ``K1 = 0.01``, ``K2 = 0.03``, ``L`` = data range (1 for [0, 1] images); the mean SSIM
  map over the valid region, averaged over colour channels. Needs images ≥ 11 px.
* :func:`grid_psnr` — the codec benches' grid-domain PSNR (features or density): over the
  voxels of the *original* frame's occupied 8³ blocks, peak = max − min of the original
  values there (all feature channels together), MSE over those voxels and channels.

numpy/scipy only (no torch), so the decoder-side tools can use them.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import correlate1d

__all__ = ["SSIM_K1", "SSIM_K2", "SSIM_SIGMA", "SSIM_WINDOW", "gaussian_window", "grid_psnr", "psnr", "psnr_from_mse", "ssim"]

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def psnr_from_mse(mse: float, peak: float = 1.0) -> float:
    """``10 log10(peak² / mse)``: ``inf`` for a lossless result, ``-inf`` for a zero peak.

    >>> psnr_from_mse(0.01)
    20.0
    """
    if mse <= 0.0:
        return math.inf
    if peak <= 0.0:
        return -math.inf
    return 10.0 * math.log10(peak * peak / mse)


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
    """PSNR in dB between two same-shape arrays (``inf`` when equal)."""
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    if a64.shape != b64.shape:
        raise ValueError(f"psnr: shapes differ: {a64.shape} vs {b64.shape}")
    return psnr_from_mse(float(np.mean((a64 - b64) ** 2)), peak)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D gaussian taps (the separable SSIM window)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(img: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable correlation over axes 0 and 1, keeping only fully covered pixels."""
    r = len(taps) // 2
    out = correlate1d(img, taps, axis=0, mode="constant")
    out = correlate1d(out, taps, axis=1, mode="constant")
    return out[r : img.shape[0] - r, r : img.shape[1] - r]


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Mean SSIM of two ``(H, W)`` or ``(H, W, C)`` images (gaussian 11-tap, σ 1.5, K1 0.01, K2 0.03)."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"ssim: shapes differ: {x.shape} vs {y.shape}")
    if x.ndim == 2:
        x, y = x[..., None], y[..., None]
    if x.ndim != 3 or min(x.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"ssim: expected (H, W[, C]) images of at least {SSIM_WINDOW} px, got {np.shape(a)}")
    taps = gaussian_window()
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    vals = []
    for c in range(x.shape[2]):
        xc, yc = x[..., c], y[..., c]
        mx, my = _filter_valid(xc, taps), _filter_valid(yc, taps)
        sxx = _filter_valid(xc * xc, taps) - mx * mx
        syy = _filter_valid(yc * yc, taps) - my * my
        sxy = _filter_valid(xc * yc, taps) - mx * my
        num = (2 * mx * my + c1) * (2 * sxy + c2)
        den = (mx * mx + my * my + c1) * (sxx + syy + c2)
        vals.append(float(np.mean(num / den)))
    return float(np.mean(vals))


def grid_psnr(original: np.ndarray, decoded: np.ndarray, voxels: np.ndarray) -> float | None:
    """Grid PSNR over ``voxels`` (bool ``(X, Y, Z)``) of ``(X, Y, Z)`` or ``(C, X, Y, Z)`` grids.

    Peak = max − min of the original there (all channels together); None without voxels.
    """
    o = np.asarray(original)
    d = np.asarray(decoded)
    if o.shape != d.shape:
        raise ValueError(f"grid_psnr: shapes differ: {o.shape} vs {d.shape}")
    if not voxels.any():
        return None
    ov = (o[voxels] if o.ndim == 3 else o[:, voxels]).astype(np.float64)
    dv = (d[voxels] if d.ndim == 3 else d[:, voxels]).astype(np.float64)
    peak = float(ov.max() - ov.min())
    mse = float(np.mean((ov - dv) ** 2))
    if mse == 0.0:
        return math.inf
    if peak <= 0.0:
        return -math.inf
    return 10.0 * math.log10(peak * peak / mse)
