"""Threads for one metric call: how many, and mapping work over them.

The metrics split their work into independent pieces (the two ears' front
ends, the ear model's chunks of bands) whose numba kernels, FFTs and numpy
ufuncs release the GIL, so plain threads share it out over the cores.
Each piece writes only its own arrays and the noise streams are positioned
before the pieces start, so the numbers do not depend on the thread count.

Under load the threads share what the scheduler gives this process: with one
busy program beside it on 2 cores, the default two threads took 2.4-2.6 s for
a 6 s scene (1.6-1.8 s quiet; one thread 2.9-3.0 s beside the same program):
no slower than one thread. The default counts only the CPUs this process may
run on (its affinity: ``taskset``, container cpusets), so it never runs two
threads that must take turns on one core.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Threads used when the caller passes ``threads=None``: one call gains little beyond two.
DEFAULT_MAX_THREADS = 2


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity where the system has one), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on this system
        return max(1, os.cpu_count() or 1)


def resolve_threads(threads: int | None) -> int:
    """``threads``, or ``min(2, usable_cpus())`` when None; ValueError unless a positive int."""
    if threads is None:
        return min(DEFAULT_MAX_THREADS, usable_cpus())
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    return threads


def thread_map(fn: Callable[[T], R], items: Iterable[T], threads: int) -> list[R]:
    """``[fn(x) for x in items]``, on up to ``threads`` threads (in this thread when 1);
    the first exception raised by ``fn`` is re-raised here."""
    items = list(items)
    if threads <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(min(threads, len(items))) as pool:
        return list(pool.map(fn, items))


def run_concurrently(fns: Iterable[Callable[[], R]], threads: int) -> list[R]:
    """``[fn() for fn in fns]``, on up to ``threads`` threads (see :func:`thread_map`)."""
    return thread_map(lambda fn: fn(), fns, threads)
