"""``Chain``: stages composed in series, itself a stage.

The hearing-aid chain is ``Chain(enhancer, nalr, compressor, softclip)``: the
enhancer runs on each input channel (mono mic or both ears), NAL-R fans a mono
input out to both ears (channel 0 left, 1 right) with each ear's audiogram,
and the compressor and soft clip run per ear.

The chain checks a block once, at its input, and runs its stages' inner
steps: each stage writes into a buffer the chain keeps between blocks (the
last one into the returned array), so a block costs no check and no
allocation per stage.
"""

from __future__ import annotations

import numpy as np

from .stage import Stage


class Chain(Stage):
    """Stages in series; latency and tail are the sums of the stages' (samples)."""

    def __init__(self, *stages: Stage) -> None:
        if not stages:
            raise ValueError("Chain needs at least one stage")
        self.stages = tuple(s for s in stages if s is not None)
        self._inner, self._last = self.stages[:-1], self.stages[-1]
        self._between: list[np.ndarray] = []  # each stage's output but the last, sized for _between_shape
        self._between_shape = (0, 0)  # (channels, samples) of the input they are sized for
        super().__init__()

    @property
    def latency(self) -> int:  # type: ignore[override]
        return int(sum(s.latency for s in self.stages))

    @property
    def tail(self) -> int:
        return int(sum(s.tail for s in self.stages))

    @property
    def latencies(self) -> list[tuple[str, int]]:
        """``[(stage name, latency in samples), ...]`` in chain order."""
        return [(s.name, int(s.latency)) for s in self.stages]

    @property
    def fs(self) -> int | None:
        """The sample rate shared by the stages that declare one."""
        rates = {int(s.fs) for s in self.stages if getattr(s, "fs", None)}
        if len(rates) > 1:
            raise ValueError(f"stages run at different sample rates: {sorted(rates)}")
        return rates.pop() if rates else None

    def out_channels(self, in_channels: int) -> int:
        for s in self.stages:
            in_channels = s.out_channels(in_channels)
        return in_channels

    def _start(self, channels: int) -> None:
        for s in self.stages:
            s.nonfinite_count = 0
            s._setup(channels)
            channels = s.out_channels(channels)

    def _step(self, x: np.ndarray, out: np.ndarray) -> None:
        if x.shape != self._between_shape:  # a new block length (or channel count): new buffers, once
            channels, n = self._between_shape = x.shape
            self._between = []
            for s in self._inner:
                channels = s.out_channels(channels)
                self._between.append(np.empty((channels, n), np.float32))
        for s, y in zip(self._inner, self._between):
            s._step(x, y)
            x = y
        self._last._step(x, out)
