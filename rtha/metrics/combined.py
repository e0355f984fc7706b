"""Better-ear HASQI and the ICASSP 2023 Clarity challenge score.

The challenge (Clarity ICASSP 2023 grand challenge, pyclarity's
``recipes/cad_icassp_2023`` evaluation) scores a hearing-aid output per
(scene, listener) as 0.5 x (better-ear HASPI v2 + better-ear HASQI v2) at
100 dB SPL for RMS 1, with numpy's global noise stream seeded once per scene
from the scene name and then used by HASPI left, HASPI right, HASQI left and
HASQI right in that order. Here the stream is an explicit
``numpy.random.RandomState`` passed through the same calls in the same order,
so ``rng=numpy.random.RandomState(scene_seed(scene))`` reproduces the
challenge's numbers.  One call uses up to two threads (``threads``): the two
ears' resampling and alignment side by side, then each ear model's chunks of
bands side by side (the ears themselves in stream order, as where the right
ear's noise starts depends on how many draws the left ear's data took).
"""

from __future__ import annotations

import hashlib

import numpy as np

from .haspi import better_ear, haspi_v2_aligned, noise_rng, stereo_metric
from .hasqi import hasqi_v2_aligned


def scene_seed(scene: str) -> int:
    """The challenge's per-scene noise seed: the scene name's MD5 modulo 10**8."""
    return int(hashlib.md5(scene.encode("utf-8")).hexdigest(), 16) % 10**8


@stereo_metric
def hasqi_v2_better_ear(inputs_lr, listener, level_db_spl, rng, threads) -> float:
    """HASQI v2 of each ear (equalisation 1); the better (higher) of the two.

    Args:
        ref_lr: clean reference, ``(2, samples)`` (left, right) at ``fs`` Hz.
        proc_lr: processed signal, ``(2, samples)``; lengths may differ from ``ref_lr``.
        fs: sample rate in Hz.
        listener: audiograms of both ears.
        level_db_spl: dB SPL of a signal with RMS 1.
        rng: noise source, used by the left ear then the right; None: ``RandomState(0)``.
        threads: threads for one call (None: ``min(2, os.cpu_count())``; 1:
            this thread only, e.g. in each worker of a process pool); the
            result and ``rng``'s final state do not depend on it (see
            :func:`~rtha.metrics.haspi.haspi_v2_better_ear`).
    """
    return better_ear(hasqi_v2_aligned, inputs_lr, listener, level_db_spl, rng, threads)


@stereo_metric
def icassp2023_score(inputs_lr, listener, level_db_spl, rng, threads) -> float:
    """0.5 x (better-ear HASPI v2 + better-ear HASQI v2), the ICASSP 2023 challenge score.

    Arguments as for :func:`hasqi_v2_better_ear`; ``rng`` serves HASPI (left,
    right) and then HASQI (left, right), as in the challenge's evaluation, so
    the result equals the mean of ``haspi_v2_better_ear`` and
    ``hasqi_v2_better_ear`` called in that order with the same ``rng``.
    ``threads`` (None: ``min(2, os.cpu_count())``; 1: this thread only) share
    out one call, the same numbers and final ``rng`` state for any count;
    each ear is resampled and aligned once, for both metrics.
    """
    rng = noise_rng(rng)
    haspi = better_ear(haspi_v2_aligned, inputs_lr, listener, level_db_spl, rng, threads)
    hasqi = better_ear(hasqi_v2_aligned, inputs_lr, listener, level_db_spl, rng, threads)
    return 0.5 * (haspi + hasqi)
