"""PSNR/SSIM/grid-PSNR definitions shared by the rate–distortion bench and the player."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rerf_codec.metrics import SSIM_K1, SSIM_K2, gaussian_window, grid_psnr, psnr, ssim


def test_psnr():
    a = np.zeros((4, 4, 3))
    assert psnr(a, a) == math.inf
    assert psnr(a, a + 0.1) == pytest.approx(20.0)
    assert psnr(a, a + 2.0, peak=20.0) == pytest.approx(20.0)


def test_ssim_identical_and_constant_images():
    rng = np.random.default_rng(0)
    img = rng.random((32, 40, 3))
    assert ssim(img, img) == pytest.approx(1.0)
    # Constant images x = a, y = b: variances 0, so SSIM = (2ab + C1) / (a² + b² + C1).
    a, b = 0.3, 0.6
    c1 = SSIM_K1**2
    assert ssim(np.full((16, 16), a), np.full((16, 16), b)) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1))
    assert SSIM_K2 == 0.03


def test_ssim_properties():
    rng = np.random.default_rng(1)
    x = rng.random((24, 24))
    y = np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1)
    z = np.clip(x + rng.normal(0, 0.2, x.shape), 0, 1)
    assert ssim(x, y) == pytest.approx(ssim(y, x))
    assert 1.0 > ssim(x, y) > ssim(x, z) > 0.0
    w = gaussian_window()
    assert w.size == 11 and w.sum() == pytest.approx(1.0) and w[5] == w.max()
    with pytest.raises(ValueError):
        ssim(np.zeros((8, 8)), np.zeros((8, 8)))


def test_grid_psnr_over_voxels():
    orig = np.zeros((2, 4, 4, 4))
    orig[0, 0, 0, 0] = 10.0  # peak 10 over the selected voxels
    dec = orig.copy()
    dec[1, 0, 0, 1] = 1.0
    vox = np.zeros((4, 4, 4), dtype=bool)
    vox[0] = True  # 16 voxels × 2 channels, one error of 1
    assert grid_psnr(orig, dec, vox) == pytest.approx(10 * math.log10(100 / (1 / 32)))
    assert grid_psnr(orig, orig, vox) == math.inf
    assert grid_psnr(orig, dec, np.zeros_like(vox)) is None
