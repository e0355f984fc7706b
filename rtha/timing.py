"""Per-block compute time of a stream, against the block's duration (its deadline).

One collector, :class:`BlockTimings`, serves ``rtha replay`` (wall-clock and
CPU time of each ``process_block``) and ``rtha live`` (the audio callback's
compute): adding a time writes into a preallocated ring, so the real-time
callback never allocates. :func:`timing_stats` turns times into the report's
keys: ``blocks``, ``mean_ms``, ``p50_ms``, ``p95_ms``, ``p99_ms``, ``max_ms``,
``deadline_misses``, ``rtf``.
"""

from __future__ import annotations

import numpy as np


class BlockTimings:
    """Compute times of a stream's blocks (seconds) against a deadline of ``block_s`` each.

    Args:
        block_s: duration of one block (the deadline), seconds.
        capacity: times kept (8 bytes each); beyond it the oldest are
            overwritten. Counts, deadline misses and the total cover every block.
    """

    def __init__(self, block_s: float, capacity: int) -> None:
        self.block_s = block_s
        self._t = np.zeros(max(1, int(capacity)))
        self.count = 0  # blocks timed
        self.total_s = 0.0
        self.deadline_misses = 0

    def add(self, seconds: float) -> None:
        """Record one block's compute time (no allocation: safe in an audio callback)."""
        self._t[self.count % self._t.size] = seconds
        self.count += 1
        self.total_s += seconds
        if seconds > self.block_s:
            self.deadline_misses += 1

    def __len__(self) -> int:
        return self.count

    @property
    def seconds(self) -> np.ndarray:
        """The kept times, oldest first: every block's, or the last ``capacity``."""
        n = self._t.size
        if self.count <= n:
            return self._t[: self.count]
        return np.roll(self._t, -(self.count % n))

    def stats(self, audio_s: float | None = None) -> dict:
        """:func:`timing_stats` of the kept times; ``blocks``, ``deadline_misses`` and ``rtf`` over every block.

        Args:
            audio_s: duration of the audio processed; default ``count * block_s``.
        """
        s = timing_stats(self.seconds, self.block_s)
        if self.count:
            audio_s = self.count * self.block_s if audio_s is None else audio_s
            s.update(
                blocks=self.count,
                deadline_misses=self.deadline_misses,
                rtf=self.total_s / audio_s if audio_s > 0 else float("nan"),
            )
        return s


def timing_stats(seconds: np.ndarray, block_s: float, audio_s: float | None = None) -> dict:
    """Summary of per-block compute times (seconds) against a deadline of ``block_s`` seconds per block.

    Args:
        seconds: compute time of each block, seconds.
        block_s: duration of one block (the deadline), seconds.
        audio_s: duration of the audio processed; default ``len(seconds) * block_s``.

    Returns:
        ``{"blocks", "mean_ms", "p50_ms", "p95_ms", "p99_ms", "max_ms",
        "deadline_misses", "rtf"}``; ``rtf`` = total compute / audio duration.
    """
    t = np.asarray(seconds, dtype=np.float64)
    if audio_s is None:
        audio_s = t.size * block_s
    if t.size == 0:
        nan = float("nan")
        return dict(blocks=0, mean_ms=nan, p50_ms=nan, p95_ms=nan, p99_ms=nan, max_ms=nan, deadline_misses=0, rtf=nan)
    p50, p95, p99 = np.percentile(t, [50, 95, 99]) * 1e3
    return {
        "blocks": int(t.size),
        "mean_ms": float(t.mean() * 1e3),
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "max_ms": float(t.max() * 1e3),
        "deadline_misses": int(np.count_nonzero(t > block_s)),
        "rtf": float(t.sum() / audio_s) if audio_s > 0 else float("nan"),
    }
