"""``HearingLossSimulator``: the Cambridge MSBG hearing-loss model as a streaming stage.

What a listener with the given audiograms would hear, per ear (pyclarity
0.9.0's ``Ear(src_pos="ff", sample_rate=44100, equiv_0db_spl=100, ahr=20)``):

    free field -> cochlea filter (1015 taps)
    -> spectral smearing (broadened auditory filters; none for a loss <= 15 dB HL)
    -> gammatone bank -> envelope -> loudness recruitment -> sum of the channels
    -> cochlea -> free field filter and 18 kHz low-pass (1147 taps)

The degree of loss (mean threshold over the audiogram's 2-8 kHz points: above
15, 35 or 56 dB HL = mild, moderate, severe) picks the smearing and the
gammatone bank (fewer, wider filters for more loss); the audiogram, read
linearly in Hz at each channel's centre, sets the recruitment.

Calibration: pyclarity rescales each whole file (by its RMS over the active
part) before the model, which a stream cannot do. Here a digital RMS of 1 is
fixed at ``level_db_spl`` dB SPL (default 100, the level pyclarity's ``Ear``
gives a file after its rescale, as in the Clarity challenges); the output
keeps the input's digital scale. pyclarity's output for a file equals this
stage's output for that file times ``10 ** (rescale_db / 20)``, where
``rescale_db`` is pyclarity's rescale (its whole-file RMS over its active RMS).

Delays: ``latency`` = 507 (input filter) + 192 (smearing) + 573 (output
filter), all also in pyclarity's output, plus the look-ahead a stream needs:
63 (smearing hops) + the largest gammatone advance (485, 379 or 229 samples
for the mild, moderate and severe banks) + the backward envelope window
(:data:`ENVELOPE_LOOKAHEAD`) - 1. ``alignment`` is that look-ahead: the
output at sample ``t`` is pyclarity's at ``t - alignment``. An ear without
smearing is delayed as much as one with it, so that both ears line up (its
output is pyclarity's at ``t - alignment - 192``).
"""

from __future__ import annotations

import numpy as np

from ..audiogram import CHALLENGE_LEVEL_DB_SPL, Audiogram, Listener
from ..dsp.errors import DspParameterError
from ..dsp.fir import _fir_direct, fir_work
from ..stage import BlockShapeError, Stage
from . import smearing
from .cochlea import CochleaBank
from .filters import ear_correction, output_filter
from .tables import AHR_DB, CATCH_UP_DB, FS, SEVERITY_PARAMS

#: Shortest backward-envelope window (samples, 15 ms): error energy -59.6 dB at worst on the reference cases.
ENVELOPE_LOOKAHEAD = 661


def severity(audiogram: Audiogram) -> str:
    """``"NOTHING"``, ``"MILD"``, ``"MODERATE"`` or ``"SEVERE"``: mean loss over the 2-8 kHz points above 15, 35, 56 dB HL."""
    f = audiogram.frequencies
    band = audiogram.levels[(f >= 2000) & (f <= 8000)]
    mean = band.mean() if band.size else 0.0
    for name, above in (("SEVERE", 56.0), ("MODERATE", 35.0), ("MILD", 15.0)):
        if mean > above:
            return name
    return "NOTHING"


def expansion_ratios(audiogram: Audiogram, cf: np.ndarray) -> np.ndarray:
    """Recruitment expansion ``105 / (105 - HL)`` at the centre frequencies ``cf`` (Hz).

    HL is read linearly in Hz between the audiogram's points and held beyond them.
    """
    return CATCH_UP_DB / (CATCH_UP_DB - np.interp(cf, audiogram.frequencies, audiogram.levels))


class HearingLossSimulator(Stage):
    """MSBG hearing loss per ear as a streaming stage at 44.1 kHz.

    Args:
        listener: audiograms; output channel 0 is the left ear, 1 the right.
        fs: sample rate in Hz; MSBG's filterbanks exist for 44100 only.
        level_db_spl: dB SPL of a digital RMS of 1 (pyclarity's ``equiv_0db_spl``).

    Input ``(1, samples)`` (fed to both ears) or ``(2, samples)`` float32;
    output ``(2, samples)`` float32 on the input's digital scale, delayed by
    ``latency`` samples. Every audiogram level must be below 105 dB HL, the
    level at which recruitment catches up with normal loudness (pyclarity
    warns above 80: the simulation grows unrealistic).
    """

    def __init__(self, listener: Listener, fs: int = FS, level_db_spl: float = CHALLENGE_LEVEL_DB_SPL) -> None:
        if not isinstance(listener, Listener):
            raise DspParameterError(f"the hearing-loss simulator needs a Listener, got {type(listener).__name__}")
        if fs != FS:
            raise DspParameterError(f"the hearing-loss simulator runs at {FS} Hz only (MSBG's filterbanks); got fs={fs!r}")
        if not (isinstance(level_db_spl, (int, float)) and np.isfinite(level_db_spl)):
            raise DspParameterError(f"level_db_spl={level_db_spl!r} is invalid; expected the dB SPL of a digital RMS of 1")
        for side, ear in zip(("left", "right"), listener.ears):
            if ear.max_loss >= CATCH_UP_DB:
                raise DspParameterError(
                    f"listener {listener.name!r}: the {side} ear's {ear.max_loss:g} dB HL is too much loss for MSBG; "
                    f"expected thresholds below {CATCH_UP_DB:g} dB HL"
                )
        self.listener = listener
        self.fs = FS
        self.level_db_spl = float(level_db_spl)
        self.severities = tuple(severity(ear) for ear in listener.ears)
        banks = [SEVERITY_PARAMS[s][0] for s in self.severities]
        smears = {}  # one matrix per broadening (both ears usually share one)
        for s in self.severities:
            broadening = SEVERITY_PARAMS[s][1]
            if broadening is not None and broadening not in smears:
                smears[broadening] = smearing.smearing_matrix(*broadening, FS)
        self._smearer = smearing.Smearer([smears.get(SEVERITY_PARAMS[s][1]) for s in self.severities])
        self._cochlea = CochleaBank(
            banks,
            [expansion_ratios(ear, bank.cf) for ear, bank in zip(listener.ears, banks)],
            self.level_db_spl + AHR_DB,
            ENVELOPE_LOOKAHEAD,
        )
        taps_in = ear_correction()
        taps_out = np.stack([output_filter() * 10.0 ** (-0.05 * bank.recombination_db) for bank in banks])
        self._in_rev = np.ascontiguousarray(np.stack([taps_in, taps_in])[:, ::-1])
        self._out_rev = np.ascontiguousarray(taps_out[:, ::-1])
        self.alignment = smearing.HOP - 1 + self._cochlea.latency
        self.latency = (taps_in.size - 1) // 2 + smearing.LATENCY + self._cochlea.latency + (taps_out.shape[1] - 1) // 2
        self._at_cochlea = self._heard = np.empty((2, 0))  # per-block scratch, float64
        self._work = np.empty(0)
        super().__init__()

    def out_channels(self, in_channels: int) -> int:
        return 2

    def _start(self, channels: int) -> None:
        if channels not in (1, 2):
            raise BlockShapeError(f"audio block has {channels} channels; expected 1 (fed to both ears) or 2 (left, right)")
        self._in_hist = np.zeros((2, self._in_rev.shape[1] - 1))
        self._out_hist = np.zeros((2, self._out_rev.shape[1] - 1))
        self._smearer.reset()
        self._cochlea.reset()

    def _step(self, x: np.ndarray, out: np.ndarray) -> None:
        n = x.shape[1]
        if self._at_cochlea.shape[1] != n:  # scratch for this block length, kept for the next blocks
            self._at_cochlea = np.empty((2, n))
            self._heard = np.empty((2, n))
        self._work = fir_work(self._work, max(self._in_rev.shape[1], self._out_rev.shape[1]), n)
        _fir_direct(x, self._in_rev, self._in_hist, self._at_cochlea, self._work)
        self._cochlea.process(self._smearer.process(self._at_cochlea), self._heard)
        _fir_direct(self._heard, self._out_rev, self._out_hist, out, self._work)
