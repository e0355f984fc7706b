"""The user error raised for DSP settings."""

from ..errors import RthaError


class DspParameterError(RthaError, ValueError):
    """A DSP setting (sample rate, filter order or taps, compressor parameter) outside its valid range."""
