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
from numba import njit

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


@njit(cache=True, error_model="numpy")
def _smear_spectra(spec, matrix_t):
    """Replace each frame's bins 0..255 by the smeared magnitude with the bin's phase, in place.

    spec: (frames, 257) complex128 spectra; matrix_t: (256, 256) the smearing
    matrix transposed, C-contiguous (one BLAS product for all frames).
    """
    n_frames = spec.shape[0]
    power = np.empty((n_frames, _BINS))
    for j in range(n_frames):
        for b in range(_BINS):
            power[j, b] = spec[j, b].real ** 2 + spec[j, b].imag ** 2
    smeared = np.dot(power, matrix_t)
    for j in range(n_frames):
        for b in range(_BINS):
            mag = np.sqrt(power[j, b])
            amp = np.sqrt(abs(smeared[j, b]))
            v = spec[j, b] * (amp / mag) if mag > 0.0 else complex(amp, 0.0)
            spec[j, b] = v if smeared[j, b] >= 0.0 else v * 1j  # sqrt of a negative power: j sqrt(|power|)
        spec[j, _BINS] = 0.0


@njit(cache=True)
def _windowed_frames(buf, ears, hops, out):
    """out[k * hops + j] = window * buf[ears[k], 64 j : 64 j + 256]: the frames of the smeared ears."""
    for k in range(ears.shape[0]):
        for j in range(hops):
            for t in range(FRAME):
                out[k * hops + j, t] = buf[ears[k], j * HOP + t] * _WINDOW[t]


@njit(cache=True)
def _overlap_add(frames, ears, hops, tail, out):
    """Window the inverse transforms ``(len(ears) * hops, >= 256)`` and overlap-add them into ``out[ears]``.

    tail: (ears, 192) the earlier frames' overlap, updated in place; out: (ears, hops * 64).
    """
    for k in range(ears.shape[0]):
        e = ears[k]
        for j in range(hops):
            f = frames[k * hops + j]
            for t in range(HOP):
                out[e, j * HOP + t] = tail[e, t] + f[t] * _WINDOW[t]
            for t in range(FRAME - 2 * HOP):
                tail[e, t] = tail[e, t + HOP] + f[t + HOP] * _WINDOW[t + HOP]
            for t in range(FRAME - 2 * HOP, FRAME - HOP):
                tail[e, t] = f[t + HOP] * _WINDOW[t + HOP]


class Smearer:
    """Streaming spectral smearing of each ear (``None``: that ear is only delayed).

    ``process(x)`` takes ``(ears, n)`` float64 and returns ``(ears, n)`` float64,
    delayed by :data:`LATENCY` samples (see the module docstring).
    """

    latency = LATENCY

    def __init__(self, matrices: list[np.ndarray | None]) -> None:
        self.matrices = matrices
        self._transposed = {id(m): np.ascontiguousarray(m.T) for m in matrices if m is not None}
        self._smeared = np.array([e for e, m in enumerate(matrices) if m is not None], np.int64)
        # Runs of smeared ears sharing one matrix: one pass over the matrix for all their frames.
        self._groups = []
        for k, e in enumerate(self._smeared):
            if self._groups and matrices[e] is matrices[self._smeared[self._groups[-1][0]]]:
                self._groups[-1][1] = k + 1
            else:
                self._groups.append([k, k + 1])
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
        # Without smearing, hop j is the first hop of frame j: the input 192 samples back.
        new = np.array(buf[:, : hops * HOP])
        if hops and self._smeared.size:
            frames = np.empty((self._smeared.size * hops, FRAME))
            _windowed_frames(buf, self._smeared, hops, frames)
            spec = scipy.fft.rfft(frames, NFFT, axis=1)
            for first, stop in self._groups:
                _smear_spectra(spec[first * hops : stop * hops], self._transposed[id(self.matrices[self._smeared[first]])])
            _overlap_add(scipy.fft.irfft(spec, NFFT, axis=1), self._smeared, hops, self._tail, new)
        out = np.concatenate((self._ready, new), axis=1)
        self._ready = out[:, x.shape[1] :]
        return out[:, : x.shape[1]]
