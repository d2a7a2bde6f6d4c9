"""Transform and quantiser: orthonormal forward DCT, integer inverse accuracy, dead zone, step tables."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rerf_codec.codec import quant, transform
from rerf_codec.codec.quant import DeadZone
from rerf_codec.errors import RerfFormatError, RerfUsageError

# --------------------------------------------------------------------------- forward DCT


def test_dct_matrix_orthonormal():
    c = transform.dct_matrix()
    assert c.shape == (8, 8)
    assert np.allclose(c @ c.T, np.eye(8), atol=1e-14)
    assert np.allclose(c[0], np.sqrt(1 / 8))


def test_forward_dct_is_the_separable_orthonormal_dct_and_keeps_energy():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 100, (20, 8, 8, 8))
    y = transform.forward_dct(x)
    assert y.shape == x.shape and y.dtype == np.float64
    c = transform.dct_matrix()
    ref = np.einsum("au,bv,cw,nuvw->nabc", c, c, c, x)
    assert np.allclose(y, ref, rtol=0, atol=1e-9)
    # Parseval, per block
    assert np.allclose((y**2).sum(axis=(1, 2, 3)), (x**2).sum(axis=(1, 2, 3)), rtol=1e-12)
    # DC is the scaled block mean
    assert np.allclose(y[:, 0, 0, 0], x.mean(axis=(1, 2, 3)) * np.sqrt(512))
    # float32 input is promoted
    assert transform.forward_dct(x.astype(np.float32)).dtype == np.float64


def _round_trip(x: np.ndarray) -> np.ndarray:
    return transform.inverse_dct_exact(np.round(transform.forward_dct(x)))


@pytest.mark.parametrize("magnitude", [1, 2**4, 2**8, 2**10])
def test_integer_inverse_round_trip_within_two_units(magnitude):
    """inverse_dct_exact(round(forward_dct(x))) == x within 2 lattice units at small magnitudes."""
    rng = np.random.default_rng(magnitude)
    x = np.round(rng.uniform(-magnitude, magnitude, (300, 8, 8, 8)))
    x[0] = magnitude  # constant block: DC only
    x[1] = np.where(np.indices((8, 8, 8)).sum(axis=0) % 2, magnitude, -magnitude)  # highest frequency
    assert np.abs(_round_trip(x) - x).max() <= 2


@pytest.mark.parametrize("magnitude", [2**12, 2**16, 2**19, 2**23])
def test_integer_inverse_round_trip_error_is_bounded_by_the_matrix_mismatch(magnitude):
    """At large magnitudes T = round(C·2**12) is not exactly orthonormal: the error grows with |x|.

    Bound per block: ``κ (||x||₂ + ½√512) + √512`` with ``κ = (1 + ||T/2**12 - C||₂)**3 - 1``
    (about 8.2e-4), plus the coefficient rounding (½ per coefficient) and the shifts (< 1 per voxel).
    """
    rng = np.random.default_rng(magnitude)
    x = np.round(rng.uniform(-magnitude, magnitude, (300, 8, 8, 8)))
    x[0] = magnitude
    x[1] = np.where(np.indices((8, 8, 8)).sum(axis=0) % 2, magnitude, -magnitude)
    d = transform.INT_DCT / 2.0**transform.TRANSFORM_BITS - transform.dct_matrix()
    kappa = (1 + np.linalg.norm(d, 2)) ** 3 - 1
    assert kappa < 1e-3
    err = np.sqrt(((_round_trip(x) - x) ** 2).sum(axis=(1, 2, 3)))
    norm = np.sqrt((x**2).sum(axis=(1, 2, 3)))
    half = 0.5 * np.sqrt(512)
    assert (err <= kappa * (norm + half) + half + np.sqrt(512)).all()


def test_integer_inverse_gain_error_at_encoder_lattice_magnitude():
    """transform.py documents the integer inverse's accuracy ceiling: ~5e-4 of the magnitude."""
    rng = np.random.default_rng(7)
    x = np.concatenate([np.full((1, 8, 8, 8), float(2**19)), np.round(rng.normal(0, 2**19, (64, 8, 8, 8)))])
    assert np.abs(_round_trip(x) - x).max() <= 6e-4 * 2**19


def test_inverse_output_range_and_dtype():
    y = np.zeros((3, 8, 8, 8))
    y[0, 0, 0, 0] = transform.MAX_COEFF
    y[1, 0, 0, 0] = -transform.MAX_COEFF
    out = transform.inverse_dct_exact(y)
    assert out.dtype == np.float64 and out.shape == y.shape
    assert out[0].min() == transform.MAX_SAMPLE and out[1].max() == -transform.MAX_SAMPLE  # clamped, not wrapped
    assert (out[2] == 0).all()
    assert (out == np.round(out)).all()


# --------------------------------------------------------------------------- quantiser


def test_quantize_dead_zone():
    steps = np.full((1, 512), 10, dtype=np.int64)
    dz = DeadZone(ac=0.3, dc=0.5)
    y = np.zeros((1, 8, 512))
    ac = [6.9, 7.0, -6.99, -7.0, 16.9, 17.0, 0.0, -0.0]
    dc = [4.99, 5.0, -4.99, -5.0, 14.99, 15.0, 0.0, 1e9 / 2**10]
    y[0, :, 1] = ac
    y[0, :, 0] = dc
    lv = quant.quantize(y, steps, dz)
    assert lv.dtype == np.int64
    assert lv[0, :, 1].tolist() == [0, 1, 0, -1, 1, 2, 0, 0]
    assert lv[0, :, 0].tolist() == [0, 1, 0, -1, 1, 2, 0, int(np.floor(1e9 / 2**10 / 10 + 0.5))]
    # odd symmetry and zeros elsewhere
    assert np.array_equal(quant.quantize(-y, steps, dz), -lv)
    assert (lv[0, :, 2:] == 0).all()


@pytest.mark.parametrize(("ac", "dc"), [(0.5, 0.5), (0.3, 0.5), (0.1, 0.2)])
def test_quantize_error_bound(ac, dc):
    rng = np.random.default_rng(1)
    steps = rng.integers(1, 500, (3, 512))
    y = rng.laplace(0, 300, (3, 50, 512))
    lv = quant.quantize(y, steps, DeadZone(ac=ac, dc=dc))
    err = np.abs(y - quant.dequantize(lv, steps))
    r = np.full(512, 1 - ac)
    r[0] = 1 - dc
    assert (err <= (r * steps)[:, None, :] + 1e-9).all()
    # the dead zone only ever rounds towards zero relative to plain rounding
    plain = quant.quantize(y, steps, DeadZone(0.5, 0.5))
    assert (np.abs(lv) <= np.abs(plain)).all()


def test_quantize_refuses_out_of_range_levels():
    steps = np.ones((1, 512), dtype=np.int64)
    y = np.zeros((1, 1, 512))
    y[0, 0, 5] = transform.MAX_COEFF + 10
    with pytest.raises(RerfUsageError):
        quant.quantize(y, steps, DeadZone())
    y[0, 0, 5] = transform.MAX_COEFF
    assert quant.quantize(y, steps, DeadZone())[0, 0, 5] == transform.MAX_COEFF


def test_dequantize_range_check():
    steps = np.full((1, 512), 2**10, dtype=np.int64)
    lv = np.zeros((1, 2, 512), dtype=np.int64)
    lv[0, 1, 7] = -(2**19)
    y = quant.dequantize(lv, steps)
    assert y.dtype == np.float64 and y[0, 1, 7] == -transform.MAX_COEFF
    lv[0, 1, 7] = 2**19 + 1
    with pytest.raises(RerfFormatError):
        quant.dequantize(lv, steps)


def test_qstep_table_integer_formula():
    rng = np.random.default_rng(2)
    qmatrix = rng.integers(1, 65536, (2, 512)).astype(np.uint16)
    qmatrix[:, 0] = [1, 65535]
    qscale = np.array([1, 2, 15, 16, 17, 1000, 2**14 - 1])
    steps = quant.qstep_table(qmatrix, qscale)
    assert steps.shape == (qscale.size, 512) and steps.dtype == np.int64
    for c, qs in enumerate(qscale.tolist()):
        group = 0 if c == 0 else 1
        for f in range(0, 512, 7):
            assert steps[c, f] == max(1, (int(qmatrix[group, f]) * qs + 8) >> 4)
    # exact at the extremes: 2**31 - 1 with the smallest matrix entry stays below the limit
    big = quant.qstep_table(np.ones((2, 512), np.uint16), np.array([2**31 - 1]))
    assert big[0, 0] == (2**31 - 1 + 8) >> 4
    with pytest.raises(RerfFormatError):
        quant.qstep_table(np.full((2, 512), 65535, np.uint16), np.array([2**31 - 1]))


def test_quality_to_step_monotone():
    steps = [quant.quality_to_step(q) for q in range(1, 101)]
    assert all(a > b for a, b in itertools.pairwise(steps))
    assert all(s > 0 for s in steps)
    assert quant.quality_to_step(40) == pytest.approx(2 * quant.quality_to_step(50))  # halves every 10 points
    for bad in (0, 101, -5):
        with pytest.raises(RerfUsageError):
            quant.quality_to_step(bad)


def test_default_qmatrix():
    flat = quant.default_qmatrix(0.0)
    assert flat.shape == (512,) and flat.dtype == np.uint16
    assert (flat == quant.QMATRIX_UNIT).all()
    sloped = quant.default_qmatrix(0.25)
    f = quant.frequency_index().sum(axis=1)
    assert sloped[0] == 16 and sloped[np.argmax(f)] == round(16 * (1 + 0.25 * 21))
    assert (np.diff(sloped[np.argsort(f, kind="stable")].astype(int)) >= 0).all()  # coarser with frequency
