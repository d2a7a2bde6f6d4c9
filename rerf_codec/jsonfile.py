"""Strict JSON for the project's metadata files (sequence.json, transforms.json).

Why strict: these files define how every byte of a sequence or dataset is read, so a
duplicate key (which plain ``json`` silently resolves to the last one) or NaN/Infinity
(not JSON) is a malformed file, reported as one line naming it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rerf_codec.errors import RerfFormatError


def _object_pairs(source: str) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise RerfFormatError(f"{source}: duplicate key '{k}'")
            out[k] = v
        return out

    return hook


def _reject_constant(source: str) -> Any:
    def hook(name: str) -> Any:
        raise RerfFormatError(f"{source}: invalid JSON: {name} is not a JSON number")

    return hook


def loads_strict(raw: bytes, source: str) -> Any:
    """Parse UTF-8 JSON bytes; any problem is a RerfFormatError naming ``source``."""
    try:
        return json.loads(
            raw.decode("utf-8"), object_pairs_hook=_object_pairs(source), parse_constant=_reject_constant(source)
        )
    except UnicodeDecodeError as exc:
        raise RerfFormatError(f"{source}: invalid JSON: not UTF-8 ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise RerfFormatError(f"{source}: invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise RerfFormatError(f"{source}: invalid JSON: nested too deeply") from None


def read_bounded(path: str | Path, max_bytes: int, missing_hint: str = "") -> bytes:
    """Read a small metadata file whole, refusing anything over ``max_bytes`` (checked while
    reading, so a huge file is never loaded). Errors are one RerfFormatError naming the file;
    ``missing_hint`` is appended to the "file is missing" message."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(max_bytes + 1)
    except FileNotFoundError:
        raise RerfFormatError(f"{path}: file is missing{missing_hint}") from None
    except OSError as exc:
        raise RerfFormatError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > max_bytes:
        raise RerfFormatError(f"{path}: larger than {max_bytes} bytes")
    return raw
