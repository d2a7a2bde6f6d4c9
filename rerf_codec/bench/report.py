"""JSON output shared by the benchmarks: numpy scalars and non-finite floats made JSON-safe."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

import numpy as np


def _default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    raise TypeError(type(o).__name__)


def _sanitize(o: Any) -> Any:
    """inf/nan are not JSON: write them as strings."""
    if isinstance(o, float) and not math.isfinite(o):
        return str(o)
    if isinstance(o, dict):
        return {k: _sanitize(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_sanitize(v) for v in o]
    return o


def to_json(result: Any) -> str:
    """A benchmark result as indented JSON (numpy scalars converted, inf/nan as strings)."""
    return json.dumps(_sanitize(result), indent=2, default=_default)


def int_list(text: str) -> list[int]:
    """argparse type for ``"65,75,85"`` (empty: no values)."""
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
