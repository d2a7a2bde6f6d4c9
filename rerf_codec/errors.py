"""The one exception family of rerf.

The CLI turns both into one line on stderr and exit code 2; anything else is an
internal error (exit 1). Both subclass ``ValueError`` so library callers can catch
them generically.
"""

from __future__ import annotations


class RerfError(ValueError):
    """Base class of every error rerf raises on purpose."""


class RerfFormatError(RerfError):
    """A stream, grid sequence or dataset on disk is malformed, truncated or unsupported."""


class RerfUsageError(RerfError):
    """Arguments are invalid (bad range, existing output without --force, ...)."""
