"""The live engine: a stage run on an audio device's blocks (a sounddevice duplex stream).

The audio callback copies the input block into a preallocated buffer, runs the
stage's ``process_block`` on it (the hearing-aid chain; :class:`~rtha.stage.Bypass`
for the dry input; ``HearingModes`` for ``--simulate-loss``, whose mode a key
switches at the next block), writes the output, and stores the block's input,
output and compute time in preallocated rings; everything else (level meters,
statistics, a panel, a recorder) runs in the main thread from those rings,
called from :meth:`LiveEngine.run` between its waits. Ctrl-C and SIGTERM stop
it cleanly.

Xruns: callbacks whose ``status`` is set. On JACK, PortAudio sets both input
overflow and output underflow on the callbacks of the period after any xrun
the server announces, server-wide and whoever caused it, so the kind says
nothing. The report counts a run of consecutive flagged callbacks as one xrun
and splits them by when they came: at start (the first callback, which
carries what happened between opening and starting the stream), mid-stream,
and after ``duration`` was reached. A deadline miss is another thing: the
stage's compute for a block took longer than the block lasts. On JACK's dummy
driver (the tests) an xrun means a cycle ended after the next one was due, i.e.
the audio threads were held up for about one JACK period: by a slow client, or
by the machine itself (on a virtual machine, the host taking its CPUs away).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import numpy as np

from .audio_io import clamp_block
from .errors import RthaError
from .timing import BlockTimings

#: Stream rate when no enhancer sets the chain's (Hz).
FS_WITHOUT_ENHANCER = 16000
#: Seconds of input and output kept for the meters and the recorder.
RING_S = 4.0
#: Blocks whose compute times are kept when no duration bounds the run.
TIMES_KEPT = 1 << 18
#: Flagged callbacks whose block index is kept.
FLAGS_KEPT = 4096
LIST_HINT = "run 'rtha live --list-devices' to see the devices"


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


def check_settings(sd, devices: tuple[int, int], channels: tuple[int, int], fs: int) -> None:
    """A one-line error when the (input, output) devices cannot run these channels at ``fs``."""
    checks = (sd.check_input_settings, sd.check_output_settings)
    for check, dev, ch, kind in zip(checks, devices, channels, ("input", "output")):
        try:
            check(device=dev, channels=ch, samplerate=fs, dtype="float32")
        except (ValueError, sd.PortAudioError) as e:
            name = sd.query_devices(dev)["name"]
            raise RthaError(
                f"{kind} device {name!r} cannot run {ch} channel(s) at {fs} Hz: {_one_line(e)}; {LIST_HINT}"
            ) from None


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())


class LiveEngine:
    """The audio callback and the preallocated state it shares with the main thread.

    Args:
        stage: the stage run on each block, ``(in_channels, block)`` float32 in;
            its first ``out_channels`` output channels are played (a mono output
            feeds every one).
        fs: stream rate (Hz); block: frames per callback.
        in_channels, out_channels: stream channels.
        limit: input samples beyond ``±limit`` are clamped (and counted) before the stage.
        duration: seconds of audio after which :meth:`run` returns (None: until stopped).
    """

    def __init__(self, stage, fs: int, block: int, in_channels: int, out_channels: int, limit: float,
                 duration: float | None = None) -> None:
        self.stage, self.fs, self.block = stage, fs, block
        self.in_channels, self.out_channels = in_channels, out_channels
        self.limit = limit
        self._x = np.zeros((in_channels, block), np.float32)
        ring_blocks = max(2, int(np.ceil(RING_S * fs / block)))
        self.ring = np.zeros((ring_blocks * block, in_channels + out_channels), np.float32)
        self.ring_pos = 0  # frames written since the start (the ring index is this modulo its length)
        self.timings = BlockTimings(block / fs, int(duration * fs / block) + 64 if duration else TIMES_KEPT)
        self.flag_blocks = np.zeros(FLAGS_KEPT, np.int64)  # block index of each flagged callback
        self.status_flags = 0
        self.status_kinds: dict[str, int] = {}
        self.clamped = 0  # input samples beyond ±limit, clamped before the stage
        self.stop_frames = int(round(duration * fs)) if duration else 0  # 0: run until stopped
        self.done = threading.Event()
        self.stop_block = -1  # the block at which the duration was reached (-1: not yet)
        self.callback_thread: dict | None = None  # scheduling of the audio thread (seen in the first callback)
        self.stream = None
        self.wall_s = 0.0

    @property
    def blocks(self) -> int:
        """Callbacks so far."""
        return self.timings.count

    @property
    def audio_s(self) -> float:
        return self.ring_pos / self.fs

    @property
    def mode(self) -> str | None:
        """The stage's listening mode (``--simulate-loss``), or None for a stage with one."""
        return getattr(self.stage, "mode", None)

    def next_mode(self) -> str | None:
        """Ask for the stage's next listening mode (aided -> unaided -> bypass); the callback switches at its next block."""
        return self.stage.next_mode() if self.mode is not None else None

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
        self.clamped += clamp_block(x, self.limit)  # two reductions unless a sample is beyond
        t0 = time.perf_counter()
        y = self.stage.process_block(x)
        self.timings.add(time.perf_counter() - t0)
        outdata[:] = y[: self.out_channels].T
        self._ring_write(indata, outdata, frames)
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
    def warm_up(self, stages=None) -> None:
        """Run the one-time costs (numba compilation, torch's first call) of ``stages`` (default: the
        engine's) before the stream starts: in the first callbacks they would be xruns."""
        from .latency import warm_up

        for stage in stages or (self.stage,):
            warm_up(stage, self.in_channels, self.block)

    def run(self, sd, devices: tuple[int, int], names: tuple[str, str], tick) -> bool:
        """Stream the (input, output) ``devices`` until ``duration``, Ctrl-C or SIGTERM, or the stream's end.

        ``tick()`` runs in this thread every 0.1 s (meters, recorder, keys).
        Returns whether Ctrl-C or SIGTERM stopped it; ``wall_s`` is the time it
        took. Device trouble is a one-line :class:`RthaError`.
        """
        # Ctrl-C only sets a flag that the loop reads between ticks: a KeyboardInterrupt
        # raised inside PortAudio or rich (holding a lock their threads need) can hang
        # the exit. A second Ctrl-C still interrupts at once.
        stop = threading.Event()

        def on_signal(signum, frame):
            if stop.is_set():
                raise KeyboardInterrupt
            stop.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}  # kill: as Ctrl-C
        # The callback needs the GIL within a block period: make the main thread
        # (panel, recorder) hand it over every 0.5 ms instead of every 5 ms.
        switch_interval = sys.getswitchinterval()
        t_start = time.perf_counter()
        what = f"{names[0]} -> {names[1]}"
        try:
            try:
                self.stream = sd.Stream(
                    device=devices,
                    samplerate=self.fs,
                    blocksize=self.block,
                    channels=(self.in_channels, self.out_channels),
                    dtype="float32",
                    callback=self.callback,
                )
            except sd.PortAudioError as e:
                raise RthaError(
                    f"cannot open the audio stream ({what}, {self.fs} Hz, block {self.block}): {_one_line(e)}; {LIST_HINT}"
                ) from None
            sys.setswitchinterval(5e-4)
            with self.stream:
                while not (self.done.wait(0.1) or stop.is_set()):
                    tick()
                    if not self.stream.active:
                        break
        except sd.PortAudioError as e:  # the device went away, or refused to start
            raise RthaError(f"audio stream {what} failed: {_one_line(e)}; {LIST_HINT}") from None
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            sys.setswitchinterval(switch_interval)
            self.wall_s = time.perf_counter() - t_start
        return stop.is_set()

    def device_latency_ms(self) -> dict:
        """PortAudio's input and output latency of the stream (ms; NaN when it cannot tell)."""
        try:
            dev_in, dev_out = self.stream.latency
        except Exception:
            dev_in = dev_out = float("nan")
        return {"input": 1e3 * dev_in, "output": 1e3 * dev_out}

    def xruns(self) -> dict:
        """Xruns seen by the callback, split by when they came (see the module docstring).

        A run of consecutive flagged callbacks is one xrun: when a stream block
        is shorter than the host's period, the host calls back several times
        per period and PortAudio passes the period's flags to each call.
        ``at_start``: from the first callback (it reports what happened between
        opening and starting the stream); ``after_stop``: after ``duration``
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


def _thread_scheduling() -> dict:
    """Scheduling policy and priority of the calling thread (Linux; elsewhere "unknown")."""
    if not hasattr(os, "sched_getscheduler"):
        return {"policy": "unknown", "priority": None}
    policy = os.sched_getscheduler(0)
    names = {os.SCHED_OTHER: "SCHED_OTHER", os.SCHED_FIFO: "SCHED_FIFO", os.SCHED_RR: "SCHED_RR"}
    return {"policy": names.get(policy, str(policy)), "priority": os.sched_getparam(0).sched_priority}
