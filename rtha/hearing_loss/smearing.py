"""Spectral smearing (Baer & Moore 1993), streamed as a hop-by-hop overlap-add.

Every ``HOP`` = 64 samples, the last ``FRAME`` = 256 input samples are
windowed (Hann, over sqrt(1.5)), zero-padded to 512 and transformed. The power
of bins 0..255 is multiplied by the smearing matrix, which widens each
auditory filter by ``(lower, upper)`` (:func:`smearing_matrix`); bin ``k``
becomes ``sqrt(smeared power) * phase of bin k`` (a negative smeared power,
which the matrix allows, gives ``j sqrt(|power|)``, as pyclarity's complex
square root does), bin 256 is zeroed, and the inverse transform is windowed
again and overlap-added, four frames per sample.

Output sample ``m`` of hop ``k = m // 64`` is made of input near ``m - 192``
(a delay of 192 samples that pyclarity's output has too) but uses input up to
``64 k + 63``: streamed, a hop is computed when its last sample arrives, so
the stage delays by ``LATENCY`` = 192 + 63 samples.

pyclarity 0.9.0's ``smear3`` does not advance its input pointer past the first
frame, so its first four frames repeat samples 64..255; from the fifth frame
on it equals this stream. The difference is confined to the first 256 output
samples (below -100 dB on the reference cases).
"""

from __future__ import annotations

import numpy as np
import scipy.fft

FRAME = 256
HOP = 64
NFFT = 512
LATENCY = FRAME - HOP + HOP - 1  # 192 samples of delay + 63 of waiting for a hop to complete
_BINS = NFFT // 2
_WINDOW = (0.5 - 0.5 * np.cos(2 * np.pi * (np.arange(1, FRAME + 1) - 0.5) / FRAME)) / np.sqrt(1.5)


def auditory_filters(lower: float, upper: float, fs: float, size: int) -> np.ndarray:
    """Rounded-exponential auditory filters broadened ``lower`` / ``upper`` times, on a linear grid.

    Row ``i`` is the filter centred on ``i * fs / (2 size)`` Hz, sampled at
    the ``size`` grid frequencies and divided by its ERB (removing the
    excitation pattern's spectral tilt). Returns ``(size, size)`` float64.
    """
    i = np.arange(1, size)[:, None]
    j = np.arange(size)[None, :]
    f_hz = i * fs / (2 * size)
    erb = 24.7 * (f_hz * 0.00437 + 1.0)
    broadening = np.where(j < i, lower, upper)
    g = np.abs((i - j) / i) * (4.0 * f_hz / (erb * broadening))
    filters = np.zeros((size, size))
    filters[0, 0] = 1.0 / ((lower + upper) / 2)
    filters[1:] = (1 + g) * np.exp(-g) / (erb * (lower + upper) / (2 * 24.7))
    return filters


def smearing_matrix(lower: float, upper: float, fs: float) -> np.ndarray:
    """The ``(256, 256)`` matrix taking a frame's power spectrum to its smeared power.

    Least-squares solution of ``normal @ S = wide``: the wide filters "divided"
    by the normal ones (pyclarity's ``make_smear_mat3``). The normal filters are
    extended by 64 columns that mirror them about bin 256, which makes the
    division better conditioned near Nyquist.
    """
    size, half = _BINS, _BINS // 2
    normal = auditory_filters(1.0, 1.0, fs, size)
    wide = auditory_filters(lower, upper, fs, size)
    extended = np.concatenate((normal, np.zeros((size, half))), axis=1)
    for i in range(half, size):
        extended[i, size : min(2 * i - 1, 3 * half)] = normal[i, 2 * i - size : max(1, 2 * i - 3 * half) : -1]
    return np.linalg.lstsq(extended, wide, rcond=-1)[0][:size]


class Smearer:
    """Streaming spectral smearing of each ear (``None``: that ear is only delayed).

    ``process(x)`` takes ``(ears, n)`` float64 and returns ``(ears, n)`` float64,
    delayed by :data:`LATENCY` samples (see the module docstring).
    """

    latency = LATENCY

    def __init__(self, matrices: list[np.ndarray | None]) -> None:
        self.matrices = matrices
        self.reset()

    def reset(self) -> None:
        ears = len(self.matrices)
        self._pending = np.zeros((ears, FRAME - HOP))  # the frame's older samples + an incomplete hop
        self._tail = np.zeros((ears, FRAME - HOP))  # overlap-add carry of earlier frames
        self._ready = np.zeros((ears, HOP - 1))  # output waiting for its turn

    def process(self, x: np.ndarray) -> np.ndarray:
        buf = np.concatenate((self._pending, x), axis=1)
        hops = (buf.shape[1] - (FRAME - HOP)) // HOP
        self._pending = buf[:, hops * HOP :]
        new = np.empty((x.shape[0], hops * HOP))
        if hops:
            frames = np.lib.stride_tricks.sliding_window_view(buf[:, : hops * HOP + FRAME - HOP], FRAME, axis=1)[:, ::HOP]
            for e, matrix in enumerate(self.matrices):
                if matrix is None:  # no smearing: the frame's first hop, i.e. the input 192 samples back
                    new[e] = frames[e, :, :HOP].ravel()
                else:
                    new[e] = self._overlap_add(e, self._smear(frames[e], matrix))
        out = np.concatenate((self._ready, new), axis=1)
        self._ready = out[:, x.shape[1] :]
        return out[:, : x.shape[1]]

    @staticmethod
    def _smear(frames: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """Smear ``(hops, 256)`` frames; returns their windowed outputs, same shape."""
        spec = scipy.fft.rfft(frames * _WINDOW, NFFT, axis=1)[:, :_BINS]
        mag = np.abs(spec)
        phasor = spec / (mag + (mag == 0))
        power = (mag * mag) @ matrix.T
        phasor[power < 0] *= 1j  # sqrt of a negative power (complex in pyclarity)
        out = np.zeros((frames.shape[0], _BINS + 1), np.complex128)
        out[:, :_BINS] = np.sqrt(np.abs(power)) * phasor
        return scipy.fft.irfft(out, NFFT, axis=1)[:, :FRAME] * _WINDOW

    def _overlap_add(self, ear: int, frames: np.ndarray) -> np.ndarray:
        hops = frames.shape[0]
        acc = np.zeros((hops + FRAME // HOP - 1) * HOP)
        acc[: FRAME - HOP] = self._tail[ear]
        for k in range(FRAME // HOP):  # frame j's k-th quarter lands on hop j + k
            acc[k * HOP : (k + hops) * HOP] += frames[:, k * HOP : (k + 1) * HOP].ravel()
        self._tail[ear] = acc[hops * HOP :]
        return acc[: hops * HOP]
