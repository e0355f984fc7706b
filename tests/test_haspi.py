"""HASPI v2 against pyclarity 0.9.0's reference values, plus its behaviour on real and broken input."""

import json
from pathlib import Path

import numpy as np
import pytest

from rtha.audiogram import Audiogram, Listener
from rtha.errors import RthaError
from rtha.metrics import haspi_v2, haspi_v2_better_ear
from rtha.metrics.ear_model import SignalError
from rtha.metrics.ear_model import _align_lags
from rtha.metrics.legacy_normal import NormalStream, add_standard_normal, skip_standard_normal, standard_normal

DATA = Path(__file__).parent / "data"
TOL = 1e-6
EXPECTED = json.loads((DATA / "expected.json").read_text())
CASES = EXPECTED["haspi_hasqi"]
MILD = Audiogram(EXPECTED["freqs"], EXPECTED["audiograms"]["mild_flat"])


@pytest.fixture(scope="module")
def signals():
    with np.load(DATA / "signals.npz") as f:
        return {k: f[k].astype(np.float64) for k in f.files}


def _case_id(c):
    return f"{c['proc']}-{c['audiogram']}-{c['level_db_spl']:g}dB"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_matches_pyclarity_reference(case, signals):
    score, raw = haspi_v2(
        signals[case["ref"]],
        signals[case["proc"]],
        case["fs"],
        Audiogram(case["freqs"], case["levels"]),
        level_db_spl=case["level_db_spl"],
        rng=np.random.RandomState(case["seed"]),
    )
    assert abs(score - case["haspi"]) <= TOL
    np.testing.assert_allclose(raw, case["haspi_raw"], rtol=0, atol=TOL)


@pytest.fixture(scope="module")
def speech(signals):
    """1.5 s of the reference speech at 16 kHz (keeps the behaviour tests quick)."""
    return signals["ref_16000"][4000:28000]


def _haspi(ref, proc, audiogram=MILD, level=65.0):
    return haspi_v2(ref, proc, 16000, audiogram, level_db_spl=level)[0]


def test_identical_signals_score_near_the_top_and_noise_lowers_it(speech):
    clean = _haspi(speech, speech)
    noise = np.random.RandomState(5).standard_normal(speech.size) * np.sqrt(np.mean(speech**2))
    noisy = _haspi(speech, speech + noise * 10 ** (5 / 20))  # SNR -5 dB
    assert clean > 0.95
    assert noisy < clean - 0.2


def test_delay_and_extra_length_are_aligned(speech):
    delayed = np.concatenate((np.zeros(160), speech, np.zeros(800)))  # 10 ms late, 60 ms longer
    assert _haspi(speech, delayed) == pytest.approx(_haspi(speech, speech), abs=0.01)
    # A shorter processed signal is scored over the common part.
    assert 0.0 <= _haspi(speech, speech[:-1600]) <= 1.0


def test_default_noise_is_seeded_and_leaves_numpy_global_stream_alone(speech):
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    first = haspi_v2(speech, speech, 16000, MILD)
    assert np.array_equal(np.random.get_state()[1], before)
    second = haspi_v2(speech, speech, 16000, MILD)
    assert first[0] == second[0]
    np.testing.assert_array_equal(first[1], second[1])
    assert first[0] == haspi_v2(speech, speech, 16000, MILD, rng=np.random.RandomState(0))[0]


def test_better_ear_is_the_max_over_ears_sharing_one_stream(speech):
    noise = np.random.RandomState(1).standard_normal(speech.size) * 0.05
    ref_lr = np.stack([speech, speech])
    proc_lr = np.stack([speech + noise, speech])
    severe = Audiogram(EXPECTED["freqs"], EXPECTED["audiograms"]["severe_sloping"])
    listener = Listener(MILD, severe)
    rng = np.random.RandomState(7)
    left = haspi_v2(ref_lr[0], proc_lr[0], 16000, MILD, 100.0, rng)[0]
    right = haspi_v2(ref_lr[1], proc_lr[1], 16000, severe, 100.0, rng)[0]
    got = haspi_v2_better_ear(ref_lr, proc_lr, 16000, listener, rng=np.random.RandomState(7))
    assert got == max(left, right)


@pytest.mark.parametrize(
    "ref_shape, proc_shape, match",
    [((2, 1000), (1000,), "1-D"), ((1000,), (1000, 2), "1-D"), ((0,), (1000,), "empty")],
)
def test_wrong_shapes_are_clear_errors(ref_shape, proc_shape, match):
    with pytest.raises(SignalError, match=match):
        haspi_v2(np.ones(ref_shape), np.ones(proc_shape), 16000, MILD)


def test_better_ear_needs_two_channels(speech):
    with pytest.raises(SignalError, match="left and right"):
        haspi_v2_better_ear(speech, speech, 16000, Listener(MILD, MILD))


def test_silent_or_inaudible_reference_is_a_clear_error(speech):
    with pytest.raises(SignalError, match="silent") as err:
        haspi_v2(np.zeros(16000), speech[:16000], 16000, MILD)
    assert isinstance(err.value, RthaError) and isinstance(err.value, ValueError)
    with pytest.raises(SignalError, match="too quiet"):
        haspi_v2(speech * 1e-6, speech, 16000, MILD)
    with pytest.raises(SignalError, match="NaN"):
        haspi_v2(np.full(100, np.nan), speech, 16000, MILD)


@pytest.mark.parametrize("cached", [0, 1])
@pytest.mark.parametrize("shape", [(1,), (5,), (32, 300), (70001,)])
def test_fast_normal_draws_follow_randomstate(cached, shape):
    """Same stream position afterwards; values equal but for numpy's vectorised log (an ulp)."""
    ours, numpys = np.random.RandomState(42), np.random.RandomState(42)
    ours.standard_normal(cached)
    numpys.standard_normal(cached)
    np.testing.assert_allclose(standard_normal(ours, shape), numpys.standard_normal(shape), rtol=1e-14, atol=0)
    x = np.random.RandomState(0).rand(*shape)
    expected = x + 0.25 * numpys.standard_normal(shape)
    add_standard_normal(ours, x, 0.25)
    np.testing.assert_allclose(x, expected, rtol=1e-14, atol=1e-300)
    count = int(np.prod(shape))
    skip_standard_normal(ours, count)
    numpys.standard_normal(count)
    np.testing.assert_array_equal(ours.standard_normal(3), numpys.standard_normal(3))
    assert ours.rand() == numpys.rand()


@pytest.mark.parametrize("n", [7, 1000])
def test_forked_normal_stream_draws_far_ahead_first(n):
    """The ear model's BM noise: processed bands (after all reference bands) drawn before the later reference bands."""
    numpys = np.random.RandomState(9)
    expected = numpys.standard_normal((4, n))
    ours = np.random.RandomState(9)
    ref_stream = NormalStream(ours)
    first = np.zeros((1, n))
    ref_stream.add(first, 1.0)
    proc_stream = ref_stream.copy()
    proc_stream.skip(n)  # the second reference row
    proc = np.zeros((2, n))
    proc_stream.add(proc, 1.0)
    second = np.zeros((1, n))
    ref_stream.add(second, 1.0)
    proc_stream.save()
    np.testing.assert_allclose(np.vstack([first, second, proc]), expected, rtol=1e-14, atol=0)
    assert ours.rand() == numpys.rand()


@pytest.mark.parametrize("n, max_lag", [(50, 2400), (5000, 700), (40000, 2400)])
def test_alignment_search_finds_the_first_correlation_peak(n, max_lag):
    """Blocked float32 screen + exact check = brute-force search over lags 1-max_lag ... max_lag."""
    rs = np.random.RandomState(n)
    ref = np.abs(rs.standard_normal((3, n))).cumsum(axis=1) % 3.0  # envelope-like, many near-peaks
    out = np.roll(ref, 37, axis=1) + 0.1 * rs.standard_normal((3, n))
    lags = min(max_lag, n)
    got = _align_lags(ref, out, max_lag)
    for b in range(3):
        full = np.correlate(ref[b], out[b], "full")  # index k <-> out delayed by n - 1 - k
        assert got[b] == lags - 1 - int(np.argmax(full[n - lags : n + min(lags, n - 1)]))
    # Exact ties at every lag (a short burst against a constant): too many to
    # check one by one, so a float64 correlation decides; any tied lag is right.
    ref, out = np.ones((1, n)), np.zeros((1, n))
    out[0, n // 2 : n // 2 + 10] = 1.0
    assert -lags < _align_lags(ref, out, max_lag)[0] < lags
