"""Kates' auditory ear model, the front end of HASPI v2 and HASQI v2.

Both signals go through: resampling to 24 kHz, broadband alignment, (for
quality) NAL-R on the reference, a middle-ear filter, a 32-band gammatone
filterbank (80 Hz-8 kHz, ERB spaced) whose bandwidth follows the signal level
(a wide "control" filter sets it), outer-hair-cell compression driven by the
control envelope, per-band alignment of the processed to the reference,
conversion to dB above threshold, inner-hair-cell adaptation, basilar-membrane
threshold noise and group-delay compensation.  ``itype`` 0 (intelligibility)
models the reference with a normal ear and the processed signal with the
impaired one; ``itype`` 1 (quality) uses the impaired ear for both and adds the
NAL-R prescription to the reference.

The numbers equal pyclarity 0.9.0's ``clarity.evaluator.haspi.eb.ear_model``
(Kates' MATLAB code ported to Python) including the Gaussian noise, which comes
from the ``numpy.random.RandomState`` passed in, in the same order and shapes
as pyclarity's draws from numpy's global stream.

Speed and memory: the bands are modelled 16 at a time; the filterbank,
compression and adaptation run in numba kernels over blocks of ``(time,
band)`` with the recursions vectorised across the bands, and the logarithms
and exponentials as numpy ufuncs; the per-band alignment screens the lags it
searches with short float32 FFTs and computes the few that can win exactly;
the noise for outputs not asked for is skipped, not drawn.  Envelopes and BM
motion exist for one chunk of bands at a time and leave the model only as
the caller's per-band summaries (HASPI's low-passed envelopes, HASQI's
smoothed envelopes and short-time BM covariances), which keeps the memory of
a 30 s scene well under 1 GB.  :func:`aligned_inputs` (resampling
and input alignment) does not depend on the ear or the metric, so HASPI and
HASQI of one pair share it (:func:`ear_model_aligned`).

Threads: the two chunks of bands are independent once the control filters
have set the bandwidths, so they run concurrently (``threads``; the kernels
release the GIL).  Their noise is still the stream's: each chunk's reference
and processed rows draw from copies of the stream skipped ahead (beside the
control filters) to where those rows' draws lie, so any thread count gives
the same numbers and leaves ``rng`` in the same state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import math
import queue

import numpy as np
from numba import njit
from scipy import fft as sfft
from scipy.signal import butter, cheby2, correlate, group_delay, lfilter

from ..audiogram import AUDIOMETRIC_FREQS, Audiogram
from ..dsp.resample import resample
from ..errors import RthaError
from .legacy_normal import NormalStream, skip_standard_normal
from .threads import resolve_threads, run_concurrently, thread_map

#: Sample rate (Hz) of the model and of its outputs.
MODEL_FS = 24000.0
N_BANDS = 32

_EAR_Q, _MIN_BW = 9.26449, 24.7
_SMALL = 1e-30
_UPPER_KNEE_DB = 100.0
#: IHC threshold noise added to the BM motion, dB re auditory threshold.
_IHC_NOISE_DB = -10.0
#: Processed-to-reference envelope alignment searches lags up to this (s).
_ALIGN_RANGE_S = 0.1
#: Float32 screening margin of the alignment search (x ||ref|| ||out||) and
#: the candidate count above which it falls back to a float64 correlation.
_ALIGN_SCREEN, _ALIGN_MAX_CANDIDATES = 2e-5, 64
#: FFT size of the alignment screen's blocks (short enough to stay in cache).
_ALIGN_FFT = 1 << 14
#: Time block (samples) of the band-vectorised stages.
_BLOCK = 2048
#: Bands per pass of the filterbank and all later stages: a compile-time
#: constant of the kernels (their band loops vectorise), and it bounds the
#: memory of the BM motion to two ``(_CHUNK, samples)`` arrays.
_CHUNK = 16
#: Memory (bytes) that concurrently modelled chunks of bands may hold in
#: envelope and BM buffers: longer signals run fewer chunks at a time (a 6 s
#: scene runs two; quality-mode (BM) scenes beyond ~17 s one).
_CONCURRENT_CHUNK_BYTES = 400 * 2**20


#: A per-band summary of the model's outputs for one chunk of bands:
#: (reference, processed) ``(chunk bands, samples)`` -> arrays with the band first.
Summary = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, ...]]


class SignalError(RthaError, ValueError):
    """Signals the ear model cannot score (wrong shape, silent reference)."""


@dataclass(frozen=True)
class EarModelOutput:
    """Outputs of :func:`ear_model_aligned`; all band arrays are ``(bands, samples)`` at ``fs``.

    Attributes:
        env: what ``env_summary`` made of the envelopes (see :func:`ear_model_aligned`),
            its arrays stacked over all bands; by default the envelopes
            themselves, ``(ref_db, proc_db)``.
        bm: what ``bm_summary`` made of the basilar-membrane motion, stacked
            likewise; ``None`` when no summary was asked for.
        ref_sl, proc_sl: long-term average level of each band in dB SL, ``(bands,)``.
        fs: sample rate of the outputs (24 kHz).
        center_freqs: band centre frequencies in Hz, ``(bands,)``.
    """

    env: tuple[np.ndarray, ...]
    bm: tuple[np.ndarray, ...] | None
    ref_sl: np.ndarray
    proc_sl: np.ndarray
    fs: float
    center_freqs: np.ndarray


@dataclass(frozen=True)
class CochlearLoss:
    """Cochlear parameters of one ear per band (Kates 2008), each ``(bands,)``.

    Attributes:
        ohc_attn: outer-hair-cell attenuation, dB.
        bandwidth: filter bandwidth relative to a normal ear.
        low_knee: compression lower kneepoint, dB SPL.
        ratio: compression ratio.
        ihc_attn: inner-hair-cell attenuation, dB.
    """

    ohc_attn: np.ndarray
    bandwidth: np.ndarray
    low_knee: np.ndarray
    ratio: np.ndarray
    ihc_attn: np.ndarray


def hearing_loss_at_model_freqs(audiogram: Audiogram) -> np.ndarray:
    """Loss (dB HL) at :data:`AUDIOMETRIC_FREQS`, linear in log-frequency, ends held."""
    return audiogram.at(AUDIOMETRIC_FREQS)


def center_frequencies(nchan: int = N_BANDS, shift: float | None = None) -> np.ndarray:
    """Gammatone centre frequencies (Hz), ERB spaced from 80 Hz to 8 kHz, ascending.

    ``shift`` moves the whole bank along the basilar membrane (Greenwood map) as
    a fraction of its length; HASPI and HASQI use ``None`` (no shift).
    """
    low, high = 80.0, 8000.0
    if shift is not None:
        k, big_a, a = 1.0, 165.4, 2.1
        x_low = (1 / a) * np.log10(k + low / big_a) * (1 + shift)
        x_high = (1 / a) * np.log10(k + high / big_a) * (1 + shift)
        low = big_a * (10 ** (a * x_low) - k)
        high = big_a * (10 ** (a * x_high) - k)
    q_bw = _EAR_Q * _MIN_BW
    cf = -q_bw + np.exp(np.arange(1, nchan) * (np.log(low + q_bw) - np.log(high + q_bw)) / (nchan - 1)) * (high + q_bw)
    return np.flip(np.concatenate(([high], cf)))


def cochlear_loss(hearing_loss: np.ndarray, center_freqs: np.ndarray) -> CochlearLoss:
    """Split a loss (dB at :data:`AUDIOMETRIC_FREQS`) between outer and inner hair cells.

    The loss is interpolated linearly in Hz onto the bands; 80 % of it goes to
    the OHCs up to the loss that makes compression linear (1.25 x its maximum),
    the rest to the IHCs; OHC loss widens the filters and flattens compression.
    """
    hearing_loss = np.asarray(hearing_loss, dtype=np.float64)
    nfilt = len(center_freqs)
    knots = np.concatenate(([center_freqs[0]], AUDIOMETRIC_FREQS, [center_freqs[-1]]))
    values = np.concatenate(([hearing_loss[0]], hearing_loss, [hearing_loss[-1]]))
    loss = np.maximum(np.interp(center_freqs, knots, values), 0)
    ratio = 1.25 + 2.25 * np.arange(nfilt) / (nfilt - 1)
    max_ohc = 70 * (1 - (1 / ratio))
    limit = 1.25 * max_ohc
    ohc = 0.8 * loss
    ihc = 0.2 * loss
    over = loss >= limit
    ohc[over] = 0.8 * limit[over]
    ihc[over] = 0.2 * limit[over] + (loss[over] - limit[over])
    bandwidth = 1 + (ohc / 50.0) + 2.0 * (ohc / 50.0) ** 6
    low_knee = ohc + 30
    upamp = 30 + (70 / ratio)
    ratio = (100 - low_knee) / (upamp + ohc - low_knee)
    return CochlearLoss(ohc, bandwidth, low_knee, ratio, ihc)


def resample_to_model_rate(x: np.ndarray, fs: float) -> np.ndarray:
    """Resample to 24 kHz (ratio of the rates rounded to kHz), keeping the RMS level.

    Downsampling matches the RMS within the common 21 kHz band (Chebyshev
    low-passes on input and output), as the reference model does.
    """
    target_khz = round(MODEL_FS / 1000)
    fs_khz = round(fs / 1000)
    if fs_khz == target_khz:
        return x
    y = resample(x, fs_khz * 1000, target_khz * 1000)
    if fs_khz < target_khz:
        return (np.sqrt(np.mean(x**2)) / np.sqrt(np.mean(y**2))) * y
    b, a = cheby2(7, 30, 21 / fs_khz)
    x_rms = np.sqrt(np.mean(lfilter(b, a, x, axis=0) ** 2))
    b, a = cheby2(7, 30, 21 / target_khz)
    y_rms = np.sqrt(np.mean(lfilter(b, a, y, axis=0) ** 2))
    return (x_rms / y_rms) * y


def align_inputs(ref: np.ndarray, proc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shift ``proc`` onto ``ref`` (peak of the cross-covariance, less 2 ms for
    dispersion) and trim both to where ``ref`` exceeds 0.001 of its peak.

    Both inputs at 24 kHz and of equal length.
    """
    n = len(ref)
    xcov = correlate(ref - np.mean(ref), proc - np.mean(proc), "full")
    delay = n - int(np.argmax(np.abs(xcov))) - 1
    delay = int(np.rint(delay - 2 * MODEL_FS / 1000.0))
    if delay > 0:
        proc = np.concatenate((proc[delay:], np.zeros(delay)))
    else:
        proc = np.concatenate((np.zeros(-delay), proc[: n + delay]))
    mag = np.abs(ref)
    above = np.flatnonzero(mag > 0.001 * np.max(mag))
    start, end = above[0], min(above[-1], len(proc))
    return ref[start : end + 1], proc[start : end + 1]


def middle_ear(x: np.ndarray, fs: float = MODEL_FS) -> np.ndarray:
    """Middle-ear transfer: 1-pole low-pass at 5 kHz, then 2-pole high-pass at 350 Hz."""
    b, a = butter(1, 5000 / (0.5 * fs))
    y = lfilter(b, a, x)
    b, a = butter(2, 350 / (0.5 * fs), "high")
    return lfilter(b, a, y)


def _erb(center_freqs):
    return _MIN_BW + center_freqs / _EAR_Q


def _gammatone_poles(bandwidth, center_freqs, fs):
    """Pole radius ``a`` of the 4th-order gammatone (impulse invariance), per band."""
    tpt = 2 * np.pi / fs
    return np.exp(-(bandwidth * tpt * _erb(center_freqs) * 1.019))


# Rows (each one band chunk long) of the flat work vector of _gammatone_block: filter
# state in rows 0-7, then coefficients, carrier and carrier step.
_W_COEF, _W_CARRIER, _W_STEP = 8, 15, 17


def _filterbank_work(bandwidth, center_freqs, fs) -> np.ndarray:
    """Flat work vector of one gammatone filterbank run: zero filter state (8 rows),
    coefficients (7), carrier cos/-sin at sample 0 (2), carrier step cos/sin w (2)."""
    a = _gammatone_poles(bandwidth, center_freqs, fs)
    a1 = 4.0 * a
    a2 = -6.0 * a * a
    a3 = 4.0 * a * a * a
    a4 = -a * a * a * a
    a5 = 4.0 * a * a
    gain = 2.0 * (1 - a1 - a2 - a3 - a4) / (1 + a1 + a5)
    w = 2 * np.pi / fs * center_freqs
    nb = len(center_freqs)
    rows = [np.zeros((8, nb)), [a1, a5, -a1, -a2, -a3, -a4, gain], [np.ones(nb), np.zeros(nb)], [np.cos(w), np.sin(w)]]
    return np.ascontiguousarray(np.vstack(rows)).ravel()


@njit(cache=True, nogil=True)
def _gammatone_block(x, w, env, bm, sum_sq, want_bm):
    """One block of a 4th-order gammatone filterbank for one signal, :data:`_CHUNK` bands.

    Each band demodulates the signal by its carrier (generated by rotation, as
    the reference does) and runs both quadratures through the same 4-pole
    low-pass in the operation order of ``scipy.signal.lfilter`` (direct form II
    transposed); the envelope is the magnitude, the BM motion the remodulated
    real part.  ``w`` (see :func:`_filterbank_work`) carries filter and carrier
    state between blocks; ``sum_sq`` (bands,) accumulates the squared envelope.
    ``x`` (time,); ``env`` and ``bm`` (time * bands,) in (time, band) order.
    The arrays are flat and the band count a compile-time constant, so the band
    loop vectorises.
    """
    nb = _CHUNK
    for t in range(x.shape[0]):
        xt = x[t]
        o = t * nb
        for b in range(nb):
            c = w[_W_CARRIER * nb + b]
            s = w[(_W_CARRIER + 1) * nb + b]
            w[_W_CARRIER * nb + b] = c * w[_W_STEP * nb + b] + s * w[(_W_STEP + 1) * nb + b]
            w[(_W_CARRIER + 1) * nb + b] = s * w[_W_STEP * nb + b] - c * w[(_W_STEP + 1) * nb + b]
            a1 = w[_W_COEF * nb + b]
            a5 = w[(_W_COEF + 1) * nb + b]
            f1 = w[(_W_COEF + 2) * nb + b]
            f2 = w[(_W_COEF + 3) * nb + b]
            f3 = w[(_W_COEF + 4) * nb + b]
            f4 = w[(_W_COEF + 5) * nb + b]
            u = xt * c
            v = xt * s
            yr = w[b] + u
            w[b] = w[nb + b] + u * a1 - yr * f1
            w[nb + b] = w[2 * nb + b] + u * a5 - yr * f2
            w[2 * nb + b] = w[3 * nb + b] - yr * f3
            w[3 * nb + b] = -yr * f4
            yi = w[4 * nb + b] + v
            w[4 * nb + b] = w[5 * nb + b] + v * a1 - yi * f1
            w[5 * nb + b] = w[6 * nb + b] + v * a5 - yi * f2
            w[6 * nb + b] = w[7 * nb + b] - yi * f3
            w[7 * nb + b] = -yi * f4
            g = w[(_W_COEF + 6) * nb + b]
            e = g * math.sqrt(yr * yr + yi * yi)
            env[o + b] = e
            sum_sq[b] += e * e
            if want_bm:
                bm[o + b] = g * (yr * c + yi * s)


@njit(cache=True, nogil=True)
def _compression_exponent_block(level_log, low_knee, slope, ohc_attn, level_db_spl):
    """In place: log10 of the control envelope -> natural log of the OHC gain.

    Gain in dB = -ohc_attn - (L - low_knee) * slope, with the control level L
    in dB SPL clipped to [low_knee, 100]; returned as dB * ln(10) / 20 so that
    ``exp`` gives the linear gain.  ``level_log`` (time * bands,).
    """
    nb = _CHUNK
    to_ln = math.log(10.0) / 20
    for t in range(level_log.shape[0] // nb):
        o = t * nb
        for b in range(nb):
            lev = level_db_spl + 20 * level_log[o + b]
            lev = min(lev, _UPPER_KNEE_DB)
            lev = max(lev, low_knee[b])
            level_log[o + b] = (-ohc_attn[b] - (lev - low_knee[b]) * slope[b]) * to_ln


@njit(cache=True, nogil=True)
def _compress_block(gain, env, bm, b0, b1, a1, z, env_out, bm_out, t0, want_bm):
    """Smooth the OHC gain (first-order low-pass at 800 Hz, lfilter's operation
    order, state ``z`` (bands,)) and apply it to the envelope and BM motion.

    ``gain``, ``env``, ``bm``: (time * bands,) in (time, band) order;
    results go to columns ``t0 ...`` of ``env_out`` / ``bm_out`` (bands, samples).
    """
    nb = _CHUNK
    for t in range(gain.shape[0] // nb):
        o = t * nb
        for b in range(nb):
            g = gain[o + b]
            y = z[b] + b0 * g
            z[b] = g * b1 - y * a1
            env_out[b, t0 + t] = y * env[o + b]
            if want_bm:
                bm_out[b, t0 + t] = y * bm[o + b]


@njit(cache=True, nogil=True)
def _ihc_block(env_log, env_db, bm, offset, p, v, t0, want_bm):
    """dB SL conversion and IHC rapid and short-term adaptation over one block, in place.

    ``env_log`` (time * bands,), (time, band) order: log10 of the compressed
    envelope (+1e-30) at columns ``t0 ...`` of ``env_db`` (bands, samples),
    which holds that envelope and receives the adapted envelope in dB SL
    (``offset`` = level - IHC attenuation, per band, then clipped at 0).
    ``bm`` (bands, samples) is rescaled alike when ``want_bm``: to a dB SL
    envelope, then by the adaptation gain.  ``p`` = (r2, r1*r2*c1*fs,
    r2*r3*c2*fs, a11, a12, a21, a22, denom, 1/r1) of the RC-circuit model;
    ``v`` (2 * bands,): its voltages, carried between blocks.
    """
    nb = _CHUNK
    r2, p12, p23, a11, a12, a21, a22, denom, r1_inv = p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8]
    for t in range(env_log.shape[0] // nb):
        o = t * nb
        for b in range(nb):
            v0 = max(offset[b] + 20 * env_log[o + b], 0.0)
            b_1 = v0 * r2 + p12 * v[b]
            b_2 = p23 * v[nb + b]
            v1 = denom * (a22 * b_1 - a12 * b_2)
            v[nb + b] = denom * (-a21 * b_1 + a11 * b_2)
            v[b] = v1
            out = max((v0 - v1) * r1_inv, 0.0)
            if want_bm:
                lin = env_db[b, t0 + t]
                bm_sl = ((v0 + _SMALL) / (lin + _SMALL)) * bm[b, t0 + t]
                bm[b, t0 + t] = ((out + _SMALL) / (v0 + _SMALL)) * bm_sl
            env_db[b, t0 + t] = out


@njit(cache=True, nogil=True)
def _shift_rows(a, shifts):
    """In place, row by row: advance row r by ``shifts[r]`` samples (delay if negative), zero fill."""
    n = a.shape[1]
    for r in range(a.shape[0]):
        s = shifts[r]
        if s > 0:
            for t in range(n - s):
                a[r, t] = a[r, t + s]
            for t in range(max(n - s, 0), n):
                a[r, t] = 0.0
        elif s < 0:
            d = -s
            for t in range(n - 1, d - 1, -1):
                a[r, t] = a[r, t - d]
            for t in range(min(d, n)):
                a[r, t] = 0.0


def _ihc_parameters(fs: float, delta: float = 2.0) -> np.ndarray:
    """Equivalent-circuit constants of the IHC adaptation (2 ms and 60 ms time constants)."""
    delta = max(delta, 1.0001)
    tau1, tau2 = 0.001 * 2, 0.001 * 60
    dt = 1 / fs
    r1 = 1 / delta
    r2 = 0.5 * (1 - r1)
    r3 = r2
    c1 = tau1 * (r1 + r2) / (r1 * r2)
    c2 = tau2 / ((r1 + r2) * r3)
    a11 = r1 + r2 + r1 * r2 * (c1 / dt)
    a12 = -r1
    a21 = -r3
    a22 = r2 + r3 + r2 * r3 * (c2 / dt)
    denom = 1 / ((a11 * a22) - (a21 * a12))
    return np.array([r2, r1 * r2 * (c1 / dt), r2 * r3 * (c2 / dt), a11, a12, a21, a22, denom, 1 / r1])


def _bandwidth_for_level(control_rms, bw_min, bw_max, level_db_spl):
    """Widen the filters with the control-band level: bw_min below 50 dB SPL, bw_max above 100."""
    with np.errstate(divide="ignore"):  # a silent band is -inf dB: the narrowest filter
        level = 20 * np.log10(control_rms) + level_db_spl
    out = bw_min + ((level - 50) / 50) * (bw_max - bw_min)
    return np.where(level < 50, bw_min, np.where(level > 100, bw_max, out))


def _align_lags(ref: np.ndarray, out: np.ndarray, max_lag: int) -> np.ndarray:
    """Per row: delay of ``out`` behind ``ref`` (samples) at the cross-correlation peak within ``max_lag``.

    Equal to the reference's search of ``correlate(ref[b], out[b], "full")``
    (first maximum over lags ``1 - max_lag ... max_lag``), computed faster: a
    float32 FFT correlation screens for the lags that can be the peak given
    float32 rounding (error < 7e-7 ||ref|| ||out|| measured; the margin is
    2e-5), and those few are then computed exactly in float64.  The screen
    needs only the lags searched, so it cuts ``out`` into blocks, correlates
    each with the stretch of ``ref`` its lags reach, and sums the cross spectra
    (short cache-resident FFTs, one short inverse).

    Args:
        ref, out: ``(bands, samples)``.

    Returns:
        ``(bands,)`` int64 delays.
    """
    nb, n = ref.shape
    lags = min(max_lag, n)
    lo, hi = 1 - lags, min(lags, n - 1)
    size = min(_ALIGN_FFT, _fft_size(n + hi - lo))
    size = max(size, _fft_size(2 * (hi - lo + 1)))
    block = size - (hi - lo)
    nblocks = -(-n // block)
    seg32, blk32 = np.empty((nblocks, size), np.float32), np.empty((nblocks, size), np.float32)
    norms = np.empty(2)
    delays = np.empty(nb, dtype=np.int64)
    for b in range(nb):
        _correlation_blocks(ref[b], out[b], lo, block, seg32, blk32, norms)
        rough = _blocked_correlation(seg32, blk32, hi - lo + 1)
        margin = _ALIGN_SCREEN * math.sqrt(norms[0] * norms[1])
        candidates = np.flatnonzero(rough >= rough.max() - margin)
        if len(candidates) > _ALIGN_MAX_CANDIDATES:
            seg64, blk64 = np.empty((nblocks, size)), np.empty((nblocks, size))
            _correlation_blocks(ref[b], out[b], lo, block, seg64, blk64, norms)
            best = int(np.argmax(_blocked_correlation(seg64, blk64, hi - lo + 1)))
        else:
            exact = [_lagged_dot(ref[b], out[b], int(c) + lo) for c in candidates]
            best = int(candidates[int(np.argmax(exact))])
        delays[b] = -(best + lo)
    return delays


@njit(cache=True, nogil=True, fastmath=True)  # fastmath: the norms' sums vectorise (they only set a margin)
def _correlation_blocks(ref, out, lo, block, seg, blk, norms):
    """Cut a row pair for :func:`_blocked_correlation`: ``blk[j]`` = ``out[j*block ...]``
    (``block`` samples, zero padded), ``seg[j]`` = the ``ref`` stretch its lags reach,
    from ``j*block + lo``; zero outside the rows.  ``norms`` = sum of squares of ``ref``, ``out``."""
    n = ref.shape[0]
    size = seg.shape[1]
    for j in range(seg.shape[0]):
        # Plain ranges (no per-sample tests), so that the copies vectorise.
        s0 = j * block + lo
        u0, u1 = min(size, max(0, -s0)), max(0, min(size, n - s0))
        u1 = max(u0, u1)
        seg[j, :u0] = 0.0
        for u in range(u0, u1):
            seg[j, u] = ref[s0 + u]
        seg[j, u1:] = 0.0
        t0 = j * block
        m = max(0, min(block, n - t0))
        for u in range(m):
            blk[j, u] = out[t0 + u]
        blk[j, m:] = 0.0
    rr = 0.0
    oo = 0.0
    for i in range(n):
        rr += ref[i] * ref[i]
        oo += out[i] * out[i]
    norms[0] = rr
    norms[1] = oo


def _blocked_correlation(seg: np.ndarray, blk: np.ndarray, count: int) -> np.ndarray:
    """``sum_t ref[t + lo + i] * out[t]`` for ``i < count`` from :func:`_correlation_blocks`'s cuts, float64."""
    size = seg.shape[1]
    cross = _cross_spectrum_sum(sfft.rfft(seg, axis=1), sfft.rfft(blk, axis=1))
    return sfft.irfft(cross, size)[:count]


@njit(cache=True, nogil=True)
def _cross_spectrum_sum(a, b):
    """``sum_j a[j] * conj(b[j])`` over the rows, accumulated in complex128."""
    acc = np.zeros(a.shape[1], dtype=np.complex128)
    for j in range(a.shape[0]):
        for k in range(a.shape[1]):
            xr, xi = np.float64(a[j, k].real), np.float64(a[j, k].imag)
            yr, yi = np.float64(b[j, k].real), np.float64(b[j, k].imag)
            acc[k] += complex(xr * yr + xi * yi, xi * yr - xr * yi)
    return acc


def _fft_size(n: int) -> int:
    """Smallest 2**k, 3 * 2**k or 9 * 2**k >= n: the quickest real FFT sizes here
    (scipy's next_fast_len also offers 5-, 7- and 11-smooth sizes, 30-50 % slower)."""
    return min(f << max(0, math.ceil(math.log2(n / f))) for f in (1, 3, 9))


@njit(cache=True, nogil=True, fastmath=True)
def _lagged_dot(ref, out, lag):
    """``sum_n ref[n + lag] * out[n]`` over the overlap (numba: no BLAS threads, no slicing)."""
    n = ref.shape[0]
    start = max(0, -lag)
    stop = min(n, n - lag)
    acc = 0.0
    for i in range(start, stop):
        acc += ref[i + lag] * out[i]
    return acc


def _group_delays(bandwidth, center_freqs, fs) -> np.ndarray:
    """Delay (samples) to add to each band so that all share the largest gammatone group delay."""
    # (The reference multiplies in this order here, unlike in the filterbank.)
    a = np.exp(-(2 * np.pi / fs * 1.019 * bandwidth * _erb(center_freqs)))
    delays = np.zeros(len(a))
    for n, an in enumerate(a):
        b = np.array([1.0, 4.0 * an, 4.0 * an * an])
        den = np.array([1.0, -4.0 * an, 6.0 * an * an, -4.0 * an * an * an, an * an * an * an])
        delays[n] = group_delay((b, den), w=1)[1][0]
    delays = np.rint(delays).astype(int)
    delays -= delays.min()
    return delays.max() - delays


def _rms_to_sl(rms, control_rms, loss: CochlearLoss, level_db_spl) -> np.ndarray:
    """Long-term band level in dB SL: compress the RMS as the control RMS dictates, less IHC loss."""
    control_db = level_db_spl + 20 * np.log10(np.maximum(control_rms, _SMALL))
    control_db = np.maximum(np.minimum(control_db, _UPPER_KNEE_DB), loss.low_knee)
    gain = -loss.ohc_attn - (control_db - loss.low_knee) * (1 - (1 / loss.ratio))
    level = np.maximum(level_db_spl + 20 * np.log10(np.maximum(rms, _SMALL)), 0)
    return np.maximum(level + gain - loss.ihc_attn, 0)


def _nalr_equalise(ref: np.ndarray, hearing_loss: np.ndarray) -> np.ndarray:
    """The reference through the NAL-R prescription for ``hearing_loss`` (140 taps at 24 kHz), delay removed."""
    from ..dsp.nalr import nalr_fir

    nfir = 140
    fir = nalr_fir(Audiogram(AUDIOMETRIC_FREQS, hearing_loss), MODEL_FS, nfir)
    return np.convolve(ref, fir)[nfir : nfir + len(ref)]


def aligned_inputs(ref: np.ndarray, ref_fs: float, proc: np.ndarray, proc_fs: float) -> tuple[np.ndarray, np.ndarray]:
    """The ear model's first steps, the same for every ear and metric: both signals
    checked, resampled to 24 kHz, trimmed to equal length and aligned.

    Args:
        ref: reference signal, ``(samples,)`` at ``ref_fs`` Hz.
        proc: processed signal, ``(samples,)`` at ``proc_fs`` Hz; may be delayed against ``ref``.

    Returns:
        ``(ref, proc)`` at :data:`MODEL_FS`, equal lengths, for :func:`ear_model_aligned`.

    Raises:
        SignalError: not 1-D, empty, non-finite, or a silent reference.
    """
    ref = _check_signal(ref, "reference")
    proc = _check_signal(proc, "processed")
    if not np.any(ref):
        raise SignalError("reference signal is silent (all zeros); the model needs speech in the reference")
    ref = resample_to_model_rate(ref, ref_fs)
    proc = resample_to_model_rate(proc, proc_fs)
    n = min(len(ref), len(proc))
    return align_inputs(ref[:n], proc[:n])


def _check_itype(itype) -> None:
    if itype not in (0, 1, 2):
        raise ValueError(f"itype must be 0 (intelligibility), 1 or 2 (quality), got {itype!r}")


def _check_signal(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise SignalError(f"{name} signal has shape {x.shape}; expected a 1-D (mono) array")
    if x.size == 0:
        raise SignalError(f"{name} signal is empty")
    if not np.all(np.isfinite(x)):
        raise SignalError(f"{name} signal contains NaN or Inf")
    return x


def ear_model_aligned(
    inputs: tuple[np.ndarray, np.ndarray],
    hearing_loss: np.ndarray,
    itype: int,
    level_db_spl: float,
    rng: np.random.RandomState,
    *,
    shift: float | None = None,
    env_summary: Summary | None = None,
    bm_summary: Summary | None = None,
    threads: int | None = None,
) -> EarModelOutput:
    """Run both signals of an :func:`aligned_inputs` pair through the auditory model (32 bands).

    The bands are modelled :data:`_CHUNK` at a time and leave the model as
    the caller's per-band summaries, so neither the envelopes nor the
    basilar-membrane (BM) motion exist for all bands at once.

    Args:
        inputs: ``(ref, proc)`` from :func:`aligned_inputs` (computed once, they
            serve every metric of the pair), RMS 1 = ``level_db_spl`` dB SPL.
        hearing_loss: loss in dB HL at :data:`AUDIOMETRIC_FREQS`, ``(6,)``
            (see :func:`hearing_loss_at_model_freqs`).
        itype: 0 = intelligibility (normal-hearing reference), 1 = quality
            (impaired reference with NAL-R), 2 = quality with a reference
            that already carries NAL-R (impaired, no equalisation added).
        level_db_spl: dB SPL of a signal with RMS 1.
        rng: source of the threshold noise added to the BM motion; advanced by
            ``2 * 32 * samples`` draws (all reference bands, then all processed)
            whether or not ``bm_summary`` is given.
        shift: basal shift of the control filters (None: none, as in HASPI/HASQI).
        env_summary: called with the envelopes of each chunk of bands, in dB
            SL, ``(ref_db, proc_db)``, each ``(chunk bands, samples)`` (valid
            only during the call); returns a tuple of arrays whose first axis
            is the band.  None: copies of the envelopes.
        bm_summary: likewise for the BM motion (with the envelope in dB SL and
            the threshold noise added).  None: the BM motion is not computed (HASPI).
        threads: chunks of bands modelled concurrently on up to this many
            threads (None: ``min(2, os.cpu_count())``; 1: one after the other;
            fewer for long signals, see :data:`_CONCURRENT_CHUNK_BYTES`); the
            summaries must then be thread-safe.  The results and ``rng``'s
            final state are the same for any count.

    Returns:
        :class:`EarModelOutput`.
    """
    _check_itype(itype)
    threads = resolve_threads(threads)
    hearing_loss = np.asarray(hearing_loss, dtype=np.float64)
    fs, nb, want_bm = MODEL_FS, N_BANDS, bm_summary is not None

    cf = center_frequencies(nb)
    losses = (cochlear_loss(np.zeros(len(hearing_loss)) if itype == 0 else hearing_loss, cf), cochlear_loss(hearing_loss, cf))
    cf_control = center_frequencies(nb, shift)
    bw_max = cochlear_loss(np.full(6, 100.0), cf_control).bandwidth
    chunks = [slice(b0, b0 + _CHUNK) for b0 in range(0, nb, _CHUNK)]

    ref, proc = inputs
    if itype == 1:
        ref = _nalr_equalise(ref, hearing_loss)
    signals = middle_ear(ref), middle_ear(proc)
    n = len(ref)
    blocks = [(t0, min(t0 + _BLOCK, n)) for t0 in range(0, n, _BLOCK)]

    # Pass 1: the level in each wide control filter sets the band's bandwidth.
    def control_levels() -> np.ndarray:
        sq, scratch = np.zeros((2, nb)), np.empty(_BLOCK * _CHUNK)
        # (No BM output: an empty array of its own, as one that shares the envelope's
        # address defeats the kernel's vectorisation.)
        no_bm = np.empty(0)
        for k, c in ((k, c) for k in range(2) for c in chunks):
            work = _filterbank_work(bw_max[c], cf_control[c], fs)
            for t0, t1 in blocks:
                _gammatone_block(signals[k][t0:t1], work, scratch[: (t1 - t0) * _CHUNK], no_bm, sq[k, c], False)
        return sq

    # Threshold noise: all reference bands' draws come first, then the processed
    # signal's; each chunk's two streams start where its rows' draws lie.
    def noise_streams() -> list:
        if not want_bm:
            skip_standard_normal(rng, 2 * nb * n)
            return [None] * len(chunks)
        stream = NormalStream(rng)
        starts = []
        for i in range(2 * len(chunks)):
            starts.append(stream.copy())
            if i < 2 * len(chunks) - 1:
                stream.skip(_CHUNK * n)
        return [(starts[i], starts[len(chunks) + i]) for i in range(len(chunks))]

    # The noise streams are positioned (a walk along the stream) beside pass 1.
    control_sq, noise = run_concurrently((control_levels, noise_streams), threads)
    control_rms = np.sqrt(control_sq / n)
    bandwidth = [_bandwidth_for_level(control_rms[k], losses[k].bandwidth, bw_max, level_db_spl) for k in range(2)]
    # Equalise the gammatone group delays (the reference's bandwidths for both).
    delays = -_group_delays(bandwidth[0], cf, fs)
    noise_gain = 10 ** ((_IHC_NOISE_DB - level_db_spl) / 20)

    # Pass 2, a chunk of bands at a time: envelopes and BM motion, compressed,
    # aligned, adapted, delayed; the BM motion summarised.
    env_summary = env_summary or (lambda ref_db, proc_db: (ref_db.copy(), proc_db.copy()))
    max_lag = int(np.rint(_ALIGN_RANGE_S * fs))

    chunk_bytes = (4 if want_bm else 2) * _CHUNK * n * 8
    workers = max(1, min(threads, _CONCURRENT_CHUNK_BYTES // chunk_bytes))
    # One set of work buffers per thread, reused from chunk to chunk (fresh pages cost).
    free_buffers = queue.SimpleQueue()
    for _ in range(workers):
        free_buffers.put((
            [np.empty((_CHUNK, n)) for _ in range(2)],
            [np.empty((_CHUNK, n)) if want_bm else np.empty((0, 0)) for _ in range(2)],
            np.empty(_BLOCK * _CHUNK),
        ))

    def chunk_outputs(job):
        c, streams = job
        buffers = free_buffers.get()
        try:
            return model_chunk(c, streams, *buffers)
        finally:
            free_buffers.put(buffers)

    def model_chunk(c, streams, env_c, bm_out, scratch):
        env_sq = np.zeros((2, _CHUNK))
        for k in range(2):
            _compressed_bands(signals[k], blocks, bw_max[c], cf_control[c], bandwidth[k][c], cf[c], losses[k], c,
                              level_db_spl, env_c[k], bm_out[k], env_sq[k], want_bm, scratch)
        # Align each processed band to the reference band.
        for ref_a, proc_a in [(env_c[0], env_c[1])] + ([(bm_out[0], bm_out[1])] if want_bm else []):
            _shift_rows(proc_a, _align_lags(ref_a, proc_a, max_lag))
        for k in range(2):
            _ihc_adaptation(env_c[k], bm_out[k], level_db_spl - losses[k].ihc_attn[c], blocks, want_bm, scratch)
        _shift_rows(env_c[0], delays[c])
        _shift_rows(env_c[1], delays[c])
        env_part = env_summary(env_c[0], env_c[1])
        bm_part = None
        if want_bm:
            for k in range(2):
                streams[k].add(bm_out[k], noise_gain)
                _shift_rows(bm_out[k], delays[c])
            bm_part = bm_summary(bm_out[0], bm_out[1])
        return env_part, bm_part, env_sq

    parts = thread_map(chunk_outputs, zip(chunks, noise), workers)
    if want_bm:
        noise[-1][1].save()
    env_rms = np.sqrt(np.concatenate([p[2] for p in parts], axis=1) / n)

    return EarModelOutput(
        env=_stack([p[0] for p in parts]),
        bm=_stack([p[1] for p in parts]) if want_bm else None,
        ref_sl=_rms_to_sl(env_rms[0], control_rms[0], losses[0], level_db_spl),
        proc_sl=_rms_to_sl(env_rms[1], control_rms[1], losses[1], level_db_spl),
        fs=fs,
        center_freqs=cf,
    )


def _stack(parts: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    """Per-chunk summaries joined along the band axis (the first)."""
    return tuple(np.concatenate(arrays) for arrays in zip(*parts))


def _ohc_gain(control_env, loss, c, level_db_spl):
    """In place: control envelope (time * bands,) of chunk ``c`` -> linear OHC gain."""
    np.maximum(control_env, _SMALL, out=control_env)
    np.log10(control_env, out=control_env)
    _compression_exponent_block(control_env, loss.low_knee[c], 1 - (1 / loss.ratio[c]), loss.ohc_attn[c], level_db_spl)
    np.exp(control_env, out=control_env)


def _compressed_bands(
    x, blocks, bw_control, cf_control, bandwidth, cf, loss, c, level_db_spl, env_out, bm_out, env_sq, want_bm, scratch
):
    """Pass 2 for one signal and one chunk of bands ``c``: envelopes and BM motion of
    the gammatone filters, compressed by the OHC gain the control envelope sets.

    Writes ``env_out`` and (``want_bm``) ``bm_out``, each ``(chunk bands, samples)``;
    adds the squared uncompressed envelope to ``env_sq`` (chunk bands,).
    """
    lp_b, lp_a = butter(1, 800 / (0.5 * MODEL_FS))
    work_control = _filterbank_work(bw_control, cf_control, MODEL_FS)
    work = _filterbank_work(bandwidth, cf, MODEL_FS)
    z_lp = np.zeros(_CHUNK)
    gain_buf = np.empty(_BLOCK * _CHUNK)
    bm = np.empty(_BLOCK * _CHUNK) if want_bm else np.empty(0)
    for t0, t1 in blocks:
        m = (t1 - t0) * _CHUNK
        xb = x[t0:t1]
        gain, e = gain_buf[:m], scratch[:m]
        _gammatone_block(xb, work_control, gain, bm, np.zeros(_CHUNK), False)
        _ohc_gain(gain, loss, c, level_db_spl)
        _gammatone_block(xb, work, e, bm[:m], env_sq, want_bm)
        _compress_block(gain, e, bm[:m], lp_b[0], lp_b[1], lp_a[1], z_lp, env_out, bm_out, t0, want_bm)


def _ihc_adaptation(env, bm, offset, blocks, want_bm, scratch):
    """In place: envelopes ``env`` (chunk bands, samples) to dB SL (``offset`` =
    level - IHC attenuation per band) and IHC adaptation; ``bm`` rescaled alike."""
    ihc = _ihc_parameters(MODEL_FS)
    v = np.zeros(2 * _CHUNK)
    for t0, t1 in blocks:
        lg = scratch[: (t1 - t0) * _CHUNK]
        np.add(env[:, t0:t1].T, _SMALL, out=lg.reshape(-1, _CHUNK))
        np.log10(lg, out=lg)
        _ihc_block(lg, env, bm, offset, ihc, v, t0, want_bm)
