"""Per-block cost of the hearing-aid DSP stages, and the numba compressor vs plain Python.

    python tools/bench_dsp.py              # rich tables (~1 min on 2 cores)
    python tools/bench_dsp.py --json       # one JSON object
    python tools/bench_dsp.py --crossover  # also measure the direct/FFT crossover of FirFilter
    python tools/bench_dsp.py --against DIR  # the chain row here vs rtha in DIR (a `git worktree`), side by side

Per-block cost: a stereo stream (moderate-loss listener, both ears) cut into
blocks of 16/32/64/128 samples at 16 kHz and 44.1 kHz; the figure is the best
of several runs of the mean time per block, in microseconds, with the share
of the block's real-time budget (block / fs). NAL-R uses the default order
(5 ms each side: 81 taps at 16 kHz, 221 at 44.1 kHz).

Speed-up: the numba compressor over 6 s of 44.1 kHz audio against a plain
Python loop of the same recurrence (running window sum over a ring buffer).
The Python loop runs on the first second only and its time is scaled per
sample to 6 s; the output says so.

Hearing-loss simulator (MSBG, ``rtha.hearing_loss``): 4 ms stereo blocks at
44.1 kHz on one thread (BLAS too) for the mild, moderate and severe presets
(each picks its own filterbank), best of three passes over 3 s of noise
bursts. RTF = CPU time of the streaming thread / audio time (the cost, which
other processes on a shared machine do not inflate); ``wall_rtf`` is the
wall-clock figure of the same passes. ``hearing_loss_rtf`` in the JSON is the
moderate listener's, with its latency in samples and ms; ``load_average`` is
the 1-minute load when the bench ran.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one thread: the smearing's per-block matrix product goes to BLAS

import numpy as np  # noqa: E402

# RTHA_SOURCE: import rtha from another checkout (--against runs this file with it set to a `git worktree`)
SOURCE = Path(os.environ.get("RTHA_SOURCE") or Path(__file__).resolve().parents[1]).resolve()
sys.path.insert(0, str(SOURCE))

from rtha.audiogram import PRESETS  # noqa: E402
from rtha.dsp import Compressor, FirFilter, NalrFilter  # noqa: E402
from rtha.dsp.fir import crossover_block  # noqa: E402
from rtha.hearing_aid import hearing_aid_chain  # noqa: E402
from rtha.hearing_loss import HearingLossSimulator  # noqa: E402

RATES = (16000, 44100)
BLOCKS = (16, 32, 64, 128)


def _per_block_us(stage, x: np.ndarray, block: int, seconds: float = 0.15, repeats: int = 5) -> float:
    """Best mean time (us) per block over ``repeats`` runs of ~``seconds`` each."""
    stage.reset()
    stage.process_block(x[:, :block])  # compile / allocate outside the timing
    n_blocks = x.shape[1] // block
    best = math.inf
    for _ in range(repeats):
        start, done, t0 = 0, 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or done < 20:
            stage.process_block(x[:, start : start + block])
            start = (start + block) % (n_blocks * block)
            done += 1
        best = min(best, (time.perf_counter() - t0) / done)
    return best * 1e6


def block_costs() -> list[dict]:
    listener = PRESETS["moderate"]
    rows = []
    for fs in RATES:
        x = (0.3 * np.random.default_rng(0).standard_normal((2, fs))).astype(np.float32)
        stages = {
            "nalr linear direct": NalrFilter(listener, fs, phase="linear", method="direct"),
            "nalr linear fft": NalrFilter(listener, fs, phase="linear", method="fft"),
            "nalr minimum direct": NalrFilter(listener, fs, phase="minimum", method="direct"),
            "nalr minimum fft": NalrFilter(listener, fs, phase="minimum", method="fft"),
            "compressor": Compressor(fs),
            "chain (minimum, auto)": hearing_aid_chain(listener, fs),
        }
        for name, stage in stages.items():
            for block in BLOCKS:
                us = _per_block_us(stage, x, block)
                rows.append(dict(stage=name, fs=fs, block=block, us_per_block=us, budget_pct=100 * us * 1e-6 * fs / block))
    return rows


def chain_block_us(block_ms: float = 4.0, seconds: float = 2.0, passes: int = 5) -> dict:
    """CPU time per block of ``rtha replay --no-enhancer``'s chain: moderate listener, 16 kHz, mono in, 4 ms blocks.

    This thread's CPU time (what other processes on a shared machine do not
    inflate), best of ``passes`` passes over ``seconds`` of noise, in us.
    """
    fs = 16000
    block = round(block_ms * fs / 1000)
    x = (0.3 * np.random.default_rng(0).standard_normal((1, int(seconds * fs) // block * block))).astype(np.float32)
    chain = hearing_aid_chain(PRESETS["moderate"], fs)
    blocks = [np.ascontiguousarray(x[:, i : i + block]) for i in range(0, x.shape[1], block)]
    best = math.inf
    for _ in range(passes):
        chain.reset()
        chain.process_block(blocks[0])
        t0 = time.thread_time()
        for b in blocks:
            chain.process_block(b)
        best = min(best, (time.thread_time() - t0) / len(blocks))
    return dict(fs=fs, block=block, us_per_block=best * 1e6, source=str(SOURCE))


def compare_chain(other: Path, rounds: int = 5) -> dict:
    """:func:`chain_block_us` here and with rtha from ``other``, in alternating subprocesses; best of ``rounds`` each."""
    import subprocess

    runs: dict[str, list[float]] = {"this": [], "other": []}
    for _ in range(rounds):
        for key, src in (("other", other), ("this", SOURCE)):
            out = subprocess.run(
                [sys.executable, __file__, "--chain-only"], env={**os.environ, "RTHA_SOURCE": str(src)},
                capture_output=True, text=True, check=True,
            ).stdout
            runs[key].append(json.loads(out)["chain_block_us"]["us_per_block"])
    this, before = min(runs["this"]), min(runs["other"])
    return dict(this_us=this, other_us=before, other=str(other), ratio=this / before, rounds=rounds, runs=runs)


def _python_compressor(x: list[float], fs: float, threshold=0.35, attenuation=0.1, attack_ms=50.0, release_ms=1000.0, window_s=0.064):
    """The compressor recurrence as a plain Python loop (same maths as the numba kernel)."""
    width = int(window_s * fs)
    attack = (1.0 / (attack_ms / 1000.0)) / fs
    release = (1.0 / (release_ms / 1000.0)) / fs
    hold = (1.0 - attenuation) * threshold
    ring = [0.0] * width
    s, g, p = 0.0, 1.0, 0
    out = [0.0] * len(x)
    for i, v in enumerate(x):
        sq = v * v
        s += sq - ring[p]
        ring[p] = sq
        p += 1
        if p == width:
            p = 0
            s = sum(ring)
        rms = math.sqrt(max(s, 0.0) / width + 1e-8)
        if rms > threshold:
            g = g * (1.0 - attack) + (rms * attenuation + hold) * attack
        else:
            g = release + g * (1.0 - release)
        out[i] = v * g
    return out


def compressor_speedup(seconds: float = 6.0, python_seconds: float = 1.0) -> dict:
    fs = 44100
    x = (0.5 * np.random.default_rng(1).standard_normal((1, int(seconds * fs)))).astype(np.float32)
    comp = Compressor(fs)
    comp.process(x[:, :1000])  # load the cached compilation
    numba_s = min(_timed(lambda: comp.process(x)) for _ in range(5))
    head = x[0, : int(python_seconds * fs)]
    head_list = head.astype(np.float64).tolist()
    py_head_s = min(_timed(lambda: _python_compressor(head_list, fs)) for _ in range(3))
    # Same recurrence, same numbers: check before comparing speed.
    diff = float(np.max(np.abs(np.asarray(_python_compressor(head_list, fs)) - comp.process(head[None])[0])))
    py_s = py_head_s * x.shape[1] / head.size
    return dict(
        audio_seconds=seconds,
        fs=fs,
        numba_s=numba_s,
        python_s_scaled=py_s,
        python_timed_seconds=python_seconds,
        python_vs_numba_max_abs_diff=diff,
        speedup=py_s / numba_s,
        note=f"plain-Python loop timed on the first {python_seconds:g} s and scaled per sample to {seconds:g} s",
    )


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def latencies() -> list[dict]:
    """Latency of each stage of the chain (no enhancer) with either NAL-R phase."""
    rows = []
    for fs in RATES:
        for phase in ("minimum", "linear"):
            chain = hearing_aid_chain(PRESETS["moderate"], fs, nalr_phase=phase)
            for name, samples in chain.latencies + [("chain total", chain.latency)]:
                rows.append(dict(stage=name, nalr_phase=phase, fs=fs, samples=samples, ms=1000 * samples / fs))
    return rows


def hearing_loss_costs(block_ms: float = 4.0, seconds: float = 3.0, passes: int = 3) -> list[dict]:
    """Streaming cost of the MSBG simulator per preset: RTF and mean us per block, with its latency."""
    fs = 44100
    block = round(block_ms * fs / 1000)
    rng = np.random.default_rng(3)
    n = int(seconds * fs) // block * block
    # Noise bursts at speech-like levels (quiet to loud, some silence): every path of the model runs.
    env = np.repeat(rng.choice([0.0, 0.01, 0.05, 0.2], size=(2, n // 2205 + 1)), 2205, axis=1)[:, :n]
    x = (env * rng.standard_normal((2, n))).astype(np.float32)
    rows = []
    for name in ("mild", "moderate", "severe"):
        sim = HearingLossSimulator(PRESETS[name])
        sim.process_block(x[:, :block])  # load the cached compilations
        cpu = wall = math.inf
        for _ in range(passes):
            sim.reset()
            c0, t0 = time.thread_time(), time.perf_counter()
            for i in range(0, n, block):
                sim.process_block(x[:, i : i + block])
            cpu, wall = min(cpu, time.thread_time() - c0), min(wall, time.perf_counter() - t0)
        rows.append(
            dict(
                listener=name, severity=sim.severities[0], block=block, fs=fs, rtf=cpu / (n / fs),
                wall_rtf=wall / (n / fs), us_per_block=1e6 * cpu / (n // block),
                latency_samples=sim.latency, latency_ms=1000 * sim.latency / fs,
            )
        )
    return rows


def crossover(
    taps_list=(81, 161, 221, 331, 441, 881), blocks=(128, 256, 512, 768, 1024, 1536, 2048, 4096, 8192)
) -> list[dict]:
    """Per filter length (stereo): the smallest block from which FFT overlap-save beats direct at every larger block tried."""
    rows = []
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 2 * max(blocks))).astype(np.float32)
    for m in taps_list:
        taps = rng.standard_normal((2, m))
        direct, fft = FirFilter(taps, "direct"), FirFilter(taps, "fft")
        fft_wins = [_per_block_us(fft, x, b, 0.05, 3) < _per_block_us(direct, x, b, 0.05, 3) for b in blocks]
        measured = None
        for i in range(len(blocks) - 1, -1, -1):
            if not fft_wins[i]:
                break
            measured = blocks[i]
        rule = crossover_block(m)
        rows.append(dict(taps=m, measured_fft_wins_from=measured, auto_uses_fft_from=None if math.isinf(rule) else math.ceil(rule)))
    return rows


def _print_tables(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    costs = result["block_costs"]
    for fs in RATES:
        t = Table(title=f"per-block cost at {fs} Hz, stereo: us per block (% of real-time budget)")
        t.add_column("stage")
        for b in BLOCKS:
            t.add_column(f"{b} samples", justify="right")
        for name in dict.fromkeys(r["stage"] for r in costs):
            cells = {r["block"]: r for r in costs if r["stage"] == name and r["fs"] == fs}
            t.add_row(name, *(f"{cells[b]['us_per_block']:.1f} ({cells[b]['budget_pct']:.2f}%)" for b in BLOCKS))
        console.print(t)
    t = Table(title="latency per stage")
    for col in ("stage", "NAL-R phase", "fs", "samples", "ms"):
        t.add_column(col, justify="left" if col == "stage" else "right")
    for r in result["latency"]:
        t.add_row(r["stage"], r["nalr_phase"], str(r["fs"]), str(r["samples"]), f"{r['ms']:.3f}")
    console.print(t)
    if "crossover" in result:
        t = Table(title="FirFilter direct/FFT crossover (block samples, stereo)")
        for col in ("taps", "measured: FFT wins from", "auto: FFT from"):
            t.add_column(col, justify="right")
        for r in result["crossover"]:
            t.add_row(str(r["taps"]), str(r["measured_fft_wins_from"] or "> largest tried"), str(r["auto_uses_fft_from"] or "never"))
        console.print(t)
    t = Table(title="hearing-loss simulator (MSBG), stereo, 44.1 kHz, one thread: CPU time per block, RTF (CPU, wall), latency")
    for col in ("listener", "bank", "block", "CPU us", "RTF", "wall RTF", "latency", "ms"):
        t.add_column(col, justify="left" if col == "listener" else "right")
    for r in result["hearing_loss"]:
        t.add_row(
            r["listener"], r["severity"].lower(), str(r["block"]), f"{r['us_per_block']:.0f}", f"{r['rtf']:.3f}",
            f"{r['wall_rtf']:.3f}", str(r["latency_samples"]), f"{r['latency_ms']:.1f}",
        )
    console.print(t)
    c = result["chain_block_us"]
    console.print(f"replay --no-enhancer chain (mono in, {c['block']} samples at {c['fs']} Hz): {c['us_per_block']:.2f} us CPU per block")
    console.print(f"load average (1 min) during the bench: {result['load_average']:.1f}")
    s = result["compressor"]
    console.print(
        f"compressor, {s['audio_seconds']:g} s at {s['fs']} Hz: numba {s['numba_s'] * 1e3:.1f} ms, "
        f"plain Python {s['python_s_scaled']:.2f} s ({s['note']}); "
        f"speed-up [bold]{result['compressor_speedup_vs_python']:.0f}x[/bold] "
        f"(max |difference| {s['python_vs_numba_max_abs_diff']:.1e})"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--crossover", action="store_true", help="also measure FirFilter's direct/FFT crossover")
    p.add_argument("--chain-only", action="store_true", help="only the replay --no-enhancer chain's CPU time per 4 ms block (JSON)")
    p.add_argument("--against", type=Path, metavar="DIR",
                   help="compare that chain row with rtha from DIR (e.g. a `git worktree` of an older commit), side by side")
    args = p.parse_args(argv)
    if args.chain_only:
        print(json.dumps({"chain_block_us": chain_block_us()}))
        return 0
    if args.against:
        r = compare_chain(args.against.resolve())
        if args.json:
            print(json.dumps(r, indent=1))
        else:
            print(f"replay --no-enhancer chain, 4 ms blocks at 16 kHz, CPU us per block (best of {r['rounds']} alternating runs): "
                  f"{r['other']}: {r['other_us']:.2f}; this checkout: {r['this_us']:.2f}; ratio {r['ratio']:.3f}")
        return 0
    speed = compressor_speedup()
    hearing_loss = hearing_loss_costs()
    moderate = next(r for r in hearing_loss if r["listener"] == "moderate")
    result = dict(
        compressor_speedup_vs_python=speed["speedup"],
        compressor=speed,
        block_costs=block_costs(),
        chain_block_us=chain_block_us(),
        latency=latencies(),
        hearing_loss_rtf=moderate["rtf"],
        hearing_loss_latency_samples=moderate["latency_samples"],
        hearing_loss_latency_ms=moderate["latency_ms"],
        hearing_loss=hearing_loss,
        load_average=os.getloadavg()[0],
    )
    if args.crossover:
        result["crossover"] = crossover()
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        _print_tables(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
