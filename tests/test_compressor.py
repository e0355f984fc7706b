import json
from pathlib import Path

import numpy as np
import pytest

from rtha.dsp import Compressor
from rtha.errors import RthaError

DATA = Path(__file__).parent / "data"
CASES = json.loads((DATA / "expected.json").read_text())["compressor"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: str(c["fs"]))
def test_equals_pyclarity_output_and_gains(case):
    p = case["params"]
    comp = Compressor(
        case["fs"],
        threshold=p["threshold"],
        attenuation=p["attenuation"],
        attack_ms=p["attack"],
        release_ms=p["release"],
        rms_window_s=p["rms_buffer_size"],
    )
    x = np.load(DATA / "signals.npz")[case["input_key"]] * np.float32(case["input_scale"])
    y = comp.process(x[None])
    np.testing.assert_allclose(y[0, ::100], case["out_every_100"], rtol=0, atol=1e-7)
    np.testing.assert_allclose(comp.gains[0, ::100], case["gain_every_100"], rtol=0, atol=1e-7)
    assert np.abs(y.astype(np.float64)).sum() == pytest.approx(case["sum_abs_out"], rel=1e-9)


def test_defaults_are_the_icassp_2023_settings():
    c = Compressor(44100)
    assert (c.threshold, c.attenuation, c.attack_ms, c.release_ms, c.rms_window_s, c.makeup_gain) == (
        0.35, 0.1, 50.0, 1000.0, 0.064, 1.0,
    )
    assert c.window == 2822 and c.latency == 0


def _reference_gains(x, fs, threshold, attenuation, attack_ms, release_ms, window_s):
    """The recurrence written plainly, RMS by exact convolution (float64)."""
    w = int(window_s * fs)
    sq = np.concatenate((np.zeros(w - 1), x.astype(np.float64) ** 2))
    rms = np.sqrt(np.convolve(sq, np.ones(w), mode="valid") / w + 1e-8)
    attack, release = 1000 / attack_ms / fs, 1000 / release_ms / fs
    g, out = 1.0, np.empty(len(x))
    for i, r in enumerate(rms):
        if r > threshold:
            g = g * (1 - attack) + (attenuation * r + (1 - attenuation) * threshold) * attack
        else:
            g = release + g * (1 - release)
        out[i] = g
    return out


def test_window_sum_does_not_drift_after_loud_passages():
    # 1 s very loud, then 2 s quiet noise just above a low threshold: a running
    # sum that kept the loud passage's rounding error would misread the quiet RMS.
    fs = 8000
    rng = np.random.default_rng(5)
    x = np.concatenate((300.0 * rng.standard_normal(fs), 1e-3 * rng.standard_normal(2 * fs))).astype(np.float32)
    params = dict(threshold=1e-4, attenuation=0.5, attack_ms=5.0, release_ms=50.0)
    comp = Compressor(fs, rms_window_s=0.05, **params)
    y = comp.process(x[None])
    ref = _reference_gains(x, fs, window_s=0.05, **params)
    np.testing.assert_allclose(comp.gains[0, fs:], ref[fs:], rtol=1e-9)
    np.testing.assert_allclose(y[0], x * ref, rtol=1e-6, atol=1e-12)


def test_channels_are_independent():
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((3, 4000)) * [[0.1], [1.0], [3.0]]).astype(np.float32)
    stereo = Compressor(16000).process(x)
    for c in range(3):
        np.testing.assert_array_equal(stereo[c], Compressor(16000).process(x[c : c + 1])[0])


def test_non_finite_input_never_poisons_the_state():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3000)).astype(np.float32)
    bad = x.copy()
    bad[0, 100] = np.nan
    bad[1, 200:210] = np.inf
    bad[1, 500] = -np.inf
    clean = x.copy()
    clean[np.isnan(bad) | np.isinf(bad)] = 0.0
    comp = Compressor(16000)
    y = np.concatenate([comp.process_block(bad[:, :150]), comp.process_block(bad[:, 150:])], axis=1)
    assert comp.nonfinite_count == 12
    assert np.isfinite(y).all() and np.isfinite(comp.gains).all()
    np.testing.assert_array_equal(y, Compressor(16000).process(clean))


def test_loud_input_is_compressed_and_quiet_input_passes():
    fs = 16000
    t = np.arange(2 * fs) / fs
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)[None]
    comp = Compressor(fs)
    comp.process(0.1 * tone)
    np.testing.assert_array_equal(comp.gains, 1.0)  # rms 0.07 < threshold 0.35
    comp.process(2.0 * tone)  # rms 1.41: gain settles at 0.1 * 1.41 + 0.9 * 0.35
    assert comp.gains[0, -1] == pytest.approx(0.1 * np.sqrt(2) + 0.315, rel=1e-3)


def test_makeup_gain_scales_the_output_not_the_gains():
    x = (0.5 * np.random.default_rng(3).standard_normal((2, 5000))).astype(np.float32)
    unity, boosted = Compressor(16000), Compressor(16000, makeup_gain=2.5)
    y1, y2 = unity.process(x), boosted.process(x)
    np.testing.assert_array_equal(boosted.gains, unity.gains)
    np.testing.assert_allclose(y2, (x.astype(np.float64) * unity.gains * 2.5).astype(np.float32), rtol=1e-6)
    np.testing.assert_allclose(y2, 2.5 * y1, rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(fs=0), "fs"),
        (dict(fs=16000, threshold=-1), "threshold"),
        (dict(fs=16000, attenuation=1.5), "attenuation"),
        (dict(fs=16000, attack_ms=0), "attack_ms"),
        (dict(fs=16000, release_ms=float("nan")), "release_ms"),
        (dict(fs=16000, rms_window_s=1e-6), "rms_window_s"),
        (dict(fs=16000, makeup_gain=-2), "makeup_gain"),
    ],
)
def test_bad_parameters_raise_user_errors(kwargs, name):
    with pytest.raises(RthaError, match=name):
        Compressor(**kwargs)
