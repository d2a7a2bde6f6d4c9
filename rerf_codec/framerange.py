"""Frame ranges: parsed once from the user's text, resolved against a stream's or a sequence's frames.

Frame numbers are absolute (the stream's own numbers, kept in output file names), ranges are
half-open like Python slices: ``A:B`` is frames ``A .. B-1``; ``A:`` runs to the end, ``:B``
starts at the beginning, a single ``A`` is one frame. Parsing checks the syntax only (nothing is
known about the stream yet: stdin is read once); :meth:`FrameRange.resolve` checks the range
against the frames that exist. Error messages name the value, never a command-line option: the
CLI adds the option's name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rerf_codec.errors import RerfUsageError

__all__ = ["FrameRange", "parse_frame_range"]

_SYNTAX = re.compile(r"(\d*)\s*:\s*(\d*)|(\d+)")


@dataclass(frozen=True)
class FrameRange:
    """A half-open frame range whose open ends are filled in by :meth:`resolve`.

    >>> FrameRange.parse("3:").resolve(range(0, 10))
    range(3, 10)
    >>> FrameRange.of(range(2, 4)).resolve(range(0, 10))
    range(2, 4)
    """

    start: int | None
    stop: int | None
    text: str

    @classmethod
    def parse(cls, text: str) -> FrameRange:
        """``A:B``, ``A:``, ``:B``, ``:`` or ``A`` with frame numbers >= 0."""
        m = _SYNTAX.fullmatch(text.strip())
        if m is None:
            raise RerfUsageError(f"{text!r}: expected A:B with frame numbers >= 0 (half-open; A or B may be omitted)", param="frames")
        if m.group(3) is not None:
            one = int(m.group(3))
            return cls(one, one + 1, text)
        start: int | None = int(m.group(1)) if m.group(1) else None
        stop: int | None = int(m.group(2)) if m.group(2) else None
        if start is not None and stop is not None and stop <= start:
            raise RerfUsageError(f"{text}: empty range ({start}:{stop} holds no frame)", param="frames")
        return cls(start, stop, text)

    @classmethod
    def of(cls, frames: range) -> FrameRange:
        """A range the library already holds (step 1, not empty)."""
        if frames.step != 1 or len(frames) == 0:
            raise RerfUsageError(f"frame range {frames!r} must be non-empty with step 1")
        return cls(frames.start, frames.stop, f"{frames.start}:{frames.stop}")

    def resolve(self, total: range) -> range:
        """The concrete frames within ``total`` (the frames that exist); empty or outside is an error."""
        start = total.start if self.start is None else self.start
        stop = total.stop if self.stop is None else self.stop
        if stop <= start:
            raise RerfUsageError(f"{self.text}: empty range ({start}:{stop} holds no frame)", param="frames")
        if start < total.start or stop > total.stop:
            raise RerfUsageError(f"{self.text}: outside the frames {total.start}:{total.stop}", param="frames")
        return range(start, stop)


def parse_frame_range(text: str | range | FrameRange | None) -> FrameRange | None:
    """What library functions accept for ``frames``: text, a ``range``, a ``FrameRange`` or ``None`` (all)."""
    if text is None or isinstance(text, FrameRange):
        return text
    if isinstance(text, range):
        return FrameRange.of(text)
    if not isinstance(text, str):
        raise RerfUsageError(f"frames must be A:B text, a range or a FrameRange, got {text!r}")
    return FrameRange.parse(text)
