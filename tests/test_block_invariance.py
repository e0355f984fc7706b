"""Every stage and the whole chain give the offline result for any block partition."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtha.audiogram import PRESETS, Listener
from rtha.dsp import Compressor, FirFilter, NalrFilter
from rtha.hearing_aid import hearing_aid_chain
from rtha.stage import SoftClip

N = 3000  # > the 44.1 kHz RMS window (2822) and > the FFT crossover for 221 taps
LISTENER = Listener(PRESETS["moderate"].left, PRESETS["severe"].right, "mixed")
# Block sizes: single samples, primes, filter-sized and longer than any filter.
SIZES = st.one_of(
    st.sampled_from([1, 1, 2, 3, 5, 7, 13, 31, 61, 127, 221, 257, 509, 1021, 1499]),
    st.integers(1, 2000),
)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _signal(seed: int, channels: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Speech-like bursts crossing the compressor threshold now and then.
    env = np.repeat(rng.uniform(0.02, 0.6, size=(channels, N // 100 + 1)), 100, axis=1)[:, :N]
    return (env * rng.standard_normal((channels, N))).astype(np.float32)


def _streamed(stage, x, sizes):
    stage.reset()
    out, start = [], 0
    for size in sizes:
        if start >= x.shape[1]:
            break
        out.append(stage.process_block(x[:, start : start + size]))
        start += size
    if start < x.shape[1]:
        out.append(stage.process_block(x[:, start:]))
    return np.concatenate(out, axis=1)


def _check(stage, x, sizes):
    offline = stage.process(x)
    np.testing.assert_allclose(_streamed(stage, x, sizes), offline, rtol=0, atol=1e-6)


STAGES = {
    f"nalr-{phase}-{method}-{fs}": (lambda p=phase, m=method, f=fs: NalrFilter(LISTENER, f, phase=p, method=m))
    for phase in ("minimum", "linear")
    for method in ("auto", "direct", "fft")
    for fs in (16000, 44100)
}
STAGES.update(
    {
        "compressor-16000": lambda: Compressor(16000),
        "compressor-44100": lambda: Compressor(44100),
        "softclip": SoftClip,
        "chain-minimum-44100": lambda: hearing_aid_chain(LISTENER, 44100),
        "chain-linear-16000": lambda: hearing_aid_chain(LISTENER, 16000, nalr_phase="linear"),
    }
)


@pytest.fixture(scope="module", params=sorted(STAGES))
def stage(request):
    return STAGES[request.param]()


@SETTINGS
@given(sizes=st.lists(SIZES, min_size=1, max_size=40), seed=st.integers(0, 2**16), mono=st.booleans())
def test_stage_is_block_partition_invariant(stage, sizes, seed, mono):
    _check(stage, _signal(seed, 1 if mono else 2), sizes)  # mono: NAL-R fans out to both ears


@SETTINGS
@given(
    sizes=st.lists(SIZES, min_size=1, max_size=40),
    seed=st.integers(0, 2**16),
    n_taps=st.sampled_from([1, 2, 17, 81, 221, 400]),
    method=st.sampled_from(["auto", "direct", "fft"]),
)
def test_fir_stream_equals_numpy_convolve(sizes, seed, n_taps, method):
    rng = np.random.default_rng(seed)
    taps = rng.standard_normal((2, n_taps)) / np.sqrt(n_taps)
    x = _signal(seed, 2)
    y = _streamed(FirFilter(taps, method=method), x, sizes)
    expected = [np.convolve(x[c].astype(np.float64), taps[c])[:N] for c in range(2)]
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-6)
