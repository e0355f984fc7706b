"""HASPI v2: the Hearing-Aid Speech Perception Index (Kates & Arehart, 2021).

Intelligibility from the auditory ear model (:mod:`rtha.metrics.ear_model`,
intelligibility mode: normal-hearing reference, impaired processed ear):

1. the band envelopes (dB SL) are low-passed at 320 Hz and subsampled;
2. each time slice of the log spectrum is fitted with 6 half-cosine basis
   functions (mel-cepstrum-like), after dropping near-silent slices and adding
   a 0.1 dB dither;
3. each cepstral sequence passes a bank of 10 modulation filters (2-256 Hz);
4. per modulation filter, the normalised covariance of reference and processed
   coefficients is averaged over basis functions 2-6: the 10 ``raw`` features;
5. an ensemble of 10 small neural networks maps them to the score (0-1).

The numbers equal pyclarity 0.9.0 (``clarity.evaluator.haspi.haspi_v2``) to
about 1e-12 when ``rng`` is ``numpy.random.RandomState(s)`` and pyclarity runs
after ``numpy.random.seed(s)``.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from scipy import fft as sfft

from ..audiogram import CHALLENGE_LEVEL_DB_SPL, Audiogram, Listener
from . import haspi_weights
from .ear_model import MODEL_FS, SignalError, aligned_inputs, ear_model_aligned, hearing_loss_at_model_freqs
from .legacy_normal import add_standard_normal
from .threads import resolve_threads, thread_map

#: Envelope low-pass cutoff (Hz) and the nominal subsampled envelope rate (Hz).
ENVELOPE_CUTOFF_HZ = 320.0
ENVELOPE_FS = 8 * ENVELOPE_CUTOFF_HZ
#: Cepstral basis functions; slices at or below SILENCE_DB (dB SL) are dropped.
N_BASIS = 6
SILENCE_DB = 2.5
#: RMS (dB) of the dither added to the envelopes (IHC firing jitter).
DITHER_DB = 0.1
#: Modulation filter centre frequencies (Hz).
MODULATION_CFS = np.array([2, 6, 10, 16, 25, 40, 64, 100, 160, 256], dtype=np.float64)
#: Default seed of the internal noise when no ``rng`` is given.
DEFAULT_SEED = 0


def noise_rng(rng: np.random.RandomState | None) -> np.random.RandomState:
    """``rng``, or a fresh ``RandomState(DEFAULT_SEED)`` when None."""
    return np.random.RandomState(DEFAULT_SEED) if rng is None else rng


def envelope_lowpass_taps(cutoff_hz: float, fs: float) -> np.ndarray:
    """Even-length von Hann low-pass (-3 dB near ``cutoff_hz``) with unit sum.

    Uses MATLAB's ``hanning`` (no zero end points), so the output of a
    non-negative envelope stays non-negative.
    """
    nhalf = int(round(0.001 * (0.7 * (1000 * (1 / cutoff_hz))) * fs)) // 2
    window = 0.5 * (1 - np.cos(2 * np.pi * np.arange(1, nhalf + 1) / (2 * nhalf + 1)))
    taps = np.concatenate((window, window[::-1]))
    return taps / np.sum(taps)


@njit(cache=True, nogil=True, fastmath=True)
def _fir_subsample(x, taps, step, offset, out):
    """``out[j, b] = sum_k taps[k] * x[b, j*step - offset + k]`` for even-length
    symmetric ``taps``, ``x`` taken as zero outside its rows; mirrored taps
    share a multiply.  Outputs that reach past the ends are computed from a
    zero-padded copy of their stretch, the rest straight from ``x``."""
    half = taps.shape[0] // 2
    last = taps.shape[0] - 1
    n = x.shape[1]
    buf = np.zeros(taps.shape[0])
    for b in range(x.shape[0]):
        row = x[b]
        for j in range(out.shape[0]):
            o = j * step - offset
            acc = 0.0
            if o >= 0 and o + last < n:
                for k in range(half):
                    acc += taps[k] * (row[o + k] + row[o + last - k])
            else:
                for k in range(last + 1):
                    i = o + k
                    buf[k] = row[i] if 0 <= i < n else 0.0
                for k in range(half):
                    acc += taps[k] * (buf[k] + buf[last - k])
            out[j, b] = acc


def envelope_lowpass(env_db: np.ndarray, fs: float, cutoff_hz: float = ENVELOPE_CUTOFF_HZ, fs_sub: float = ENVELOPE_FS) -> np.ndarray:
    """Low-pass and subsample band envelopes.

    Args:
        env_db: ``(bands, samples)`` envelopes in dB SL at ``fs``.

    Returns:
        ``(slices, bands)``: the centred (zero-phase) low-pass output at every
        ``floor(fs / fs_sub)``-th sample, starting with the first.
    """
    taps = envelope_lowpass_taps(cutoff_hz, fs)
    nhalf = len(taps) // 2
    step = int(np.floor(fs / fs_sub))
    nb, n = env_db.shape
    out = np.empty(((n + step - 1) // step, nb))
    # Symmetric taps: output t = sum_k taps[k] * env[t - nhalf + 1 + k].
    _fir_subsample(np.ascontiguousarray(env_db), taps, step, nhalf - 1, out)
    return out


def cepstral_basis(nbands: int, nbasis: int = N_BASIS) -> np.ndarray:
    """Half-cosine basis functions over the bands, unit norm, ``(bands, nbasis)``."""
    k = np.arange(nbands)
    basis = np.cos(np.arange(nbasis)[None, :] * np.pi * k[:, None] / (nbands - 1))
    return basis / np.sqrt(np.sum(basis**2, axis=0))


def cepstral_coefficients(
    ref_db: np.ndarray,
    proc_db: np.ndarray,
    rng: np.random.RandomState,
    silence_db: float = SILENCE_DB,
    dither_db: float = DITHER_DB,
    nbasis: int = N_BASIS,
) -> tuple[np.ndarray, np.ndarray]:
    """Cepstral coefficients of the audible slices, mean removed.

    Args:
        ref_db, proc_db: ``(slices, bands)`` subsampled envelopes in dB SL.
        rng: dither source: ``(audible slices, bands)`` draws for the reference,
            then as many for the processed signal.

    Returns:
        ``(audible slices, nbasis)`` for reference and processed.

    Raises:
        SignalError: fewer than 2 reference slices above ``silence_db``.
    """
    nbands = ref_db.shape[1]
    loudness = 20 * np.log10(np.sum(10 ** (ref_db / 20), axis=1) / nbands)
    audible = np.flatnonzero(loudness > silence_db)
    if audible.size <= 1:
        raise SignalError(
            f"reference is too quiet to score: {audible.size} envelope slices above {silence_db} dB SL; "
            "check the level (level_db_spl) and that the reference holds speech"
        )
    ref = np.ascontiguousarray(ref_db[audible])
    proc = np.ascontiguousarray(proc_db[audible])
    add_standard_normal(rng, ref, dither_db)
    add_standard_normal(rng, proc, dither_db)
    basis = cepstral_basis(nbands, nbasis)
    ref_cep = _project(ref, basis)
    proc_cep = _project(proc, basis)
    return ref_cep - ref_cep.mean(axis=0), proc_cep - proc_cep.mean(axis=0)


@njit(cache=True, nogil=True)
def _project(x, basis):
    """``x @ basis`` without BLAS, whose threads stall on a busy machine for this small product."""
    out = np.zeros((x.shape[0], basis.shape[1]))
    for i in range(x.shape[0]):
        for j in range(basis.shape[0]):
            xij = x[i, j]
            for k in range(basis.shape[1]):
                out[i, k] += xij * basis[j, k]
    return out


def modulation_filters(fs_sub: float = ENVELOPE_FS) -> list[np.ndarray]:
    """FIR modulation filterbank: a low-pass at 2 Hz, then band-passes at :data:`MODULATION_CFS`.

    Each band-pass is the reference's complex demodulation, von Hann low-pass
    and remodulation written as one real linear-phase filter:
    ``2 * hann(m) * cos(w (m - centre))``.  Windows are 0.24 s long up to 10 Hz,
    constant-Q above; only bands whose upper edge is below Nyquist are kept.
    """
    cfs = MODULATION_CFS
    edges = [0.0, 4.0, 8.0]
    for k in range(3, len(cfs) + 1):
        edges.append(cfs[k - 1] ** 2 / edges[k - 1])
    nmod = int(np.sum(np.array(edges) < 0.5 * fs_sub)) - 1
    t = np.full(nmod, 0.24)
    t[2:] = 0.24 * cfs[2] / cfs[2:nmod]
    filters = []
    for k in range(nmod):
        nfir = int(2 * np.floor(t[k] * fs_sub / 2))
        h = np.hanning(nfir + 1)
        h /= np.sum(h)
        if k > 0:
            h = 2 * h * np.cos(np.pi * cfs[k] / (0.5 * fs_sub) * (np.arange(nfir + 1) - nfir // 2))
        filters.append(h)
    return filters


def modulation_correlations(ref_cep: np.ndarray, proc_cep: np.ndarray, fs_sub: float = ENVELOPE_FS) -> np.ndarray:
    """The 10 HASPI features: per modulation band, |normalised covariance| of
    reference and processed, averaged over cepstral coefficients 2-6.

    Args:
        ref_cep, proc_cep: ``(slices, nbasis)`` from :func:`cepstral_coefficients`.

    Returns:
        ``(modulation bands,)``.
    """
    # Rows: reference coefficients 2-6, then processed 2-6.
    x = np.concatenate((ref_cep[:, 1:6], proc_cep[:, 1:6]), axis=1).T
    half_rows, n = x.shape[0] // 2, x.shape[1]
    filters = modulation_filters(fs_sub)
    size = sfft.next_fast_len(n + max(len(h) for h in filters) - 1, real=True)
    spectrum = sfft.rfft(x, size, axis=1)
    out = np.empty(len(filters))
    for k, h in enumerate(filters):
        half = (len(h) - 1) // 2
        y = sfft.irfft(spectrum * sfft.rfft(h, size), size, axis=1)[:, half : half + n]
        y -= y.mean(axis=1, keepdims=True)
        a, b = y[:half_rows], y[half_rows:]
        xx, yy = np.sum(a * a, axis=1), np.sum(b * b, axis=1)
        valid = (xx >= 1e-30) & (yy >= 1e-30)
        cov = np.where(valid, np.abs(np.sum(a * b, axis=1)) / np.sqrt(np.where(valid, xx * yy, 1.0)), 0.0)
        out[k] = np.mean(cov)
    return out


def neural_network_ensemble(features: np.ndarray) -> float:
    """HASPI v2 score from the 10 features: mean of 10 logistic networks, normalised."""
    x = np.concatenate(([1.0], features))
    hidden = 1 / (1 + np.exp(-np.einsum("i,kij->kj", x, haspi_weights.HIDDEN)))
    hidden = np.concatenate((np.ones((hidden.shape[0], 1)), hidden), axis=1)
    output = 1 / (1 + np.exp(-np.einsum("kj,kj->k", hidden, haspi_weights.OUTPUT)))
    return float(np.mean(output) / haspi_weights.NORMALIZATION)


def haspi_v2(
    ref: np.ndarray,
    proc: np.ndarray,
    fs: float,
    audiogram: Audiogram,
    level_db_spl: float = 65.0,
    rng: np.random.RandomState | None = None,
    threads: int | None = None,
) -> tuple[float, np.ndarray]:
    """HASPI v2 of one ear.

    Args:
        ref: clean reference speech, ``(samples,)``, without hearing-aid gain.
        proc: processed signal (noise, distortion, hearing-aid gain),
            ``(samples,)`` at the same rate; may be longer or delayed.
        fs: sample rate in Hz of both.
        audiogram: the ear's hearing thresholds (read at 250 Hz-6 kHz,
            interpolated in log frequency).
        level_db_spl: dB SPL of a signal with RMS 1.
        rng: source of the model's internal noise; default
            ``RandomState(0)`` (deterministic).  With ``RandomState(s)`` the
            result equals pyclarity's after ``numpy.random.seed(s)``.
        threads: threads for the ear model's chunks of bands (None:
            ``min(2, os.cpu_count())``; 1: this thread only); the result does
            not depend on it.

    Returns:
        ``(score, raw)``: intelligibility 0-1 and the 10 modulation-filter
        correlations, ``(10,)``.

    Raises:
        SignalError: not 1-D, empty, non-finite, or a silent reference.
    """
    return haspi_v2_aligned(aligned_inputs(ref, fs, proc, fs), audiogram, level_db_spl, rng, threads)


def haspi_v2_aligned(
    inputs: tuple[np.ndarray, np.ndarray],
    audiogram: Audiogram,
    level_db_spl: float = 65.0,
    rng: np.random.RandomState | None = None,
    threads: int | None = None,
) -> tuple[float, np.ndarray]:
    """:func:`haspi_v2` of a pair already through :func:`~rtha.metrics.ear_model.aligned_inputs`."""
    rng = noise_rng(rng)
    model = ear_model_aligned(
        inputs, hearing_loss_at_model_freqs(audiogram), 0, level_db_spl, rng, env_summary=_lowpass_summary,
        threads=threads,
    )
    ref_lp, proc_lp = (np.ascontiguousarray(x.T) for x in model.env)
    ref_cep, proc_cep = cepstral_coefficients(ref_lp, proc_lp, rng)
    raw = modulation_correlations(ref_cep, proc_cep)
    return neural_network_ensemble(raw), raw


def _lowpass_summary(ref_db: np.ndarray, proc_db: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`envelope_lowpass` of the ear model's envelopes (24 kHz), a chunk of bands at a time, ``(bands, slices)``."""
    return envelope_lowpass(ref_db, MODEL_FS).T, envelope_lowpass(proc_db, MODEL_FS).T


def check_stereo(x, name: str) -> np.ndarray:
    """``x`` as float64 ``(2, samples)`` (left, right); SignalError naming ``name`` otherwise."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != 2:
        raise SignalError(f"{name} has shape {x.shape}; expected (2, samples): left and right ears")
    return x


def stereo_metric(score_inputs):
    """Decorator: ``score_inputs(inputs_lr, listener, level_db_spl, rng, threads)``
    becomes ``f(ref_lr, proc_lr, fs, listener, level_db_spl=CHALLENGE_LEVEL_DB_SPL, rng=None, threads=None) -> float``.

    The public function checks both signals are ``(2, samples)`` (left,
    right), resolves ``threads`` (None: ``min(2, os.cpu_count())``; 1: this
    thread only) and resamples and aligns each ear once (:func:`ear_inputs`);
    ``score_inputs`` scores the aligned pairs.  Name and docstring are
    ``score_inputs``'s.
    """

    def metric(
        ref_lr: np.ndarray,
        proc_lr: np.ndarray,
        fs: float,
        listener: Listener,
        level_db_spl: float = CHALLENGE_LEVEL_DB_SPL,
        rng: np.random.RandomState | None = None,
        threads: int | None = None,
    ) -> float:
        threads = resolve_threads(threads)
        return score_inputs(ear_inputs(ref_lr, proc_lr, fs, threads), listener, level_db_spl, rng, threads)

    for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
        setattr(metric, attr, getattr(score_inputs, attr))
    return metric


@stereo_metric
def haspi_v2_better_ear(inputs_lr, listener, level_db_spl, rng, threads) -> float:
    """Better-ear HASPI v2: the larger of the left- and right-ear scores.

    Args:
        ref_lr, proc_lr: ``(2, samples)``, row 0 the left ear, at ``fs`` Hz.
        fs: sample rate in Hz.
        listener: audiograms of both ears.
        level_db_spl: dB SPL of RMS 1.
        rng: one stream for both ears, the left ear drawing first (as
            pyclarity's ``haspi_v2_be`` after one ``numpy.random.seed``);
            default ``RandomState(0)``.
        threads: threads for one call (None: ``min(2, os.cpu_count())``; 1:
            this thread only, e.g. in each worker of a process pool).  The
            two ears' resampling and alignment run side by side, then each
            ear's model with its chunks of bands side by side; the noise
            streams are positioned first, so the score and ``rng``'s final
            state are the same for any count.
    """
    return better_ear(haspi_v2_aligned, inputs_lr, listener, level_db_spl, rng, threads)


def ear_inputs(ref_lr, proc_lr, fs: float, threads: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`~rtha.metrics.ear_model.aligned_inputs` of the left and the right ear
    (on two threads when ``threads`` > 1).

    ``ref_lr``/``proc_lr`` are ``(2, samples)`` (left, right); computed once,
    they serve every metric of the pair.
    """
    ref_lr = check_stereo(ref_lr, "reference")
    proc_lr = check_stereo(proc_lr, "processed signal")
    return thread_map(lambda ear: aligned_inputs(ref_lr[ear], fs, proc_lr[ear], fs), (0, 1), threads)


def better_ear(metric_aligned, inputs_lr, listener, level_db_spl, rng, threads: int = 1) -> float:
    """The larger of ``metric_aligned(inputs, audiogram, level_db_spl=, rng=, threads=)[0]`` over both ears.

    ``inputs_lr`` from :func:`ear_inputs`; one ``rng`` stream serves both ears,
    the left drawing first (default ``RandomState(0)``).  The ears run one
    after the other (where the right ear's noise starts depends on how much
    the left one drew); ``threads`` go to each ear's model.
    """
    rng = noise_rng(rng)
    return max(
        metric_aligned(inputs, audiogram, level_db_spl=level_db_spl, rng=rng, threads=threads)[0]
        for inputs, audiogram in zip(inputs_lr, listener.ears)
    )
