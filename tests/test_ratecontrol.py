"""Rate control: ``EncoderConfig(target_kbpf=K)`` hits K kB (1000 B) per frame of the whole file."""

from __future__ import annotations

import io
import itertools
import json
import math
import sys
from pathlib import Path

import pytest
from conftest import encode_to_bytes, make_meta

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `cli` is a top-level package next to rerf_codec
    sys.path.insert(0, str(ROOT))

from click.testing import CliRunner  # noqa: E402

from cli.main import cli  # noqa: E402
from rerf_codec.bitstream import StreamReader  # noqa: E402
from rerf_codec.codec.decoder import decode_all  # noqa: E402
from rerf_codec.codec.encoder import EncoderConfig, encode_frames  # noqa: E402
from rerf_codec.errors import RerfUsageError  # noqa: E402
from rerf_codec.grids import GridFrame  # noqa: E402
from rerf_codec.gridseq import write_sequence  # noqa: E402
from rerf_codec.synthetic import SyntheticSpec, synthetic_frames  # noqa: E402

SPEC = SyntheticSpec(shape=(48, 48, 48), feature_channels=3, num_frames=12, occupancy=0.2, motion=1.0, seed=3)
TARGETS = (3.0, 8.0, 20.0)


@pytest.fixture(scope="module")
def frames() -> list[GridFrame]:
    return [GridFrame(d, f) for d, f, _ in synthetic_frames(SPEC)]


@pytest.fixture(scope="module")
def encoded(frames, tmp_path_factory):
    """K -> (path of the .rerf, EncodeReport) for every target."""
    d = tmp_path_factory.mktemp("rate")
    out = {}
    for k in TARGETS:
        data, report = encode_to_bytes(frames, EncoderConfig(gof=4, target_kbpf=k))
        path = d / f"k{k:g}.rerf"
        path.write_bytes(data)
        out[k] = (path, report)
    return out


def info(path: Path) -> dict:
    res = CliRunner().invoke(cli, ["info", str(path), "--json"])
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)


@pytest.mark.parametrize("k", TARGETS)
def test_file_size_hits_target(encoded, k):
    path, report = encoded[k]
    size = path.stat().st_size
    assert size == report.file_bytes
    per_frame = size / SPEC.num_frames
    assert abs(per_frame / (k * 1000.0) - 1.0) <= 0.10, (k, per_frame)
    decoded, sha = decode_all(io.BytesIO(path.read_bytes()))
    assert sha == report.sha256, "closed loop broken under rate control (the chosen trial's digest)"
    assert len(decoded) == SPEC.num_frames
    # GOFs of 4 frames, each at its own quality
    doc = info(path)
    assert doc["file_bytes"] == size
    assert [(g["first_frame"], g["num_frames"]) for g in doc["gofs"]] == [(0, 4), (4, 4), (8, 4)]
    assert [(g["density_quality"], g["quality"]) for g in doc["gofs"]] == [tuple(q) for q in report.gof_qualities]
    assert doc["header"]["encoder"]["target_kbpf"] == k


def test_qualities_follow_the_target(encoded):
    """A larger budget buys a higher quality in every GOF (as `rerf info --json` reports it)."""
    qualities = {k: [g["quality"] for g in info(encoded[k][0])["gofs"]] for k in TARGETS}
    assert len({tuple(q) for q in qualities.values()}) == len(TARGETS), qualities
    for lo, hi in itertools.pairwise(TARGETS):
        assert all(a < b for a, b in zip(qualities[lo], qualities[hi], strict=True)), qualities
    gof_q = [(g.quality_density, g.quality_features) for g in StreamReader(io.BytesIO(encoded[8.0][0].read_bytes())).iter_gofs()]
    assert gof_q == [tuple(q) for q in encoded[8.0][1].gof_qualities]


@pytest.mark.parametrize("k", [0.0, -1.0, math.nan, math.inf, -math.inf])
def test_invalid_target_is_a_usage_error(frames, k):
    config = EncoderConfig(gof=4, target_kbpf=k)
    with pytest.raises(RerfUsageError, match="target_kbpf"):
        config.validate()
    meta = make_meta(SPEC.shape, SPEC.feature_channels, 2)
    with pytest.raises(RerfUsageError):
        encode_frames(meta, list(enumerate(frames[:2])), io.BytesIO(), config)


@pytest.mark.parametrize("k", ["0", "-1", "nan", "inf", "abc"])
def test_cli_rejects_invalid_target(frames, tmp_path, k):
    meta = make_meta(SPEC.shape, SPEC.feature_channels, 2)
    write_sequence(tmp_path / "seq", meta, list(enumerate(frames[:2])))
    res = CliRunner().invoke(cli, ["encode", str(tmp_path / "seq"), "-o", str(tmp_path / "x.rerf"), "--target-kbpf", k])
    assert res.exit_code == 2, (res.exit_code, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rerf: error: ") and "Traceback" not in res.stderr, res.stderr
    assert not (tmp_path / "x.rerf").exists()


@pytest.mark.parametrize("k", [4.0, 5.0])
def test_targets_near_a_first_trial(frames, k):
    """Targets where a GOF's first trial lands within a few % of its budget (the secant step
    rounds to zero quality points; this used to crash with a single trial to fit)."""
    data, report = encode_to_bytes(frames, EncoderConfig(gof=4, target_kbpf=k))
    assert abs(len(data) / SPEC.num_frames / (k * 1000.0) - 1.0) <= 0.10
    assert decode_all(io.BytesIO(data))[1] == report.sha256


@pytest.mark.parametrize(("k", "pinned"), [(100.0, 100), (0.05, 1)])
def test_unreachable_target_pins_the_quality(frames, k, pinned):
    """A target above quality 100's size (or below quality 1's) encodes at that quality."""
    data, report = encode_to_bytes(frames, EncoderConfig(gof=4, target_kbpf=k))
    assert all(q == (pinned, pinned) for q in report.gof_qualities[1:]), report.gof_qualities
    per_frame = len(data) / SPEC.num_frames
    assert per_frame < k * 1000.0 if pinned == 100 else per_frame > k * 1000.0
    assert decode_all(io.BytesIO(data))[1] == report.sha256


def test_rate_control_is_deterministic(frames, encoded):
    data, _ = encode_to_bytes(frames, EncoderConfig(gof=4, target_kbpf=8.0))
    assert data == encoded[8.0][0].read_bytes()
