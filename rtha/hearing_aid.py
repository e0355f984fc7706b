"""The hearing-aid chain: [enhancer] -> NAL-R per ear -> compressor -> tanh soft clip."""

from __future__ import annotations

from .audiogram import Listener
from .chain import Chain
from .dsp import Compressor, NalrFilter
from .errors import RthaError
from .stage import SoftClip, Stage


def hearing_aid_chain(
    listener: Listener,
    fs: int,
    enhancer: Stage | None = None,
    nalr_phase: str = "minimum",
    nfir: int | None = None,
    compressor: bool | Compressor = True,
    softclip: bool = True,
) -> Chain:
    """Build the hearing-aid chain for one listener.

    Args:
        listener: audiograms; output channel 0 is the left ear, 1 the right.
        fs: sample rate in Hz (the enhancer's, when one is given).
        enhancer: a Stage run first on each input channel (mono mic or both
            ears), e.g. ``rtha.enhance.StreamingEnhancer``; None to skip.
        nalr_phase: ``"minimum"`` (latency 0) or ``"linear"`` (pyclarity's
            filter, latency ``nfir // 2``).
        nfir: NAL-R filter order; default 5 ms each side (220 at 44.1 kHz).
        compressor: True for the ICASSP 2023 compressor, False for none, or a
            configured :class:`~rtha.dsp.Compressor`.
        softclip: append the ``tanh`` soft clip.

    Returns:
        A :class:`~rtha.chain.Chain` taking ``(1 or 2, samples)`` and giving
        ``(2, samples)`` float32.
    """
    enhancer_fs = getattr(enhancer, "fs", None)
    if enhancer_fs and int(enhancer_fs) != int(fs):
        raise RthaError(f"the enhancer runs at {enhancer_fs} Hz but the chain at {fs} Hz; expected the same rate")
    if compressor is True:
        compressor = Compressor(fs)
    elif isinstance(compressor, Compressor) and int(compressor.fs) != int(fs):
        raise RthaError(f"the compressor runs at {compressor.fs} Hz but the chain at {fs} Hz; expected the same rate")
    stages = [
        enhancer,
        NalrFilter(listener, fs, nfir=nfir, phase=nalr_phase),
        compressor or None,
        SoftClip() if softclip else None,
    ]
    return Chain(*(s for s in stages if s is not None))
