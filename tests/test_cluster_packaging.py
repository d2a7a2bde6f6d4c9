"""Ray is an optional extra (issue 16): one module imports it, and without it the parallel
options say in one line how to install it. These tests run with or without Ray installed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli
from rerf_codec import cluster

ROOT = Path(__file__).resolve().parents[1]


def _imports_ray(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "ray" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "ray" and not node.level:
            return True
    return False


def test_only_cluster_py_imports_ray():
    files = [*ROOT.joinpath("rerf_codec").rglob("*.py"), *ROOT.joinpath("cli").rglob("*.py")]
    assert [p.relative_to(ROOT).as_posix() for p in files if _imports_ray(p)] == ["rerf_codec/cluster.py"]


def _one_line(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rerf: error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("argv", [
    ["encode", "{seq}", "-o", "{tmp}/x.rerf", "--workers", "2"],
    ["encode", "{seq}", "-o", "{tmp}/x.rerf", "--ray-address", "auto"],
    ["train", "{seq}", "-o", "{tmp}/x", "--gof", "2", "--workers", "2"],
])  # fmt: skip
def test_without_ray_the_parallel_options_say_how_to_install(tmp_path, monkeypatch, argv):
    from rerf_codec.synthetic import SyntheticSpec, write_synthetic_sequence

    seq = tmp_path / "seq"
    write_synthetic_sequence(seq, SyntheticSpec(shape=(8, 8, 8), feature_channels=1, num_frames=2))
    monkeypatch.setattr(cluster, "ray_available", lambda: False)
    res = CliRunner().invoke(cli, [a.format(seq=seq, tmp=tmp_path) for a in argv])
    assert "pip install 'rerf[ray]'" in _one_line(res)
    assert not (tmp_path / "x.rerf").exists() and not (tmp_path / "x").exists()


def test_a_bad_ray_address_is_one_line(tmp_path):
    res = CliRunner().invoke(cli, ["encode", str(tmp_path), "-o", str(tmp_path / "x.rerf"), "--ray-address", "nope"])
    if cluster.ray_available():
        assert "--ray-address" in _one_line(res)
    else:
        assert "pip install" in _one_line(res)
