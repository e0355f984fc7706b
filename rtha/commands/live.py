"""``rtha live``: the hearing aid on a real audio device, with a live panel and a summary.

The options, the rich panel and the summary live here; the stream, its
callback and the xrun and deadline accounting in :mod:`rtha.live`. The panel
and the ``--record`` file are fed from the engine's rings in the main thread.
Ctrl-C (or ``--duration``) stops cleanly and prints a summary; ``--record`` is
flushed either way.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import RthaError
from .chain_options import INPUT_LIMIT, add_chain_args, chain_from_args, check_chain_args, print_notes
from .common import output_path
from .listening import MODE_KEY, KeyReader, add_listening_args, check_listening_args, describe_listening, listening_setup


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


def run(args: argparse.Namespace) -> int:
    from ..live import FS_WITHOUT_ENHANCER, LiveEngine, check_settings, import_sounddevice, list_devices, resolve_device
    from ..stage import Bypass

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
    devices = (resolve_device(sd, args.input, "input"), resolve_device(sd, args.output, "output"))

    setup = chain_from_args(args, fs_without_enhancer=FS_WITHOUT_ENHANCER)
    print_notes(setup.notes)
    paths = None
    if args.simulate_loss:  # the stream runs at 44.1 kHz; bypass becomes one of the switched modes
        setup, paths = listening_setup(args, setup, live=True)
        args.bypass = False
    channels = (args.input_channels, min(2, int(sd.query_devices(devices[1])["max_output_channels"])))
    check_settings(sd, devices, channels, setup.fs)

    stage = Bypass() if args.bypass else setup.chain
    engine = LiveEngine(stage, setup.fs, setup.block, *channels, limit=INPUT_LIMIT, duration=args.duration)
    engine.warm_up(paths.values() if paths else None)
    recorder = _Recorder(engine, record) if record is not None else None
    names = tuple(sd.query_devices(d)["name"] for d in devices)
    panel = _Panel(engine, setup, names, args.bypass)
    ticks = 0

    def tick():
        nonlocal ticks
        if MODE_KEY in keys.keys():
            engine.next_mode()
        if recorder is not None:
            recorder.drain()
        ticks += 1
        if ticks % 5 == 0:  # 2 Hz is enough for eyes, and spares the callback
            panel.update()

    try:
        with KeyReader() as keys, panel:
            interrupted = engine.run(sd, devices, names, tick)
    finally:
        if recorder is not None:
            recorder.close()

    summary = _summary(engine, setup, names, interrupted, args, recorder)
    if paths:
        summary["hearing_loss"] = {**describe_listening(args, paths), "mode": engine.mode}
    _print_summary(summary)
    if report_path is not None:
        report_path.write_text(json.dumps(summary, indent=2) + "\n")
    if engine.clamped:
        print(f"rtha: warning: {engine.clamped} input samples beyond ±{INPUT_LIMIT:g} were clamped", file=sys.stderr)
    if recorder is not None:
        lost = f" ({recorder.lost} frames lost: the main thread fell behind)" if recorder.lost else ""
        print(f"rtha: recorded {recorder.pos / engine.fs:.2f} s to {record}{lost}", file=sys.stderr)
    return 0


class _Recorder:
    """``--record``: the engine's ring (input channels, then output) written to a file from the main thread."""

    def __init__(self, engine, path: Path) -> None:
        from ..audio_io import AudioWriter

        self.engine = engine
        self.writer = AudioWriter(path, engine.fs, engine.in_channels + engine.out_channels)
        self.pos = 0  # stream frames written
        self.lost = 0  # frames overwritten in the ring before they were written

    def drain(self) -> None:
        frames, self.pos, lost = self.engine.frames_since(self.pos)
        self.lost += lost
        if frames.size:
            self.writer.write(frames.T)

    def close(self) -> None:
        self.drain()
        self.writer.close()


def _summary(engine, setup, names, interrupted, args, recorder) -> dict:
    from ..latency import algorithmic_latency

    fs, block = engine.fs, engine.block
    return {
        "input_device": names[0],
        "output_device": names[1],
        **setup.describe(),
        "bypass": bool(args.bypass),
        "block": block,
        "block_ms": 1e3 * block / fs,
        "input_channels": engine.in_channels,
        "output_channels": engine.out_channels,
        "audio_s": engine.audio_s,
        "wall_s": engine.wall_s,
        "callbacks": engine.blocks,
        "status_flags": engine.status_flags,
        "status_kinds": dict(engine.status_kinds),
        "xruns": engine.xruns(),
        "callback_thread": engine.callback_thread,
        "interrupted": interrupted,
        "nonfinite_samples": int(engine.stage.nonfinite_count),
        "clamped_samples": engine.clamped,
        "record": str(args.record) if args.record else None,
        "record_lost_frames": recorder.lost if recorder is not None else 0,
        "device_latency_ms": engine.device_latency_ms(),
        **engine.timings.stats(engine.audio_s),
        **algorithmic_latency(engine.stage, fs),
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

    def __init__(self, engine, setup, names, bypass: bool) -> None:
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
        import numpy as np
        from rich.text import Text

        e = self.engine
        lines = []
        for i, lv in enumerate(e.levels_db()):
            label = f"in {i}" if i < e.in_channels else ("out L", "out R")[min(i - e.in_channels, 1)]
            lines.append(f"[bold]{label:<6}[/] {_meter(lv)}")
        times, block_s = e.timings.seconds[-2500:], e.timings.block_s
        if times.size:
            p50, p99 = np.percentile(times, [50, 99]) * 1e3
            lines.append(
                f"[bold]compute[/] p50 {p50:.3f} ms  p99 {p99:.3f} ms  (block {1e3 * block_s:.2f} ms)"
                f"   [bold]RTF[/] {times.mean() / block_s:.3f}"
            )
        x = e.xruns()
        lines.append(
            f"[bold]xruns[/] {x['mid_stream']} mid-stream (+{x['at_start']} at start)  "
            f"[bold]deadline misses[/] {e.timings.deadline_misses}"
            f"   [bold]algorithmic latency[/] {1e3 * e.stage.latency / e.fs:.2f} ms   [bold]time[/] {e.audio_s:.1f} s"
        )
        mode = "BYPASS (dry)" if self.bypass else f"listener {self.setup.listener}"
        heard = e.mode  # --simulate-loss
        if heard:
            mode += f"  heard: [bold]{heard.upper()}[/] (key '{MODE_KEY}': aided / unaided / bypass)"
        head = f"[reverse] rtha live [/] {self.names[0]} -> {self.names[1]}  {e.fs} Hz  {mode}  (Ctrl-C to stop)"
        return Text.from_markup("\n".join([head, *lines]))


def _meter(db: float, width: int = 30, floor: float = -60.0) -> str:
    if not db > -float("inf"):  # silence (-inf dBFS)
        return "[dim]" + "·" * width + "[/]  -inf dBFS"
    k = int(round(width * min(1.0, max(0.0, (db - floor) / -floor))))
    color = "red" if db > -3 else "yellow" if db > -12 else "green"
    return f"[{color}]{'█' * k}[/][dim]{'·' * (width - k)}[/] {db:6.1f} dBFS"
