"""The causal Conv-TasNet with cumulative layer norm (cLN), offline form.

Shapes: ``mix (batch, samples)`` -> ``(batch, n_src, samples)`` at
``cfg.sample_rate``.  Internally features are ``(batch, channels, frames)``
with frames ``S = L/2`` samples apart.

Framing: the input is left-padded by ``L - S`` samples so frame ``k`` covers
samples ``[k*S - (L-S), k*S + S)`` and every frame depends only on the past
(a context analysis, ``cfg.ctx_window``, reads ``[k*S + S - ctx_window, k*S + S)``);
the streaming engine (:mod:`rtha.enhance.streaming`) reproduces this output
exactly, delayed by its latency.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .config import CLN_EPS, CTX_EPS, CTX_POWER, ConvTasNetConfig


def cumulative_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Running mean and variance of ``x (batch, channels, frames)`` over channels and frames ``0..k``.

    The running sums are accumulated in float64 (as in the streaming engine)
    so that long inputs do not drift; returns float64 ``(batch, 1, frames)`` each.
    """
    count = torch.arange(1, x.shape[-1] + 1, device=x.device, dtype=torch.float64) * x.shape[1]
    s1 = x.sum(1, keepdim=True).double().cumsum(-1)
    s2 = (x * x).sum(1, keepdim=True).double().cumsum(-1)
    mean = s1 / count
    var = (s2 / count - mean.pow(2)).clamp_min(0.0)
    return mean, var


class CumulativeLayerNorm(nn.Module):
    """cLN: at frame k, normalise by mean/variance over all channels and frames 0..k.

    Per-channel ``gain`` and ``bias``; input and output ``(batch, channels, frames)``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(channels, 1))
        self.bias = nn.Parameter(torch.zeros(channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = cumulative_stats(x)
        scale = (var + CLN_EPS).rsqrt()
        return torch.addcmul(self.bias, (x - mean.to(x.dtype)) * scale.to(x.dtype), self.gain)


class TemporalBlock(nn.Module):
    """1x1 to H, PReLU, cLN, causal dilated depthwise conv, PReLU, cLN, 1x1 out.

    The residual and skip 1x1 convs are one conv (``out``: residual channels
    first, then skip); the last block of the stack has no residual path.
    """

    def __init__(self, B: int, H: int, P: int, dilation: int, residual: bool) -> None:
        super().__init__()
        self.pad = (P - 1) * dilation
        self.residual = residual
        self.in_conv = nn.Conv1d(B, H, 1)
        self.act1 = nn.PReLU()
        self.norm1 = CumulativeLayerNorm(H)
        self.dconv = nn.Conv1d(H, H, P, dilation=dilation, groups=H)
        self.act2 = nn.PReLU()
        self.norm2 = CumulativeLayerNorm(H)
        self.out = nn.Conv1d(H, 2 * B if residual else B, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """``x (batch, B, frames)`` -> ``(residual output or None, skip)``."""
        y = self.norm1(self.act1(self.in_conv(x)))
        y = self.norm2(self.act2(self.dconv(F.pad(y, (self.pad, 0)))))
        y = self.out(y)
        if not self.residual:
            return None, y
        res, skip = y.chunk(2, dim=1)
        return x + res, skip


def dft_bases(window: int, bins: int) -> torch.Tensor:
    """Hann-windowed DFT bases ``(2 * bins, window)``: cosines of bins 0..bins-1, then sines."""
    t = torch.arange(window, dtype=torch.float64)
    hann = 0.5 - 0.5 * torch.cos(2 * math.pi * (t + 0.5) / window)
    phase = 2 * math.pi * torch.arange(bins, dtype=torch.float64)[:, None] * t / window
    return (torch.cat([torch.cos(phase), -torch.sin(phase)]) * hann).float()


def compressed(w: torch.Tensor, power: float) -> torch.Tensor:
    """``(w**2 + eps)**(power/2)``, elementwise (``w`` itself at power 1)."""
    return w if power == 1.0 else (w * w + CTX_EPS).pow(power / 2)


def context_magnitudes(re_im: torch.Tensor) -> torch.Tensor:
    """``(batch, 2*bins, frames)`` real and imaginary parts -> ``(|X|**2 + eps)**(power/2)``, ``(batch, bins, frames)``."""
    re, im = re_im.chunk(2, dim=1)
    return (re * re + im * im + CTX_EPS).pow(CTX_POWER / 2)


class ConvTasNet(nn.Module):
    """Causal Conv-TasNet; ``forward(mix (batch, samples)) -> (batch, n_src, samples)``."""

    def __init__(self, cfg: ConvTasNetConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or ConvTasNetConfig()
        self.cfg = cfg
        self.encoder = nn.Conv1d(1, cfg.N, cfg.L, stride=cfg.hop, bias=False)
        self.in_norm = CumulativeLayerNorm(cfg.N)
        self.bottleneck = nn.Conv1d(cfg.N, cfg.B, 1)
        n_blocks = cfg.R * cfg.X
        self.blocks = nn.ModuleList(
            TemporalBlock(cfg.B, cfg.H, cfg.P, 2 ** (i % cfg.X), residual=i < n_blocks - 1) for i in range(n_blocks)
        )
        if cfg.ctx_window:
            # The context analysis starts as a plain Hann STFT and its projection at zero, so a model
            # initialised from one without context (training's init_from) computes the same output.
            self.context = nn.Conv1d(1, 2 * cfg.ctx_bins, cfg.ctx_window, stride=cfg.hop, bias=False)
            self.ctx_norm = CumulativeLayerNorm(cfg.ctx_bins)
            self.ctx_proj = nn.Conv1d(cfg.ctx_bins, cfg.B, 1)
            with torch.no_grad():
                self.context.weight.copy_(dft_bases(cfg.ctx_window, cfg.ctx_bins)[:, None, :])
                self.ctx_proj.weight.zero_()
                self.ctx_proj.bias.zero_()
        self.mask_act = nn.PReLU()
        self.mask_conv = nn.Conv1d(cfg.B, cfg.n_src * cfg.N, 1)
        self.decoder = nn.ConvTranspose1d(cfg.N, 1, cfg.L, stride=cfg.hop, bias=False)

    @torch.no_grad()
    def scale_output_(self, gain: float) -> None:
        """Multiply the output by ``gain`` (sign included) by scaling the decoder in place.

        The decoder is linear and has no bias, so this is exact. Training with
        SI-SDR leaves the output's level and polarity free; a calibration gain
        folded in here gives the hearing aid the target's level and sign.
        """
        self.decoder.weight.mul_(float(gain))

    @torch.no_grad()
    def load_grown_(self, weights: dict[str, torch.Tensor], X: int) -> list[str]:
        """Load a trained model's ``weights`` into this one, which may have more repeats (``R``), unchanged in output.

        ``X``: the trained model's blocks per repeat; it must equal this one's,
        so that every block it has keeps its dilation here. Blocks it lacks
        start with a zero ``out`` conv, and its last block (skip only there)
        gets a residual path at zero: the new depth adds nothing until
        training grows it. Other parameters it lacks keep their
        initialisation (a context branch starts as a no-op). Returns the
        names of the parameters it lacks. Raises ``ValueError`` naming the
        first weight this model lacks or holds in another shape.
        """
        if X != self.cfg.X:
            raise ValueError(f"its blocks per repeat X = {X}; this model's X = {self.cfg.X} "
                             "(another X gives its blocks other dilations)")
        own = self.state_dict()
        weights = dict(weights)
        for key, value in weights.items():
            if key not in own:
                raise ValueError(f"weight {key} is not in this model")
            if value.shape == own[key].shape:
                continue
            skip_only = value.shape[0] == self.cfg.B and own[key].shape == (2 * self.cfg.B, *value.shape[1:])
            if not (key.endswith((".out.weight", ".out.bias")) and skip_only):
                raise ValueError(f"{key} has shape {tuple(value.shape)}; this model's is {tuple(own[key].shape)}")
            weights[key] = torch.cat([torch.zeros_like(value), value])  # residual rows first, at zero
        for i, block in enumerate(self.blocks):
            if f"blocks.{i}.out.weight" not in weights:
                block.out.weight.zero_()
                block.out.bias.zero_()
        self.load_state_dict(weights, strict=False)
        return sorted(k for k in own if k not in weights)

    def n_frames(self, samples: int) -> int:
        """Frames needed so that every output sample gets both overlapping frames."""
        return (samples - 1) // self.cfg.hop + 2

    def masks(self, w: torch.Tensor, ctx: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder output ``w (batch, N, frames)`` -> masks ``(batch, n_src, N, frames)``.

        ``ctx (batch, ctx_bins, frames)``: the context magnitudes, for a model that has them.
        """
        x = self.bottleneck(self.in_norm(compressed(w, self.cfg.feature_power)))
        if ctx is not None:
            x = x + self.ctx_proj(self.ctx_norm(ctx))
        skips = None
        for block in self.blocks:
            x, skip = block(x)
            skips = skip if skips is None else skips + skip
        m = self.mask_conv(self.mask_act(skips))
        m = torch.sigmoid(m) if self.cfg.mask == "sigmoid" else torch.relu(m)
        return m.view(w.shape[0], self.cfg.n_src, self.cfg.N, w.shape[-1])

    def encode(self, mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``mix (batch, samples)`` -> encoder output ``w (batch, N, frames)`` and the context
        magnitudes ``(batch, ctx_bins, frames)`` (``None`` without a context branch)."""
        cfg, S = self.cfg, self.cfg.hop
        samples = mix.shape[-1]
        # left pad L-S (causal framing), right pad to complete the last frame
        right = (self.n_frames(samples) - 1) * S + S - samples
        w = torch.relu(self.encoder(F.pad(mix, (cfg.L - S, right)).unsqueeze(1)))
        ctx = None
        if cfg.ctx_window:  # the same frame ends, reaching ctx_window samples back
            ctx = context_magnitudes(self.context(F.pad(mix, (cfg.ctx_window - S, right)).unsqueeze(1)))
        return w, ctx

    def decode(self, masked: torch.Tensor, samples: int) -> torch.Tensor:
        """Masked encoder output ``(batch, n_src, N, frames)`` -> ``(batch, n_src, samples)``."""
        cfg = self.cfg
        batch, n_src, _, frames = masked.shape
        y = self.decoder(masked.reshape(batch * n_src, cfg.N, frames))
        return y[:, 0, cfg.L - cfg.hop : cfg.L - cfg.hop + samples].reshape(batch, n_src, samples)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        if mix.dim() != 2:
            raise ValueError(f"ConvTasNet input has shape {tuple(mix.shape)}; expected (batch, samples)")
        batch, samples = mix.shape
        if samples == 0:
            return mix.new_zeros(batch, self.cfg.n_src, 0)
        w, ctx = self.encode(mix)
        return self.decode(w.unsqueeze(1) * self.masks(w, ctx), samples)
