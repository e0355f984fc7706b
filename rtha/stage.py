"""The streaming protocol shared by every stage of the chain.

A stage turns blocks of audio shaped ``(channels, samples)`` (float32) into
blocks of the same length, carrying whatever state it needs from one call to
the next, so that any partition of a signal into blocks gives the same output
as one call over the whole signal::

    y = stage.process_block(x)   # state in, state out (like scipy's ``zi``)
    stage.reset()                # back to the initial state
    stage.latency                # algorithmic delay in samples
    stage.tail                   # samples of output that follow the last input sample
    y = stage.process(x)         # offline: reset, then one big block
    y = process_with_tail(stage, x)  # offline, x then its tail: len(x) + tail samples

Input is checked once per block, at the entry of ``process_block``: a wrong
shape or dtype raises a one-line error saying what was expected; non-finite
samples (NaN, +-Inf) are replaced by 0 and counted in ``nonfinite_count`` so
they never poison the carried state; an empty block returns an empty block.
A :class:`~rtha.chain.Chain` checks at its input only and runs its stages'
inner steps, which trust the block they are given.

Buffers: ``process_block`` returns a new array each call, which the caller
owns (replay and the hearing-loss path keep blocks); everything else on the
audio path (a chain's intermediate blocks, the stages' scratch) is allocated
once per block length and reused.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .errors import RthaError


class BlockShapeError(RthaError, ValueError):
    """A block does not have the ``(channels, samples)`` shape a stage expects."""


class BlockDtypeError(RthaError, TypeError):
    """A block is not made of real floating-point samples."""


@njit(cache=True)
def _count_nonfinite(x):
    """NaN/Inf samples in a 2-D block (no temporary array, unlike ``np.isfinite(x)``)."""
    bad = 0
    for v in x.flat:
        if not np.isfinite(v):
            bad += 1
    return bad


def as_block(x, channels: int | None = None) -> tuple[np.ndarray, int]:
    """Validate one block; return it as C-contiguous float32 and its non-finite count.

    Args:
        x: array-like shaped ``(channels, samples)``, real floating point.
        channels: the channel count the caller expects, or None for any.

    Returns:
        ``(block, n_bad)``: the block (a copy only when a cast or a repair was
        needed) with non-finite samples set to 0, and how many there were.
    """
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise BlockDtypeError(f"audio block has dtype {x.dtype}; expected float32 (or another float type)")
    if x.ndim != 2:
        raise BlockShapeError(f"audio block has shape {x.shape}; expected 2-D (channels, samples)")
    if channels is not None and x.shape[0] != channels:
        raise BlockShapeError(
            f"audio block has {x.shape[0]} channel(s) (shape {x.shape}); expected {channels} (channels, samples)"
        )
    x = np.ascontiguousarray(x, dtype=np.float32)
    n_bad = _count_nonfinite(x)
    if n_bad:
        x = np.where(np.isfinite(x), x, np.float32(0.0))
    return x, n_bad


class Stage:
    """Base class of the streaming protocol.

    Subclasses implement two hooks:

    - ``_start(channels)``: size and zero the carried state for a stream of
      ``channels`` input channels (raise :class:`BlockShapeError` for a count
      the stage cannot take). It runs on the first block, and again at every
      :meth:`reset` (with the channel count seen so far), so a reset never
      leaves stale state and the first block after it allocates nothing.
    - ``_step(x, out)``: process a validated, non-empty, C-contiguous float32
      block ``x (channels, n)`` into ``out (out_channels, n)`` float32, which
      is never ``x``. Scratch it needs is kept and reused between calls.

    They set ``latency`` and may override ``tail`` (samples) and
    ``out_channels``.

    Attributes:
        latency: algorithmic delay of the stage in samples.
        nonfinite_count: non-finite input samples replaced by 0 since reset.
    """

    latency: int = 0

    def __init__(self) -> None:
        self.nonfinite_count = 0
        self._channels: int | None = None  # the channel count the state is sized for
        self._fresh = True  # no block since the last reset: any channel count may start the stream

    # -- the protocol -----------------------------------------------------
    def process_block(self, x) -> np.ndarray:
        """Process one block ``(channels, samples)``; returns a new ``(out_channels, samples)`` float32 array."""
        x, n_bad = as_block(x, None if self._fresh else self._channels)
        self.nonfinite_count += n_bad
        channels, n = x.shape
        if channels != self._channels:
            self._setup(channels)
        self._fresh = False
        out = np.empty((self.out_channels(channels), n), np.float32)
        if n:
            self._step(x, out)
        return out

    def reset(self) -> None:
        """Back to the initial state; the next block may have another channel count."""
        self.nonfinite_count = 0
        self._fresh = True
        if self._channels is not None:
            self._setup(self._channels)

    def process(self, x) -> np.ndarray:
        """Offline: reset, then run ``x`` ``(channels, samples)`` as one block."""
        self.reset()
        return self.process_block(x)

    @property
    def tail(self) -> int:
        """Samples of output that still depend on the input after its last sample (0: none)."""
        return int(self.latency)

    # -- for subclasses ---------------------------------------------------
    def out_channels(self, in_channels: int) -> int:
        """Channels produced for ``in_channels`` input channels."""
        return in_channels

    def _setup(self, channels: int) -> None:
        """Start the state for ``channels`` channels; the count is kept only if the stage accepts it."""
        self._channels = None
        self._start(channels)
        self._channels = channels

    def _start(self, channels: int) -> None:
        """Size and zero the carried state for ``channels`` input channels (no state: nothing to do)."""

    def _step(self, x: np.ndarray, out: np.ndarray) -> None:
        raise NotImplementedError

    @property
    def name(self) -> str:
        return type(self).__name__


def process_with_tail(stage: Stage, x, then: int = 0) -> np.ndarray:
    """Offline: reset, then run ``x (channels, n)`` followed by ``stage.tail + then`` zeros.

    Returns ``(out_channels, n + stage.tail + then)`` float32: all of the
    output the input causes, as ``np.convolve``'s full output holds a filter's
    whole response. ``then`` is the tail of what this output feeds next at the
    same rate, so that a chain run in two parts (the first part's output shared
    by several second parts) gives the whole chain's output.
    """
    x = np.asarray(x)
    if x.ndim == 2:  # anything else: process() says what was expected
        x = np.pad(x, ((0, 0), (0, stage.tail + int(then))))
    return stage.process(x)


class SoftClip(Stage):
    """Memoryless ``tanh`` soft clip, as in the Clarity ICASSP 2023 baseline (latency 0)."""

    def _step(self, x: np.ndarray, out: np.ndarray) -> None:
        np.tanh(x, out=out)


class Bypass(Stage):
    """The identity stage (latency 0): the dry input, where a chain would run (``rtha live --bypass``)."""

    def _step(self, x: np.ndarray, out: np.ndarray) -> None:
        np.copyto(out, x)

    @property
    def name(self) -> str:
        return "bypass"
