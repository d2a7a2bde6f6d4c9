"""File-level decoding behind the CLI: open an input, decode a stream into a grid-sequence directory.

The ``rerf`` commands only parse arguments and print; what they do lives here so that
it is usable (and tested) without click:

* :func:`open_input` opens a ``.rerf`` path or ``-`` (stdin, possibly non-seekable) and
  names the input in every format error;
* :func:`decode_to_directory` decodes a stream into a grid-sequence directory, atomically,
  with optional SHA-256 verification and damaged-GOF concealment;

What ``rerf info`` shows and encode reports add up is in ``codec.accounting``.

Never imports torch (the decode path must not).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from rerf_codec.codec.decoder import DamagedReport, Decoder, empty_frame
from rerf_codec.errors import RerfFormatError, RerfUsageError
from rerf_codec.framerange import FrameRange, parse_frame_range
from rerf_codec.grids import GridFrame, update_frame_hash
from rerf_codec.gridseq import SequenceWriter

__all__ = [
    "DecodeReport",
    "decode_to_directory",
    "open_input",
]

STDIN = "-"

ProgressFn = Callable[[int, int], None]
"""``progress(done, total)`` after each frame."""

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


# --------------------------------------------------------------------------- inputs


def _display_name(path: str | Path) -> str:
    return "<stdin>" if str(path) == STDIN else str(path)


@contextlib.contextmanager
def open_input(path: str | Path) -> Iterator[BinaryIO]:
    """Open a ``.rerf`` input for reading; ``-`` is stdin (binary, maybe non-seekable).

    Format errors raised inside the block are prefixed with the input's name, so the
    one-line CLI message says which file is bad.
    """
    name = _display_name(path)
    if str(path) == STDIN:
        cm: contextlib.AbstractContextManager[BinaryIO] = contextlib.nullcontext(sys.stdin.buffer)
    else:
        p = Path(path)
        if p.is_dir():
            raise RerfUsageError(f"{p}: is a directory, expected a .rerf file")
        try:
            cm = open(p, "rb")  # noqa: SIM115 - closed by the with below
        except FileNotFoundError:
            raise RerfUsageError(f"{p}: no such file") from None
        except OSError as exc:
            raise RerfUsageError(f"{p}: cannot read: {exc.strerror or exc}") from None
    with cm as f:
        try:
            yield f
        except RerfFormatError as exc:
            msg = str(exc)
            if msg.startswith(name):
                raise
            raise RerfFormatError(f"{name}: {msg}") from None


def _check_sha256(text: str | None) -> str | None:
    if text is None:
        return None
    s = text.strip().lower()
    if not _SHA256_RE.match(s):
        raise RerfUsageError(f"expects a SHA-256 as 64 hex digits, got {text!r}", param="verify")
    return s


def _precheck_output_dir(out_dir: Path, force: bool) -> None:
    """Fail before reading any input (stdin cannot be read twice); SequenceWriter re-checks."""
    if out_dir.name in ("", ".", ".."):
        raise RerfUsageError(f"{out_dir}: not a usable output directory name")
    if (out_dir.exists() or out_dir.is_symlink()) and not force:
        raise RerfUsageError(f"{out_dir} exists", hint=("force", "to overwrite"))
    if not out_dir.parent.is_dir():
        raise RerfUsageError(f"output folder {out_dir.parent} does not exist")


# --------------------------------------------------------------------------- decode


@dataclass
class DecodeReport:
    """What ``decode_to_directory`` did; ``to_json`` is what ``rerf decode --json`` prints."""

    out_dir: str
    frames: range
    sha256: str
    verified: bool | None
    seconds: float
    damaged: list[DamagedReport] = field(default_factory=list)
    damaged_frames: list[int] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def frames_per_second(self) -> float | None:
        return self.num_frames / self.seconds if self.seconds > 0 else None

    def to_json(self) -> dict[str, Any]:
        return {
            "out_dir": self.out_dir,
            "frames": [self.frames.start, self.frames.stop],
            "num_frames": self.num_frames,
            "sha256": self.sha256,
            "verified": self.verified,
            "seconds": self.seconds,
            "frames_per_second": self.frames_per_second,
            "damaged": [d.to_json() for d in self.damaged],
            "damaged_frames": list(self.damaged_frames),
        }


def decode_to_directory(
    src: BinaryIO,
    out_dir: str | Path,
    *,
    frames: FrameRange | range | str | None = None,
    force: bool = False,
    verify: str | None = None,
    skip_damaged: bool = False,
    progress: ProgressFn | None = None,
) -> DecodeReport:
    """Decode the ``.rerf`` stream ``src`` into the grid-sequence directory ``out_dir``.

    ``frames``: the stream's frame numbers to decode (a :class:`FrameRange`, a ``range`` or
    ``A:B`` text, resolved once the header is read); output frame files and
    ``first_frame`` keep the original numbers. Full frames are written, plus
    ``decoder.npz`` when the stream carries tensors. The directory appears only when
    everything succeeded (``SequenceWriter``); an existing one is replaced only with
    ``force``.

    ``verify``: expected SHA-256 of the decoded grids (``update_frame_hash`` over the
    frames in order); on a mismatch nothing is written and ``RerfFormatError`` is raised.

    ``skip_damaged``: a damaged GOF does not stop decoding. Its frames are concealed like a
    video player freezing: each is replaced by the nearest earlier decoded frame, or by
    ``decoder.empty_frame`` when there is none; they are listed in the report and in
    sequence.json under ``"damaged_frames"``. The SHA-256 covers the frames as written.
    If no frame at all decodes, it is an error. Without ``skip_damaged`` the first damage
    raises ``RerfFormatError`` and nothing is written.
    """
    out = Path(out_dir)
    verify = _check_sha256(verify)
    wanted = parse_frame_range(frames)  # syntax errors before any input is read
    _precheck_output_dir(out, force)
    t0 = time.perf_counter()
    dec = Decoder(src)
    # Each frame is written before the next is decoded, so the decoder may reuse its buffers.
    session = dec.session(wanted, skip_damaged=skip_damaged, reuse_buffers=True)
    want = session.want
    meta = dec.sequence_meta(want)
    tensors = dict(dec.header.tensors) if dec.header.tensors else None
    sha = hashlib.sha256()
    damaged_frames: list[int] = []
    empty: GridFrame | None = None
    with SequenceWriter(out, meta, force=force, decoder=tensors) as writer:
        for sf in session:
            frame = sf.frame
            if frame is None:
                frame = empty = empty if empty is not None else empty_frame(dec.header)
            if sf.concealed:
                damaged_frames.append(sf.index)
            update_frame_hash(sha, frame)
            writer.write_frame(sf.index, frame)
            if progress is not None:
                progress(sf.index - want.start + 1, len(want))
        digest = sha.hexdigest()
        if verify is not None and digest != verify:
            raise RerfFormatError(
                f"decoded SHA-256 {digest} does not match --verify {verify}; nothing was written"
            )
        if damaged_frames:
            writer.update_extra(damaged_frames=list(damaged_frames))
        writer.commit()
    damaged = session.damaged
    return DecodeReport(
        out_dir=str(out),
        frames=want,
        sha256=digest,
        verified=None if verify is None else True,
        seconds=time.perf_counter() - t0,
        damaged=damaged,
        damaged_frames=damaged_frames,
    )
