"""The linear filters around MSBG's cochlea: outer/middle ear in and out, final low-pass.

- Into the cochlea: free field (frontal) to eardrum plus middle ear,
  ``FF_ED - MIDEAR`` dB (0 dB at 1 kHz), by frequency sampling (MATLAB
  ``fir2``, Kaiser window beta 4) with a 23 ms window: 1015 taps at 44.1 kHz,
  linear phase, 507 samples of delay.
- Out of the cochlea: the same design with the sign of the correction flipped,
  then a 133-tap low-pass flat to 18 kHz (``firwin``, Kaiser beta 8) against
  processing noise at the top of the band; both are linear, so they are one
  1147-tap filter (573 samples of delay).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import signal
from scipy.signal.windows import kaiser

from ..dsp.nalr import fir2
from .tables import FF_ED, FS, HZ, MIDEAR, UPPER_CUTOFF_HZ


def ear_correction(backward: bool = False) -> np.ndarray:
    """Free field to cochlea (``backward``: cochlea to free field) FIR taps, ``(1015,)`` float64."""
    nyquist = int(FS / 2)
    below = HZ < nyquist
    correction = FF_ED - MIDEAR
    freqs = np.append(HZ[below], nyquist) / nyquist
    gains_db = np.append(correction[below], np.interp(nyquist, HZ, correction))
    gains = 10.0 ** (0.05 * (-gains_db if backward else gains_db))
    order = 2 * math.floor((FS / 16e3) * 368 / 2)  # 23 ms: reasonable down to about 100 Hz
    return fir2(order, freqs, gains, window=kaiser(order + 1, 4))


def output_filter() -> np.ndarray:
    """Cochlea to free field, then the 18 kHz low-pass: ``(1147,)`` float64 taps."""
    lowpass = signal.firwin(2 * math.floor(0.0015 * FS) + 1, UPPER_CUTOFF_HZ / int(FS / 2), window=("kaiser", 8))
    return np.convolve(ear_correction(backward=True), lowpass)

