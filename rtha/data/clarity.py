"""Clarity-format scenes (CEC2 / ICASSP 2023 layout), real or generated.

Layout under ``root``::

    metadata/scenes.{split}.json            [{"scene": "S06001", ...}, ...]
    metadata/scenes_listeners.{split}.json  {"S06001": ["L0064", ...], ...}
    metadata/listeners.json                 {"L0064": {"audiogram_cfs": ..., ...}, ...}
    {split}/scenes/{scene}_{kind}_CH{channel}.wav   stereo (left, right)

``kind`` is ``mix``, ``target``, ``target_anechoic`` or ``interferer``; channel 0
is the eardrum, 1-3 the hearing-aid microphones (front to rear).

:class:`ClarityDataset` reads scenes; :class:`SceneSegments` turns one split into
a torch dataset of mono ``(mix, target)`` pairs at the model's rate.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import numpy as np
import soundfile as sf

from ..audiogram import Listener, load_listeners
from ..errors import RthaError

KINDS = ("mix", "target", "target_anechoic", "interferer")
EARS = {"left": (0,), "right": (1,), "both": (0, 1)}


def has_talker(scene: dict) -> bool:
    """Whether a competing talker is among a scene's interferers."""
    return any(i.get("type") == "speech" for i in scene.get("interferers", []))


def snr_band(snr: float, width: int = 6) -> str:
    """The ``width`` dB band an SNR (dB) falls in, as ``"+0..+6 dB"`` (lower edge included)."""
    lo = int(np.floor(snr / width) * width)
    return f"{lo:+d}..{lo + width:+d} dB"


def scene_groups(scene: dict) -> tuple[str, ...]:
    """The groups a scene's results are broken down by: its interferers (``"noise and babble
    only"`` or ``"with a competing talker"``) and, where the metadata has one, its SNR band."""
    kind = "with a competing talker" if has_talker(scene) else "noise and babble only"
    return (kind,) if scene.get("SNR") is None else (kind, "SNR " + snr_band(scene["SNR"]))


class ClarityDataset:
    """One split of a Clarity-format data set.

    Args:
        root: the folder holding ``metadata/`` and the split folders.
        split: ``train``, ``dev``, ``test`` (or any split with a ``scenes.{split}.json``).
    """

    def __init__(self, root, split: str):
        self.root = Path(root)
        self.split = split
        if self.root.exists() and not self.root.is_dir():
            raise RthaError(f"Clarity data folder {self.root} is a file; expected a folder with metadata/ and scenes")
        if not self.root.is_dir():
            raise RthaError(f"Clarity data folder {self.root} does not exist")
        meta = self.root / "metadata"
        scenes_file = meta / f"scenes.{split}.json"
        if not scenes_file.is_file():
            have = sorted(p.name[len("scenes.") : -len(".json")] for p in meta.glob("scenes.*.json"))
            raise RthaError(
                f"{scenes_file} not found: no split {split!r} in {self.root}"
                + (f" (splits found: {', '.join(have)})" if have else " (no metadata/scenes.*.json at all)")
            )
        scenes = _read_json(scenes_file)
        if not isinstance(scenes, list) or not all(isinstance(s, dict) and "scene" in s for s in scenes):
            raise RthaError(f"{scenes_file}: expected a JSON list of scene objects, each with a 'scene' name")
        self.scenes: list[dict] = scenes
        self._by_name = {s["scene"]: s for s in scenes}

    def __len__(self) -> int:
        return len(self.scenes)

    @property
    def names(self) -> list[str]:
        return [s["scene"] for s in self.scenes]

    @cached_property
    def scenes_listeners(self) -> dict[str, list[str]]:
        """``{scene: [listener ids]}`` from ``metadata/scenes_listeners.{split}.json``."""
        return _read_json(self.root / "metadata" / f"scenes_listeners.{self.split}.json")

    @cached_property
    def listeners(self) -> dict[str, Listener]:
        """``{listener id: Listener}`` from ``metadata/listeners.json``."""
        return load_listeners(self.root / "metadata" / "listeners.json")

    def path(self, scene: str, kind: str, channel: int = 1) -> Path:
        """The WAV file of one signal of a scene (it may not exist; :meth:`read` checks)."""
        if kind not in KINDS:
            raise RthaError(f"unknown signal kind {kind!r}; expected one of {', '.join(KINDS)}")
        if scene not in self._by_name:
            raise RthaError(f"scene {scene!r} is not in the {self.split} split of {self.root}")
        return self.root / self.split / "scenes" / f"{scene}_{kind}_CH{channel}.wav"

    def read(self, scene: str, kind: str, channel: int = 1) -> tuple[np.ndarray, int]:
        """``(audio float32 (2, samples), fs)``: the stereo signal (left, right)."""
        path = self.path(scene, kind, channel)
        if not path.is_file():
            raise RthaError(f"{path} not found (scene {scene}, {kind}, channel {channel})")
        try:
            x, fs = sf.read(str(path), dtype="float32", always_2d=True)
        except (RuntimeError, sf.LibsndfileError) as e:
            raise RthaError(f"{path}: cannot read audio ({e})") from None
        if x.shape[1] != 2:
            raise RthaError(f"{path} has {x.shape[1]} channel(s); expected a stereo (left, right) file")
        return np.ascontiguousarray(x.T), fs

    def read_pair(self, scene: str, kinds=("mix", "target"), channel: int = 1) -> tuple[list[np.ndarray], int]:
        """Several signals of a scene, checked to share one length and rate."""
        out, rates = [], []
        for kind in kinds:
            x, fs = self.read(scene, kind, channel)
            out.append(x)
            rates.append(fs)
        if len(set(rates)) > 1:
            raise RthaError(f"scene {scene}: {', '.join(kinds)} have different sample rates {rates}")
        lengths = [x.shape[1] for x in out]
        if len(set(lengths)) > 1:
            raise RthaError(f"scene {scene}: {', '.join(kinds)} have different lengths {lengths} samples")
        return out, rates[0]


def _read_json(path: Path):
    if not path.is_file():
        raise RthaError(f"{path} not found")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RthaError(f"{path}: cannot read JSON ({e})") from None


class SceneSegments:
    """Mono ``(mix, target)`` pairs from one split, at the model rate, as float32 tensors.

    A map-style dataset for ``torch.utils.data.DataLoader`` (torch is imported
    only when items are read, so the reader stays light).

    Each item is one ear of one scene (``ears="both"`` doubles the items).

    Args:
        data: a :class:`ClarityDataset` (or its root, with ``split``).
        sample_rate: the model rate; scenes at other rates are resampled.
        segment_s: crop length in seconds (random crops for training), or
            ``None`` for whole scenes (validation). Scenes shorter than the
            crop are zero-padded at the end.
        target: ``"target"`` (reverberant) or ``"target_anechoic"``.
        channel: Clarity channel number (1 = front hearing-aid microphones).
        ears: ``"left"``, ``"right"`` or ``"both"``.
        seed: crops depend only on ``(seed, epoch, index)`` (see :meth:`set_epoch`),
            so a resumed run sees the same data as an uninterrupted one.
        max_scenes: use only the first ``max_scenes`` scenes (quick validation).

    Items: ``(mix (samples,), target (samples,))`` torch float32 tensors.
    """

    def __init__(self, data, split: str | None = None, *, sample_rate: int = 16000, segment_s: float | None = None,
                 target: str = "target", channel: int = 1, ears: str = "both", seed: int = 0,
                 max_scenes: int | None = None):
        if not isinstance(data, ClarityDataset):
            if split is None:
                raise RthaError("SceneSegments needs a ClarityDataset or a root folder and a split")
            data = ClarityDataset(data, split)
        if target not in ("target", "target_anechoic"):
            raise RthaError(f"training target {target!r}; expected 'target' (reverberant) or 'target_anechoic'")
        if ears not in EARS:
            raise RthaError(f"ears={ears!r}; expected one of {', '.join(EARS)}")
        if segment_s is not None and segment_s <= 0:
            raise RthaError(f"segment length {segment_s} s; expected a positive number of seconds")
        if max_scenes is not None and max_scenes < 1:  # a slice would quietly drop scenes from the end
            raise RthaError(f"max scenes {max_scenes}; expected 1 or more scenes")
        self.data = data
        self.sample_rate = int(sample_rate)
        self.segment_s = segment_s
        self.target = target
        self.channel = channel
        self.ears = EARS[ears]
        self.seed = seed
        self.epoch = 0
        names = data.names if max_scenes is None else data.names[:max_scenes]
        if not names:
            raise RthaError(f"the {data.split} split of {data.root} has no scenes")
        self.items = [(n, e) for n in names for e in self.ears]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        import torch

        from ..dsp.resample import resample

        scene, ear = self.items[index]
        (mix, target), fs = self.data.read_pair(scene, ("mix", self.target), self.channel)
        mix, target = mix[ear], target[ear]
        if self.segment_s is not None:
            # Crop at the file rate first so that only the crop is resampled.
            n = int(round(self.segment_s * fs))
            if len(mix) < n:
                mix, target = (np.pad(a, (0, n - len(a))) for a in (mix, target))
            start = int(np.random.default_rng([self.seed, self.epoch, index]).integers(0, len(mix) - n + 1))
            mix, target = mix[start : start + n], target[start : start + n]
        mix = resample(mix, fs, self.sample_rate)
        target = resample(target, fs, self.sample_rate)
        return torch.from_numpy(np.ascontiguousarray(mix)), torch.from_numpy(np.ascontiguousarray(target))
