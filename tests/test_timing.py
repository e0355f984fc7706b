"""BlockTimings: the one per-block compute-time collector of replay and live."""

from __future__ import annotations

import numpy as np
import pytest

from rtha.timing import BlockTimings, timing_stats


def test_block_timings_equal_timing_stats_while_every_time_is_kept():
    t = np.array([1.0, 2.0, 3.0, 5.0]) * 1e-3
    timings = BlockTimings(2.5e-3, capacity=4)
    for x in t:
        timings.add(x)
    got, want = timings.stats(audio_s=0.012), timing_stats(t, 2.5e-3, 0.012)
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-12), k
    assert np.array_equal(timings.seconds, t) and len(timings) == 4


def test_block_timings_ring_keeps_the_last_times_and_counts_every_block():
    timings = BlockTimings(2.5e-3, capacity=3)
    t = np.array([4.0, 1.0, 2.0, 1.5, 5.0]) * 1e-3  # 4 ms and 5 ms miss the deadline
    for x in t:
        timings.add(x)
    assert np.array_equal(timings.seconds, t[-3:])  # oldest first
    s = timings.stats()
    assert s["blocks"] == 5 and s["deadline_misses"] == 2
    assert s["rtf"] == pytest.approx(t.sum() / (5 * 2.5e-3), rel=1e-12)
    assert s["max_ms"] == pytest.approx(5.0) and s["p50_ms"] == pytest.approx(2.0)  # over the kept three


def test_block_timings_without_blocks_are_nan():
    s = BlockTimings(1e-3, capacity=8).stats(audio_s=1.0)
    assert s["blocks"] == 0 and s["deadline_misses"] == 0 and np.isnan(s["rtf"]) and np.isnan(s["p99_ms"])
