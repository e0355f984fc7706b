"""Options that build the hearing-aid chain, shared by ``rtha live`` and ``rtha replay``.

``--model M | --no-enhancer``, ``--threads``, ``--device``, ``--nalr-phase``,
``--block`` and the listener options; :func:`chain_from_args` turns them into
a :class:`~rtha.chain.Chain` and a plain description for reports.
The enhancer gets :data:`~rtha.commands.common.DEFAULT_THREADS` CPU threads
unless ``--threads`` says otherwise.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RthaError
from .common import (
    add_dry_mix_arg,
    add_listener_args,
    add_threads_arg,
    check_threads,
    dry_mix_from_args,
    listener_from_args,
    setup_threads,
)

#: Input samples beyond ±INPUT_LIMIT are clamped before the chain (and counted).
#: A real converter clips at full scale (1); float files may overshoot that a
#: little. Far beyond, the compressor's gain, which follows the input RMS in the
#: Clarity recipe, stays off for seconds: a 100-sample burst of 1e8 changed the
#: output for 2.6 s after it; clamped at 2, for 1 ms.
INPUT_LIMIT = 2.0


def add_chain_args(parser: argparse.ArgumentParser, default_block: str = "4ms") -> None:
    """Add the enhancer, NAL-R, block and listener options to a subcommand."""
    g = parser.add_argument_group("chain")
    m = g.add_mutually_exclusive_group()
    m.add_argument("--model", type=Path, metavar="FILE", help="enhancer checkpoint (default: the shipped models/default.pt)")
    m.add_argument("--no-enhancer", action="store_true", help="NAL-R + compressor + soft clip only")
    g.add_argument(
        "--block",
        default=default_block,
        metavar="N|Xms",
        help=f"block size, in samples (64) or milliseconds (4ms) (default: {default_block}); a multiple of "
        "the enhancer's hop keeps its latency at L - hop samples, other sizes cost hop - 1 more",
    )
    add_threads_arg(g)
    g.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the enhancer runs (default: cpu)")
    add_dry_mix_arg(g)
    g.add_argument(
        "--nalr-phase",
        choices=("minimum", "linear"),
        default="minimum",
        help="NAL-R filter: minimum phase (no latency) or linear phase (pyclarity's, nfir/2 samples) (default: minimum)",
    )
    add_listener_args(parser)


def block_value(text: str) -> tuple[float, bool]:
    """``"64"`` -> ``(64, False)``; ``"4ms"`` -> ``(4.0, True)``: the syntax of ``--block``, checked."""
    s = str(text).strip().lower()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms)?", s)
    if not match:
        raise RthaError(f"--block {text!r}: expected a sample count (e.g. 64) or milliseconds (e.g. 4ms)")
    value, ms = float(match.group(1)), bool(match.group(2))
    if not ms and not value.is_integer():
        raise RthaError(f"--block {text!r}: a sample count must be a whole number (or add 'ms')")
    if value <= 0:
        raise RthaError(f"--block {text!r}: expected a positive size, 1 sample to 1 second")
    return value, ms


def parse_block(text: str, fs: int) -> int:
    """``"64"`` -> 64 samples; ``"4ms"`` -> ``round(0.004 * fs)`` samples (at least 1)."""
    value, ms = block_value(text)
    n = round(value * fs / 1000) if ms else value
    if n < 1 or n > fs:
        raise RthaError(f"--block {text!r} is {int(n)} samples at {fs} Hz; expected 1 sample to 1 second")
    return int(n)


@dataclass
class ChainSetup:
    """A built chain, its rate and block size, and what it is made of (plain values, for reports)."""

    chain: object
    fs: int
    block: int
    listener: str
    model: str | None
    dry_mix: float | None
    threads: int | None
    device: str
    nalr_phase: str
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict:
        return {
            "fs": self.fs,
            "listener": self.listener,
            "model": self.model,
            "enhancer": self.model is not None,
            "dry_mix": self.dry_mix,
            "threads": self.threads,
            "device": self.device,
            "nalr_phase": self.nalr_phase,
            "stages": [name for name, _ in self.chain.latencies],
        }


def check_chain_args(args: argparse.Namespace):
    """The cheap checks of the chain options (no model loaded): listener, threads, model file, block syntax.

    Returns the listener. Commands call it before other work (opening devices)
    so that a mistyped option is the error reported.
    """
    listener = listener_from_args(args)
    check_threads(args)
    if not args.no_enhancer and args.model is not None and not Path(args.model).is_file():
        raise RthaError(f"{args.model}: model file not found")
    block_value(args.block)  # the syntax; the range is checked at the chain's rate
    return listener


def chain_from_args(args: argparse.Namespace, fs_without_enhancer: int) -> ChainSetup:
    """Build the chain the options ask for.

    The chain runs at the enhancer's rate; with ``--no-enhancer`` (or when no
    ``--model`` was given and the shipped model is missing: a note says so) it
    runs at ``fs_without_enhancer``. The enhancer is told the block size: when
    the block is a multiple of its hop its latency is ``L - hop`` samples,
    otherwise ``L - 1``. With an enhancer, the process's torch and BLAS
    threads are set (``--threads``, default 1).
    """
    listener = check_chain_args(args)  # first: a wrong option fails before heavy imports
    threads = check_threads(args)
    notes: list[str] = []
    model_path = None
    if not args.no_enhancer:
        model_path = args.model or _shipped_model(notes)
    enhancer = dry_mix = None
    if model_path is not None:
        from ..enhance import StreamingEnhancer, load_checkpoint

        model_path = Path(model_path)
        if not model_path.is_file():
            raise RthaError(f"{model_path}: model file not found")
        model, meta = load_checkpoint(model_path)
        fs = int(model.cfg.sample_rate)
        block = parse_block(args.block, fs)
        dry_mix = dry_mix_from_args(args, meta, model_path)
        setup_threads(threads)
        enhancer = StreamingEnhancer(model, device=args.device, threads=threads, block_size=block, dry_mix=dry_mix)
    else:
        fs = int(fs_without_enhancer)
        block = parse_block(args.block, fs)
    from ..hearing_aid import hearing_aid_chain

    chain = hearing_aid_chain(listener, fs, enhancer=enhancer, nalr_phase=args.nalr_phase)
    return ChainSetup(
        chain=chain,
        fs=fs,
        block=block,
        listener=listener.name or args.listener,
        model=str(model_path) if model_path is not None else None,
        dry_mix=dry_mix,
        threads=threads if enhancer is not None else None,
        device=args.device,
        nalr_phase=args.nalr_phase,
        notes=notes,
    )


def _shipped_model(notes: list[str]) -> Path | None:
    """The shipped default model, or None with a note when it is not there."""
    from ..enhance import default_model_path

    path = default_model_path()
    if path.is_file():
        return path
    notes.append(f"note: the shipped model {path} is missing; running without the enhancer (NAL-R + compressor only)")
    return None


def print_notes(notes: list[str]) -> None:
    for note in notes:
        print(f"rtha: {note}", file=sys.stderr)
