"""A tiny synthetic corpus (speech-like harmonic sweeps, noise, decaying impulse responses)
so that the scene generator, reader and trainer run without ../shared."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

FS = 16000


def _voice(rng, seconds: float, f0: float) -> np.ndarray:
    """Harmonics of a gliding f0, syllable-rate amplitude modulation: speech-like enough."""
    t = np.arange(int(seconds * FS)) / FS
    f = f0 * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    phase = 2 * np.pi * np.cumsum(f) / FS
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 6)), 0, None)
    return 0.1 * x * envelope


def write_corpus(root: Path, speakers: int = 6, seed: int = 0) -> Path:
    """``root/speech/<spk>/*.wav``, ``root/noise/*.wav``, ``root/rir/room_az{0,40}_{L,R}.wav``."""
    rng = np.random.default_rng(seed)
    for s in range(speakers):
        d = root / "speech" / f"spk{s}"
        d.mkdir(parents=True)
        for u in range(2):
            sf.write(d / f"u{u}.wav", _voice(rng, rng.uniform(2.0, 3.5), 90 + 25 * s), FS)
    (root / "noise").mkdir()
    sf.write(root / "noise" / "hum.wav", 0.05 * rng.standard_normal(3 * FS) * np.hanning(3 * FS), FS)
    sf.write(root / "noise" / "hiss.wav", 0.02 * rng.standard_normal(4 * FS), FS)
    (root / "rir").mkdir()
    for az in (0, 40):
        for ear, delay in (("L", 3), ("R", 3 + az // 10)):
            h = rng.standard_normal(FS // 4) * np.exp(-np.arange(FS // 4) / (0.03 * FS)) * 0.1
            h[delay] = 1.0
            sf.write(root / "rir" / f"room_az{az}_{ear}.wav", h, FS)
    return root


def short_scenes(tmp_path_factory, scenes: int = 10, seed: int = 3) -> Path:
    """``scenes`` generated scenes of 1.5 s per split from a fresh :func:`write_corpus` (for measuring commands)."""
    from rtha.data.scenes import SceneConfig, generate

    corpus = write_corpus(tmp_path_factory.mktemp("corpus"))
    out = tmp_path_factory.mktemp("scenes")
    generate(corpus, out, scenes, seed=seed, cfg=SceneConfig(duration_s=1.5, target_lead_s=0.25, target_tail_s=0.25))
    return out
