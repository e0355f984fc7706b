"""``rtha live``: the hearing aid on a real audio device (sounddevice duplex stream).

The audio callback copies the input block into a preallocated buffer, runs the
chain's ``process_block`` on it, writes the output, and stores the block's
input, output and compute time in preallocated rings; everything else (level
meters, statistics, the panel, the ``--record`` file) happens in the main
thread from those rings. Ctrl-C (or ``--duration``) stops cleanly and prints a
summary; ``--record`` is flushed either way.

Xruns: callbacks whose ``status`` is set. On JACK, PortAudio sets both input
overflow and output underflow on the callbacks of the period after any xrun
the server announces, server-wide and whoever caused it, so the kind says
nothing. The report counts a run of consecutive flagged callbacks as one xrun
and splits them by when they came: at start (the first callback, which
carries what happened between opening and starting the stream), mid-stream,
and after ``--duration`` was reached. A deadline miss is another thing: the
chain's compute for a block took longer than the block lasts. On JACK's dummy
driver (the tests) an xrun means a cycle ended after the next one was due, i.e.
the audio threads were held up for about one JACK period: by a slow client, or
by the machine itself (on a virtual machine, the host taking its CPUs away).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from ..audio_io import clamp_block
from ..errors import RthaError
from .chain_options import INPUT_LIMIT, add_chain_args, chain_from_args, check_chain_args, print_notes
from .common import output_path
from .listening import MODE_KEY, KeyReader, add_listening_args, check_listening_args, describe_listening, listening_setup

#: Rate of the chain when there is no enhancer to set it (Hz).
FS_WITHOUT_ENHANCER = 16000
#: Seconds of input and output kept for the meters and the recorder.
RING_S = 4.0
#: Blocks whose compute times are kept when no --duration bounds the run.
TIMES_KEPT = 1 << 18
#: Flagged callbacks whose block index is kept.
FLAGS_KEPT = 4096
LIST_HINT = "run 'rtha live --list-devices' to see the devices"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "live",
        help="run the hearing aid on a microphone and headphones, with a live panel",
        description="Run the hearing-aid chain on an audio device in real time (a sounddevice duplex stream). "
        "Ctrl-C stops and prints a summary.",
    )
    p.add_argument("--list-devices", action="store_true", help="list the audio devices and exit")
    p.add_argument("--input", metavar="NAME|INDEX", help="input device (default: the system default)")
    p.add_argument("--output", metavar="NAME|INDEX", help="output device (default: the system default)")
    p.add_argument(
        "--input-channels",
        type=int,
        choices=(1, 2),
        default=1,
        help="1: a mono mic feeds both ears (default); 2: channel 0 left ear, 1 right",
    )
    p.add_argument("--bypass", action="store_true", help="play the dry input (no processing), for A/B listening")
    p.add_argument(
        "--record",
        type=Path,
        metavar="OUT.wav",
        help="save input and output (channels: input..., output left, output right)",
    )
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this much audio (default: until Ctrl-C)")
    p.add_argument("--report", type=Path, metavar="R.json", help="write the summary as JSON")
    p.add_argument("--force", action="store_true", help="overwrite --record and --report files")
    add_chain_args(p)
    add_listening_args(p, live=True)
    p.set_defaults(func=run)


def import_sounddevice():
    """``sounddevice``, or a one-line error when PortAudio is missing."""
    try:
        import sounddevice
    except OSError as e:  # raised at import when libportaudio2 is not installed
        raise RthaError(f"cannot use audio devices: {e} (Debian/Ubuntu: apt install libportaudio2)") from None
    return sounddevice


def list_devices(sd) -> str:
    devices = sd.query_devices()
    if len(devices) == 0:
        return "no audio devices found (is a sound server such as JACK or PulseAudio running?)"
    return str(devices)


def resolve_device(sd, spec: str | None, kind: str) -> int:
    """Device index for ``--input``/``--output`` (a name part or an index), or the default."""
    if len(sd.query_devices()) == 0:
        raise RthaError(f"no audio device found; {LIST_HINT}")
    key = int(spec) if spec is not None and spec.strip().isdigit() else spec
    try:
        info = sd.query_devices(key, kind=kind)
    except (ValueError, sd.PortAudioError) as e:
        what = f"{kind} device {spec!r}" if spec is not None else f"default {kind} device"
        raise RthaError(f"{what}: {_one_line(e)}; {LIST_HINT}") from None
    return int(info["index"])


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())


class LiveEngine:
    """The audio callback and the preallocated state it shares with the main thread.

    Args:
        chain: the stage run on each block (or None with ``bypass``).
        fs: stream rate (Hz); block: frames per callback.
        in_channels, out_channels: stream channels.
        bypass: copy the input to every output channel instead of running the chain.
        max_blocks: compute times kept (the summary's percentiles cover these).
    """

    def __init__(self, chain, fs, block, in_channels, out_channels, bypass=False, max_blocks=TIMES_KEPT):
        self.chain, self.fs, self.block = chain, fs, block
        self.in_channels, self.out_channels = in_channels, out_channels
        self.bypass = bypass
        self.block_s = block / fs
        self._x = np.zeros((in_channels, block), np.float32)
        ring_blocks = max(2, int(np.ceil(RING_S * fs / block)))
        self.ring = np.zeros((ring_blocks * block, in_channels + out_channels), np.float32)
        self.ring_pos = 0  # frames written since the start (the ring index is this modulo its length)
        self.times = np.zeros(max_blocks)
        self.flag_blocks = np.zeros(FLAGS_KEPT, np.int64)  # block index of each flagged callback
        self.blocks = 0
        self.status_flags = 0
        self.status_kinds: dict[str, int] = {}
        self.deadline_misses = 0
        self.clamped = 0  # input samples beyond ±INPUT_LIMIT, clamped before the chain
        self.compute_s = 0.0
        self.stop_frames = 0  # 0: run until stopped
        self.done = threading.Event()
        self.stop_block = -1  # the block at which --duration was reached (-1: not yet)
        self.callback_thread: dict | None = None  # scheduling of the audio thread (seen in the first callback)

    # -- the real-time path -------------------------------------------------
    def callback(self, indata, outdata, frames, time_info, status) -> None:
        if self.blocks == 0:
            self.callback_thread = _thread_scheduling()
        if status:  # rare: bookkeeping here is off the normal path
            if self.status_flags < FLAGS_KEPT:
                self.flag_blocks[self.status_flags] = self.blocks
            self.status_flags += 1
            kind = str(status)
            self.status_kinds[kind] = self.status_kinds.get(kind, 0) + 1
        if frames == self.block:
            x = self._x
            np.copyto(x, indata.T)
        else:  # PortAudio keeps blocksize fixed; only a misbehaving backend gets here
            x = np.ascontiguousarray(indata.T)
        self.clamped += clamp_block(x, INPUT_LIMIT)  # two reductions unless a sample is beyond
        t0 = time.perf_counter()
        y = x if self.bypass else self.chain.process_block(x)
        dt = time.perf_counter() - t0
        outdata[:] = y[: self.out_channels].T
        self._ring_write(indata, outdata, frames)
        self.times[self.blocks % self.times.size] = dt
        self.blocks += 1
        self.compute_s += dt
        if dt > self.block_s:
            self.deadline_misses += 1
        if self.stop_frames and self.ring_pos >= self.stop_frames and self.stop_block < 0:
            self.stop_block = self.blocks
            self.done.set()

    def _ring_write(self, indata, outdata, frames) -> None:
        n = self.ring.shape[0]
        p = self.ring_pos % n
        first = min(frames, n - p)
        ic = self.in_channels
        self.ring[p : p + first, :ic] = indata[:first]
        self.ring[p : p + first, ic:] = outdata[:first]
        if first < frames:
            self.ring[: frames - first, :ic] = indata[first:]
            self.ring[: frames - first, ic:] = outdata[first:]
        self.ring_pos += frames

    # -- the main thread ------------------------------------------------------
    def xruns(self) -> dict:
        """Xruns seen by the callback, split by when they came (see the module docstring).

        A run of consecutive flagged callbacks is one xrun: when a stream block
        is shorter than the host's period, the host calls back several times
        per period and PortAudio passes the period's flags to each call.
        ``at_start``: from the first callback (it reports what happened between
        opening and starting the stream); ``after_stop``: after ``--duration``
        was reached, while the stream winds down; ``mid_stream``: the rest.
        ``blocks``: the first flagged block of each xrun (at most 100);
        ``flagged_callbacks``: all flagged callbacks.
        """
        kept = self.flag_blocks[: min(self.status_flags, FLAGS_KEPT)]
        first = kept[np.diff(kept, prepend=-2) != 1]
        at_start = int(np.count_nonzero(first == 0))
        after_stop = int(np.count_nonzero(first >= self.stop_block)) if self.stop_block >= 0 else 0
        return {
            "total": int(first.size),
            "at_start": at_start,
            "mid_stream": int(first.size) - at_start - after_stop,
            "after_stop": after_stop,
            "flagged_callbacks": self.status_flags,
            "blocks": first[:100].tolist(),
        }

    def frames_since(self, pos: int) -> tuple[np.ndarray, int, int]:
        """Ring frames from ``pos`` on: ``(frames (n, channels), new pos, frames lost)``."""
        end = self.ring_pos
        n = self.ring.shape[0]
        lost = max(0, end - pos - n + self.block)  # keep a block of margin from the writer
        pos += lost
        idx = np.arange(pos, end) % n
        return self.ring[idx], end, lost

    def levels_db(self, seconds: float = 0.1) -> np.ndarray:
        """RMS level (dBFS) of each ring channel over the last ``seconds``."""
        end = self.ring_pos
        k = min(int(seconds * self.fs), end, self.ring.shape[0] - self.block)
        if k <= 0:
            return np.full(self.ring.shape[1], -np.inf)
        x = self.ring[np.arange(end - k, end) % self.ring.shape[0]]
        with np.errstate(divide="ignore"):
            return 10 * np.log10(np.mean(x.astype(np.float64) ** 2, axis=0))

    def recent_times(self) -> np.ndarray:
        return self.times[: min(self.blocks, self.times.size)]


def _thread_scheduling() -> dict:
    """Scheduling policy and priority of the calling thread (Linux; elsewhere "unknown")."""
    if not hasattr(os, "sched_getscheduler"):
        return {"policy": "unknown", "priority": None}
    policy = os.sched_getscheduler(0)
    names = {os.SCHED_OTHER: "SCHED_OTHER", os.SCHED_FIFO: "SCHED_FIFO", os.SCHED_RR: "SCHED_RR"}
    return {"policy": names.get(policy, str(policy)), "priority": os.sched_getparam(0).sched_priority}


def run(args: argparse.Namespace) -> int:
    sd = import_sounddevice()
    if args.list_devices:
        print(list_devices(sd))
        return 0
    if args.duration is not None and not args.duration > 0:
        raise RthaError(f"--duration {args.duration}: expected a positive number of seconds")
    record = output_path(args.record, args.force, "--record") if args.record else None
    if record is not None:
        from ..audio_io import output_format

        output_format(record)
    report_path = output_path(args.report, args.force, "--report") if args.report else None
    check_chain_args(args)  # a mistyped option is reported before any device problem
    check_listening_args(args)
    in_dev = resolve_device(sd, args.input, "input")
    out_dev = resolve_device(sd, args.output, "output")

    setup = chain_from_args(args, fs_without_enhancer=FS_WITHOUT_ENHANCER)
    print_notes(setup.notes)
    paths = None
    if args.simulate_loss:  # the stream runs at 44.1 kHz; bypass becomes one of the switched modes
        setup, paths = listening_setup(args, setup, live=True)
        args.bypass = False
    fs = setup.fs
    block = setup.block
    in_ch = args.input_channels
    out_ch = min(2, int(sd.query_devices(out_dev)["max_output_channels"]))
    _check_settings(sd, in_dev, out_dev, in_ch, out_ch, fs)

    chain = setup.chain
    max_blocks = int(args.duration * fs / block) + 64 if args.duration else TIMES_KEPT
    engine = LiveEngine(chain, fs, block, in_ch, out_ch, bypass=args.bypass, max_blocks=max_blocks)
    if args.duration:
        engine.stop_frames = int(round(args.duration * fs))
    if not args.bypass:
        from ..latency import warm_up

        for stage in paths.values() if paths else (chain,):
            warm_up(stage, in_ch, block)

    writer = None
    if record is not None:
        from ..audio_io import AudioWriter

        writer = AudioWriter(record, fs, in_ch + out_ch)
    names = (sd.query_devices(in_dev)["name"], sd.query_devices(out_dev)["name"])
    read_pos = 0
    record_lost = 0
    # Ctrl-C only sets a flag that the loop reads between ticks: a KeyboardInterrupt
    # raised inside PortAudio or rich (holding a lock their threads need) can hang
    # the exit. A second Ctrl-C still interrupts at once.
    stop = threading.Event()

    def on_sigint(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous_handler = signal.signal(signal.SIGINT, on_sigint)
    previous_term = signal.signal(signal.SIGTERM, on_sigint)  # kill/timeout: the same clean stop
    # The callback needs the GIL within a block period: make the main thread
    # (panel, recorder) hand it over every 0.5 ms instead of every 5 ms.
    switch_interval = sys.getswitchinterval()
    t_start = time.perf_counter()
    try:
        try:
            stream = sd.Stream(
                device=(in_dev, out_dev),
                samplerate=fs,
                blocksize=block,
                channels=(in_ch, out_ch),
                dtype="float32",
                callback=engine.callback,
            )
        except sd.PortAudioError as e:
            raise RthaError(
                f"cannot open the audio stream ({names[0]} -> {names[1]}, {fs} Hz, block {block}): "
                f"{_one_line(e)}; {LIST_HINT}"
            ) from None
        panel = _Panel(engine, setup, names, args.bypass)
        sys.setswitchinterval(5e-4)
        with KeyReader() as keys, stream, panel:
            ticks = 0
            while not (engine.done.wait(0.1) or stop.is_set()):
                if paths and MODE_KEY in keys.keys():
                    chain.next_mode()  # switched by the callback at its next block
                if writer is not None:
                    read_pos, record_lost = _drain(engine, writer, read_pos, record_lost)
                ticks += 1
                if ticks % 5 == 0:  # 2 Hz is enough for eyes, and spares the callback
                    panel.update()
                if not stream.active:
                    break
    except sd.PortAudioError as e:  # the device went away, or refused to start
        raise RthaError(f"audio stream {names[0]} -> {names[1]} failed: {_one_line(e)}; {LIST_HINT}") from None
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        signal.signal(signal.SIGTERM, previous_term)
        sys.setswitchinterval(switch_interval)
        if writer is not None:
            read_pos, record_lost = _drain(engine, writer, read_pos, record_lost)
            writer.close()
    wall = time.perf_counter() - t_start
    interrupted = stop.is_set()

    summary = _summary(engine, setup, stream, names, block, wall, interrupted, args, record_lost)
    if paths:
        summary["hearing_loss"] = {**describe_listening(args, paths), "mode": chain.mode}
    _print_summary(summary)
    if report_path is not None:
        report_path.write_text(json.dumps(summary, indent=2) + "\n")
    if engine.clamped:
        print(f"rtha: warning: {engine.clamped} input samples beyond ±{INPUT_LIMIT:g} were clamped", file=sys.stderr)
    if record is not None:
        lost = f" ({record_lost} frames lost: the main thread fell behind)" if record_lost else ""
        print(f"rtha: recorded {read_pos / fs:.2f} s to {record}{lost}", file=sys.stderr)
    return 0


class _Bypass:
    """What ``--bypass`` runs: nothing, with no delay (for the latency report)."""

    name, latency, latencies = "bypass", 0, [("bypass", 0)]


_BYPASS = _Bypass()


def _check_settings(sd, in_dev, out_dev, in_ch, out_ch, fs) -> None:
    for check, dev, ch, kind in ((sd.check_input_settings, in_dev, in_ch, "input"), (sd.check_output_settings, out_dev, out_ch, "output")):
        try:
            check(device=dev, channels=ch, samplerate=fs, dtype="float32")
        except (ValueError, sd.PortAudioError) as e:
            name = sd.query_devices(dev)["name"]
            raise RthaError(
                f"{kind} device {name!r} cannot run {ch} channel(s) at {fs} Hz: {_one_line(e)}; {LIST_HINT}"
            ) from None


def _drain(engine: LiveEngine, writer, pos: int, lost: int) -> tuple[int, int]:
    frames, pos, newly_lost = engine.frames_since(pos)
    if frames.size:
        writer.write(frames.T)
    return pos, lost + newly_lost


def _summary(engine, setup, stream, names, block, wall, interrupted, args, record_lost) -> dict:
    from ..latency import algorithmic_latency, timing_stats

    fs = setup.fs
    audio_s = engine.ring_pos / fs
    stats = timing_stats(engine.recent_times(), block / fs, audio_s if engine.blocks <= engine.times.size else None)
    stats["deadline_misses"] = engine.deadline_misses
    if engine.blocks:
        stats["rtf"] = engine.compute_s / audio_s
    try:
        dev_in, dev_out = stream.latency
    except Exception:
        dev_in = dev_out = float("nan")
    return {
        "input_device": names[0],
        "output_device": names[1],
        **setup.describe(),
        "bypass": bool(args.bypass),
        "block": block,
        "block_ms": 1e3 * block / fs,
        "input_channels": engine.in_channels,
        "output_channels": engine.out_channels,
        "audio_s": audio_s,
        "wall_s": wall,
        "callbacks": engine.blocks,
        "status_flags": engine.status_flags,
        "status_kinds": dict(engine.status_kinds),
        "xruns": engine.xruns(),
        "callback_thread": engine.callback_thread,
        "interrupted": interrupted,
        "nonfinite_samples": int(setup.chain.nonfinite_count),
        "clamped_samples": engine.clamped,
        "record": str(args.record) if args.record else None,
        "record_lost_frames": record_lost,
        "device_latency_ms": {"input": 1e3 * dev_in, "output": 1e3 * dev_out},
        **stats,
        **algorithmic_latency(_BYPASS if args.bypass else setup.chain, fs),
    }


def _print_summary(s: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="rtha live: summary" + (" (stopped by Ctrl-C)" if s["interrupted"] else ""), show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("devices", f"{s['input_device']} -> {s['output_device']}, {s['fs']} Hz, block {s['block']} ({s['block_ms']:.2f} ms)")
    dry = f", dry mix {s['dry_mix']:g}" if s["dry_mix"] else ""
    t.add_row("chain", "bypass (dry)" if s["bypass"] else " -> ".join(s["stages"]) + f"  [listener {s['listener']}{dry}]")
    t.add_row("audio", f"{s['audio_s']:.2f} s in {s['callbacks']} callbacks")
    x = s["xruns"]
    kinds = ", ".join(f"{k}: {n}" for k, n in s["status_kinds"].items())
    t.add_row(
        "xruns",
        f"{x['mid_stream']} mid-stream, {x['at_start']} at start, {x['after_stop']} after stop"
        + (f"  ({x['flagged_callbacks']} flagged callbacks: {kinds})" if kinds else ""),
    )
    if x["mid_stream"]:
        t.add_row(
            "",
            "some blocks took longer than they last: try a larger --block, more --threads or a smaller model"
            if s["deadline_misses"]
            else "no block took longer than it lasts: the audio threads were held up outside the chain (by the "
            "machine or another client); a longer period on the audio server rides out longer stalls",
        )
    th = s["callback_thread"]
    if th is not None:
        t.add_row("audio thread", f"{th['policy']}" + (f" priority {th['priority']}" if th["priority"] else ""))
    t.add_row(
        "compute per block",
        f"p50 {s['p50_ms']:.3f} ms  p99 {s['p99_ms']:.3f} ms  max {s['max_ms']:.3f} ms  "
        f"deadline misses {s['deadline_misses']}",
    )
    t.add_row("real-time factor", f"{s['rtf']:.3f}")
    dev = s["device_latency_ms"]
    t.add_row(
        "latency",
        f"algorithmic {s['algorithmic_latency_ms']:.2f} ms + device {dev['input']:.2f} ms in / {dev['output']:.2f} ms out (PortAudio)",
    )
    Console().print(t)


class _Panel:
    """The rich live panel (only on a terminal; refreshed from the main thread)."""

    def __init__(self, engine: LiveEngine, setup, names, bypass: bool) -> None:
        from rich.console import Console

        self.engine, self.setup, self.names, self.bypass = engine, setup, names, bypass
        self.console = Console()
        self.live = None

    def __enter__(self):
        if self.console.is_terminal:
            from rich.live import Live

            self.live = Live(self.render(), console=self.console, auto_refresh=False, transient=True)
            self.live.__enter__()
        return self

    def __exit__(self, *exc):
        if self.live is not None:
            self.live.__exit__(*exc)

    def update(self) -> None:
        if self.live is not None:
            self.live.update(self.render(), refresh=True)

    def render(self):
        """The panel as styled text (plain lines: cheap to render, so the main thread holds the GIL briefly)."""
        from rich.text import Text

        e = self.engine
        lines = []
        for i, lv in enumerate(e.levels_db()):
            label = f"in {i}" if i < e.in_channels else ("out L", "out R")[min(i - e.in_channels, 1)]
            lines.append(f"[bold]{label:<6}[/] {_meter(lv)}")
        times = e.recent_times()[-2500:]
        if times.size:
            p50, p99 = np.percentile(times, [50, 99]) * 1e3
            lines.append(
                f"[bold]compute[/] p50 {p50:.3f} ms  p99 {p99:.3f} ms  (block {1e3 * e.block_s:.2f} ms)"
                f"   [bold]RTF[/] {times.mean() / e.block_s:.3f}"
            )
        latency = 0 if self.bypass else self.setup.chain.latency
        x = e.xruns()
        lines.append(
            f"[bold]xruns[/] {x['mid_stream']} mid-stream (+{x['at_start']} at start)  [bold]deadline misses[/] {e.deadline_misses}"
            f"   [bold]algorithmic latency[/] {1e3 * latency / e.fs:.2f} ms   [bold]time[/] {e.ring_pos / e.fs:.1f} s"
        )
        mode = "BYPASS (dry)" if self.bypass else f"listener {self.setup.listener}"
        heard = getattr(self.setup.chain, "mode", None)  # --simulate-loss
        if heard:
            mode += f"  heard: [bold]{heard.upper()}[/] (key '{MODE_KEY}': aided / unaided / bypass)"
        head = f"[reverse] rtha live [/] {self.names[0]} -> {self.names[1]}  {e.fs} Hz  {mode}  (Ctrl-C to stop)"
        return Text.from_markup("\n".join([head, *lines]))


def _meter(db: float, width: int = 30, floor: float = -60.0) -> str:
    if not np.isfinite(db):
        return "[dim]" + "·" * width + "[/]  -inf dBFS"
    k = int(round(width * min(1.0, max(0.0, (db - floor) / -floor))))
    color = "red" if db > -3 else "yellow" if db > -12 else "green"
    return f"[{color}]{'█' * k}[/][dim]{'·' * (width - k)}[/] {db:6.1f} dBFS"
