"""``rerf bench-rate-distortion``: the library run on a tiny synthetic sequence (schema of every
output, real bytes, BD-rates, bit exactness) and the command line (summary, --json, refusals)."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `cli` is a top-level package next to rerf_codec
    sys.path.insert(0, str(ROOT))

from click.testing import CliRunner  # noqa: E402

from cli.main import cli  # noqa: E402
from rerf_codec.bench import rd  # noqa: E402
from rerf_codec.errors import RerfUsageError  # noqa: E402
from rerf_codec.synthetic import SyntheticSpec, write_synthetic_sequence  # noqa: E402

SETTINGS = rd.RDSettings(qualities=(60, 75), reference_qualities=(80, 95), zstd_level=3)


@pytest.fixture(scope="module")
def seq_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("rd") / "seq"
    write_synthetic_sequence(d, SyntheticSpec(shape=(24, 24, 24), feature_channels=4, num_frames=4, occupancy=0.3))
    return d


@pytest.fixture(scope="module")
def run(seq_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("rd-out") / "out"
    lines: list[str] = []
    result = rd.run_rate_distortion(seq_dir, out, SETTINGS, log=lines.append, command="test")
    return out, result, lines


def test_outputs_exist_and_json_matches(run):
    out, result, lines = run
    assert sorted(p.name for p in out.iterdir()) == ["rd.png", "results.csv", "results.json", "results.md"]
    assert (out / "rd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["format"] == "rerf-rd-results" and on_disk["version"] == 1
    assert on_disk["wall_seconds"] == pytest.approx(result["wall_seconds"])
    # one progress line per setting, plus the sequence line
    assert len(lines) == 1 + len(result["points"]) == 1 + 2 + 2 + 2 + 2 + 1 + 1
    assert lines[1].startswith("[1/10] rerf q60: ")


def test_compressai_style_entries(run):
    _, result, _ = run
    names = [c["name"] for c in result["codecs"]]
    assert names == list(rd.CODECS)
    for c in result["codecs"]:
        assert set(c) == {"name", "description", "results"} and c["description"]
        n = len(c["results"]["bytes_per_frame"])
        assert all(len(v) == n for v in c["results"].values())
    ref = next(c for c in result["codecs"] if c["name"] == "rerf-reference")
    assert ref["results"]["quality"] == [80, 95]


def test_points_are_real_and_sane(run, seq_dir):
    _, result, _ = run
    raw_frame = 24**3 * 5 * 4
    by = {(p["codec"], p["quality"]): p for p in result["points"]}
    raw = by[("raw-float32", None)]
    assert raw["file_bytes"] == raw_frame * 4 and raw["feature_psnr_db"] == math.inf
    for (codec, _q), p in by.items():
        assert p["bytes_per_frame"] == pytest.approx(p["file_bytes"] / 4)
        assert p["ratio_vs_raw_float32"] == pytest.approx(raw_frame * 4 / p["file_bytes"])
        if codec != "raw-float32":
            assert sum(p["bytes"].values()) == p["file_bytes"], codec  # categories add up to the file
            assert p["feature_psnr_db"] > 20 and p["density_psnr_db"] > 20
            assert p["decode_fps"] > 0 and p["encode_fps"] > 0
        assert p["bit_exact"] in (True, None)
    for codec in ("rerf", "rerf-intra", "rerf-nomotion", "rerf-reference"):
        lo, hi = [p for p in result["points"] if p["codec"] == codec]
        assert hi["file_bytes"] > lo["file_bytes"] and hi["feature_psnr_db"] > lo["feature_psnr_db"], codec
    assert by[("rerf", 75)]["keyframes"] == 1 and by[("rerf", 75)]["residual_frames"] == 3
    assert by[("rerf-intra", 75)]["residual_frames"] == 0
    assert by[("rerf-reference", 95)]["clipped_levels"] >= 0
    assert result["default_quality_point"]["quality"] == 75
    assert result["all_bit_exact"] is True


def test_bd_rates_against_the_reference(run):
    _, result, _ = run
    bd = result["bd_rate"]
    assert bd["anchor"] == "rerf-reference"
    assert set(bd["feature_psnr_db"]) == {"rerf", "rerf-intra", "rerf-nomotion"}
    # recomputed from the points
    pts = result["points"]
    ref = [p for p in pts if p["codec"] == "rerf-reference"]
    mine = [p for p in pts if p["codec"] == "rerf"]
    from rerf_codec.bench.bdrate import bd_rate

    want = bd_rate([p["bytes_per_frame"] for p in ref], [p["feature_psnr_db"] for p in ref],
                   [p["bytes_per_frame"] for p in mine], [p["feature_psnr_db"] for p in mine])
    assert bd["feature_psnr_db"]["rerf"] == want


def test_csv_and_markdown(run):
    out, result, _ = run
    rows = list(csv.DictReader(io.StringIO((out / "results.csv").read_text())))
    assert len(rows) == len(result["points"])
    assert tuple(rows[0]) == rd.CSV_COLUMNS
    assert rows[0]["codec"] == "rerf" and int(rows[0]["file_bytes"]) == result["points"][0]["file_bytes"]
    md = (out / "results.md").read_text()
    assert "| rerf-reference | 95 |" in md and "BD-rate against `rerf-reference`" in md


def test_existing_output_needs_force(run, seq_dir):
    out, _, _ = run
    with pytest.raises(RerfUsageError, match="exists"):
        rd.run_rate_distortion(seq_dir, out, rd.RDSettings(qualities=(75,), baselines=()))
    before = (out / "results.json").read_text()
    rd.run_rate_distortion(seq_dir, out, rd.RDSettings(qualities=(75,), baselines=()), force=True)
    after = json.loads((out / "results.json").read_text())
    assert after != json.loads(before) and [c["name"] for c in after["codecs"]] == ["rerf"]


# --------------------------------------------------------------------------- CLI


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_error(res, *parts: str) -> str:
    assert res.exit_code == 2, (res.exit_code, res.stdout, res.stderr)
    assert "Traceback" not in res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("rerf: error:"), lines[0]
    for p in parts:
        assert p in lines[0], lines[0]
    return lines[0]


def test_cli_json_and_summary(seq_dir, tmp_path):
    res = invoke("bench-rate-distortion", seq_dir, "-o", tmp_path / "a", "--qualities", "70", "--baselines",
                 "rerf-reference", "--reference-qualities", "80,90", "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert [c["name"] for c in doc["codecs"]] == ["rerf", "rerf-reference"]
    assert res.stderr == ""  # --json: no progress
    assert doc["command"].startswith("rerf bench-rate-distortion ")
    res = invoke("bench-rate-distortion", seq_dir, "-o", tmp_path / "b", "--qualities", "70,80", "--baselines", "")
    assert res.exit_code == 0, res.stderr
    assert "[2/2] rerf q80" in res.stderr
    assert "rerf at the default quality" not in res.stdout  # 75 not measured
    assert "results → " in res.stdout


@pytest.mark.parametrize(
    ("args", "parts"),
    [
        (["--qualities", "70,x"], ["--qualities"]),
        (["--qualities", "0"], ["1..100"]),
        (["--baselines", "jpeg"], ["unknown baseline 'jpeg'"]),
        (["--gof", "0"], ["--gof"]),
        (["--reference-qualities", ""], ["--reference-qualities"]),
    ],
)
def test_cli_bad_arguments(seq_dir, tmp_path, args, parts):
    res = invoke("bench-rate-distortion", seq_dir, "-o", tmp_path / "o", *args)
    one_line_error(res, *parts)
    assert not (tmp_path / "o").exists()


def test_cli_bad_inputs(seq_dir, tmp_path):
    one_line_error(invoke("bench-rate-distortion", tmp_path / "missing", "-o", tmp_path / "o"), "missing")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("mine")
    one_line_error(invoke("bench-rate-distortion", seq_dir, "-o", tmp_path / "taken", "--baselines", ""), "exists")
    res = invoke("bench-rate-distortion", seq_dir, "-o", tmp_path / "taken", "--baselines", "", "--force")
    one_line_error(res, "not a rate-distortion output")
    assert (tmp_path / "taken" / "x").read_text() == "mine"
    # --dataset without a decoder MLP in the sequence: refused before any encoding
    res = invoke("bench-rate-distortion", seq_dir, "-o", tmp_path / "r", "--dataset", tmp_path, "--baselines", "")
    one_line_error(res, "decoder", "null")
    assert not (tmp_path / "r").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers


# --------------------------------------------------------------------------- rendered metrics (hooks)


class _FakeField:
    """Stands in for rerf_codec.field.RadianceField: 'renders' a 16×16 image from the grid."""

    def __init__(self, density, features) -> None:
        self.value = float(np.tanh(features.mean()) * 0.5 + 0.5)
        self.tex = (np.abs(features[0, :16, :16, 0]) / (1e-6 + np.abs(features[0]).max())).astype(np.float32)

    @classmethod
    def from_arrays(cls, density, features, meta, decoder_arrays, device="cpu"):
        assert device == "cpu" and set(decoder_arrays) == {"w"}
        return cls(density, features)

    def render_camera(self, camera):
        img = np.empty((16, 16, 3), dtype=np.float32)
        img[...] = (0.5 * self.tex + 0.5 * self.value)[..., None]
        return img


class _FakeData:
    def __init__(self) -> None:
        cams = [SimpleNamespace(name="cam0"), SimpleNamespace(name="cam1")]
        self.meta = SimpleNamespace(test_cameras=cams, frame_indices=range(0, 8), background=(1.0, 1.0, 1.0))

    def load_image(self, frame, cam):
        rgba = np.full((16, 16, 4), 0.5, dtype=np.float32)
        rgba[..., 3] = 1.0
        return rgba


def test_rendered_metrics_through_the_renderer_hooks(seq_dir, tmp_path, monkeypatch):
    import rerf_codec.datasets.format as fmt
    import rerf_codec.field as field_pkg

    seq = tmp_path / "with-mlp"
    shutil.copytree(seq_dir, seq)
    meta = json.loads((seq / "sequence.json").read_text())
    meta["decoder"] = "decoder.npz"
    (seq / "sequence.json").write_text(json.dumps(meta))
    np.savez(seq / "decoder.npz", w=np.ones(3, dtype=np.float32))
    monkeypatch.setattr(field_pkg, "RadianceField", _FakeField, raising=False)
    monkeypatch.setattr(fmt, "open_dataset", lambda path: _FakeData())
    settings = rd.RDSettings(qualities=(60, 90), reference_qualities=(70, 95), baselines=("rerf-reference",),
                             render_frames=2)
    res = rd.run_rate_distortion(seq, tmp_path / "out", settings, dataset="fake")
    assert res["uncompressed_rendered"]["frames"] == [0, 3]
    assert res["uncompressed_rendered"]["cameras"] == ["cam0", "cam1"]
    for p in res["points"]:
        r = p["rendered"]
        assert r["images"] == 4  # 2 frames × 2 test cameras
        assert r["psnr_db"] == p["rendered_psnr_db"] and 0 < r["ssim"] <= 1
        assert r["psnr_vs_uncompressed_db"] > r["psnr_db"] - 100
    assert "rendered_psnr_db" in (tmp_path / "out" / "results.csv").read_text().splitlines()[0]


def test_rendered_metrics_need_the_renderer(seq_dir, tmp_path, monkeypatch):
    import rerf_codec.field as field_pkg

    seq = tmp_path / "with-mlp"
    shutil.copytree(seq_dir, seq)
    meta = json.loads((seq / "sequence.json").read_text())
    meta["decoder"] = "decoder.npz"
    (seq / "sequence.json").write_text(json.dumps(meta))
    np.savez(seq / "decoder.npz", w=np.ones(3, dtype=np.float32))
    monkeypatch.delitem(field_pkg._HOMES, "RadianceField")  # as if the renderer were missing
    res = invoke("bench-rate-distortion", seq, "-o", tmp_path / "o", "--dataset", tmp_path, "--baselines", "")
    one_line_error(res, "rerf_codec.field.RadianceField")
    assert not (tmp_path / "o").exists()


def test_combined_grid_psnr():
    assert rd.combined_psnr(40.0, 40.0, 12) == pytest.approx(40.0)
    # density 10x the normalised MSE of the features, 12 feature channels: (10 + 12) / 13
    assert rd.combined_psnr(40.0, 30.0, 12) == pytest.approx(40.0 - 10 * math.log10(22 / 13))
    assert rd.combined_psnr(math.inf, math.inf, 4) == math.inf
    assert rd.combined_psnr(None, 30.0, 4) is None
