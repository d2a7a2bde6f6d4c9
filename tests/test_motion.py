"""Block motion: exact motion compensation, motion-vector and inter-mask coding, motion search.

Motion compensation is checked against a reference written from ``motion.py``'s docstring
with Python integers only: per axis ``i = floor(mv / 8)``, ``f = mv & 7``, the 4-tap filter
``FILTER_TAPS[f]`` over the samples ``i - 1 .. i + 2`` (coordinates clamped to ``0 .. dim - 1``),
the products summed without intermediate rounding, one rounding ``floor((acc + 2**17) / 2**18)``.
"""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
from conftest import encode_to_bytes

from rerf_codec.bitstream import FRAME_INTRA, GofChunk, StreamReader
from rerf_codec.codec.decoder import decode_all
from rerf_codec.codec.encoder import EncoderConfig
from rerf_codec.codec.entropy import SymbolDecoder, SymbolEncoder
from rerf_codec.codec.intra import block_coords, parse_intra, reconstruct_intra
from rerf_codec.codec.motion import (
    FILTER_TAPS,
    MAX_MV,
    decode_motion,
    encode_motion,
    motion_compensate,
    superblock_count,
    superblock_index,
)
from rerf_codec.codec.occupancy import decode_mask_inter, encode_mask_inter
from rerf_codec.codec.residual import initial_state, parse_residual, reconstruct_residual
from rerf_codec.errors import RerfFormatError
from rerf_codec.grids import GridFrame

BLOCK = 8
LATTICE_MAX = 2**24 - 1

# HEVC's 4-tap chroma interpolation filter, eighth-sample phases (independent copy).
HEVC_CHROMA = [
    [0, 64, 0, 0],
    [-2, 58, 10, -2],
    [-4, 54, 16, -2],
    [-6, 46, 28, -4],
    [-4, 36, 36, -4],
    [-4, 28, 46, -6],
    [-2, 16, 54, -4],
    [-2, 10, 58, -2],
]


# --------------------------------------------------------------------------- 2. motion compensation


def reference_mc(lattice: list, grid_shape: tuple[int, int, int], block: tuple[int, int, int], mv: tuple[int, int, int]):
    """One channel, one block, Python ints: ``lattice[x][y][z]`` (nested lists, possibly padded).

    The 64-term sum is evaluated axis by axis (exact in integers, so equal to the
    non-separable sum), then rounded once.
    """
    taps, coords = [], []
    for a in range(3):
        i, f = mv[a] // 8, mv[a] & 7  # Python: floor division and the non-negative phase
        taps.append(HEVC_CHROMA[f])
        base = block[a] * BLOCK + i
        coords.append([[min(max(base + o + k - 1, 0), grid_shape[a] - 1) for k in range(4)] for o in range(BLOCK)])
    ys = sorted({y for row in coords[1] for y in row})
    zs = sorted({z for row in coords[2] for z in row})
    # pass x: A[lx][y][z] for every sampled (y, z)
    a_pass = [
        {(y, z): sum(taps[0][k] * lattice[coords[0][lx][k]][y][z] for k in range(4)) for y in ys for z in zs}
        for lx in range(BLOCK)
    ]
    out = [[[0] * BLOCK for _ in range(BLOCK)] for _ in range(BLOCK)]
    for lx in range(BLOCK):
        for ly in range(BLOCK):
            b_row = {z: sum(taps[1][k] * a_pass[lx][coords[1][ly][k], z] for k in range(4)) for z in zs}
            for lz in range(BLOCK):
                acc = sum(taps[2][k] * b_row[coords[2][lz][k]] for k in range(4))
                out[lx][ly][lz] = (acc + 2**17) >> 18  # floor((acc + 2**17) / 2**18)
    return out


def _lattice_frame(rng, grid_shape, channels, exponents, pad, distribution):
    """Random lattice integers and the float32 frame holding them (padding filled with NaN)."""
    padded = tuple(s + p for s, p in zip(grid_shape, pad, strict=True))
    ints = np.zeros((channels, *padded), dtype=np.int64)
    x, y, z = grid_shape
    if distribution == "full":
        ints[:, :x, :y, :z] = rng.integers(-LATTICE_MAX, LATTICE_MAX + 1, (channels, *grid_shape))
    elif distribution == "extreme":
        ints[:, :x, :y, :z] = rng.choice([-LATTICE_MAX, LATTICE_MAX, 0, 1, -1], (channels, *grid_shape))
    else:  # smooth-ish
        ints[:, :x, :y, :z] = np.cumsum(rng.integers(-5000, 5000, (channels, *grid_shape)), axis=1)
    vals = np.full((channels, *padded), np.nan, dtype=np.float32)
    for c in range(channels):
        vals[c, :x, :y, :z] = (ints[c, :x, :y, :z].astype(np.float64) * 2.0 ** -exponents[c]).astype(np.float32)
    assert np.array_equal(vals[:, :x, :y, :z].astype(np.float64) * (2.0 ** np.array(exponents))[:, None, None, None],
                          ints[:, :x, :y, :z])  # the float32 frame holds the lattice exactly
    return ints, np.ascontiguousarray(vals[0]), np.ascontiguousarray(vals[1:])


def _random_vectors(rng, n, grid_shape, kind):
    if kind == "small":
        return rng.integers(-24, 25, (n, 3))
    if kind == "integer":
        return rng.integers(-6, 7, (n, 3)) * 8
    if kind == "far":  # well outside the grid, both signs, up to the format's limit
        far = rng.integers(8 * (max(grid_shape) + 3), MAX_MV + 1, (n, 3)) * rng.choice([-1, 1], (n, 3))
        return np.where(rng.random((n, 3)) < 0.3, rng.integers(-20, 21, (n, 3)), far)
    return rng.integers(-8 * (max(grid_shape) + 4), 8 * (max(grid_shape) + 4) + 1, (n, 3))  # "any"


MC_CASES = [
    # grid shape, padding, value distribution, vector kind
    ((13, 9, 17), (3, 7, 7), "full", "small"),
    ((13, 9, 17), (0, 0, 0), "extreme", "any"),
    ((8, 8, 8), (0, 0, 0), "full", "far"),
    ((1, 1, 1), (7, 7, 7), "full", "any"),
    ((20, 3, 11), (4, 5, 5), "smooth", "small"),
    ((16, 16, 16), (0, 0, 0), "extreme", "small"),
    ((9, 17, 5), (7, 7, 3), "full", "far"),
    ((24, 8, 16), (0, 0, 0), "smooth", "integer"),
]


@pytest.mark.parametrize(("grid_shape", "pad", "distribution", "kind"), MC_CASES)
def test_motion_compensation_matches_integer_reference(grid_shape, pad, distribution, kind):
    rng = np.random.default_rng([*grid_shape, *pad, len(distribution), len(kind)])
    channels = 3
    exponents = [int(e) for e in rng.integers(-6, 12, channels)]
    ints, dens, feats = _lattice_frame(rng, grid_shape, channels, exponents, pad, distribution)
    bshape = [-(-s // BLOCK) for s in grid_shape]
    all_blocks = np.argwhere(np.ones(bshape, dtype=bool))
    pick = all_blocks[rng.choice(len(all_blocks), min(6, len(all_blocks)), replace=False)]
    blocks = (pick[:, 0], pick[:, 1], pick[:, 2])
    mv = _random_vectors(rng, len(pick), grid_shape, kind)
    mv[0] = (-1, -9, 17) if kind != "integer" else mv[0]  # negative fractional phases on every axis
    scales = 2.0 ** np.array(exponents, dtype=np.float64)
    got = motion_compensate(dens, feats, grid_shape, scales, blocks, mv)
    assert got.shape == (channels, len(pick), BLOCK, BLOCK, BLOCK) and got.dtype == np.float64
    lattices = [ints[c].tolist() for c in range(channels)]
    for n in range(len(pick)):
        for c in range(channels):
            want = reference_mc(lattices[c], grid_shape, tuple(int(v) for v in pick[n]), tuple(int(v) for v in mv[n]))
            assert np.array_equal(got[c, n], np.array(want, dtype=np.float64)), (c, n, mv[n].tolist())


def test_filter_taps_are_hevc_chroma():
    assert FILTER_TAPS.tolist() == HEVC_CHROMA
    assert all(sum(row) == 64 for row in HEVC_CHROMA)


@pytest.mark.parametrize("grid_shape", [(13, 9, 17), (8, 16, 8), (1, 1, 1)])
def test_integer_vectors_are_clamped_block_copies(grid_shape):
    rng = np.random.default_rng(sum(grid_shape))
    ints, dens, feats = _lattice_frame(rng, grid_shape, 2, [3, -2], (5, 0, 7), "full")
    bshape = [-(-s // BLOCK) for s in grid_shape]
    pick = np.argwhere(np.ones(bshape, dtype=bool))
    blocks = (pick[:, 0], pick[:, 1], pick[:, 2])
    whole = rng.integers(-40, 41, (len(pick), 3))
    got = motion_compensate(dens, feats, grid_shape, np.array([8.0, 0.25]), blocks, whole * 8)
    for n, b in enumerate(pick):
        idx = [np.clip(b[a] * BLOCK + whole[n, a] + np.arange(BLOCK), 0, grid_shape[a] - 1) for a in range(3)]
        want = ints[:, idx[0][:, None, None], idx[1][None, :, None], idx[2][None, None, :]]
        assert np.array_equal(got[:, n], want.astype(np.float64))


def test_vectors_far_outside_replicate_the_edge():
    """A vector pointing 100+ voxels past a face copies the edge voxel's value along that axis."""
    rng = np.random.default_rng(3)
    grid_shape = (16, 16, 16)
    ints, dens, feats = _lattice_frame(rng, grid_shape, 2, [0, 0], (0, 0, 0), "full")
    blocks = (np.array([1]), np.array([0]), np.array([1]))
    for mv, sl in [((8 * 200 + 3, 0, 0), (15, slice(0, 8), slice(8, 16))),
                   ((0, -8 * 150 - 5, 0), (slice(8, 16), 0, slice(8, 16)))]:
        got = motion_compensate(dens, feats, grid_shape, np.ones(2), blocks, np.array([mv]))
        face = ints[(slice(None), *sl)]  # the edge plane that every far sample clamps to
        if isinstance(sl[0], int):
            want = np.broadcast_to(face[:, None, :, :], (2, BLOCK, BLOCK, BLOCK))
        else:
            want = np.broadcast_to(face[:, :, None, :], (2, BLOCK, BLOCK, BLOCK))
        assert np.array_equal(got[:, 0], want)


def test_constant_reference_is_reproduced_for_every_phase():
    """Taps sum to 64 per axis: a constant field predicts itself exactly at any sub-voxel phase."""
    grid_shape = (9, 9, 9)
    dens = np.full(grid_shape, float(LATTICE_MAX), np.float32)
    feats = np.full((1, *grid_shape), -float(LATTICE_MAX), np.float32)
    mv = np.array([[fx, fy, fz] for fx in range(-8, 9) for fy in (-3, 5) for fz in (1, 7)])
    blocks = (np.zeros(len(mv), int), np.ones(len(mv), int), np.zeros(len(mv), int))
    got = motion_compensate(dens, feats, grid_shape, np.ones(2), blocks, mv)
    assert (got[0] == LATTICE_MAX).all() and (got[1] == -LATTICE_MAX).all()


def test_no_blocks():
    dens = np.zeros((8, 8, 8), np.float32)
    got = motion_compensate(dens, np.zeros((4, 8, 8, 8), np.float32), (8, 8, 8), np.ones(5),
                            (np.zeros(0, int),) * 3, np.zeros((0, 3), int))
    assert got.shape == (5, 0, BLOCK, BLOCK, BLOCK)


# --------------------------------------------------------------------------- 3. motion-vector coding


def _layout(rng, block_shape, density):
    mask = rng.random(block_shape) < density
    blocks = block_coords(mask)
    return blocks, superblock_index(blocks, block_shape), superblock_count(block_shape)


def _vectors(rng, n, kind):
    if kind == "small":
        return rng.integers(-12, 13, (n, 3))
    if kind == "large":  # needs mantissas
        return rng.integers(-MAX_MV, MAX_MV + 1, (n, 3))
    if kind == "rigid":
        return np.tile(rng.integers(-40, 41, 3), (n, 1))
    mix = rng.integers(-12, 13, (n, 3))  # mostly small, a few at the limits
    sel = rng.random(n) < 0.2
    mix[sel] = rng.choice([-MAX_MV, MAX_MV, 4097, -1000], (int(sel.sum()), 3))
    return mix


@pytest.mark.parametrize("block_shape", [(1, 1, 1), (5, 3, 7), (4, 4, 4), (9, 2, 6)])
@pytest.mark.parametrize("density", [0.0, 0.1, 0.6, 1.0])
@pytest.mark.parametrize("kind", ["small", "large", "rigid", "mixed"])
def test_motion_vectors_round_trip(block_shape, density, kind):
    rng = np.random.default_rng([*block_shape, int(density * 10), len(kind)])
    _, sb, n_sb = _layout(rng, block_shape, density)
    prev_coarse = np.zeros((n_sb, 3), dtype=np.int64)
    for frame in range(3):  # the coarse field carries over from frame to frame
        if frame:
            _, sb, n_sb = _layout(rng, block_shape, density)
        mv = _vectors(rng, sb.size, kind)
        section, coarse, bits = encode_motion(mv, sb, n_sb, prev_coarse)
        assert bits >= 0.0
        got, got_coarse = decode_motion(section, sb, n_sb, prev_coarse)
        assert got.shape == (sb.size, 3)
        assert np.array_equal(got, mv)
        assert np.array_equal(got_coarse, coarse)
        assert np.array_equal(coarse[np.setdiff1d(np.arange(n_sb), sb)], prev_coarse[np.setdiff1d(np.arange(n_sb), sb)])
        prev_coarse = coarse


def test_motion_round_trip_with_arbitrary_temporal_predictor():
    rng = np.random.default_rng(9)
    block_shape = (6, 5, 4)
    _, sb, n_sb = _layout(rng, block_shape, 0.5)
    prev = rng.integers(-MAX_MV, MAX_MV + 1, (n_sb, 3))
    mv = rng.integers(-MAX_MV, MAX_MV + 1, (sb.size, 3))  # differences up to 2 * MAX_MV
    section, coarse, _ = encode_motion(mv, sb, n_sb, prev)
    got, got_coarse = decode_motion(section, sb, n_sb, prev)
    assert np.array_equal(got, mv) and np.array_equal(got_coarse, coarse)


def test_empty_block_set():
    prev = np.arange(24, dtype=np.int64).reshape(8, 3)
    sb = np.zeros(0, dtype=np.int64)
    section, coarse, _ = encode_motion(np.zeros((0, 3), np.int64), sb, 8, prev)
    got, got_coarse = decode_motion(section, sb, 8, prev)
    assert got.shape == (0, 3)
    assert np.array_equal(coarse, prev) and np.array_equal(got_coarse, prev)


def test_steady_rigid_motion_is_nearly_free():
    """Rigid motion: block differences vanish; steady motion: coarse differences vanish too."""
    rng = np.random.default_rng(2)
    _, sb, n_sb = _layout(rng, (8, 8, 8), 0.5)
    mv = np.tile(np.array([13, -7, 2]), (sb.size, 1))
    s1, c1, _ = encode_motion(mv, sb, n_sb, np.zeros((n_sb, 3), np.int64))
    s2, _, _ = encode_motion(mv, sb, n_sb, c1)
    assert len(s2) < len(s1)
    assert len(s2) < 32  # ~250 blocks for a few bytes of tables
    assert np.array_equal(decode_motion(s2, sb, n_sb, c1)[0], mv)


def test_motion_limits():
    sb = np.array([0, 0])
    ok = np.array([[MAX_MV, -MAX_MV, 0], [-MAX_MV, MAX_MV, MAX_MV]])
    section, _, _ = encode_motion(ok, sb, 1, np.zeros((1, 3), np.int64))
    assert np.array_equal(decode_motion(section, sb, 1, np.zeros((1, 3), np.int64))[0], ok)
    with pytest.raises(ValueError, match="range"):
        encode_motion(np.array([[MAX_MV + 1, 0, 0], [0, 0, 0]]), sb, 1, np.zeros((1, 3), np.int64))
    for cut in (0, 1, 3, 7):
        with pytest.raises(RerfFormatError):
            decode_motion(section[:cut], sb, 1, np.zeros((1, 3), np.int64))


# --------------------------------------------------------------------------- 3. inter mask coding


def _mask_pair(rng, shape, kind):
    if kind == "random":
        return rng.random(shape) < rng.random(), rng.random(shape) < rng.random()
    if kind == "same":
        m = rng.random(shape) < 0.4
        return m, m.copy()
    if kind == "shifted":
        p = rng.random(shape) < 0.4
        return np.roll(p, 1, axis=0), p
    if kind == "from_empty":
        return rng.random(shape) < 0.5, np.zeros(shape, bool)
    if kind == "to_empty":
        return np.zeros(shape, bool), rng.random(shape) < 0.5
    if kind == "full":
        return np.ones(shape, bool), np.ones(shape, bool)
    return np.zeros(shape, bool), np.zeros(shape, bool)  # "empty"


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 5, 1), (7, 3, 9), (4, 4, 4), (16, 2, 11)])
@pytest.mark.parametrize("kind", ["random", "same", "shifted", "from_empty", "to_empty", "full", "empty"])
def test_inter_mask_round_trip(shape, kind):
    rng = np.random.default_rng([*shape, len(kind)])
    for _ in range(3):
        mask, prev = _mask_pair(rng, shape, kind)
        enc = SymbolEncoder()
        encode_mask_inter(mask, prev, enc)
        data = enc.finish()
        got = decode_mask_inter(prev, SymbolDecoder(data))
        assert got.dtype == bool and got.shape == mask.shape
        assert np.array_equal(got, mask)


def test_inter_mask_of_a_still_scene_is_small():
    rng = np.random.default_rng(1)
    prev = rng.random((16, 16, 16)) < 0.3
    enc = SymbolEncoder()
    encode_mask_inter(prev, prev, enc)
    assert len(enc.finish()) <= 24  # 4096 blocks, all predictable from the previous mask


# --------------------------------------------------------------------------- 9. motion search


def decoded_motion(data: bytes) -> dict[int, tuple[tuple[np.ndarray, ...], np.ndarray]]:
    """Frame index -> (occupied block coordinates, eighth-voxel vectors) of every residual frame."""
    reader = StreamReader(io.BytesIO(data))
    header = reader.header
    out = {}
    for gof in reader.iter_gofs():
        assert isinstance(gof, GofChunk)
        state = None
        for i, rec in enumerate(gof.frames):
            if rec.frame_type == FRAME_INTRA:
                mask, levels, tables = parse_intra(rec, header)
                state = initial_state(header, reconstruct_intra(header, gof.channels, mask, levels), mask, tables)
                continue
            sym = parse_residual(rec, header, state)
            mask, mv = sym.mask, sym.mv
            frame = reconstruct_residual(header, gof.channels, mask, mv, sym.levels, state.prev, modes=sym.modes)
            state = sym.next_state(frame, state)
            out[gof.first_frame + i] = (block_coords(mask), mv)
    return out


def translating_scene(
    shape, channels, num_frames, velocity, seed=0, ball_radius: float | None = None
) -> list[GridFrame]:
    """Analytic textured content moving rigidly by ``velocity`` voxels per frame (pure translation).

    The true backward block motion is ``-velocity`` for every block. ``ball_radius``: a textured
    ball in empty space (features fade out before the occupancy boundary), else the whole grid.
    """
    rng = np.random.default_rng(seed)
    g = np.meshgrid(*(np.arange(s, dtype=np.float64) for s in shape), indexing="ij")
    k = rng.normal(size=(channels + 1, 3, 3))
    k *= (2 * np.pi / rng.uniform(7.0, 14.0, (channels + 1, 3, 1))) / np.linalg.norm(k, axis=-1, keepdims=True)
    ph = rng.uniform(0.0, 2 * np.pi, (channels + 1, 3))
    centre = (np.array(shape) - 1) / 2.0

    def smoothstep(x):
        x = np.clip(x, 0.0, 1.0)
        return x * x * (3.0 - 2.0 * x)

    frames = []
    for t in range(num_frames):
        p = [g[a] - velocity[a] * t for a in range(3)]

        def texture(ch, p=p):
            return sum(np.sin(k[ch, j, 0] * p[0] + k[ch, j, 1] * p[1] + k[ch, j, 2] * p[2] + ph[ch, j]) for j in range(3))

        dens = 20.0 + 3.0 * texture(0)
        feats = np.stack([texture(c + 1) for c in range(channels)])
        if ball_radius is not None:
            r = np.sqrt(sum((p[a] - centre[a]) ** 2 for a in range(3)))
            dens = dens * smoothstep((ball_radius + 2.0 - r) / 4.0)
            feats = feats * smoothstep((ball_radius + 1.0 - r) / 3.0)
        frames.append(GridFrame(dens.astype(np.float32), np.ascontiguousarray(feats, dtype=np.float32)))
    return frames


def _feature_rmse(data: bytes, frames: list[GridFrame]) -> float:
    decoded, _ = decode_all(io.BytesIO(data))
    return max(float(np.sqrt(((d.frame.features - f.features) ** 2).mean())) for d, f in zip(decoded, frames, strict=True))


@pytest.mark.parametrize("velocity", [(0.75, -0.5, 0.375), (0.3, 0.2, -0.1), (-1.25, 0.625, 0.0)])
def test_search_finds_pure_translation(velocity):
    """Whole-grid translation (32³, block-aligned grid): searched vectors within ±1/4 voxel of the
    truth for most occupied blocks; smaller file than zero motion at the same quality."""
    v = np.array(velocity)
    frames = translating_scene((32, 32, 32), 3, 5, v)
    data, _ = encode_to_bytes(frames, EncoderConfig(gof=5))
    motion = decoded_motion(data)
    assert sorted(motion) == [1, 2, 3, 4]
    for t, (blocks, mv) in motion.items():
        assert blocks[0].size == 64
        err = np.abs(mv / 8.0 + v).max(axis=1)  # true backward motion is -v
        assert np.mean(err <= 0.25) >= 0.8, (t, np.mean(err <= 0.25))
    zero, _ = encode_to_bytes(frames, EncoderConfig(gof=5, motion="zero"))
    assert len(data) < 0.9 * len(zero), (len(data), len(zero))
    assert _feature_rmse(data, frames) <= 1.1 * _feature_rmse(zero, frames)


def test_search_in_sparse_scene():
    """A translating ball in empty space: blocks well inside it get the true motion (the
    partly empty surface blocks are ambiguous), and the file is smaller than with zero motion."""
    v = np.array([0.75, -0.5, 0.375])
    centre, radius = (40 - 1) / 2.0, 14.0
    frames = translating_scene((40, 40, 40), 3, 4, v, ball_radius=radius)
    data, _ = encode_to_bytes(frames, EncoderConfig(gof=4))
    for t, (blocks, mv) in decoded_motion(data).items():
        block_centre = np.stack(blocks, axis=1) * BLOCK + 3.5
        dist = np.linalg.norm(block_centre - (centre + v * t), axis=1)
        interior = dist < radius - 4.0
        assert interior.sum() >= 6
        err = np.abs(mv / 8.0 + v).max(axis=1)
        assert np.mean(err[interior] <= 0.25) >= 0.8, (t, err[interior])
        assert np.mean(err <= 0.25) >= 0.5, (t, np.mean(err <= 0.25))
    zero, _ = encode_to_bytes(frames, EncoderConfig(gof=4, motion="zero"))
    assert len(data) < 0.8 * len(zero), (len(data), len(zero))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
