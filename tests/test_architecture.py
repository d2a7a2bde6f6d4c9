"""The house plan, checked: which layer may import which, and one home for each shared concept.

Read statically from the source (``ast``), so a lazy import inside a function counts as much as
one at the top of a module: a layer rule is about what a module *can* pull in, not what a test
happened to trigger.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "rerf_codec"

# Product layers that must stand without the layers above them (DESIGN.md "Layout").
LOWER = ["codec", "bitstream.py", "grids.py", "gridseq.py", "trainer_form.py", "framerange.py", "datasets", "field", "metrics.py", "synthetic.py"]
UPPER = ("rerf_codec.bench", "rerf_codec.train", "cli")


def _modules(rel: str) -> list[Path]:
    p = PKG / rel
    return sorted(p.rglob("*.py")) if p.is_dir() else ([p] if p.exists() else [])


def _imports(path: Path) -> set[str]:
    """Every module name ``path`` imports (absolute; relative imports resolved against the package)."""
    tree = ast.parse(path.read_text(), str(path))
    pkg = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            names.add(mod)
            names.update(f"{mod}.{a.name}" for a in node.names)
    return names


@pytest.mark.parametrize("layer", LOWER)
def test_library_layers_never_import_bench_cli_or_train(layer: str) -> None:
    offenders = [
        f"{p.relative_to(ROOT)} imports {name}"
        for p in _modules(layer)
        for name in sorted(_imports(p))
        if any(name == u or name.startswith(u + ".") for u in UPPER)
    ]
    assert not offenders, "\n".join(offenders)


def test_nothing_in_the_library_imports_bench() -> None:
    """bench/ sits on top: the product (library and CLI commands other than the bench's) never needs it."""
    offenders = [
        f"{p.relative_to(ROOT)} imports {name}"
        for p in sorted(PKG.rglob("*.py"))
        if "bench" not in p.relative_to(PKG).parts
        for name in sorted(_imports(p))
        if name == "rerf_codec.bench" or name.startswith("rerf_codec.bench.")
    ]
    assert not offenders, "\n".join(offenders)


def test_decoder_never_imports_torch() -> None:
    """The decoding side (container, codec, grids, cameras) runs where torch is not installed."""
    code = (
        "import sys\n"
        "import rerf_codec.codec.decoder, rerf_codec.codec.files, rerf_codec.bitstream, rerf_codec.grids\n"
        "import rerf_codec.field.camera, rerf_codec.framerange\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def _definitions(name: str) -> list[str]:
    """Top-level ``def``/``class`` of ``name`` anywhere in the package and the CLI."""
    found = []
    for p in sorted([*PKG.rglob("*.py"), *(ROOT / "cli").rglob("*.py")]):
        for node in ast.parse(p.read_text(), str(p)).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
                found.append(str(p.relative_to(ROOT)))
    return found


@pytest.mark.parametrize(
    ("name", "home"),
    [
        ("Camera", "rerf_codec/field/camera.py"),
        ("FrameRange", "rerf_codec/framerange.py"),
        ("parse_frame_range", "rerf_codec/framerange.py"),
        ("psnr", "rerf_codec/metrics.py"),
        ("ssim", "rerf_codec/metrics.py"),
        ("qstep_table", "rerf_codec/codec/quant.py"),
        ("composite", "rerf_codec/datasets/format.py"),
        ("orbit_cameras", "rerf_codec/field/camera.py"),
        ("direction", "rerf_codec/field/camera.py"),
        ("fit_distance", "rerf_codec/field/camera.py"),
    ],
)
def test_one_home_for_each_shared_concept(name: str, home: str) -> None:
    assert _definitions(name) == [home]


def test_view_margin_defined_once() -> None:
    hits = [
        str(p.relative_to(ROOT))
        for p in sorted(PKG.rglob("*.py"))
        for node in ast.parse(p.read_text()).body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "VIEW_MARGIN" for t in node.targets)
    ]
    assert hits == ["rerf_codec/field/camera.py"]
