"""Training losses and the SI-SDR measure, ``(..., samples) -> (...)`` in dB.

``snr`` compares the estimate with the target as it is, so level and polarity
are learnt (the hearing aid after the enhancer acts on level, and HASQI on fine
structure). ``si_sdr`` is blind to both: a model trained on it may come out
quiet or inverted and needs ``training.calibrate``. ``snr_cs`` averages ``snr``
with :func:`compressed_spectrum_snr`, which sees quiet speech (consonants,
onsets) as HASPI does and counts speech removed as worse than noise left.
``snr_pooled`` (:func:`pooled_snr`) is one SNR over the batch: it does not
discount the hardest examples, so the output is level-true over a split too.
"""

from __future__ import annotations

import torch

LOSSES = ("snr", "si_sdr", "snr_cs", "snr_pooled")


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


def compressed_spectrum_snr(est: torch.Tensor, ref: torch.Tensor, power: float = 0.3, under_weight: float = 4.0,
                            n_fft: int = 512, eps: float = 1e-8) -> torch.Tensor:
    """Target-to-error ratio in dB of power-law compressed STFT magnitudes, ``(batch, samples) -> (batch,)``.

    Magnitudes ``|STFT|**power`` (32 ms Hann window, 8 ms hop at 16 kHz) lift
    quiet speech towards loud speech, as loudness does. Where the estimate is
    below the target (speech removed) the squared error counts ``under_weight``
    times as much as where it is above (noise left): a hearing aid's listener
    loses more from missing consonants than from residual noise.
    """
    window = torch.hann_window(n_fft, device=est.device)

    def compressed(x):
        spec = torch.stft(x, n_fft, hop_length=n_fft // 4, window=window, return_complex=True)
        return (spec.abs() + eps).pow(power)

    s, y = compressed(ref), compressed(est)
    diff = y - s
    error = torch.where(diff < 0, under_weight * diff.pow(2), diff.pow(2)).sum((-2, -1))
    energy = s.pow(2).sum((-2, -1))
    return 10 * torch.log10((energy + eps) / (error + eps * energy + eps))


def pooled_snr(est: torch.Tensor, ref: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """One SNR in dB for a whole batch, ``(batch, samples) -> ()``: ``-10 log10`` of the mean relative error.

    Each example's error counts relative to its target's energy, and the mean is
    taken before the log, so the hardest examples are not discounted as they are
    by the mean of per-example dB (whose gradient weights an example by
    ``1 / error``). The optimum is the least-squares estimate, whose gain on the
    target is 1: where speech cannot be separated the noise is taken down with it.
    """
    energy = ref.pow(2).sum(-1)
    relative = ((ref - est).pow(2).sum(-1) + eps * energy + eps) / (energy + eps)
    return -10 * torch.log10(relative.mean())


def _snr_cs(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return 0.5 * (snr(est, ref) + compressed_spectrum_snr(est, ref))


def loss_fn(name: str):
    """The negative of measure ``name`` (one of :data:`LOSSES`), to minimise."""
    measure = {"snr": snr, "si_sdr": si_sdr, "snr_cs": _snr_cs, "snr_pooled": pooled_snr}[name]
    return lambda est, ref: -measure(est, ref).mean()
