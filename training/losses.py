"""Training losses and the SI-SDR measure, ``(..., samples) -> (...)`` in dB.

``snr`` compares the estimate with the target as it is, so level and polarity
are learnt (the hearing aid after the enhancer acts on level, and HASQI on fine
structure). ``si_sdr`` is blind to both: a model trained on it may come out
quiet or inverted and needs ``training.calibrate``.
"""

from __future__ import annotations

import torch

LOSSES = ("snr", "si_sdr")


def si_sdr(est: torch.Tensor, ref: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant SDR in dB along the last axis, ``(..., samples) -> (...)``."""
    est = est - est.mean(-1, keepdim=True)
    ref = ref - ref.mean(-1, keepdim=True)
    proj = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps) * ref
    noise = est - proj
    return 10 * torch.log10((proj.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps))


def snr(est: torch.Tensor, ref: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Signal-to-error ratio ``10 log10(|ref|^2 / |ref - est|^2)`` in dB along the last axis.

    ``eps`` is relative to the target's energy, so the loss of a quiet example
    is not dominated by it.
    """
    energy = ref.pow(2).sum(-1)
    error = (ref - est).pow(2).sum(-1)
    return 10 * torch.log10((energy + eps) / (error + eps * energy + eps))


def loss_fn(name: str):
    """The negative of measure ``name`` (``"snr"`` or ``"si_sdr"``), to minimise."""
    measure = {"snr": snr, "si_sdr": si_sdr}[name]
    return lambda est, ref: -measure(est, ref).mean()
