"""Train the causal Conv-TasNet on Clarity-format scenes: ``rtha train CONFIG.toml``.

Negative SNR loss (or SI-SDR), Adam with gradient clipping, a linear warm-up and
halving on validation plateaus; SI-SDR improvement on the validation split
every epoch (an epoch is ``steps_per_epoch`` steps, or ``valid_every_cpu_s``
training CPU-seconds). Training examples are crops of the generated train
split, or (``mixing = "dynamic"``) fresh scenes mixed on the fly from the
corpus (:mod:`training.dynamic_mix`). In ``output.dir``:

    last.pt   best.pt   model checkpoints (``rtha.enhance.save_checkpoint``) with metadata;
              with the SI-SDR loss the validation split's output gain is folded in
              (``training.calibrate``), with the SNR loss the level is learnt
    state.pt  everything needed to resume exactly: weights, optimizer, scheduler,
              RNG states, epoch and step (written every ``checkpoint_every`` steps)
    log.csv   one row per ``log_every`` training steps and per validation
    config.toml  the config the run started with

Resuming (``--resume``) continues from ``state.pt`` and gives the same losses as
an uninterrupted run: batches and crops depend only on (seed, epoch, position),
dynamic batches on (seed, step). ``max_seconds`` stops a run (resumably) after
that much training time, wall-clock or CPU (``clock``), summed over resumes.

Runs on CPU or CUDA (``autocast`` on CUDA) and under ``torchrun`` with
DistributedDataParallel: each process takes its share of every epoch through a
``DistributedSampler``; rank 0 logs and writes checkpoints.
"""

from __future__ import annotations

import copy
import csv
import math
import os
import platform
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from rtha.data import ClarityDataset, SceneSegments
from rtha.enhance import ConvTasNet, save_checkpoint
from rtha.errors import RthaError

from .config import Config, load_config
from .dynamic_mix import DynamicMix, MixConfig, batch_loader
from .evaluate import measure
from .losses import loss_fn, si_sdr  # noqa: F401  (si_sdr: re-exported for callers of training.train)

LOG_FIELDS = ("time", "epoch", "step", "phase", "loss", "si_sdri_db", "lr", "steps_per_s", "segments_per_s",
              "audio_s_per_s", "si_sdri_noise_db", "si_sdri_talker_db", "output_gain", "train_s", "train_cpu_s",
              "audio_h")


@dataclass
class Dist:
    """This process's place in a (possibly single-process) run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def setup(cls) -> "Dist":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        d = cls(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
        if torch.cuda.is_available():
            torch.cuda.set_device(d.local_rank)
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return d


def _device(d: Dist) -> torch.device:
    return torch.device(f"cuda:{d.local_rank}") if torch.cuda.is_available() else torch.device("cpu")


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def hardware() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}"
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s)"


class Trainer:
    """One training run; :meth:`fit` trains until ``epochs`` (or ``max_steps``) are done."""

    def __init__(self, cfg: Config, resume: bool = False, force: bool = False, max_steps: int | None = None,
                 progress: bool = True, max_seconds: float | None = None, clock: str = "wall"):
        self.cfg = cfg
        self.dist = Dist.setup()
        self.device = _device(self.dist)
        self.out = Path(cfg.output.dir)
        if max_steps is not None and max_steps < 1:
            raise RthaError(f"--max-steps {max_steps}: expected a positive number of steps")
        if max_seconds is not None and max_seconds <= 0:
            raise RthaError(f"time budget {max_seconds} s: expected a positive number of seconds")
        if clock not in ("wall", "cpu"):
            raise RthaError(f"clock {clock!r}: expected 'wall' or 'cpu'")
        self.max_steps = max_steps
        self.max_seconds = max_seconds
        self.clock = clock
        self.show_progress = progress and self.dist.main
        t, dc = cfg.train, cfg.data
        if t.threads:
            torch.set_num_threads(t.threads)
        state_file = self.out / "state.pt"
        if resume and not state_file.is_file():  # before the folder is made: a mistyped --resume leaves nothing behind
            raise RthaError(f"--resume: {state_file} not found; start without --resume")
        _check_output_dir(self.out)
        if not resume and state_file.exists() and not force:
            raise RthaError(f"{self.out} already holds a run; pass --resume to continue it or --force to start over")

        self.model_cfg = cfg.model_config()
        fs = self.model_cfg.sample_rate
        self.valid_set = SceneSegments(ClarityDataset(dc.root, dc.valid_split), sample_rate=fs, segment_s=None,
                                       target=dc.target, channel=dc.channel, ears=dc.ears, seed=t.seed,
                                       max_scenes=dc.valid_max_scenes or None)
        self.dynamic = dc.mixing == "dynamic"
        if self.dynamic:
            if dc.target != "target":
                raise RthaError(f"[data] target = {dc.target!r}: dynamic mixing trains on the reverberant 'target'")
            mix = MixConfig(segment_s=dc.segment_s, snr_db=tuple(dc.snr_db), target_level_dbfs=tuple(dc.level_dbfs),
                            clean_fraction=dc.clean_fraction, interferer_types=tuple(dc.interferer_types))
            # Each process draws its own examples: the rank is part of the seed.
            self.train_set = DynamicMix(dc.corpus, dc.root, t.batch_size, fs, seed=t.seed * 1000 + self.dist.rank,
                                        mix=mix)
            self.steps_per_epoch = t.steps_per_epoch
        else:
            self.train_set = SceneSegments(ClarityDataset(dc.root, dc.train_split), sample_rate=fs,
                                           segment_s=dc.segment_s, target=dc.target, channel=dc.channel,
                                           ears=dc.ears, seed=t.seed)
            self.sampler = DistributedSampler(self.train_set, num_replicas=self.dist.world, rank=self.dist.rank,
                                              shuffle=True, seed=t.seed, drop_last=True)
            per_pass = len(self.sampler) // t.batch_size
            if per_pass < 1:
                raise RthaError(
                    f"{len(self.train_set)} training segments are fewer than one batch of {t.batch_size} per process"
                )
            self.steps_per_epoch = min(t.steps_per_epoch, per_pass) if t.steps_per_epoch else per_pass
        self.loss_fn = loss_fn(t.loss)

        torch.manual_seed(t.seed)
        self.model = ConvTasNet(self.model_cfg).to(self.device)
        self.net = self.model
        if self.dist.world > 1:
            ids = [self.dist.local_rank] if self.device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        self.lr_scale = 1.0  # halved on validation plateaus
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda step: self._lr_factor(step))
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(t.amp)
        self.use_amp = self.device.type == "cuda" and self.amp_dtype is not None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)

        self.epoch = 0
        self.step_in_epoch = 0
        self.global_step = 0
        self.best = -math.inf
        self.bad_epochs = 0
        self.elapsed = 0.0  # training seconds, summed over resumed sessions
        self.cpu_elapsed = 0.0  # training CPU-seconds of this process, summed over resumed sessions
        self.output_gain = 1.0  # least-squares gain from output to target on the validation split
        self.last_metrics: dict = {}
        self.stopped = False
        if resume:
            self._load_state(state_file)
        elif t.init_from:
            self._init_from(Path(t.init_from))
        if not resume and self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
            for name in ("log.csv", "state.pt", "last.pt", "best.pt"):
                (self.out / name).unlink(missing_ok=True)
            if cfg.source:
                shutil.copyfile(cfg.source, self.out / "config.toml")
        self.writer = self._tensorboard()

    # ------------------------------------------------------------------ schedule

    @property
    def _min_lr_scale(self) -> float:
        t = self.cfg.train
        return t.lr_min / t.lr

    def _lr_factor(self, step: int) -> float:
        t = self.cfg.train
        factor = self.lr_scale * (min(1.0, (step + 1) / t.warmup_steps) if t.warmup_steps > 0 else 1.0)
        if t.lr_decay_steps:
            floor = self._min_lr_scale
            factor *= floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(step, t.lr_decay_steps) / t.lr_decay_steps))
        return factor

    @property
    def total_steps(self) -> int | None:
        """Steps the run ends at (``None``: set by the time budget or CPU-second epochs)."""
        total = None if self.cfg.train.valid_every_cpu_s > 0 and self.dynamic else \
            self.cfg.train.epochs * self.steps_per_epoch
        if self.max_steps:
            return min(total, self.max_steps) if total else self.max_steps
        return total

    @property
    def spent(self) -> float:
        """Training time counted against ``max_seconds`` (wall or CPU seconds)."""
        return self.cpu_elapsed if self.clock == "cpu" else self.elapsed

    def _epoch_done(self) -> bool:
        every = self.cfg.train.valid_every_cpu_s
        if self.dynamic and every > 0:
            return self.cpu_elapsed >= (self.epoch + 1) * every
        return self.step_in_epoch >= self.steps_per_epoch

    def _finished(self) -> bool:
        return bool((self.max_steps and self.global_step >= self.max_steps)
                    or (self.max_seconds and self.spent >= self.max_seconds)
                    or self.epoch >= self.cfg.train.epochs)

    # ------------------------------------------------------------------ state

    def _state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "best": self.best,
            "bad_epochs": self.bad_epochs,
            "lr_scale": self.lr_scale,
            "elapsed": self.elapsed,
            "cpu_elapsed": self.cpu_elapsed,
            "last_metrics": self.last_metrics,
            "output_gain": self.output_gain,
            "valid_dry_mix": self.cfg.train.dry_mix,
            "loss_name": self.cfg.train.loss,
        }

    def _load_state(self, path: Path) -> None:
        try:
            s = torch.load(path, map_location="cpu", weights_only=True)
            self.model.load_state_dict(s["model"])
            self.opt.load_state_dict(s["optimizer"])
            self.sched.load_state_dict(s["scheduler"])
            self.scaler.load_state_dict(s["scaler"])
        except (RuntimeError, KeyError, EOFError, ValueError) as e:
            raise RthaError(f"{path}: cannot resume from it ({str(e).splitlines()[0] if str(e) else e!r})") from None
        torch.set_rng_state(s["torch_rng"])
        if s["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(s["cuda_rng"])
        for key in ("epoch", "step_in_epoch", "global_step", "best", "bad_epochs", "lr_scale", "elapsed",
                    "last_metrics"):
            setattr(self, key, s[key])
        # Validation noise (~0.1 dB on 50 scenes) halves the lr too often; a floor set later lifts it.
        self.lr_scale = max(self.lr_scale, self._min_lr_scale)
        # The config's lr is the base, also when a resume changes it (the scheduler's state holds the old
        # one); lr_scale carries the halvings. Set now, so that the first step already runs at it.
        lr = self.cfg.train.lr * self._lr_factor(self.sched.last_epoch)
        self.sched.base_lrs = [self.cfg.train.lr] * len(self.opt.param_groups)
        for group in self.opt.param_groups:
            group["initial_lr"], group["lr"] = self.cfg.train.lr, lr
        self.output_gain = s.get("output_gain", 1.0)  # runs saved before calibration existed
        self.cpu_elapsed = s.get("cpu_elapsed", 0.0)  # runs saved before CPU time was counted
        if (s.get("valid_dry_mix", 0.0) != self.cfg.train.dry_mix
                or s.get("loss_name", self.cfg.train.loss) != self.cfg.train.loss):
            # Validation now measures another output, or the run aims at another trade-off (a pooled loss
            # gives up mean SI-SDRi for level): the old best is no yardstick, and best.pt is this one's.
            self.best, self.bad_epochs = -math.inf, 0
        self._truncate_log()

    def _init_from(self, path: Path) -> None:
        """Start from ``path``'s weights (a model file or a run's ``state.pt``), unchanged in output.

        The model may have more repeats than ``path``'s, or a context branch it
        lacks: those start as no-ops (:meth:`ConvTasNet.load_grown_`). A
        ``state.pt`` takes its model's ``X`` from the run's ``config.toml``
        beside it (else this model's). The run's step and training-time
        counters continue from the file's.
        """
        from rtha.enhance import load_checkpoint

        if path.name == "state.pt":
            try:
                s = torch.load(path, map_location="cpu", weights_only=True)
                weights = s["model"]
                counters = (s["global_step"], s["elapsed"], s.get("cpu_elapsed", 0.0))
            except (RuntimeError, KeyError, EOFError, ValueError, OSError) as e:
                raise RthaError(f"[train] init_from {path}: not a run's state ({str(e).splitlines()[0]})") from None
            run_config = path.parent / "config.toml"
            X = load_config(run_config).model_config().X if run_config.is_file() else self.model.cfg.X
        else:
            model, meta = load_checkpoint(path)
            weights, X = model.state_dict(), model.cfg.X
            counters = (meta.get("steps", 0), meta.get("training_time_s", 0.0), meta.get("training_cpu_s", 0.0))
        try:
            self.model.load_grown_(weights, X)
        except ValueError as e:
            raise RthaError(f"[train] init_from {path}: {e} (the {self.cfg.model} model)") from None
        self.global_step, self.elapsed, self.cpu_elapsed = int(counters[0]), float(counters[1]), float(counters[2])

    def _truncate_log(self) -> None:
        """Drop log rows written after the state being resumed (the work is redone)."""
        log = self.out / "log.csv"
        if not self.dist.main or not log.is_file():
            return
        with open(log, newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= self.global_step]
        with open(log, "w", newline="") as fh:
            w = csv.DictWriter(fh, LOG_FIELDS)
            w.writeheader()
            w.writerows(rows)

    def _metadata(self) -> dict:
        gen = Path(self.cfg.data.root) / "metadata" / "generation.json"
        dc = self.cfg.data
        data = {"root": str(dc.root), "train_split": dc.train_split, "valid_split": dc.valid_split,
                "target": dc.target, "channel": dc.channel, "mixing": dc.mixing}
        if self.dynamic:
            data["audio_hours_seen"] = round(self.audio_hours, 3)
        else:
            data["train_segments"] = len(self.train_set)
        if gen.is_file():
            import json

            g = json.loads(gen.read_text())
            data["generation"] = {k: g.get(k) for k in ("generator", "num_scenes", "seed", "config", "licences")}
        return {
            "data": data,
            "steps": self.global_step,
            "epoch": self.epoch,
            "metrics": self.last_metrics,
            "training_time_s": round(self.elapsed, 1),
            "training_cpu_s": round(self.cpu_elapsed, 1),
            "hardware": hardware(),
            "world_size": self.dist.world,
            "train_config": self.cfg.to_dict(),
        }

    def save(self, best: bool = False) -> None:
        """Write ``state.pt`` and ``last.pt`` (and ``best.pt``); rank 0 only."""
        if not self.dist.main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.out / "state.pt.partial"
        torch.save(self._state(), tmp)
        os.replace(tmp, self.out / "state.pt")
        # SI-SDR leaves level and sign free: its exported models carry the validation
        # set's output gain, while state.pt keeps the trained weights as they are.
        # The SNR loss learns the level; its measured gain is only recorded.
        exported = copy.deepcopy(self.model).cpu()
        if self.cfg.train.loss == "si_sdr":
            exported.scale_output_(self.output_gain)
            meta = {**self._metadata(), "output_gain": self.output_gain}
        else:
            meta = {**self._metadata(), "valid_output_gain": self.output_gain}
        if self.cfg.train.dry_mix:
            meta["dry_mix"] = self.cfg.train.dry_mix
        save_checkpoint(self.out / "last.pt", exported, meta)
        if best:
            save_checkpoint(self.out / "best.pt", exported, meta)

    # ------------------------------------------------------------------ logging

    def _tensorboard(self):
        if not self.dist.main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # optional: tensorboard is not a dependency
            return None
        return SummaryWriter(str(self.out / "tensorboard"))

    def log(self, row: dict) -> None:
        if not self.dist.main:
            return
        log = self.out / "log.csv"
        new = not log.exists()
        with open(log, "a", newline="") as fh:
            w = csv.DictWriter(fh, LOG_FIELDS)
            if new:
                w.writeheader()
            w.writerow({"time": round(time.time(), 1), **row})
        if self.writer is not None:
            for key in ("loss", "si_sdri_db", "lr", "segments_per_s"):
                if row.get(key) not in (None, ""):
                    self.writer.add_scalar(f"{row['phase']}/{key}", float(row[key]), row["step"])

    # ------------------------------------------------------------------ steps

    @property
    def audio_hours(self) -> float:
        """Hours of audio trained on, all processes together."""
        t = self.cfg.train
        return self.global_step * t.batch_size * self.dist.world * self.cfg.data.segment_s / 3600

    def _batches(self):
        """This process's batches from the current step on: dynamic mixes, or crops of
        the train split epoch after epoch (resuming inside an epoch where it stopped)."""
        if self.dynamic:
            yield from batch_loader(self.train_set, self.global_step, workers=max(1, self.cfg.data.num_workers))
            return
        b = self.cfg.train.batch_size
        epoch, skip = self.epoch, self.step_in_epoch
        while True:
            self.sampler.set_epoch(epoch)
            self.train_set.set_epoch(epoch)
            order = list(self.sampler)
            batches = [order[i * b : (i + 1) * b] for i in range(skip, self.steps_per_epoch)]
            yield from DataLoader(self.train_set, batch_sampler=batches, num_workers=self.cfg.data.num_workers,
                                  pin_memory=self.device.type == "cuda")
            epoch, skip = epoch + 1, 0

    def train_step(self, mix: torch.Tensor, target: torch.Tensor) -> float:
        self.net.train()
        mix, target = mix.to(self.device, non_blocking=True), target.to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.bfloat16, enabled=self.use_amp):
            est = self.net(mix)[:, 0]
        dry = self.cfg.train.dry_mix
        if dry:  # trained as it plays: the input mixed back caps the noise reduction
            est = (1.0 - dry) * est.float() + dry * mix
        loss = self.loss_fn(est.float(), target)
        if not torch.isfinite(loss):
            raise RuntimeError(f"loss became {loss.item()} at step {self.global_step}; lower the learning rate")
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.train.grad_clip > 0:
            self.scaler.unscale_(self.opt)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        return loss.item()

    @torch.no_grad()
    def validate(self) -> dict:
        """:func:`training.evaluate.measure` on the validation split (rank 0 scores it all;
        float32 even on CUDA, so the numbers compare across machines)."""
        if self.dist.main:
            r = measure(self.model, self.valid_set, self.device, dry_mix=self.cfg.train.dry_mix)
        else:
            r = {}
        if self.dist.world > 1:
            box = [r]
            dist.broadcast_object_list(box, src=0)
            r = box[0]
        self.output_gain = r["output_gain"]
        return r

    # ------------------------------------------------------------------ loop

    def fit(self) -> dict:
        """Train; returns the last metrics.

        Ctrl-C or SIGTERM finishes the current step, saves a resumable state and
        returns (``self.stopped`` is then true); a second Ctrl-C stops at once.
        """
        stop = {"now": False}

        def on_signal(signum, frame):
            if stop["now"] and signum == signal.SIGINT:
                raise KeyboardInterrupt
            stop["now"] = True

        handled = (signal.SIGINT, signal.SIGTERM)
        old = [signal.signal(s, on_signal) for s in handled] if _main_thread() else []
        try:
            with self._progress() as progress:
                self._loop(progress, stop)
        finally:
            for s, handler in zip(handled, old):
                signal.signal(s, handler)
            if self.writer is not None:
                self.writer.close()
            if self.dist.world > 1:
                dist.destroy_process_group()
        self.stopped = stop["now"]
        return self.last_metrics

    def _progress(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
            TimeRemainingColumn

        return Progress(
            TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.2f} dB  {task.fields[sps]:.2f} steps/s  "
                       "valid SI-SDRi {task.fields[sdri]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), disable=not self.show_progress,
        )

    def _loop(self, progress, stop) -> None:
        t, b = self.cfg.train, self.cfg.train.batch_size
        seg_len = self.cfg.data.segment_s
        task = progress.add_task("train", total=self.total_steps, completed=self.global_step, epoch=self.epoch,
                                 loss=float("nan"), sps=0.0, sdri=self.last_metrics.get("valid_si_sdri_db", "-"))
        window_loss, window_n, window_t = 0.0, 0, time.perf_counter()
        batches = self._batches()
        while not self._finished():
            mix, target = next(batches)
            t0, c0 = time.perf_counter(), time.process_time()
            loss = self.train_step(mix, target)
            self.elapsed += time.perf_counter() - t0
            self.cpu_elapsed += time.process_time() - c0
            self.global_step += 1
            self.step_in_epoch += 1
            window_loss, window_n = window_loss + loss, window_n + 1
            now = time.perf_counter()
            sps = window_n / max(now - window_t, 1e-9)
            progress.update(task, completed=self.global_step, epoch=self.epoch, loss=loss, sps=sps)
            if self.global_step % t.log_every == 0:
                segs = sps * b * self.dist.world
                self.last_metrics["train_loss"] = round(window_loss / window_n, 4)
                # Full precision: resumed and uninterrupted runs can be compared exactly.
                self.log({"epoch": self.epoch, "step": self.global_step, "phase": "train",
                          "loss": window_loss / window_n, "lr": f"{self.sched.get_last_lr()[0]:.3g}",
                          "steps_per_s": round(sps, 4), "segments_per_s": round(segs, 3),
                          "audio_s_per_s": round(segs * seg_len, 3), **self._clocks()})
                self.last_metrics["segments_per_s"] = round(segs, 3)
                window_loss, window_n, window_t = 0.0, 0, now
            if self._epoch_done():
                self.end_epoch(progress, task)
                window_loss, window_n, window_t = 0.0, 0, time.perf_counter()  # validation is not training
            elif self.global_step % t.checkpoint_every == 0 or stop["now"]:
                self.save()
            if stop["now"]:
                self.save()
                return
        self.save()

    def _clocks(self) -> dict:
        return {"train_s": round(self.elapsed, 2), "train_cpu_s": round(self.cpu_elapsed, 2),
                "audio_h": round(self.audio_hours, 4)}

    def end_epoch(self, progress=None, task=None) -> dict:
        """Validate, log, adapt the learning rate, save (``best.pt`` when improved); returns the metrics."""
        r = self.validate()
        sdri = r["si_sdri_db"]
        for key in ("si_sdri_db", "si_sdri_noise_db", "si_sdri_talker_db", "output_gain"):
            self.last_metrics[f"valid_{key}"] = r[key]
        improved = sdri > self.best
        if improved:
            self.best, self.bad_epochs = sdri, 0
            self.last_metrics["best_valid_si_sdri_db"] = round(sdri, 3)
        else:
            self.bad_epochs += 1
            if self.cfg.train.lr_patience and self.bad_epochs >= self.cfg.train.lr_patience:
                self.lr_scale, self.bad_epochs = max(self.lr_scale / 2, self._min_lr_scale), 0
        self.log({"epoch": self.epoch, "step": self.global_step, "phase": "valid", "si_sdri_db": round(sdri, 3),
                  "lr": f"{self.sched.get_last_lr()[0]:.3g}", "si_sdri_noise_db": r["si_sdri_noise_db"],
                  "si_sdri_talker_db": r["si_sdri_talker_db"], "output_gain": r["output_gain"], **self._clocks()})
        if progress is not None:
            progress.update(task, sdri=f"{sdri:.2f} dB")
        self.epoch += 1
        self.step_in_epoch = 0
        self.save(best=improved)
        return r


def _check_output_dir(out: Path) -> None:
    """A one-line error now, not a traceback after the first steps, when ``out`` cannot hold a run."""
    if out.exists() and not out.is_dir():
        raise RthaError(f"output dir {out} is a file; expected a folder (or a path to create)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise RthaError(f"output dir {out} is not writable ({e.strerror or e})") from None


def train(cfg: Config, resume: bool = False, force: bool = False, max_steps: int | None = None,
          progress: bool = True, max_seconds: float | None = None, clock: str = "wall") -> Trainer:
    """Train with ``cfg``; returns the finished :class:`Trainer` (``last_metrics``, ``global_step``...)."""
    trainer = Trainer(cfg, resume=resume, force=force, max_steps=max_steps, progress=progress,
                      max_seconds=max_seconds, clock=clock)
    trainer.fit()
    return trainer
