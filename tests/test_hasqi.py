"""HASQI v2: feature functions against pyclarity 0.9.0, full metric against the reference cases."""

import json
from pathlib import Path

import numpy as np
import pytest

from rtha.audiogram import PRESETS, Audiogram
from rtha.metrics import hasqi
from rtha.metrics.ear_model import SignalError

DATA = Path(__file__).parent / "data"
TOL = 1e-6


@pytest.fixture(scope="module")
def features():
    """pyclarity's ear-model outputs for 0.2 s of speech and its feature values (tools/make_hasqi_fixture.py)."""
    with np.load(DATA / "hasqi_features.npz") as f:
        return {k: (f[k].astype(np.float64) if f[k].dtype == np.float32 else f[k]) for k in f.files}


def test_smooth_envelopes_matches_reference(features):
    fs = float(features["fs"])
    for side in ("ref", "proc"):
        got = hasqi.smooth_envelopes(features[f"{side}_db"], hasqi.SEGMENT_MS, fs)
        np.testing.assert_allclose(got, features[f"{side}_smooth"], rtol=0, atol=1e-10)


def test_cepstrum_correlation_matches_reference_and_advances_rng_alike(features):
    rng = np.random.RandomState(1)
    average, each = hasqi.cepstrum_correlation(features["ref_smooth"], features["proc_smooth"], rng)
    assert average == pytest.approx(float(features["cep_average"]), abs=1e-12)
    np.testing.assert_allclose(each, features["cep_each"], rtol=0, atol=1e-12)
    # The reference draws (and discards, at noise 0) two envelope-shaped arrays.
    np.testing.assert_array_equal(rng.rand(4), features["rng_after_cepstrum"])


def test_cepstrum_correlation_of_silence_is_zero():
    quiet = np.full((32, 50), -30.0)
    assert hasqi.cepstrum_correlation(quiet, quiet, np.random.RandomState(0))[0] == 0.0


def test_spectrum_differences_match_reference(features):
    loud, slope = hasqi.spectrum_differences(features["ref_sl"], features["proc_sl"])
    assert loud == pytest.approx(float(features["loudness_std"]), abs=1e-12)
    assert slope == pytest.approx(float(features["slope_std"]), abs=1e-12)
    louder = features["ref_sl"] + 7.0  # same shape, 7 dB louder
    assert hasqi.spectrum_differences(features["ref_sl"], louder) == pytest.approx((0.0, 0.0), abs=1e-12)


def test_bm_covariance_and_sync_match_reference(features):
    cov, ref_ms = hasqi.bm_covariance(features["ref_bm"], features["proc_bm"], float(features["fs"]))
    np.testing.assert_allclose(cov, features["cov"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ref_ms, features["ref_ms"], rtol=1e-12, atol=0)
    sync = hasqi.ihc_sync_covariance(cov, ref_ms, features["center_freqs"])
    assert sync == pytest.approx(float(features["sync5"]), abs=1e-12)


def test_bm_covariance_of_a_signal_with_itself_is_one(features):
    bm = features["ref_bm"]
    cov, ref_ms = hasqi.bm_covariance(bm, bm, float(features["fs"]))
    audible = ref_ms > 1e-20  # the model's group-delay compensation leaves leading zeros
    assert audible.mean() > 0.9
    np.testing.assert_allclose(cov[audible], 1.0, atol=1e-12)
    delayed, _ = hasqi.bm_covariance(bm[:, 10:], bm[:, :-10], float(features["fs"]))
    assert delayed[:, 1:-1].mean() > 0.9  # a lag within +-1 ms is found


# --- the full metric ---------------------------------------------------------

with open(DATA / "expected.json") as _f:
    CASES = json.load(_f)["haspi_hasqi"]


@pytest.fixture(scope="module")
def signals():
    with np.load(DATA / "signals.npz") as f:
        return {k: f[k].astype(np.float64) for k in f.files}


@pytest.mark.parametrize(
    "case", CASES, ids=[f"{c['proc']}-{c['audiogram']}-{c['level_db_spl']:g}dB" for c in CASES]
)
def test_hasqi_v2_matches_pyclarity(case, signals):
    combined, nonlinear, linear, raw = hasqi.hasqi_v2(
        signals[case["ref"]],
        signals[case["proc"]],
        case["fs"],
        Audiogram(case["freqs"], case["levels"]),
        level_db_spl=case["level_db_spl"],
        rng=np.random.RandomState(case["seed"]),
    )
    expected = [case["hasqi"], case["hasqi_nonlin"], case["hasqi_linear"], *case["hasqi_raw"]]
    np.testing.assert_allclose([combined, nonlinear, linear, *raw], expected, rtol=0, atol=TOL)


def test_hasqi_v2_with_equalised_reference_matches_pyclarity(signals, features):
    """Mode 2: the reference already carries NAL-R, so the model adds none (tools/make_hasqi_fixture.py)."""
    moderate_sloping = Audiogram([250, 500, 1000, 2000, 3000, 4000, 6000, 8000], [40, 30, 20, 50, 60, 65, 80, 75])
    combined, nonlinear, linear, raw = hasqi.hasqi_v2(
        signals["ref_16000"], signals["proc_16000_white_snr5"], 16000, moderate_sloping,
        equalisation=2, level_db_spl=65, rng=np.random.RandomState(0),
    )
    np.testing.assert_allclose([combined, nonlinear, linear, *raw], features["eq2_expected"], rtol=0, atol=TOL)


@pytest.fixture(scope="module")
def speech(signals):
    """1.5 s of the 16 kHz reference speech."""
    return signals["ref_16000"][:24000], 16000


NORMAL = PRESETS["normal"].left


def test_identical_signals_score_near_the_top(speech):
    ref, fs = speech
    combined, nonlinear, linear, raw = hasqi.hasqi_v2(ref, ref, fs, NORMAL)
    assert combined > 0.99 and nonlinear > 0.99 and linear > 0.99
    assert min(raw) > 0.99


def test_noise_lowers_the_score(speech):
    ref, fs = speech
    noise = np.random.RandomState(1).standard_normal(ref.size) * np.std(ref)
    clean = hasqi.hasqi_v2(ref, ref, fs, NORMAL)[0]
    snr10 = hasqi.hasqi_v2(ref, ref + noise * 10 ** (-10 / 20), fs, NORMAL)[0]
    snr0 = hasqi.hasqi_v2(ref, ref + noise, fs, NORMAL)[0]
    assert clean > snr10 > snr0


def test_delayed_and_longer_processed_signal_is_aligned(speech):
    ref, fs = speech
    delayed = np.concatenate([np.zeros(int(0.01 * fs)), ref, np.zeros(2000)])
    assert hasqi.hasqi_v2(ref, delayed, fs, NORMAL)[0] > 0.99


def test_default_rng_is_deterministic_and_explicit_rng_advances(speech):
    ref, fs = speech
    proc = 0.5 * ref + 0.01 * np.random.RandomState(2).standard_normal(ref.size)
    first = hasqi.hasqi_v2(ref, proc, fs, NORMAL)
    assert hasqi.hasqi_v2(ref, proc, fs, NORMAL) == first
    rng = np.random.RandomState(0)
    assert hasqi.hasqi_v2(ref, proc, fs, NORMAL, rng=rng) == first
    assert hasqi.hasqi_v2(ref, proc, fs, NORMAL, rng=rng) != first  # other noise


def test_bad_inputs_raise_clear_errors(speech):
    ref, fs = speech
    with pytest.raises(SignalError, match="silent"):
        hasqi.hasqi_v2(np.zeros_like(ref), ref, fs, NORMAL)
    with pytest.raises(SignalError, match="at least 16 ms"):
        hasqi.hasqi_v2(ref[8000:8200], ref[8000:8200], fs, NORMAL)
    with pytest.raises(SignalError, match="1-D"):
        hasqi.hasqi_v2(np.stack([ref, ref]), ref, fs, NORMAL)
    with pytest.raises(ValueError, match="equalisation"):
        hasqi.hasqi_v2(ref, ref, fs, NORMAL, equalisation=3)
