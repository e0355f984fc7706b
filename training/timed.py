"""Train for a fixed time on whatever device is present, then report in one line.

    python -m training.timed training/configs/default.toml --minutes 8 --out runs/gpu \\
        [--resume models/state/default] [--corpus ../shared/data/corpus]

For a borrowed machine (e.g. a GPU for a few minutes): it reads only the
repository and the corpus, builds the dev scenes it validates on when the
config's data root has none (``tools/make_scenes.py --only dev``, the same
scenes as everywhere else), and trains as far as it can in ``--minutes`` of
training time. On CUDA it uses bfloat16 autocast, ``--batch`` examples per step
(default 64) and one mixing process per spare CPU core; on CPU the config as it
is. ``--resume DIR`` continues the run whose ``state.pt`` (and ``log.csv``) is
in DIR, e.g. the state committed under ``models/state/``, for ``--minutes`` more. It ends with a
validation and writes ``last.pt``, ``best.pt``, ``state.pt``, ``log.csv`` to
``--out`` and prints::

    timed: cuda NVIDIA ... | 1234 steps (+1200) | 2.31 h audio seen | dev SI-SDRi 7.12 dB | 480 s | runs/gpu
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from rtha.errors import RthaError

SCENES_SEED = 1  # the generated scenes every model is validated and tested on (README, models/README.md)
SCENES_COUNT = 2000


def ensure_dev_scenes(root: Path, corpus: Path, split: str, workers: int) -> None:
    """Render ``split`` of the standard scenes under ``root`` unless it is already there."""
    if (root / "metadata" / f"scenes.{split}.json").is_file():
        return
    from rtha.data.scenes import SceneConfig, generate

    print(f"timed: rendering the {split} scenes into {root} (once)", file=sys.stderr)
    generate(corpus, root, SCENES_COUNT, SCENES_SEED, SceneConfig(exclude_licences=("BY-SA",)), workers=workers,
             only=(split,))


def run(config: Path, minutes: float, out: Path, resume: Path | None = None, corpus: Path | None = None,
        data: Path | None = None, batch: int = 64, force: bool = False) -> dict:
    """Train ``config`` for ``minutes`` of training time into ``out``; returns the summary dict."""
    import torch

    from .config import load_config
    from .train import Trainer

    if not minutes > 0:
        raise RthaError(f"--minutes {minutes}: expected a positive number of minutes")
    cfg = load_config(config)
    cfg.output.dir = str(out)
    if corpus:
        cfg.data.corpus = str(corpus)
    if data:
        cfg.data.root = str(data)
    if cfg.data.mixing != "dynamic":
        raise RthaError(f"{config}: training.timed mixes its examples on the fly; set [data] mixing = \"dynamic\"")
    if not Path(cfg.data.corpus).is_dir():
        raise RthaError(f"corpus folder {cfg.data.corpus} not found; pass --corpus (e.g. ../shared/data/corpus)")
    if (out / "state.pt").exists() and not force:
        raise RthaError(f"{out} already holds a run; pass --force to replace it, or --resume {out} to continue it")
    if resume is not None:
        state = resume / "state.pt" if resume.is_dir() else resume
        if not state.is_file():
            raise RthaError(f"--resume {resume}: no state.pt there")
        if state.resolve() != (out / "state.pt").resolve():
            out.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(state, out / "state.pt")
            if (state.parent / "log.csv").is_file():
                shutil.copyfile(state.parent / "log.csv", out / "log.csv")
    cuda = torch.cuda.is_available()
    cores = os.cpu_count() or 1
    ensure_dev_scenes(Path(cfg.data.root), Path(cfg.data.corpus), cfg.data.valid_split, workers=max(1, cores - 1))
    if cuda:
        cfg.train.threads = 0
        cfg.train.batch_size = batch
        cfg.train.amp = "bf16"
        cfg.data.num_workers = max(1, cores - 1)
    trainer = Trainer(cfg, resume=resume is not None, force=True, progress=sys.stderr.isatty(), clock="wall")
    trainer.max_seconds = trainer.elapsed + minutes * 60  # M more minutes, whatever the resumed run had spent
    first = trainer.global_step
    t0 = time.perf_counter()
    trainer.fit()
    r = trainer.end_epoch()
    device = f"cuda {torch.cuda.get_device_name(0)}" if cuda else f"cpu ({torch.get_num_threads()} thread(s))"
    return {"device": device, "steps": trainer.global_step, "new_steps": trainer.global_step - first,
            "audio_hours_seen": round(trainer.audio_hours, 3), "dev_si_sdri_db": r["si_sdri_db"],
            "dev_si_sdri_noise_db": r["si_sdri_noise_db"], "dev_si_sdri_talker_db": r["si_sdri_talker_db"],
            "output_gain": r["output_gain"], "seconds": round(time.perf_counter() - t0, 1), "out": str(out)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", type=Path, help="training config with [data] mixing = \"dynamic\"")
    p.add_argument("--minutes", type=float, required=True, help="training time budget, minutes")
    p.add_argument("--out", type=Path, required=True, help="output dir")
    p.add_argument("--resume", type=Path, metavar="STATE", help="state.pt (or a folder holding it) to continue")
    p.add_argument("--corpus", type=Path, help="corpus folder (default: the config's [data] corpus)")
    p.add_argument("--data", type=Path, help="scenes root for validation (default: the config's [data] root)")
    p.add_argument("--batch", type=int, default=64, help="examples per step on CUDA (default: 64)")
    p.add_argument("--force", action="store_true", help="replace a run already in --out")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = p.parse_args(argv)
    try:
        if args.batch < 1:
            raise RthaError(f"--batch {args.batch}: expected a positive number of examples")
        s = run(args.config, args.minutes, args.out, args.resume, args.corpus, args.data, args.batch, args.force)
    except RthaError as e:
        print(f"timed: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(s))
    else:
        print(f"timed: {s['device']} | {s['steps']} steps (+{s['new_steps']}) | {s['audio_hours_seen']:.2f} h audio "
              f"seen | dev SI-SDRi {s['dev_si_sdri_db']:.2f} dB (noise {s['dev_si_sdri_noise_db']}, talker "
              f"{s['dev_si_sdri_talker_db']}) | {s['seconds']:.0f} s | {s['out']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
