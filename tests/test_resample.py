"""rtha.dsp.resample: the offline function is scipy's resample_poly at the reduced ratio,
and the streaming resampler gives the same output for any chunking."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import resample_poly

from rtha.dsp.resample import StreamingResampler, resample


@pytest.mark.parametrize("fs_in,fs_out", [(44100, 16000), (8000, 16000), (48000, 16000), (16000, 24000)])
def test_streaming_resampler_equals_resample_poly_for_any_chunking(fs_in, fs_out):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5003))
    rs = StreamingResampler(fs_in, fs_out, 2)
    parts, i = [], 0
    while i < x.shape[1]:
        n = int(rng.integers(1, 900))
        parts.append(rs.process(x[:, i : i + n]))
        i += n
    parts.append(rs.flush())
    y = np.concatenate(parts, axis=1)
    ref = resample_poly(x, rs.up, rs.down, axis=-1)
    assert y.shape == ref.shape
    assert np.max(np.abs(y - ref)) < 1e-5
    # the same filter as the offline function (float32 output: within float32 rounding)
    np.testing.assert_allclose(y, resample(x, fs_in, fs_out), rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fs_in,fs_out", [(16000, 44100), (44100, 16000), (22050, 24000)])
def test_offline_resample_is_resample_poly_at_the_reduced_ratio_in_the_input_dtype(fs_in, fs_out, dtype):
    x = np.random.default_rng(2).standard_normal((2, 3001)).astype(dtype)
    y = resample(x, fs_in, fs_out)
    g = np.gcd(fs_in, fs_out)
    assert y.dtype == dtype
    assert y.shape == (2, -(-3001 * fs_out // fs_in))
    assert np.array_equal(y, resample_poly(x, fs_out // g, fs_in // g, axis=-1))
    assert np.array_equal(resample(x[0], fs_in, fs_out), y[0])  # 1-D along its only axis
    assert np.array_equal(resample(x.T, fs_in, fs_out, axis=0), y.T)


def test_offline_resample_at_the_same_rate_is_the_input_itself():
    x = np.zeros((2, 10), dtype=np.float32)
    assert resample(x, 16000, 16000) is x
