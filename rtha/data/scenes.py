"""Clarity-format scene generation from sources on disk (no downloads).

A scene is ``duration_s`` of stereo audio (left, right ear) at ``fs``: one target
talker that starts ``target_lead_s`` after the interferers (as in Clarity, where
the target starts 2 s after the background) and stops ``target_tail_s`` before
the end, plus 1-3 interferers (competing talkers, babble, real noise or
speech-shaped noise) scaled to a random SNR. Each source is placed in a room by
convolution with a real impulse response from the corpus (or, with
``rirs="none"``, panned with a random interaural time and level difference).

Files follow the CEC2 / ICASSP 2023 layout, so that generated and real Clarity
data are read alike (:mod:`rtha.data.clarity`)::

    {out}/metadata/scenes.{split}.json           list of scene dicts
    {out}/metadata/scenes_listeners.{split}.json {scene: [listener ids]}
    {out}/metadata/listeners.json                {listener id: audiogram}
    {out}/metadata/generation.json               settings, corpus, licences used
    {out}/{split}/scenes/{scene}_{kind}_CH1.wav  kind in mix, target, target_anechoic, interferer

Only channel 1 (the front hearing-aid microphone pair in Clarity) is written:
with one impulse response per source position the other channels would be copies.

Sources come from a corpus folder: either with a ``manifest.csv`` (columns
``path``, ``kind`` = speech/noise/rir, ``speaker``, ``licence``; the layout of
``shared/data/corpus``) or plain folders ``speech/<speaker>/*.wav``,
``noise/*.wav`` and ``rir/*.wav``. Splits are disjoint by speaker; each noise
recording is cut in time into train/dev/test parts; the few rooms are shared.

Every scene is drawn from its own seed (``SeedSequence([seed, index])``), so the
output does not depend on the number of workers.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import fftconvolve

from ..audiogram import CLARITY_CFS, Audiogram, Listener, save_listeners
from ..dsp.resample import resample
from ..errors import RthaError

SPLITS = ("train", "dev", "test")
KINDS = ("mix", "target", "target_anechoic", "interferer")
INTERFERER_TYPES = ("speech", "babble", "noise", "speech_shaped")
CHANNEL = 1


@dataclass
class SceneConfig:
    """Settings of a generated data set (all lengths in seconds, levels in dB)."""

    fs: int = 16000
    duration_s: float = 4.0
    target_lead_s: float = 1.0  # Clarity: 2 s in 5-10 s scenes; halved for short scenes
    target_tail_s: float = 0.5  # Clarity: 1 s
    snr_db: tuple[float, float] = (-6.0, 12.0)
    num_interferers: tuple[int, int] = (1, 3)
    interferer_types: tuple[str, ...] = INTERFERER_TYPES
    rirs: str = "corpus"  # "corpus": real impulse responses; "none": dry, panned
    dry_fraction: float = 0.1  # share of scenes without a room when rirs="corpus"
    max_rir_s: float = 2.0  # impulse responses are cut (with a fade) to this length
    target_level_dbfs: tuple[float, float] = (-32.0, -22.0)  # RMS of the target while active
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    num_listeners: int = 60
    listeners_per_scene: int = 3
    subtype: str = "PCM_16"
    exclude_licences: tuple[str, ...] = ()  # e.g. ("BY-SA",) to leave ShareAlike sources out

    def validate(self) -> None:
        if self.fs < 8000:
            raise RthaError(f"sample rate {self.fs} Hz is too low; expected >= 8000 Hz")
        if self.duration_s - self.target_lead_s - self.target_tail_s < 0.5:
            raise RthaError(
                f"scene of {self.duration_s:g} s leaves under 0.5 s of target after a {self.target_lead_s:g} s lead "
                f"and {self.target_tail_s:g} s tail; expected a longer scene"
            )
        lo, hi = self.snr_db
        if lo > hi:
            raise RthaError(f"SNR range {lo:g}..{hi:g} dB is empty; expected low <= high")
        n_lo, n_hi = self.num_interferers
        if not 0 <= n_lo <= n_hi:
            raise RthaError(f"interferer count range {n_lo}..{n_hi} is invalid; expected 0 <= low <= high")
        bad = [t for t in self.interferer_types if t not in INTERFERER_TYPES]
        if bad or not self.interferer_types:
            raise RthaError(f"unknown interferer type(s) {bad}; expected some of {', '.join(INTERFERER_TYPES)}")
        if self.rirs not in ("corpus", "none"):
            raise RthaError(f"rirs={self.rirs!r}; expected 'corpus' or 'none'")
        f = self.split_fractions
        if len(f) != 3 or min(f) < 0 or sum(f) <= 0:
            raise RthaError(f"split fractions {f} must be three non-negative numbers (train, dev, test)")


# ----------------------------------------------------------------------------- corpus


@dataclass
class SourceFile:
    path: Path
    kind: str  # speech, noise or rir
    speaker: str = ""
    licence: str = ""
    rel: str = ""  # path relative to the corpus root, recorded in the scene metadata


@dataclass
class Corpus:
    """The source files of a corpus folder, by kind."""

    root: Path
    speech: dict[str, list[SourceFile]] = field(default_factory=dict)  # speaker -> files
    noise: list[SourceFile] = field(default_factory=list)
    rooms: dict[str, list[list[SourceFile]]] = field(default_factory=dict)  # room -> positions -> (L, R) or (mono,)

    @classmethod
    def from_folder(cls, root, exclude_licences: tuple[str, ...] = ()) -> "Corpus":
        """Read a corpus folder; files whose licence contains any of ``exclude_licences``
        (e.g. ``"BY-SA"``) are left out."""
        root = Path(root)
        if not root.is_dir():
            raise RthaError(f"corpus folder {root} does not exist")
        manifest = root / "manifest.csv"
        files = _read_manifest(root, manifest) if manifest.exists() else _scan_folders(root)
        corpus = cls(root)
        rirs = []
        for f in files:
            if any(x in f.licence for x in exclude_licences):
                continue
            if not f.path.exists():
                raise RthaError(f"{f.path}: listed in {manifest} but missing")
            if f.kind == "speech":
                corpus.speech.setdefault(f.speaker or f.path.parent.name, []).append(f)
            elif f.kind == "noise":
                corpus.noise.append(f)
            elif f.kind == "rir":
                rirs.append(f)
        corpus.rooms = _group_rooms(rirs)
        if len(corpus.speech) < 3:
            raise RthaError(
                f"corpus {root} has {len(corpus.speech)} speaker(s); expected at least 3 (one per split) "
                "in manifest.csv or speech/<speaker>/*.wav"
            )
        return corpus

    def licences(self) -> list[str]:
        every = [f for fs in self.speech.values() for f in fs] + self.noise
        every += [f for room in self.rooms.values() for pos in room for f in pos]
        return sorted({f.licence for f in every if f.licence})


def _read_manifest(root: Path, manifest: Path) -> list[SourceFile]:
    with open(manifest, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"path", "kind"} <= set(rows[0]):
        raise RthaError(f"{manifest}: expected a CSV with at least the columns path, kind (speech/noise/rir)")
    return [
        SourceFile(root / r["path"], r["kind"], r.get("speaker") or "", r.get("licence") or "", r["path"])
        for r in rows
    ]


def _scan_folders(root: Path) -> list[SourceFile]:
    out = []
    for kind in ("speech", "noise", "rir"):
        for p in sorted((root / kind).rglob("*.wav")):
            speaker = p.parent.name if kind == "speech" else ""
            out.append(SourceFile(p, kind, speaker, "", str(p.relative_to(root))))
    return out


def _group_rooms(rirs: list[SourceFile]) -> dict[str, list[list[SourceFile]]]:
    """Group impulse responses: ``x_L``/``x_R`` (or ``_ch1``/``_ch2``) form one position,
    ``room_az40`` and ``room_az-40`` are two positions in one room."""
    positions: dict[str, list[SourceFile]] = {}
    for f in sorted(rirs, key=lambda f: f.rel):
        key = re.sub(r"_(L|R|ch1|ch2)$", "", f.path.stem)
        positions.setdefault(str(f.path.parent / key), []).append(f)
    rooms: dict[str, list[list[SourceFile]]] = {}
    for key, files in positions.items():
        room = re.sub(r"_az[-+]?\d+$", "", Path(key).name)
        rooms.setdefault(room, []).append(files[:2])
    return rooms


def split_speakers(speakers, fractions, seed: int) -> dict[str, list[str]]:
    """Disjoint speaker lists per split, a seeded shuffle; every split gets >= 1 speaker."""
    speakers = sorted(speakers)
    order = [speakers[i] for i in np.random.default_rng([seed, 7]).permutation(len(speakers))]
    total = sum(fractions)
    n_dev = max(1, round(len(order) * fractions[1] / total)) if fractions[1] > 0 else 0
    n_test = max(1, round(len(order) * fractions[2] / total)) if fractions[2] > 0 else 0
    test, dev, train = order[:n_test], order[n_test : n_test + n_dev], order[n_test + n_dev :]
    if not train and fractions[0] > 0:
        raise RthaError(f"{len(speakers)} speakers are too few for splits {fractions}")
    return {"train": sorted(train), "dev": sorted(dev), "test": sorted(test)}


def scene_counts(num_scenes: int, fractions) -> dict[str, int]:
    """Scenes per split, proportional to the fractions, summing to ``num_scenes``."""
    total = sum(fractions)
    dev = round(num_scenes * fractions[1] / total)
    test = round(num_scenes * fractions[2] / total)
    return {"train": num_scenes - dev - test, "dev": dev, "test": test}


# ----------------------------------------------------------------------------- audio helpers


class SourceReader:
    """Reads (parts of) source files at the scene rate; caches impulse responses.

    With ``in_memory=True`` every file is read whole once (float32, at its own rate)
    and later reads slice that copy: dynamic mixing draws thousands of crops a
    minute, and a crop from memory equals the crop read from disk.
    """

    def __init__(self, fs: int, max_rir_s: float, in_memory: bool = False):
        self.fs = fs
        self.max_rir_s = max_rir_s
        self.in_memory = in_memory
        self._rirs: dict[Path, np.ndarray] = {}
        self._info: dict[Path, tuple[int, int]] = {}
        self._audio: dict[Path, np.ndarray] = {}

    def info(self, path: Path) -> tuple[int, int]:
        """``(frames, samplerate)`` of a file."""
        if path not in self._info:
            try:
                i = sf.info(str(path))
            except (RuntimeError, sf.LibsndfileError) as e:
                raise RthaError(f"{path}: cannot read audio ({e})") from None
            self._info[path] = (i.frames, i.samplerate)
        return self._info[path]

    def duration(self, path: Path) -> float:
        frames, fs = self.info(path)
        return frames / fs

    def read(self, path: Path, start_s: float = 0.0, length_s: float | None = None) -> np.ndarray:
        """Mono float64 at ``self.fs``, shape ``(samples,)``."""
        frames, fs = self.info(path)
        start = int(start_s * fs)
        stop = frames if length_s is None else min(frames, start + int(round(length_s * fs)))
        if self.in_memory:
            if path not in self._audio:
                whole, _ = sf.read(str(path), dtype="float32", always_2d=True)
                self._audio[path] = whole.mean(axis=1, dtype=np.float64).astype(np.float32)
            return resample(self._audio[path][start:stop].astype(np.float64), fs, self.fs)
        x, _ = sf.read(str(path), start=start, stop=stop, dtype="float64", always_2d=True)
        return resample(x.mean(axis=1), fs, self.fs)

    def rir(self, path: Path) -> np.ndarray:
        """An impulse response at ``self.fs``: starts 1 ms before its direct-path peak,
        is cut to ``max_rir_s`` with a 10 ms fade-out."""
        if path not in self._rirs:
            h = self.read(path)
            pre = int(0.001 * self.fs)
            h = h[max(0, int(np.argmax(np.abs(h))) - pre) :][: int(self.max_rir_s * self.fs)].copy()
            fade = min(len(h), int(0.01 * self.fs))
            h[len(h) - fade :] *= np.linspace(1.0, 0.0, fade)
            self._rirs[path] = h
        return self._rirs[path]


def direct_path(h: np.ndarray, fs: int) -> np.ndarray:
    """The direct sound of an impulse response: up to 2.5 ms after its peak, 1 ms fade."""
    peak = int(np.argmax(np.abs(h)))
    keep = min(len(h), peak + int(0.0025 * fs))
    fade = int(0.001 * fs)
    d = h[:keep].copy()
    d[-fade:] *= np.linspace(1.0, 0.0, fade)
    return d


def fit_length(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``x`` cropped at a random offset, or looped, to exactly ``n`` samples."""
    if len(x) >= n:
        start = int(rng.integers(0, len(x) - n + 1))
        return x[start : start + n]
    reps = -(-n // len(x))
    return np.tile(x, reps)[:n]


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)) + 1e-20))


def speech_shaped_noise(n: int, speech: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with the long-term average spectrum of ``speech``, shape ``(n,)``."""
    nfft = 1024
    frames = speech[: len(speech) // nfft * nfft].reshape(-1, nfft)
    if len(frames) == 0:
        frames = np.pad(speech, (0, nfft - len(speech)))[None]
    ltass = np.sqrt(np.mean(np.abs(np.fft.rfft(frames * np.hanning(nfft), axis=1)) ** 2, axis=0))
    spec = np.fft.rfft(rng.standard_normal(n))
    spec *= np.interp(np.linspace(0, 1, len(spec)), np.linspace(0, 1, len(ltass)), ltass)
    return np.fft.irfft(spec, n)


# ----------------------------------------------------------------------------- scenes


class SceneMaker:
    """Draws and renders scenes; one per worker process."""

    def __init__(self, corpus: Corpus, cfg: SceneConfig, speakers: dict[str, list[str]], seed: int,
                 reader: SourceReader | None = None, direct: bool = True):
        self.corpus = corpus
        self.cfg = cfg
        self.speakers = speakers
        self.seed = seed
        self.reader = reader or SourceReader(cfg.fs, cfg.max_rir_s)
        self.direct = direct  # False: skip the direct-path target (training uses the reverberant one)
        self.fs = cfg.fs
        self.n = int(round(cfg.duration_s * cfg.fs))

    # -- sources

    def _speech(self, speaker: str, length_s: float, rng) -> tuple[np.ndarray, str]:
        """A random utterance of ``speaker`` cropped to ``length_s`` (or whole, if shorter)."""
        files = self.corpus.speech[speaker]
        f = files[int(rng.integers(len(files)))]
        dur = self.reader.duration(f.path)
        start = float(rng.uniform(0, max(0.0, dur - length_s)))
        x = self.reader.read(f.path, start, length_s)
        return x, f.rel

    def _noise(self, split: str, rng) -> tuple[np.ndarray, str]:
        """A crop of a real noise recording, from the time part that belongs to ``split``."""
        f = self.corpus.noise[int(rng.integers(len(self.corpus.noise)))]
        dur = self.reader.duration(f.path)
        fr = np.asarray(self.cfg.split_fractions, float) / sum(self.cfg.split_fractions)
        i = SPLITS.index(split)
        lo, hi = dur * fr[:i].sum(), dur * fr[: i + 1].sum()
        length = self.cfg.duration_s
        start = float(rng.uniform(lo, max(lo, hi - length)))
        x = self.reader.read(f.path, start, min(length, hi - start))
        return fit_length(x, self.n, rng), f.rel

    def _interferer(self, kind: str, split: str, target_speaker: str, rng) -> tuple[np.ndarray, list[str]]:
        others = [s for s in self.speakers[split] if s != target_speaker]
        if kind == "speech":
            spk = others[int(rng.integers(len(others)))]
            x, name = self._speech(spk, self.cfg.duration_s, rng)
            return fit_length(x, self.n, rng), [name]
        if kind == "babble":
            k = min(len(others), int(rng.integers(3, 7)))
            names, total = [], np.zeros(self.n)
            for spk in rng.choice(others, size=k, replace=False):
                x, name = self._speech(str(spk), self.cfg.duration_s, rng)
                total += fit_length(x, self.n, rng) / rms(x)
                names.append(name)
            return total, names
        if kind == "noise":
            x, name = self._noise(split, rng)
            return x, [name]
        spk = others[int(rng.integers(len(others)))] if others else target_speaker
        x, name = self._speech(spk, 8.0, rng)
        return speech_shaped_noise(self.n, x, rng), [f"speech_shaped:{name}"]

    def _kinds(self, split: str, target_speaker: str) -> list[str]:
        """The interferer types possible in ``split`` (talker types need other speakers)."""
        has_others = any(s != target_speaker for s in self.speakers[split])
        kinds = [
            k
            for k in self.cfg.interferer_types
            if (k not in ("speech", "babble") or has_others) and (k != "noise" or self.corpus.noise)
        ]
        return kinds or ["speech_shaped"]

    # -- space

    def _room(self, rng) -> tuple[str, list[list[SourceFile]]]:
        if self.cfg.rirs == "none" or not self.corpus.rooms or rng.random() < self.cfg.dry_fraction:
            return "anechoic", []
        names = sorted(self.corpus.rooms)
        name = names[int(rng.integers(len(names)))]
        return name, self.corpus.rooms[name]

    def _spatialise(self, x: np.ndarray, position, rng) -> tuple[np.ndarray, np.ndarray]:
        """``(reverberant, direct)``, each ``(2, len(x))``: ``x`` at a position in the room,
        or panned with a random ITD (<= 0.6 ms) and ILD (<= 6 dB) when there is no room."""
        n = len(x)
        if not position:
            itd = int(rng.integers(-int(0.0006 * self.fs), int(0.0006 * self.fs) + 1))
            ild = 10 ** (rng.uniform(-6, 6) / 20)
            left = np.concatenate([np.zeros(max(itd, 0)), x])[:n] * np.sqrt(ild)
            right = np.concatenate([np.zeros(max(-itd, 0)), x])[:n] / np.sqrt(ild)
            y = np.stack([left, right])
            return y, y.copy()
        hs = [self.reader.rir(f.path) for f in position]
        if len(hs) == 1:
            hs = hs * 2
        rev = np.stack([fftconvolve(x, h)[:n] for h in hs])
        if not self.direct:
            return rev, rev.copy()
        direct = np.stack([fftconvolve(x, direct_path(h, self.fs))[:n] for h in hs])
        return rev, direct

    # -- one scene

    def make(self, index: int, name: str, split: str, target_lead_s: float | None = None,
             num_interferers: tuple[int, int] | None = None) -> tuple[dict, dict[str, np.ndarray]]:
        """Scene ``index`` of the data set: ``(metadata dict, {kind: (2, samples) float32})``.

        ``target_lead_s`` and ``num_interferers`` override the config for this scene
        (dynamic mixing varies them per example).
        """
        cfg, fs, n = self.cfg, self.fs, self.n
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, index]))
        spk = self.speakers[split][int(rng.integers(len(self.speakers[split])))]

        lead = cfg.target_lead_s if target_lead_s is None else target_lead_s
        t0 = int(round(lead * fs))
        t_len = n - t0 - int(round(cfg.target_tail_s * fs))
        speech, target_name = self._speech(spk, t_len / fs, rng)
        speech = speech[:t_len]
        t1 = t0 + len(speech)
        dry = np.zeros(n)
        dry[t0:t1] = speech / rms(speech)

        room, positions = self._room(rng)
        order = rng.permutation(len(positions)) if positions else []
        kinds = self._kinds(split, spk)
        k_lo, k_hi = cfg.num_interferers if num_interferers is None else num_interferers
        k = int(rng.integers(k_lo, k_hi + 1))
        # Target and interferers at distinct positions while the room has enough of them.
        where = [positions[order[i % len(order)]] if positions else [] for i in range(k + 1)]

        target, target_direct = self._spatialise(dry, where[0], rng)
        interferers, meta_int = np.zeros((2, n)), []
        for i in range(k):
            kind = kinds[int(rng.integers(len(kinds)))]
            x, names = self._interferer(kind, split, spk, rng)
            p = where[i + 1]
            y, _ = self._spatialise(x / rms(x) * 10 ** (rng.uniform(-3, 3) / 20), p, rng)
            interferers += y
            meta_int.append(
                {"type": kind, "name": names, "position": p[0].rel if p else "dry", "time_start": 0, "time_end": n}
            )

        # SNR over the target's active part, both ears together.
        snr = float(rng.uniform(*cfg.snr_db))
        active = slice(t0, t1)
        gain_t = 10 ** (rng.uniform(*cfg.target_level_dbfs) / 20) / rms(target[:, active])
        interferers *= rms(target[:, active]) * gain_t / rms(interferers[:, active]) / 10 ** (snr / 20)
        target *= gain_t
        target_direct *= gain_t
        mix = target + interferers
        peak = max(np.abs(mix).max(), np.abs(interferers).max(), np.abs(target).max())
        if peak > 0.98:  # keep 16-bit files unclipped; SNR is unchanged
            for a in (mix, target, target_direct, interferers):
                a *= 0.98 / peak

        meta = {
            "scene": name,
            "dataset": split,
            "room": room,
            "duration": n,
            "sample_rate": fs,
            "target": {
                "name": target_name,
                "speaker": spk,
                "position": where[0][0].rel if positions else "dry",
                "time_start": t0,
                "time_end": t1,
            },
            "interferers": meta_int,
            "SNR": round(snr, 3),
        }
        audio = {"mix": mix, "target": target, "target_anechoic": target_direct, "interferer": interferers}
        return meta, {k: v.astype(np.float32) for k, v in audio.items()}


def make_listeners(num: int, seed: int) -> dict[str, Listener]:
    """Random plausible audiograms: sloping losses from near-normal to severe, the two
    ears within a few dB of each other; ids ``L0001``...``."""
    rng = np.random.default_rng([seed, 11])
    octaves = np.log2(np.asarray(CLARITY_CFS) / 250.0)
    out = {}
    for i in range(num):
        base = rng.uniform(5, 50)
        slope = rng.uniform(0, 12)  # dB per octave
        ears = []
        for _ in range(2):
            lv = base + slope * octaves + rng.normal(0, 4, len(octaves))
            ears.append(Audiogram(CLARITY_CFS, np.clip(np.round(lv / 5) * 5, -10, 120)))
        name = f"L{i + 1:04d}"
        out[name] = Listener(ears[0], ears[1], name)
    return out


def scene_path(out: Path, split: str, scene: str, kind: str, channel: int = CHANNEL) -> Path:
    return Path(out) / split / "scenes" / f"{scene}_{kind}_CH{channel}.wav"


def write_scene(out: Path, meta: dict, audio: dict[str, np.ndarray], subtype: str) -> None:
    for kind, x in audio.items():
        sf.write(str(scene_path(out, meta["dataset"], meta["scene"], kind)), x.T, meta["sample_rate"], subtype=subtype)


def config_dict(cfg: SceneConfig) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}


# ----------------------------------------------------------------------------- data set

_maker: SceneMaker | None = None
_out: Path | None = None


def _init_worker(corpus_dir: str, cfg: SceneConfig, speakers, seed: int, out: str) -> None:
    global _maker, _out
    import os

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    _maker = SceneMaker(Corpus.from_folder(corpus_dir, cfg.exclude_licences), cfg, speakers, seed)
    _out = Path(out)


def _make_one(job: tuple[int, str, str]) -> dict:
    meta, audio = _maker.make(*job)
    write_scene(_out, meta, audio, _maker.cfg.subtype)
    return meta


def generate(corpus_dir, out, num_scenes: int, seed: int, cfg: SceneConfig | None = None,
             workers: int = 1, progress=None, only: tuple[str, ...] = SPLITS) -> dict[str, list[dict]]:
    """Write ``num_scenes`` scenes and their metadata under ``out``; returns ``{split: scenes}``.

    ``only`` renders just these splits (e.g. ``("dev", "test")`` when training mixes its
    examples on the fly): their scenes are the same as in a full run, since every scene
    keeps its index and seed. ``progress(n_done)`` is called after each scene.
    """
    cfg = cfg or SceneConfig()
    cfg.validate()
    if num_scenes < 1:
        raise RthaError(f"--num-scenes {num_scenes}: expected at least 1")
    out = Path(out)
    corpus = Corpus.from_folder(corpus_dir, cfg.exclude_licences)
    speakers = split_speakers(corpus.speech, cfg.split_fractions, seed)
    counts = scene_counts(num_scenes, cfg.split_fractions)
    bad = [s for s in only if s not in SPLITS]
    if bad or not only:
        raise RthaError(f"splits {list(only)}; expected some of {', '.join(SPLITS)}")
    jobs, index = [], 0
    for split in SPLITS:
        if counts[split] and not speakers[split]:
            raise RthaError(f"split {split} has scenes but no speakers; adjust the split fractions")
        (out / split / "scenes").mkdir(parents=True, exist_ok=True)
        for _ in range(counts[split]):
            index += 1
            if split in only:
                jobs.append((index, f"S{index:05d}", split))
    (out / "metadata").mkdir(parents=True, exist_ok=True)

    init = (str(corpus_dir), cfg, speakers, seed, str(out))
    results: list[dict] = []
    if workers <= 1:
        _init_worker(*init)
        for job in jobs:
            results.append(_make_one(job))
            if progress:
                progress(len(results))
    else:
        import multiprocessing as mp

        with mp.Pool(workers, _init_worker, init) as pool:
            for meta in pool.imap_unordered(_make_one, jobs, chunksize=4):
                results.append(meta)
                if progress:
                    progress(len(results))

    by_split = {s: sorted((m for m in results if m["dataset"] == s), key=lambda m: m["scene"]) for s in only}
    listeners = make_listeners(cfg.num_listeners, seed)
    ids = sorted(listeners)
    rng = np.random.default_rng([seed, 13])
    meta_dir = out / "metadata"
    for split, scenes in by_split.items():
        (meta_dir / f"scenes.{split}.json").write_text(json.dumps(scenes, indent=1) + "\n")
        pairing = {
            m["scene"]: sorted(rng.choice(ids, size=min(cfg.listeners_per_scene, len(ids)), replace=False).tolist())
            for m in scenes
        }
        (meta_dir / f"scenes_listeners.{split}.json").write_text(json.dumps(pairing, indent=1) + "\n")
    save_listeners(listeners, meta_dir / "listeners.json")
    (meta_dir / "generation.json").write_text(
        json.dumps(
            {
                "generator": "rtha tools/make_scenes.py",
                "corpus": str(Path(corpus_dir).resolve()),
                "num_scenes": num_scenes,
                "splits_written": list(only),
                "seed": seed,
                "config": config_dict(cfg),
                "speakers": speakers,
                "licences": corpus.licences(),
            },
            indent=1,
        )
        + "\n"
    )
    return by_split
