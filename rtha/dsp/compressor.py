"""The attack/release compressor of the Clarity baseline, as a streaming stage.

Per channel and per sample ``n`` (pyclarity 0.9.0 ``clarity.enhancer.compressor``):

    rms[n]  = sqrt(mean(x[n-W+1 .. n] ** 2) + 1e-8)      (zeros before the start)
    gain[n] = gain[n-1] * (1 - attack) + target * attack  if rms[n] > threshold,
              target = attenuation * rms[n] + (1 - attenuation) * threshold
    gain[n] = release + gain[n-1] * (1 - release)         otherwise (back toward 1)
    y[n]    = x[n] * gain[n] * makeup_gain

with ``gain[-1] = 1``, ``W = int(rms_window_s * fs)`` and the per-sample rates
``attack = 1000 / (attack_ms * fs)``, ``release = 1000 / (release_ms * fs)``.

The window sum is a running sum over a ring buffer of squares in float64,
recomputed exactly each time the ring wraps, so rounding cannot drift however
long the stream runs. Latency 0 (no look-ahead).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..stage import Stage
from .errors import DspParameterError

_EPS = 1e-8  # added to the mean square, as in pyclarity


@njit(cache=True)
def _window_sum(row, acc):
    """Exact sum of ``row`` with eight partial sums in ``acc`` (8,) (an eighth of a serial add chain)."""
    acc[:] = 0.0
    width = row.shape[0]
    whole = width - width % 8
    for k in range(0, whole, 8):
        for j in range(8):
            acc[j] += row[k + j]
    s = 0.0
    for k in range(whole, width):
        s += row[k]
    for j in range(8):
        s += acc[j]
    return s


# "contract" lets LLVM fuse the gain update into one FMA: the gain recurrence is
# the serial chain that bounds the speed. The reciprocal multiply avoids a
# division per sample; both change results by at most an ulp or so.
@njit(cache=True, fastmath={"contract"})
def _compress(x, y, gains, ring, sums, gain, pos, acc, threshold, attenuation, attack, release, makeup):
    """Run the recurrence over one block, updating the state arrays in place.

    x: (C, n) input; y: (C, n) output; gains: (C, n) float64 output;
    ring: (C, W) float64 squares; sums: (C,) window sums; gain: (C,) current
    gains; pos: (1,) int64 ring write position (shared by the channels);
    acc: (8,) float64 scratch of the window sum.
    """
    n_ch, n = x.shape
    width = ring.shape[1]
    inv_width = 1.0 / width
    hold = (1.0 - attenuation) * threshold
    keep_attack = 1.0 - attack
    keep_release = 1.0 - release
    unity = makeup == 1.0  # loop-invariant: LLVM unswitches it, sparing a multiply per sample
    for c in range(n_ch):
        p = pos[0]
        s = sums[c]
        g = gain[c]
        i = 0
        while i < n:
            # Up to the ring's wrap, on slices indexed from 0: numba then knows
            # no index is negative and drops its wraparound arithmetic.
            m = min(n - i, width - p)
            xs = x[c, i : i + m]
            ys = y[c, i : i + m]
            gs = gains[c, i : i + m]
            rs = ring[c, p : p + m]
            for j in range(m):
                v = np.float64(xs[j])
                sq = v * v
                s += sq - rs[j]
                rs[j] = sq
                rms = np.sqrt(max(s, 0.0) * inv_width + _EPS)
                if rms > threshold:
                    g = g * keep_attack + (rms * attenuation + hold) * attack
                else:
                    g = release + g * keep_release
                gs[j] = g
                ys[j] = v * g if unity else v * g * makeup
            i += m
            p += m
            if p == width:
                p = 0
                s = _window_sum(ring[c], acc)  # exact recompute once per window: no drift
        sums[c] = s
        gain[c] = g
    pos[0] = (pos[0] + n) % width


def _per_sample_rate(t_ms: float, fs: float) -> float:
    # Same float operations as pyclarity's set_attack/set_release.
    return (1.0 / (t_ms / 1000.0)) / fs


class Compressor(Stage):
    """Attack/release compressor (Clarity baseline; defaults = ICASSP 2023 settings).

    Args:
        fs: sample rate in Hz.
        threshold: RMS (linear, full scale 1) above which the gain is reduced.
        attenuation: 0...1; the gain heads for ``attenuation * rms + (1 - attenuation) * threshold``.
        attack_ms, release_ms: time constants in ms.
        rms_window_s: length of the causal RMS window in seconds.
        makeup_gain: linear gain applied after compression.

    Any channel count; channels are compressed independently. ``gains`` holds
    the gain of every sample of the last block, float64 ``(channels, samples)``;
    its buffer is reused while the block shape stays the same (no allocation per
    block in a stream), so copy it to keep it.
    """

    latency = 0

    def __init__(
        self,
        fs: float,
        threshold: float = 0.35,
        attenuation: float = 0.1,
        attack_ms: float = 50.0,
        release_ms: float = 1000.0,
        rms_window_s: float = 0.064,
        makeup_gain: float = 1.0,
    ) -> None:
        checks = {
            "fs": (fs, fs > 0, "a positive sample rate in Hz"),
            "threshold": (threshold, threshold > 0, "a positive RMS level"),
            "attenuation": (attenuation, 0 <= attenuation <= 1, "a value in 0...1"),
            "attack_ms": (attack_ms, attack_ms > 0, "a positive time in ms"),
            "release_ms": (release_ms, release_ms > 0, "a positive time in ms"),
            "rms_window_s": (rms_window_s, rms_window_s * fs >= 1, "at least one sample long"),
            "makeup_gain": (makeup_gain, makeup_gain >= 0, "a non-negative linear gain"),
        }
        for name, (value, ok, expected) in checks.items():
            if not (np.isfinite(value) and ok):
                raise DspParameterError(f"compressor {name}={value!r} is invalid; expected {expected}")
        self.fs = fs
        self.threshold = float(threshold)
        self.attenuation = float(attenuation)
        self.attack_ms = float(attack_ms)
        self.release_ms = float(release_ms)
        self.rms_window_s = float(rms_window_s)
        self.makeup_gain = float(makeup_gain)
        self.window = int(rms_window_s * fs)  # samples, truncated as in pyclarity
        self.attack = _per_sample_rate(attack_ms, fs)
        self.release = _per_sample_rate(release_ms, fs)
        self.gains = np.ones((0, 0))
        self._gains_buffer = self.gains
        super().__init__()

    def _start(self, channels: int) -> None:
        self._ring = np.zeros((channels, self.window))
        self._sums = np.zeros(channels)
        self._gain = np.ones(channels)
        self._pos = np.zeros(1, np.int64)
        self._acc = np.zeros(8)
        self.gains = np.ones((0, 0))

    def _step(self, x: np.ndarray, out: np.ndarray) -> None:
        if self._gains_buffer.shape != x.shape:
            self._gains_buffer = np.empty(x.shape)
        self.gains = self._gains_buffer
        _compress(
            x, out, self.gains, self._ring, self._sums, self._gain, self._pos, self._acc,
            self.threshold, self.attenuation, self.attack, self.release, self.makeup_gain,
        )
