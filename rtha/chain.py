"""``Chain``: stages composed in series, itself a stage.

The hearing-aid chain is ``Chain(enhancer, nalr, compressor, softclip)``: the
enhancer runs on each input channel (mono mic or both ears), NAL-R fans a mono
input out to both ears (channel 0 left, 1 right) with each ear's audiogram,
and the compressor and soft clip run per ear.
"""

from __future__ import annotations

import numpy as np

from .stage import Stage


class Chain(Stage):
    """Stages in series; latency is the sum of the stages' latencies (samples)."""

    def __init__(self, *stages: Stage) -> None:
        if not stages:
            raise ValueError("Chain needs at least one stage")
        self.stages = tuple(s for s in stages if s is not None)
        super().__init__()

    @property
    def latency(self) -> int:  # type: ignore[override]
        return int(sum(s.latency for s in self.stages))

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

    def _process_block(self, x: np.ndarray) -> np.ndarray:
        for s in self.stages:
            x = s.process_block(x)
        return x

    def _reset(self) -> None:
        for s in self.stages:
            s.reset()
