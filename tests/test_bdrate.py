"""BD-rate (Bjøntegaard, PCHIP) against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from rerf_codec.bench.bdrate import bd_rate, clean_curve

RATES = [1000.0, 2000.0, 4000.0, 8000.0]
PSNR = [30.0, 33.0, 36.0, 39.0]


def test_identical_curves_are_zero():
    assert bd_rate(RATES, PSNR, RATES, PSNR) == pytest.approx(0.0, abs=1e-12)


def test_half_and_double_rate():
    assert bd_rate(RATES, PSNR, [r / 2 for r in RATES], PSNR) == pytest.approx(-50.0)
    assert bd_rate(RATES, PSNR, [r * 2 for r in RATES], PSNR) == pytest.approx(100.0)


def test_psnr_shift_on_a_log_linear_curve():
    # log10(rate) = a + psnr / 10 (rate doubles every 3.01 dB); a curve 1 dB better at every
    # rate needs 10**(-0.1) of the rate at equal PSNR: -20.57 %.
    psnr = [30.0, 32.0, 34.0, 36.0, 38.0]
    rates = [10 ** (p / 10) for p in psnr]
    better = [p + 1.0 for p in psnr]
    assert bd_rate(rates, psnr, rates, better) == pytest.approx((10 ** -0.1 - 1) * 100, rel=1e-9)


def test_only_the_overlap_counts_and_order_does_not_matter():
    # The test curve covers 27..45 dB, the anchor 33..39 dB; only 33..39 is compared, where the
    # test curve is half the anchor (given unsorted).
    test_psnr = [45.0, 33.0, 36.0, 39.0, 42.0, 30.0, 27.0]
    test_rates = [16000.0, 1000.0, 2000.0, 4000.0, 8000.0, 500.0, 250.0]
    anchor = [2000.0, 4000.0, 8000.0]
    assert bd_rate(anchor, [33.0, 36.0, 39.0], test_rates, test_psnr) == pytest.approx(-50.0)


def test_no_overlap_or_too_few_points_is_none():
    assert bd_rate(RATES, PSNR, RATES, [p + 20 for p in PSNR]) is None
    assert bd_rate(RATES[:1], PSNR[:1], RATES, PSNR) is None
    assert bd_rate(RATES, [math.inf] * 4, RATES, PSNR) is None  # lossless points are not a curve


def test_clean_curve_merges_and_drops():
    p, r = clean_curve([100.0, 400.0, 0.0, 50.0, None], [30.0, 30.0, 31.0, math.nan, 32.0])  # type: ignore[list-item]
    assert p.tolist() == [30.0] and r.tolist() == [pytest.approx(math.log10(200.0))]
