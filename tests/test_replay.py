"""``rtha replay``, block-wise file I/O, latency measurement and the built-in example.

The CLI runs in-process through ``rtha.cli.main``; inputs are short generated
signals (about a second), so the whole file runs in well under a minute.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from rtha import example
from rtha.audio_io import AudioReader, AudioWriter
from rtha.audiogram import get_listener
from rtha.chain import Chain
from rtha.cli import main
from rtha.commands.replay import stream_file
from rtha.hearing_aid import hearing_aid_chain
from rtha.latency import delay_by_gcc_phat, measure_latency
from rtha.stage import SoftClip, Stage
from rtha.timing import timing_stats

FS = 16000
REPORT_KEYS = ("rtf", "block_ms", "p99_ms", "deadline_misses", "algorithmic_latency_ms", "measured_latency_ms")


def noisy_speech(seconds: float = 1.0, fs: int = FS, seed: int = 0) -> np.ndarray:
    s = example.synthetic_speech(seconds, fs, seed=seed)
    return example.mix_at_snr(s, example.speech_shaped_noise(s.size, fs, seed=seed + 1), 5.0, rms=0.1)


def write_wav(path, x: np.ndarray, fs: int = FS, subtype: str = "FLOAT"):
    """Write ``(channels, samples)`` (or 1-D mono) to ``path``."""
    x = np.atleast_2d(x)
    sf.write(str(path), x.T, fs, subtype=subtype)
    return path


def replay(*args, capsys=None) -> int:
    return main(["replay", *map(str, args)])


def read(path) -> tuple[np.ndarray, int]:
    y, fs = sf.read(str(path), dtype="float32", always_2d=True)
    return y.T, fs


# -- the contract ---------------------------------------------------------------


def test_replay_writes_output_and_report_with_the_contract_keys(tmp_path, capsys):
    x = noisy_speech()
    src = write_wav(tmp_path / "in.wav", x)
    out, rep = tmp_path / "out.wav", tmp_path / "r.json"
    assert replay(src, "--out", out, "--report", rep, "--no-enhancer", "--listener", "moderate") == 0
    r = json.loads(rep.read_text())
    for key in REPORT_KEYS:
        assert isinstance(r[key], (int, float)), key
    assert r["block"] == 64 and r["block_ms"] == 4.0 and r["fs"] == FS and not r["resampled"]
    assert r["blocks"] == -(-x.size // 64)
    assert [s["stage"] for s in r["stage_latencies"]] == ["NalrFilter", "Compressor", "SoftClip"]
    assert r["algorithmic_latency_ms"] == 0.0  # minimum-phase NAL-R
    for key in ("p50_ms", "p95_ms", "max_ms", "mean_ms"):
        assert r[key] >= 0
    y, fs = read(out)
    assert fs == FS and y.shape == (2, x.size)
    # the mono input fed both ears (the preset has the same audiogram in both)
    assert np.array_equal(y[0], y[1])
    # and the streamed output is the offline chain's
    offline = hearing_aid_chain(get_listener("moderate"), FS).process(x[None, :])
    assert np.max(np.abs(y - offline)) <= 1e-5
    printed = capsys.readouterr()
    assert "measured latency" in printed.out and "real-time factor" in printed.out


@pytest.mark.parametrize("enhancer", ["none", "random-tiny"])
def test_output_is_identical_whatever_the_block_size(tmp_path, enhancer, random_tiny_model):
    src = write_wav(tmp_path / "in.wav", noisy_speech(0.7))
    chain_opts = ["--no-enhancer"] if enhancer == "none" else ["--model", random_tiny_model]
    # with the enhancer, blocks are multiples of its 16-sample hop (the aligned, low-latency mode)
    blocks = ["64", "16", "2ms", "160", "37"] if enhancer == "none" else ["64", "2ms", "160", "16"]
    outs = []
    for b in blocks:
        out = tmp_path / f"out-{b}.wav"
        assert replay(src, "--out", out, "--block", b, *chain_opts) == 0
        outs.append(read(out)[0])
    for b, y in zip(blocks[1:], outs[1:]):
        if enhancer == "none":  # numba loops, no BLAS: the same sums in the same order
            assert np.array_equal(y, outs[0]), f"--block {b} differs from --block {blocks[0]}"
        else:
            # the enhancer's matmuls go through BLAS, which picks its kernels (and so its
            # rounding) by matrix size and CPU: one float32 ulp apart between block sizes
            # on AVX2; so equal within a stated tolerance
            assert np.max(np.abs(y - outs[0])) <= 1e-6, f"--block {b} differs from --block {blocks[0]}"


@pytest.fixture(scope="module")
def random_models(tmp_path_factory):
    """Random-weight checkpoints of every preset: hops of 8 (default), 16 (tiny), 32 (lean), 40 (lean_wide) samples."""
    import torch

    from rtha.enhance import PRESETS, ConvTasNet, ConvTasNetConfig, save_checkpoint

    folder = tmp_path_factory.mktemp("presets")
    paths = {}
    for name in PRESETS:
        torch.manual_seed(0)
        paths[name] = save_checkpoint(folder / f"{name}.pt", ConvTasNet(ConvTasNetConfig.preset(name)), {})
    return paths


# 31367: a 1.96 s recording that broke the default model's 8-sample alignment in the
# latency probe; 1 and 5: shorter than any hop; 64013: longer than the 4 s probe, odd.
# Blocks: 4ms (64) is a multiple of every hop but 40; 40 of 8 and 40; 37 of none.
LENGTH_CASES = [(p, b, n) for p in ("default", "tiny", "lean", "lean_wide") for b in ("4ms", "40", "37") for n in (1, 5, 31367)]
LENGTH_CASES += [("default", "4ms", 64013), ("lean_wide", "40", 64013)]


@pytest.mark.parametrize("preset, block, length", LENGTH_CASES)
def test_every_file_length_works_with_every_model_and_block_size(tmp_path, random_models, preset, block, length):
    x = 0.1 * np.random.default_rng(length).standard_normal(length).astype(np.float32)
    src = write_wav(tmp_path / "in.wav", x)
    out, rep = tmp_path / "out.wav", tmp_path / "r.json"
    assert replay(src, "--out", out, "--report", rep, "--model", random_models[preset], "--block", block) == 0
    r = json.loads(rep.read_text())
    assert r["input_frames"] == length and r["audio_s"] == length / FS
    assert r["blocks"] == -(-length // r["block"])
    assert r["probe_s"] == min(length, 4 * FS) / FS
    assert r["measured_latency_samples"] is None or abs(r["measured_latency_samples"]) <= length
    assert read(out)[0].shape == (2, length)


def test_measured_latency_equals_algorithmic_for_a_pure_delay_chain(tmp_path):
    src = write_wav(tmp_path / "in.wav", noisy_speech())
    rep = tmp_path / "r.json"
    assert replay(src, "--report", rep, "--no-enhancer", "--nalr-phase", "linear") == 0
    r = json.loads(rep.read_text())
    assert r["algorithmic_latency_samples"] == 40  # linear-phase NAL-R: nfir/2 at 16 kHz
    assert r["measured_latency_samples"] == 40
    assert r["measured_latency_ms"] == pytest.approx(2.5)


def test_with_enhancer_the_report_names_the_model_and_its_latency(tmp_path, random_tiny_model):
    src = write_wav(tmp_path / "in.wav", noisy_speech(0.5))
    rep = tmp_path / "r.json"
    assert replay(src, "--report", rep, "--model", random_tiny_model, "--threads", "1") == 0
    r = json.loads(rep.read_text())
    assert r["enhancer"] and r["model"] == str(random_tiny_model) and r["threads"] == 1
    stages = {s["stage"]: s["samples"] for s in r["stage_latencies"]}
    assert stages["StreamingEnhancer"] == 16  # tiny: L - hop = 32 - 16 (block 64 is hop-aligned)
    assert r["algorithmic_latency_samples"] == sum(stages.values())


def test_stereo_input_channel0_is_the_left_ear(tmp_path):
    listeners = tmp_path / "listeners.json"
    cfs = [250, 500, 1000, 2000, 3000, 4000, 6000, 8000]
    listeners.write_text(
        json.dumps({"L1": {"name": "L1", "audiogram_cfs": cfs, "audiogram_levels_l": [10] * 8, "audiogram_levels_r": [70] * 8}})
    )
    x = noisy_speech()
    stereo = np.stack([x, np.zeros_like(x)])
    src = write_wav(tmp_path / "in.wav", stereo)
    out = tmp_path / "out.wav"
    assert replay(src, "--out", out, "--no-enhancer", "--listeners", listeners, "--listener", "L1") == 0
    y, _ = read(out)
    assert np.abs(y[0]).max() > 0.01 and not np.any(y[1])
    offline = hearing_aid_chain(get_listener("L1", listeners), FS).process(stereo)
    assert np.max(np.abs(y - offline)) <= 1e-5


def test_input_at_another_rate_is_resampled_to_the_model_rate(tmp_path, random_tiny_model):
    fs_in = 22050
    x = noisy_speech(0.6, fs=fs_in)
    src = write_wav(tmp_path / "in.wav", x, fs=fs_in)
    out, rep = tmp_path / "out.wav", tmp_path / "r.json"
    assert replay(src, "--out", out, "--report", rep, "--model", random_tiny_model) == 0
    r = json.loads(rep.read_text())
    assert r["resampled"] and r["resampling"]["from_hz"] == fs_in and r["resampling"]["to_hz"] == FS
    y, fs = read(out)
    assert fs == FS and y.shape[1] == -(-x.size * 320 // 441)


def test_without_enhancer_the_file_rate_is_kept(tmp_path):
    src = write_wav(tmp_path / "in.wav", noisy_speech(0.5, fs=44100), fs=44100)
    out, rep = tmp_path / "out.wav", tmp_path / "r.json"
    assert replay(src, "--out", out, "--report", rep, "--no-enhancer") == 0
    r = json.loads(rep.read_text())
    assert r["fs"] == 44100 and not r["resampled"] and r["block"] == 176  # 4 ms at 44.1 kHz
    assert read(out)[1] == 44100


def test_realtime_paces_at_the_audio_clock(tmp_path):
    src = write_wav(tmp_path / "in.wav", noisy_speech(0.5))
    rep = tmp_path / "r.json"
    assert replay(src, "--report", rep, "--no-enhancer", "--realtime") == 0
    r = json.loads(rep.read_text())
    assert r["realtime"] and r["wall_s"] >= 0.5 - 1e-3


def test_missing_shipped_model_falls_back_with_a_note(tmp_path, capsys, monkeypatch):
    import rtha.enhance

    monkeypatch.setattr(rtha.enhance, "default_model_path", lambda name="default": tmp_path / "missing.pt")
    src = write_wav(tmp_path / "in.wav", noisy_speech(0.5))
    rep = tmp_path / "r.json"
    assert replay(src, "--report", rep) == 0
    assert "missing.pt is missing; running without the enhancer" in capsys.readouterr().err
    assert json.loads(rep.read_text())["enhancer"] is False


# -- the built-in example -----------------------------------------------------------


def test_replay_without_a_file_uses_the_built_in_example(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RTHA_CACHE", str(tmp_path / "cache"))
    rep = tmp_path / "r.json"
    assert main(["replay", "--no-enhancer", "--report", str(rep)]) == 0
    r = json.loads(rep.read_text())
    assert r["input"].startswith(str(tmp_path / "cache")) and r["audio_s"] > 3
    assert "built-in example" in capsys.readouterr().err
    made = example.example_path()
    assert str(made) == r["input"]
    x, fs = read(made)
    assert fs == 16000 and x.shape[0] == 1
    assert np.sqrt(np.mean(x.astype(np.float64) ** 2)) == pytest.approx(example.RMS, rel=1e-3)


def test_without_espeak_the_example_is_synthetic_speech(tmp_path, monkeypatch):
    monkeypatch.setenv("RTHA_CACHE", str(tmp_path))
    monkeypatch.setattr(example, "espeak_available", lambda: False)
    path = example.example_path()
    assert path.name.startswith("example-synthetic")
    x, fs = read(path)
    again = example.mix_at_snr(
        example.synthetic_speech(), example.speech_shaped_noise(example.synthetic_speech().size), example.SNR_DB
    )
    assert np.array_equal(x[0], again)  # deterministic
    # speech-like: syllabic energy modulation of the clean part, and most energy below 4 kHz
    s = example.synthetic_speech()
    frames = s[: s.size // 800 * 800].reshape(-1, 800)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    assert np.percentile(level, 90) - np.percentile(level, 20) > 20
    spec = np.abs(np.fft.rfft(s)) ** 2
    f = np.fft.rfftfreq(s.size, 1 / fs)
    assert spec[(f > 80) & (f < 4000)].sum() > 0.9 * spec.sum()


# -- bad input: one line, exit 2 ------------------------------------------------------


def _bad_inputs(tmp_path):
    ok = write_wav(tmp_path / "ok.wav", noisy_speech(0.5))
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF\x00\x00not really a wave file at all" * 10)
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros((0, 1), np.float32), FS)
    three = write_wav(tmp_path / "three.wav", np.zeros((3, 1600), np.float32))
    existing = tmp_path / "exists.wav"
    existing.write_bytes(b"keep me")
    return {
        "missing file": (["replay", tmp_path / "nope.wav"], "nope.wav: file not found"),
        "unreadable file": (["replay", garbage], "garbage.wav: cannot read audio"),
        "zero-length file": (["replay", empty], "empty.wav: contains no samples"),
        "wrong channel count": (["replay", three], "three.wav: has 3 channels; expected 1"),
        "a folder": (["replay", tmp_path], "is a folder"),
        "unknown listener": (["replay", ok, "--listener", "nobody"], "unknown listener 'nobody'"),
        "bad block": (["replay", ok, "--no-enhancer", "--block", "4xs"], "--block '4xs'"),
        "zero block": (["replay", ok, "--no-enhancer", "--block", "0"], "--block '0'"),
        "output exists": (["replay", ok, "--out", existing], "already exists; pass --force"),
        "output is input": (["replay", ok, "--out", ok, "--force"], "is the input file"),
        "missing model": (["replay", ok, "--model", tmp_path / "no.pt"], "no.pt"),
        "bad output format": (["replay", ok, "--no-enhancer", "--out", tmp_path / "out.xyz"], "unknown audio format"),
    }


BAD = [
    "missing file",
    "unreadable file",
    "zero-length file",
    "wrong channel count",
    "a folder",
    "unknown listener",
    "bad block",
    "zero block",
    "output exists",
    "output is input",
    "missing model",
    "bad output format",
]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_a_one_line_error(tmp_path, capsys, case):
    argv, needle = _bad_inputs(tmp_path)[case]
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("rtha: error:") and needle in err[-1], err
    assert (tmp_path / "exists.wav").read_bytes() == b"keep me"


def test_nan_samples_are_replaced_by_zero_counted_and_warned(tmp_path, capsys):
    x = noisy_speech(0.5)
    x[100:110] = np.nan
    x[2000] = np.inf
    src = write_wav(tmp_path / "in.wav", x)
    out, rep = tmp_path / "out.wav", tmp_path / "r.json"
    assert replay(src, "--out", out, "--report", rep, "--no-enhancer") == 0
    assert json.loads(rep.read_text())["nonfinite_samples"] == 11
    assert "11 NaN/Inf samples were replaced by 0" in capsys.readouterr().err
    y, _ = read(out)
    clean = np.where(np.isfinite(x), x, 0)
    assert np.all(np.isfinite(y))
    assert np.max(np.abs(y - hearing_aid_chain(get_listener("moderate"), FS).process(clean[None]))) <= 1e-5


def test_plots_need_matplotlib_or_are_written(tmp_path, capsys):
    src = write_wav(tmp_path / "in.wav", noisy_speech(0.5))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert replay(src, "--no-enhancer", "--plots", tmp_path / "plots") == 2
        assert "--plots needs matplotlib" in capsys.readouterr().err
    else:
        assert replay(src, "--no-enhancer", "--plots", tmp_path / "plots") == 0
        assert (tmp_path / "plots" / "compute_histogram.png").stat().st_size > 0
        assert (tmp_path / "plots" / "spectrograms.png").stat().st_size > 0
        # Digital silence (exact zeros) is drawn as the floor, without a divide-by-zero warning.
        quiet = write_wav(tmp_path / "quiet.wav", np.concatenate([np.zeros(FS // 2), noisy_speech(0.5)]))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert replay(quiet, "--no-enhancer", "--simulate-loss", "--plots", tmp_path / "heard") == 0
        assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
        assert (tmp_path / "heard" / "heard_unaided_vs_aided.png").stat().st_size > 0


# -- the pieces ------------------------------------------------------------------------


class StopAfter(Stage):
    """Passes audio through, then raises KeyboardInterrupt (a Ctrl-C) on block ``n``."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.seen = 0

    def _start(self, channels):
        self.seen = 0

    def _step(self, x, out):
        self.seen += 1
        if self.seen > self.n:
            raise KeyboardInterrupt
        out[:] = x


def test_interrupted_replay_leaves_a_valid_partial_output(tmp_path):
    src = write_wav(tmp_path / "in.wav", noisy_speech(1.0))
    out = tmp_path / "out.wav"
    chain = Chain(StopAfter(10))
    with AudioReader(src) as reader, AudioWriter(out, FS, 1) as writer:
        result = stream_file(chain, reader, 64, writer)
    assert result.interrupted and result.frames == 10 * 64
    y, _ = read(out)
    x, _ = read(src)
    assert np.array_equal(y, x[:, : 10 * 64])


def test_reader_blocks_are_exact_and_equal_the_file(tmp_path):
    x = np.random.default_rng(0).standard_normal((2, 1000)).astype(np.float32)
    src = write_wav(tmp_path / "in.wav", x)
    with AudioReader(src) as r:
        blocks = list(r.blocks(64))
    assert [b.shape[1] for b in blocks] == [64] * 15 + [40]
    assert np.array_equal(np.concatenate(blocks, axis=1), x)


def test_resampling_reader_gives_exact_blocks_of_the_resampled_file(tmp_path):
    x = np.random.default_rng(2).standard_normal((1, 4410)).astype(np.float32) * 0.1
    src = write_wav(tmp_path / "in.wav", x, fs=44100)
    with AudioReader(src, fs=16000) as r:
        blocks = list(r.blocks(64))
        assert r.resampled and r.frames == 1600
    assert all(b.shape[1] == 64 for b in blocks[:-1]) and sum(b.shape[1] for b in blocks) == 1600
    ref = resample_poly(x.astype(np.float64), 160, 441, axis=-1)
    assert np.max(np.abs(np.concatenate(blocks, axis=1) - ref)) < 1e-5


class Delay(Stage):
    """A pure delay of ``d`` samples (state: the last ``d`` input samples)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.latency = d

    def _start(self, channels):
        self.buf = np.zeros((channels, self.latency), np.float32)

    def _step(self, x, out):
        both = np.concatenate([self.buf, x], axis=1)
        self.buf = both[:, x.shape[1] :]
        out[:] = both[:, : x.shape[1]]


@pytest.mark.parametrize("d", [0, 1, 37, 400])
def test_measure_latency_finds_a_pure_delay(d):
    probe = noisy_speech(0.5)[None, :]
    chain = Chain(Delay(d), SoftClip())
    m = measure_latency(chain, probe, FS)
    assert m["measured_latency_samples"] == d == chain.latency
    assert m["measured_latency_ms"] == pytest.approx(1e3 * d / FS)


def test_measure_latency_of_a_silent_probe_is_none():
    m = measure_latency(Chain(SoftClip()), np.zeros((1, 1000), np.float32), FS)
    assert m["measured_latency_samples"] is None


def test_gcc_phat_finds_negative_and_positive_lags():
    x = np.random.default_rng(3).standard_normal(4000)
    assert delay_by_gcc_phat(x, np.roll(x, 25), 100)[0] == 25
    assert delay_by_gcc_phat(x, np.roll(x, -7), 100)[0] == -7


def test_timing_stats():
    t = np.array([1.0, 2.0, 3.0, 5.0]) * 1e-3
    s = timing_stats(t, block_s=2.5e-3)
    assert s["blocks"] == 4 and s["deadline_misses"] == 2
    assert s["max_ms"] == pytest.approx(5.0) and s["mean_ms"] == pytest.approx(2.75)
    assert s["rtf"] == pytest.approx(11.0 / 10.0)
    assert s["p50_ms"] == pytest.approx(2.5)
