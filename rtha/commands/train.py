"""``rtha train CONFIG.toml``: train the enhancer on Clarity-format scenes (see training/)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train the Conv-TasNet enhancer from a TOML config",
        description="Train the causal Conv-TasNet on Clarity-format scenes (real, or made with "
        "tools/make_scenes.py). Writes last.pt, best.pt, state.pt and log.csv to the config's output dir; "
        "Ctrl-C saves a resumable state. Runs under torchrun for several GPUs or machines. "
        "Test a checkpoint with: python -m training.evaluate runs/NAME/best.pt --data DIR --split test",
    )
    p.add_argument("config", type=Path, help="training config (e.g. training/configs/default.toml)")
    p.add_argument("--resume", action="store_true", help="continue the run in the output dir exactly where it stopped")
    p.add_argument("--force", action="store_true", help="start over, replacing a run in the output dir")
    p.add_argument("--max-steps", type=int, metavar="N", help="stop (resumably) after N steps in all")
    p.add_argument("--out", type=Path, metavar="DIR", help="output dir (overrides [output] dir)")
    p.add_argument("--data", type=Path, metavar="DIR", help="data root (overrides [data] root)")
    p.add_argument("--json", action="store_true", help="print the final metrics as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from training.config import load_config

    cfg = load_config(args.config)
    if args.out:
        cfg.output.dir = str(args.out)
    if args.data:
        cfg.data.root = str(args.data)
    from training.train import train

    trainer = train(cfg, resume=args.resume, force=args.force, max_steps=args.max_steps)
    if not trainer.dist.main:
        return 0
    metrics = {"steps": trainer.global_step, "epoch": trainer.epoch, **trainer.last_metrics}
    if args.json:
        print(json.dumps(metrics))
    else:
        shown = ", ".join(f"{k} {v}" for k, v in metrics.items())
        print(f"{'stopped' if trainer.stopped else 'done'}: {shown}; checkpoints in {cfg.output.dir}")
        if trainer.stopped:
            print(f"continue with: rtha train {args.config} --resume")
    return 0
