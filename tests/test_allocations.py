"""The audio path allocates the returned block and nothing that grows with it.

Measured with tracemalloc (numpy reports its array buffers to it): the peak of
traced memory above the steady state during one ``process_block``, after a
warm-up, worst over 100 blocks. What remains besides the output array is the
interpreter's and numba's per-call overhead, which does not depend on the
block length (the enhancer's compiled call takes one native handle on its
state, ~100 B; passing its ~50 arrays one by one took about 2 KB). Before the
chain ran its stages' inner steps into kept buffers (commit 883e50f), the DSP
chain took 2192 B at 64 samples and 17584 B at 1024 (the output is 512 and
8192 B).
"""

import tracemalloc

import numpy as np
import pytest

from rtha.audiogram import get_listener
from rtha.hearing_aid import hearing_aid_chain

FS = 16000
SHORT, LONG = 64, 1024


def _peak_bytes(chain, block: int, blocks: int = 100) -> int:
    x = (0.1 * np.random.default_rng(0).standard_normal((1, block))).astype(np.float32)
    for _ in range(20):  # warm-up: compilation, buffers sized for this block length
        chain.process_block(x)
    tracemalloc.start()
    try:
        worst = 0
        for _ in range(blocks):
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            y = chain.process_block(x)
            worst = max(worst, tracemalloc.get_traced_memory()[1] - base)
            del y
    finally:
        tracemalloc.stop()
    return worst


def _chain(with_enhancer: bool):
    enhancer = None
    if with_enhancer:
        from rtha.enhance import StreamingEnhancer, default_model_path

        enhancer = StreamingEnhancer.from_checkpoint(default_model_path("default"), block_size=SHORT)
    return hearing_aid_chain(get_listener("moderate"), FS, enhancer=enhancer)


@pytest.mark.parametrize("with_enhancer", [False, True], ids=["dsp", "enhancer"])
def test_a_block_allocates_its_output_and_a_fixed_overhead(with_enhancer):
    out_short, out_long = 2 * SHORT * 4, 2 * LONG * 4  # (2, n) float32
    short = _peak_bytes(_chain(with_enhancer), SHORT)
    long = _peak_bytes(_chain(with_enhancer), LONG)
    # Only the output grows with the block (a stage's scratch or a chain's
    # intermediate block would add at least another output's worth).
    assert long - short <= (out_long - out_short) + 256, (short, long)
    # The output plus about 640 B of call overhead (the enhancer adds ~100 B).
    assert short <= out_short + 1024, short
