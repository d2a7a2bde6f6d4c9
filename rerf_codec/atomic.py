"""Atomic outputs: write to a temporary sibling, rename into place on success.

``atomic_file`` for single files (``.rerf``, PNG); ``AtomicDirectory`` as the base of the
directory writers (grid sequences, datasets).

Why: a crash or a bad input half-way through must never leave a half-written
output, and an existing file must never be replaced unless the user said --force.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self

from rerf_codec.errors import RerfUsageError


def check_output(path: str | Path, force: bool) -> Path:
    """Refuse an existing output unless ``force``; raise if the parent folder is missing."""
    p = Path(path)
    if p.is_dir():
        raise RerfUsageError(f"{p} is a directory; expected a file path")
    if p.exists() and not force:
        raise RerfUsageError(f"{p} exists", hint=("force", "to overwrite"))
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


def sibling_path(path: Path, kind: str) -> Path:
    """A fresh hidden name next to ``path`` (same file system, so renames are atomic)."""
    return path.parent / f".{path.name}.{kind}-{secrets.token_hex(6)}"


class AtomicDirectory:
    """Base of writers that assemble a directory in a hidden sibling and rename it into place.

    Everything goes into ``.NAME.tmp-XXXX`` first; ``commit()`` (or a clean ``with`` exit)
    checks completeness (``_check_complete``, a subclass hook) and renames it into place.
    On an exception nothing is left behind and an existing output is untouched. With
    ``force`` an existing output that *looks like one of ours* (it holds ``MARKER``) or
    an empty directory is moved aside, the new one renamed in and the old one deleted;
    anything else is refused, so ``--force`` with a mistyped path cannot wipe unrelated
    data. Atomic against failures of this process; no fsync, so not against power loss.
    An abandoned writer (neither committed nor aborted) leaves its temporary directory.
    """

    MARKER = ""
    """File whose presence marks an existing output this writer may replace with --force."""
    KIND = "output"
    """What the directory holds, for messages."""

    def __init__(self, out_dir: str | Path, *, force: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.force = bool(force)
        self.check_destination(self.out_dir, self.force)
        self._done = False
        while True:
            self._tmp = sibling_path(self.out_dir, "tmp")
            try:
                self._tmp.mkdir()  # honours the umask, unlike tempfile.mkdtemp (0700)
                break
            except FileExistsError:  # pragma: no cover - 48 random bits
                continue

    @classmethod
    def check_destination(cls, out_dir: str | Path, force: bool) -> None:
        """Everything ``__init__`` refuses, without creating anything: for commands that write their
        output only after a long computation (``rerf train``), so that they refuse before it."""
        p = Path(out_dir)
        if p.name in ("", ".", ".."):
            raise RerfUsageError(f"{out_dir}: not a usable output directory name")
        cls._check_target_at(p, force)
        if not p.parent.is_dir():  # as atomic_file: no surprise folder trees
            raise RerfUsageError(f"output folder {p.parent} does not exist")

    @classmethod
    def _check_target_at(cls, p: Path, force: bool) -> None:
        if not (p.exists() or p.is_symlink()):
            return
        if not force:
            raise RerfUsageError(f"{p} exists", hint=("force", "to overwrite"))
        replaceable = p.is_dir() and not p.is_symlink() and ((p / cls.MARKER).is_file() or not any(p.iterdir()))
        if not replaceable:
            raise RerfUsageError(f"{p} exists and is not a {cls.KIND} or an empty directory; refusing to overwrite it")

    def _check_target(self) -> None:
        self._check_target_at(self.out_dir, self.force)

    def _check_open(self) -> None:
        if self._done:
            raise RerfUsageError(f"{type(self).__name__}: already committed or aborted")

    def _check_complete(self) -> None:
        """Raise RerfUsageError when the output is incomplete (subclasses)."""

    def commit(self) -> None:
        """Check completeness and move the directory into place."""
        self._check_open()
        try:
            self._check_complete()
            self._check_target()  # it may have appeared since __init__
            old: Path | None = None
            if self.out_dir.exists() or self.out_dir.is_symlink():
                old = sibling_path(self.out_dir, "old")
                os.rename(self.out_dir, old)
            try:
                os.rename(self._tmp, self.out_dir)
            except BaseException:
                if old is not None:
                    os.rename(old, self.out_dir)
                raise
            self._done = True
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Delete the temporary directory; an existing output stays untouched."""
        self._done = True
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._done:
            return
        if exc_type is None:
            self.commit()
        else:
            self.abort()
