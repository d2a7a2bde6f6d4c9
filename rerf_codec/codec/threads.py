"""Threading for the codec's numpy work: one BLAS thread, our own coarse split.

The codec's matrix products are skinny (``(M, 8) @ (8, 8)``): OpenBLAS's own threads
gain nothing on them and, when the cores are busy, spin and make them ~7× slower. So
codec work runs with BLAS limited to one thread, and we split the large independent
pieces (channels of motion compensation, row chunks of the inverse DCT) over a small
thread pool ourselves — numpy releases the GIL in these loops. Every piece computes
exactly the same operations on disjoint data, so results are bit-identical for any
number of threads (set ``RERF_THREADS`` to override the default of min(4, CPUs)).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_pool: ThreadPoolExecutor | None = None
_controller: Any = None


def thread_count() -> int:
    env = os.environ.get("RERF_THREADS")
    if env and env.isdigit() and int(env) >= 1:
        return int(env)
    return max(1, min(4, os.cpu_count() or 1))


def parallel_map(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[fn(x) for x in items]``, spread over the codec's thread pool."""
    items = list(items)
    n = thread_count()
    if n <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="rerf")
    return list(_pool.map(fn, items))


def chunks(total: int, pieces: int | None = None) -> list[slice]:
    """Split ``range(total)`` into up to ``pieces`` (default: thread count) contiguous slices."""
    pieces = max(1, min(pieces or thread_count(), total))
    bounds = [total * i // pieces for i in range(pieces + 1)]
    return [slice(bounds[i], bounds[i + 1]) for i in range(pieces) if bounds[i + 1] > bounds[i]]


@contextlib.contextmanager
def single_blas_thread() -> Iterator[None]:
    """Limit BLAS (OpenBLAS/MKL behind numpy) to one thread inside the block."""
    global _controller
    try:
        if _controller is None:
            from threadpoolctl import ThreadpoolController

            _controller = ThreadpoolController()
        ctx = _controller.limit(limits=1, user_api="blas")
    except Exception:  # pragma: no cover - threadpoolctl missing or unusable: run as is
        ctx = contextlib.nullcontext()
    with ctx:
        yield
