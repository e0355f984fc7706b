"""Hearing-aid DSP stages: NAL-R per ear, streaming FIR, attack/release compressor."""

from .compressor import Compressor
from .errors import DspParameterError
from .fir import FirFilter
from .nalr import NalrFilter, default_nfir, minimum_phase, nalr_fir, nalr_gains_db

__all__ = [
    "Compressor",
    "DspParameterError",
    "FirFilter",
    "NalrFilter",
    "default_nfir",
    "minimum_phase",
    "nalr_fir",
    "nalr_gains_db",
]
