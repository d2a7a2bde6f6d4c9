"""The trainer's memory check: a run that cannot fit is refused before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli
from rerf_codec.datasets.demo_scene import render_demo_dataset
from rerf_codec.errors import RerfUsageError
from rerf_codec.train import memory
from rerf_codec.train.memory import MachineMemory, check_training_memory, estimate_peak_bytes, machine_memory

GB = 2**30
BOX = ((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mem") / "demo"
    render_demo_dataset(out, frames=2, cameras=4, test_cameras=1, size=24)
    return out


def _cli(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_the_estimate_matches_the_measured_peaks() -> None:
    """BENCHMARKS "Session 14": the demo scene's first two frames at 128³ / 192³ / 256³ peaked at 1.20 /
    2.93 / 6.76 GB (12 cameras at 64²); 16 cameras at 1024² on a 32³ grid 1.40 GB."""
    for shape, pixels, measured in (((128,) * 3, 12 * 64 * 64, 1.20), ((192,) * 3, 12 * 64 * 64, 2.93),
                                    ((256,) * 3, 12 * 64 * 64, 6.76), ((32,) * 3, 16 * 1024 * 1024, 1.40)):  # fmt: skip
        assert measured * 0.95 <= estimate_peak_bytes(shape, 12, pixels) / GB <= measured * 1.15, shape
    small = estimate_peak_bytes((64, 64, 64), 12, 1000)
    assert estimate_peak_bytes((64, 64, 65), 12, 1000) > small
    assert estimate_peak_bytes((64, 64, 64), 13, 1000) > small
    assert estimate_peak_bytes((64, 64, 64), 12, 1001) > small


def test_refused_with_the_largest_resolution_that_fits() -> None:
    mem = MachineMemory(limit=4 * GB, available=4 * GB)
    with pytest.raises(RerfUsageError) as err:
        check_training_memory(*BOX, 256, 12, 10_000, "cpu", mem)
    text = err.value.render(lambda p: "--" + p)
    assert text.startswith("--resolution 256: training a 256×256×256 grid needs about 7.2 GB"), text
    fits = int(text.split("use ")[1].split(" or less")[0])
    assert estimate_peak_bytes((fits,) * 3, 12, 10_000) <= 4 * GB < estimate_peak_bytes((fits + 8,) * 3, 12, 10_000)
    assert check_training_memory(*BOX, fits, 12, 10_000, "cpu", mem) is None
    # CUDA keeps grids and rays on the GPU: not checked against the host's memory
    assert check_training_memory(*BOX, 256, 12, 10_000, "cuda", mem) is None


def test_images_that_cannot_fit_ask_for_a_downscaled_import() -> None:
    with pytest.raises(RerfUsageError, match=r"training pixels per frame alone .*import the dataset downscaled"):
        check_training_memory(*BOX, 32, 12, 74 * 1920 * 1080, "cpu", MachineMemory(8 * GB, 8 * GB))


def test_more_than_is_free_now_is_a_note_not_a_refusal() -> None:
    note = check_training_memory(*BOX, 192, 12, 10_000, "cpu", MachineMemory(limit=16 * GB, available=1 * GB))
    assert note is not None and "free now" in note


def test_machine_memory_reads_meminfo_and_the_cgroup_limit(tmp_path: Path) -> None:
    info = tmp_path / "meminfo"
    info.write_text("MemTotal:  16000000 kB\nMemFree: 1 kB\nMemAvailable:   9000000 kB\nSwapTotal: 2000000 kB\n"
                    "SwapFree: 1000000 kB\n")  # fmt: skip
    got = machine_memory(info, tmp_path / "no-cgroup")
    assert got == MachineMemory(18_000_000 * 1024, 10_000_000 * 1024)
    assert machine_memory(tmp_path / "missing") is None
    lines = Path("/proc/self/cgroup").read_text().splitlines() if Path("/proc/self/cgroup").exists() else []
    rel = next((line[3:].strip().lstrip("/") for line in lines if line.startswith("0::")), None)
    if rel is None:
        return  # no cgroup v2 here: the limit part cannot be exercised
    group = tmp_path / "cg" / rel
    group.mkdir(parents=True, exist_ok=True)
    (group / "memory.max").write_text("4294967296\n")
    (group / "memory.swap.max").write_text("0\n")
    assert machine_memory(info, tmp_path / "cg") == MachineMemory(4 * GB, 4 * GB)
    (group / "memory.max").write_text("max\n")
    assert machine_memory(info, tmp_path / "cg") == got


@pytest.mark.parametrize("gof", [False, True])
def test_cli_refuses_before_writing_anything(demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             gof: bool) -> None:  # fmt: skip
    monkeypatch.setattr(memory, "machine_memory", lambda: MachineMemory(6 * GB // 10, 6 * GB // 10))
    out = tmp_path / "seq"
    code, _, stderr = _cli("train", str(demo), "-o", str(out), "--resolution", "64", *(["--gof", "1"] if gof else []))
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rerf: error: --resolution 64: training a 64×64×64 grid needs"), lines
    assert "use 56 or less" in lines[0], lines
    assert list(tmp_path.iterdir()) == []  # no output, no checkpoint


def test_cli_prints_the_note_and_trains(demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "machine_memory", lambda: MachineMemory(1024 * GB, 1))
    code, _, stderr = _cli("train", str(demo), "-o", str(tmp_path / "seq"), "--frames", "0:1", "--resolution", "16",
                           "--iters-key", "3")  # fmt: skip
    assert code == 0, stderr
    assert "rerf: note: training needs about" in stderr and "free now" in stderr
    assert (tmp_path / "seq" / "sequence.json").exists()
