#!/usr/bin/env python
"""Benchmark the streaming enhancer against the offline model and a naive recompute.

For each model (default, tiny, lean, lean_wide), thread count (1, 2) and block
length (2, 4, 8, 16 ms) it streams a few seconds of audio one block at a time
and reports the per-block compute time (mean / p50 / p99 / max, ms), the
real-time factor (compute / audio time), and from the same run the offline
model's cost per second of audio and a naive sliding-window recompute (the
offline model over its receptive field for every block), plus the largest
difference between the stream and the offline output.  A model is a
checkpoint file when the name ends in ``.pt`` (e.g. a training run's
``last.pt``), ``models/<name>.pt`` when that file exists (whatever preset it
holds: the row keeps the name), else a randomly initialised model of the preset
``<name>`` (the cost is the same).

``--isa native,avx2`` runs the benchmark once per instruction set, each in a
fresh process, model by model in turn: ``avx2`` restricts numba (LLVM target
haswell without AVX-512 features), OpenBLAS (Haswell kernels), ATen, MKL and
oneDNN to AVX2, as on an AMD EPYC without AVX-512; the rows' ``isa`` and
``kernels`` fields say what each library then ran.

    python tools/bench_stream.py            # table
    python tools/bench_stream.py --json     # JSON list of rows
    python tools/bench_stream.py --quick    # shorter signals, fewer naive blocks
    python tools/bench_stream.py --isa native,avx2 --threads 1 --blocks-ms 4   # AVX-512 and AVX2 side by side
    python tools/bench_stream.py --soak     # 1 hour streamed: memory and cLN drift
    python tools/bench_stream.py --level-step  # stale cLN after 10 min, exact vs horizon

JSON rows carry ``model, threads, block_ms, rtf, p99_ms, offline_rtf,
naive_rtf, max_abs_diff_vs_offline`` (wall-clock times) and more; the
``*_cpu`` fields repeat the timings in process CPU time, which on a shared,
busy machine shows the cost without the time lost to other processes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from rtha.enhance import (  # noqa: E402
    ConvTasNet,
    ConvTasNetConfig,
    StreamingEnhancer,
    default_model_path,
    load_checkpoint,
)
from rtha.enhance.config import PRESETS  # noqa: E402
from rtha.enhance.kernels import target_has_avx512  # noqa: E402
from rtha.enhance.streaming import set_threads  # noqa: E402

#: Environment that restricts every library on the path to AVX2, so that an AVX-512 machine runs the
#: kernels an AMD EPYC without AVX-512 would (NUMBA_CPU_NAME alone keeps the host's AVX-512 features).
ISA_ENV = {
    "native": {},
    "avx2": {
        "NUMBA_CPU_NAME": "haswell",
        "NUMBA_CPU_FEATURES": "",
        "OPENBLAS_CORETYPE": "Haswell",
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
    },
}


def kernels_in_use() -> str:
    """What this process runs: numba's LLVM target (AVX-512 or not), ATen's capability, OpenBLAS's core."""
    import ctypes

    import llvmlite.binding as ll
    import scipy.linalg  # noqa: F401  (loads OpenBLAS)
    from numba.core import config

    numba = f"{config.CPU_NAME or ll.get_host_cpu_name()}{'+avx512' if target_has_avx512() else ''}"
    blas = "?"
    with open("/proc/self/maps") as maps:
        libs = {line.split()[-1] for line in maps if "openblas" in line.lower() and line.rstrip().endswith(".so")}
    for lib in sorted(libs):
        handle = ctypes.CDLL(lib)
        for fn in ("scipy_openblas_get_corename", "openblas_get_corename"):
            if hasattr(handle, fn):
                getattr(handle, fn).restype = ctypes.c_char_p
                blas = getattr(handle, fn)().decode()
    return f"numba {numba}, aten {torch.backends.cpu.get_cpu_capability()}, openblas {blas}"


def preset_of(cfg: ConvTasNetConfig) -> str:
    """The preset a config equals, else "custom"."""
    return next((name for name, p in PRESETS.items() if ConvTasNetConfig(**p) == cfg), "custom")


def model_file(name: str) -> Path | None:
    """The checkpoint ``name`` stands for (a ``.pt`` path, or ``models/<name>.pt``), if that file exists."""
    path = Path(name) if name.endswith(".pt") else default_model_path(name)
    return path if path.is_file() else None


def get_model(name: str) -> tuple[ConvTasNet, str]:
    """:func:`model_file` if it exists (whatever its preset), else a seeded random model of preset ``name``."""
    path = model_file(name)
    if path is not None:
        return load_checkpoint(path)[0], "trained"
    torch.manual_seed(0)
    return ConvTasNet(ConvTasNetConfig.preset(name)).eval(), "random"


def test_signal(seconds: float, fs: int, seed: int = 0) -> np.ndarray:
    """Speech-like test input ``(1, samples)``: noise with a slow syllable-rate envelope."""
    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    t = np.arange(n) / fs
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t) ** 2
    return (0.1 * env * rng.standard_normal(n)).astype(np.float32)[None]


def offline(model: ConvTasNet, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(x))[:, 0].numpy()


def clocks() -> np.ndarray:
    """``[wall, process CPU]`` seconds now: CPU time excludes time lost to other processes on a busy machine."""
    return np.array([time.perf_counter(), time.process_time()])


def time_offline(model: ConvTasNet, x: np.ndarray, repeats: int) -> tuple[np.ndarray, np.ndarray]:
    """Best-of-``repeats`` ``[wall, cpu]`` seconds for one offline pass, and its output."""
    best = np.full(2, math.inf)
    for _ in range(repeats):
        t0 = clocks()
        y = offline(model, x)
        best = np.minimum(best, clocks() - t0)
    return best, y


def time_naive(model: ConvTasNet, x: np.ndarray, block: int, n_blocks: int) -> np.ndarray:
    """Mean ``[wall, cpu]`` seconds per block when every block reruns the model over its receptive field."""
    cfg = model.cfg
    context = cfg.receptive_field_frames * cfg.hop + cfg.L
    times = []
    with torch.inference_mode():
        for end in [x.shape[1] - i * block for i in range(n_blocks)]:
            window = torch.from_numpy(x[:, max(0, end - context - block) : end])
            t0 = clocks()
            model(window)[:, 0, -block:].numpy()
            times.append(clocks() - t0)
    return np.mean(times, axis=0)


def time_stream(enh: StreamingEnhancer, x: np.ndarray, block: int, repeats: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Per-block ``[wall, cpu]`` seconds ``(blocks, 2)`` of the fastest of ``repeats`` passes, and the output ``(1, samples)``."""
    for _ in range(20):  # warm-up
        enh.process_block(x[:, :block])
    n = x.shape[1] // block * block
    out = np.empty((1, n), np.float32)
    best = None
    for _ in range(repeats):
        enh.reset()
        times = np.empty((n // block, 2))
        for k, i in enumerate(range(0, n, block)):
            t0 = clocks()
            out[:, i : i + block] = enh.process_block(x[:, i : i + block])
            times[k] = clocks() - t0
        if best is None or times[:, 0].sum() < best[:, 0].sum():
            best = times
    return best, out


def bench(models, threads_list, blocks_ms, seconds, naive_blocks, repeats, backends=("auto",), isa="native"):
    """One row per model, threads, engine and block length; times are wall clock, ``*_cpu`` process CPU.

    Stream and offline times are the best of ``repeats`` passes (offline: at least 2, unless 1 is asked).
    """
    rows = []
    kernels = kernels_in_use()
    for name in models:
        model, weights = get_model(name)
        fs = model.cfg.sample_rate
        x = test_signal(seconds, fs)
        for threads in threads_list:
            set_threads(threads)
            t_off, y_off = time_offline(model, x, repeats if repeats == 1 else max(2, repeats))
            offline_rtf = t_off / seconds
            for backend, block_ms in [(b, ms) for b in backends for ms in blocks_ms]:
                block = round(block_ms * fs / 1000)
                enh = StreamingEnhancer(model, block_size=block, backend=backend)
                times, y = time_stream(enh, x, block, repeats)
                d = enh.latency
                n = y.shape[1]
                rtf = times.sum(axis=0) / (n / fs)
                naive_rtf = time_naive(model, x, block, naive_blocks) / (block / fs)
                wall, cpu = times[:, 0] * 1e3, times[:, 1] * 1e3
                row = {
                    "model": name,
                    "isa": isa,
                    "kernels": kernels,
                    "preset": preset_of(model.cfg),
                    "weights": weights,
                    "threads": threads,
                    "block_ms": block_ms,
                    "block_samples": block,
                    "latency_samples": d,
                    "backend": enh.backend,
                    "rtf": rtf[0],
                    "mean_ms": wall.mean(),
                    "p50_ms": np.percentile(wall, 50),
                    "p99_ms": np.percentile(wall, 99),
                    "max_ms": wall.max(),
                    "offline_rtf": offline_rtf[0],
                    "naive_rtf": naive_rtf[0],
                    "stream_over_offline": rtf[0] / offline_rtf[0],
                    "naive_over_stream": naive_rtf[0] / rtf[0],
                    "rtf_cpu": rtf[1],
                    "p99_cpu_ms": np.percentile(cpu, 99),
                    "offline_rtf_cpu": offline_rtf[1],
                    "naive_rtf_cpu": naive_rtf[1],
                    "stream_over_offline_cpu": rtf[1] / offline_rtf[1],
                    "naive_over_stream_cpu": naive_rtf[1] / rtf[1],
                    "max_abs_diff_vs_offline": np.abs(y[:, d:] - y_off[:, : n - d]).max(),
                    "seconds": n / fs,
                    "repeats": repeats,
                }
                rows.append({k: v.item() if isinstance(v, np.generic) else v for k, v in row.items()})
                print(
                    f"{name} [{isa}] threads={threads} {enh.backend} {block_ms} ms: RTF {rtf[0]:.3f} (cpu {rtf[1]:.3f}) "
                    f"p99 {row['p99_ms']:.2f} ms, offline {offline_rtf[0]:.3f} (cpu {offline_rtf[1]:.3f}), "
                    f"naive {naive_rtf[0]:.2f} (cpu {naive_rtf[1]:.2f})",
                    file=sys.stderr,
                    flush=True,
                )
    return rows


def rss_mb() -> float:
    """Resident memory of this process now, MiB (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def soak(name: str, minutes: float, threads: int, seed: int = 0) -> dict:
    """Stream ``minutes`` of audio in random blocks (no pacing); memory and cLN drift at the end.

    The drift reference is the encoder-output cLN statistics (layer 0)
    recomputed offline in float64 from the same input; the deeper layers use
    the same float64 accumulation.
    """
    set_threads(threads)
    model, weights = get_model(name)
    cfg = model.cfg
    fs, S, L = cfg.sample_rate, cfg.hop, cfg.L
    enh = StreamingEnhancer(model)
    chunk_s = 10.0  # the input is made and checked in 10 s chunks, never held whole
    n_chunks = max(1, round(minutes * 60 / chunk_s))
    rng = np.random.default_rng(seed)
    enc = model.encoder.weight.detach().double()[:, 0, :].numpy().T  # (L, N)
    ref = np.zeros(2)  # float64 sums of encoder output and its square, all channels and frames
    frames = 0
    tail = np.zeros(L - S)
    rss = []
    worst_ms = 0.0
    t_start = time.perf_counter()
    for c in range(n_chunks):
        level = 10 ** rng.uniform(-2.5, -0.5)
        x = (level * rng.standard_normal((1, int(chunk_s * fs)))).astype(np.float32)
        i = 0
        while i < x.shape[1]:
            n = int(rng.integers(1, 400))
            t0 = time.perf_counter()
            enh.process_block(x[:, i : i + n])
            worst_ms = max(worst_ms, (time.perf_counter() - t0) * 1e3)
            i += n
        buf = np.concatenate([tail, x[0].astype(np.float64)])
        k = (buf.size - (L - S)) // S
        hops = buf[: (k + 1) * S].reshape(k + 1, S)
        w = np.maximum(np.concatenate([hops[:-1], hops[1:]], axis=1) @ enc, 0.0)
        ref += [w.sum(), (w * w).sum()]
        frames += k
        tail = buf[k * S :]
        if c % max(1, round(60 / chunk_s)) == 0 or c == n_chunks - 1:
            rss.append(rss_mb())
    stats = enh.cln_statistics()
    count = frames * cfg.N
    ref_mean = ref[0] / count
    ref_var = ref[1] / count - ref_mean**2
    return {
        "soak_model": name,
        "weights": weights,
        "threads": threads,
        "minutes": n_chunks * chunk_s / 60,
        "compute_s": time.perf_counter() - t_start,
        "max_block_ms": worst_ms,
        "rss_mb_after_first_10s": rss[0],
        "rss_mb_end": rss[-1],
        "rss_mb_max_sampled": max(rss),
        "rss_mb_every_10_min": rss[:: max(1, len(rss) // 6)],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cln_mean_rel_dev": abs(stats[0, 0, 0] - ref_mean) / abs(ref_mean),
        "cln_var_rel_dev": abs(stats[0, 0, 1] - ref_var) / abs(ref_var),
    }


def level_step(name: str, quiet_minutes: float, horizon_s: float, threads: int, seed: int = 0) -> list[dict]:
    """A quiet room (-50 dBFS noise) for ``quiet_minutes``, then 10 s loud (-10 dBFS, speech-like).

    For exact cLN and for ``cln_horizon_s``, compares the end of the loud part
    with a stream that started fresh in it: the encoder-output cLN variance
    (dB) and the output level after the first second (dB).  0 dB = no staleness.
    """
    set_threads(threads)
    model, weights = get_model(name)
    fs = model.cfg.sample_rate
    loud = test_signal(10.0, fs, seed + 1) * np.float32(10 ** (-10 / 20) / 0.07)
    chunk = 1600  # block length: any length gives the same output

    def run(enh: StreamingEnhancer, x: np.ndarray) -> np.ndarray:
        return np.concatenate([enh.process_block(x[:, i : i + chunk]) for i in range(0, x.shape[1], chunk)], 1)

    rows = []
    for horizon in (None, horizon_s):
        fresh = StreamingEnhancer(model, cln_horizon_s=horizon)
        y_fresh = run(fresh, loud)
        enh = StreamingEnhancer(model, cln_horizon_s=horizon)
        rng = np.random.default_rng(seed)
        t0 = time.perf_counter()
        for _ in range(round(quiet_minutes * 6)):  # 10 s of quiet at a time
            run(enh, (10 ** (-50 / 20) * rng.standard_normal((1, 10 * fs))).astype(np.float32))
        y = run(enh, loud)
        rows.append(
            {
                "level_step_model": name,
                "weights": weights,
                "cln_horizon_s": horizon,
                "quiet_minutes": quiet_minutes,
                "cln_var_db_vs_fresh": 10 * math.log10(enh.cln_statistics()[0, 0, 1] / fresh.cln_statistics()[0, 0, 1]),
                "loud_out_db_vs_fresh": 10 * math.log10(np.mean(y[:, fs:] ** 2) / np.mean(y_fresh[:, fs:] ** 2)),
                "compute_s": time.perf_counter() - t0,
            }
        )
    return rows


def print_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Streaming enhancer, 1 channel: per-block time (ms, wall unless cpu) and real-time factors")
    cols = [
        ("model", "model", "{}"), ("preset", "preset", "{}"), ("weights", "weights", "{}"), ("isa", "isa", "{}"),
        ("backend", "engine", "{}"), ("threads", "thr", "{}"),
        ("block_ms", "block ms", "{:g}"), ("latency_samples", "latency", "{}"), ("rtf", "RTF", "{:.3f}"),
        ("rtf_cpu", "RTF cpu", "{:.3f}"), ("p50_ms", "p50", "{:.3f}"), ("p99_ms", "p99", "{:.3f}"),
        ("p99_cpu_ms", "p99 cpu", "{:.3f}"), ("max_ms", "max", "{:.2f}"), ("offline_rtf", "offline", "{:.3f}"),
        ("offline_rtf_cpu", "offline cpu", "{:.3f}"), ("naive_rtf_cpu", "naive cpu", "{:.2f}"),
        ("stream_over_offline_cpu", "stream/offline cpu", "{:.2f}"),
        ("naive_over_stream_cpu", "naive/stream cpu", "{:.0f}"),
        ("max_abs_diff_vs_offline", "max|diff|", "{:.1e}"),
    ]  # fmt: skip
    for _, label, _ in cols:
        table.add_column(label, justify="right", no_wrap=True)
    for r in rows:
        table.add_row(*[fmt.format(r[key]) for key, _, fmt in cols])
    console = Console()
    if not console.is_terminal:
        console = Console(width=240)
    console.print(table)
    for isa, kernels in dict((r["isa"], r["kernels"]) for r in rows).items():
        console.print(f"{isa}: {kernels}")


def bench_isas(isas: list[str], models: list[str], child_args: list[str]) -> list[dict]:
    """The benchmark once per instruction set (:data:`ISA_ENV`), each in a fresh process, model by model in turn."""
    rows = []
    for name in models:
        for isa in isas:
            env = {**os.environ, **ISA_ENV[isa]}
            cmd = [sys.executable, __file__, "--json", "--models", name, "--as-isa", isa, *child_args]
            rows += json.loads(subprocess.run(cmd, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="print a JSON list of rows instead of a table")
    p.add_argument("--quick", action="store_true", help="1 s signals, 4 naive blocks, 1 offline pass")
    p.add_argument("--models", default="default,tiny,lean,lean_wide",
                   help="shipped models, checkpoint files (*.pt) or presets (default: default,tiny,lean,lean_wide)")
    p.add_argument("--isa", help=f"instruction sets to run side by side, each in a fresh process: {', '.join(ISA_ENV)}"
                   " (default: this process as it is)")
    p.add_argument("--as-isa", default="native", help=argparse.SUPPRESS)  # the label a --isa child gives its rows
    p.add_argument("--threads", default="1,2", help="thread counts (default: 1,2)")
    p.add_argument("--blocks-ms", default="2,4,8,16", help="block lengths in ms (default: 2,4,8,16)")
    p.add_argument("--backends", default="auto", help="streaming engines: auto (numba on CPU), numba, torch")
    p.add_argument("--seconds", type=float, default=4.0, help="audio streamed per row (default: 4)")
    p.add_argument("--naive-blocks", type=int, default=8, help="blocks timed for the naive recompute (default: 8)")
    p.add_argument("--repeat", type=int, default=1,
                   help="stream each row this many times and keep the fastest pass (offline: best of max(2, N)); "
                   "on a shared machine 3-5 show the cost without most of the interference (default: 1)")
    p.add_argument("--soak", action="store_true", help="instead: stream --soak-minutes of audio in random blocks")
    p.add_argument("--soak-minutes", type=float, default=60.0)
    p.add_argument("--level-step", action="store_true", help="instead: level step after --quiet-minutes of quiet")
    p.add_argument("--quiet-minutes", type=float, default=10.0)
    p.add_argument("--horizon-s", type=float, default=10.0, help="cln_horizon_s compared in --level-step")
    args = p.parse_args(argv)
    isas = [i for i in (args.isa or "").split(",") if i]
    if any(i not in ISA_ENV for i in isas):
        p.error(f"--isa {args.isa}: expected a comma-separated list of {', '.join(ISA_ENV)}")
    models = [m for m in args.models.split(",") if m]
    for m in models:  # every name is checked before any work
        if model_file(m) is None and m not in PRESETS:
            p.error(f"--models: {m!r} is neither a checkpoint file, a shipped model in models/ nor a preset "
                    f"({', '.join(PRESETS)})")
    try:
        threads = [int(t) for t in args.threads.split(",")]
        blocks = [int(b) if float(b).is_integer() else float(b) for b in args.blocks_ms.split(",")]
    except ValueError:
        p.error(f"--threads {args.threads} / --blocks-ms {args.blocks_ms}: expected comma-separated numbers")
    if min(threads) < 1 or min(blocks) <= 0:
        p.error(f"--threads {args.threads} / --blocks-ms {args.blocks_ms}: expected positive numbers")
    if args.soak or args.level_step:
        out = []
        for name in models:
            if args.soak:
                out.append(soak(name, args.soak_minutes, threads[0]))
            if args.level_step:
                out.extend(level_step(name, args.quiet_minutes, args.horizon_s, threads[0]))
        print(json.dumps(out, indent=1))
        return 0
    seconds, naive_blocks, repeats = (1.0, 4, 1) if args.quick else (args.seconds, args.naive_blocks, args.repeat)
    if isas:
        child_args = ["--threads", args.threads, "--blocks-ms", args.blocks_ms, "--backends", args.backends,
                      "--seconds", str(args.seconds), "--naive-blocks", str(args.naive_blocks),
                      "--repeat", str(args.repeat)] + ["--quick"] * args.quick
        rows = bench_isas(isas, models, child_args)
    else:
        rows = bench(models, threads, blocks, seconds, naive_blocks, repeats, args.backends.split(","), args.as_isa)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
