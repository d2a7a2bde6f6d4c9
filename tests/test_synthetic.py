"""The synthetic grid sequences: shapes, determinism, occupancy, motion, on-disk layout."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from rerf_codec.errors import RerfUsageError
from rerf_codec.synthetic import (
    DENSITY_SHIFT,
    OCCUPANCY_THRESHOLD,
    SyntheticSpec,
    synthetic_frames,
    synthetic_meta,
    write_synthetic_sequence,
)

SPEC64 = SyntheticSpec(shape=(64, 64, 64), feature_channels=6, num_frames=2, seed=3)


def _frames(spec: SyntheticSpec, n: int | None = None):
    return list(itertools.islice(synthetic_frames(spec), n if n is not None else spec.num_frames))


def _block_max(density: np.ndarray) -> np.ndarray:
    bs = [-(-n // 8) for n in density.shape]
    pad = np.full([b * 8 for b in bs], -np.inf, dtype=np.float32)
    pad[: density.shape[0], : density.shape[1], : density.shape[2]] = density
    return pad.reshape(bs[0], 8, bs[1], 8, bs[2], 8).max(axis=(1, 3, 5))


@pytest.fixture(scope="module")
def frames64():
    return _frames(SPEC64)


def test_meta():
    spec = SyntheticSpec(shape=(24, 20, 17), feature_channels=5, num_frames=4, seed=7)
    meta = synthetic_meta(spec)
    assert meta["format"] == "rerf-grid-sequence"
    assert meta["version"] == 1
    assert meta["num_frames"] == 4
    assert meta["grid_shape"] == [24, 20, 17]
    assert meta["feature_channels"] == 5
    assert meta["motion_block"] == 8
    assert meta["decoder"] is None
    assert meta["xyz_min"] == [-1, -1, -1] and meta["xyz_max"] == [1, 1, 1]
    assert math.isclose(meta["density_shift"], DENSITY_SHIFT)
    assert math.isclose(DENSITY_SHIFT, -13.8155, abs_tol=1e-4)
    assert meta["synthetic"]["seed"] == 7 and meta["synthetic"]["shape"] == [24, 20, 17]
    json.dumps(meta)  # serialisable as is


@pytest.mark.parametrize(
    ("shape", "channels"), [((24, 20, 17), 1), ((16, 16, 16), 12), ((9, 33, 8), 32), ((1, 8, 5), 3)]
)
def test_shapes_and_dtypes(shape, channels):
    spec = SyntheticSpec(shape=shape, feature_channels=channels, num_frames=2, seed=1)
    out = _frames(spec)
    assert len(out) == 2
    bshape = tuple(-(-n // 8) for n in shape)
    for density, features, motion in out:
        assert density.dtype == features.dtype == motion.dtype == np.float32
        assert density.shape == shape
        assert features.shape == (channels, *shape)
        assert motion.shape == (3, *bshape)
        assert np.isfinite(density).all() and np.isfinite(features).all() and np.isfinite(motion).all()
    assert not out[0][2].any()  # frame 0 has no motion


def test_lazy_and_frame_count():
    spec = SyntheticSpec(shape=(16, 16, 16), feature_channels=2, num_frames=3)
    gen = synthetic_frames(spec)
    assert iter(gen) is gen
    assert sum(1 for _ in gen) == 3


def test_deterministic():
    spec = SyntheticSpec(shape=(24, 20, 17), feature_channels=4, num_frames=3, seed=5)
    a, b = _frames(spec), _frames(spec)
    for fa, fb in zip(a, b, strict=True):
        for xa, xb in zip(fa, fb, strict=True):
            assert np.array_equal(xa, xb)
    other = _frames(SyntheticSpec(shape=(24, 20, 17), feature_channels=4, num_frames=1, seed=6))
    assert not np.array_equal(a[0][0], other[0][0])


def test_occupancy_and_value_ranges(frames64):
    density, features, _ = frames64[0]
    bmax = _block_max(density)
    occupied = bmax > OCCUPANCY_THRESHOLD
    frac = occupied.mean()
    assert abs(frac - SPEC64.occupancy) <= 0.3 * SPEC64.occupancy, frac
    # Shells are well above the threshold, empty space well below.
    assert density.max() > 30.0
    assert np.median(bmax[occupied]) > 10.0
    # Blocks not touching an occupied block are untouched space: density ~0, features ~0.
    near = occupied.copy()
    for axis in range(3):
        for shift in (-1, 1):
            near |= np.roll(occupied, shift, axis=axis)  # wrap-around only widens it
    far = _voxels(~near)
    assert far.mean() > 0.3
    assert np.abs(density[far]).max() <= 0.5
    assert np.abs(features[:, far]).max() < 0.05
    assert np.abs(density[far]).std() > 0  # with a little noise
    # Feature channels span different ranges, roughly within [-3, 3] plus noise.
    span = np.abs(features).reshape(features.shape[0], -1).max(axis=1)
    assert span.max() < 5.0 and span.min() > 0.2
    assert span.max() / span.min() > 2.0


def test_other_occupancy():
    spec = SyntheticSpec(shape=(64, 64, 64), feature_channels=1, num_frames=1, occupancy=0.25, seed=11)
    ((density, _, _),) = _frames(spec)
    frac = (_block_max(density) > OCCUPANCY_THRESHOLD).mean()
    assert abs(frac - 0.25) <= 0.3 * 0.25, frac


def _voxels(blocks: np.ndarray) -> np.ndarray:
    """Voxel mask (multiple-of-8 grids only) of a block mask."""
    return np.repeat(np.repeat(np.repeat(blocks, 8, 0), 8, 1), 8, 2)


def _warp(prev: np.ndarray, motion: np.ndarray) -> np.ndarray:
    """``out[p] = prev[p + round(motion[block(p)])]`` (clamped at the borders)."""
    x, y, z = prev.shape
    idx = np.indices(prev.shape)
    blk = idx // 8
    src = []
    for a, n in enumerate((x, y, z)):
        shift = np.rint(motion[a][blk[0], blk[1], blk[2]]).astype(np.int64)
        src.append(np.clip(idx[a] + shift, 0, n - 1))
    return prev[src[0], src[1], src[2]]


def test_motion_moves_content(frames64):
    (d0, f0, m0), (d1, f1, m1) = frames64
    assert not m0.any()
    occupied = _block_max(d1) > OCCUPANCY_THRESHOLD
    speed = np.linalg.norm(m1, axis=0)
    assert not m1[:, ~occupied].any()  # zero for empty blocks
    assert 0.5 < speed.max() <= SPEC64.motion * 1.05
    assert not np.array_equal(d0, d1)
    # Blocks that move by at least half a voxel along some axis: the integer-rounded
    # block shift explains much of the change, the opposite shift makes it worse.
    moving = occupied & np.rint(m1).any(axis=0)
    assert moving.sum() >= 10
    mask = _voxels(moving)
    err_still = np.abs(d1 - d0)[mask].mean()
    assert np.abs(d1 - _warp(d0, m1))[mask].mean() < 0.75 * err_still
    assert np.abs(d1 - _warp(d0, -m1))[mask].mean() > 1.2 * err_still
    ferr_still = np.abs(f1 - f0)[:, mask].mean()
    assert np.abs(f1 - np.stack([_warp(f, m1) for f in f0]))[:, mask].mean() < 0.9 * ferr_still


def test_motion_subvoxel():
    """Sub-voxel warping by the block motion explains most of the change of the shells."""
    spec = SyntheticSpec(shape=(64, 64, 64), feature_channels=1, num_frames=2, seed=0, noise=0.0)
    (d0, _, _), (d1, _, m1) = _frames(spec)
    occupied = _block_max(d1) > OCCUPANCY_THRESHOLD
    mask = _voxels(occupied)
    idx = np.indices(d0.shape)
    blk = idx // 8
    coords = [idx[a] + m1[a][blk[0], blk[1], blk[2]] for a in range(3)]
    pred = map_coordinates(d0, coords, order=3, mode="nearest")
    assert np.abs(d1 - pred)[mask].mean() < 0.45 * np.abs(d1 - d0)[mask].mean()


def test_static_sequence_differs_only_by_noise():
    spec = SyntheticSpec(shape=(32, 32, 32), feature_channels=3, num_frames=2, motion=0.0, seed=2)
    (d0, f0, _), (d1, f1, m1) = _frames(spec)
    assert not m1.any()
    assert not np.array_equal(d0, d1)  # noise is drawn per frame
    occ = d0 > OCCUPANCY_THRESHOLD
    rel = np.abs(d1 - d0)[occ] / d0[occ]
    assert np.median(rel) < 0.1
    assert np.corrcoef(f0[0][occ], f1[0][occ])[0, 1] > 0.9


def test_write_sequence(tmp_path):
    spec = SyntheticSpec(shape=(12, 10, 9), feature_channels=2, num_frames=2, seed=4)
    out = tmp_path / "seq"
    write_synthetic_sequence(out, spec)
    meta = json.loads((out / "sequence.json").read_text())
    assert meta == json.loads(json.dumps(synthetic_meta(spec)))
    assert sorted(p.name for p in (out / "frames").iterdir()) == ["000000.npz", "000001.npz"]
    for t, (density, features, _) in enumerate(synthetic_frames(spec)):
        with np.load(out / "frames" / f"{t:06d}.npz") as z:
            assert z["density"].dtype == np.float32 and z["features"].dtype == np.float32
            assert np.array_equal(z["density"], density)
            assert np.array_equal(z["features"], features)
    with pytest.raises(RerfUsageError):
        write_synthetic_sequence(out, spec)
    spec2 = SyntheticSpec(shape=(12, 10, 9), feature_channels=2, num_frames=1, seed=4)
    write_synthetic_sequence(out, spec2, force=True)
    assert json.loads((out / "sequence.json").read_text())["num_frames"] == 1
    assert [p.name for p in (out / "frames").iterdir()] == ["000000.npz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seq"]  # no temp dirs left


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shape": (0, 8, 8)},
        {"shape": (8, 8)},
        {"feature_channels": 0},
        {"num_frames": 0},
        {"occupancy": 0.0},
        {"occupancy": 1.5},
        {"noise": -0.1},
        {"motion": float("nan")},
    ],
)
def test_invalid_spec(kwargs):
    with pytest.raises(RerfUsageError):
        synthetic_meta(SyntheticSpec(**kwargs))
