"""The built-in example: a short noisy speech recording made by the project itself.

``rtha replay`` with no file replays it, so the first command of the README
works on a fresh machine with nothing downloaded. The recording (16 kHz mono,
7 to 10 s) is generated on first use into the cache folder (``$RTHA_CACHE``, else
``$XDG_CACHE_HOME/rtha``, else ``~/.cache/rtha``):

* speech: ``espeak-ng`` reading two sentences when it is installed; otherwise a
  deterministic speech-like signal (a glottal pulse train with a falling pitch
  contour through three formant resonators that change from syllable to
  syllable, a syllabic envelope, and short fricative noise bursts);
* noise: deterministic speech-shaped noise (seeded), slowly modulated like a
  busy room, mixed at :data:`SNR_DB`;
* level: the mixture has an RMS of :data:`RMS` (about -26 dBFS).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

FS = 16000
SNR_DB = 5.0
RMS = 0.05
TEXT = (
    "The hearing aid cleans the speech, then makes it louder where the ear has lost the most. "
    "Every block of sound takes only a few milliseconds."
)
VERSION = 1


def cache_dir() -> Path:
    """Where generated files are kept: ``$RTHA_CACHE`` or ``~/.cache/rtha``."""
    if os.environ.get("RTHA_CACHE"):
        return Path(os.environ["RTHA_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rtha"


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def example_path() -> Path:
    """The example recording, generated on first use; returns its path."""
    source = "espeak" if espeak_available() else "synthetic"
    path = cache_dir() / f"example-{source}-v{VERSION}.wav"
    if _readable(path):
        return path
    from .audio_io import write_audio
    from .errors import RthaError

    speech = espeak_speech(TEXT) if source == "espeak" else synthetic_speech()
    mix = mix_at_snr(speech, speech_shaped_noise(speech.size), SNR_DB)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_audio(path, mix[None, :], FS)
    except OSError as e:
        raise RthaError(f"cannot write the example recording to {path} ({e}); set RTHA_CACHE to a writable folder") from None
    return path


def _readable(path: Path) -> bool:
    """Whether ``path`` is an audio file with samples (a damaged cache copy is made again)."""
    if not path.is_file():
        return False
    import soundfile as sf

    try:
        return sf.info(str(path)).frames > 0
    except Exception:  # libsndfile's errors for a truncated or overwritten file
        return False


def espeak_speech(text: str, fs: int = FS) -> np.ndarray:
    """``text`` spoken by espeak-ng, as float64 mono at ``fs`` with 0.3 s of silence around it."""
    import soundfile as sf

    from .dsp.resample import resample

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run(
            ["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), text],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        x, fs_in = sf.read(str(wav), dtype="float64", always_2d=True)
    x = resample(x[:, 0], fs_in, fs)
    pad = np.zeros(int(0.3 * fs))
    return np.concatenate([pad, x, pad])


# (F1, F2, F3) in Hz of a few vowels, and their bandwidths
_VOWELS = np.array([[730, 1090, 2440], [270, 2290, 3010], [530, 1840, 2480], [300, 870, 2240], [640, 1190, 2390]])
_BANDWIDTHS = (90.0, 110.0, 170.0)


def synthetic_speech(seconds: float = 6.5, fs: int = FS, seed: int = 7) -> np.ndarray:
    """A deterministic speech-like signal (float64 mono at ``fs``), for machines without espeak-ng.

    Syllables of 120-280 ms grouped into words with short pauses; each syllable
    is a harmonic source (pitch falling across the phrase, 90-170 Hz) through
    the formant resonators of one vowel, under a raised-cosine envelope, with a
    band-passed noise onset for one syllable in three (a fricative).
    """
    from scipy.signal import butter, lfilter, sosfilt

    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    out = np.zeros(n)
    pad = int(min(0.3, 0.1 * seconds) * fs)  # silence at both ends
    t = pad
    fric_sos = butter(4, [2500, 6000], btype="bandpass", fs=fs, output="sos")
    while True:
        dur = int(rng.uniform(0.12, 0.28) * fs)
        if t + dur > n - pad:
            break
        # pitch: phrase-level declination plus a per-syllable rise/fall
        pos = t / n
        f0 = (170 - 80 * pos) * (1 + 0.08 * np.sin(np.linspace(0, np.pi, dur)) * rng.choice([-1, 1]))
        phase = 2 * np.pi * np.cumsum(f0) / fs
        k = np.arange(1, int(4000 / f0.max()) + 1)[:, None]
        source = (np.sin(k * phase[None, :]) / k).sum(axis=0)
        voiced = source
        for fc, bw in zip(_VOWELS[rng.integers(len(_VOWELS))], _BANDWIDTHS):
            r = np.exp(-np.pi * bw / fs)
            a = [1, -2 * r * np.cos(2 * np.pi * fc / fs), r * r]
            voiced = lfilter([1 - r], a, voiced)
        env = np.sin(np.linspace(0, np.pi, dur)) ** 2
        syllable = voiced / (np.abs(voiced).max() + 1e-12) * env
        if rng.random() < 1 / 3:
            nf = int(0.06 * fs)
            burst = sosfilt(fric_sos, rng.standard_normal(nf)) * np.hanning(nf)
            start = max(0, t - nf // 2)
            out[start : start + nf] += 0.3 * burst / (np.abs(burst).max() + 1e-12)
        out[t : t + dur] += syllable
        t += dur
        if rng.random() < 0.3:  # word boundary
            t += int(rng.uniform(0.08, 0.25) * fs)
    return out


def speech_shaped_noise(n: int, fs: int = FS, seed: int = 11) -> np.ndarray:
    """Deterministic noise with a speech-like spectrum (flat to ~500 Hz, then falling), slowly modulated."""
    from scipy.signal import butter, lfilter, sosfilt

    rng = np.random.default_rng(seed)
    x = lfilter([1.0], [1.0, -0.9], rng.standard_normal(n))
    x = sosfilt(butter(2, 80, btype="highpass", fs=fs, output="sos"), x)
    t = np.arange(n) / fs
    return x * (1 + 0.3 * np.sin(2 * np.pi * 0.7 * t) + 0.2 * np.sin(2 * np.pi * 2.3 * t + 1))


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float, rms: float = RMS) -> np.ndarray:
    """``speech + noise`` with the noise scaled to ``snr_db`` (whole-signal RMS), then scaled to ``rms``."""
    def _rms(v):
        return float(np.sqrt(np.mean(v**2)))

    noise = noise * (_rms(speech) / _rms(noise) / 10 ** (snr_db / 20))
    mix = speech + noise
    return (mix * (rms / _rms(mix))).astype(np.float32)
