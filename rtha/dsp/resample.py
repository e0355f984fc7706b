"""Sample-rate conversion, offline (:func:`resample`) and streaming (:class:`StreamingResampler`).

Both apply ``scipy.signal.resample_poly``'s filter: the rates' ratio reduced to
``up / down``, a Kaiser-window (beta 5) low-pass of ``20 * max(up, down) + 1``
taps with its cut-off at the lower Nyquist rate, zero-phase (the output is not
delayed), the signal taken as zeros outside its ends; ``n`` input samples give
``ceil(n * up / down)`` output samples.
"""

from __future__ import annotations

import math

import numpy as np


def _ratio(fs_in: int, fs_out: int) -> tuple[int, int]:
    """``(up, down)``: ``fs_out / fs_in`` in lowest terms (rates in Hz, integers)."""
    g = math.gcd(fs_in, fs_out)
    return fs_out // g, fs_in // g


def resample(x: np.ndarray, fs_in: int, fs_out: int, axis: int = -1) -> np.ndarray:
    """``x`` resampled from ``fs_in`` to ``fs_out`` Hz along ``axis`` (``scipy.signal.resample_poly``).

    Args:
        x: float signal, any shape; ``axis`` is time, ``n`` samples at ``fs_in``.
        fs_in, fs_out: rates in Hz (integers).
        axis: the time axis.

    Returns:
        ``ceil(n * fs_out / fs_in)`` samples along ``axis``, of ``x``'s float
        dtype (computed in it: float32 in, float32 filter and out); ``x``
        itself when the rates are equal.
    """
    if fs_in == fs_out:
        return x
    from scipy.signal import resample_poly

    up, down = _ratio(fs_in, fs_out)
    return resample_poly(x, up, down, axis=axis)


class StreamingResampler:
    """:func:`resample` over a signal that arrives in chunks.

    Any partition of the input into chunks gives ``resample`` of the whole
    signal (``ceil(n * up / down)`` samples once :meth:`flush` is called),
    computed in float64. The filter looks ahead by ``10 * max(up, down) / up``
    input samples; output is released as soon as the input it needs has arrived.

    Args:
        fs_in: input rate (Hz, integer).
        fs_out: output rate (Hz, integer), not ``fs_in``.
        channels: channel count of the ``(channels, samples)`` chunks.
    """

    def __init__(self, fs_in: int, fs_out: int, channels: int) -> None:
        from scipy.signal import firwin

        self.up, self.down = _ratio(int(fs_in), int(fs_out))
        half = 10 * max(self.up, self.down)
        h = firwin(2 * half + 1, 1.0 / max(self.up, self.down), window=("kaiser", 5.0)) * self.up
        self._taps = -(-len(h) // self.up)  # input samples under the filter per output
        # polyphase[p, t] = h[p + t*up]: output phase p weighs x[i_top - t]
        self._poly = np.zeros((self.up, self._taps))
        for p in range(self.up):
            part = h[p :: self.up]
            self._poly[p, : len(part)] = part
        self._delay = half
        self.channels = channels
        self.reset()

    def reset(self) -> None:
        # history before the first sample is zeros, as in resample_poly
        self._buf = np.zeros((self.channels, self._taps - 1))
        self._base = -(self._taps - 1)  # absolute input index of _buf[:, 0]
        self._n_in = 0
        self._m = 0  # next output index

    def released(self, n_in):
        """How many output samples :meth:`process` has released once ``n_in`` (int or int array) input samples went in."""
        # output m needs input up to index (m*down + delay) // up
        return np.maximum(0, (n_in * self.up - 1 - self._delay) // self.down + 1)

    def process(self, x: np.ndarray) -> np.ndarray:
        """Push ``(channels, n)`` input; returns the ``(channels, m)`` float32 output now complete."""
        self._n_in += x.shape[1]
        self._buf = np.concatenate([self._buf, np.asarray(x, dtype=np.float64)], axis=1)
        return self._emit(self.released(self._n_in))

    def flush(self) -> np.ndarray:
        """The rest of the output (the input is taken as zeros after its end)."""
        total = -(-self._n_in * self.up // self.down)
        pad = (total * self.down + self._delay) // self.up + 1 - (self._base + self._buf.shape[1])
        if pad > 0:
            self._buf = np.concatenate([self._buf, np.zeros((self.channels, pad))], axis=1)
        return self._emit(total)

    def _emit(self, m_end: int) -> np.ndarray:
        m = np.arange(self._m, max(self._m, m_end))
        k = m * self.down + self._delay
        i_top, phase = np.divmod(k, self.up)
        idx = i_top[:, None] - np.arange(self._taps)[None, :] - self._base
        y = np.einsum("mt,cmt->cm", self._poly[phase], self._buf[:, idx]) if m.size else np.zeros((self.channels, 0))
        if m.size:
            self._m = int(m[-1]) + 1
        # keep only the input that later outputs can still reach
        keep_from = (self._m * self.down + self._delay) // self.up - (self._taps - 1)
        drop = max(0, keep_from - self._base)
        if drop:
            self._buf = self._buf[:, drop:]
            self._base += drop
        return y.astype(np.float32)
