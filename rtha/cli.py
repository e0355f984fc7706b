"""``rtha``: one command line, one subcommand per way in.

Each subcommand lives in ``rtha/commands/<name>.py`` with ``register(subparsers)``
(argparse only, so ``rtha --help`` stays fast) and ``run(args) -> int``.
User errors (:class:`rtha.errors.RthaError`) print as one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from . import __version__
from .errors import RthaError

COMMANDS = ("live", "replay", "enhance", "score", "train")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtha",
        description="Real-time streaming hearing-aid simulator: enhancer -> NAL-R -> compressor -> soft clip.",
    )
    parser.add_argument("--version", action="version", version=f"rtha {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f".commands.{name}", __package__)
        except ModuleNotFoundError as e:
            if e.name != f"{__package__}.commands.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except RthaError as e:
        if args.debug or os.environ.get("RTHA_DEBUG"):
            raise
        print(f"rtha: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rtha: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
