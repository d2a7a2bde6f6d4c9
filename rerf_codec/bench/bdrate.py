"""Bjøntegaard delta rate (BD-rate) with piecewise-cubic interpolation.

G. Bjøntegaard, "Calculation of average PSNR differences between RD-curves", VCEG-M33
(2001), with the piecewise cubic (PCHIP) interpolation of the later revision
(VCEG-AL22 / JVET-K0491 and CompressAI's ``compute_bd``): each curve's ``log10(rate)``
is interpolated as a monotone piecewise-cubic function of PSNR, both are integrated
over the PSNR interval the two curves share, and the mean log-rate difference becomes
a percentage: ``(10 ** mean_diff − 1) × 100``. Negative = fewer bytes than the anchor
at equal quality. Why PCHIP and not the original cubic polynomial fit: the polynomial
overshoots between points of uneven spacing; PCHIP stays monotone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.interpolate import PchipInterpolator

__all__ = ["bd_rate", "clean_curve"]


def clean_curve(rates: Sequence[float], psnrs: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Finite points with rate > 0, sorted by PSNR, equal PSNRs merged (geometric-mean rate).

    Returns ``(psnr, log10 rate)``.
    """
    pts: dict[float, list[float]] = {}
    for r, p in zip(rates, psnrs, strict=True):
        if r is None or p is None:
            continue
        r, p = float(r), float(p)
        if r > 0 and math.isfinite(r) and math.isfinite(p):
            pts.setdefault(p, []).append(math.log10(r))
    xs = sorted(pts)
    return np.array(xs, dtype=np.float64), np.array([float(np.mean(pts[x])) for x in xs], dtype=np.float64)


def bd_rate(
    anchor_rates: Sequence[float], anchor_psnr: Sequence[float], test_rates: Sequence[float], test_psnr: Sequence[float]
) -> float | None:
    """BD-rate of the test curve against the anchor, in percent (None without a PSNR overlap).

    Each curve needs at least 2 distinct finite points; the result is computed over
    ``[max(min psnr), min(max psnr)]`` of the two curves (never extrapolated).
    """
    pa, ra = clean_curve(anchor_rates, anchor_psnr)
    pt, rt = clean_curve(test_rates, test_psnr)
    if pa.size < 2 or pt.size < 2:
        return None
    lo = max(pa[0], pt[0])
    hi = min(pa[-1], pt[-1])
    if not hi > lo:
        return None
    fa = PchipInterpolator(pa, ra)
    ft = PchipInterpolator(pt, rt)
    diff = (ft.integrate(lo, hi) - fa.integrate(lo, hi)) / (hi - lo)
    return float((10.0 ** diff - 1.0) * 100.0)
