#!/usr/bin/env python
"""Benchmark HASPI v2 and HASQI v2: one ear and better ear, cold and warm.

Signals: the reference speech of ``tests/data/signals.npz`` and its noisy
version (white noise, 5 dB SNR), repeated to 6 s, at 44.1 kHz and 16 kHz; a
listener with the ``moderate`` preset audiogram in both ears; 100 dB SPL at
RMS 1 (the Clarity level).  For each metric and sample rate:

* cold: the first call in a fresh subprocess (numba's on-disk cache loaded,
  nothing compiled when the cache is warm; the import is timed separately);
* warm: the median of ``--repeat`` later calls in this process.

``better_ear_haspi_hasqi`` is better-ear HASPI plus better-ear HASQI of the
same scene: ``icassp2023_score``, which shares each ear's resampling and
input alignment between the two metrics.  Every item is the default call,
which uses ``min(2, os.cpu_count())`` threads (reported as ``threads``);
``better_ear_haspi_hasqi_1thread`` is the same call with ``threads=1`` (as in
each worker of ``rtha score --jobs N``).  Peak memory is the maximum resident
set size of a fresh subprocess scoring that pair on a 30 s scene at 44.1 kHz.
With ``--pyclarity PYTHON`` the same signals go through pyclarity 0.9.0 in that
interpreter (its warm time, after one call on a short signal compiles its numba
code), and the speed-up is reported beside ours.

    python tools/bench_metrics.py
    python tools/bench_metrics.py --json
    python tools/bench_metrics.py --pyclarity /path/to/venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rtha.audiogram import CHALLENGE_LEVEL_DB_SPL  # noqa: E402

SECONDS = 6.0
LONG_SECONDS = 30.0
RATES = (44100, 16000)
ITEMS = (
    "haspi_one_ear",
    "haspi_better_ear",
    "hasqi_one_ear",
    "hasqi_better_ear",
    "better_ear_haspi_hasqi",
    "better_ear_haspi_hasqi_1thread",
)


def scene(fs: int, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """(reference, processed), each ``(2, samples)`` float64: the test speech repeated to ``seconds``."""
    with np.load(ROOT / "tests" / "data" / "signals.npz") as f:
        ref, proc = f[f"ref_{fs}"].astype(np.float64), f[f"proc_{fs}_white_snr5"].astype(np.float64)
    n = int(seconds * fs)
    reps = -(-n // len(ref))
    ref, proc = np.tile(ref, reps)[:n], np.tile(proc, reps)[:n]
    # The right ear hears the scene 0.3 ms later and 2 dB quieter.
    delay = int(0.0003 * fs)
    right = lambda x: np.concatenate((np.zeros(delay), x[: n - delay])) * 10 ** (-2 / 20)  # noqa: E731
    return np.stack([ref, right(ref)]), np.stack([proc, right(proc)])


def metric_calls() -> dict:
    """item -> function(ref_lr, proc_lr, fs, listener); HASQI items only when rtha.metrics has them."""
    import rtha.metrics as metrics

    calls = {
        "haspi_one_ear": lambda r, p, fs, lis: metrics.haspi_v2(r[0], p[0], fs, lis.left, CHALLENGE_LEVEL_DB_SPL),
        "haspi_better_ear": lambda r, p, fs, lis: metrics.haspi_v2_better_ear(r, p, fs, lis, CHALLENGE_LEVEL_DB_SPL),
    }
    if hasattr(metrics, "hasqi_v2") and hasattr(metrics, "hasqi_v2_better_ear"):
        calls["hasqi_one_ear"] = lambda r, p, fs, lis: metrics.hasqi_v2(r[0], p[0], fs, lis.left, level_db_spl=CHALLENGE_LEVEL_DB_SPL)
        calls["hasqi_better_ear"] = lambda r, p, fs, lis: metrics.hasqi_v2_better_ear(r, p, fs, lis, CHALLENGE_LEVEL_DB_SPL)
        # icassp2023_score = 0.5 x (better-ear HASPI + better-ear HASQI), the
        # two metrics sharing each ear's resampling and input alignment.
        calls["better_ear_haspi_hasqi"] = lambda r, p, fs, lis: metrics.icassp2023_score(r, p, fs, lis, CHALLENGE_LEVEL_DB_SPL)
        calls["better_ear_haspi_hasqi_1thread"] = lambda r, p, fs, lis: metrics.icassp2023_score(
            r, p, fs, lis, CHALLENGE_LEVEL_DB_SPL, threads=1
        )
    return calls


def listener():
    from rtha.audiogram import PRESETS

    return PRESETS["moderate"]


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def run_cold(item: str, fs: int) -> dict:
    """In a fresh process: import time and the first call of ``item``."""
    t = time.perf_counter()
    calls = metric_calls()
    import_s = time.perf_counter() - t
    ref, proc = scene(fs, SECONDS)
    lis = listener()
    return {"import_s": import_s, "first_call_s": timed(lambda: calls[item](ref, proc, fs, lis))}


def run_memory() -> dict:
    """In a fresh process: peak RSS while scoring better-ear HASPI + HASQI on a 30 s scene."""
    calls = metric_calls()
    ref, proc = scene(44100, LONG_SECONDS)
    lis = listener()
    item = "better_ear_haspi_hasqi" if "better_ear_haspi_hasqi" in calls else "haspi_better_ear"
    calls[item](ref[:, :4410], proc[:, :4410], 44100, lis)  # load the numba code first
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    seconds = timed(lambda: calls[item](ref, proc, 44100, lis))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"item": item, "seconds": seconds, "rss_before_mb": before, "peak_rss_mb": peak}


def subprocess_json(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


PYCLARITY_SCRIPT = r"""
import json, sys, time
import numpy as np
from clarity.evaluator.haspi import haspi_v2, haspi_v2_be
from clarity.evaluator.hasqi import hasqi_v2, hasqi_v2_better_ear
from clarity.utils.audiogram import Audiogram, Listener
data = np.load(sys.argv[1])
freqs, levels = data["freqs"], data["levels"]
lis = Listener(Audiogram(levels=levels, frequencies=freqs), Audiogram(levels=levels, frequencies=freqs))
ear = lis.audiogram_left
level = float(data["level"])
out = {}
for fs in [int(v) for v in data["rates"]]:
    ref, proc = data[f"ref_{fs}"], data[f"proc_{fs}"]
    calls = {
        "haspi_one_ear": lambda r, p: haspi_v2(r[0], fs, p[0], fs, ear, level),
        "haspi_better_ear": lambda r, p: haspi_v2_be(r[0], r[1], p[0], p[1], fs, lis, level),
        "hasqi_one_ear": lambda r, p: hasqi_v2(r[0], fs, p[0], fs, ear, level1=level),
        "hasqi_better_ear": lambda r, p: hasqi_v2_better_ear(r[0], r[1], p[0], p[1], fs, lis, level),
    }
    short = int(0.5 * fs)
    for fn in calls.values():
        fn(ref[:, :short], proc[:, :short])  # compile pyclarity's numba code
    res = {}
    for name, fn in calls.items():
        np.random.seed(0)
        t = time.perf_counter()
        fn(ref, proc)
        res[name] = time.perf_counter() - t
    res["better_ear_haspi_hasqi"] = res["haspi_better_ear"] + res["hasqi_better_ear"]
    out[str(fs)] = res
print(json.dumps(out))
"""


def run_pyclarity(python: str) -> dict:
    from rtha.audiogram import CLARITY_CFS

    lis = listener()
    arrays = {"freqs": np.array(CLARITY_CFS, dtype=float), "levels": lis.left.levels, "level": CHALLENGE_LEVEL_DB_SPL, "rates": np.array(RATES)}
    for fs in RATES:
        arrays[f"ref_{fs}"], arrays[f"proc_{fs}"] = scene(fs, SECONDS)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "signals.npz"
        np.savez(path, **arrays)
        out = subprocess.run([python, "-c", PYCLARITY_SCRIPT, str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeat", type=int, default=3, help="warm calls per item (median)")
    parser.add_argument("--pyclarity", metavar="PYTHON", help="interpreter with pyclarity 0.9.0 to compare against")
    parser.add_argument("--_cold", nargs=2, metavar=("ITEM", "FS"), help=argparse.SUPPRESS)
    parser.add_argument("--_memory", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._cold:
        print(json.dumps(run_cold(args._cold[0], int(args._cold[1]))))
        return 0
    if args._memory:
        print(json.dumps(run_memory()))
        return 0

    from rtha.metrics.threads import resolve_threads

    calls = metric_calls()
    lis = listener()
    results: dict = {}
    for fs in RATES:
        ref, proc = scene(fs, SECONDS)
        row = results[str(fs)] = {}
        for item in ITEMS:
            if item not in calls:
                row[item] = None
                continue
            cold = subprocess_json(["--_cold", item, str(fs)])
            calls[item](ref, proc, fs, lis)
            warm = float(np.median([timed(lambda: calls[item](ref, proc, fs, lis)) for _ in range(args.repeat)]))
            row[item] = {"warm_s": warm, "cold_s": cold["first_call_s"], "import_s": cold["import_s"]}
    memory = subprocess_json(["--_memory"])
    report = {
        "signal_s": SECONDS,
        "level_db_spl": CHALLENGE_LEVEL_DB_SPL,
        "machine": {"cpus": os.cpu_count(), "load_avg_1min": os.getloadavg()[0], "python": platform.python_version()},
        "results": results,
        "better_ear_haspi_hasqi_warm_s": (results["44100"]["better_ear_haspi_hasqi"] or {}).get("warm_s"),
        "better_ear_haspi_hasqi_cold_s": (results["44100"]["better_ear_haspi_hasqi"] or {}).get("cold_s"),
        "better_ear_haspi_hasqi_warm_1thread_s": (results["44100"]["better_ear_haspi_hasqi_1thread"] or {}).get("warm_s"),
        "better_ear_haspi_hasqi_cold_1thread_s": (results["44100"]["better_ear_haspi_hasqi_1thread"] or {}).get("cold_s"),
        "threads": resolve_threads(None),
        "memory_30s": memory,
    }
    if args.pyclarity:
        ref_times = run_pyclarity(args.pyclarity)
        report["pyclarity_warm_s"] = ref_times
        report["speedup_vs_pyclarity"] = {
            fs: {item: ref_times[fs][item] / results[fs][item]["warm_s"] for item in ref_times[fs] if results[fs].get(item)}
            for fs in ref_times
        }
    if args.json:
        print(json.dumps(report))
    else:
        print_table(report)
    return 0


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"HASPI v2 / HASQI v2, {report['signal_s']:g} s scene, {report['threads']} threads per call "
        f"(load {report['machine']['load_avg_1min']:.1f})"
    )
    for col in ("fs", "item", "warm s", "cold s", "pyclarity s", "speed-up"):
        table.add_column(col, justify="right" if col not in ("item",) else "left", no_wrap=col == "item")
    for fs, row in report["results"].items():
        for item, r in row.items():
            if r is None:
                table.add_row(fs, item, "n/a", "n/a", "", "")
                continue
            ref = report.get("pyclarity_warm_s", {}).get(fs, {}).get(item.removesuffix("_1thread"))
            table.add_row(
                fs, item, f"{r['warm_s']:.3f}", f"{r['cold_s']:.3f}",
                f"{ref:.2f}" if ref else "", f"{ref / r['warm_s']:.1f}x" if ref else "",
            )
    console = Console()
    console.print(table)
    m = report["memory_30s"]
    console.print(f"30 s scene at 44.1 kHz, {m['item']}: peak RSS {m['peak_rss_mb']:.0f} MB ({m['rss_before_mb']:.0f} MB before), {m['seconds']:.2f} s")


if __name__ == "__main__":
    raise SystemExit(main())
