"""The one exception family of rerf.

The CLI turns both into one line on stderr and exit code 2; anything else is an
internal error (exit 1). Both subclass ``ValueError`` so library callers can catch
them generically.
"""

from __future__ import annotations

from collections.abc import Callable


class RerfError(ValueError):
    """Base class of every error rerf raises on purpose."""


class RerfFormatError(RerfError):
    """A stream, grid sequence or dataset on disk is malformed, truncated or unsupported."""


class RerfUsageError(RerfError):
    """Arguments are invalid (bad range, existing output without ``force``, ...).

    The library speaks in its own parameter names, never in command-line options: ``param`` is the
    argument the message is about (the text follows its name) and ``hint`` a boolean parameter
    that would resolve the problem, with what it does. The CLI renders both as its options
    (:meth:`render`), so ``rerf encode --quality 0`` says ``--quality must be in 1..100`` while
    ``EncoderConfig(quality=0)`` says ``quality must be in 1..100``.

    >>> e = RerfUsageError("exists", hint=("force", "to overwrite"))
    >>> str(e), e.render(lambda p: "--" + p)
    ('exists; use force=True to overwrite', 'exists; use --force to overwrite')
    >>> RerfUsageError("must be in 1..100, got 0", param="quality").render(lambda p: "--" + p)
    '--quality must be in 1..100, got 0'
    """

    def __init__(self, message: str, *, param: str | None = None, hint: tuple[str, str] | None = None) -> None:
        self.message = message
        self.param = param
        self.hint = hint
        super().__init__(self.render(lambda p: p, lambda p: f"{p}=True"))

    def render(self, name: Callable[[str], str], flag: Callable[[str], str] | None = None) -> str:
        """The message with parameters shown by ``name`` (a valued one) and ``flag`` (a boolean one)."""
        flag = flag or name
        text = f"{name(self.param)} {self.message}" if self.param else self.message
        if self.hint is not None:
            text += f"; use {flag(self.hint[0])} {self.hint[1]}"
        return text
