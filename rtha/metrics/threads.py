"""Threads for one metric call: how many, and mapping work over them.

The metrics split their work into independent pieces (the two ears' front
ends, the ear model's chunks of bands) whose numba kernels, FFTs and numpy
ufuncs release the GIL, so plain threads share it out over the cores.
Each piece writes only its own arrays and the noise streams are positioned
before the pieces start, so the numbers do not depend on the thread count.
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


def resolve_threads(threads: int | None) -> int:
    """``threads``, or ``min(2, os.cpu_count())`` when None; ValueError unless a positive int."""
    if threads is None:
        return max(1, min(DEFAULT_MAX_THREADS, os.cpu_count() or 1))
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
