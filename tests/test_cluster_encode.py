"""Segment-parallel encoding on a local Ray instance (issue 16, DESIGN.md decision 13).

One ``ray.init(num_cpus=2)`` serves the whole module (Ray starts slowly). The bytes of a
run depend on the config (``segment_frames`` included), never on the workers: serial ==
parallel, a worker killed mid-task is retried with the same result, and what can be
checked is checked before any task is handed out.
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'rerf[ray]'")

from cli.main import cli  # noqa: E402
from rerf_codec import cluster  # noqa: E402
from rerf_codec.bitstream import CHUNK_HEAD, GOF_REASON_NAMES, StreamReader, encode_gof_payload  # noqa: E402
from rerf_codec.codec.decoder import decode_all  # noqa: E402
from rerf_codec.codec.encoder import (  # noqa: E402
    EncoderConfig,
    SegmentJob,
    encode_frames,
    encode_segment,
    encode_sequence,
)
from rerf_codec.errors import RerfFormatError, RerfUsageError  # noqa: E402
from rerf_codec.gridseq import iter_frames_with_motion, read_meta  # noqa: E402
from rerf_codec.synthetic import SyntheticSpec, write_synthetic_sequence  # noqa: E402

SPEC = SyntheticSpec(shape=(40, 32, 24), feature_channels=3, num_frames=12, seed=1)
CONFIG = EncoderConfig(gof=2, segment_frames=4)


@pytest.fixture(scope="module")
def seq(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cluster") / "seq"
    write_synthetic_sequence(d, SPEC)
    return d


@pytest.fixture(scope="module")
def serial(seq, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial") / "serial.rerf"
    report = encode_sequence(seq, out, CONFIG)
    return out.read_bytes(), report


def _reasons(data: bytes) -> list[tuple[int, str]]:
    gofs = StreamReader(io.BytesIO(data)).iter_gofs()
    return [(g.first_frame, GOF_REASON_NAMES[g.frames[0].gof_reason]) for g in gofs]  # type: ignore[union-attr]


def _one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


# --------------------------------------------------------------------------- serial, no Ray involved


def test_serial_segments_equal_the_streaming_encoder_and_start_gofs(seq, serial):
    data, report = serial
    meta = read_meta(seq)
    buf = io.BytesIO()
    again = encode_frames(meta, iter_frames_with_motion(seq, meta), buf, CONFIG)
    assert buf.getvalue() == data and again.sha256 == report.sha256
    assert [s["frames"] for s in report.segments] == [[0, 4], [4, 8], [8, 12]]
    reasons = dict(_reasons(data))
    assert reasons[0] == "first" and reasons[4] == "segment" and reasons[8] == "segment"
    frames, sha = decode_all(io.BytesIO(data))
    assert sha == report.sha256 and len(frames) == SPEC.num_frames
    assert StreamReader(io.BytesIO(data)).header.meta["encoder"]["segment_frames"] == 4


def test_one_segment_has_no_segment_starts(seq, tmp_path):
    rep = encode_sequence(seq, tmp_path / "one.rerf", EncoderConfig(gof=2))  # default: 5 GOFs = 10 frames
    assert [s["frames"] for s in rep.segments] == [[0, 10], [10, 12]]
    whole = encode_sequence(seq, tmp_path / "whole.rerf", EncoderConfig(gof=2, segment_frames=12))
    assert [r for _, r in _reasons((tmp_path / "whole.rerf").read_bytes())].count("segment") == 0
    assert len(whole.segments) == 1


def test_rate_control_budgets_per_segment(seq, tmp_path):
    cfg = EncoderConfig(gof=2, segment_frames=4, target_kbpf=4.0)
    rep = encode_sequence(seq, tmp_path / "rc.rerf", cfg)
    # each segment on its own meets its share: its bytes (the header in the first, index and
    # footer in the last) are within the quality steps' reach of 4 kB per frame
    assert abs(rep.file_bytes / SPEC.num_frames / 4000 - 1) < 0.15
    alone = encode_segment(SegmentJob(str(seq), 1, 4, 8, cfg, header_bytes=rep.header_bytes))  # apart, in any order
    assert rep.segments[1]["bytes"] == sum(len(encode_gof_payload(c)) + CHUNK_HEAD.size + 4 for c in alone.chunks)
    with open(tmp_path / "rc.rerf", "rb") as f:
        gofs = [g for g in StreamReader(f).iter_gofs() if 4 <= g.first_frame < 8]  # type: ignore[union-attr]
    assert [(g.quality_density, g.quality_features) for g in gofs] == [
        (c.quality_density, c.quality_features) for c in alone.chunks
    ]


def test_segment_frames_must_be_a_multiple_of_gof(seq, tmp_path):
    res = CliRunner().invoke(cli, ["encode", str(seq), "-o", str(tmp_path / "x.rerf"), "--gof", "3",
                                   "--segment-frames", "4"])  # fmt: skip
    assert "--segment-frames must be a positive multiple of gof" in _one_line_error(res)


# --------------------------------------------------------------------------- on Ray


def test_parallel_equals_serial_bytes(ray_cluster, seq, serial, tmp_path):
    data, report = serial
    with cluster.connect(2) as c:
        par = encode_sequence(seq, tmp_path / "par.rerf", CONFIG, runner=cluster.segment_runner(c), workers=2)
    assert (tmp_path / "par.rerf").read_bytes() == data
    assert par.sha256 == report.sha256  # the driver's decode-and-hash equals the serial encoder's hash
    assert [s["frames"] for s in par.segments] == [[0, 4], [4, 8], [8, 12]]
    assert all(s["worker"] and s["seconds"] > 0 for s in par.segments)
    assert {s["worker"].split(":")[1] for s in par.segments} != {str(os.getpid())}  # ran in Ray workers
    with cluster.connect(2) as c:  # the driver's serial decode for the hash can be skipped: same bytes
        quick = encode_sequence(seq, tmp_path / "quick.rerf", CONFIG, runner=cluster.segment_runner(c), workers=2,
                                reconstruction_hash=False)  # fmt: skip
    assert (tmp_path / "quick.rerf").read_bytes() == data and quick.sha256 is None


def test_cli_workers_json_reports_segments(ray_cluster, seq, serial, tmp_path):
    out = tmp_path / "cli.rerf"
    res = CliRunner().invoke(cli, ["encode", str(seq), "-o", str(out), "--gof", "2", "--segment-frames", "4",
                                   "--workers", "2", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert out.read_bytes() == serial[0] and rep["sha256"] == serial[1].sha256
    assert rep["workers"] == 2 and len(rep["segments"]) == 3
    assert {"segment", "frames", "gofs", "bytes", "seconds", "worker"} <= set(rep["segments"][0])
    assert sum(s["bytes"] for s in rep["segments"]) + rep["header_bytes"] < rep["file_bytes"]


class CrashOnce:
    """Kills its worker process (``os._exit``) the first time it is given ``segment``."""

    def __init__(self, marker: str, segment: int) -> None:
        self.marker, self.segment = marker, segment

    def __call__(self, job: SegmentJob):
        if job.number == self.segment and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os._exit(1)
        return encode_segment(job)


def test_a_killed_worker_is_retried_with_the_same_result(ray_cluster, seq, serial, tmp_path):
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    marker = tmp_path / "crashed"
    with cluster.connect(2) as c:
        runner = cluster.segment_runner(c, CrashOnce(str(marker), 1))
        rep = encode_sequence(seq, tmp_path / "retry.rerf", CONFIG, runner=runner, workers=2)
    assert marker.exists()  # the first attempt did die
    assert (tmp_path / "retry.rerf").read_bytes() == serial[0] and rep.sha256 == serial[1].sha256
    crashed_pid = marker.read_text()
    assert rep.segments[1]["worker"].split(":")[1] != crashed_pid


def _no_runner(jobs):
    raise AssertionError("a task was submitted")


@pytest.mark.parametrize("case", ["missing frame", "existing output", "bad config"])
def test_bad_input_fails_before_any_task(ray_cluster, seq, tmp_path, case):
    import shutil

    src, out, cfg = seq, tmp_path / "o.rerf", CONFIG
    if case == "missing frame":
        src = tmp_path / "seq"
        shutil.copytree(seq, src)
        (src / "frames" / "000009.npz").unlink()
    elif case == "existing output":
        out.write_bytes(b"keep me")
    else:
        cfg = EncoderConfig(gof=2, segment_frames=3)
    with pytest.raises(RerfUsageError):
        encode_sequence(src, out, cfg, runner=_no_runner, workers=2)
    assert not out.exists() or out.read_bytes() == b"keep me"
    if case == "missing frame":
        res = CliRunner().invoke(cli, ["encode", str(src), "-o", str(out), "--workers", "2"])
        assert "000009.npz" in _one_line_error(res) and not out.exists()


def test_a_worker_error_is_one_line_naming_the_segment(ray_cluster, seq, tmp_path):
    import shutil

    src = tmp_path / "seq"
    shutil.copytree(seq, src)
    (src / "frames" / "000006.npz").write_bytes(b"PK\x03\x04 not a zip")  # passes the existence check
    out = tmp_path / "bad.rerf"
    res = CliRunner().invoke(cli, ["encode", str(src), "-o", str(out), "--gof", "2", "--segment-frames", "4",
                                   "--workers", "2"])  # fmt: skip
    line = _one_line_error(res)
    assert line.startswith("rerf: error: segment 1 (frames 4:8): ") and "000006.npz" in line, line
    assert not out.exists()
    with cluster.connect(2) as c, pytest.raises(RerfFormatError, match=r"^segment 1 \(frames 4:8\)"):
        encode_sequence(src, out, CONFIG, runner=cluster.segment_runner(c), workers=2)


def test_segment_reads_only_its_frames_of_a_trainer_form_sequence(tmp_path):
    """A trainer-form sequence: a segment starting mid-chain replays from the latest full frame."""
    from rerf_codec.grids import GridFrame, SequenceMeta, TrainerFrame
    from rerf_codec.gridseq import write_sequence

    rng = np.random.default_rng(0)
    shape, c = (16, 16, 8), 2
    meta = SequenceMeta(num_frames=6, fps=30.0, grid_shape=shape, feature_channels=c, xyz_min=(-1, -1, -1),
                        xyz_max=(1, 1, 1), density_shift=-13.8155)  # fmt: skip
    first = GridFrame(density=rng.normal(0, 3, shape).astype(np.float32),
                      features=rng.normal(0, 1, (c, *shape)).astype(np.float32))  # fmt: skip
    frames: list = [first]
    for _ in range(5):
        frames.append(TrainerFrame(motion=rng.uniform(-1, 1, (3, 2, 2, 1)).astype(np.float32),
                                   residual_density=np.zeros(shape, np.float32),
                                   residual_features=rng.normal(0, 0.01, (c, *shape)).astype(np.float32)))  # fmt: skip
    write_sequence(tmp_path / "tf", meta, list(enumerate(frames)))
    cfg = EncoderConfig(gof=2, segment_frames=2)
    rep = encode_sequence(tmp_path / "tf", tmp_path / "tf.rerf", cfg)
    buf = io.BytesIO()
    encode_frames(meta, iter_frames_with_motion(tmp_path / "tf", meta), buf, cfg)
    assert buf.getvalue() == (tmp_path / "tf.rerf").read_bytes() and len(rep.segments) == 3
