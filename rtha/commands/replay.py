"""``rtha replay [IN] --out OUT --report R.json``: stream a file through the chain, block by block.

The file is read in blocks (never whole), resampled on the fly when its rate is
not the chain's, pushed through the same streaming chain as ``rtha live`` and
written as it goes. Reported: algorithmic latency (per stage and total),
measured latency (GCC-PHAT of a probe through the same chain), per-block
compute mean/p50/p95/p99/max, deadline misses and the real-time factor, all in
wall-clock time; the same statistics of the replay thread's CPU time
(``cpu_*``) tell what an idle machine would take (with more than one thread
the helper threads' CPU time is not in them).
Without IN, the built-in example recording is replayed (:mod:`rtha.example`).

Documented behaviour for odd input: a mono file feeds both ears; channel 0 is
the left ear, 1 the right; more than 2 channels, a missing, unreadable or empty
file are one-line errors; NaN/Inf samples are replaced by 0, counted in the
report (``nonfinite_samples``) and warned about; samples beyond
±:data:`~rtha.commands.chain_options.INPUT_LIMIT` are clamped to it, counted
(``clamped_samples``) and warned about. Any file length works with any model
and block size. Output paths are checked before any work; SIGTERM stops the
replay as Ctrl-C does (what was processed is written, with the report).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..errors import RthaError
from .chain_options import INPUT_LIMIT, add_chain_args, chain_from_args, print_notes
from .common import output_path, sigterm_as_interrupt, stop_between_blocks
from .listening import HEARD_PLOT, add_listening_args, check_listening_args, describe_listening, listening_setup

#: Seconds of the input kept as the latency probe and for the plots.
PROBE_S = 4.0
PLOT_S = 10.0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "replay",
        help="stream an audio file through the hearing-aid chain and report latency and timing",
        description="Stream an audio file (default: the built-in example) through the hearing-aid chain block by "
        "block; report algorithmic and measured latency, per-block compute time, deadline misses and real-time factor.",
    )
    p.add_argument("input", nargs="?", type=Path, metavar="IN", help="audio file (default: the built-in example)")
    p.add_argument("--out", type=Path, metavar="OUT.wav", help="write the processed audio (2 channels: left, right)")
    p.add_argument("--report", type=Path, metavar="R.json", help="write the measurements as JSON")
    p.add_argument("--realtime", action="store_true", help="pace the blocks at the audio clock instead of as fast as possible")
    p.add_argument("--plots", type=Path, metavar="DIR", help="write a compute-time histogram and spectrograms (needs matplotlib)")
    p.add_argument("--force", action="store_true", help="overwrite --out, --report and plot files")
    add_chain_args(p)
    add_listening_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with sigterm_as_interrupt():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from ..audio_io import AudioReader, AudioWriter, output_format

    out = output_path(args.out, args.force) if args.out else None
    if out is not None:
        output_format(out)  # an extension libsndfile cannot write fails now, not after the model loads
    report_path = output_path(args.report, args.force, "--report") if args.report else None
    check_listening_args(args)
    if args.plots:
        _check_plots(args.plots, args.force, args.simulate_loss)
    if args.input is None:
        from ..example import example_path

        args.input = example_path()
        print(f"rtha: replaying the built-in example {args.input}", file=sys.stderr)
    if out is not None and out.resolve() == Path(args.input).resolve():
        raise RthaError(f"--out {out} is the input file; choose another output file")

    with AudioReader(args.input) as probe_file:  # check the file before loading a model
        fs_file = probe_file.fs_file
    setup = chain_from_args(args, fs_without_enhancer=fs_file)
    print_notes(setup.notes)
    paths = None
    if args.simulate_loss:  # the file is read at 44.1 kHz; the chain keeps its rate inside
        setup, paths = listening_setup(args, setup)
    block = setup.block

    with AudioReader(args.input, fs=setup.fs, limit=INPUT_LIMIT) as reader:
        out_channels = setup.chain.out_channels(reader.channels)
        writer = AudioWriter(out, setup.fs, out_channels) if out else None
        try:
            result = stream_file(setup.chain, reader, block, writer, realtime=args.realtime)
        finally:
            if writer is not None:
                writer.close()
        report = build_report(args, setup, reader, block, result)
        if paths is not None:
            report["hearing_loss"] = describe_listening(args, paths)

    if report["nonfinite_samples"]:
        print(
            f"rtha: warning: {args.input}: {report['nonfinite_samples']} NaN/Inf samples were replaced by 0",
            file=sys.stderr,
        )
    if report["clamped_samples"]:
        print(
            f"rtha: warning: {args.input}: {report['clamped_samples']} samples beyond ±{INPUT_LIMIT:g} "
            f"(full scale is ±1) were clamped to ±{INPUT_LIMIT:g}",
            file=sys.stderr,
        )
    if result.interrupted:
        print(f"rtha: interrupted after {result.frames / setup.fs:.2f} s of audio", file=sys.stderr)
    print_report(report)
    if report_path:
        report_path.write_text(json.dumps(report, indent=2) + "\n")
    if out is not None:
        print(f"rtha: wrote {out} ({result.frames / setup.fs:.2f} s, {out_channels} channels, {setup.fs} Hz)", file=sys.stderr)
    else:
        print("rtha: pass --out OUT.wav to save the processed audio", file=sys.stderr)
    if args.plots and not result.interrupted:
        write_plots(args.plots, result, setup.fs, block)
        if paths is not None:
            from .listening import write_heard_plot

            write_heard_plot(args.plots, paths, result.head_in, PLOT_S)
    return 130 if result.interrupted else 0


class ReplayResult:
    """What one pass over a file produced: timings, counts, and the head of input and output."""

    def __init__(self, timings, cpu_timings, frames, wall_s, head_in, head_out, interrupted):
        self.timings = timings
        self.cpu_timings = cpu_timings
        self.frames = frames
        self.wall_s = wall_s
        self.head_in = head_in
        self.head_out = head_out
        self.interrupted = interrupted


def stream_file(chain, reader, block: int, writer=None, realtime: bool = False) -> ReplayResult:
    """Push ``reader``'s blocks through ``chain`` (reset first), timing each ``process_block``.

    With ``realtime`` each block is processed no earlier than the moment its last
    sample would have arrived from a microphone. Ctrl-C or SIGTERM stops cleanly
    between two blocks: what was processed is written and ``interrupted`` is set.
    """
    import numpy as np

    from ..latency import warm_up
    from ..timing import BlockTimings

    fs = reader.fs
    keep = int(max(PROBE_S, PLOT_S) * fs)
    head_in, head_out = [], []
    kept = 0
    blocks = -(-reader.frames // block)  # every block's time is kept
    timings = BlockTimings(block / fs, blocks)
    cpu_timings = BlockTimings(block / fs, blocks)  # this thread's CPU time: what an idle machine would take
    frames = 0
    interrupted = False
    warm_up(chain, reader.channels, block)
    t_start = time.perf_counter()
    try:
        with stop_between_blocks() as stop:
            for x in reader.blocks(block):
                if stop.is_set():
                    interrupted = True
                    break
                n = x.shape[1]
                if n < block:
                    # the last block: pad to full size (an enhancer tuned to the block needs
                    # aligned blocks); the chain is causal, so padding never reaches earlier output
                    x = np.pad(x, ((0, 0), (0, block - n)))
                if realtime:
                    wait = t_start + (frames + n) / fs - time.perf_counter()
                    if wait > 0:
                        time.sleep(wait)
                t0, c0 = time.perf_counter(), time.thread_time()
                y = chain.process_block(x)
                timings.add(time.perf_counter() - t0)
                cpu_timings.add(time.thread_time() - c0)
                x, y = x[:, :n], y[:, :n]
                frames += n
                if writer is not None:
                    writer.write(y)
                if kept < keep:
                    head_in.append(x)
                    head_out.append(y)
                    kept += x.shape[1]
    except KeyboardInterrupt:  # a second Ctrl-C or SIGTERM
        interrupted = True
    wall = time.perf_counter() - t_start

    def _join(parts, ch):
        return np.concatenate(parts, axis=1)[:, :keep] if parts else np.zeros((ch, 0), np.float32)

    return ReplayResult(
        timings,
        cpu_timings,
        frames,
        wall,
        _join(head_in, reader.channels),
        _join(head_out, chain.out_channels(reader.channels)),
        interrupted,
    )


def build_report(args, setup, reader, block: int, result: ReplayResult) -> dict:
    """Everything measured, as plain JSON-able values."""
    from ..latency import algorithmic_latency, measure_latency

    fs = setup.fs
    nonfinite = reader.nonfinite_count + setup.chain.nonfinite_count
    report = {
        "input": str(args.input),
        "input_fs": reader.fs_file,
        "input_channels": reader.channels,
        "input_frames": reader.frames_file,
        "output": str(args.out) if args.out else None,
        "output_channels": setup.chain.out_channels(reader.channels),
        "resampled": reader.resampled,
        "resampling": reader.describe_resampling(),
        **setup.describe(),
        "block": block,
        "block_ms": 1e3 * block / fs,
        "realtime": bool(args.realtime),
        "audio_s": result.frames / fs,
        "wall_s": result.wall_s,
        "interrupted": result.interrupted,
        "nonfinite_samples": int(nonfinite),
        "clamped_samples": int(reader.clamped_count),
        **result.timings.stats(result.frames / fs),
        **{f"cpu_{k}": v for k, v in result.cpu_timings.stats(result.frames / fs).items() if k != "blocks"},
        **algorithmic_latency(setup.chain, fs),
    }
    probe = result.head_in[:, : int(PROBE_S * fs)]
    report.update(measure_latency(setup.chain, probe, fs, block=block))
    report["probe_s"] = probe.shape[1] / fs
    return report


def print_report(r: dict) -> None:
    """The report as a rich table on stdout."""
    from rich.console import Console
    from rich.table import Table

    def ms(v):
        return "n/a" if v is None else f"{v:.3f} ms"

    t = Table(title="rtha replay", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    src = f"{r['input']} ({r['input_channels']} ch, {r['input_fs']} Hz, {r['input_frames'] / r['input_fs']:.2f} s)"
    t.add_row("input", src)
    if r["resampled"]:
        t.add_row("resampled", f"{r['input_fs']} Hz -> {r['fs']} Hz (streamed polyphase FIR)")
    enh = (f"{r['model']} ({r['device']}, threads {r['threads'] or 'default'}, dry mix {r['dry_mix']:g})"
           if r["model"] else "none (--no-enhancer)")
    t.add_row("enhancer", enh)
    t.add_row("listener / NAL-R", f"{r['listener']} / {r['nalr_phase']} phase")
    if "hearing_loss" in r:
        h = r["hearing_loss"]
        t.add_row(
            "heard (MSBG)",
            f"{h['mode']}, {h['severity']['left'].lower()} / {h['severity']['right'].lower()} loss, "
            f"RMS 1 = {h['level_db_spl']:g} dB SPL, at {r['fs']} Hz",
        )
    t.add_row("block", f"{r['block']} samples = {r['block_ms']:.3f} ms at {r['fs']} Hz")
    stages = ", ".join(f"{s['stage']} {s['samples']}" for s in r["stage_latencies"])
    t.add_row(
        "algorithmic latency",
        f"{r['algorithmic_latency_samples']} samples = {ms(r['algorithmic_latency_ms'])}  [{stages}]",
    )
    if r["measured_latency_samples"] is None:
        t.add_row("measured latency", "n/a (silent probe)")
    else:
        t.add_row(
            "measured latency",
            f"{r['measured_latency_samples']} samples = {ms(r['measured_latency_ms'])}"
            f"  (GCC-PHAT over {r['probe_s']:.1f} s, peak {r['measured_latency_peak']:.2f})",
        )
    t.add_row(
        "compute per block",
        f"mean {ms(r['mean_ms'])}  p50 {ms(r['p50_ms'])}  p95 {ms(r['p95_ms'])}  "
        f"p99 {ms(r['p99_ms'])}  max {ms(r['max_ms'])}",
    )
    t.add_row(
        "CPU time per block",
        f"mean {ms(r['cpu_mean_ms'])}  p99 {ms(r['cpu_p99_ms'])}  max {ms(r['cpu_max_ms'])}  "
        f"(RTF {r['cpu_rtf']:.3f}; without time lost to other processes)",
    )
    t.add_row("deadline misses", f"{r['deadline_misses']} of {r['blocks']} blocks (deadline {ms(r['block_ms'])})")
    t.add_row("real-time factor", f"{r['rtf']:.3f}  ({r['audio_s']:.2f} s of audio in {r['wall_s']:.2f} s)")
    if r["nonfinite_samples"]:
        t.add_row("NaN/Inf samples", f"{r['nonfinite_samples']} replaced by 0")
    if r["clamped_samples"]:
        t.add_row("clamped samples", f"{r['clamped_samples']} beyond ±{INPUT_LIMIT:g}")
    Console().print(t)


def _check_plots(folder: Path, force: bool, simulate_loss: bool = False) -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise RthaError("--plots needs matplotlib, which is not installed; pip install 'rtha[plots]'") from None
    if folder.exists() and not folder.is_dir():
        raise RthaError(f"--plots {folder}: exists and is not a folder")
    if folder.is_dir():
        for name in PLOT_FILES + ((HEARD_PLOT,) if simulate_loss else ()):
            output_path(folder / name, force)
    elif not folder.parent.exists():
        raise RthaError(f"--plots {folder}: folder {folder.parent} does not exist")


PLOT_FILES = ("compute_histogram.png", "spectrograms.png")


def write_plots(folder: Path, result: ReplayResult, fs: int, block: int) -> None:
    """A histogram of per-block compute times and before/after spectrograms (first 10 s)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(result.timings.seconds * 1e3, bins=100)
    ax.axvline(1e3 * block / fs, color="red", linestyle="--", label="deadline (block duration)")
    ax.set_xlabel("compute per block (ms)")
    ax.set_ylabel("blocks")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / PLOT_FILES[0], dpi=120)
    plt.close(fig)

    n = int(PLOT_S * fs)
    panels = [("input (channel 0)", result.head_in[0, :n])]
    panels += [(f"output ({ear})", y[:n]) for ear, y in zip(("left", "right"), result.head_out)]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.6 * len(panels)), sharex=True)
    for ax, (title, x) in zip(np.atleast_1d(axes), panels):
        with np.errstate(divide="ignore"):  # a bin that is exactly 0 is -inf dB: drawn in the floor colour
            ax.specgram(x.astype(np.float64) + 1e-9, NFFT=512, Fs=fs, noverlap=384, cmap="magma")
        ax.set_title(title)
        ax.set_ylabel("Hz")
    np.atleast_1d(axes)[-1].set_xlabel("s")
    fig.tight_layout()
    fig.savefig(folder / PLOT_FILES[1], dpi=120)
    plt.close(fig)
    print(f"rtha: wrote plots to {folder}/", file=sys.stderr)
