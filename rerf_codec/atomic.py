"""Atomic output files: write to a temporary sibling, rename into place on success.

Why: a crash or a bad input half-way through must never leave a half-written
output, and an existing file must never be replaced unless the user said --force.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from rerf_codec.errors import RerfUsageError


def check_output(path: str | Path, force: bool) -> Path:
    """Refuse an existing output unless ``force``; raise if the parent folder is missing."""
    p = Path(path)
    if p.is_dir():
        raise RerfUsageError(f"{p} is a directory; expected a file path")
    if p.exists() and not force:
        raise RerfUsageError(f"{p} exists; use --force to overwrite")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise RerfUsageError(f"output folder {parent} does not exist")
    return p


@contextlib.contextmanager
def atomic_file(path: str | Path, *, force: bool = False) -> Iterator[BinaryIO]:
    """Yield a binary file that becomes ``path`` only if the block finishes without error."""
    p = check_output(path, force)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent if str(p.parent) else ".")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
