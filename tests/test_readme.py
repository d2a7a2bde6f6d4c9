"""README's "Library" examples run as doctests, so the documented API cannot drift from the code.

The examples work on a grid-sequence directory ``seq/`` in the current directory; the test makes
one (synthetic, 24 frames of 32³ — as the README's text says) in a temporary directory first.
"""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest

from rerf_codec.synthetic import SyntheticSpec, write_synthetic_sequence

README = Path(__file__).resolve().parent.parent / "README.md"


def section(text: str, title: str) -> tuple[str, int]:
    """The body of the ``## title`` section and the line number it starts at (1-based)."""
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert m is not None, f"README has no '## {title}' section"
    return m.group(1), text.count("\n", 0, m.start(1)) + 1


def python_blocks(body: str, first_line: int) -> list[tuple[str, int]]:
    """Each ```python block of ``body`` with the README line its code starts at."""
    out = []
    for m in re.finditer(r"^```python\n(.*?)^```$", body, flags=re.M | re.S):
        out.append((m.group(1), first_line + body.count("\n", 0, m.start(1))))
    return out


def test_library_section_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body, line = section(README.read_text(encoding="utf-8"), "Library")
    blocks = python_blocks(body, line)
    assert blocks, "README's Library section has no ```python example"
    write_synthetic_sequence(tmp_path / "seq", SyntheticSpec(shape=(32, 32, 32), num_frames=24, seed=3))
    monkeypatch.chdir(tmp_path)
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    globs: dict[str, object] = {}  # shared: a later block may use an earlier block's names
    for code, lineno in blocks:
        test = parser.get_doctest(code, globs, f"README.md Library (line {lineno})", str(README), lineno - 1)
        assert test.examples, f"README line {lineno}: a ```python block without >>> examples would not be checked"
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0 and result.failed == 0, f"{result.failed} README example(s) failed (see the output above)"
