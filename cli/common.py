"""What every ``rerf`` command shares: one-line errors and exit codes, JSON and progress output, formats.

Command modules import from here, and ``cli.main`` imports the command modules and adds them to
the ``rerf`` group: the imports go one way.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

import click

from rerf_codec.errors import RerfError, RerfUsageError
from rerf_codec.framerange import FrameRange

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_PIPE = 0, 1, 2, 130, 141


# --------------------------------------------------------------------------- error handling


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def option(param: str) -> str:
    """A library parameter as the command-line option that sets it (``density_quality`` → ``--density-quality``)."""
    return "--" + param.replace("_", "-")


def error(msg: str) -> None:
    click.echo(f"rerf: error: {one_line(msg)}", err=True)


def note(msg: str) -> None:
    """A figure or a result the user should doubt, or a choice made for them: one line, and the command goes on."""
    click.echo(f"rerf: note: {one_line(msg)}", err=True)


class InterruptedWithHint(KeyboardInterrupt):
    """An interrupt that a command caught to say what is left and how to go on (``rerf train``: the
    checkpoint and ``--resume``)."""

    def __init__(self, hint: str) -> None:
        super().__init__(hint)
        self.hint = hint


def terminate_as_interrupt() -> None:
    """Make SIGTERM (``kill``, a job scheduler's timeout) end a command as Ctrl-C does: the atomic writers
    remove their temporary files, ``rerf train`` keeps its checkpoint and says so, exit 130 — instead of
    Python's default, which dies on the spot and leaves the temporaries behind."""

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):  # only the main thread may set handlers
        signal.signal(signal.SIGTERM, on_term)


def run_guarded(fn: Callable[[], Any]) -> int:
    """Run the click machinery; turn every outcome into an exit code and at most one stderr line."""
    debug = bool(os.environ.get("RERF_DEBUG"))
    try:
        rv = fn()
        return rv if isinstance(rv, int) else EXIT_OK
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.format_message())
        return EXIT_OK
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        error(exc.format_message() + hint)
        return EXIT_USAGE
    except click.ClickException as exc:
        error(exc.format_message())
        return EXIT_USAGE
    except (click.Abort, KeyboardInterrupt) as exc:
        with contextlib.suppress(Exception):
            cause = exc.__cause__ if isinstance(exc, click.Abort) else exc  # click wraps the interrupt in Abort
            hint = cause.hint if isinstance(cause, InterruptedWithHint) else ""
            click.echo("rerf: interrupted" + (f"; {hint}" if hint else ""), err=True)
        return EXIT_INTERRUPTED
    except RerfError as exc:
        if debug:
            traceback.print_exc()
        error(exc.render(option) if isinstance(exc, RerfUsageError) else str(exc))
        return EXIT_USAGE
    except BrokenPipeError:
        # Reader of our stdout went away (`rerf info x.rerf | head`): stop quietly.
        with contextlib.suppress(Exception):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_PIPE
    except OSError as exc:
        if debug:
            traceback.print_exc()
        where = f": {exc.filename}" if exc.filename else ""
        error(f"{exc.strerror or exc}{where}")
        return EXIT_USAGE
    except Exception as exc:
        if debug:
            traceback.print_exc()
        click.echo(
            f"rerf: internal error: {type(exc).__name__}: {one_line(str(exc))} (set RERF_DEBUG=1 for a traceback)",
            err=True,
        )
        return EXIT_INTERNAL


class RerfGroup(click.Group):
    """A click group whose ``main`` never prints a traceback (see ``run_guarded``)."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> NoReturn:
        code = run_guarded(
            lambda: super(RerfGroup, self).main(
                args, prog_name or "rerf", complete_var, standalone_mode=False, **extra
            )
        )
        sys.exit(code)


# --------------------------------------------------------------------------- output helpers


def print_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, allow_nan=False))


class Progress:
    """Progress bars on stderr, only when stderr is a terminal and not under --json."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and isatty(sys.stderr)
        self._bar: Any = None
        self._label: str | None = None
        self._done = 0

    def update(self, label: str, done: int, total: int, info: str | None = None) -> None:
        """Advance the ``label`` bar to ``done`` of ``total``; ``info`` is shown after the bar
        (encode: the frame just coded, its type and size)."""
        if not self.enabled:
            return
        if self._bar is None or label != self._label:
            self.close()
            self._bar = click.progressbar(
                length=max(1, total), label=f"{label:<8}", file=sys.stderr,
                item_show_func=lambda item: item,
            )
            self._bar.__enter__()
            self._label, self._done = label, 0
        self._bar.update(done - self._done, info)
        self._done = done

    def close(self) -> None:
        if self._bar is not None:
            bar, self._bar = self._bar, None
            bar.__exit__(None, None, None)


class SegmentLines:
    """One line per finished unit of parallel work (segment, GOF) with an ETA, on a terminal."""

    def __init__(self, enabled: bool, total_frames: int, what: str = "segment") -> None:
        import time

        self.enabled = enabled and isatty(sys.stderr)
        self.total_frames = max(1, total_frames)
        self.frames = 0
        self.what = what
        self._clock = time.perf_counter
        self.t0 = self._clock()

    def __call__(self, result: Any, done: int, total: int) -> None:
        self.frames += result.stop - result.start
        if not self.enabled:
            return
        elapsed = self._clock() - self.t0
        left = elapsed / self.frames * (self.total_frames - self.frames)
        eta = "done" if done == total else f"ETA {fmt_duration(left)}"
        click.echo(
            f"{self.what} {result.number} frames {result.start}:{result.stop} {result.seconds:.1f} s on "
            f"{result.worker}  [{done}/{total}, {eta}]",
            err=True,
        )


def fmt_duration(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


@contextlib.contextmanager
def progress_bar(enabled: bool) -> Iterator[Progress]:
    p = Progress(enabled)
    try:
        yield p
    finally:
        p.close()


def isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def fmt_bytes(n: int) -> str:
    return f"{n:,} B" if n < 10_000 else (f"{n / 1e3:,.1f} kB" if n < 10_000_000 else f"{n / 1e6:,.1f} MB")


def fmt_fps(fps: float | None) -> str:
    return "-" if fps is None else f"{fps:,.1f} frames/s"


def fmt_range(start: int, stop: int) -> str:
    return f"{start}:{stop}"


def category_line(totals: dict[str, int], total: int) -> str:
    parts = [f"{k.replace('_', ' ')} {v / total:.1%}" for k, v in sorted(totals.items(), key=lambda kv: -kv[1])]
    return ", ".join(parts)


class PositiveFloat(click.ParamType):
    """A finite number > 0 (``--target-kbpf``)."""

    name = "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            v = value
        else:
            try:
                v = float(str(value).strip())
            except ValueError:
                self.fail(f"expected a number > 0, got {value!r}", param, ctx)
        if not (math.isfinite(v) and v > 0):
            self.fail(f"expected a number > 0, got {value!r}", param, ctx)
        return v


def compact(indices: list[int]) -> str:
    """[1,2,3,7] -> '1:4 7' (half-open runs)."""
    runs: list[str] = []
    i = 0
    while i < len(indices):
        j = i
        while j + 1 < len(indices) and indices[j + 1] == indices[j] + 1:
            j += 1
        runs.append(str(indices[i]) if i == j else f"{indices[i]}:{indices[j] + 1}")
        i = j + 1
    return " ".join(runs)




class FrameRangeParam(click.ParamType):
    """``--frames A:B`` (half-open; either end may be omitted, or one frame ``A``), parsed once here.

    The library resolves it against the frames that exist and names the value in its errors;
    syntax errors name the option here.
    """

    name = "A:B"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> FrameRange:
        if isinstance(value, FrameRange):
            return value
        try:
            return FrameRange.parse(str(value))
        except RerfUsageError as exc:
            self.fail(exc.message, param, ctx)


FRAMES = FrameRangeParam()
