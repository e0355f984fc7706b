"""rtha: a real-time streaming hearing-aid simulator.

The chain, one block of ``(channels, samples)`` float32 at a time::

    mic -> StreamingEnhancer -> NalrFilter -> Compressor -> SoftClip -> speaker

Every stage follows the protocol in :mod:`rtha.stage`; :class:`rtha.chain.Chain`
composes them.  Heavy modules (torch, numba) are imported only where used.
"""

__version__ = "0.1.0"
