"""rerf eval: PSNR/SSIM of stream renders against ground truth and against the uncompressed reference."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from player_fixtures import FRAMES, build

from cli.main import cli
from rerf_codec.eval import LPIPS_STATUS, evaluate
from rerf_codec.metrics import psnr, ssim


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    return build(tmp_path_factory.mktemp("eval"))


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_metrics_known_values():
    rng = np.random.default_rng(1)
    img = rng.random((24, 24, 3))
    assert ssim(img, img) == pytest.approx(1.0) and psnr(img, img) == math.inf
    assert psnr(img, np.clip(img + 0.1, None, 10)) == pytest.approx(20.0)
    # constant images: the structure term is 1, SSIM = (2ab + C1) / (a² + b² + C1)
    a, b, c1 = 0.2, 0.7, 0.01**2
    assert ssim(np.full((16, 16, 3), a), np.full((16, 16, 3), b)) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1))
    try:  # an independent implementation, when installed
        from skimage.metrics import structural_similarity
    except ImportError:
        return
    other = np.clip(img + rng.normal(0, 0.1, img.shape), 0, 1)
    want = structural_similarity(img, other, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=1.0)  # fmt: skip
    assert ssim(img, other) == pytest.approx(want, abs=1e-3)


def test_eval_against_ground_truth_and_reference(work):
    # ground truth = renders of the uncompressed sequence (rounded to 8 bits), so the reference is
    # exact up to that rounding and the stream's loss against ground truth is its loss against the reference
    with open(work["rerf"], "rb") as f:
        rep = evaluate(f, work["data"], reference=work["seq"], keep={2})
    j = rep.to_json()
    assert j["num_frames"] == FRAMES and j["cameras"] == ["cam000", "cam001"] and j["lpips"] == LPIPS_STATUS
    assert len(j["images"]) == FRAMES * 2 and len(j["per_frame"]) == FRAMES
    m = j["mean"]
    assert 25 < m["psnr"] < 100 and 0.8 < m["ssim"] <= 1.0
    assert m["reference_psnr"] > 55 and m["reference_ssim"] == pytest.approx(1.0, abs=1e-4)
    assert m["psnr_vs_reference"] == pytest.approx(m["psnr"], abs=0.2)
    assert m["psnr_loss_from_coding"] == pytest.approx(m["reference_psnr"] - m["psnr"])
    for row in j["images"]:
        assert row["reference_psnr"] > 55 and row["psnr"] == pytest.approx(row["psnr_vs_reference"], abs=0.3)
    assert sorted(rep.kept) == [(2, "cam000"), (2, "cam001")]
    k = rep.kept[(2, "cam000")]
    assert np.array_equal(k["gt"], k["reference"]) and not np.array_equal(k["gt"], k["stream"])
    # identical images: infinite PSNR, null in JSON, 100 dB in means
    rep.rows[0]["psnr"] = math.inf
    assert rep.to_json()["images"][0]["psnr"] is None and rep.means()["psnr"] > m["psnr"]
    json.dumps(j, allow_nan=False)


def test_eval_cli(work, tmp_path):
    res = run("eval", work["rerf"], work["data"], "--json")
    assert res.exit_code == 0, res.stderr
    j = json.loads(res.stdout)
    assert j["reference"] is None and "reference_psnr" not in j["mean"] and j["mean"]["psnr"] > 25
    res = run("eval", work["rerf"], work["data"], "--reference", work["seq"], "--frames", "2:4")
    assert res.exit_code == 0, res.stderr
    out = res.stdout
    assert "PSNR loss from coding" in out and f"lpips: {LPIPS_STATUS}" in out and "mean" in out
    assert [ln.split()[0] for ln in out.splitlines()[2:4]] == ["2", "3"]
    # a stream with frames the dataset does not hold is refused, naming the frames
    from rerf_codec.datasets import DatasetWriter, open_dataset

    src = open_dataset(work["data"])
    short = tmp_path / "short"
    meta = src.meta.__class__(**{**src.meta.__dict__, "num_frames": 3})
    with DatasetWriter(short, meta) as w:
        for t in range(3):
            for c in meta.cameras:
                w.write_image(t, c, src.load_image(t, c))
    res = run("eval", work["rerf"], short)
    assert res.exit_code == 2 and "0:6" in res.stderr and res.stderr.count("\n") == 1
    assert run("eval", work["rerf"], short, "--frames", "0:3").exit_code == 0
    res = run("eval", work["rerf"], work["data"], "--reference", tmp_path / "nope")
    assert res.exit_code == 2 and res.stderr.count("\n") == 1


def test_eval_notes_a_dataset_whose_box_is_not_the_streams(work, tmp_path):
    """Images of another scene are measured, but the report says so (it printed 12 dB without a word): the
    stream's grid box is the dataset's grown by at most half a voxel per side, anything else is noted."""
    from rerf_codec.datasets import DatasetWriter, open_dataset
    from rerf_codec.field.geometry import box_mismatch

    res = run("eval", work["rerf"], work["data"], "--frames", "0:1", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["notes"] == [] and res.stderr == ""
    src = open_dataset(work["data"])
    lo, hi = np.asarray(src.meta.xyz_min), np.asarray(src.meta.xyz_max)
    moved = tmp_path / "moved"
    meta = src.meta.__class__(**{**src.meta.__dict__, "num_frames": 1, "xyz_min": tuple(lo + 0.3 * (hi - lo)),
                                 "xyz_max": tuple(hi + 0.3 * (hi - lo))})  # fmt: skip
    with DatasetWriter(moved, meta) as w:
        for c in meta.cameras:
            w.write_image(0, c, src.load_image(0, c))
    res = run("eval", work["rerf"], moved, "--frames", "0:1", "--json")
    assert res.exit_code == 0
    notes = json.loads(res.stdout)["notes"]
    assert len(notes) == 1 and "bounding box" in notes[0]
    assert res.stderr.strip() == f"rerf: note: {notes[0]}"
    # the rule itself: up to half a voxel of growth per side is the trainer's own box; a voxel is not
    shape = (11, 21, 6)
    sp = 0.1
    g_lo, g_hi = np.zeros(3), (np.asarray(shape) - 1) * sp
    assert box_mismatch(g_lo, g_hi, shape, g_lo + 0.5 * sp, g_hi - 0.5 * sp) is None
    assert box_mismatch(g_lo, g_hi, shape, g_lo, g_hi) is None
    assert box_mismatch(g_lo, g_hi, shape, g_lo + 1.0 * sp, g_hi) is not None
    assert box_mismatch(g_lo, g_hi, shape, g_lo - 0.1 * sp, g_hi) is not None


def test_eval_refuses_a_reference_of_the_same_shape_over_another_box(work, tmp_path):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(work["seq"], other)
    meta = json.loads((other / "sequence.json").read_text())
    meta["xyz_min"] = [v - 0.5 for v in meta["xyz_min"]]
    (other / "sequence.json").write_text(json.dumps(meta))
    res = run("eval", work["rerf"], work["data"], "--reference", other, "--frames", "0:1")
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and "not the sequence the stream was encoded from" in res.stderr
