"""Arguments and helpers shared by several subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import RthaError


def add_listener_args(parser: argparse.ArgumentParser, default: str = "moderate") -> None:
    """``--listener NAME`` (a preset) or ``--listeners listeners.json --listener ID``."""
    g = parser.add_argument_group("listener")
    g.add_argument(
        "--listener",
        default=default,
        help=f"preset (normal, mild, moderate, severe) or an id in --listeners (default: {default})",
    )
    g.add_argument("--listeners", type=Path, metavar="FILE", help="Clarity listeners.json to take --listener from")


def listener_from_args(args: argparse.Namespace):
    from ..audiogram import get_listener

    return get_listener(args.listener, args.listeners)


def add_dry_mix_arg(group) -> None:
    """``--dry-mix F``: fraction of the input mixed back after the enhancer."""
    group.add_argument(
        "--dry-mix",
        type=float,
        metavar="F",
        help="fraction 0...1 of the input mixed back into the enhanced signal, as hearing aids cap noise "
        "reduction (default: the value stored with the model, else 0)",
    )


def dry_mix_from_args(args: argparse.Namespace, metadata: dict) -> float:
    """``--dry-mix`` if given, else the model's stored ``dry_mix``, else 0; checked."""
    value = args.dry_mix if args.dry_mix is not None else metadata.get("dry_mix", 0.0)
    if not 0.0 <= value <= 1.0:
        raise RthaError(f"--dry-mix {value}: expected a fraction in 0...1")
    return float(value)


def output_path(path: Path, force: bool) -> Path:
    """Check that ``path`` may be written: never overwrite without ``--force``."""
    path = Path(path)
    if path.exists() and not force:
        raise RthaError(f"{path} already exists; pass --force to overwrite it")
    if not path.parent.exists():
        raise RthaError(f"{path}: folder {path.parent} does not exist")
    return path
