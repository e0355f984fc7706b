"""How many threads one metric call uses by default."""

from __future__ import annotations

import os

import pytest

from rtha.metrics.threads import DEFAULT_MAX_THREADS, resolve_threads, usable_cpus


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this system")
def test_the_default_counts_only_the_cpus_this_process_may_run_on():
    # pinned to one core (taskset, a container's cpuset), two threads would only take turns:
    # on one core of this 2-core machine the two-thread call took 3.14 s, one thread 2.60 s
    cpus = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(cpus)})
        assert usable_cpus() == 1 and resolve_threads(None) == 1
    finally:
        os.sched_setaffinity(0, cpus)
    assert resolve_threads(None) == min(DEFAULT_MAX_THREADS, len(cpus))

