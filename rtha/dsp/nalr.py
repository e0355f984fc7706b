"""NAL-R prescription and its FIR filters (linear phase and minimum phase).

The design follows pyclarity 0.9.0's ``NALR(nfir, fs).build(audiogram)``, so
the linear-phase taps equal the Clarity toolkit's (the tests check 16 cases to
1e-9):

1. The audiogram is read at 250, 500, 1k, 2k, 4k and 6 kHz, linear in
   log-frequency with the ends held (:meth:`rtha.audiogram.Audiogram.at`;
   pyclarity 0.9.0's ``Audiogram.resample`` does the same; older pyclarity
   releases interpolated linearly in Hz, which differs only when the audiogram
   lacks some of those six frequencies).
2. NAL-R gain (dB) = X + 0.31 HL + bias, clipped at 0 dB, with
   X = 0.05 * (HL500 + HL1k + HL2k) (or 9 + 0.116 * (sum - 180) above 180) and
   bias = (-17, -8, 1, -1, -2, -2) dB.
3. The gains, held flat to 0 Hz and to Nyquist, are interpolated linearly in
   Hz onto ``nfir + 1`` evenly spaced frequencies and turned into taps with
   MATLAB's ``fir2`` frequency-sampling method (512-point grid, Hamming window).

A listener without loss (all levels <= 0 dB HL) gets a pure delay of
``nfir // 2`` samples, as in pyclarity.

:class:`NalrFilter` is the streaming stage, one filter per ear. Its
``phase="minimum"`` variant has the same magnitude response with the energy
at the start of the filter: no pure delay, so ``latency = 0`` (its group delay
varies with frequency, from about -0.5 ms at 250 Hz to +0.25 ms near 1 kHz for
the presets, by ``scipy.signal.group_delay``);
``phase="linear"`` is the pyclarity filter, ``latency = nfir // 2``.
"""

from __future__ import annotations

import numpy as np
from scipy.signal.windows import hamming

from ..audiogram import AUDIOMETRIC_FREQS, Audiogram, Listener
from .errors import DspParameterError
from .fir import FirFilter

_BIAS_DB = np.array([-17.0, -8.0, 1.0, -1.0, -2.0, -2.0])


def nalr_gains_db(audiogram: Audiogram) -> np.ndarray:
    """NAL-R insertion gain (dB, >= 0) at :data:`AUDIOMETRIC_FREQS`, shape ``(6,)``."""
    hl = audiogram.at(AUDIOMETRIC_FREQS)
    critical = hl[1] + hl[2] + hl[3]  # 500 Hz + 1 kHz + 2 kHz
    x_ave = 0.05 * critical if critical <= 180 else 9.0 + 0.116 * (critical - 180)
    return np.clip(x_ave + 0.31 * hl + _BIAS_DB, 0.0, None)


def default_nfir(fs: float) -> int:
    """Default filter order: 5 ms each side of the linear-phase centre (220 at 44.1 kHz)."""
    return 2 * round(110 * fs / 44100)


def _check(fs: float, nfir: int) -> None:
    if not (np.isfinite(fs) and fs >= 2000):
        raise DspParameterError(f"sample rate {fs!r} Hz is invalid; expected at least 2000 Hz")
    if int(nfir) != nfir or nfir < 1:
        raise DspParameterError(f"NAL-R filter order nfir={nfir!r} is invalid; expected an integer >= 1")


def nalr_fir(audiogram: Audiogram, fs: float, nfir: int) -> np.ndarray:
    """Linear-phase NAL-R FIR taps, equal to pyclarity's ``NALR(nfir, fs).build``.

    Args:
        audiogram: thresholds of one ear (dB HL).
        fs: sample rate in Hz.
        nfir: filter order; the filter has ``nfir + 1`` taps and a group delay
            of ``nfir / 2`` samples.

    Returns:
        float64 taps, shape ``(nfir + 1,)``.
    """
    _check(fs, nfir)
    nfir = int(nfir)
    if audiogram.max_loss <= 0:
        taps = np.zeros(nfir + 1)
        taps[nfir // 2] = 1.0
        return taps
    gains_db = nalr_gains_db(audiogram)
    fmax = 0.5 * fs
    # Gain held flat from 0 Hz and up to Nyquist; below 12 kHz sampling the
    # prescription points at or above Nyquist are replaced by the gain at Nyquist.
    inside = AUDIOMETRIC_FREQS < fmax
    knots_hz = np.concatenate(([0.0], AUDIOMETRIC_FREQS[inside], [fmax]))
    knots_db = np.concatenate(([gains_db[0]], gains_db[inside], [np.interp(fmax, AUDIOMETRIC_FREQS, gains_db)]))
    grid = np.linspace(0, nfir, nfir + 1) / nfir  # 0..1, 1 = Nyquist
    gains = np.power(10, np.interp(fmax * grid, knots_hz, knots_db) / 20.0)
    return fir2(nfir, grid, gains)


def fir2(order: int, freqs: np.ndarray, gains: np.ndarray, window: np.ndarray | None = None) -> np.ndarray:
    """MATLAB-style ``fir2``: linear-phase FIR by frequency sampling, Hamming window.

    Args:
        order: filter order; returns ``order + 1`` taps.
        freqs: strictly increasing breakpoints from 0 to 1 (1 = Nyquist), shape ``(k,)``.
        gains: linear magnitude at the breakpoints, shape ``(k,)``.
        window: ``(order + 1,)`` window applied to the taps; default Hamming (MATLAB's).

    Returns:
        float64 taps, shape ``(order + 1,)``.
    """
    n_taps = order + 1
    # The magnitude is sampled on n_grid + 1 points from 0 to Nyquist.
    n_grid = int(2 ** np.ceil(np.log2(n_taps))) if n_taps >= 1024 else 512
    n_pts = n_grid + 1
    freqs = np.asarray(freqs, dtype=np.float64)
    gains = np.asarray(gains, dtype=np.float64)

    mag = np.zeros(n_pts)
    mag[0] = gains[0]
    start = 0
    for i in range(len(freqs) - 1):  # linear between breakpoints
        stop = int(freqs[i + 1] * n_pts) - 1
        j = np.arange(start, stop + 1)
        t = 0.0 if start == stop else (j - start) / (stop - start)
        mag[start : stop + 1] = t * gains[i + 1] + (1 - t) * gains[i]
        start = stop + 1

    # Delay by order/2 samples (linear phase), mirror to a Hermitian spectrum.
    phase = np.exp(-0.5 * order * 1j * np.pi * np.arange(n_pts) / (n_pts - 1))
    spectrum = mag * phase
    spectrum = np.concatenate((spectrum, spectrum[n_pts - 2 : 0 : -1].conj()))
    impulse = np.real(np.fft.ifft(spectrum))
    return impulse[:n_taps] * (hamming(n_taps) if window is None else window)


class NalrFilter(FirFilter):
    """NAL-R per ear as a streaming stage.

    Args:
        ears: a :class:`~rtha.audiogram.Listener` (channel 0 left, 1 right) or a
            sequence of audiograms, one per output channel.
        fs: sample rate in Hz.
        nfir: filter order (``nfir + 1`` taps); default :func:`default_nfir`.
        phase: ``"minimum"`` (latency 0) or ``"linear"`` (pyclarity's taps,
            latency ``nfir // 2`` samples).
        method: FIR method, ``"auto"``, ``"direct"`` or ``"fft"`` (see
            :class:`~rtha.dsp.fir.FirFilter`).

    Input ``(1, samples)`` is fanned out to every ear; input with one channel
    per ear is filtered channel by channel. Output ``(ears, samples)``.
    """

    PHASES = ("minimum", "linear")

    def __init__(self, ears, fs: float, nfir: int | None = None, phase: str = "minimum", method: str = "auto") -> None:
        if phase not in self.PHASES:
            raise DspParameterError(f"NAL-R phase {phase!r} is unknown; expected one of {', '.join(self.PHASES)}")
        if isinstance(ears, Listener):
            ears = ears.ears
        elif isinstance(ears, Audiogram):
            ears = (ears,)
        self.ears = tuple(ears)
        if not self.ears or not all(isinstance(a, Audiogram) for a in self.ears):
            raise DspParameterError("NAL-R needs a Listener or a sequence of Audiogram, one per ear")
        _check(fs, 1 if nfir is None else nfir)
        self.fs = fs
        self.nfir = default_nfir(fs) if nfir is None else int(nfir)
        self.phase = phase
        taps = np.stack([nalr_fir(a, fs, self.nfir) for a in self.ears])
        if phase == "minimum":
            taps = np.stack([minimum_phase(t) for t in taps])
        super().__init__(taps, method=method, latency=self.nfir // 2 if phase == "linear" else 0)


def minimum_phase(taps: np.ndarray, n_fft: int | None = None) -> np.ndarray:
    """Minimum-phase FIR with the same magnitude response and length as ``taps``.

    Uses the real cepstrum of ``|H|`` on a dense grid (folded onto positive
    quefrencies). A filter whose zeros stay off the unit circle (NAL-R gains
    are >= 0 dB, so its response has no deep notches) has an exact
    minimum-phase twin of the same length; the dense grid makes the aliasing
    error negligible (the tests check the magnitudes agree).

    Args:
        taps: FIR taps, shape ``(m,)``.
        n_fft: cepstrum FFT size; default ``>= 64 m`` and at least 2**14.

    Returns:
        float64 taps, shape ``(m,)``.
    """
    taps = np.asarray(taps, dtype=np.float64)
    m = taps.size
    if n_fft is None:
        n_fft = max(1 << 14, 1 << int(np.ceil(np.log2(64 * m))))
    mag = np.abs(np.fft.rfft(taps, n_fft))
    floor = 1e-12 * mag.max()  # keeps log finite at a (rare) exact zero
    cep = np.fft.irfft(np.log(np.maximum(mag, floor)), n_fft)
    fold = np.zeros(n_fft)
    fold[0] = 1.0
    fold[1 : n_fft // 2] = 2.0
    fold[n_fft // 2] = 1.0
    return np.fft.irfft(np.exp(np.fft.rfft(cep * fold)), n_fft)[:m]
