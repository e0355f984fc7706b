#!/usr/bin/env python
"""Real time under load: ``rtha replay`` and the metrics, quiet and with a CPU hog beside them.

A hearing aid cannot require an idle machine. This runs, side by side in one
session, each item quiet and then with one busy process beside it (a Python
``while True: pass``, started and killed here), ``--repeat`` rounds
interleaved, and reports medians. The busy process runs in a session of its
own, as a program started from another terminal would: where Linux schedules by
autogroup (most distributions), the CPUs are shared between sessions first, so
the measured command then has about one of two cores. (When this session's
autogroup has a nice value, the busy one gets the same, so other sessions on a
shared machine can be kept out of the measurement.)

* ``replay``: ``rtha replay`` with its defaults (the built-in example, the
  shipped model, 4 ms blocks), and the same with ``--threads 1``: the
  wall-clock real-time factor and deadline misses from its report;
* ``metrics``: better-ear HASPI + HASQI of a 6 s scene at 44.1 kHz
  (``icassp2023_score``, as ``tools/bench_metrics.py``) with the default
  threads and with ``threads=1``: seconds per call (warm).

The ratios: loaded / quiet for each variant, and defaults / ``--threads 1``
under load (issue 13's targets: within 1.3x both).

    python tools/bench_load.py
    python tools/bench_load.py --repeat 5 --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONDITIONS = ("quiet", "hog")
REPLAY_VARIANTS = {"defaults": [], "threads 1": ["--threads", "1"]}
METRIC_VARIANTS = {"defaults": None, "threads 1": 1}


@contextmanager
def condition(name: str):
    """Nothing (quiet) or one CPU-bound process beside the block."""
    if name == "quiet":
        yield
        return
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    _same_autogroup_nice(hog.pid)
    try:
        time.sleep(0.5)  # let the scheduler see it
        yield
    finally:
        hog.kill()
        hog.wait()


def _same_autogroup_nice(pid: int) -> None:
    """Give process ``pid``'s autogroup this process's autogroup nice (Linux; nothing elsewhere)."""
    try:
        nice = Path("/proc/self/autogroup").read_text().split()[-1]
        if nice != "0":
            Path(f"/proc/{pid}/autogroup").write_text(nice)
    except OSError:
        pass


def replay_once(extra: list[str], report: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "rtha", "replay", "--report", str(report), "--force", *extra]
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    r = json.loads(report.read_text())
    return {"rtf": r["rtf"], "cpu_rtf": r["cpu_rtf"], "deadline_misses": r["deadline_misses"], "blocks": r["blocks"]}


def metric_call():
    """``f(threads)``: one warm better-ear HASPI + HASQI call on the 6 s, 44.1 kHz scene; returns seconds."""
    sys.path.insert(0, str(ROOT / "tools"))
    from bench_metrics import listener, scene

    from rtha.metrics import icassp2023_score

    ref, proc = scene(44100, 6.0)
    lis = listener()

    def call(threads):
        t = time.perf_counter()
        icassp2023_score(ref, proc, 44100, lis, threads=threads)  # at the challenge level
        return time.perf_counter() - t

    call(None)  # compile / load the numba code
    return call


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds (medians are reported)")
    ap.add_argument("--items", default="replay,metrics", help="comma-separated: replay, metrics")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    items = [s.strip() for s in args.items.split(",") if s.strip()]

    samples: dict = {}
    call = metric_call() if "metrics" in items else None
    with tempfile.TemporaryDirectory() as tmp:
        if "replay" in items:
            replay_once([], Path(tmp) / "warm.json")  # the example recording and numba's cache, once
        for _ in range(args.repeat):
            for cond in CONDITIONS:
                with condition(cond):
                    if "replay" in items:
                        for name, extra in REPLAY_VARIANTS.items():
                            r = replay_once(extra, Path(tmp) / "r.json")
                            samples.setdefault(("replay", name, cond), []).append(r)
                    if "metrics" in items:
                        for name, threads in METRIC_VARIANTS.items():
                            samples.setdefault(("metrics", name, cond), []).append({"seconds": call(threads)})

    results = []
    for (item, variant, cond), runs in samples.items():
        key = "rtf" if item == "replay" else "seconds"
        row = {"item": item, "variant": variant, "condition": cond, key: statistics.median(r[key] for r in runs),
               "runs": [round(r[key], 4) for r in runs]}
        if item == "replay":
            row["deadline_misses"] = statistics.median(r["deadline_misses"] for r in runs)
            row["blocks"] = runs[0]["blocks"]
            row["cpu_rtf"] = statistics.median(r["cpu_rtf"] for r in runs)
        results.append(row)

    def value(item, variant, cond):
        key = "rtf" if item == "replay" else "seconds"
        return next(r[key] for r in results if (r["item"], r["variant"], r["condition"]) == (item, variant, cond))

    ratios = {}
    for item in items:
        ratios[item] = {
            "defaults_hog_over_quiet": value(item, "defaults", "hog") / value(item, "defaults", "quiet"),
            "threads1_hog_over_quiet": value(item, "threads 1", "hog") / value(item, "threads 1", "quiet"),
            "defaults_over_threads1_with_hog": value(item, "defaults", "hog") / value(item, "threads 1", "hog"),
        }
    out = {"machine": {"cpus": os.cpu_count(), "loadavg_end": os.getloadavg()}, "repeat": args.repeat,
           "results": results, "ratios": ratios}
    if args.json:
        print(json.dumps(out))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"rtha under load ({args.repeat} rounds, medians; load average at the end "
              f"{out['machine']['loadavg_end'][0]:.2f})")
    for col in ("item", "variant", "condition", "RTF / seconds", "deadline misses"):
        t.add_column(col)
    t.add_column("runs", no_wrap=True)
    for r in results:
        v = r.get("rtf", r.get("seconds"))
        misses = f"{r['deadline_misses']:g} of {r['blocks']}" if "blocks" in r else ""
        t.add_row(r["item"], r["variant"], r["condition"], f"{v:.3f}", misses, " ".join(f"{x:.3f}" for x in r["runs"]))
    Console().print(t)
    for item, rs in ratios.items():
        print(f"{item}: defaults hog/quiet {rs['defaults_hog_over_quiet']:.2f}x, threads 1 hog/quiet "
              f"{rs['threads1_hog_over_quiet']:.2f}x, defaults/threads 1 with hog {rs['defaults_over_threads1_with_hog']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
