import numpy as np
import pytest

from rtha.chain import Chain
from rtha.stage import BlockDtypeError, BlockShapeError, Bypass, SoftClip, Stage, process_with_tail


class Accumulate(Stage):
    """A stage with carried state: running sum per channel, one sample of latency."""

    latency = 1

    def _start(self, channels):
        self.acc = np.zeros((channels, 1), np.float32)

    def _step(self, x, out):
        out[:] = np.cumsum(x, axis=1, dtype=np.float32) + self.acc
        self.acc = out[:, -1:].copy()


def test_chain_is_block_partition_invariant_and_sums_latency():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1000)).astype(np.float32) * 0.01
    chain = Chain(Accumulate(), SoftClip())
    assert chain.latency == 1
    offline = chain.process(x)
    chain.reset()
    edges = [0, 1, 2, 9, 310, 311, 1000]
    streamed = np.concatenate([chain.process_block(x[:, a:b]) for a, b in zip(edges, edges[1:])], axis=1)
    np.testing.assert_allclose(streamed, offline, atol=1e-6)


def test_bad_blocks_have_defined_behaviour():
    s = SoftClip()
    with pytest.raises(BlockShapeError, match=r"expected 2-D \(channels, samples\)"):
        s.process_block(np.zeros(10, np.float32))
    with pytest.raises(BlockDtypeError, match="int16"):
        s.process_block(np.zeros((1, 10), np.int16))
    assert s.process_block(np.zeros((2, 0), np.float32)).shape == (2, 0)
    with pytest.raises(BlockShapeError, match="expected 2"):
        s.process_block(np.zeros((1, 4), np.float32))  # channel count fixed by the first block
    y = s.process_block(np.array([[np.nan, 1.0], [np.inf, -np.inf]]))
    assert y.dtype == np.float32 and np.isfinite(y).all() and y[0, 0] == 0
    assert s.nonfinite_count == 3
    s.reset()
    assert s.nonfinite_count == 0


def test_bypass_is_the_identity_stage():
    x = np.random.default_rng(1).standard_normal((2, 100)).astype(np.float32)
    b = Bypass()
    assert b.latency == 0 and b.name == "bypass"
    assert np.array_equal(Chain(b).process(x), x)
    b.reset()
    y = b.process_block(np.array([[np.nan, 0.5]]))  # a new channel count after reset; NaN -> 0, counted
    assert np.array_equal(y, [[0.0, 0.5]]) and b.nonfinite_count == 1


def test_tail_and_process_with_tail_give_the_full_convolution():
    from rtha.dsp import FirFilter

    rng = np.random.default_rng(2)
    taps = rng.standard_normal((2, 17))
    x = rng.standard_normal((2, 300)).astype(np.float32)
    chain = Chain(FirFilter(taps), Accumulate(), SoftClip())
    assert FirFilter(taps).tail == 16 and chain.tail == 16 + 1 + 0
    y = process_with_tail(FirFilter(taps), x)
    full = [np.convolve(x[c].astype(np.float64), taps[c]) for c in range(2)]
    np.testing.assert_allclose(y, full, rtol=0, atol=1e-6)
    assert process_with_tail(chain, x, then=5).shape == (2, 300 + 17 + 5)


def test_reset_forgets_the_state_whatever_the_channel_count():
    x = np.random.default_rng(3).standard_normal((2, 50)).astype(np.float32)
    chain = Chain(Accumulate(), SoftClip())
    first = chain.process_block(x)
    chain.process_block(x)
    chain.reset()
    np.testing.assert_array_equal(chain.process_block(x), first)  # no stale running sum
    chain.reset()
    assert chain.process_block(x[:1]).shape == (1, 50)  # a new channel count after a reset
    with pytest.raises(BlockShapeError, match="expected 1"):
        chain.process_block(x)  # ... which then holds until the next reset
