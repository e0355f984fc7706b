"""Latency numbers: declared and measured delay (per-block compute time: :mod:`rtha.timing`).

* :func:`algorithmic_latency` lists each stage's declared delay.
* :func:`measure_latency` finds the delay a chain really applies, by running a
  probe signal through it and locating the peak of the phase-transform weighted
  cross-correlation (GCC-PHAT) of input and output.  The phase transform
  whitens both signals, so the peak sits at the pure delay whatever the
  equaliser, compressor or enhancer do to the spectrum.
"""

from __future__ import annotations

import numpy as np


def algorithmic_latency(chain, fs: float) -> dict:
    """Declared delay of a chain: total and per stage, in samples and ms."""
    stages = getattr(chain, "latencies", None) or [(chain.name, int(chain.latency))]
    return {
        "algorithmic_latency_samples": int(chain.latency),
        "algorithmic_latency_ms": 1e3 * chain.latency / fs,
        "stage_latencies": [{"stage": name, "samples": int(n), "ms": 1e3 * n / fs} for name, n in stages],
    }


def delay_by_gcc_phat(x: np.ndarray, y: np.ndarray, max_lag: int) -> tuple[int, float]:
    """Delay of ``y`` behind ``x`` (both 1-D), searched over ``-max_lag..max_lag`` samples.

    Returns ``(lag, peak)``: the lag in samples (positive: ``y`` is late) and the
    height of the normalised GCC-PHAT peak (1 for a pure delay, near 0 when the
    two signals are unrelated).  Lags beyond the signals' lengths are not
    searched (nothing overlaps there).
    """
    n = x.size + y.size
    nfft = 1 << int(np.ceil(np.log2(n)))
    max_lag = min(max_lag, nfft // 2 - 1)
    cross = np.fft.rfft(y, nfft) * np.conj(np.fft.rfft(x, nfft))
    mag = np.abs(cross)
    # regularised phase transform: bins with no energy in either signal stay ~0
    cross /= mag + 1e-6 * (mag.max() or 1.0)
    cc = np.fft.irfft(cross, nfft)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    vals = np.concatenate([cc[: max_lag + 1], cc[nfft - max_lag :]])
    i = int(np.argmax(vals))
    return int(lags[i]), float(vals[i])


def measure_latency(chain, probe: np.ndarray, fs: float, max_lag_s: float = 0.1, block: int | None = None) -> dict:
    """Measure a chain's delay by cross-correlating a probe with its output.

    The chain is reset, runs ``probe`` ``(channels, samples)`` as one stream, and
    is reset again (so measuring never disturbs a later run). With ``block``
    (the block size the chain was built for; an enhancer tuned to it needs its
    input to stay aligned) the probe runs zero-padded to a whole number of
    blocks, so it may have any length; the chain is causal, so the padding
    never reaches the output that is correlated. The delay of each
    output channel behind the input (channels averaged) is found with
    :func:`delay_by_gcc_phat`; the reported value is that of the channel with
    the clearest (highest) peak.

    Returns:
        ``{"measured_latency_samples", "measured_latency_ms",
        "measured_latency_per_channel", "measured_latency_peak"}``; the values are
        None when the probe is silent.
    """
    probe = np.asarray(probe, dtype=np.float32)
    x = probe.mean(axis=0).astype(np.float64)
    if not np.any(x):
        return {
            "measured_latency_samples": None,
            "measured_latency_ms": None,
            "measured_latency_per_channel": [],
            "measured_latency_peak": None,
        }
    n = probe.shape[1]
    padded = np.pad(probe, ((0, 0), (0, -n % block))) if block else probe
    chain.reset()
    try:
        y = chain.process_block(padded)[:, :n]
    finally:
        chain.reset()
    max_lag = max(1, int(max_lag_s * fs))
    found = [delay_by_gcc_phat(x, ch.astype(np.float64), max_lag) for ch in y]
    lag = max(found, key=lambda f: f[1])[0]
    return {
        "measured_latency_samples": lag,
        "measured_latency_ms": 1e3 * lag / fs,
        "measured_latency_per_channel": [lag for lag, _ in found],
        "measured_latency_peak": float(min(peak for _, peak in found)),
    }


def warm_up(chain, channels: int, block: int, blocks: int = 4) -> None:
    """Run a few silent blocks, then reset the chain.

    One-time costs (numba compilation, torch's first call, buffer allocation)
    would otherwise land in the first timed blocks (replay) or the first audio
    callbacks (live, where they cause an xrun).
    """
    silence = np.zeros((channels, block), np.float32)
    for _ in range(blocks):
        chain.process_block(silence)
    chain.reset()
