import json
from pathlib import Path

import numpy as np
import pytest

from rtha.audiogram import PRESETS, Audiogram, Listener
from rtha.dsp import FirFilter, NalrFilter, default_nfir, minimum_phase, nalr_fir, nalr_gains_db
from rtha.dsp.fir import crossover_block
from rtha.errors import RthaError
from rtha.stage import BlockShapeError

CASES = json.loads((Path(__file__).parent / "data" / "expected.json").read_text())["nalr"]


def _case_id(c):
    return f"{c['audiogram']}-{c['fs']}-{c['nfir']}"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_linear_taps_equal_pyclarity(case):
    taps = nalr_fir(Audiogram(case["freqs"], case["levels"]), case["fs"], case["nfir"])
    assert taps.shape == (case["nfir"] + 1,)
    np.testing.assert_allclose(taps, case["fir"], rtol=0, atol=1e-9)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_minimum_phase_keeps_the_magnitude_and_moves_energy_forward(case):
    lin = np.asarray(case["fir"])
    mp = minimum_phase(lin)
    assert mp.shape == lin.shape
    mag_lin = np.abs(np.fft.rfft(lin, 8192))
    mag_mp = np.abs(np.fft.rfft(mp, 8192))
    np.testing.assert_allclose(20 * np.log10(mag_mp / mag_lin), 0, atol=1e-6)  # dB
    # Minimum phase = the most energy in the first taps of all filters with this magnitude.
    head = len(lin) // 8
    assert np.sum(mp[:head] ** 2) >= 0.99 * np.sum(mp**2)
    assert np.sum(mp[:head] ** 2) > np.sum(lin[:head] ** 2)


def test_prescription_formula():
    # Flat 40 dB HL: X = 0.05 * 120 = 6; gain = 6 + 12.4 + bias.
    flat40 = Audiogram([250, 8000], [40, 40])
    np.testing.assert_allclose(nalr_gains_db(flat40), [1.4, 10.4, 19.4, 17.4, 16.4, 16.4])
    # 500+1k+2k above 180 dB: X = 9 + 0.116 * (210 - 180); low gains clip at 0 dB.
    flat70 = Audiogram([250, 8000], [70, 70])
    np.testing.assert_allclose(nalr_gains_db(flat70), 12.48 + 21.7 + np.array([-17, -8, 1, -1, -2, -2]))
    assert nalr_gains_db(Audiogram([250, 8000], [5, 5]))[0] == 0.0


def test_linear_filter_realises_the_prescribed_gain():
    ag = PRESETS["moderate"].left
    fs, nfir = 44100, 220
    taps = nalr_fir(ag, fs, nfir)
    freqs = np.array([1000.0, 2000.0, 4000.0])
    response_db = 20 * np.log10(np.abs(np.exp(-2j * np.pi * np.outer(freqs / fs, np.arange(nfir + 1))) @ taps))
    np.testing.assert_allclose(response_db, nalr_gains_db(ag)[[2, 3, 4]], atol=1.0)


def test_audiogram_is_read_linear_in_log_frequency_like_pyclarity_0_9():
    # Missing 750 Hz-6 kHz points: read the levels in log-frequency (pyclarity 0.9.0's
    # Audiogram.resample); the result equals giving those levels explicitly.
    sparse = Audiogram([250, 1500, 8000], [20, 50, 80])
    explicit = Audiogram([250, 500, 1000, 2000, 4000, 6000, 8000], sparse.at([250, 500, 1000, 2000, 4000, 6000, 8000]))
    np.testing.assert_array_equal(nalr_fir(sparse, 16000, 64), nalr_fir(explicit, 16000, 64))
    assert sparse.at([500])[0] == pytest.approx(20 + 30 * np.log(2) / np.log(6))


def test_no_loss_is_a_pure_delay():
    taps = nalr_fir(PRESETS["normal"].left, 16000, 64)
    assert taps[32] == 1.0 and np.count_nonzero(taps) == 1


def test_low_sample_rate_uses_the_points_below_nyquist():
    taps = nalr_fir(PRESETS["severe"].left, 8000, 40)
    assert taps.shape == (41,) and np.all(np.isfinite(taps))
    np.testing.assert_allclose(taps, taps[::-1], atol=1e-15)  # still linear phase


def test_default_order_is_5_ms_each_side():
    assert default_nfir(44100) == 220 and default_nfir(16000) == 80


@pytest.mark.parametrize("fs", [16000, 44100])
def test_stage_latency(fs):
    lin = NalrFilter(PRESETS["mild"], fs, phase="linear")
    assert lin.latency == default_nfir(fs) // 2 and lin.n_taps == default_nfir(fs) + 1
    assert NalrFilter(PRESETS["mild"], fs).latency == 0


@pytest.mark.parametrize("phase", ["minimum", "linear"])
@pytest.mark.parametrize("method", ["direct", "fft", "auto"])
def test_stage_equals_convolution_per_ear(phase, method):
    listener = Listener(PRESETS["mild"].left, PRESETS["severe"].left, "mixed")
    f = NalrFilter(listener, 44100, phase=phase, method=method)
    rng = np.random.default_rng(3)
    x = (0.1 * rng.standard_normal((2, 3000))).astype(np.float32)
    expected = [np.convolve(x[c].astype(np.float64), f.taps[c])[:3000] for c in range(2)]
    np.testing.assert_allclose(f.process(x), expected, atol=1e-6)
    # Mono input fans out: both ears filter the same signal with their own taps.
    y = f.process(x[:1])
    assert y.shape == (2, 3000)
    np.testing.assert_allclose(y[1], np.convolve(x[0].astype(np.float64), f.taps[1])[:3000], atol=1e-6)
    if phase == "linear":
        np.testing.assert_array_equal(f.taps[1], nalr_fir(PRESETS["severe"].left, 44100, 220))


def test_auto_switches_method_between_blocks_without_a_seam():
    taps = np.random.default_rng(0).standard_normal(221) * 0.1
    edge = int(np.ceil(crossover_block(221)))
    f = FirFilter(taps, method="auto")
    x = np.random.default_rng(1).standard_normal((1, 3 * edge + 20)).astype(np.float32)
    cuts = [0, 7, 7 + edge, 7 + edge + 13, 3 * edge + 20]  # direct, FFT, direct, FFT
    y = np.concatenate([f.process_block(x[:, a:b]) for a, b in zip(cuts, cuts[1:])], axis=1)
    np.testing.assert_allclose(y[0], np.convolve(x[0].astype(np.float64), taps)[: x.shape[1]], atol=1e-6)


def test_long_offline_block_is_cut_into_segments_and_chunks():
    # Longer than one FFT segment (16384) and one overlap-save pass (2**18 samples).
    taps = np.random.default_rng(0).standard_normal((2, 221)) * 0.1
    x = np.random.default_rng(1).standard_normal((1, (1 << 18) + 5000)).astype(np.float32)
    y = FirFilter(taps, method="fft").process(x)
    np.testing.assert_allclose(y[1], np.convolve(x[0].astype(np.float64), taps[1])[: x.shape[1]], atol=1e-6)


def test_wrong_channel_count_is_a_clear_error_and_recoverable():
    f = NalrFilter(PRESETS["mild"], 16000)
    with pytest.raises(BlockShapeError, match=r"3 channels; expected 1 \(fanned out\) or 2"):
        f.process_block(np.zeros((3, 8), np.float32))
    assert f.process_block(np.zeros((2, 8), np.float32)).shape == (2, 8)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(fs=0), "sample rate"),
        (dict(fs=float("nan")), "sample rate"),
        (dict(fs=16000, nfir=0), "nfir"),
        (dict(fs=16000, nfir=10.5), "nfir"),
        (dict(fs=16000, phase="zero"), "phase"),
        (dict(fs=16000, method="slow"), "method"),
    ],
)
def test_bad_parameters_raise_user_errors(kwargs, match):
    with pytest.raises(RthaError, match=match):
        NalrFilter(PRESETS["mild"], **kwargs)
