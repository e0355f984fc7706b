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


def output_path(path: Path, force: bool) -> Path:
    """Check that ``path`` may be written: never overwrite without ``--force``."""
    path = Path(path)
    if path.exists() and not force:
        raise RthaError(f"{path} already exists; pass --force to overwrite it")
    if not path.parent.exists():
        raise RthaError(f"{path}: folder {path.parent} does not exist")
    return path
