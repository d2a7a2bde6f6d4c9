"""Grid-sequence directory format (rerf_codec.grids): round trips, validation, warp, writer."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from rerf_codec.errors import RerfFormatError, RerfUsageError
from rerf_codec.grids import MAX_GRID_DIM, GridFrame, SequenceMeta, TrainerFrame, frames_sha256, update_frame_hash
from rerf_codec.gridseq import (
    SequenceWriter,
    frame_path,
    iter_full_frames,
    read_decoder,
    read_frame,
    read_meta,
    write_sequence,
)
from rerf_codec.trainer_form import warp_previous


def make_meta(shape=(13, 9, 17), channels=3, num_frames=3, **kw) -> SequenceMeta:
    return SequenceMeta(
        num_frames=num_frames,
        fps=30.0,
        grid_shape=shape,
        feature_channels=channels,
        xyz_min=(-1.0, -1.0, -1.0),
        xyz_max=(1.0, 1.0, 1.0),
        density_shift=-4.6,
        **kw,
    )


def rand_full(rng, shape, channels) -> GridFrame:
    return GridFrame(
        density=rng.standard_normal(shape).astype(np.float32),
        features=rng.standard_normal((channels, *shape)).astype(np.float32),
    )


def rand_trainer(rng, meta: SequenceMeta, scale=2.0) -> TrainerFrame:
    return TrainerFrame(
        motion=(rng.standard_normal((3, *meta.motion_shape)) * scale).astype(np.float32),
        residual_density=(rng.standard_normal(meta.grid_shape) * 0.1).astype(np.float32),
        residual_features=(
            rng.standard_normal((meta.feature_channels, *meta.grid_shape)) * 0.1
        ).astype(np.float32),
    )


def reference_warp(prev: GridFrame, motion: np.ndarray, block: int = 8) -> GridFrame:
    """The definition, spelled out with scipy (float64)."""
    shape = prev.density.shape
    coords = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")).astype(np.float64)
    for a in range(3):
        m = motion[a].astype(np.float64)
        for ax in range(3):
            m = np.repeat(m, block, axis=ax)
        coords[a] += m[: shape[0], : shape[1], : shape[2]]

    def sample(v):
        return map_coordinates(v.astype(np.float64), coords, order=1, mode="nearest")

    return GridFrame(
        density=sample(prev.density).astype(np.float32),
        features=np.stack([sample(c) for c in prev.features]).astype(np.float32),
    )


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def seq(tmp_path, rng):
    """A valid 3-frame full-frame sequence on disk; returns (path, meta, frames)."""
    meta = make_meta()
    frames = [rand_full(rng, meta.grid_shape, meta.feature_channels) for _ in range(3)]
    out = tmp_path / "SEQ"
    write_sequence(out, meta, enumerate(frames))
    return out, meta, frames


def rewrite_json(seq_dir: Path, **changes) -> None:
    path = seq_dir / "sequence.json"
    d = json.loads(path.read_text())
    for k, v in changes.items():
        if v is _DELETE:
            del d[k]
        else:
            d[k] = v
    path.write_text(json.dumps(d))


_DELETE = object()


def write_raw_npz(path: Path, **arrays) -> None:
    """An npz written by numpy itself (not by our writer)."""
    np.savez(path, **arrays)


def assert_frames_equal(a: GridFrame, b: GridFrame) -> None:
    assert a.density.dtype == np.float32 and a.features.dtype == np.float32
    np.testing.assert_array_equal(a.density, b.density)
    np.testing.assert_array_equal(a.features, b.features)


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "shape,channels", [((13, 9, 17), 1), ((13, 9, 17), 32), ((8, 8, 8), 13), ((1, 5, 9), 2)]
)
def test_round_trip_full_frames(tmp_path, rng, shape, channels):
    meta = make_meta(shape, channels, num_frames=2)
    frames = [rand_full(rng, shape, channels) for _ in range(2)]
    out = tmp_path / "seq"
    write_sequence(out, meta, enumerate(frames))
    got_meta = read_meta(out)
    assert got_meta == meta
    assert got_meta.motion_shape == tuple(-(-n // 8) for n in shape)
    for i, fr in enumerate(frames):
        got = read_frame(out, i, got_meta)
        assert isinstance(got, GridFrame)
        assert_frames_equal(got, fr)
    got_all = list(iter_full_frames(out))
    assert [i for i, _ in got_all] == [0, 1]
    assert frames_sha256(f for _, f in got_all) == frames_sha256(frames)
    assert sorted(p.name for p in out.iterdir()) == ["frames", "sequence.json"]
    assert sorted(p.name for p in (out / "frames").iterdir()) == ["000000.npz", "000001.npz"]
    # readable by plain numpy, no pickle
    with np.load(frame_path(out, 1), allow_pickle=False) as z:
        assert sorted(z.files) == ["density", "features"]


def test_round_trip_trainer_form(tmp_path, rng):
    meta = make_meta((13, 9, 17), 4, num_frames=4)
    f0 = rand_full(rng, meta.grid_shape, meta.feature_channels)
    tfs = [rand_trainer(rng, meta) for _ in range(2)]
    f3 = rand_full(rng, meta.grid_shape, meta.feature_channels)
    out = tmp_path / "seq"
    write_sequence(out, meta, [(0, f0), (1, tfs[0]), (2, tfs[1]), (3, f3)])

    got1 = read_frame(out, 1, meta)
    assert isinstance(got1, TrainerFrame)
    np.testing.assert_array_equal(got1.motion, tfs[0].motion)
    np.testing.assert_array_equal(got1.residual_features, tfs[0].residual_features)

    expected = [f0]
    for tf in tfs:
        w = reference_warp(expected[-1], tf.motion)
        expected.append(
            GridFrame(w.density + tf.residual_density, w.features + tf.residual_features)
        )
    expected.append(f3)
    got = list(iter_full_frames(out, meta))
    assert [i for i, _ in got] == [0, 1, 2, 3]
    for (_, g), e in zip(got, expected, strict=True):
        assert g.density.dtype == np.float32
        np.testing.assert_allclose(g.density, e.density, atol=1e-5)
        np.testing.assert_allclose(g.features, e.features, atol=1e-5)

    # A later start resolves from the start (or the latest full frame) but yields only those asked.
    sub = list(iter_full_frames(out, meta, frames=range(2, 3)))
    assert [i for i, _ in sub] == [2]
    assert_frames_equal(sub[0][1], got[2][1])
    sub = list(iter_full_frames(out, meta, frames=range(3, 4)))
    assert_frames_equal(sub[0][1], f3)


def test_iter_starts_from_latest_full_frame(tmp_path, rng):
    """Frames before the latest full frame are not even opened."""
    meta = make_meta((8, 8, 8), 1, num_frames=4)
    frames = [rand_full(rng, (8, 8, 8), 1) for _ in range(2)] + [
        rand_trainer(rng, meta),
        rand_trainer(rng, meta),
    ]
    out = tmp_path / "seq"
    write_sequence(out, meta, enumerate(frames))
    full = list(iter_full_frames(out, meta))
    frame_path(out, 0).write_bytes(b"garbage")
    sub = list(iter_full_frames(out, meta, frames=range(3, 4)))
    assert_frames_equal(sub[0][1], full[3][1])
    with pytest.raises(RerfFormatError, match=r"000000.npz"):
        list(iter_full_frames(out, meta))


def test_extra_keys_preserved(tmp_path, rng):
    extra = {
        "mlp": {"width": 128, "depth": 3, "act": "relu"},
        "note": "hello",
        "bbox_scale": [1.5, 2],
    }
    meta = make_meta((8, 8, 8), 2, num_frames=1, extra=extra)
    out = tmp_path / "seq"
    write_sequence(out, meta, [(0, rand_full(rng, (8, 8, 8), 2))])
    d = json.loads((out / "sequence.json").read_text())
    assert d["format"] == "rerf-grid-sequence" and d["version"] == 1
    assert d["mlp"] == extra["mlp"] and d["note"] == "hello"
    got = read_meta(out)
    assert got.extra == extra
    assert got.to_json_dict() == d
    # and a second round trip through the writer keeps them
    out2 = tmp_path / "seq2"
    write_sequence(out2, got, iter_full_frames(out, got))
    assert json.loads((out2 / "sequence.json").read_text()) == d


def test_first_frame_nonzero(tmp_path, rng):
    meta = make_meta((9, 9, 9), 2, num_frames=3, first_frame=120)
    assert meta.frame_indices == range(120, 123)
    frames = [
        (120, rand_full(rng, (9, 9, 9), 2)),
        (121, rand_trainer(rng, meta)),
        (122, rand_trainer(rng, meta)),
    ]
    out = tmp_path / "seq"
    write_sequence(out, meta, frames)
    assert sorted(p.name for p in (out / "frames").iterdir()) == [
        "000120.npz",
        "000121.npz",
        "000122.npz",
    ]
    assert json.loads((out / "sequence.json").read_text())["first_frame"] == 120
    got_meta = read_meta(out)
    assert got_meta.first_frame == 120 and got_meta.extra == {}
    assert [i for i, _ in iter_full_frames(out)] == [120, 121, 122]
    assert [i for i, _ in iter_full_frames(out, frames=range(121, 123))] == [121, 122]
    with pytest.raises(RerfUsageError, match="outside"):
        iter_full_frames(out, frames=range(2))
    with pytest.raises(RerfUsageError, match="outside"):
        iter_full_frames(out, frames=range(121, 124))
    with pytest.raises(RerfUsageError):
        read_frame(out, 0, got_meta)


def test_keyframes_round_trip_and_decode_drops_them(tmp_path, rng):
    """Frames the trainer asks to start a GOF survive write → read; absent means none (DESIGN.md 14)."""
    meta = dataclasses.replace(make_meta((9, 9, 9), 2, num_frames=3, first_frame=10), keyframes=(11,))
    out = tmp_path / "seq"
    write_sequence(out, meta, [(10, rand_full(rng, (9, 9, 9), 2)), (11, rand_full(rng, (9, 9, 9), 2)),
                               (12, rand_trainer(rng, meta))])
    assert json.loads((out / "sequence.json").read_text())["keyframes"] == [11]
    got = read_meta(out)
    assert got.keyframes == (11,) and "keyframes" not in got.extra
    assert "keyframes" not in make_meta((9, 9, 9), 2, num_frames=3).to_json_dict()
    with pytest.raises(RerfUsageError, match="keyframes"):
        dataclasses.replace(meta, keyframes=(13,))
    with pytest.raises(RerfUsageError, match="reserved"):
        dataclasses.replace(meta, keyframes=(), extra={"keyframes": [11]})


def test_first_frame_absent_means_zero(seq):
    out, _, _ = seq
    rewrite_json(out, first_frame=_DELETE)
    assert read_meta(out).first_frame == 0


def test_decoder_round_trip(tmp_path, rng):
    dec = {
        "w0": rng.standard_normal((39, 128)).astype(np.float32),
        "b0": np.zeros(128, np.float32),
        "file": np.arange(3, dtype=np.int64),  # a name np.savez(file, **kw) would choke on
    }
    meta = make_meta((8, 8, 8), 1, num_frames=1)
    out = tmp_path / "seq"
    write_sequence(out, meta, [(0, rand_full(rng, (8, 8, 8), 1))], decoder=dec)
    got_meta = read_meta(out)
    assert got_meta.decoder == "decoder.npz"
    got = read_decoder(out, got_meta)
    assert got is not None and sorted(got) == sorted(dec)
    for k, arr in dec.items():
        np.testing.assert_array_equal(got[k], arr)
        assert got[k].dtype == arr.dtype
    assert read_decoder(out, meta) is None  # meta without a decoder
    (out / "decoder.npz").unlink()
    with pytest.raises(RerfFormatError, match=r"decoder.npz"):
        read_decoder(out, got_meta)


def test_decoder_rejects_object_arrays(tmp_path, rng):
    meta = make_meta((8, 8, 8), 1, num_frames=1)
    out = tmp_path / "seq"
    write_sequence(
        out, meta, [(0, rand_full(rng, (8, 8, 8), 1))], decoder={"w": np.ones(3, np.float32)}
    )
    np.savez(out / "decoder.npz", w=np.array([{"a": 1}], dtype=object))
    with pytest.raises(RerfFormatError, match=r"decoder\.npz.*'w'.*object"):
        read_decoder(out, read_meta(out))
    with pytest.raises(RerfUsageError):
        SequenceWriter(tmp_path / "x", meta, decoder={"w": np.array(["a"])})
    with pytest.raises(RerfUsageError, match="decoder"):
        SequenceWriter(tmp_path / "x", make_meta(decoder="decoder.npz"))


# --------------------------------------------------------------------------- warp


def test_warp_integer_motion_shift_and_clamp(rng):
    shape = (16, 8, 8)
    prev = rand_full(rng, shape, 2)
    motion = np.zeros((3, 2, 1, 1), np.float32)
    motion[0, 0] = 3.0  # block x in 0..7 takes content from x + 3
    motion[0, 1] = 5.0  # block x in 8..15 takes content from x + 5, clamped to 15
    motion[1, 1] = -2.0  # and y - 2, clamped to 0
    out = warp_previous(prev, motion)
    # first block: a pure shift inside the grid
    np.testing.assert_array_equal(out.density[0:8], prev.density[3:11])
    np.testing.assert_array_equal(out.features[:, 0:8], prev.features[:, 3:11])
    # second block, checked by hand: voxel (9, 1, 4) <- (14, -1 -> 0, 4); (12, 5, 6) <- (17 -> 15, 3, 6)
    assert out.density[9, 1, 4] == prev.density[14, 0, 4]
    assert out.density[12, 5, 6] == prev.density[15, 3, 6]
    assert out.features[1, 12, 5, 6] == prev.features[1, 15, 3, 6]
    assert out.density[10, 7, 0] == prev.density[15, 5, 0]
    ref = reference_warp(prev, motion)
    assert_frames_equal(out, ref)


def test_warp_zero_motion_zero_residual_is_identity(tmp_path, rng):
    meta = make_meta((13, 9, 17), 3, num_frames=2)
    f0 = rand_full(rng, meta.grid_shape, 3)
    zero = TrainerFrame(
        motion=np.zeros((3, *meta.motion_shape), np.float32),
        residual_density=np.zeros(meta.grid_shape, np.float32),
        residual_features=np.zeros((3, *meta.grid_shape), np.float32),
    )
    assert_frames_equal(warp_previous(f0, zero.motion), f0)
    out = tmp_path / "seq"
    write_sequence(out, meta, [(0, f0), (1, zero)])
    frames = [f for _, f in iter_full_frames(out)]
    assert_frames_equal(frames[1], f0)
    assert frames_sha256(frames) == frames_sha256([f0, f0])


@pytest.mark.parametrize("shape", [(13, 9, 17), (8, 8, 8), (1, 3, 20), (24, 5, 2)])
@pytest.mark.parametrize("scale", [0.7, 3.0, 40.0])
def test_warp_matches_scipy_definition(rng, shape, scale):
    prev = rand_full(rng, shape, 3)
    nb = tuple(-(-n // 8) for n in shape)
    motion = (rng.standard_normal((3, *nb)) * scale).astype(np.float32)
    out = warp_previous(prev, motion)
    ref = reference_warp(prev, motion)
    assert out.density.dtype == np.float32 and out.features.dtype == np.float32
    np.testing.assert_allclose(out.density, ref.density, atol=2e-6)
    np.testing.assert_allclose(out.features, ref.features, atol=2e-6)


def test_warp_rejects_bad_motion(rng):
    prev = rand_full(rng, (8, 8, 8), 1)
    with pytest.raises(RerfUsageError, match="shape"):
        warp_previous(prev, np.zeros((3, 2, 1, 1), np.float32))
    with pytest.raises(RerfUsageError, match="finite"):
        warp_previous(prev, np.full((3, 1, 1, 1), np.nan, np.float32))


# --------------------------------------------------------------------------- validation: sequence.json


@pytest.mark.parametrize(
    "changes,field",
    [
        ({"grid_shape": [128, 0, 3]}, "grid_shape"),
        ({"grid_shape": [13, 9]}, "grid_shape"),
        ({"grid_shape": [13, 9, 17.0]}, "grid_shape"),
        ({"grid_shape": [MAX_GRID_DIM + 1, 9, 17]}, "grid_shape"),
        ({"grid_shape": [2048, 2048, 2048]}, "grid_shape"),  # > MAX_VOXELS
        ({"grid_shape": [10**30, 1, 1]}, "grid_shape"),
        ({"num_frames": 0}, "num_frames"),
        ({"num_frames": True}, "num_frames"),
        ({"num_frames": "3"}, "num_frames"),
        ({"fps": 0}, "fps"),
        ({"fps": "30"}, "fps"),
        ({"feature_channels": 0}, "feature_channels"),
        ({"feature_channels": 257}, "feature_channels"),
        ({"xyz_min": [0, 0]}, "xyz_min"),
        ({"xyz_max": [1, 1, -2]}, "xyz_max"),
        ({"density_shift": None}, "density_shift"),
        ({"motion_block": 4}, "motion_block"),
        ({"motion_block": 8.0}, "motion_block"),
        ({"decoder": "weights.pt"}, "decoder"),
        ({"version": 2}, "version"),
        ({"version": "1"}, "version"),
        ({"format": "something-else"}, "format"),
        ({"first_frame": -1}, "first_frame"),
        ({"first_frame": 999_999}, "first_frame"),
        ({"keyframes": [2, 1]}, "keyframes"),
        ({"keyframes": [1, 1]}, "keyframes"),
        ({"keyframes": [99]}, "keyframes"),
        ({"keyframes": [-1]}, "keyframes"),
        ({"keyframes": "1"}, "keyframes"),
        ({"keyframes": [1.5]}, "keyframes"),
        ({"fps": _DELETE}, "fps"),
        ({"motion_block": _DELETE}, "motion_block"),
        ({"format": _DELETE}, "format"),
    ],
)
def test_bad_sequence_json_names_file_and_field(seq, changes, field):
    out, _, _ = seq
    rewrite_json(out, **changes)
    with pytest.raises(RerfFormatError) as ei:
        read_meta(out)
    msg = str(ei.value)
    assert "sequence.json" in msg and f"'{field}'" in msg, msg


def test_error_message_format(seq):
    out, _, _ = seq
    rewrite_json(out, grid_shape=[128, 0, 3])
    with pytest.raises(RerfFormatError) as ei:
        read_meta(out)
    assert str(ei.value) == (
        f"{out}/sequence.json: field 'grid_shape' must be 3 positive integers, got [128, 0, 3]"
    )


@pytest.mark.parametrize(
    "text",
    ["{not json", "", "[1, 2, 3]", '{"format": "rerf-grid-sequence", "fps": NaN}', "\xff\xfe"],
)
def test_bad_json_names_file(seq, text):
    out, _, _ = seq
    (out / "sequence.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(RerfFormatError, match=r"sequence.json"):
        read_meta(out)


def test_duplicate_json_key(seq):
    out, _, _ = seq
    text = (out / "sequence.json").read_text()
    (out / "sequence.json").write_text(text.replace('"fps": 30.0', '"fps": 30.0, "fps": 25.0'))
    with pytest.raises(RerfFormatError, match="duplicate key 'fps'"):
        read_meta(out)


def test_missing_directory_and_file(tmp_path, seq):
    with pytest.raises(RerfFormatError, match="nope"):
        read_meta(tmp_path / "nope")
    out, meta, _ = seq
    (out / "sequence.json").unlink()
    with pytest.raises(RerfFormatError, match=r"sequence.json"):
        read_meta(out)
    frame_path(out, 2).unlink()
    with pytest.raises(RerfFormatError, match=r"000002.npz"):
        read_frame(out, 2, meta)


def test_meta_constructor_validates():
    with pytest.raises(RerfUsageError, match="grid_shape"):
        make_meta((0, 1, 1))
    with pytest.raises(RerfUsageError, match="motion_block"):
        make_meta(motion_block=4)
    with pytest.raises(RerfUsageError, match="reserved"):
        make_meta(extra={"fps": 3})
    with pytest.raises(RerfUsageError, match="JSON"):
        make_meta(extra={"x": float("nan")})
    m = make_meta((np.int64(8), 8, 8), np.int32(2))
    assert m.grid_shape == (8, 8, 8) and type(m.grid_shape[0]) is int


# --------------------------------------------------------------------------- validation: frames


def frame_error(out: Path, meta: SequenceMeta, index: int = 1) -> str:
    with pytest.raises(RerfFormatError) as ei:
        read_frame(out, index, meta)
    return str(ei.value)


def test_frame_wrong_key(seq, rng):
    out, meta, frames = seq
    write_raw_npz(frame_path(out, 1), density=frames[1].density, feature=frames[1].features)
    msg = frame_error(out, meta)
    assert "000001.npz" in msg and "'features'" in msg and "missing" in msg
    write_raw_npz(
        frame_path(out, 1),
        density=frames[1].density,
        features=frames[1].features,
        extra=np.zeros(1),
    )
    msg = frame_error(out, meta)
    assert "000001.npz" in msg and "'extra'" in msg


def test_frame_wrong_dtype(seq):
    out, meta, frames = seq
    write_raw_npz(
        frame_path(out, 1),
        density=frames[1].density.astype(np.float64),
        features=frames[1].features,
    )
    msg = frame_error(out, meta)
    assert "000001.npz" in msg and "'density'" in msg and "float64" in msg


def test_frame_object_dtype_not_unpickled(seq):
    out, meta, frames = seq
    write_raw_npz(
        frame_path(out, 1), density=np.array([None], dtype=object), features=frames[1].features
    )
    msg = frame_error(out, meta)
    assert "000001.npz" in msg and "'density'" in msg and "object" in msg


def test_frame_wrong_shape(seq):
    out, meta, frames = seq
    write_raw_npz(frame_path(out, 2), density=frames[2].density, features=frames[2].features[:2])
    msg = frame_error(out, meta, 2)
    assert msg == (
        f"{out}/frames/000002.npz: field 'features' has shape (2, 13, 9, 17), expected (3, 13, 9, 17)"
    )


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_frame_non_finite(seq, bad):
    out, meta, frames = seq
    feats = frames[1].features.copy()
    feats[2, 3, 4, 5] = bad
    write_raw_npz(frame_path(out, 1), density=frames[1].density, features=feats)
    msg = frame_error(out, meta)
    assert "000001.npz" in msg and "'features'" in msg and "(2, 3, 4, 5)" in msg


def test_trainer_frame_validation(tmp_path, rng):
    meta = make_meta((13, 9, 17), 2, num_frames=2)
    out = tmp_path / "seq"
    write_sequence(
        out, meta, [(0, rand_full(rng, meta.grid_shape, 2)), (1, rand_trainer(rng, meta))]
    )
    tf = read_frame(out, 1, meta)
    assert isinstance(tf, TrainerFrame)
    write_raw_npz(
        frame_path(out, 1),
        motion=np.zeros((3, 1, 1, 1), np.float32),
        residual_density=tf.residual_density,
        residual_features=tf.residual_features,
    )
    msg = frame_error(out, meta)
    assert "000001.npz" in msg and "'motion'" in msg and "(3, 2, 2, 3)" in msg
    write_raw_npz(frame_path(out, 1), motion=tf.motion, residual_density=tf.residual_density)
    msg = frame_error(out, meta)
    assert "'residual_features'" in msg and "missing" in msg
    # the first frame must be full
    write_raw_npz(
        frame_path(out, 0),
        motion=tf.motion,
        residual_density=tf.residual_density,
        residual_features=tf.residual_features,
    )
    msg = frame_error(out, meta, 0)
    assert "000000.npz" in msg and "first frame" in msg


def test_frame_corrupt_zip(seq):
    out, meta, _ = seq
    frame_path(out, 1).write_bytes(b"PK\x03\x04 this is not a zip")
    assert "000001.npz" in frame_error(out, meta)
    # truncated file
    data = frame_path(out, 2).read_bytes()
    frame_path(out, 2).write_bytes(data[: len(data) // 2])
    assert "000002.npz" in frame_error(out, meta, 2)


def test_frame_bit_flip_in_data_is_caught(seq):
    out, meta, _ = seq
    data = bytearray(frame_path(out, 1).read_bytes())
    pos = data.find(b"features.npy")
    data[pos + 2000] ^= 0x01  # inside the features array data
    frame_path(out, 1).write_bytes(bytes(data))
    msg = frame_error(out, meta)
    assert "000001.npz" in msg and "'features'" in msg


def _npz_with_header(arrays: dict[str, tuple[str, tuple[int, ...]]], payload: bytes = b"") -> bytes:
    """An npz whose members have crafted .npy headers followed by ``payload`` only."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for key, (descr, shape) in arrays.items():
            hdr = io.BytesIO()
            np.lib.format.write_array_header_1_0(
                hdr, {"descr": descr, "fortran_order": False, "shape": shape}
            )
            zf.writestr(key + ".npy", hdr.getvalue() + payload)
    return buf.getvalue()


def test_huge_header_rejected_without_allocating(seq):
    out, meta, _ = seq
    huge = (100000, 100000, 100000)
    frame_path(out, 1).write_bytes(
        _npz_with_header({"density": ("<f4", huge), "features": ("<f4", (3, *huge))}, b"\0" * 64)
    )
    t0 = time.perf_counter()
    msg = frame_error(out, meta)
    assert time.perf_counter() - t0 < 1.0
    assert "000001.npz" in msg and "'density'" in msg and "(100000, 100000, 100000)" in msg
    # correct shape declared but the data is missing: caught from the zip entry size, before reading
    frame_path(out, 1).write_bytes(
        _npz_with_header(
            {"density": ("<f4", (13, 9, 17)), "features": ("<f4", (3, 13, 9, 17))}, b"\0" * 8
        )
    )
    msg = frame_error(out, meta)
    assert "000001.npz" in msg and "truncated" in msg


def test_fortran_order_and_big_endian_frames_are_read(seq):
    out, meta, frames = seq
    d = np.asfortranarray(frames[1].density)
    f = frames[1].features.astype(">f4")
    write_raw_npz(frame_path(out, 1), density=d, features=f)
    got = read_frame(out, 1, meta)
    assert_frames_equal(got, frames[1])
    assert got.features.dtype.isnative


# --------------------------------------------------------------------------- writer


def test_writer_refuses_existing_without_force(seq, rng):
    out, meta, _ = seq
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(RerfUsageError, match=r"exists; use force=True to overwrite"):
        SequenceWriter(out, meta)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["SEQ"]
    # with force it is replaced
    new = [rand_full(rng, meta.grid_shape, meta.feature_channels) for _ in range(3)]
    write_sequence(out, meta, enumerate(new), force=True)
    assert frames_sha256(f for _, f in iter_full_frames(out)) == frames_sha256(new)
    assert sorted(p.name for p in out.parent.iterdir()) == ["SEQ"]


def test_writer_force_refuses_unrelated_directory(tmp_path, rng):
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"meow")
    meta = make_meta((8, 8, 8), 1, num_frames=1)
    with pytest.raises(RerfUsageError, match="refusing"):
        SequenceWriter(other, meta, force=True)
    assert (other / "cat.jpg").read_bytes() == b"meow"
    empty = tmp_path / "empty"
    empty.mkdir()
    write_sequence(empty, meta, [(0, rand_full(rng, (8, 8, 8), 1))], force=True)
    assert read_meta(empty) == meta


def test_writer_exception_leaves_nothing(tmp_path, seq, rng):
    out, meta, frames = seq
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(KeyError), SequenceWriter(out, meta, force=True) as w:
        w.write_frame(0, frames[0])
        raise KeyError("boom")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["SEQ"]

    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError), SequenceWriter(fresh, meta) as w:
        w.write_frame(0, frames[0])
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["SEQ"]


def test_writer_refuses_missing_parent(tmp_path):
    with pytest.raises(RerfUsageError, match="does not exist"):
        SequenceWriter(tmp_path / "a" / "b", make_meta())
    assert list(tmp_path.iterdir()) == []


def test_writer_requires_every_frame(tmp_path, rng):
    meta = make_meta((8, 8, 8), 1, num_frames=3)
    out = tmp_path / "seq"
    f = rand_full(rng, (8, 8, 8), 1)
    with pytest.raises(RerfUsageError, match="first missing: 2"):
        write_sequence(out, meta, [(0, f), (1, f)])
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RerfUsageError, match="outside"):
        write_sequence(out, meta, [(0, f), (1, f), (3, f)])
    with pytest.raises(RerfUsageError, match="already written"):
        write_sequence(out, meta, [(0, f), (0, f)])
    assert list(tmp_path.iterdir()) == []


def test_writer_validates_frames(tmp_path, rng):
    meta = make_meta((8, 8, 8), 2, num_frames=2)
    out = tmp_path / "seq"
    good = rand_full(rng, (8, 8, 8), 2)
    cases = [
        GridFrame(good.density.astype(np.float64), good.features),  # no silent cast
        GridFrame(good.density, good.features[:1]),
        GridFrame(good.density[:, :, :7], good.features),
        GridFrame(np.full((8, 8, 8), np.nan, np.float32), good.features),
    ]
    for bad in cases:
        with pytest.raises(RerfUsageError, match="frame 1"):
            write_sequence(out, meta, [(0, good), (1, bad)])
    with pytest.raises(RerfUsageError, match="first frame"):
        write_sequence(out, meta, [(0, rand_trainer(rng, meta)), (1, good)])
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- hashing


def test_frames_sha256(rng):
    frames = [rand_full(rng, (5, 6, 7), 2) for _ in range(2)]
    h1 = frames_sha256(frames)
    assert h1 == frames_sha256(frames) and len(h1) == 64
    # defined as raw little-endian float32 bytes, density then features, C order
    h = hashlib.sha256()
    for f in frames:
        h.update(f.density.astype("<f4").tobytes())
        h.update(f.features.astype("<f4").tobytes())
    assert h.hexdigest() == h1
    # memory layout does not matter
    alt = [GridFrame(np.asfortranarray(f.density), f.features.astype(">f4")) for f in frames]
    assert frames_sha256(alt) == h1
    h2 = hashlib.sha256()
    for f in alt:
        update_frame_hash(h2, f)
    assert h2.hexdigest() == h1
    # a single bit matters
    flipped = frames[1].features.copy()
    flipped.view(np.uint32)[1, 2, 3, 4] ^= 1
    assert frames_sha256([frames[0], GridFrame(frames[1].density, flipped)]) != h1
    assert frames_sha256(frames[::-1]) != h1
    with pytest.raises(RerfUsageError, match="float32"):
        frames_sha256([GridFrame(frames[0].density.astype(np.float64), frames[0].features)])


def test_decoded_meta_has_no_keyframes(rng):
    """`rerf decode` writes full frames, so the GOF starts the trainer asked for are not carried over."""
    from rerf_codec.codec.decoder import Decoder
    from rerf_codec.codec.encoder import EncoderConfig, encode_frames

    meta = dataclasses.replace(make_meta((9, 9, 9), 2, num_frames=2), keyframes=(1,))
    buf = io.BytesIO()
    encode_frames(meta, [(0, rand_full(rng, (9, 9, 9), 2)), (1, rand_full(rng, (9, 9, 9), 2))], buf, EncoderConfig())
    buf.seek(0)
    dec = Decoder(buf)
    assert dec.header.meta["sequence"]["keyframes"] == [1]
    assert dec.sequence_meta().keyframes == ()
