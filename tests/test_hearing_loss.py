"""The MSBG hearing-loss simulator: pyclarity's output, streaming, calibration, bad input."""

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtha.audiogram import PRESETS, Audiogram, Listener
from rtha.dsp import DspParameterError
from rtha.hearing_loss import HearingLossSimulator, expansion_ratios, severity
from rtha.latency import delay_by_gcc_phat
from rtha.stage import BlockDtypeError, BlockShapeError
from test_block_invariance import _streamed

DATA = Path(__file__).parent / "data"
REFERENCE = np.load(DATA / "msbg.npz")
CASES = json.loads((DATA / "msbg.json").read_text())["cases"]
SPEECH = REFERENCE["in__mild__speech_m20dBFS"]  # 2 s at 44.1 kHz, RMS 0.1
MIXED = Listener(PRESETS["moderate"].left, PRESETS["severe"].right, "mixed")  # two gammatone banks


def _error_db(y: np.ndarray, ref: np.ndarray) -> float:
    return float(10 * np.log10(np.sum((y - ref) ** 2) / np.sum(ref**2)))


@pytest.fixture(scope="module")
def mixed():
    return HearingLossSimulator(MIXED)


@pytest.mark.parametrize("case", CASES, ids=[c["case"] for c in CASES])
def test_equals_pyclarity_on_the_reference_cases(case):
    # pyclarity rescales the whole file first; a stream is fed the input times that gain.
    ear = Audiogram(REFERENCE["freqs"], case["audiogram_levels"])
    sim = HearingLossSimulator(Listener(ear, ear, "ref"))
    x = REFERENCE["in__" + case["case"]] * np.float32(10 ** (case["pyclarity_rescale_db"] / 20))
    ref = REFERENCE["out__" + case["case"]].astype(np.float64)
    y = sim.process(x[None]).astype(np.float64)
    # Output sample t is pyclarity's t - alignment, over the input's duration.
    a, n = sim.alignment, x.size
    np.testing.assert_array_equal(y[0], y[1])
    assert _error_db(y[0, a:], ref[: n - a]) <= -40.0  # -59.6 dB at worst (severe, -20 dBFS)


def test_declared_latency_is_the_measured_delay():
    noise = np.random.default_rng(0).standard_normal(15000).astype(np.float32) * np.float32(0.1)
    for name in ("normal", "mild", "moderate", "severe"):
        sim = HearingLossSimulator(PRESETS[name])
        lag, _ = delay_by_gcc_phat(noise.astype(np.float64), sim.process(noise[None])[0].astype(np.float64), 4000)
        assert abs(lag - sim.latency) <= 8, name  # GCC-PHAT over the whole band: within 0.2 ms
        assert sim.latency == sim.alignment + 507 + (192 if sim.severities[0] != "NOTHING" else 0) + 573 + (
            0 if sim.severities[0] != "NOTHING" else 192
        )


def _bursts(seed: int, channels: int, n: int) -> np.ndarray:
    """Speech-like bursts from silence to loud, so the envelope crosses both of its clips."""
    rng = np.random.default_rng(seed)
    env = np.repeat(rng.choice([0.0, 0.003, 0.03, 0.3, 1.5], size=(channels, n // 300 + 1)), 300, axis=1)[:, :n]
    return (env * rng.standard_normal((channels, n))).astype(np.float32)


SIZES = st.one_of(st.sampled_from([1, 1, 2, 3, 31, 63, 64, 65, 127, 176, 441, 1021]), st.integers(1, 2500))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(SIZES, min_size=1, max_size=40), seed=st.integers(0, 2**16), mono=st.booleans())
def test_any_block_partition_gives_the_offline_output(mixed, sizes, seed, mono):
    x = _bursts(seed, 1 if mono else 2, 5000)  # output starts after the latency (2374 samples)
    offline = mixed.process(x)
    assert np.abs(offline[:, mixed.latency - 1200 :]).max() > 1e-3  # the compared part is not silence
    np.testing.assert_allclose(_streamed(mixed, x, sizes), offline, rtol=0, atol=1e-6)


def test_mono_feeds_both_ears_and_each_ear_has_its_own_loss(mixed):
    x = SPEECH[None, :20000]
    np.testing.assert_array_equal(mixed.process(x), mixed.process(np.repeat(x, 2, axis=0)))
    # Each ear is what a listener with that ear on both sides hears. The shared latency is the
    # left (moderate) ear's; the right (severe) ear is delayed to match, which lengthens its
    # backward envelope windows: a slightly different approximation of pyclarity.
    y = mixed.process(x).astype(np.float64)
    np.testing.assert_array_equal(y[0], HearingLossSimulator(PRESETS["moderate"]).process(x)[0])
    severe = HearingLossSimulator(PRESETS["severe"])
    shift = mixed.latency - severe.latency
    assert shift == 379 - 229  # the banks' largest gammatone advances
    assert _error_db(y[1, shift:], severe.process(x)[1, : x.shape[1] - shift].astype(np.float64)) < -50


def test_level_db_spl_is_the_level_of_a_digital_rms_of_one():
    # Recruitment sees the level in dB SPL: calling RMS 1 6 dB louder is the same as a signal
    # 6 dB louder; the output stays on the input's digital scale. (Not to the last bit: the
    # envelope's fixed 1e-9 floor, reached where filtfilt rings below zero, does not scale.)
    x = SPEECH[None, :20000]
    louder = HearingLossSimulator(PRESETS["moderate"], level_db_spl=100.0).process(2 * x) / 2
    called_louder = HearingLossSimulator(PRESETS["moderate"], level_db_spl=100.0 + 20 * np.log10(2)).process(x)
    assert np.abs(louder).max() > 0.5
    np.testing.assert_allclose(called_louder, louder, rtol=0, atol=1e-5)


def test_recruitment_makes_quiet_sounds_quieter():
    # Loudness recruitment: 20 dB more input gives more than 20 dB more output.
    x = SPEECH[None, :30000]
    sim = HearingLossSimulator(PRESETS["severe"])
    quiet, loud = (sim.process(g * x).astype(np.float64) for g in (np.float32(0.1), np.float32(1.0)))
    assert 10 * np.log10(np.sum(loud**2) / np.sum(quiet**2)) > 25
    # Without loss nothing is expanded: output level follows input level.
    sim = HearingLossSimulator(PRESETS["normal"])
    quiet, loud = (sim.process(g * x).astype(np.float64) for g in (np.float32(0.1), np.float32(1.0)))
    assert 10 * np.log10(np.sum(loud**2) / np.sum(quiet**2)) == pytest.approx(20, abs=1e-3)


def test_severity_and_expansion_follow_pyclarity():
    def ear(levels):
        return Audiogram([250, 500, 1000, 2000, 3000, 4000, 6000, 8000], levels)

    # Mean over the 2-8 kHz points only.
    assert severity(ear([90, 90, 90, 15, 15, 15, 15, 15])) == "NOTHING"
    assert severity(ear([0, 0, 0, 16, 16, 16, 16, 16])) == "MILD"
    assert severity(ear([0, 0, 0, 36, 36, 36, 36, 36])) == "MODERATE"
    assert severity(ear([0, 0, 0, 57, 57, 57, 57, 57])) == "SEVERE"
    assert severity(Audiogram([250, 1000], [80, 80])) == "NOTHING"  # no 2-8 kHz points
    # Linear in Hz between points, held beyond them: 105 / (105 - HL).
    a = Audiogram([1000, 2000], [20, 40])
    np.testing.assert_allclose(expansion_ratios(a, np.array([500, 1500, 9000])), [105 / 85, 105 / 75, 105 / 65])


def test_bad_arguments_are_one_line_errors():
    bad = [
        (lambda: HearingLossSimulator(PRESETS["mild"], fs=16000), "44100"),
        (lambda: HearingLossSimulator(PRESETS["mild"], level_db_spl=float("nan")), "level_db_spl"),
        (lambda: HearingLossSimulator(PRESETS["mild"].left), "Listener"),
        (lambda: HearingLossSimulator(Listener(Audiogram([1000], [110]), Audiogram([1000], [20]), "x")), "105"),
    ]
    for make, word in bad:
        with pytest.raises(DspParameterError) as e:
            make()
        assert word in str(e.value) and "\n" not in str(e.value)


def test_bad_blocks(mixed):
    mixed.reset()
    with pytest.raises(BlockShapeError, match="expected 1"):
        mixed.process_block(np.zeros((3, 10), np.float32))
    with pytest.raises(BlockDtypeError):
        mixed.process_block(np.zeros((2, 10), np.int16))
    assert mixed.process_block(np.zeros((2, 0), np.float32)).shape == (2, 0)
    x = _bursts(1, 2, 3000)
    x[0, 100] = np.nan
    y = mixed.process_block(x)
    assert y.shape == (2, 3000) and np.all(np.isfinite(y)) and mixed.nonfinite_count == 1


# -- rtha replay --simulate-loss --------------------------------------------------


def _replay(*args) -> int:
    from rtha.cli import main

    return main(["replay", *map(str, args)])


def _write(path, x, fs):
    import soundfile as sf

    sf.write(str(path), np.atleast_2d(x).T, fs, subtype="FLOAT")
    return path


def test_replay_writes_what_the_listener_hears_aided_and_unaided(tmp_path):
    import soundfile as sf

    from rtha.audio_io import AudioReader
    from rtha.hearing_aid import hearing_aid_chain
    from rtha.hearing_loss.listening import ListeningPath

    src = _write(tmp_path / "in.wav", REFERENCE["in__moderate__speech_noise_m30dBFS"][:22050], 44100)
    with AudioReader(src) as r:
        x = r.read_all()
    listener = PRESETS["mild"]
    for unaided in (False, True):
        out, rep = tmp_path / f"out{unaided}.wav", tmp_path / f"r{unaided}.json"
        extra = ["--unaided"] if unaided else []
        assert _replay(src, "--out", out, "--report", rep, "--simulate-loss", *extra, "--no-enhancer", "--listener", "mild") == 0
        y, fs = sf.read(str(out), dtype="float32", always_2d=True)
        assert fs == 44100 and y.shape == (x.shape[1], 2)  # as long as the input, both ears
        report = json.loads(rep.read_text())
        assert report["hearing_loss"]["mode"] == ("unaided" if unaided else "aided")
        assert report["hearing_loss"]["severity"] == {"left": "MILD", "right": "MILD"}
        # Without an enhancer the chain runs at the file's rate (here 44.1 kHz) in 4 ms blocks, inside
        # the listening path; offline, the same path gives the same file.
        if unaided:
            path = ListeningPath(HearingLossSimulator(listener))
        else:
            path = ListeningPath(HearingLossSimulator(listener), hearing_aid_chain(listener, 44100), 44100, 176)
        np.testing.assert_allclose(y.T, path.process(x), rtol=0, atol=1e-6)
        assert report["algorithmic_latency_samples"] == path.latency
        assert abs(report["measured_latency_samples"] - path.latency) <= 8


@pytest.mark.parametrize(
    "options, needle",
    [
        (["--unaided"], "--unaided needs --simulate-loss"),
        (["--level-db-spl", "90"], "--level-db-spl needs --simulate-loss"),
        (["--simulate-loss", "--level-db-spl", "nan"], "--level-db-spl nan"),
        (["--simulate-loss", "--level-db-spl", "900"], "between 0 and 200"),
        (["--simulate-loss", "--listeners", "LISTENERS", "--listener", "deaf"], "below 105 dB HL"),
    ],
)
def test_bad_simulate_loss_options_are_one_line_errors_before_any_work(tmp_path, capsys, options, needle):
    (tmp_path / "l.json").write_text(json.dumps({"deaf": {
        "audiogram_cfs": [250, 8000], "audiogram_levels_l": [60, 110], "audiogram_levels_r": [60, 60]}}))
    src = _write(tmp_path / "in.wav", np.zeros(4410, np.float32), 44100)
    out = tmp_path / "out.wav"
    options = [str(tmp_path / "l.json") if o == "LISTENERS" else o for o in options]
    assert _replay(src, "--out", out, "--no-enhancer", *options) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("rtha: error:") and needle in err[-1], err
    assert not out.exists()


# -- the listening paths ------------------------------------------------------------


def test_aided_path_at_the_chain_rate_is_partition_invariant_and_delayed_by_its_latency():
    from rtha.hearing_aid import hearing_aid_chain
    from rtha.hearing_loss.listening import ListeningPath

    listener = PRESETS["moderate"]
    path = ListeningPath(HearingLossSimulator(listener), hearing_aid_chain(listener, 16000), 16000, 64)
    assert path.bridge > 0 and path.latency == sum(n for _, n in path.latencies)
    x = _bursts(7, 1, 12000)
    offline = path.process(x)
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 600, size=100)
    np.testing.assert_allclose(_streamed(path, x, sizes), offline, rtol=0, atol=1e-6)
    lag, _ = delay_by_gcc_phat(x[0].astype(np.float64), offline[0].astype(np.float64), 4000)
    assert abs(lag - path.latency) <= 8


def test_hearing_modes_switch_between_blocks_and_restart_the_path_switched_to():
    from rtha.hearing_loss.listening import HearingModes, ListeningPath

    listener = PRESETS["mild"]
    unaided = ListeningPath(HearingLossSimulator(listener))
    modes = HearingModes(ListeningPath(HearingLossSimulator(listener)), unaided, "unaided")
    x = SPEECH[None, :8820]
    first = modes.process_block(x[:, :4410])
    assert modes.next_mode() == "bypass" and modes.mode == "unaided"  # asked for; not yet switched
    dry = modes.process_block(x[:, 4410:])
    assert modes.mode == "bypass" and modes.latency == 0
    np.testing.assert_array_equal(dry, np.repeat(x[:, 4410:], 2, axis=0))
    modes.request("unaided")
    again = modes.process_block(x[:, :4410])  # a fresh start: the same as the first block
    np.testing.assert_array_equal(again, first)
    with pytest.raises(ValueError):
        modes.request("louder")


# -- rtha live --simulate-loss over JACK --------------------------------------------

JACK_44K = "rtha-test-44k"


@pytest.fixture(scope="module")
def jack_44k():
    """A JACK server of its own at 44.1 kHz (the stream's rate with --simulate-loss), dummy + loopback, synchronous."""
    import os
    import shutil
    import subprocess

    root = Path(__file__).resolve().parents[1]
    env = dict(JACK_DEFAULT_SERVER=JACK_44K, JACK_NO_START_SERVER="1", JACK_NO_AUDIO_RESERVATION="1",
               AUDIO_STATE_DIR=os.environ.get("AUDIO_STATE_DIR", "/tmp/rtha-audio"))
    if shutil.which("bash") is None:
        pytest.skip("JACK tests need bash to run tools/setup_audio.sh")
    script = ["bash", str(root / "tools" / "setup_audio.sh"), "start", "--rate", "44100", "--period", "2048", "--sync"]
    try:
        r = subprocess.run(script, env={**os.environ, **env}, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"JACK could not be started with tools/setup_audio.sh: {e}")
    if r.returncode != 0:
        pytest.skip(f"JACK could not be started with tools/setup_audio.sh: {r.stderr.strip().splitlines()[-1:]}")
    try:
        with pytest.MonkeyPatch.context() as mp:
            for k, v in env.items():
                mp.setenv(k, v)  # the harness client and rtha live find this server
            yield
    finally:
        subprocess.run(script[:2] + ["stop"], env={**os.environ, **env}, capture_output=True, timeout=60)


def test_live_simulate_loss_equals_the_offline_chain_and_simulator(tmp_path, jack_44k):
    import test_live  # the JACK harness and runner of the live tests

    from rtha.commands.chain_options import chain_from_args
    from rtha.commands.listening import listening_setup

    # The live tests' 16 kHz test signal, played at 44.1 kHz: only its samples matter here.
    r = test_live.run_live(tmp_path, ["--simulate-loss", "--no-enhancer", "--listener", "moderate"])
    s, signal, cap, rec_in, rec_out = r["summary"], r["signal"], r["capture"], r["rec_in"], r["rec_out"]
    assert r["fs"] == 44100 and s["fs"] == 44100 and s["hearing_loss"]["mode"] == "aided"
    # the stream's input is the harness's signal, bit for bit
    a = test_live.offset_of(signal, rec_in)
    assert np.array_equal(rec_in[a : a + signal.size], signal)
    # what the stream played = the offline listening path (chain at 16 kHz, then MSBG) over that input
    setup, _ = listening_setup(r["args"], chain_from_args(r["args"], 16000), live=True)
    offline = setup.chain.process(rec_in[None, :])
    assert np.max(np.abs(rec_out - offline)) <= 1e-5
    # and reached the harness after JACK's lag (one period + one stream block)
    b = test_live.offset_of(cap[0], rec_out[0])
    j0 = max(0, -b)
    m = min(cap.shape[1] - j0, offline.shape[1] - (j0 + b))
    assert m >= signal.size
    assert np.max(np.abs(cap[:, j0 : j0 + m] - offline[:, j0 + b : j0 + b + m])) <= 1e-5
    jack_lag = (a - r["preroll"]) - b
    assert jack_lag == r["period"] + s["block"]
    # the loop's delay is the declared latency plus JACK's lag (GCC-PHAT, within 0.2 ms)
    assert s["algorithmic_latency_samples"] == setup.chain.latency
    loop, _ = delay_by_gcc_phat(signal.astype(np.float64), cap[0, r["preroll"] :].astype(np.float64), 8000)
    assert abs(loop - (setup.chain.latency + jack_lag)) <= 8


def test_live_key_m_switches_the_mode_and_the_panel_shows_it(tmp_path, jack_44k):
    # rtha live in a pseudo-terminal (its panel and keys are on only there): 'm' twice, aided -> unaided -> bypass
    import os
    import pty
    import select
    import sys
    import time

    report = tmp_path / "live.json"
    argv = [sys.executable, "-m", "rtha", "live", "--input", "system", "--output", "system", "--simulate-loss",
            "--no-enhancer", "--listener", "mild", "--duration", "60", "--report", str(report)]
    pid, fd = pty.fork()
    if pid == 0:  # the child: rtha live on the terminal
        os.execv(sys.executable, argv)
    screen, sent, deadline = b"", 0, time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break  # the child closed the terminal
                if not chunk:
                    break
                screen += chunk
            shown = screen.decode(errors="ignore")
            if sent == 0 and "AIDED" in shown:
                os.write(fd, b"m")
                sent = 1
            elif sent == 1 and "UNAIDED" in shown:
                os.write(fd, b"m")
                sent = 2
            elif sent == 2 and "BYPASS" in shown.split("UNAIDED")[-1]:
                os.write(fd, b"\x03")  # Ctrl-C: stop with a summary
                sent = 3
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert sent == 3, screen.decode(errors="ignore")[-3000:]
    assert os.waitstatus_to_exitcode(status) == 0
    summary = json.loads(report.read_text())
    assert summary["hearing_loss"]["mode"] == "bypass" and summary["algorithmic_latency_samples"] == 0
