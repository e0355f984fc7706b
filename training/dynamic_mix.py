"""Dynamic mixing: every training batch is a fresh set of scenes drawn from the corpus.

A fixed set of generated scenes is seen again and again after a few CPU-hours;
mixing on the fly draws a new target utterance, 0-3 interferers (competing
talker, babble, real noise, speech-shaped noise), a room, an SNR, a level and a
target onset for every example, from the corpus held in memory, with the same
renderer as the generated scenes (:class:`rtha.data.scenes.SceneMaker`).

Only the training part of the corpus is used: the speakers that the generated
scenes (``{root}/metadata/generation.json``) put in the train split, and the
train part (in time) of every noise recording, so the dev and test scenes stay
unseen. Batch ``step`` depends only on ``(seed, step)``: a resumed run sees the
same examples as an uninterrupted one.

:class:`DynamicMix` is a map-style dataset whose item ``step`` is a whole batch;
:func:`batch_loader` prepares batches in a background process, so the optimiser
never waits for the mixer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from rtha.data.scenes import Corpus, SceneConfig, SceneMaker, SourceReader
from rtha.errors import RthaError


@dataclass(frozen=True)
class MixConfig:
    """What each training example draws from (lengths in seconds, levels in dB)."""

    segment_s: float = 2.0
    lead_s: tuple[float, float] = (0.0, 1.0)  # target onset after the interferers start
    snr_db: tuple[float, float] = (-5.0, 15.0)
    num_interferers: tuple[int, int] = (1, 3)
    clean_fraction: float = 0.05  # examples without interferers: clean speech must pass unchanged
    target_level_dbfs: tuple[float, float] = (-40.0, -18.0)
    dry_fraction: float = 0.1  # examples without a room
    interferer_types: tuple[str, ...] = ()  # kinds drawn (rtha.data.scenes.INTERFERER_TYPES); (): the scenes' own


class DynamicMix:
    """Batches of ``(mix, target)`` drawn on the fly; item ``step`` is one batch.

    Args:
        corpus: corpus folder (``manifest.csv`` layout, e.g. ``../shared/data/corpus``).
        scenes_root: the generated scenes whose train-split speakers (and licence
            exclusions) are used, so that dev/test speakers stay held out.
        batch_size: examples per batch.
        sample_rate: model rate, Hz.
        seed: batch ``step`` depends only on ``(seed, step)``.
        mix: :class:`MixConfig`.

    Items: ``(mix (batch, samples), target (batch, samples))`` float32 tensors; the
    target is the reverberant target at the same ear as the mixture.
    """

    def __init__(self, corpus, scenes_root, batch_size: int, sample_rate: int = 16000, seed: int = 0,
                 mix: MixConfig | None = None):
        self.corpus_dir = Path(corpus)
        self.batch_size = int(batch_size)
        self.sample_rate = int(sample_rate)
        self.seed = int(seed)
        self.mix = mix or MixConfig()
        gen = Path(scenes_root) / "metadata" / "generation.json"
        if not gen.is_file():
            raise RthaError(f"{gen} not found; dynamic mixing takes its train speakers from generated scenes "
                            "(tools/make_scenes.py)")
        g = json.loads(gen.read_text())
        self.speakers = g["speakers"]
        base = SceneConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in g["config"].items()})
        if not self.corpus_dir.is_dir():
            raise RthaError(f"corpus folder {self.corpus_dir} does not exist")
        m = self.mix
        self.scene_cfg = replace(base, fs=self.sample_rate, duration_s=m.segment_s, target_lead_s=0.0,
                                 target_tail_s=0.0, snr_db=m.snr_db, num_interferers=m.num_interferers,
                                 target_level_dbfs=m.target_level_dbfs, dry_fraction=m.dry_fraction,
                                 interferer_types=m.interferer_types or base.interferer_types)
        self.scene_cfg.validate()
        self._maker: SceneMaker | None = None  # built in the process that uses it (corpus in memory)

    def __len__(self) -> int:
        return 2**62  # unbounded: the trainer decides when to stop

    def _get_maker(self) -> SceneMaker:
        if self._maker is None:
            corpus = Corpus.from_folder(self.corpus_dir, self.scene_cfg.exclude_licences)
            reader = SourceReader(self.sample_rate, self.scene_cfg.max_rir_s, in_memory=True)
            self._maker = SceneMaker(corpus, self.scene_cfg, self.speakers, self.seed, reader=reader, direct=False)
        return self._maker

    def example(self, index: int) -> tuple[np.ndarray, np.ndarray, dict]:
        """Example ``index``: ``(mix (samples,), target (samples,), scene metadata)``, float32, one ear."""
        maker, m = self._get_maker(), self.mix
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, index, 1]))
        lead = float(rng.uniform(*m.lead_s))
        lead = min(lead, m.segment_s - 0.5)  # at least 0.5 s of target
        k = (0, 0) if rng.random() < m.clean_fraction else None
        meta, audio = maker.make(index, "", "train", target_lead_s=lead, num_interferers=k)
        ear = int(rng.integers(2))
        return audio["mix"][ear], audio["target"][ear], meta

    def __getitem__(self, step: int):
        import torch

        pairs = [self.example(step * self.batch_size + i) for i in range(self.batch_size)]
        mix = torch.from_numpy(np.stack([p[0] for p in pairs]))
        target = torch.from_numpy(np.stack([p[1] for p in pairs]))
        return mix, target


def _worker_init(_: int) -> None:
    import signal

    import torch

    torch.set_num_threads(1)  # the mixer is numpy/scipy work; leave the cores to training
    # Ctrl-C reaches the whole process group (and `pkill -f`, `kill -- -PGID` the worker too): a mixer
    # that died of it would crash the trainer before it saves. The trainer stops, saves, then ends it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def batch_loader(data: DynamicMix, first_step: int, workers: int = 1, prefetch: int = 4):
    """Batches ``first_step, first_step + 1, ...`` in order, prepared in ``workers`` background processes."""
    from torch.utils.data import DataLoader

    class Steps:
        def __iter__(self):
            step = first_step
            while True:
                yield step
                step += 1

    return DataLoader(data, batch_size=None, sampler=Steps(), num_workers=workers, prefetch_factor=prefetch,
                      worker_init_fn=_worker_init, persistent_workers=False)
