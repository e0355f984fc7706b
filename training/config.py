"""Training configuration: one TOML file, four tables.

.. code-block:: toml

    [model]            # a preset, optionally with ConvTasNetConfig fields overridden
    preset = "default"

    [data]
    root = "scenes"    # Clarity-format folder (relative paths: from the working directory)
    target = "target"  # or "target_anechoic"
    segment_s = 2.0

    [train]
    batch_size = 4
    lr = 1e-3

    [output]
    dir = "runs/default"

Every key and its default is a field below; unknown keys are errors.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from rtha.data.scenes import INTERFERER_TYPES
from rtha.errors import RthaError, read_text


@dataclass
class DataConfig:
    root: str = "scenes"
    train_split: str = "train"
    valid_split: str = "dev"
    target: str = "target"  # "target" (reverberant) or "target_anechoic"
    channel: int = 1  # Clarity channel: 1 = front hearing-aid microphones
    ears: str = "both"  # each ear of a scene is one mono example
    segment_s: float = 2.0  # random training crops, s
    valid_max_scenes: int = 0  # 0: the whole validation split
    num_workers: int = 0  # DataLoader processes (0: load in the training process)
    # "scenes": crops of the generated train split; "dynamic": fresh scenes mixed on the fly
    # from the corpus (training.dynamic_mix), train-split speakers of ``root`` only
    mixing: str = "scenes"
    corpus: str = "../shared/data/corpus"  # dynamic mixing's source folder
    snr_db: list = field(default_factory=lambda: [-5.0, 15.0])  # dynamic mixing: SNR range, dB
    level_dbfs: list = field(default_factory=lambda: [-40.0, -18.0])  # dynamic mixing: target RMS range
    clean_fraction: float = 0.05  # dynamic mixing: share of examples without interferers
    # dynamic mixing: the interferer kinds drawn, some of speech, babble, noise, speech_shaped; empty: all
    # the generated scenes have (a model for noise only leaves competing talkers out)
    interferer_types: list = field(default_factory=list)


@dataclass
class TrainConfig:
    batch_size: int = 4  # per process
    lr: float = 1e-3
    warmup_steps: int = 100  # linear warm-up from lr/warmup_steps
    lr_patience: int = 3  # halve the lr after this many epochs without a better validation; 0: never
    lr_min: float = 0.0  # the halving stops at this lr (a resume below it starts there); 0: no floor
    # cosine decay of the lr to lr_min over this many scheduler steps (counted from the run's first step,
    # or from its init_from), then held there: the final anneal of a run or a branch (with lr_patience = 0,
    # else the plateau halvings scale it further); 0: off
    lr_decay_steps: int = 0
    loss: str = "si_sdr"  # "snr", "snr_pooled": level and polarity learnt; "si_sdr": calibrated on export
    dry_mix: float = 0.0  # fraction of the input in the output it is trained (and shipped) with; caps noise reduction
    # a model file (or a run's state.pt) whose weights start a new run where their names and shapes match;
    # the new run also takes over its step and training-time counters (the CPU-hours continue)
    init_from: str = ""
    weight_decay: float = 0.0
    grad_clip: float = 5.0  # max gradient L2 norm; 0: off
    epochs: int = 100
    steps_per_epoch: int = 0  # 0: one pass over the training split; else validate every this many steps
    valid_every_cpu_s: float = 0.0  # dynamic mixing: validate every this many training CPU-seconds instead
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0: torch's default
    amp: str = "bf16"  # on CUDA: "bf16", "fp16" or "off" (CPU always float32)
    checkpoint_every: int = 50  # steps between resumable checkpoints
    log_every: int = 10  # steps between CSV rows


@dataclass
class OutputConfig:
    dir: str = "runs/default"


@dataclass
class Config:
    model: dict = field(default_factory=lambda: {"preset": "default"})
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    source: str = ""  # the file it came from

    def model_config(self):
        """The :class:`ConvTasNetConfig`: ``preset`` plus any fields given beside it."""
        from rtha.enhance import ConvTasNetConfig

        m = dict(self.model)
        preset = m.pop("preset", "default")
        try:
            base = ConvTasNetConfig.preset(preset).to_dict()
            known = [f.name for f in fields(ConvTasNetConfig)]
            unknown = sorted(set(m) - set(known))
            if unknown:
                raise ValueError(f"unknown model key(s) {', '.join(unknown)}; expected preset or {', '.join(known)}")
            return ConvTasNetConfig.from_dict({**base, **m})
        except ValueError as e:
            raise RthaError(f"{self.source or 'config'} [model]: {e}") from None

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("source")
        return d


_TABLES = {"data": DataConfig, "train": TrainConfig, "output": OutputConfig}


def from_dict(d: dict, source: str = "") -> Config:
    where = source or "config"
    unknown = sorted(set(d) - {"model", *_TABLES})
    if unknown:
        raise RthaError(f"{where}: unknown table(s) {', '.join(unknown)}; expected model, data, train, output")
    cfg = Config(source=source)
    if "model" in d:
        if not isinstance(d["model"], dict):
            raise RthaError(f"{where}: [model] must be a table")
        cfg.model = dict(d["model"])
    for name, cls in _TABLES.items():
        given = d.get(name, {})
        known = {f.name: f for f in fields(cls)}
        bad = sorted(set(given) - set(known))
        if bad:
            raise RthaError(f"{where} [{name}]: unknown key(s) {', '.join(bad)}; expected {', '.join(known)}")
        values = {}
        for key, value in given.items():
            default = getattr(cls(), key)
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if type(value) is not type(default):
                raise RthaError(
                    f"{where} [{name}] {key} = {value!r}; expected a {type(default).__name__} (like {default!r})"
                )
            values[key] = value
        setattr(cfg, name, cls(**values))
    _check(cfg, where)
    return cfg


def _check(cfg: Config, where: str) -> None:
    t, dc = cfg.train, cfg.data
    positive = {"batch_size": t.batch_size, "lr": t.lr, "epochs": t.epochs, "checkpoint_every": t.checkpoint_every,
                "log_every": t.log_every, "segment_s": dc.segment_s}
    for key, value in positive.items():
        if value <= 0:
            raise RthaError(f"{where}: {key} = {value}; expected a positive number")
    if t.lr_decay_steps < 0:
        raise RthaError(f"{where} [train] lr_decay_steps = {t.lr_decay_steps}; expected 0 (off) or a number of steps")
    if not 0.0 <= t.lr_min <= t.lr:
        raise RthaError(f"{where} [train] lr_min = {t.lr_min}; expected 0 (no floor) up to lr = {t.lr}")
    if t.amp not in ("bf16", "fp16", "off"):
        raise RthaError(f"{where} [train] amp = {t.amp!r}; expected 'bf16', 'fp16' or 'off'")
    if dc.target not in ("target", "target_anechoic"):
        raise RthaError(f"{where} [data] target = {dc.target!r}; expected 'target' or 'target_anechoic'")
    if dc.ears not in ("left", "right", "both"):
        raise RthaError(f"{where} [data] ears = {dc.ears!r}; expected 'left', 'right' or 'both'")
    bad = [k for k in dc.interferer_types if k not in INTERFERER_TYPES]
    if bad:
        raise RthaError(f"{where} [data] interferer_types: unknown kind(s) {bad}; expected some of "
                        f"{', '.join(INTERFERER_TYPES)}")
    if dc.mixing not in ("scenes", "dynamic"):
        raise RthaError(f"{where} [data] mixing = {dc.mixing!r}; expected 'scenes' or 'dynamic'")
    if dc.mixing == "dynamic" and t.steps_per_epoch <= 0 and t.valid_every_cpu_s <= 0:
        raise RthaError(f"{where}: dynamic mixing has no epochs; set [train] steps_per_epoch or valid_every_cpu_s")
    for key in ("snr_db", "level_dbfs"):
        pair = getattr(dc, key)
        if len(pair) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair) \
                or pair[0] > pair[1]:
            raise RthaError(f"{where} [data] {key} = {pair!r}; expected [low, high] numbers with low <= high")
    if not 0.0 <= dc.clean_fraction <= 1.0:
        raise RthaError(f"{where} [data] clean_fraction = {dc.clean_fraction}; expected a fraction in 0...1")
    from .losses import LOSSES

    if not 0.0 <= t.dry_mix < 1.0:
        raise RthaError(f"{where} [train] dry_mix = {t.dry_mix}; expected a fraction in 0...1 (1 excluded)")
    if t.loss not in LOSSES:
        raise RthaError(f"{where} [train] loss = {t.loss!r}; expected one of {', '.join(LOSSES)}")
    cfg.model_config()


def load_config(path) -> Config:
    """Read and check a training TOML file."""
    path = Path(path)
    text = read_text(path, "training config")
    try:
        d = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RthaError(f"{path}: not valid TOML ({e})") from None
    return from_dict(d, str(path))
