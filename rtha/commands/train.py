"""``rtha train CONFIG.toml``: train the enhancer on Clarity-format scenes (see training/)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train the Conv-TasNet enhancer from a TOML config",
        description="Train the causal Conv-TasNet on Clarity-format scenes (real, or made with "
        "tools/make_scenes.py), or on scenes mixed on the fly from a corpus. Writes last.pt, best.pt, state.pt "
        "and log.csv to the config's output dir; Ctrl-C saves a resumable state. Runs under torchrun for several "
        "GPUs or machines. Test a checkpoint with: python -m training.evaluate runs/NAME/best.pt --data DIR "
        "--split test",
    )
    p.add_argument("config", type=Path, help="training config (e.g. training/configs/default.toml)")
    p.add_argument("--resume", action="store_true", help="continue the run in the output dir exactly where it stopped")
    p.add_argument("--force", action="store_true", help="start over, replacing a run in the output dir")
    p.add_argument("--max-steps", type=int, metavar="N", help="stop (resumably) after N steps in all (N >= 1)")
    p.add_argument("--max-minutes", type=float, metavar="M",
                   help="stop (resumably) after M minutes of training in all, summed over resumes")
    p.add_argument("--cpu-clock", action="store_true",
                   help="count --max-minutes in CPU time of this process (fair budgets on a shared machine)")
    p.add_argument("--out", type=Path, metavar="DIR", help="output dir (overrides [output] dir)")
    p.add_argument("--data", type=Path, metavar="DIR", help="data root (overrides [data] root)")
    p.add_argument("--json", action="store_true", help="print the final metrics as JSON")
    p.set_defaults(func=run)


def resume_command(args: argparse.Namespace) -> str:
    """The command line that continues this run (every option that locates it kept)."""
    words = ["rtha", "train", str(args.config), "--resume"]
    for flag, value in (("--out", args.out), ("--data", args.data)):
        if value is not None:
            words += [flag, str(value)]
    return shlex.join(words)


def run(args: argparse.Namespace) -> int:
    import json

    from rtha.errors import RthaError
    from training.config import load_config

    if args.max_steps is not None and args.max_steps < 1:
        raise RthaError(f"--max-steps {args.max_steps}: expected a positive number of steps")
    if args.max_minutes is not None and not args.max_minutes > 0:
        raise RthaError(f"--max-minutes {args.max_minutes}: expected a positive number of minutes")
    cfg = load_config(args.config)
    if args.out:
        cfg.output.dir = str(args.out)
    if args.data:
        cfg.data.root = str(args.data)
    from training.train import train

    trainer = train(cfg, resume=args.resume, force=args.force, max_steps=args.max_steps,
                    max_seconds=args.max_minutes * 60 if args.max_minutes else None,
                    clock="cpu" if args.cpu_clock else "wall")
    if not trainer.dist.main:
        return 0
    metrics = {"steps": trainer.global_step, "epoch": trainer.epoch, **trainer.last_metrics}
    if args.json:
        print(json.dumps(metrics))
    else:
        shown = ", ".join(f"{k} {v}" for k, v in metrics.items())
        print(f"{'stopped' if trainer.stopped else 'done'}: {shown}; checkpoints in {cfg.output.dir}")
        if trainer.stopped or trainer.max_seconds:
            print(f"continue with: {resume_command(args)}")
    return 0
