"""What a scoring run scores with: settings, and each system's chain configuration.

The configuration of a system (chain rate, NAL-R variant, compressor, model
file hash...) is written to ``--report`` and hashed into the ``config`` column
of the scores CSV, so rows scored with different chains are never mixed.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass
from pathlib import Path

from ..audiogram import CHALLENGE_LEVEL_DB_SPL
from ..errors import RthaError


@dataclass(frozen=True)
class System:
    """One system rtha can score: where its input comes from and whether the enhancer runs on it.

    Every system then goes through the listener's amplification (NAL-R ->
    compressor -> tanh) at the scoring rate.
    """

    name: str
    enhancer: bool = False  # the mix goes through the enhancer first (needs a model)
    external: bool = False  # the input is --enhanced-dir's {scene}_{listener}_enhanced.wav, not the mix
    description: str = ""


#: Systems rtha can score, by name; ``unprocessed`` is the baseline of the paired differences.
SYSTEMS = {
    s.name: s
    for s in (
        System("enhanced", enhancer=True, description="enhancer -> NAL-R -> compressor -> tanh"),
        System("unprocessed", description="NAL-R -> compressor -> tanh, the challenge baseline"),
        System("external", external=True, description="--enhanced-dir files through the same amplification"),
    )
}


def uses_enhancer(systems) -> bool:
    """Whether any of the named systems runs the enhancer."""
    return any(SYSTEMS[name].enhancer for name in systems)


def uses_external(systems) -> bool:
    """Whether any of the named systems reads --enhanced-dir files."""
    return any(SYSTEMS[name].external for name in systems)
SEEDING = (
    "per (scene, listener, system): numpy RandomState(int(md5(scene).hexdigest(), 16) % 10**8), "
    "drawn by HASPI left, HASPI right, HASQI left, HASQI right in that order "
    "(the ICASSP 2023 evaluation's np.random.seed per scene)"
)


@dataclass(frozen=True)
class ScoreSettings:
    """Everything a worker needs to score pairs (plain values, so it pickles to worker processes).

    Attributes:
        root, split: the Clarity-format dataset.
        systems: names from :data:`SYSTEMS`.
        rate: rate the amplification chain runs and the metrics are computed at, Hz.
        nfir: NAL-R filter order, or None for rtha's default (5 ms each side).
        nalr_phase: ``"minimum"`` (rtha's streaming default) or ``"linear"`` (pyclarity's).
        model_path: enhancer checkpoint for ``enhanced``.
        dry_mix: fraction of the input mixed back after the enhancer (``enhanced``).
        enhanced_dir: folder of external ``{scene}_{listener}_enhanced.wav`` for ``external``.
    """

    root: str
    split: str
    systems: tuple[str, ...]
    rate: int
    nfir: int | None = None
    nalr_phase: str = "minimum"
    model_path: str | None = None
    dry_mix: float | None = None
    enhanced_dir: str | None = None
    level_db_spl: float = CHALLENGE_LEVEL_DB_SPL  # the metrics' presentation level


def parse_systems(text: str) -> tuple[str, ...]:
    """``"enhanced,unprocessed"`` -> ``("enhanced", "unprocessed")``, checked, duplicates dropped."""
    names = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    if not names:
        raise RthaError(f"--systems {text!r}: expected a comma-separated list of {', '.join(SYSTEMS)}")
    for name in names:
        if name not in SYSTEMS:
            raise RthaError(f"--systems: unknown system {name!r}; expected some of {', '.join(SYSTEMS)}")
    return names


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_info(path) -> dict:
    """Path, sha256, rate, latency-relevant config and training metadata of a checkpoint."""
    from ..enhance import load_checkpoint

    model, metadata = load_checkpoint(path)
    return {
        "path": str(Path(path).resolve()),
        "sha256": file_sha256(path),
        "sample_rate": int(model.cfg.sample_rate),
        "config": model.cfg.to_dict(),
        "metadata": metadata,
    }


def compressor_settings() -> dict:
    """The compressor's parameters as the chain builds it (its defaults = ICASSP 2023's)."""
    from ..dsp import Compressor

    return {
        name: p.default
        for name, p in inspect.signature(Compressor).parameters.items()
        if name != "fs" and p.default is not inspect.Parameter.empty
    }


def system_configurations(settings: ScoreSettings, model: dict | None) -> dict[str, dict]:
    """``{system: configuration}`` for the report and the CSV ``config`` hash."""
    from ..dsp.nalr import default_nfir

    amplification = {
        "rate": settings.rate,
        "nalr": {
            "phase": settings.nalr_phase,
            "nfir": settings.nfir if settings.nfir is not None else default_nfir(settings.rate),
        },
        "compressor": compressor_settings(),
        "softclip": "tanh",
        "flush": "input followed by nfir zeros (plus the enhancer's latency), as np.convolve's full output",
        "reference": "target_anechoic_CH1 scaled per channel to the RMS of target_CH1",
        "level_db_spl": settings.level_db_spl,
        "seeding": SEEDING,
    }
    out = {}
    for name in settings.systems:
        system = SYSTEMS[name]
        if system.external:
            front = {"input": f"{settings.enhanced_dir}/{{scene}}_{{listener}}_enhanced.wav"}
        else:
            front = {"input": "mix_CH1"}
        if system.enhancer:
            assert model is not None
            front["enhancer"] = {k: model[k] for k in ("path", "sha256", "sample_rate", "config")}
            front["dry_mix"] = settings.dry_mix
        out[name] = {**front, **amplification}
    return out


def config_hash(configuration: dict) -> str:
    """Short stable hash of a configuration (paths excluded, so a moved dataset or model still matches)."""
    def strip(d):
        if isinstance(d, dict):
            return {k: strip(v) for k, v in d.items() if k != "path"}
        return d

    text = json.dumps(strip(configuration), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]

