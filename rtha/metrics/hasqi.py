"""HASQI v2: the Hearing-Aid Speech Quality Index (Kates & Arehart, 2014).

Quality = nonlinear x linear term, both computed from the outputs of the
auditory ear model (:mod:`rtha.metrics.ear_model`, quality mode: both signals
through the impaired ear, NAL-R on the reference):

* nonlinear = (envelope cepstral correlation)^2 x BM vibration sync, where the
  cepstral correlation compares the smoothed log envelopes and the sync term
  is the average short-time coherence of the basilar-membrane vibration;
* linear = 0.579 x loudness-spectrum term + 0.421 x spectral-slope term, from
  the long-term spectra in dB SL.

The numbers equal pyclarity 0.9.0 (``clarity.evaluator.hasqi.hasqi_v2``) to
about 1e-12; the per-segment covariance loop of the reference runs here as one
numba kernel.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..audiogram import Audiogram
from . import ear_model

#: Envelope smoothing and covariance segment length (ms); 50 % overlap.
SEGMENT_MS = 16.0
#: A segment (or time-frequency tile) counts when its level exceeds this (dB SL).
SILENCE_THRESHOLD_DB = 2.5
#: Mel-cepstrum coefficients; coefficient 0 (the average level) is not scored.
N_CEPSTRAL = 6
#: Largest lag of the BM cross-covariance (ms).
MAX_LAG_MS = 1.0
#: Loss of inner-hair-cell synchrony at high frequencies: low-pass order and cutoff (Hz).
IHC_SYNC_ORDER, IHC_SYNC_CUTOFF_HZ = 5, 3500.0
#: Linear model weights: loudness-spectrum and slope terms.
LOUDNESS_WEIGHT, SLOPE_WEIGHT = 0.579, 0.421


def hasqi_v2(
    ref: np.ndarray,
    proc: np.ndarray,
    fs: float,
    audiogram: Audiogram,
    equalisation: int = 1,
    level_db_spl: float = 65.0,
    rng: np.random.RandomState | None = None,
    threads: int | None = None,
) -> tuple[float, float, float, list[float]]:
    """HASQI v2 of a processed signal against its clean reference, for one ear.

    Args:
        ref: clean reference, ``(samples,)`` at ``fs`` Hz, RMS 1 = ``level_db_spl`` dB SPL.
        proc: processed signal (hearing-aid output), ``(samples,)`` at ``fs`` Hz;
            it may be longer or delayed: the model aligns it to ``ref``.
        fs: sample rate of both signals in Hz.
        audiogram: the ear's hearing thresholds (read at 250...6000 Hz).
        equalisation: 1 = the model applies NAL-R to the reference;
            2 = ``ref`` already carries the NAL-R gain.
        level_db_spl: dB SPL of a signal with RMS 1.
        rng: source of the model's internal noise; ``RandomState(s)`` gives
            pyclarity's numbers after ``np.random.seed(s)``. None: ``RandomState(0)``.
        threads: threads for the ear model's chunks of bands (None:
            ``min(2, os.cpu_count())``; 1: this thread only); the result does
            not depend on it.

    Returns:
        ``(combined, nonlinear, linear, raw)``: combined = nonlinear x linear,
        each 0 (bad) ... 1; raw = [cepstral correlation, BM sync,
        loudness term, slope term].

    Raises:
        rtha.metrics.ear_model.SignalError: a signal that is not 1-D, empty,
            not finite, or a silent or too short (< 16 ms of sound) reference.
    """
    _check_equalisation(equalisation)
    return hasqi_v2_aligned(ear_model.aligned_inputs(ref, fs, proc, fs), audiogram, equalisation, level_db_spl, rng, threads)


def _check_equalisation(equalisation) -> None:
    if equalisation not in (1, 2):
        raise ValueError(f"equalisation must be 1 (add NAL-R) or 2 (reference already has it), got {equalisation!r}")


def hasqi_v2_aligned(
    inputs: tuple[np.ndarray, np.ndarray],
    audiogram: Audiogram,
    equalisation: int = 1,
    level_db_spl: float = 65.0,
    rng: np.random.RandomState | None = None,
    threads: int | None = None,
) -> tuple[float, float, float, list[float]]:
    """:func:`hasqi_v2` of a pair already through :func:`~rtha.metrics.ear_model.aligned_inputs`."""
    _check_equalisation(equalisation)
    if rng is None:
        rng = np.random.RandomState(0)
    hearing_loss = ear_model.hearing_loss_at_model_freqs(audiogram)
    # The model's itype 1 / 2 = quality mode with / without its own NAL-R on the reference.
    out = ear_model.ear_model_aligned(
        inputs, hearing_loss, equalisation, level_db_spl, rng, env_summary=_smooth_summary, bm_summary=_bm_summary,
        threads=threads,
    )

    # Envelope: cepstral correlation of the smoothed (125 Hz) log envelopes.
    ref_smooth, proc_smooth = out.env
    cepstral, _ = cepstrum_correlation(ref_smooth, proc_smooth, rng)
    # Temporal fine structure: BM vibration coherence, less at high frequencies.
    cov, ref_ms = out.bm
    sync = ihc_sync_covariance(cov, ref_ms, out.center_freqs)
    # Long-term spectrum: 1 = same shape, 0 = very different.
    loudness_std, slope_std = spectrum_differences(out.ref_sl, out.proc_sl)
    loudness = min(max(1.0 - loudness_std / 2.5, 0.0), 1.0)
    slope = min(max(1.0 - slope_std, 0.0), 1.0)

    nonlinear = cepstral**2 * sync
    linear = LOUDNESS_WEIGHT * loudness + SLOPE_WEIGHT * slope
    return nonlinear * linear, nonlinear, linear, [cepstral, sync, loudness, slope]


def _smooth_summary(ref_db: np.ndarray, proc_db: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`smooth_envelopes` of the ear model's envelopes (24 kHz), a chunk of bands at a time."""
    fs = ear_model.MODEL_FS
    if ref_db.shape[1] < segment_window(SEGMENT_MS, fs).size:
        sound_ms = 1000 * ref_db.shape[1] / fs
        raise ear_model.SignalError(f"reference has {sound_ms:.1f} ms of sound; HASQI needs at least {SEGMENT_MS:g} ms")
    return smooth_envelopes(ref_db, SEGMENT_MS, fs), smooth_envelopes(proc_db, SEGMENT_MS, fs)


def _bm_summary(ref_bm: np.ndarray, proc_bm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`bm_covariance` of the ear model's BM motion (24 kHz), a chunk of bands at a time."""
    return bm_covariance(ref_bm, proc_bm, ear_model.MODEL_FS)


def segment_window(segment_ms: float, fs: float) -> np.ndarray:
    """Von Hann window of the analysis segments, an even number of samples."""
    n = int(np.around(segment_ms * 0.001 * fs))
    return np.hanning(n + n % 2)


def segment_count(n_samples: int, n_window: int) -> int:
    """Segments at 50 % overlap, with a half-window segment at each end."""
    return int(1 + n_samples // n_window + np.floor((n_samples - n_window / 2) / n_window))


def smooth_envelopes(env: np.ndarray, segment_ms: float, fs: float) -> np.ndarray:
    """Window-weighted averages of the envelopes over 50 %-overlapping segments.

    Args:
        env: envelopes in dB SL, shape ``(bands, samples)`` at ``fs`` Hz.

    Returns:
        ``(bands, segments)``: the first and last segments use half a window.
    """
    window = segment_window(segment_ms, fs)
    half = window.size // 2
    nseg = segment_count(env.shape[1], window.size)
    # Each segment spans two consecutive half-segment blocks: the rising half of
    # the window weights the first block, the falling half the second.
    blocks = env[:, : nseg * half].reshape(env.shape[0], nseg, half)
    rising = blocks @ window[:half]
    falling = blocks @ window[half:]
    smooth = np.empty((env.shape[0], nseg))
    smooth[:, 0] = falling[:, 0] / window[half:].sum()
    smooth[:, 1:-1] = (rising[:, 1:-1] + falling[:, 2:]) / window.sum()
    smooth[:, -1] = rising[:, -1] / window[:half].sum()
    return smooth


def cepstrum_correlation(
    ref: np.ndarray,
    proc: np.ndarray,
    rng: np.random.RandomState,
    threshold_db: float = SILENCE_THRESHOLD_DB,
    add_noise: float = 0.0,
) -> tuple[float, np.ndarray]:
    """Correlation of the mel-cepstrum trajectories of two smoothed envelopes.

    Segments whose average reference loudness is at or below ``threshold_db``
    are dropped. Gaussian noise of standard deviation ``add_noise`` (dB) is
    added to both envelopes; it is drawn even when 0 so that ``rng`` advances
    exactly as the reference implementation's global stream does.

    Args:
        ref, proc: smoothed envelopes in dB SL, shape ``(bands, segments)``.

    Returns:
        ``(average, per_coefficient)``: the mean |correlation| of coefficients
        1..5, and all 6 values; both 0 when fewer than 2 segments are loud enough.
    """
    nbands = ref.shape[0]
    loudness = 20 * np.log10(np.sum(10 ** (ref / 20), axis=0) / nbands)
    loud = np.flatnonzero(loudness > threshold_db)
    if loud.size <= 1:
        return 0.0, np.zeros(N_CEPSTRAL)
    ref = ref[:, loud] + add_noise * rng.standard_normal((nbands, loud.size))
    proc = proc[:, loud] + add_noise * rng.standard_normal((nbands, loud.size))

    basis = np.cos(np.outer(np.arange(nbands), np.arange(N_CEPSTRAL)) * np.pi / (nbands - 1))
    basis /= np.linalg.norm(basis, axis=0)
    ref_cep = basis.T @ ref
    proc_cep = basis.T @ proc
    ref_cep -= ref_cep.mean(axis=1, keepdims=True)
    proc_cep -= proc_cep.mean(axis=1, keepdims=True)

    ref_power = np.sum(ref_cep**2, axis=1)
    proc_power = np.sum(proc_cep**2, axis=1)
    valid = (ref_power >= 1e-30) & (proc_power >= 1e-30)
    corr = np.zeros(N_CEPSTRAL)
    corr[valid] = np.abs(
        np.sum(ref_cep[valid] * proc_cep[valid], axis=1) / np.sqrt(ref_power[valid] * proc_power[valid])
    )
    return float(np.sum(corr[1:]) / (N_CEPSTRAL - 1)), corr


def spectrum_differences(ref_sl: np.ndarray, proc_sl: np.ndarray) -> tuple[float, float]:
    """Spread of the differences between two long-term spectra (Moore & Tan, 2004).

    Both spectra (dB SL per band, shape ``(bands,)``) become specific loudness
    (linear magnitude) normalised to sum 1, so the overall level is ignored.

    Returns:
        ``(loudness, slope)``: bands x the biased standard deviation of the
        band-wise differences, and of the differences of the band-to-band slopes.
    """
    ref = 10 ** (ref_sl / 20)
    proc = 10 ** (proc_sl / 20)
    ref = ref / ref.sum()
    proc = proc / proc.sum()
    nbands = ref.size
    loudness = nbands * np.std(ref - proc)
    slope = nbands * np.std(np.diff(ref) - np.diff(proc))
    return float(loudness), float(slope)


def bm_covariance(
    ref_bm: np.ndarray, proc_bm: np.ndarray, fs: float, segment_ms: float = SEGMENT_MS
) -> tuple[np.ndarray, np.ndarray]:
    """Short-time normalised cross-covariance of the basilar-membrane vibration.

    Each band is cut into 50 %-overlapping Hann-windowed segments (half windows
    at both ends). Per segment: the maximum over lags within +-1 ms of the
    cross-correlation, unbiased by the window's autocorrelation, divided by the
    RMS of both segments; clipped to 0...1.

    Args:
        ref_bm, proc_bm: BM vibration, shape ``(bands, samples)`` at ``fs`` Hz.

    Returns:
        ``(covariance, ref_mean_square)``, each ``(bands, segments)``; the mean
        square is doubled so that its square root is on the envelope's dB SL scale.
    """
    window = segment_window(segment_ms, fs)
    max_lag = int(np.around(MAX_LAG_MS * 0.001 * fs))
    half = window.size // 2
    if max_lag >= half:
        raise ValueError(f"segment of {segment_ms} ms is too short for lags of +-{MAX_LAG_MS} ms")
    nseg = segment_count(ref_bm.shape[1], window.size)
    cov, ref_ms = _bm_covariance_kernel(
        np.ascontiguousarray(ref_bm, dtype=np.float64),
        np.ascontiguousarray(proc_bm, dtype=np.float64),
        window,
        _inverse_autocorrelation(window, max_lag),
        _inverse_autocorrelation(window[half:], max_lag),
        nseg,
    )
    return np.clip(cov, 0.0, 1.0), 2.0 * ref_ms


def _inverse_autocorrelation(w: np.ndarray, max_lag: int) -> np.ndarray:
    """1 / autocorrelation of ``w`` at lags -max_lag..max_lag (removes the window's taper bias)."""
    full = np.correlate(w, w, "full")
    mid = w.size - 1
    return 1.0 / full[mid - max_lag : mid + max_lag + 1]


@njit(cache=True, nogil=True)
def _bm_covariance_kernel(x, y, window, inv_corr, inv_half_corr, nseg):
    """Per band and segment: peak unbiased cross-correlation / RMS product, and the reference's mean square."""
    nbands = x.shape[0]
    nwin = window.size
    half = nwin // 2
    nlag = inv_corr.size
    max_lag = nlag // 2
    inv_win_power = 1.0 / np.sum(window**2)
    inv_half_power = 1.0 / np.sum(window[half:] ** 2)
    cov = np.zeros((nbands, nseg))
    ref_ms = np.zeros((nbands, nseg))
    xs = np.empty(nwin)
    ys = np.zeros(nwin + 2 * max_lag)  # zero-padded by max_lag at both ends
    for k in range(nbands):
        for n in range(nseg):
            if n == 0:  # half windows at both ends
                w0, m, inv, power_norm = half, half, inv_half_corr, inv_half_power
            elif n == nseg - 1:
                w0, m, inv, power_norm = 0, half, inv_half_corr, inv_half_power
            else:
                w0, m, inv, power_norm = 0, nwin, inv_corr, inv_win_power
            start = n * half
            seg = slice(start, start + m)
            xpow, ypow = _window_demean(x[k, seg], y[k, seg], window[w0 : w0 + m], xs, ys, max_lag)
            ys[max_lag + m : max_lag + nwin] = 0.0
            peak = _peak_unbiased_correlation(xs, ys, m, inv)
            xpow *= power_norm
            ypow *= power_norm
            if xpow > 1e-30 and ypow > 1e-30:
                cov[k, n] = peak / np.sqrt(xpow * ypow)
            ref_ms[k, n] = xpow
    return cov, ref_ms


@njit(cache=True, nogil=True)
def _window_demean(x, y, w, xs, ys, offset):
    """xs[:m] = x*w less its mean, ys[offset:offset+m] likewise; returns both energies."""
    m = w.size
    xsum = 0.0
    ysum = 0.0
    for t in range(m):
        xs[t] = x[t] * w[t]
        ys[offset + t] = y[t] * w[t]
        xsum += xs[t]
        ysum += ys[offset + t]
    xmean = xsum / m
    ymean = ysum / m
    xpow = 0.0
    ypow = 0.0
    for t in range(m):
        xs[t] -= xmean
        ys[offset + t] -= ymean
        xpow += xs[t] * xs[t]
        ypow += ys[offset + t] * ys[offset + t]
    return xpow, ypow


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _peak_unbiased_correlation(xs, ys, m, inv):
    """max over lags j of |inv[j] * sum_t xs[t] ys[t + j]|, t < m (reassociation lets the sums vectorise)."""
    peak = 0.0
    for j in range(inv.size):
        acc = 0.0
        for t in range(m):
            acc += xs[t] * ys[t + j]
        peak = max(peak, abs(acc * inv[j]))
    return peak


def ihc_sync_covariance(
    cov: np.ndarray, ref_mean_square: np.ndarray, center_freqs: np.ndarray, threshold_db: float = SILENCE_THRESHOLD_DB
) -> float:
    """Average BM covariance over the audible tiles, weighted for loss of IHC synchrony.

    Segments whose band-averaged reference loudness is at or below
    ``threshold_db`` are dropped; of the rest, only tiles whose own level exceeds
    it count. Each band is weighted by a 5th-order low-pass at 3.5 kHz on its
    centre frequency (the reference's 5th weighting, the one HASQI v2 uses).

    Args:
        cov, ref_mean_square: from :func:`bm_covariance`, ``(bands, segments)``.
        center_freqs: band centre frequencies in Hz, ``(bands,)``.

    Returns:
        The weighted average; 0 when fewer than 2 segments are loud enough.
    """
    level = np.sqrt(ref_mean_square)
    loudness = 20 * np.log10(np.sum(10 ** (level / 20), axis=0) / level.shape[0])
    loud = np.flatnonzero(loudness > threshold_db)
    if loud.size <= 1:
        return 0.0
    cutoff = IHC_SYNC_CUTOFF_HZ ** (2 * IHC_SYNC_ORDER)
    sync = np.sqrt(cutoff / (cutoff + center_freqs ** (2 * IHC_SYNC_ORDER)))
    weight = np.where(level[:, loud] > threshold_db, sync[:, None], 0.0)
    return float(np.sum(weight * cov[:, loud]) / np.sum(weight))
