"""The streaming protocol shared by every stage of the chain.

A stage turns blocks of audio shaped ``(channels, samples)`` (float32) into
blocks of the same length, carrying whatever state it needs from one call to
the next, so that any partition of a signal into blocks gives the same output
as one call over the whole signal::

    y = stage.process_block(x)   # state in, state out (like scipy's ``zi``)
    stage.reset()                # back to the initial state
    stage.latency                # algorithmic delay in samples
    y = stage.process(x)         # offline: reset, then one big block

Input is checked once per block: a wrong shape or dtype raises a one-line
error saying what was expected; non-finite samples (NaN, +-Inf) are replaced by
0 and counted in ``nonfinite_count`` so they never poison the carried state; an
empty block returns an empty block.
"""

from __future__ import annotations

import numpy as np

from .errors import RthaError


class BlockShapeError(RthaError, ValueError):
    """A block does not have the ``(channels, samples)`` shape a stage expects."""


class BlockDtypeError(RthaError, TypeError):
    """A block is not made of real floating-point samples."""


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
    finite = np.isfinite(x)
    if finite.all():
        return x, 0
    n_bad = int(x.size - np.count_nonzero(finite))
    x = np.where(finite, x, np.float32(0.0))
    return x, n_bad


class Stage:
    """Base class of the streaming protocol.

    Subclasses implement ``_process_block(x)`` for a validated, non-empty
    float32 block and ``_reset()``; they set ``latency`` (samples) and may set
    ``in_channels`` (None accepts any count, fixed on the first block).

    Attributes:
        latency: algorithmic delay of the stage in samples.
        nonfinite_count: non-finite input samples replaced by 0 since reset.
    """

    latency: int = 0
    in_channels: int | None = None

    def __init__(self) -> None:
        self.nonfinite_count = 0
        self._channels: int | None = self.in_channels

    # -- the protocol -----------------------------------------------------
    def process_block(self, x) -> np.ndarray:
        """Process one block ``(channels, samples)``; returns ``(out_channels, samples)`` float32."""
        x, n_bad = as_block(x, self._channels)
        self.nonfinite_count += n_bad
        if self._channels is None:
            self._channels = x.shape[0]
            self._allocate(x.shape[0])
        if x.shape[1] == 0:
            return np.zeros((self.out_channels(x.shape[0]), 0), np.float32)
        return self._process_block(x)

    def reset(self) -> None:
        """Forget all carried state (and the channel count, unless fixed)."""
        self.nonfinite_count = 0
        self._channels = self.in_channels
        self._reset()

    def process(self, x) -> np.ndarray:
        """Offline: reset, then run ``x`` ``(channels, samples)`` as one block."""
        self.reset()
        return self.process_block(x)

    # -- for subclasses ---------------------------------------------------
    def out_channels(self, in_channels: int) -> int:
        """Channels produced for ``in_channels`` input channels."""
        return in_channels

    def _allocate(self, channels: int) -> None:
        """Size per-channel state on the first block after a reset."""

    def _process_block(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _reset(self) -> None:
        raise NotImplementedError

    @property
    def name(self) -> str:
        return type(self).__name__


class SoftClip(Stage):
    """Memoryless ``tanh`` soft clip, as in the Clarity ICASSP 2023 baseline (latency 0)."""

    def _process_block(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(x)

    def _reset(self) -> None:
        pass


class Bypass(Stage):
    """The identity stage (latency 0): the dry input, where a chain would run (``rtha live --bypass``)."""

    def _process_block(self, x: np.ndarray) -> np.ndarray:
        return x

    def _reset(self) -> None:
        pass

    @property
    def name(self) -> str:
        return "bypass"
