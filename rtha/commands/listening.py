"""``--simulate-loss`` for ``rtha replay`` and ``rtha live``: hear what the listener hears.

The hearing-loss simulator (:mod:`rtha.hearing_loss`, Cambridge MSBG) runs at
44.1 kHz after the chain, which keeps its own rate and block size
(:class:`~rtha.hearing_loss.listening.ListeningPath`), so with
``--simulate-loss`` the stream (the file read, the audio device) runs at
44.1 kHz. ``--unaided`` leaves the hearing aid out (input -> hearing loss);
in ``live`` it is the mode to start in, and a key switches aided / unaided /
bypass (:class:`KeyReader`). ``--level-db-spl`` is the dB SPL of a digital
RMS of 1 (default 100, as pyclarity's ``Ear``): raise it when the
microphone's full scale is louder.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys

from ..errors import RthaError
from .common import listener_from_args

#: The key that cycles the live modes (aided -> unaided -> bypass).
MODE_KEY = "m"
HEARD_PLOT = "heard_unaided_vs_aided.png"


def add_listening_args(parser: argparse.ArgumentParser, live: bool = False) -> None:
    g = parser.add_argument_group("what the listener hears (MSBG hearing-loss simulation, 44.1 kHz)")
    g.add_argument(
        "--simulate-loss",
        action="store_true",
        help="play/write what the listener hears: the hearing-loss simulation after the chain (the stream runs at 44.1 kHz)"
        + (f"; the key '{MODE_KEY}' switches aided / unaided / bypass" if live else ""),
    )
    g.add_argument(
        "--unaided",
        action="store_true",
        help="with --simulate-loss: without the hearing aid (input -> hearing loss)" + ("; the mode to start in" if live else ""),
    )
    g.add_argument(
        "--level-db-spl",
        type=float,
        metavar="DB",
        help="with --simulate-loss: dB SPL of a digital RMS of 1 (default: 100, as in the Clarity challenges)",
    )


def check_listening_args(args: argparse.Namespace) -> None:
    """The cheap checks (before any model or device): option combinations, level, audiogram range."""
    if not args.simulate_loss:
        if args.unaided:
            raise RthaError("--unaided needs --simulate-loss (it is the listener's ear without the hearing aid)")
        if args.level_db_spl is not None:
            raise RthaError("--level-db-spl needs --simulate-loss (it calibrates the hearing-loss simulation)")
        return
    if args.level_db_spl is not None and not (math.isfinite(args.level_db_spl) and 0.0 <= args.level_db_spl <= 200.0):
        raise RthaError(f"--level-db-spl {args.level_db_spl:g}: expected a level in dB SPL between 0 and 200")
    from ..hearing_loss.tables import CATCH_UP_DB

    listener = listener_from_args(args)
    for side, ear in zip(("left", "right"), listener.ears):
        if ear.max_loss >= CATCH_UP_DB:
            raise RthaError(
                f"listener {listener.name or args.listener!r}: the {side} ear's {ear.max_loss:g} dB HL is beyond the "
                f"hearing-loss simulation; expected thresholds below {CATCH_UP_DB:g} dB HL"
            )


def listening_setup(args: argparse.Namespace, setup, live: bool = False):
    """``setup`` (a ``ChainSetup``) with the chain replaced by what the listener hears, at 44.1 kHz.

    Returns ``(setup, paths)``, ``paths`` = ``{"aided": ..., "unaided": ...}``
    (:class:`ListeningPath`: the chain then the hearing loss, and the hearing
    loss alone). replay runs the aided path, or the unaided one with
    ``--unaided``; live runs :class:`HearingModes` over both, starting unaided
    with ``--unaided``, in bypass with ``--bypass``. The block is the chain's
    block duration at 44.1 kHz.
    """
    from ..audiogram import CHALLENGE_LEVEL_DB_SPL
    from ..hearing_loss import HearingLossSimulator
    from ..hearing_loss.listening import HearingModes, ListeningPath

    listener = listener_from_args(args)
    level = CHALLENGE_LEVEL_DB_SPL if args.level_db_spl is None else args.level_db_spl

    def ear():
        return HearingLossSimulator(listener, level_db_spl=level)

    paths = {"aided": ListeningPath(ear(), setup.chain, setup.fs, setup.block), "unaided": ListeningPath(ear())}
    if live:
        heard = HearingModes(paths["aided"], paths["unaided"], "bypass" if args.bypass else "unaided" if args.unaided else "aided")
    else:
        heard = paths["unaided" if args.unaided else "aided"]
    fs = heard.fs
    return dataclasses.replace(setup, chain=heard, fs=fs, block=max(1, round(setup.block * fs / setup.fs))), paths


def describe_listening(args: argparse.Namespace, paths: dict) -> dict:
    """The hearing-loss part of a report."""
    sim = paths["unaided"].simulator
    return {
        "mode": "unaided" if args.unaided else "aided",
        "latency_samples": {mode: p.latency for mode, p in paths.items()},
        "level_db_spl": sim.level_db_spl,
        "severity": {"left": sim.severities[0], "right": sim.severities[1]},
    }


class KeyReader:
    """Single key presses from a terminal, without waiting (nothing when stdin is not a terminal)."""

    def __enter__(self):
        self._saved = None
        if sys.stdin.isatty():
            import termios
            import tty

            self._saved = termios.tcgetattr(sys.stdin)
            tty.setcbreak(sys.stdin.fileno())
        return self

    def __exit__(self, *exc):
        if self._saved is not None:
            import termios

            termios.tcsetattr(sys.stdin, termios.TCSADRAIN, self._saved)

    def keys(self) -> str:
        """The keys pressed since the last call."""
        if self._saved is None:
            return ""
        import os
        import select

        out = ""
        while select.select([sys.stdin], [], [], 0)[0]:
            ch = os.read(sys.stdin.fileno(), 1).decode(errors="ignore")
            if not ch:
                break
            out += ch
        return out


def write_heard_plot(folder, paths: dict, head_in, seconds: float = 10.0) -> None:
    """Spectrograms of the input and of the left ear unaided and aided, over its first ``seconds``.

    Both paths run here, offline, on the same input (44.1 kHz), each shifted by
    its latency so that the three line up.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fs = paths["aided"].fs
    x = head_in[:, : int(seconds * fs)]
    panels = [("input", x.mean(axis=0))]
    for mode in ("unaided", "aided"):
        path = paths[mode]
        heard = path.process(np.pad(x, ((0, 0), (0, path.latency))))[0, path.latency :]  # aligned with the input
        panels.append((f"{mode}: what the listener hears (left ear)", heard))
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.4 * len(panels)), sharex=True, sharey=True)
    images, top = [], -np.inf
    for ax, (title, y) in zip(axes, panels):
        with np.errstate(divide="ignore"):  # a bin that is exactly 0 is -inf dB: drawn in the floor colour
            spec, _, _, im = ax.specgram(y.astype(np.float64) + 1e-9, NFFT=1024, Fs=fs, noverlap=768, cmap="magma")
        images.append(im)
        top = max(top, 10 * np.log10(spec.max()))
        ax.set_title(title)
        ax.set_ylabel("Hz")
    for im in images:  # one colour scale: the aid's gain and the loss's attenuation show as brightness
        im.set_clim(top - 80, top)
    axes[-1].set_ylim(0, 12000)
    axes[-1].set_xlabel("s")
    fig.tight_layout()
    fig.savefig(folder / HEARD_PLOT, dpi=110)
    plt.close(fig)
