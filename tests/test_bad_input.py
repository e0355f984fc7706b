"""Bad input across the commands: a one-line error (exit 2) before any work, or a defined behaviour.

Each case is a repro from the bad-input sweep of issue 13: signals that stop a
run (partial outputs stay valid files), output paths that cannot be written,
absurd sample values, broken model files, lossy output formats, and messages
that named the wrong thing. Commands run in-process through ``rtha.cli.main``,
except where a real signal must reach a real process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from scipy.io import wavfile

from rtha.audio_io import AudioWriter, clamp_block
from rtha.cli import main

FS = 16000


def noise(seconds: float, rms: float = 0.1, seed: int = 0) -> np.ndarray:
    return (rms * np.random.default_rng(seed).standard_normal(int(seconds * FS))).astype(np.float32)


def write_wav(path, x: np.ndarray, fs: int = FS):
    sf.write(str(path), np.atleast_2d(x).T, fs, subtype="FLOAT")
    return path


def one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("rtha: error:"), err
    assert not any("Traceback" in line for line in err), err
    for needle in needles:
        assert needle in err[-1], err[-1]
    return err[-1]


def strict_wav(path) -> np.ndarray:
    """The file through scipy's reader, which trusts the header (a 0-byte data chunk is an empty file)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", wavfile.WavFileWarning)  # libsndfile's PEAK chunk
        fs, y = wavfile.read(str(path))
    assert fs == FS
    return y


# -- 1. stopped runs leave valid files -------------------------------------------------


def test_the_wav_header_is_valid_after_every_block(tmp_path):
    path = tmp_path / "w.wav"
    w = AudioWriter(path, FS, 2)
    try:
        for k in range(1, 4):
            w.write(np.full((2, 64), 0.25 * k, np.float32))
            y = strict_wav(path)  # read while still open: what a SIGKILL now would leave
            assert y.shape == (64 * k, 2) and y[-1, 0] == np.float32(0.25 * k)
    finally:
        w.close()


def _start(args: list[str], out) -> subprocess.Popen:
    """``rtha ARGS`` in a subprocess, returned once ``out`` holds more than a header's worth."""
    proc = subprocess.Popen([sys.executable, "-m", "rtha", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300  # generous: a cold start compiles numba kernels
    while not (out.exists() and out.stat().st_size > 4096):
        if proc.poll() is not None:
            raise AssertionError(f"rtha exited before writing: {proc.communicate()}")
        assert time.monotonic() < deadline, "no output in time"
        time.sleep(0.02)
    return proc


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_stopped_replay_leaves_a_valid_partial_wav(tmp_path, sig):
    src = write_wav(tmp_path / "long.wav", noise(60.0))
    out, rep = tmp_path / "out.wav", tmp_path / "r.json"
    proc = _start(["replay", str(src), "--out", str(out), "--report", str(rep), "--no-enhancer", "--realtime"], out)
    time.sleep(0.3)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    y = strict_wav(out)
    assert 0 < y.shape[0] < 60 * FS and y.shape[1] == 2 and np.all(np.isfinite(y))
    if sig == signal.SIGTERM:  # handled like Ctrl-C: a clean stop, the report written
        assert proc.returncode == 130 and "interrupted after" in err and "Traceback" not in err
        r = json.loads(rep.read_text())
        assert r["interrupted"] and r["audio_s"] * FS == y.shape[0]
    else:
        assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_stopped_enhance_leaves_a_valid_partial_wav(tmp_path, sig):
    src = write_wav(tmp_path / "long.wav", noise(240.0))
    out = tmp_path / "out.wav"
    proc = _start(["enhance", str(src), "--out", str(out)], out)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    y = strict_wav(out)
    assert 0 < y.shape[0] < 240 * FS and np.all(np.isfinite(y))
    if sig == signal.SIGTERM:
        assert proc.returncode == 130 and "rtha: interrupted" in err and "Traceback" not in err
    else:
        assert proc.returncode == -signal.SIGKILL


# -- 2. output paths are checked before any work -----------------------------------------


@pytest.mark.parametrize("where", ["unwritable folder", "a folder"])
@pytest.mark.parametrize("command", ["replay --report", "replay --out", "enhance --out"])
def test_an_output_that_cannot_be_written_fails_before_any_work(tmp_path, capsys, request, command, where):
    src = write_wav(tmp_path / "in.wav", noise(0.5))
    bad = request.getfixturevalue("unwritable_dir") / "x.wav" if where == "unwritable folder" else tmp_path
    flag = command.split()[1]
    out = tmp_path / "out.wav"
    argv = {
        "replay --report": ["replay", src, "--out", out, "--report", bad],
        "replay --out": ["replay", src, "--out", bad],
        "enhance --out": ["enhance", src, "--out", bad],
    }[command]
    assert main([str(a) for a in argv]) == 2
    one_line_error(capsys, flag, "cannot write there" if where == "unwritable folder" else "is a folder")
    assert not out.exists()  # nothing was processed


def test_a_permission_failure_names_the_reason_not_system_error(tmp_path, capsys, unwritable_dir):
    src = write_wav(tmp_path / "in.wav", noise(0.2))
    assert main(["replay", str(src), "--out", str(unwritable_dir / "x.wav"), "--no-enhancer"]) == 2
    line = one_line_error(capsys, "cannot write there")
    assert "System error" not in line
    if os.geteuid() != 0:  # root reads any file whatever its mode
        src.chmod(0)
        assert main(["replay", str(src), "--no-enhancer"]) == 2
        assert "System error" not in one_line_error(capsys, "cannot read", "ermission")


# -- absurd samples and broken models ------------------------------------------------------


def test_clamp_block_counts_and_clamps_in_place_leaving_nan_alone():
    x = np.array([[0.5, 3e38, -1e8, np.nan, -2.0]], np.float32)
    assert clamp_block(x, 2.0) == 2
    assert x[0, :3].tolist() == [0.5, 2.0, -2.0] and np.isnan(x[0, 3]) and x[0, 4] == -2.0
    assert clamp_block(np.zeros((2, 0), np.float32), 2.0) == 0


@pytest.mark.parametrize("command", ["replay", "enhance"])
def test_samples_near_float32_max_are_clamped_counted_and_warned(tmp_path, capsys, command):
    x = noise(1.0)
    x[1000:1100] = 3e38
    x[5000] = -3.4e38
    src = write_wav(tmp_path / "in.wav", x)
    out, rep = tmp_path / "out.wav", tmp_path / "r.json"
    extra = ["--report", str(rep)] if command == "replay" else []
    assert main([command, str(src), "--out", str(out), *extra]) == 0
    err = capsys.readouterr().err
    assert "101" in err and "clamped" in err
    y, _ = sf.read(str(out), dtype="float32")
    assert y.shape[0] == x.size and np.all(np.isfinite(y))
    if command == "replay":
        assert json.loads(rep.read_text())["clamped_samples"] == 101


def test_a_burst_of_huge_samples_does_not_pin_the_output(tmp_path, capsys):
    # 100 samples of 1e8: unclamped, the compressor's gain (which follows the input
    # RMS) pins this output near +-1 for 0.74 s after the burst (0.1 away from its
    # course for 0.93 s); clamped to +-2, 0.1 away for 1 ms
    x = noise(3.0, rms=0.05)
    burst = x.copy()
    burst[16000:16100] = 1e8
    outs = []
    for name, sig in (("clean", x), ("burst", burst)):
        src = write_wav(tmp_path / f"{name}.wav", sig)
        rep = tmp_path / f"{name}.json"
        assert main(["replay", str(src), "--out", str(tmp_path / f"{name}-out.wav"), "--report", str(rep), "--no-enhancer"]) == 0
        outs.append(sf.read(str(tmp_path / f"{name}-out.wav"), dtype="float32")[0])
    assert json.loads(rep.read_text())["clamped_samples"] == 100
    assert "100 samples beyond ±2" in capsys.readouterr().err
    after = np.abs(outs[1][16100:] - outs[0][16100:]).max(axis=1)
    assert np.all(after[int(0.01 * FS) :] <= 0.1)  # back on course within 10 ms of the burst
    assert np.count_nonzero(np.abs(outs[1][16100:]) > 0.9) <= 10


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory, random_tiny_model):
    import pickle

    import torch

    from rtha.enhance import load_checkpoint, save_checkpoint

    folder = tmp_path_factory.mktemp("bad-models")
    model, meta = load_checkpoint(random_tiny_model)
    with torch.no_grad():
        model.bottleneck.weight[0, 0, 0] = float("nan")
    nan = save_checkpoint(folder / "nan.pt", model, meta)
    model, _ = load_checkpoint(random_tiny_model)
    dry = save_checkpoint(folder / "dry5.pt", model, {"dry_mix": 5.0})
    (folder / "pickle.pt").write_bytes(pickle.dumps({"weights": {1, 2}}))
    return {"nan": nan, "dry_mix": dry, "pickle": folder / "pickle.pt"}


@pytest.mark.parametrize("command", ["replay", "enhance"])
@pytest.mark.parametrize(
    "model, needles, absent",
    [
        ("nan", ["nan.pt", "'bottleneck.weight' has NaN or Inf"], "ZeroDivision"),
        ("dry_mix", ["dry5.pt stores dry_mix 5.0", "pass --dry-mix F"], "--dry-mix 5.0"),
        ("pickle", ["pickle.pt is not a readable rtha model checkpoint"], "weights_only"),
    ],
)
def test_a_bad_model_file_is_a_one_line_error_that_names_it(tmp_path, capsys, bad_models, command, model, needles, absent):
    src = write_wav(tmp_path / "in.wav", noise(0.3))
    out = tmp_path / "out.wav"
    assert main([command, str(src), "--out", str(out), "--model", str(bad_models[model])]) == 2
    assert absent not in one_line_error(capsys, *needles)
    assert not out.exists()


def test_the_output_format_is_checked_before_the_model_loads(tmp_path, capsys, bad_models):
    src = write_wav(tmp_path / "in.wav", noise(0.3))
    for command in ("replay", "enhance"):
        assert main([command, str(src), "--out", str(tmp_path / "out.xyz"), "--model", str(bad_models["nan"])]) == 2
        one_line_error(capsys, "unknown audio format '.xyz'")


# -- 5. formats without float samples --------------------------------------------------------


def test_enhance_to_flac_says_how_many_samples_clipped_and_wav_keeps_them(tmp_path, capsys, random_tiny_model):
    hot = write_wav(tmp_path / "hot.wav", noise(1.0, rms=3.0))
    assert main(["enhance", str(hot), "--out", str(tmp_path / "x.flac"), "--model", str(random_tiny_model), "--dry-mix", "1"]) == 0
    err = capsys.readouterr().err
    assert "samples beyond ±1 were clipped" in err and "write .wav for 32-bit float" in err
    assert sf.info(str(tmp_path / "x.flac")).subtype == "PCM_24"
    assert main(["enhance", str(hot), "--out", str(tmp_path / "x.wav"), "--model", str(random_tiny_model), "--dry-mix", "1"]) == 0
    assert "clipped" not in capsys.readouterr().err
    y, _ = sf.read(str(tmp_path / "x.wav"), dtype="float32")
    assert sf.info(str(tmp_path / "x.wav")).subtype == "FLOAT" and np.abs(y).max() > 2  # kept as they are


# -- 8. messages ----------------------------------------------------------------------------


def test_a_damaged_cached_example_is_made_again(tmp_path, monkeypatch):
    from rtha import example

    monkeypatch.setenv("RTHA_CACHE", str(tmp_path))
    monkeypatch.setattr(example, "espeak_available", lambda: False)
    path = example.example_path()
    good = sf.read(str(path), dtype="float32")[0]
    path.write_bytes(path.read_bytes()[:30])  # a torn copy (a killed first run, a full disk)
    assert example.example_path() == path
    assert np.array_equal(sf.read(str(path), dtype="float32")[0], good)  # (the header's PEAK chunk has a time stamp)


@pytest.mark.parametrize("args, needle", [(["--models", "lean,nope"], "'nope'"), (["--threads", "x"], "--threads x"),
                                          (["--blocks-ms", "0"], "--blocks-ms 0")])
def test_the_stream_benchmark_rejects_bad_arguments_before_any_work(args, needle):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, os.path.join(root, "tools", "bench_stream.py"), *args],
                       capture_output=True, text=True, timeout=120)
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and last.startswith("bench_stream.py: error:") and needle in last
    assert "Traceback" not in r.stderr
