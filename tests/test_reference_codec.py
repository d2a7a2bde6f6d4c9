"""The rerf-reference codec (ReRF's JPEG-style codec): table and quality scaling, a keyframe that
decodes to exactly the expected dequantised grid, closed-loop GOFs, byte accounting, refusals."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
import scipy.fft

from rerf_codec.codec.occupancy import default_threshold, occupancy_mask
from rerf_codec.errors import RerfFormatError, RerfUsageError
from rerf_codec.grids import GridFrame, SequenceMeta, update_frame_hash
from rerf_codec.reference import ReferenceConfig, decode_reference, encode_reference, quality_steps, quant_table
from rerf_codec.reference.codec import JPEG_LUMINANCE
from rerf_codec.synthetic import SyntheticSpec, synthetic_frames, synthetic_meta


@pytest.fixture(scope="module")
def seq():
    spec = SyntheticSpec(shape=(24, 24, 24), feature_channels=4, num_frames=5, occupancy=0.3)
    meta = SequenceMeta.from_json_dict(synthetic_meta(spec), "<synthetic>")
    items = [(i, GridFrame(d, f), m) for i, (d, f, m) in enumerate(synthetic_frames(spec))]
    return meta, items


def encode(seq, **kw):
    meta, items = seq
    buf = io.BytesIO()
    rep = encode_reference(meta, [(i, f) for i, f, _ in items], buf, ReferenceConfig(**kw))
    return buf.getvalue(), rep


def decode(data: bytes):
    return list(decode_reference(io.BytesIO(data)))


def test_quant_table_and_ijg_scaling():
    t = quant_table()
    s = 0.5 * (JPEG_LUMINANCE + JPEG_LUMINANCE.T)
    assert t.shape == (8, 8, 8) and t[0, 0, 0] == 16
    np.testing.assert_array_equal(t[:, :, 0], np.maximum(s, np.maximum(s[:, 0][None, :], s[:, 0][:, None])))
    assert t[7, 7, 7] == s[7, 7] and t.max() == s.max()
    np.testing.assert_array_equal(quality_steps(50), t)  # factor 100
    np.testing.assert_array_equal(quality_steps(25), 2 * t)  # 5000 / 25 = 200
    np.testing.assert_allclose(quality_steps(90), t * 0.2)  # 200 - 180 = 20
    np.testing.assert_array_equal(quality_steps(100), np.ones((8, 8, 8)))
    with pytest.raises(RerfUsageError):
        quality_steps(0)


def test_keyframe_decodes_to_the_expected_dequantised_grid(seq):
    """Re-derive the first frame from the description alone (8-bit scaling, 3D DCT, IJG steps,
    rint, zero-filled empty blocks) and compare with the decoder's output exactly."""
    meta, items = seq
    data, _ = encode(seq, quality=80)
    got = decode(data)[0][2]
    frame = items[0][1]
    mask = occupancy_mask(frame.density, default_threshold(meta.density_shift))
    vm = np.repeat(np.repeat(np.repeat(mask, 8, 0), 8, 1), 8, 2)
    steps = quality_steps(80)
    expected = np.zeros((5, 24, 24, 24))
    for c, values in enumerate([frame.density, *frame.features]):
        group = frame.density[vm] if c == 0 else frame.features[:, vm]
        lo, hi = float(group.min()), float(group.max())
        scale, mid = np.float32(255.0 / (hi - lo)), np.float32(0.5 * (lo + hi))
        for bx, by, bz in zip(*np.nonzero(mask), strict=True):
            sl = np.s_[bx * 8 : bx * 8 + 8, by * 8 : by * 8 + 8, bz * 8 : bz * 8 + 8]
            s = (values[sl].astype(np.float64) - float(mid)) * float(scale)
            lv = np.clip(np.rint(scipy.fft.dctn(s, norm="ortho") / steps), -1023, 1023)
            expected[(c, *sl)] = scipy.fft.idctn(lv * steps, norm="ortho") / float(scale) + float(mid)
    np.testing.assert_array_equal(got.density, expected[0].astype(np.float32))
    np.testing.assert_array_equal(got.features, expected[1:].astype(np.float32))


def test_closed_loop_round_trip_and_accounting(seq):
    data, rep = encode(seq, quality=90, gof=3)
    frames = decode(data)
    assert [t for _, t, _ in frames] == ["intra", "residual", "residual", "intra", "residual"]
    assert [i for i, _, _ in frames] == [0, 1, 2, 3, 4]
    h = hashlib.sha256()
    for _, _, fr in frames:
        update_frame_hash(h, fr)
    assert h.hexdigest() == rep.sha256  # the decoder reproduces the encoder's reconstruction
    assert rep.file_bytes == len(data) == rep.header_bytes + sum(fr.total_bytes for fr in rep.frames)
    res = [fr for fr in rep.frames if fr.frame_type == "residual"]
    assert all(fr.bytes["motion"] > 0 for fr in res)  # flags at least
    assert all(fr.bytes["mask"] == 4 for fr in rep.frames)  # 3×3×3 blocks: 27 raw bits
    assert all(fr.bytes["coefficients"] > 0 for fr in rep.frames)


def test_quality_trades_bytes_for_psnr(seq):
    _meta, items = seq
    sizes, errs = [], []
    for q in (50, 80, 95):
        data, _ = encode(seq, quality=q)
        frames = decode(data)
        sizes.append(len(data))
        errs.append(float(np.mean([np.mean((fr.features - it[1].features) ** 2) for (_, _, fr), it in
                                    zip(frames, items, strict=True)])))
    assert sizes[0] < sizes[1] < sizes[2]
    assert errs[0] > errs[1] > errs[2]


def test_intra_only_and_zero_motion(seq):
    data, rep = encode(seq, quality=75, gof=1)
    assert [t for _, t, _ in decode(data)] == ["intra"] * 5
    data, rep = encode(seq, quality=75, motion="zero")
    assert all(fr.bytes["motion"] == 4 for fr in rep.frames if fr.frame_type == "residual")  # flag bits only


def test_damaged_streams_are_format_errors(seq):
    data, _ = encode(seq, quality=75)
    with pytest.raises(RerfFormatError):
        decode(data[:-10])
    with pytest.raises(RerfFormatError):
        decode(b"XXXX" + data[4:])
    with pytest.raises(RerfFormatError):
        decode(data + b"\x00")


def test_bad_config_and_frames(seq):
    meta, items = seq
    with pytest.raises(RerfUsageError):
        encode_reference(meta, [], io.BytesIO(), ReferenceConfig(quality=101))
    with pytest.raises(RerfUsageError, match="num_frames"):
        encode_reference(meta, [(0, items[0][1])], io.BytesIO(), ReferenceConfig())
