#!/usr/bin/env python3
"""Benchmark the streaming chain through ``rtha replay --report``.

Every combination of model (default, tiny), block size (2/4/8/16 ms) and torch
threads (1, 2) replays the same input (default: the built-in example looped to
``--seconds``) through the full chain (enhancer -> NAL-R -> compressor -> soft
clip) and collects the report: real-time factor, per-block compute
mean/p50/p95/p99/max, deadline misses, algorithmic and measured latency.

A shipped model missing from ``models/`` is replaced by a model of the same
preset with random weights (same size, same cost); the ``weights`` column says
which was used.

    tools/bench_replay.py                       # the full table, 20 s of audio each
    tools/bench_replay.py --seconds 60 --models default --blocks 4ms --threads 1
    tools/bench_replay.py --json                # JSON instead of the table
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def model_for(name: str, folder: Path) -> tuple[Path, str]:
    """The shipped model ``name``, or a random-weight one of that preset; returns (path, weights)."""
    from rtha.enhance import ConvTasNet, ConvTasNetConfig, default_model_path, save_checkpoint

    path = default_model_path(name)
    if path.is_file():
        return path, "trained"
    import torch

    torch.manual_seed(0)
    path = folder / f"random-{name}.pt"
    save_checkpoint(path, ConvTasNet(ConvTasNetConfig.preset(name)), {"note": "random weights for benchmarking"})
    return path, "random"


def looped_example(seconds: float, folder: Path) -> Path:
    """The built-in example repeated to ``seconds`` (16 kHz mono)."""
    from rtha.audio_io import AudioReader, write_audio
    from rtha.example import example_path

    with AudioReader(example_path()) as r:
        x = r.read_all()
        fs = r.fs
    n = int(seconds * fs)
    y = np.tile(x, (1, -(-n // x.shape[1])))[:, :n]
    path = folder / f"bench-{seconds:g}s.wav"
    write_audio(path, y, fs)
    return path


def run_one(src: Path, model: Path | None, block: str, threads: int, report: Path, extra: list[str]) -> dict:
    from rtha.cli import main

    argv = ["replay", str(src), "--report", str(report), "--force", "--block", block, "--threads", str(threads), *extra]
    argv += ["--model", str(model)] if model else ["--no-enhancer"]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        rc = main(argv)
    if rc != 0:
        raise SystemExit(f"rtha {' '.join(argv)} failed: {err.getvalue().strip()}")
    return json.loads(report.read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", type=Path, help="audio file (default: the built-in example looped to --seconds)")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the looped example (default 20)")
    ap.add_argument("--models", nargs="+", default=["default", "tiny"],
                    help="shipped models (models/NAME.pt, else a random model of preset NAME); 'none' for no enhancer")
    ap.add_argument("--blocks", nargs="+", default=["2ms", "4ms", "8ms", "16ms"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--nalr-phase", choices=("minimum", "linear"), default="minimum")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = args.input or looped_example(args.seconds, tmp)
        for name in args.models:
            model, weights = (None, "-") if name == "none" else model_for(name, tmp)
            for block in args.blocks:
                for threads in args.threads:
                    r = run_one(src, model, block, threads, tmp / "r.json", ["--nalr-phase", args.nalr_phase])
                    rows.append({**r, "model": name, "model_file": r["model"], "weights": weights})
                    if not args.json:
                        print(f"  {name} {block} threads={threads}: rtf {r['rtf']:.3f}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"rtha replay benchmark: {rows[0]['audio_s']:.0f} s of audio per row, NAL-R {args.nalr_phase} phase")
    for col in ("model", "weights", "block ms", "threads", "RTF", "CPU RTF", "mean ms", "p50 ms", "p95 ms", "p99 ms", "max ms",
                "misses", "alg. latency ms", "meas. latency ms"):
        t.add_column(col, justify="right")
    for r in rows:
        meas = r["measured_latency_ms"]
        t.add_row(
            r["model"], r["weights"], f"{r['block_ms']:g}", str(r["threads"]), f"{r['rtf']:.3f}", f"{r['cpu_rtf']:.3f}",
            f"{r['mean_ms']:.3f}", f"{r['p50_ms']:.3f}", f"{r['p95_ms']:.3f}", f"{r['p99_ms']:.3f}",
            f"{r['max_ms']:.3f}", f"{r['deadline_misses']}/{r['blocks']}", f"{r['algorithmic_latency_ms']:.3f}",
            "n/a" if meas is None else f"{meas:.3f}",
        )
    console = Console()
    if not console.is_terminal:
        console = Console(width=180)  # a file or pipe: no wrapping
    console.print(t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
