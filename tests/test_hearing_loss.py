"""The MSBG hearing-loss simulator: pyclarity's output, streaming, calibration, bad input."""

import json
from pathlib import Path

import numpy as np
import pytest

from rtha.audiogram import PRESETS, Audiogram, Listener
from rtha.hearing_loss import HearingLossSimulator

DATA = Path(__file__).parent / "data"
REFERENCE = np.load(DATA / "msbg.npz")
CASES = json.loads((DATA / "msbg.json").read_text())["cases"]


def _error_db(y: np.ndarray, ref: np.ndarray) -> float:
    return float(10 * np.log10(np.sum((y - ref) ** 2) / np.sum(ref**2)))


@pytest.mark.parametrize("case", CASES, ids=[c["case"] for c in CASES])
def test_equals_pyclarity_on_the_reference_cases(case):
    # pyclarity rescales the whole file first; a stream is fed the input times that gain.
    ear = Audiogram(REFERENCE["freqs"], case["audiogram_levels"])
    sim = HearingLossSimulator(Listener(ear, ear, "ref"))
    x = REFERENCE["in__" + case["case"]] * np.float32(10 ** (case["pyclarity_rescale_db"] / 20))
    ref = REFERENCE["out__" + case["case"]].astype(np.float64)
    y = sim.process(x[None]).astype(np.float64)
    # Output sample t is pyclarity's t - alignment, over the input's duration.
    a, n = sim.alignment, x.size
    np.testing.assert_array_equal(y[0], y[1])
    assert _error_db(y[0, a:], ref[: n - a]) <= -40.0
