"""Dataset rendering benchmark: mesh sequence -> multi-view dataset (BENCHMARKS.md).

Measures what the datasets issue asks for: rendering speed (frames × cameras per
second) for crane at 128 px with 24 + 4 cameras, and the dataset's size on disk (real
PNG bytes). Each run renders into a fresh temporary directory through the same
function as ``rerf dataset from-mesh``; the figure is the median of the runs.

    python -m rerf_codec.bench.dataset_bench [--mesh PATH] [--frames 20] [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rerf_codec.errors import RerfError

DEFAULT_MESH = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "meshseq" / "crane.npz"
"""The team's sample mesh: ``../shared/data/meshseq/crane.npz`` relative to the checkout (``--mesh`` for another)."""


def run(mesh: Path, *, frames: int, runs: int, size: int, cameras: int, test_cameras: int) -> dict[str, Any]:
    """Render ``frames`` frames ``runs`` times; returns the JSON-ready result."""
    from rerf_codec.datasets.mesh_render import render_mesh_sequence

    results = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="rerf-dsbench-") as tmp:
            t0 = time.perf_counter()
            rep = render_mesh_sequence(
                mesh, Path(tmp) / "data", cameras=cameras, test_cameras=test_cameras, size=size, frames=(0, frames)
            )
            rep["wall_seconds"] = time.perf_counter() - t0
            results.append(rep)
    views = frames * (cameras + test_cameras)
    walls = [r["wall_seconds"] for r in results]
    renders = [r["render_seconds"] for r in results]
    return {
        "name": "dataset-render",
        "mesh": str(mesh),
        "frames": frames,
        "cameras": {"train": cameras, "test": test_cameras},
        "size": size,
        "runs": runs,
        "views_per_second_median": views / statistics.median(walls),
        "render_only_views_per_second_median": views / statistics.median(renders),
        "wall_seconds": walls,
        "bytes_on_disk": results[0]["bytes_on_disk"],
        "bytes_per_frame": results[0]["bytes_per_frame"],
        "bytes_per_image": results[0]["bytes_on_disk"] / views,
        "renderer": results[0]["renderer"],
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average": list(os.getloadavg()),
        },
        "command": " ".join([Path(sys.executable).name, "-m", "rerf_codec.bench.dataset_bench", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mesh", type=Path, default=DEFAULT_MESH)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--cameras", type=int, default=24)
    ap.add_argument("--test-cameras", type=int, default=4)
    ap.add_argument("--json", action="store_true", help="print the JSON result only")
    a = ap.parse_args(argv)
    if not a.mesh.is_file():
        print(f"dataset_bench: error: mesh {a.mesh} not found (see ../shared/data/README.md)", file=sys.stderr)
        return 2
    if a.frames < 1 or a.runs < 1:
        print("dataset_bench: error: --frames and --runs must be >= 1", file=sys.stderr)
        return 2
    try:
        res = run(a.mesh, frames=a.frames, runs=a.runs, size=a.size, cameras=a.cameras, test_cameras=a.test_cameras)
    except RerfError as exc:
        print(f"dataset_bench: error: {exc}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"{res['frames']} frames × {a.cameras}+{a.test_cameras} cameras at {a.size} px, {a.runs} runs")
    print(f"  frames×cameras per second (median, incl. PNG writing): {res['views_per_second_median']:.1f}")
    print(f"  rendering only:                                        {res['render_only_views_per_second_median']:.1f}")
    print(f"  on disk: {res['bytes_on_disk']:,} B = {res['bytes_per_frame'] / 1e3:.1f} kB/frame, "
          f"{res['bytes_per_image'] / 1e3:.2f} kB/image; renderer {res['renderer']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
