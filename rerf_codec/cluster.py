"""Ray for scale-out: the one module of rerf that imports ``ray`` (an optional extra).

Why Ray and not a home-made pool: it schedules CPU and GPU tasks natively, retries tasks
whose worker died (``max_retries``), runs locally with no cluster and unchanged on one.
Everything rerf hands it is the library's own per-unit functions (``encode_segment``,
the trainer's per-GOF function), which the serial paths run in-process: tasks get paths
and frame ranges and return small results, so a run's output never depends on where or
in which order the units ran.

* :func:`connect` attaches to a running cluster (``address``: ``auto`` or ``ray://HOST:PORT``)
  or starts a quiet local instance sized to ``workers`` CPUs (no dashboard, no log
  forwarding, no usage reporting), and stops it again; a Ray already initialised in this
  process (a test's fixture) is used as it is.
* :meth:`Cluster.map_unordered` keeps at most ``workers`` tasks in flight (``ray.wait``
  backpressure; a replacement is submitted before a result is handed back, so no worker
  waits on the driver) and yields results as they finish. A worker that dies is retried
  (``max_retries``), as is an ``OSError`` (a file system hiccup); an exception raised by the
  code itself — a ``RerfError`` above all — never is: it comes back as one error naming the
  unit of work.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from rerf_codec.errors import RerfError, RerfUsageError

INSTALL_HINT = "pip install 'rerf[ray]'"
MAX_RETRIES = 3
"""Attempts after the first for a task whose worker died (Ray's default)."""

T = TypeVar("T")
R = TypeVar("R")


class ClusterError(RuntimeError):
    """A unit of work could not be run (its worker kept dying, the cluster went away)."""


def ray_available() -> bool:
    return importlib.util.find_spec("ray") is not None


def require_ray(what: str) -> None:
    """Fail in one line when Ray is not installed (``what``: the option that needs it)."""
    if not ray_available():
        raise RerfUsageError(f"{what} needs Ray, which is not installed: {INSTALL_HINT}")


def check_address(address: str | None) -> None:
    if address is None:
        return
    if address != "auto" and not address.startswith("ray://"):
        raise RerfUsageError(f"must be 'auto' or ray://HOST:PORT, got {address!r}", param="ray_address")


@dataclass
class Cluster:
    """A connected Ray runtime and how many tasks to keep in flight on it."""

    workers: int
    address: str | None
    started_here: bool

    def resources(self) -> dict[str, float]:
        import ray

        return {k: float(v) for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}

    def map_unordered(
        self,
        fn: Callable[[T], R],
        items: Iterable[T],
        *,
        describe: Callable[[T], str],
        num_cpus: float = 1,
        num_gpus: float = 0,
        max_retries: int = MAX_RETRIES,
        finish_in_flight: bool = False,
    ) -> Iterator[R]:
        """``fn(item)`` for every item as Ray tasks, at most ``workers`` at once; results in
        completion order. When a task fails, no new one starts; with ``finish_in_flight`` the
        running ones are still awaited and their results yielded (work kept for a resume)
        before the error is raised, else they are cancelled, as when the caller stops early."""
        import ray
        from ray.exceptions import RayError, RayTaskError

        remote = ray.remote(_call)
        opts = {"num_cpus": num_cpus, "num_gpus": num_gpus, "max_retries": max_retries, "retry_exceptions": [OSError]}
        todo = iter(items)
        pending: dict[Any, T] = {}

        def refill() -> None:
            while len(pending) < self.workers:
                item = next(todo, None)
                if item is None:
                    return
                ref = remote.options(name=describe(item), **opts).remote(fn, item)
                pending[ref] = item

        failure: Exception | None = None
        try:
            refill()
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                item = pending.pop(ready[0])
                if failure is None:
                    refill()  # before handing the result back: no worker waits on the driver
                try:
                    result = ray.get(ready[0])
                except RayTaskError as exc:
                    failure = failure or _unwrap(exc, describe(item))
                except RayError as exc:
                    failure = failure or ClusterError(
                        f"{describe(item)}: could not be run after {max_retries} retries: "
                        f"{type(exc).__name__}: {_first_line(str(exc))}"
                    )
                else:
                    yield result
                if failure is not None and not finish_in_flight:
                    break
            if failure is not None:
                raise failure
        finally:
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)


def _call(fn: Callable[[T], R], item: T) -> R:
    return fn(item)


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[0] if lines else ""


def _unwrap(exc: Any, unit: str) -> Exception:
    """The task's own exception, as one line naming the unit of work."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, RerfError):
        msg = str(cause)
        return type(cause)(msg if msg.startswith(unit.split(" (")[0]) else f"{unit}: {msg}")
    if isinstance(cause, BaseException):
        return ClusterError(f"{unit} failed: {type(cause).__name__}: {_first_line(str(cause))}")
    return ClusterError(f"{unit} failed: {_first_line(str(exc))}")


@contextlib.contextmanager
def connect(workers: int, address: str | None = None, *, gpus: bool = False) -> Iterator[Cluster]:
    """A Ray runtime for ``workers`` tasks at once: the one this process already has, the
    cluster at ``address``, or a local instance of ``workers`` CPUs (and the machine's GPUs
    if ``gpus``), stopped on exit."""
    require_ray("--workers / --ray-address")
    check_address(address)
    if workers < 1:
        raise RerfUsageError(f"must be at least 1, got {workers}", param="workers")
    import ray

    if ray.is_initialized():
        yield Cluster(workers, address, started_here=False)
        return
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    if address is None:
        # A fresh local instance: Ray's default token auth without its notice on stderr, no usage
        # statistics (nothing is sent anywhere at run time).
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        # Workers run at this command's priority: Ray's default (nice +15 relative to it) starves
        # them behind everything else on a shared machine (measured: 2 workers slower than 1 process).
        ray.init(
            num_cpus=workers, num_gpus=None if gpus else 0, include_dashboard=False,
            object_store_memory=max(256, 128 * workers) * 2**20, _system_config={"worker_niceness": 0}, **quiet,
        )  # fmt: skip
    else:
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise RerfUsageError(f"{address}: cannot connect: {_first_line(str(exc))}", param="ray_address") from None
    try:
        yield Cluster(workers, address, started_here=True)
    finally:
        ray.shutdown()


def segment_runner(cluster: Cluster, fn: Callable[[Any], Any] | None = None) -> Callable[[list[Any]], Iterator[Any]]:
    """An ``encode_sequence`` runner: each segment job is one CPU task running ``fn``
    (default ``encode_segment``; tests pass wrappers)."""
    from rerf_codec.codec.encoder import encode_segment

    task = fn or encode_segment

    def run(jobs: list[Any]) -> Iterator[Any]:
        return cluster.map_unordered(task, jobs, describe=lambda job: job.describe(), num_cpus=1)

    return run


def task_runner(cluster: Cluster, *, num_cpus: float = 1, num_gpus: float = 0) -> Callable[..., Iterator[Any]]:
    """A trainer runner (``rerf_codec.train.gofs.Runner``): ``fn(job)`` per job as Ray tasks
    asking for ``num_cpus`` CPUs and ``num_gpus`` GPUs each."""

    def run(fn: Callable[[Any], Any], jobs: list[Any], describe: Callable[[Any], str]) -> Iterator[Any]:
        return cluster.map_unordered(
            fn, jobs, describe=describe, num_cpus=num_cpus, num_gpus=num_gpus, finish_in_flight=True
        )

    return run
