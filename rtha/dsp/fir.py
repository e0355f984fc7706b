"""Streaming FIR filter stage: direct convolution or FFT overlap-save.

Both methods keep the same state, the last ``m - 1`` input samples of each
channel (float64), so the stage may switch method from one block to the next
and any block partition gives ``np.convolve(x, h)[:len(x)]`` per channel.

``method="auto"`` picks per block: FFT when the filter has at least
:data:`FFT_MIN_TAPS` taps and ``block length * taps >= FFT_MIN_MACS``, direct
otherwise. The constants fit the crossover measured with
``python tools/bench_dsp.py --crossover`` (stereo, 2-core x86, shared): FFT
overlap-save first won from about 1024 samples with 221 taps, 768 with 331,
512 with 441, and never below 8192 with 81. numpy's per-call overhead (tens of
microseconds) makes direct convolution the choice for live blocks, FFT for
offline files with long filters.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
from numba import njit

from ..stage import BlockShapeError, Stage
from .errors import DspParameterError

METHODS = ("auto", "direct", "fft")

#: Below this many taps the direct method was as fast or faster at every block length measured.
FFT_MIN_TAPS = 160
#: With ``m >= FFT_MIN_TAPS`` taps, FFT overlap-save wins for blocks of at
#: least ``FFT_MIN_MACS / m`` samples (about 1100 samples for 221 taps).
FFT_MIN_MACS = 250_000

_MAX_CACHED_SPECTRA = 32
_FFT_CHUNK = 1 << 18  # samples per overlap-save pass: bounds memory on long offline blocks


def crossover_block(n_taps: int) -> float:
    """Shortest block (samples) for which ``method="auto"`` uses FFT overlap-save."""
    return np.inf if n_taps < FFT_MIN_TAPS else FFT_MIN_MACS / n_taps


@njit(cache=True, fastmath={"reassoc", "contract"})
def _fir_direct(x, taps_rev, hist, out, work):
    """Direct-form FIR over one block, updating the input history in place.

    x: (1 or C, n) float32 (one row is shared by all outputs); taps_rev: (C, m)
    float64, taps reversed; hist: (C, m - 1) float64, last inputs; out: (C, n);
    work: (m - 1 + n,) float64 scratch (the caller keeps it between blocks).
    """
    n_ch, m = taps_rev.shape
    n = x.shape[1]
    for c in range(n_ch):
        row = 0 if x.shape[0] == 1 else c
        for i in range(m - 1):
            work[i] = hist[c, i]
        for i in range(n):
            work[m - 1 + i] = x[row, i]
        for i in range(n):
            acc = 0.0
            for k in range(m):
                acc += taps_rev[c, k] * work[i + k]
            out[c, i] = acc
        for i in range(m - 1):
            hist[c, i] = work[n + i]


def fir_work(work: np.ndarray, n_taps: int, n: int) -> np.ndarray:
    """``work`` if it is long enough for ``_fir_direct`` with ``n_taps`` taps and ``n`` samples, else a new one that is."""
    return work if work.size >= n_taps - 1 + n else np.empty(n_taps - 1 + n)


class FirFilter(Stage):
    """FIR filter stage, one filter per output channel.

    Args:
        taps: ``(m,)`` one filter for every channel (output channels = input
            channels), or ``(channels, m)`` one filter per output channel; then
            the input has 1 channel (fanned out to all filters) or ``channels``.
        method: ``"direct"``, ``"fft"`` (overlap-save) or ``"auto"`` (per
            block, by the measured crossover; see :func:`crossover_block`).
        latency: the filter's delay in samples, reported as ``latency``
            (e.g. ``(m - 1) // 2`` for a linear-phase filter).
    """

    def __init__(self, taps, method: str = "auto", latency: int = 0) -> None:
        if method not in METHODS:
            raise DspParameterError(f"FIR method {method!r} is unknown; expected one of {', '.join(METHODS)}")
        taps = np.asarray(taps, dtype=np.float64)
        if taps.ndim not in (1, 2) or taps.shape[-1] == 0 or not np.all(np.isfinite(taps)):
            raise DspParameterError(f"FIR taps of shape {taps.shape} are invalid; expected finite (m,) or (channels, m)")
        self.per_channel = taps.ndim == 2
        self.taps = np.atleast_2d(taps).copy()
        self.method = method
        self.latency = int(latency)
        self._spectra: dict[int, np.ndarray] = {}
        self._work = np.empty(0)  # the direct method's scratch, sized for the last block length
        super().__init__()

    @property
    def n_taps(self) -> int:
        return self.taps.shape[1]

    def out_channels(self, in_channels: int) -> int:
        return self.taps.shape[0] if self.per_channel else in_channels

    @property
    def tail(self) -> int:
        """``n_taps - 1``: the last input sample reaches the output that many samples later."""
        return self.n_taps - 1

    def _start(self, channels: int) -> None:
        n_out = self.taps.shape[0]
        if self.per_channel and channels not in (1, n_out):
            raise BlockShapeError(
                f"audio block has {channels} channels; expected 1 (fanned out) or {n_out} (one per filter)"
            )
        bank = self.taps if self.per_channel else np.repeat(self.taps, channels, axis=0)
        self._bank = bank
        self._bank_rev = np.ascontiguousarray(bank[:, ::-1])
        self._hist = np.zeros((bank.shape[0], self.n_taps - 1))
        self._spectra.clear()

    def _step(self, x: np.ndarray, out: np.ndarray) -> None:
        n = x.shape[1]
        use_fft = self.method == "fft" or (self.method == "auto" and n >= crossover_block(self.n_taps))
        if use_fft:
            for i in range(0, n, _FFT_CHUNK):
                self._overlap_save(x[:, i : i + _FFT_CHUNK], out[:, i : i + _FFT_CHUNK])
            return
        self._work = fir_work(self._work, self.n_taps, n)
        _fir_direct(x, self._bank_rev, self._hist, out, self._work)

    # -- FFT overlap-save -------------------------------------------------
    def _segment_fft_size(self) -> int:
        # Long segments: numpy's per-call overhead outweighs the log(nfft) growth.
        return max(1 << 14, 1 << int(np.ceil(np.log2(8 * self.n_taps))))

    def _spectrum(self, nfft: int) -> np.ndarray:
        spec = self._spectra.get(nfft)
        if spec is None:
            if len(self._spectra) >= _MAX_CACHED_SPECTRA:
                self._spectra.clear()
            spec = self._spectra[nfft] = np.fft.rfft(self._bank, nfft, axis=-1)
        return spec

    def _overlap_save(self, x: np.ndarray, out: np.ndarray) -> None:
        n_ch, m = self._bank.shape
        n = x.shape[1]
        keep = m - 1
        nfft = self._segment_fft_size()
        if n + keep <= nfft:  # one segment: the smallest fast FFT that holds it
            nfft = scipy.fft.next_fast_len(n + keep, real=True)
        step = nfft - keep
        n_seg = -(-n // step)
        ext = np.zeros((n_ch, (n_seg - 1) * step + nfft))
        ext[:, :keep] = self._hist
        ext[:, keep : keep + n] = x
        self._hist[:] = ext[:, n : n + keep]
        if n_seg == 1:  # skip the strided view: its overhead matters for short blocks
            frames = ext[:, None, :]
        else:
            frames = np.lib.stride_tricks.sliding_window_view(ext, nfft, axis=-1)[:, ::step]
        spec = np.fft.rfft(frames, axis=-1) * self._spectrum(nfft)[:, None, :]
        y = np.fft.irfft(spec, nfft, axis=-1)[..., keep:]
        out[:] = y.reshape(n_ch, -1)[:, :n]
