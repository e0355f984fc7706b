"""What the listener hears, unaided and aided, streamed at the simulator's 44.1 kHz.

* :class:`ListeningPath`: 44.1 kHz in -> [the hearing-aid chain at its own
  rate] -> :class:`~.simulator.HearingLossSimulator` -> 44.1 kHz out, both ears.
  Without a chain it is the unaided ear (microphone -> hearing loss).
  With one, the input is resampled to the chain's rate (when it is not
  44.1 kHz), run in the chain's own block size, and resampled back
  (:class:`~rtha.dsp.resample.StreamingResampler`, zero-phase polyphase
  filters, so resampling adds no delay). Blocks at the two
  rates do not line up, so the output waits in a short queue: a fixed delay
  ``bridge`` (samples at 44.1 kHz), the most the chain side can lag behind
  over any block sizes. Any partition of the input gives the same output.
* :class:`HearingModes`: the A/B switch of ``rtha live --simulate-loss``:
  aided, unaided or bypass (the dry input), switched between blocks; the path
  switched to starts afresh (its latency in silence, then sound).
"""

from __future__ import annotations

import numpy as np

from ..dsp.resample import StreamingResampler
from ..stage import BlockShapeError, Stage
from .simulator import HearingLossSimulator
from .tables import FS


def bridge_delay(chain_fs: int, chain_block: int) -> int:
    """Samples (44.1 kHz) the chain side can lag behind its input, at most, over every input length."""
    if chain_fs == FS:
        return chain_block - 1  # only the wait for a whole block
    down = StreamingResampler(FS, chain_fs, 1)
    up = StreamingResampler(chain_fs, FS, 1)
    # The counts repeat with the rates' period; a few periods of the block cover every phase.
    n = np.arange(0, 4 * down.down * chain_block + 1)
    chained = down.released(n) // chain_block * chain_block
    return int(np.max(n - up.released(chained)))


class ListeningPath(Stage):
    """The listener's ears at 44.1 kHz, with or without the hearing aid in front.

    Args:
        simulator: the listener's :class:`~.simulator.HearingLossSimulator`.
        chain: the hearing-aid chain (a stage taking ``(1 or 2, n)`` and giving
            ``(2, n)``), or None for the unaided ear.
        chain_fs: the chain's sample rate (Hz).
        chain_block: the chain's block size (samples at ``chain_fs``); it always
            gets blocks of exactly this size, as when it streams alone.

    Input ``(1 or 2, n)`` float32 at 44.1 kHz; output ``(2, n)`` float32 at
    44.1 kHz, delayed by ``latency`` samples (see ``latencies``).
    """

    def __init__(self, simulator: HearingLossSimulator, chain: Stage | None = None, chain_fs: int | None = None,
                 chain_block: int | None = None) -> None:
        self.simulator = simulator
        self.chain = chain
        self.fs = FS
        self.bridge = 0
        if chain is not None:
            self.chain_fs, self.chain_block = int(chain_fs), int(chain_block)
            self.bridge = bridge_delay(self.chain_fs, self.chain_block)
        super().__init__()

    @property
    def latency(self) -> int:  # type: ignore[override]
        return int(sum(n for _, n in self.latencies))

    @property
    def latencies(self) -> list[tuple[str, int]]:
        """``[(part, latency in samples at 44.1 kHz), ...]``."""
        parts = []
        if self.chain is not None:
            parts += [(f"{name} (at {self.chain_fs} Hz)", round(n * FS / self.chain_fs)) for name, n in self.chain.latencies]
            parts.append((f"rate bridge {self.chain_fs}/{FS} Hz", self.bridge))
        parts.append((self.simulator.name, self.simulator.latency))
        return parts

    def out_channels(self, in_channels: int) -> int:
        return 2

    def _start(self, channels: int) -> None:
        if channels not in (1, 2):
            raise BlockShapeError(f"audio block has {channels} channels; expected 1 (fed to both ears) or 2 (left, right)")
        self.simulator.reset()
        if self.chain is not None:
            self.chain.reset()
            same = self.chain_fs == FS
            self._down = None if same else StreamingResampler(FS, self.chain_fs, channels)
            self._up = None if same else StreamingResampler(self.chain_fs, FS, 2)
            self._pending = np.zeros((channels, 0), np.float32)  # at the chain's rate, short of a block
            self._queue = np.zeros((2, self.bridge), np.float32)  # heard output waiting for its turn

    def _step(self, x: np.ndarray, out: np.ndarray) -> None:
        if self.chain is None:
            out[:] = self.simulator.process_block(x)
            return
        n = x.shape[1]
        pending = np.concatenate((self._pending, x if self._down is None else self._down.process(x)), axis=1)
        whole = pending.shape[1] // self.chain_block * self.chain_block
        self._pending = pending[:, whole:]
        if whole:
            aided = [self.chain.process_block(pending[:, i : i + self.chain_block]) for i in range(0, whole, self.chain_block)]
            aided = np.concatenate(aided, axis=1)
            heard = self.simulator.process_block(aided if self._up is None else self._up.process(aided))
            self._queue = np.concatenate((self._queue, heard), axis=1)
        out[:] = self._queue[:, :n]
        self._queue = self._queue[:, n:]


class HearingModes(Stage):
    """A/B listening: ``"aided"``, ``"unaided"`` or ``"bypass"`` (the dry input on both ears).

    Args:
        aided, unaided: :class:`ListeningPath` with and without the hearing aid.
        mode: the mode to start in.

    :meth:`request` (any thread, e.g. a key press) asks for a mode; the switch
    happens at the start of the next block, in the thread that runs the
    blocks, and resets the path switched to. ``latency`` is the current mode's.
    """

    MODES = ("aided", "unaided", "bypass")

    def __init__(self, aided: ListeningPath, unaided: ListeningPath, mode: str = "aided") -> None:
        if mode not in self.MODES:
            raise ValueError(f"hearing mode {mode!r} is unknown; expected one of {', '.join(self.MODES)}")
        self.paths = {"aided": aided, "unaided": unaided}
        self.mode = self.requested = mode
        self.fs = FS
        super().__init__()

    def request(self, mode: str) -> None:
        if mode not in self.MODES:
            raise ValueError(f"hearing mode {mode!r} is unknown; expected one of {', '.join(self.MODES)}")
        self.requested = mode

    def next_mode(self) -> str:
        """Request the mode after the current one (aided -> unaided -> bypass -> aided); returns it."""
        mode = self.MODES[(self.MODES.index(self.requested) + 1) % len(self.MODES)]
        self.request(mode)
        return mode

    @property
    def latency(self) -> int:  # type: ignore[override]
        return 0 if self.mode == "bypass" else self.paths[self.mode].latency

    @property
    def latencies(self) -> list[tuple[str, int]]:
        return [("bypass", 0)] if self.mode == "bypass" else self.paths[self.mode].latencies

    def out_channels(self, in_channels: int) -> int:
        return 2

    def _start(self, channels: int) -> None:
        for path in self.paths.values():
            path.reset()

    def _step(self, x: np.ndarray, out: np.ndarray) -> None:
        mode = self.requested
        if mode != self.mode:
            if mode != "bypass":
                self.paths[mode].reset()
            self.mode = mode
        out[:] = x if mode == "bypass" else self.paths[mode].process_block(x)  # a mono input feeds both ears
