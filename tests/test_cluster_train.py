"""GOF-parallel training on a local Ray instance (issue 16, DESIGN.md decisions 13 and 14).

One ``ray.init(num_cpus=2)`` for the module. A tiny scene (4 frames, 2 GOFs of 2): the
serial GOF run and the parallel one write the same arrays; an interrupted run resumed
re-does no finished GOF; errors are one line naming the GOF; bad input fails before any
task is submitted.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'rerf[ray]'")

from cli.main import cli  # noqa: E402
from rerf_codec import cluster  # noqa: E402
from rerf_codec.datasets.demo_scene import render_demo_dataset  # noqa: E402
from rerf_codec.errors import RerfFormatError, RerfUsageError  # noqa: E402
from rerf_codec.grids import GridFrame  # noqa: E402
from rerf_codec.gridseq import read_decoder, read_frame, read_meta  # noqa: E402
from rerf_codec.train.checkpoint import checkpoint_dir  # noqa: E402
from rerf_codec.train.config import TrainConfig  # noqa: E402
from rerf_codec.train.driver import Interrupted, TrainRequest  # noqa: E402
from rerf_codec.train.gofs import gof_layout, train_sequence_gofs  # noqa: E402

TINY = {"resolution": 16, "iters_key": 60, "iters_motion": 10, "iters_residual": 15, "batch_rays": 512,
        "batch_rays_residual": 256, "refresh_factor": 1000.0, "refresh_db": 1000.0, "iters_refresh": 20,
        "growth": (0.3,), "mlp_width": 16}  # fmt: skip
CONFIG = TrainConfig(**TINY)
TINY_ARGS = ["--resolution", "16", "--iters-key", "60", "--iters-motion", "10", "--iters-residual", "15"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gofs") / "demo"
    render_demo_dataset(out, frames=4, cameras=5, test_cameras=1, size=24)
    return out


@pytest.fixture(scope="module")
def serial(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial") / "seq"
    summary = train_sequence_gofs(TrainRequest(demo, out), CONFIG, 2)
    return out, summary


def _arrays(seq: Path) -> dict[str, np.ndarray]:
    meta = read_meta(seq)
    out: dict[str, np.ndarray] = {}
    for t in meta.frame_indices:
        fr = read_frame(seq, t, meta)
        for k, v in vars(fr).items():
            out[f"{t}.{k}"] = v
    for k, v in (read_decoder(seq, meta) or {}).items():
        out[f"mlp.{k}"] = v
    return out


def _same(a: Path, b: Path) -> None:
    x, y = _arrays(a), _arrays(b)
    assert sorted(x) == sorted(y)
    for k in x:
        assert x[k].dtype == y[k].dtype and np.array_equal(x[k], y[k]), k
    assert read_meta(a) == read_meta(b)


def test_layout_and_serial_output(serial):
    out, summary = serial
    assert gof_layout(range(0, 5), 2) == [range(0, 2), range(2, 4), range(4, 5)]
    meta = read_meta(out)
    assert meta.keyframes == (2,) and meta.num_frames == 4
    assert isinstance(read_frame(out, 2, meta), GridFrame)  # a GOF's first frame is stored whole
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in log] == ["key", "residual", "gof-key", "residual"]
    assert summary["gof"] == 2 and [g["frames"] for g in summary["gofs"]] == [[0, 2], [2, 4]]
    assert all(np.isfinite(r["test_psnr"]) for r in log)
    assert not checkpoint_dir(out).exists()


class CrashOnce:
    """Runs ``fn``, but kills its worker process (``os._exit``) the first time it gets GOF ``number``."""

    def __init__(self, fn, marker: str, number: int) -> None:
        self.fn, self.marker, self.number = fn, marker, number

    def __call__(self, job):
        if getattr(job, "number", None) == self.number and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os._exit(1)
        return self.fn(job)


def test_parallel_equals_serial_even_when_a_worker_dies(ray_cluster, demo, serial, tmp_path):
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    out, marker = tmp_path / "par", tmp_path / "crashed"
    with cluster.connect(2) as c:
        base = cluster.task_runner(c)

        def runner(fn, jobs, describe):  # GOF 1's first attempt dies with its worker; Ray retries it
            return base(CrashOnce(fn, str(marker), 1), jobs, describe)

        summary = train_sequence_gofs(TrainRequest(demo, out), CONFIG, 2, runner=runner, workers=2)
    assert marker.exists()
    _same(serial[0], out)
    workers = {g["worker"] for g in summary["gofs"]}
    assert all(w and not w.endswith(f":{os.getpid()}") for w in workers)  # ran in Ray workers
    assert summary["gofs"][1]["worker"].split(":")[-1] != marker.read_text()  # the retry ran in another process


def test_interrupted_run_resumes_without_redoing_a_finished_gof(ray_cluster, demo, serial, tmp_path):
    out = tmp_path / "seq"
    with pytest.raises(Interrupted):
        train_sequence_gofs(TrainRequest(demo, out), CONFIG, 2, stop_after_gofs=1)
    finished = checkpoint_dir(out) / "gofs" / "000000" / "manifest.json"
    assert finished.is_file() and not out.exists()
    before = finished.stat().st_mtime_ns
    trained: list[int] = []

    def events(kind, info):
        if kind == "gof":
            trained.append(info["result"].number)
            assert finished.stat().st_mtime_ns == before  # GOF 0 untouched while GOF 1 ran

    with pytest.raises(RerfUsageError, match="--resume"):
        train_sequence_gofs(TrainRequest(demo, out), CONFIG, 2)
    with cluster.connect(2) as c:
        summary = train_sequence_gofs(TrainRequest(demo, out, resume=True), CONFIG, 2, runner=cluster.task_runner(c),
                                      workers=2, events=events)  # fmt: skip
    assert trained == [1]
    assert [g["resumed"] for g in summary["gofs"]] == [True, False]
    _same(serial[0], out)


def _one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def _no_runner(fn, jobs, describe):
    raise AssertionError("a task was submitted")


def test_bad_input_fails_before_any_task(demo, tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    with pytest.raises(RerfUsageError, match="exists"):
        train_sequence_gofs(TrainRequest(demo, taken), CONFIG, 2, runner=_no_runner)
    (taken / "mine.txt").write_text("keep")  # --force replaces a grid sequence, never this: refused up front
    with pytest.raises(RerfUsageError, match="not a grid sequence"):
        train_sequence_gofs(TrainRequest(demo, taken, force=True), CONFIG, 2, runner=_no_runner)
    assert not checkpoint_dir(taken).exists() and (taken / "mine.txt").read_text() == "keep"
    with pytest.raises(RerfUsageError, match=r"outside|frames"):
        train_sequence_gofs(TrainRequest(demo, tmp_path / "x", frames=range(2, 9)), CONFIG, 2, runner=_no_runner)
    res = CliRunner().invoke(cli, ["train", str(demo), "-o", str(tmp_path / "y"), "--workers", "2"])
    assert "--gof" in _one_line_error(res)
    res = CliRunner().invoke(cli, ["train", str(tmp_path / "nope"), "-o", str(tmp_path / "y"), "--gof", "2",
                                   "--workers", "2"])  # fmt: skip
    _one_line_error(res)
    assert not (tmp_path / "y").exists() and not checkpoint_dir(tmp_path / "y").exists()


def test_a_worker_error_is_one_line_naming_the_gof(ray_cluster, demo, tmp_path):
    bad = tmp_path / "demo"
    shutil.copytree(demo, bad)
    target = sorted((bad / "images" / "000003").glob("*.png"))[-1]
    target.write_bytes(b"\x89PNG\r\n\x1a\n broken")  # frame 3: GOF 1 reads it, in a worker
    out = tmp_path / "seq"
    with cluster.connect(2) as c, pytest.raises(RerfFormatError, match=r"^GOF 1 \(frames 2:4\): .*000003") as err:
        train_sequence_gofs(TrainRequest(bad, out), CONFIG, 2, runner=cluster.task_runner(c), workers=2)
    assert "\n" not in str(err.value) and not out.exists()
    assert (checkpoint_dir(out) / "gofs" / "000000" / "manifest.json").is_file()  # GOF 0 kept for --resume
