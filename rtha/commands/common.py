"""Arguments and helpers shared by several subcommands."""

from __future__ import annotations

import argparse
import signal
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

from ..errors import RthaError

#: Enhancer threads (torch and OpenBLAS) unless ``--threads`` says otherwise. Its
#: per-block matmuls are small: a second thread gains little on an idle machine,
#: and with one busy process beside it the pools' threads wait on each other
#: (replay 2.8x slower than with one thread on a 2-core machine).
DEFAULT_THREADS = 1


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


def add_threads_arg(group) -> None:
    """``--threads N``: the enhancer's CPU threads."""
    group.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help=f"CPU threads for the enhancer (torch and BLAS, process wide; default: {DEFAULT_THREADS}, "
        "which holds up best when other programs compete for the cores)",
    )


def check_threads(args: argparse.Namespace) -> int:
    """``--threads``, or :data:`DEFAULT_THREADS`; checked."""
    if args.threads is not None and args.threads < 1:
        raise RthaError(f"--threads {args.threads}: expected 1 or more")
    return DEFAULT_THREADS if args.threads is None else int(args.threads)


def setup_threads(threads: int) -> None:
    """Give torch and the BLAS the enhancer uses ``threads`` threads (process wide)."""
    from ..enhance.streaming import set_threads

    set_threads(threads)


def add_dry_mix_arg(group) -> None:
    """``--dry-mix F``: fraction of the input mixed back after the enhancer."""
    group.add_argument(
        "--dry-mix",
        type=float,
        metavar="F",
        help="fraction 0...1 of the input mixed back into the enhanced signal, as hearing aids cap noise "
        "reduction (default: the value stored with the model, else 0)",
    )


def dry_mix_from_args(args: argparse.Namespace, metadata: dict, model=None) -> float:
    """``--dry-mix`` if given, else the model's stored ``dry_mix``, else 0; checked.

    ``model``: the model file, named when its stored value is the bad one.
    """
    if args.dry_mix is not None:
        if not 0.0 <= args.dry_mix <= 1.0:
            raise RthaError(f"--dry-mix {args.dry_mix}: expected a fraction in 0...1")
        return float(args.dry_mix)
    value = metadata.get("dry_mix", 0.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        where = f"the model {model}" if model is not None else "the model"
        raise RthaError(f"{where} stores dry_mix {value!r}, not a fraction in 0...1; pass --dry-mix F to override it")
    return float(value)


def output_path(path: Path, force: bool, flag: str = "--out") -> Path:
    """Check that ``path`` may be written, before any work: never overwrite without ``--force``.

    Also refused: a folder, a missing folder, and a place this process cannot
    write (see :func:`check_writable`).
    """
    path = Path(path)
    if path.exists() and not path.is_dir() and not force:
        raise RthaError(f"{path} already exists; pass --force to overwrite it")
    check_writable(path, flag)
    return path


def check_writable(path: Path, flag: str = "--out") -> None:
    """One-line error unless ``path`` names a file this process can create or append to.

    Tried for real (an unnamed temporary file in the folder, or opening the
    existing file for appending, which changes nothing), so permissions, a
    read-only file system and the like are all caught.
    """
    path = Path(path)
    if path.is_dir():
        raise RthaError(f"{flag} {path}: is a folder; expected a file name")
    if not path.parent.exists():
        raise RthaError(f"{path}: folder {path.parent} does not exist")
    if not path.parent.is_dir():
        raise RthaError(f"{flag} {path}: {path.parent} is not a folder")
    try:
        if path.exists():
            open(path, "ab").close()
        else:
            tempfile.TemporaryFile(dir=path.parent).close()
    except OSError as e:
        raise RthaError(f"{flag} {path}: cannot write there ({e.strerror or e})") from None


@contextmanager
def stop_between_blocks():
    """Within: Ctrl-C and SIGTERM set the yielded :class:`threading.Event` for a block loop to read.

    The loop stops between two blocks, so a block is always written and
    counted together (an exception raised between the two would leave a
    report's count a block off the file). A second Ctrl-C or SIGTERM raises
    ``KeyboardInterrupt`` at once. Outside the main thread (where signal
    handlers cannot be set) the event is never set.
    """
    stop = threading.Event()

    def on_signal(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    try:
        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        yield stop
        return
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def sigterm_as_interrupt():
    """Within: SIGTERM stops the command as Ctrl-C does (a KeyboardInterrupt in the main thread).

    So ``kill``, ``timeout`` and service managers get the same clean stop as
    Ctrl-C: the partial output closed and reported. Outside the main thread
    (where signal handlers cannot be set) nothing changes.
    """

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
