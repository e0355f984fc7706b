"""``rtha live`` through a real PortAudio duplex stream on JACK (dummy + loopback drivers).

A harness JACK client feeds a known signal into the stream's input port and
records what the stream's callback writes. ``rtha live --record`` saves what the
chain saw and produced; the tests check that

* the stream's input is the harness's signal, bit for bit (after JACK's lag);
* the captured output equals the offline chain run over that input (<= 1e-5);
* the measured loop latency (GCC-PHAT, signal -> capture) equals the reported
  algorithmic latency plus JACK's transport lag: one JACK period plus the one
  stream block that PortAudio's JACK API always buffers;
* no xrun came mid-stream (JACK in synchronous mode; see ``conftest.JACK_PERIOD``
  for why its period is long).

``rtha live`` runs as a subprocess (its real entry point), so this process never
loads PortAudio. Each run streams about 4 s (``RTHA_LIVE_SECONDS`` sets the
signal length); the soak with the shipped model streams
``RTHA_LIVE_SOAK_SECONDS`` (default 10; 60 for the target's full minute), in
the first configuration this machine has the compute headroom for.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rtha.cli import build_parser
from rtha.commands.chain_options import chain_from_args
from rtha.example import mix_at_snr, speech_shaped_noise, synthetic_speech
from rtha.latency import delay_by_gcc_phat, warm_up

pytestmark = pytest.mark.usefixtures("jack_server")

#: Seconds of test signal per live run; RTHA_LIVE_SECONDS=60 gives the long soak run.
SIGNAL_S = float(os.environ.get("RTHA_LIVE_SECONDS", "2"))
#: Seconds of the soak run with the shipped model.
SOAK_S = float(os.environ.get("RTHA_LIVE_SOAK_SECONDS", "10"))
MARGIN_S = 2.0
#: A configuration has the compute headroom for a real-time soak when its chain,
#: streamed block by block in this process, takes at most this fraction of the
#: audio's duration: the rest of each block is for PortAudio, JACK, the panel and
#: the recorder. (The default model at RTF 0.61, on a 2-core AVX2 machine, gave 5
#: mid-stream xruns in 10 s.)
HEADROOM_RTF = 0.5
#: What the soak streams: the first of these with the headroom (the shipped
#: default model at 4 ms blocks, at 16 ms, then the shipped tiny model at 4 ms).
SOAK_CONFIGS = (("default", 64), ("default", 256), ("tiny", 64))


def test_signal(seconds: float, fs: int = 16000) -> np.ndarray:
    """``seconds`` of noisy speech-like sound, float32 (not a test itself)."""
    s = synthetic_speech(seconds, fs, seed=3)
    return mix_at_snr(s, speech_shaped_noise(s.size, fs, seed=4), 10.0, rms=0.08)


test_signal.__test__ = False


class Harness:
    """A JACK client that plays ``signal`` into the stream under test and records its output.

    Once wired it plays ``PREROLL_S`` of silence first, so that the stream is
    surely running when the signal starts. With ``stall_at`` (a harness frame)
    its process callback sleeps ``stall_s`` once there: in synchronous mode the
    whole JACK cycle waits for it, which the server reports as an xrun.
    """

    PREROLL_S = 0.25

    def __init__(self, signal: np.ndarray, capture_s: float, stall_at: int | None = None, stall_s: float = 0.2) -> None:
        import jack

        self.client = jack.Client("rtha-harness", no_start_server=True)
        self.fs = self.client.samplerate
        self.preroll = int(self.PREROLL_S * self.fs)
        self.signal = np.concatenate([np.zeros(self.preroll, np.float32), signal])
        self.rec = np.zeros((2, int(capture_s * self.fs)), np.float32)
        self.out = self.client.outports.register("out")
        self.ins = [self.client.inports.register(f"in_{i + 1}") for i in range(2)]
        self.go = False
        self.pos = 0
        self.stall_at, self.stall_s = stall_at, stall_s
        self.done = threading.Event()
        self.client.set_process_callback(self._process)

    def _process(self, frames: int) -> None:
        o = self.out.get_array()
        if not self.go:
            o.fill(0)
            return
        p = self.pos
        m = max(0, min(frames, self.signal.size - p))
        o[:m] = self.signal[p : p + m]
        o[m:] = 0
        if p + frames <= self.rec.shape[1]:
            for i, port in enumerate(self.ins):
                self.rec[i, p : p + frames] = port.get_array()
        else:
            self.done.set()
        self.pos = p + frames
        if self.stall_at is not None and p <= self.stall_at < p + frames:
            time.sleep(self.stall_s)

    def wire(self, proc: subprocess.Popen, timeout: float = 300.0) -> None:
        """Wait for the stream's ports, then take over its input and listen to its output."""
        deadline = time.monotonic() + timeout  # generous: a first run compiles numba kernels
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"rtha live exited early: {proc.communicate()[1]}")
            pa_in = self.client.get_ports("PortAudio", is_audio=True, is_input=True)
            pa_out = self.client.get_ports("PortAudio", is_audio=True, is_output=True)
            # PortAudio connects its ports when the stream starts (not when it opens)
            if pa_in and len(pa_out) >= 2 and self.client.get_all_connections(pa_in[0]):
                break
            if time.monotonic() > deadline:
                raise TimeoutError("rtha live did not open its stream in time")
            time.sleep(0.02)
        for src in self.client.get_all_connections(pa_in[0]):
            self.client.disconnect(src, pa_in[0])  # unplug the dummy "microphone"
        self.client.connect(self.out, pa_in[0])
        for port, inp in zip(pa_out[:2], self.ins):
            self.client.connect(port, inp)
        self.go = True


def run_live(tmp_path, options: list[str], seconds: float = SIGNAL_S, stall_at: int | None = None) -> dict:
    """Run ``rtha live`` on the JACK ``system`` device fed by the harness for ``seconds`` of signal; gather everything.

    ``stall_at``: a harness frame where the harness stalls the JACK graph once (see :class:`Harness`).
    """
    signal = test_signal(seconds)
    record, report = tmp_path / "rec.wav", tmp_path / "live.json"
    argv = ["live", "--input", "system", "--output", "system", "--block", "64", *options]
    cmd = [sys.executable, "-m", "rtha", *argv, "--duration", str(seconds + MARGIN_S)]
    cmd += ["--record", str(record), "--report", str(report)]
    harness = Harness(signal, seconds + Harness.PREROLL_S + 0.5, stall_at=stall_at)
    with harness.client:
        period = harness.client.blocksize
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            harness.wire(proc)
            finished = harness.done.wait(seconds + 60)
            out, err = proc.communicate(timeout=seconds + 120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err
    assert finished, "the harness did not capture the whole signal"
    rec, fs = sf.read(str(record), dtype="float32", always_2d=True)
    summary = json.loads(report.read_text())
    return {
        "signal": signal,
        "preroll": harness.preroll,
        "capture": harness.rec,
        "rec_in": rec[:, 0],
        "rec_out": rec[:, 1:].T,
        "fs": fs,
        "seconds": seconds,
        "period": period,
        "summary": summary,
        "args": build_parser().parse_args(argv),
        "stdout": out,
    }


def offset_of(needle: np.ndarray, hay: np.ndarray) -> int:
    """Where ``needle`` starts in ``hay`` (GCC-PHAT: a sharp peak even for voiced, near-periodic sound)."""
    lag, _ = delay_by_gcc_phat(needle.astype(np.float64), hay.astype(np.float64), hay.size - 1)
    return lag


def check_live_equals_offline(r: dict, pure_delay: bool = True, midstream_xruns: int = 0) -> dict:
    """The assertions shared by the live tests; returns the measured numbers.

    With ``pure_delay`` the chain's algorithmic latency is its whole delay (no
    enhancer, linear-phase NAL-R), so the loop latency found by correlation
    must be exactly that plus JACK's lag. ``midstream_xruns``: how many xruns
    the run must report mid-stream.
    """
    s = r["summary"]
    sig, cap, rec_in, rec_out = r["signal"], r["capture"], r["rec_in"], r["rec_out"]
    n = sig.size
    # 1. the chain's input is the harness signal, bit for bit, after JACK's input lag
    a = offset_of(sig, rec_in)
    assert np.array_equal(rec_in[a : a + n], sig)
    assert not np.any(rec_in[:a]) and not np.any(rec_in[a + n :])
    # 2. the recorded output is the offline chain over the recorded input
    setup = chain_from_args(r["args"], fs_without_enhancer=r["fs"])
    offline = setup.chain.process(rec_in[None, :])
    assert np.max(np.abs(rec_out - offline)) <= 1e-5
    # 3. what reached the harness is that output, after JACK's output lag
    b = offset_of(cap[0], rec_out[0])  # capture index j holds recorded output index j + b (b may be < 0)
    j0 = max(0, -b)  # the capture may start before the stream's first block
    m = min(cap.shape[1] - j0, offline.shape[1] - (j0 + b))
    assert m >= n
    diff = np.max(np.abs(cap[:, j0 : j0 + m] - offline[:, j0 + b : j0 + b + m]))
    assert diff <= 1e-5
    # 4. loop latency = algorithmic latency + JACK's lag: the harness hears the
    # stream's output one JACK cycle later, and PortAudio's JACK API buffers
    # one stream block; the harness's clock starts r["preroll"] samples before the signal
    jack_lag = (a - r["preroll"]) - b
    loop, _ = delay_by_gcc_phat(sig.astype(np.float64), cap[0, r["preroll"] :].astype(np.float64), 4000)
    assert s["algorithmic_latency_samples"] == setup.chain.latency
    assert jack_lag == r["period"] + s["block"]
    if pure_delay:
        assert loop == s["algorithmic_latency_samples"] + jack_lag
    assert s["callbacks"] >= (r["seconds"] + MARGIN_S) * r["fs"] / s["block"]
    measured = {
        "max_diff": float(diff),
        "signal_at_block": (a - r["preroll"]) // s["block"],  # rtha's block index = harness frame // block + this
        "jack_lag": jack_lag,
        "loop": loop,
        "xruns": s["xruns"],
        "p99_ms": round(s["p99_ms"], 3),
        "deadline_misses": s["deadline_misses"],
    }
    # 5. xruns mid-stream (JACK period r["period"]; see conftest.JACK_PERIOD)
    assert s["xruns"]["mid_stream"] == midstream_xruns, f"{measured}; audio thread {s['callback_thread']}"
    return measured


def test_live_no_enhancer_linear_nalr_equals_offline_and_latency_adds_up(tmp_path):
    # linear-phase NAL-R: a known pure delay (nfir/2 = 40 samples) the correlation must find
    r = run_live(tmp_path, ["--no-enhancer", "--nalr-phase", "linear", "--listener", "moderate"])
    m = check_live_equals_offline(r)
    assert r["summary"]["algorithmic_latency_samples"] == 40
    print(f"\nlive (no enhancer, linear NAL-R): {m}")


def test_live_with_enhancer_equals_offline(tmp_path, random_tiny_model):
    # random weights: the enhancer's phase response is arbitrary, so no pure-delay check
    r = run_live(tmp_path, ["--model", str(random_tiny_model), "--listener", "mild"])
    m = check_live_equals_offline(r, pure_delay=False)
    print(f"\nlive (tiny enhancer, random weights): {m}")


def streaming_rtf(options: list[str], seconds: float = 1.0, repeats: int = 3) -> float:
    """Wall-clock real-time factor of the chain ``rtha live OPTIONS`` builds, streamed here block by block
    over ``seconds`` of the test signal (the median of ``repeats`` passes, on this machine as loaded now)."""
    setup = chain_from_args(build_parser().parse_args(["live", *options]), fs_without_enhancer=16000)
    x = test_signal(seconds)[None, :]
    warm_up(setup.chain, 1, setup.block)
    rtfs = []
    for _ in range(repeats):
        setup.chain.reset()
        t = time.perf_counter()
        for i in range(0, x.shape[1] - setup.block + 1, setup.block):
            setup.chain.process_block(x[:, i : i + setup.block])
        rtfs.append((time.perf_counter() - t) / seconds)
    return float(np.median(rtfs))


def soak_options() -> tuple[list[str], list[tuple[str, float]]]:
    """The first of :data:`SOAK_CONFIGS` with the headroom (or skip, with every measured RTF)."""
    from rtha.enhance import default_model_path

    measured = []
    for model, block in SOAK_CONFIGS:
        path = default_model_path(model)
        assert path.is_file(), f"the shipped model {path} is missing"
        options = ["--listener", "moderate", "--threads", "1", "--model", str(path), "--block", str(block)]
        rtf = streaming_rtf(options)
        measured.append((f"{model} model, block {block}", round(rtf, 3)))
        if rtf <= HEADROOM_RTF:
            return options, measured
    pytest.skip(f"no soak configuration has the compute headroom here (streaming RTF <= {HEADROOM_RTF}): {measured}")


def test_live_shipped_model_soak_no_midstream_xruns(tmp_path):
    # the target's setting (shipped default model, 4 ms blocks, 1 thread) over SOAK_S seconds when
    # this machine, as loaded now, has the compute for it; else a lighter shipped configuration
    options, measured = soak_options()
    r = run_live(tmp_path, options, seconds=SOAK_S)
    assert r["summary"]["enhancer"]
    m = check_live_equals_offline(r, pure_delay=False)
    s = r["summary"]
    print(f"\nlive soak {SOAK_S:g} s ({measured[-1][0]}; headroom checks {measured}): {m}, rtf {s['rtf']:.3f}, "
          f"audio thread {s['callback_thread']}")


def test_a_stalled_jack_cycle_is_one_midstream_xrun_and_loses_no_data(tmp_path):
    # the negative control of the zero-xrun checks: the harness holds one JACK
    # cycle for 0.2 s (> the 64 ms period) 1 s into the signal
    stall_at = Harness.PREROLL_S * 16000 + 16000
    r = run_live(tmp_path, ["--no-enhancer", "--listener", "mild"], stall_at=int(stall_at))
    m = check_live_equals_offline(r, pure_delay=False, midstream_xruns=1)  # synchronous mode: still bit-exact
    # PortAudio flags a callback shortly after the stall (the server notifies xruns asynchronously)
    stall_block = int(stall_at) // 64 + m["signal_at_block"]
    flagged = m["xruns"]["blocks"][0]
    assert stall_block <= flagged <= stall_block + 4 * r["period"] // 64, (stall_block, flagged)
    print(f"\nstall at block {stall_block}, flagged block {flagged}: {m}")


def test_jack_server_runs_in_synchronous_mode(jack_server):
    # -S: a late client delays the (dummy) clock instead of losing data
    args = (Path("/proc") / str(jack_server["pid"]) / "cmdline").read_bytes().split(b"\0")
    assert b"-S" in args and b"dummy" in args


def test_live_bypass_passes_the_input_through(tmp_path):
    r = run_live(tmp_path, ["--bypass", "--no-enhancer"])
    rec_in, rec_out = r["rec_in"], r["rec_out"]
    assert np.array_equal(rec_out[0], rec_in) and np.array_equal(rec_out[1], rec_in)
    assert r["summary"]["algorithmic_latency_samples"] == 0


def rtha_cli(*args: str, env_extra: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "rtha", *args], capture_output=True, text=True, env=env, timeout=timeout)


def assert_one_line_error(p: subprocess.CompletedProcess, *needles: str) -> None:
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert lines[-1].startswith("rtha: error:"), p.stderr
    assert "Traceback" not in p.stderr
    for needle in needles:
        assert needle in lines[-1]


def test_list_devices_shows_the_jack_devices():
    p = rtha_cli("live", "--list-devices")
    assert p.returncode == 0, p.stderr
    assert "system" in p.stdout and "loopback" in p.stdout


def test_unknown_device_is_a_one_line_error():
    p = rtha_cli("live", "--input", "no-such-device", "--no-enhancer", "--duration", "1")
    assert_one_line_error(p, "no-such-device", "--list-devices")
    p = rtha_cli("live", "--output", "97", "--no-enhancer", "--duration", "1")
    assert_one_line_error(p, "97", "--list-devices")


def test_no_audio_device_says_how_to_list_devices():
    # a server name nobody runs: PortAudio sees no device at all
    p = rtha_cli("live", "--no-enhancer", "--duration", "1", env_extra={"JACK_DEFAULT_SERVER": "rtha-nobody-here"})
    assert_one_line_error(p, "no audio device", "--list-devices")


def test_unknown_listener_is_a_one_line_error():
    p = rtha_cli("live", "--listener", "nobody", "--no-enhancer", "--duration", "1")
    assert_one_line_error(p, "nobody")


@pytest.mark.parametrize(
    "options, needle",
    [
        (["--no-enhancer", "--block", "4xs"], "--block '4xs'"),
        (["--model", "/no/such/model.pt"], "model file not found"),
        (["--no-enhancer", "--threads", "0"], "--threads 0"),
        (["--no-enhancer", "--record", "session.xyz"], "unknown audio format"),
    ],
)
def test_option_errors_come_before_device_errors(tmp_path, options, needle):
    # no audio device at all (a server nobody runs): the mistyped option is still what is reported
    p = rtha_cli("live", *[str(tmp_path / o) if o.endswith(".xyz") else o for o in options],
                 env_extra={"JACK_DEFAULT_SERVER": "rtha-nobody-here"})
    assert_one_line_error(p, needle)


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_ctrl_c_stops_cleanly_with_a_summary_and_a_flushed_recording(tmp_path, sig):
    import signal

    record = tmp_path / "rec.wav"
    cmd = [sys.executable, "-m", "rtha", "live", "--input", "system", "--output", "system", "--no-enhancer"]
    cmd += ["--record", str(record)]
    harness = Harness(np.zeros(1, np.float32), 10.0)
    with harness.client:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            harness.wire(proc)  # the stream is running
            time.sleep(1.0)
            proc.send_signal(getattr(signal, sig))  # SIGTERM (kill, timeout) stops as Ctrl-C does
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err
    assert "stopped by Ctrl-C" in out and "Traceback" not in err
    info = sf.info(str(record))
    assert info.channels == 3 and info.frames >= 0.5 * 16000
