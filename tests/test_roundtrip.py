"""Closed-loop round trips over a product of synthetic grids × encoder settings.

For every case (STYLE.md lesson 8):

* sha256(encoder reconstruction) == sha256(decoder output);
* every output is float32, finite, on the GOF's lattice (integer × 2**-exponent);
* occupied blocks: the per-block L2 error is bounded by the quantiser (derivation below);
* unoccupied blocks: every voxel is the GOF's fill value and the input density there was
  at or below the occupancy threshold;
* a frame range starting mid-GOF decodes to the same frames as the full decode.

Error bound of one occupied block, one channel, in lattice units (x = input × 2**e,
edge-padded to 8³ like the encoder does; y = DCT(x), orthonormal):

* dead-zone quantisation ``l = sign(y) floor(|y|/s + r)`` leaves ``|y - l s| <= (1 - r) s``
  per coefficient (r <= 1/2), so ``||ŷ - y||₂ <= Q = ||(1 - r_f) s_f||₂`` over the 512 frequencies;
* the real inverse is orthonormal, so it maps that to a spatial error of the same norm;
* the integer inverse uses ``A = T / 2**B`` instead of the DCT matrix ``C``. With
  ``δ = ||A - C||₂`` the 3D operator differs by at most ``κ = (1 + δ)**3 - 1`` in norm, adding
  ``κ ||ŷ||₂ <= κ (||x||₂ + Q)``;
* the three rounding shifts add at most ``(1/16 (1 + δ)**2 + 1/16 (1 + δ) + 1/2) sqrt(512)``
  (0.5 unit in 1/8-lattice units after passes 1 and 2, 0.5 lattice unit after pass 3);
  we allow ``1 × sqrt(512)``.

Residual frames code ``x - prediction`` with the same quantiser, so the same bound holds with
``||x - prediction||₂`` in the κ term; the motion-compensation filter (taps summing to 64,
absolute sum 76) keeps ``|prediction| <= (76/64)**3 max|previous frame| + 1``.

Cropped edge blocks compare only the valid voxels, whose error is part of the block's.
"""

from __future__ import annotations

import io
import itertools
import math

import numpy as np
import pytest
from conftest import encode_to_bytes

from rerf_codec.bitstream import FRAME_INTRA, FRAME_TYPE_NAMES, StreamReader
from rerf_codec.codec import quant, transform
from rerf_codec.codec.decoder import decode_all
from rerf_codec.codec.encoder import EncoderConfig
from rerf_codec.codec.intra import parse_intra
from rerf_codec.grids import GridFrame, frames_sha256
from rerf_codec.synthetic import SyntheticSpec, synthetic_frames

BLOCK = 8
THRESHOLD_DEFAULT = 4.6  # ≈ default_threshold(-13.8155); the tests read the exact value from the header
ROUND_SLACK = 1.0  # lattice units per voxel for the three rounding shifts (provable bound: 0.63)

_D = transform.INT_DCT / 2.0**transform.TRANSFORM_BITS - transform.dct_matrix()
KAPPA = (1.0 + float(np.linalg.norm(_D, 2))) ** 3 - 1.0


# --------------------------------------------------------------------------- synthetic content


def _coords(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.meshgrid(*(np.linspace(0.0, 1.0, n) for n in shape), indexing="ij")


def _smooth(shape: tuple[int, int, int], channels: int, t: int) -> np.ndarray:
    """(channels, *shape) low-frequency fields that drift a little with t."""
    x, y, z = _coords(shape)
    out = np.empty((channels, *shape))
    for c in range(channels):
        ph = 0.3 * t + 0.7 * c
        out[c] = np.sin(3.0 * x + ph) * np.cos(2.0 * y - ph) + 0.5 * np.sin(4.0 * z + 0.2 * c)
    return out


def make_content(kind: str, shape: tuple[int, int, int], channels: int, t: int) -> tuple[np.ndarray, np.ndarray]:
    """(density, features) float64 of frame ``t`` of content ``kind``."""
    rng = np.random.default_rng([sum(map(ord, kind)), *shape, channels, t])
    x, y, _ = _coords(shape)
    if kind == "empty":  # every voxel below the threshold
        density = rng.uniform(-30.0, 4.0, shape)
        features = rng.normal(0.3, 1.0, (channels, *shape))
    elif kind == "full":  # every block occupied
        density = 10.0 + 2.0 * _smooth(shape, 1, t)[0] + rng.normal(0, 0.1, shape)
        features = _smooth(shape, channels, t) * np.arange(1, channels + 1)[:, None, None, None]
    elif kind == "constant":
        density = np.full(shape, 7.25)
        features = np.broadcast_to(0.5 * np.arange(channels)[:, None, None, None] - 1.0, (channels, *shape))
    elif kind == "smooth":  # partial occupancy
        density = THRESHOLD_DEFAULT + 6.0 * np.sin(5.0 * x + 0.2 * t) * np.cos(3.0 * y) + 0.01
        features = _smooth(shape, channels, t)
    elif kind == "noisy":  # i.i.d. gaussian
        density = rng.normal(4.0, 3.0, shape)
        features = rng.normal(0.0, 1.0, (channels, *shape))
    elif kind == "huge":
        density = rng.normal(0.0, 1e6, shape)
        features = rng.normal(0.0, 1e6, (channels, *shape)) + 3e6 * _smooth(shape, channels, t)
    elif kind == "tiny":  # used with occupancy_threshold=0
        density = 1e-6 * rng.normal(0.0, 1.0, shape)
        features = 1e-6 * _smooth(shape, channels, t) + 1e-7 * rng.normal(0.0, 1.0, (channels, *shape))
    elif kind == "negative_fill":  # occupied half, very negative empty half
        occ = x < 0.5
        density = np.where(occ, 12.0, -20.0) + rng.normal(0.0, 0.5, shape)
        features = np.where(occ[None], _smooth(shape, channels, t), -3.0 - 0.01 * rng.random((channels, *shape)))
    elif kind == "sparse":  # one occupied corner block, zeros elsewhere
        density = np.zeros(shape)
        features = np.zeros((channels, *shape))
        sl = tuple(slice(0, min(n, BLOCK)) for n in shape)
        density[sl] = 9.0 + t
        features[(slice(None), *sl)] = rng.normal(0.0, 2.0, (channels, *density[sl].shape))
    else:  # pragma: no cover
        raise AssertionError(kind)
    return density, np.asarray(features)


def make_frames(kind: str, shape: tuple[int, int, int], channels: int, n: int) -> list[GridFrame]:
    out = []
    for t in range(n):
        d, f = make_content(kind, shape, channels, t)
        out.append(GridFrame(density=d.astype(np.float32), features=np.ascontiguousarray(f, dtype=np.float32)))
    return out


# --------------------------------------------------------------------------- checks


def _blocks(arr: np.ndarray) -> np.ndarray:
    """(X, Y, Z) padded to multiples of 8 -> (bx*by*bz, 512), raster block order."""
    x, y, z = arr.shape
    v = arr.reshape(x // BLOCK, BLOCK, y // BLOCK, BLOCK, z // BLOCK, BLOCK).transpose(0, 2, 4, 1, 3, 5)
    return v.reshape(-1, BLOCK**3)


def _pad_widths(shape: tuple[int, ...]) -> list[tuple[int, int]]:
    return [(0, -(-n // BLOCK) * BLOCK - n) for n in shape]


def encode_and_decode(frames: list[GridFrame], config: EncoderConfig, first_frame: int = 0):
    """Encode, decode, check the closed loop; returns (stream bytes, decoded frames)."""
    data, report = encode_to_bytes(frames, config, first_frame=first_frame)
    decoded, sha = decode_all(io.BytesIO(data))
    assert sha == report.sha256, "closed loop broken: encoder reconstruction != decoder output"
    assert len(decoded) == len(frames) == len(report.frames)
    assert [d.index for d in decoded] == list(range(first_frame, first_frame + len(frames)))
    assert frames_sha256(d.frame for d in decoded) == sha
    assert report.file_bytes == len(data)
    return data, decoded


def check_against_quantiser(data: bytes, frames: list[GridFrame], decoded, config: EncoderConfig) -> None:
    """The per-block bounds of the module docstring, for every frame and channel."""
    reader = StreamReader(io.BytesIO(data))
    header = reader.header
    gofs = list(reader.iter_gofs())
    thr = header.occupancy_threshold
    r = np.full(BLOCK**3, 1.0 - config.deadzone_ac)
    r[0] = 1.0 - config.deadzone_dc
    shape = header.grid_shape
    pad = _pad_widths(shape)
    valid = _blocks(np.pad(np.ones(shape, dtype=bool), pad))
    first = header.first_frame
    for gof in gofs:
        ch_params = gof.channels
        assert len(ch_params) == header.num_channels
        steps = quant.qstep_table(header.qmatrix, np.array([ch.qscale for ch in ch_params]))
        for idx, record in zip(gof.frame_range, gof.frames, strict=True):
            orig = frames[idx - first]
            dec = decoded[idx - first].frame
            assert dec.density.dtype == np.float32 and dec.features.dtype == np.float32
            assert dec.density.shape == orig.density.shape and dec.features.shape == orig.features.shape
            assert np.isfinite(dec.density).all() and np.isfinite(dec.features).all()
            dens_pad = np.pad(orig.density.astype(np.float64), pad, constant_values=-np.inf)
            occupied = _blocks(dens_pad).max(axis=1) > thr  # "any valid voxel above the threshold"
            assert decoded[idx - first].frame_type == FRAME_TYPE_NAMES[record.frame_type]
            if record.frame_type == FRAME_INTRA:
                assert np.array_equal(parse_intra(record, header)[0].ravel(), occupied), f"frame {idx}: mask"
            # residual frames: a mask disagreement shows up as a fill or bound failure below
            prev = None if record.frame_type == FRAME_INTRA else decoded[idx - first - 1].frame
            for c, ch in enumerate(ch_params):
                scale = 2.0**ch.exponent
                o = (orig.density if c == 0 else orig.features[c - 1]).astype(np.float64) * scale
                d = (dec.density if c == 0 else dec.features[c - 1]).astype(np.float64) * scale
                # lattice: integers within the sample range
                assert (d == np.round(d)).all(), f"frame {idx} channel {c}: off the lattice"
                assert np.abs(d).max() <= transform.MAX_SAMPLE
                db = _blocks(np.pad(d, pad))
                ob_valid = _blocks(np.pad(o, pad))
                ob_edge = _blocks(np.pad(o, pad, mode="edge"))
                # unoccupied: exactly the fill value on every valid voxel
                fill_ok = np.where(valid, db == float(ch.fill), True)[~occupied]
                assert fill_ok.all(), f"frame {idx} channel {c}: unoccupied voxel is not the fill value"
                if not occupied.any():
                    continue
                q = float(np.linalg.norm(r * steps[c]))
                err = np.sqrt((np.where(valid, db - ob_valid, 0.0) ** 2).sum(axis=1))[occupied]
                xnorm = np.linalg.norm(ob_edge, axis=1)[occupied]
                if prev is not None:  # residual = x - prediction; |prediction| <= (76/64)**3 max|prev| + 1
                    p = (prev.density if c == 0 else prev.features[c - 1]).astype(np.float64) * scale
                    m = max(float(np.abs(p).max()), abs(ch.fill))
                    xnorm = xnorm + math.sqrt(BLOCK**3) * ((76 / 64) ** 3 * m + 1)
                bound = q + KAPPA * (xnorm + q) + ROUND_SLACK * math.sqrt(BLOCK**3)
                worst = int(np.argmax(err - bound))
                assert (err <= bound).all(), (
                    f"frame {idx} channel {c}: block error {err[worst]:.1f} > bound {bound[worst]:.1f} "
                    f"(Q={q:.1f}, ||x||={xnorm[worst]:.1f}) lattice units"
                )


def check_ranges(data: bytes, decoded, ranges: list[range]) -> None:
    for want in ranges:
        part, _ = decode_all(io.BytesIO(data), want)
        assert [p.index for p in part] == list(want)
        for p in part:
            full = decoded[p.index - decoded[0].index]
            assert p.frame_type == full.frame_type
            assert frames_sha256([p.frame]) == frames_sha256([full.frame]), f"frame {p.index} differs in {want}"


# --------------------------------------------------------------------------- the product

SHAPES = [(13, 9, 17), (8, 8, 8), (1, 1, 1), (31, 16, 9)]
CHANNELS = [1, 3, 13, 32]
QUALITIES = [1, 50, 75, 100]
GOFS = [1, 3]
KINDS = ["empty", "full", "constant", "smooth", "noisy", "huge", "tiny", "negative_fill", "sparse"]


def _product_cases():
    """kinds × qualities × gofs; shape and channel count rotate so each kind meets all of them."""
    for k, kind in enumerate(KINDS):
        for (a, q), (b, g) in itertools.product(enumerate(QUALITIES), enumerate(GOFS)):
            shape = SHAPES[(a + k) % 4]
            channels = CHANNELS[(2 * a + b + k) % 4]
            yield pytest.param(kind, shape, channels, q, g, id=f"{kind}-q{q}-gof{g}-{'x'.join(map(str, shape))}-c{channels}")


def _config(kind: str, quality: int, gof: int) -> EncoderConfig:
    return EncoderConfig(quality=quality, gof=gof, occupancy_threshold=0.0 if kind == "tiny" else None)


@pytest.mark.parametrize(("kind", "shape", "channels", "quality", "gof"), list(_product_cases()))
def test_roundtrip_product(kind, shape, channels, quality, gof):
    frames = make_frames(kind, shape, channels, 4)
    config = _config(kind, quality, gof)
    data, decoded = encode_and_decode(frames, config)
    check_against_quantiser(data, frames, decoded, config)
    check_ranges(data, decoded, [range(1, 3), range(3, 4)])


@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_roundtrip_shapes_channels(shape, channels):
    """Every shape × channel count, partially occupied smooth content, 3 frames in GOFs of 2."""
    frames = make_frames("smooth", shape, channels, 3)
    config = EncoderConfig(quality=75, gof=2)
    data, decoded = encode_and_decode(frames, config)
    check_against_quantiser(data, frames, decoded, config)


@pytest.mark.parametrize(
    "spec",
    [
        SyntheticSpec(shape=(24, 20, 17), feature_channels=5, num_frames=3, seed=1),
        SyntheticSpec(shape=(64, 64, 64), feature_channels=12, num_frames=4, seed=2),
    ],
    ids=["24x20x17-c5", "64cube-c12"],
)
def test_roundtrip_synthetic_sequence(spec):
    """The benchmark's synthetic scenes (moving objects, trained-grid noise), GOF of 2."""
    frames = [GridFrame(d, f) for d, f, _ in synthetic_frames(spec)]
    config = EncoderConfig(quality=75, gof=2)
    data, decoded = encode_and_decode(frames, config)
    check_against_quantiser(data, frames, decoded, config)
    check_ranges(data, decoded, [range(1, spec.num_frames)])


@pytest.mark.parametrize("gof", [1, 2, 5])
def test_occupancy_transitions(gof):
    """Full -> empty -> full -> one block -> shifted half: keyframes and residual frames across mask changes."""
    shape, c = (13, 9, 17), 3
    full = make_frames("full", shape, c, 2)
    empty = make_frames("empty", shape, c, 1)
    sparse = make_frames("sparse", shape, c, 1)
    half = make_frames("negative_fill", shape, c, 1)
    frames = [full[0], empty[0], full[1], sparse[0], half[0]]
    config = EncoderConfig(quality=75, gof=gof)
    data, decoded = encode_and_decode(frames, config)
    check_against_quantiser(data, frames, decoded, config)
    check_ranges(data, decoded, [range(1, 5), range(3, 4)])


@pytest.mark.parametrize(
    ("deadzone_ac", "deadzone_dc", "density_quality"), [(0.5, 0.5, None), (0.1, 0.3, 20), (0.35, 0.5, 100)]
)
def test_roundtrip_deadzones(deadzone_ac, deadzone_dc, density_quality):
    """The bound follows the dead-zone offsets (both sides of the default)."""
    frames = make_frames("noisy", (16, 12, 9), 3, 3)
    config = EncoderConfig(
        quality=60, gof=3, deadzone_ac=deadzone_ac, deadzone_dc=deadzone_dc, density_quality=density_quality
    )
    data, decoded = encode_and_decode(frames, config)
    check_against_quantiser(data, frames, decoded, config)


@pytest.mark.parametrize("first_frame", [0, 7])
def test_frame_ranges_mid_gof(first_frame):
    """Every sub-range (including ones that start mid-GOF) equals the full decode's frames."""
    frames = make_frames("negative_fill", (13, 9, 17), 3, 7)
    data, decoded = encode_and_decode(frames, EncoderConfig(quality=50, gof=3), first_frame=first_frame)
    f0 = first_frame
    check_ranges(data, decoded, [range(f0 + a, f0 + b) for a, b in [(0, 7), (1, 2), (2, 5), (4, 7), (6, 7), (3, 4)]])


def test_non_seekable_input_decodes_the_same():
    frames = make_frames("smooth", (13, 9, 17), 3, 4)
    data, decoded = encode_and_decode(frames, EncoderConfig(quality=75, gof=3))

    class Pipe(io.RawIOBase):
        def __init__(self, payload: bytes) -> None:
            self._b = io.BytesIO(payload)

        def readable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return False

        def readinto(self, buf) -> int:
            chunk = self._b.read(min(len(buf), 1000))  # short reads, like a pipe
            buf[: len(chunk)] = chunk
            return len(chunk)

    part, sha = decode_all(Pipe(data))
    assert sha == frames_sha256(d.frame for d in decoded)
    part, _ = decode_all(Pipe(data), range(2, 4))
    assert [frames_sha256([p.frame]) for p in part] == [frames_sha256([d.frame]) for d in decoded[2:4]]


@pytest.mark.parametrize(
    "value",
    [
        1e-6,
        1e-3,
        0.3,
        -7.25,
        1e3,
        -1e6,
    ],
)
def test_constant_channel_fidelity_is_scale_free(value):
    """A channel constant over an occupied grid decodes within 1% of its value, whatever its magnitude."""
    shape = (8, 8, 8)
    frames = [GridFrame(np.full(shape, 10.0, np.float32), np.full((2, *shape), value, np.float32))]
    config = EncoderConfig(quality=75)
    data, decoded = encode_and_decode(frames, config)
    check_against_quantiser(data, frames, decoded, config)
    got = decoded[0].frame.features
    assert np.abs(got - value).max() <= 0.01 * abs(value), float(got[0, 0, 0, 0])


def test_growth_within_gof_is_never_silently_clipped():
    """A GOF whose later frame is 40× larger than its first: the encoder ends the GOF early
    (the large frame starts a new GOF with its own lattice) and stays within the bound."""
    shape = (8, 8, 8)
    frames = [
        GridFrame(np.full(shape, 10.0, np.float32), np.ones((1, *shape), np.float32)),
        GridFrame(np.full(shape, 10.0, np.float32), np.full((1, *shape), 40.0, np.float32)),
    ]
    config = EncoderConfig(quality=90, gof=2)
    data, decoded = encode_and_decode(frames, config)
    check_against_quantiser(data, frames, decoded, config)
    gofs = list(StreamReader(io.BytesIO(data)).iter_gofs())
    assert [g.first_frame for g in gofs] == [0, 1]  # the GOF was ended early
    assert np.abs(decoded[1].frame.features - 40.0).max() <= 0.5
