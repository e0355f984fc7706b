"""Streaming engines: the weight export and the state each engine carries.

Both engines run the one definition of the streaming step in
:mod:`rtha.enhance.kernels` (:func:`~rtha.enhance.kernels.forward` inside
:func:`~rtha.enhance.kernels.stream_block`):

- :class:`NumbaEngine` (CPU): everything compiled, one call per block on
  one native handle (:class:`~rtha.enhance.kernels.Stream`);
- :class:`TorchEngine` (CUDA, or CPU for checking): the same source run in
  Python with :class:`TorchOps`; the network's state and work buffers stay on
  the device, each chunk of frames is one copy in and one copy out.

An engine's ``reset(channels, frames)`` sizes its state for ``channels``
streams and chunks of up to ``frames`` frames; ``process(x, out)`` streams one
block ``x (channels, n)`` float32 into ``out``.
"""

from __future__ import annotations

import numpy as np

from . import kernels
from .config import CLN_EPS, CTX_EPS, CTX_POWER
from .kernels import BlockOps, Framing, LayerOps, NetState, Scratch, StreamWeights


def export_weights(model, source: int = 0) -> StreamWeights:
    """The weights of ``model`` (a :class:`ConvTasNet`) for output ``source``, numpy float32."""
    import torch

    cfg = model.cfg
    if not 0 <= source < cfg.n_src:
        raise ValueError(f"source {source} out of range for a model with {cfg.n_src} source(s)")

    def a(t: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())

    def stack(get, blocks, *shape) -> np.ndarray:
        """``get(block)`` for each block, stacked; ``(0, *shape)`` for none."""
        return a(torch.stack([get(b) for b in blocks])) if blocks else np.zeros((0, *shape), np.float32)

    blocks = list(model.blocks)
    B = cfg.B
    rows = slice(source * cfg.N, (source + 1) * cfg.N)
    return StreamWeights(
        enc=a(model.encoder.weight[:, 0, :]),
        enc_b=np.zeros(cfg.N, np.float32),
        feature_power=float(cfg.feature_power),
        norm_gain=a(model.in_norm.gain[:, 0]),
        norm_bias=a(model.in_norm.bias[:, 0]),
        bn_w=a(model.bottleneck.weight[:, :, 0]),
        bn_b=a(model.bottleneck.bias),
        in_w=stack(lambda b: b.in_conv.weight[:, :, 0], blocks),
        in_b=stack(lambda b: b.in_conv.bias, blocks),
        alpha=stack(lambda b: torch.cat([b.act1.weight, b.act2.weight]), blocks),
        gain=stack(lambda b: torch.stack([b.norm1.gain[:, 0], b.norm2.gain[:, 0]]), blocks),
        bias=stack(lambda b: torch.stack([b.norm1.bias[:, 0], b.norm2.bias[:, 0]]), blocks),
        dw=stack(lambda b: b.dconv.weight[:, 0, :].T, blocks),
        db=stack(lambda b: b.dconv.bias, blocks),
        dil=np.array([b.dconv.dilation[0] for b in blocks], np.int64),
        res_w=stack(lambda b: b.out.weight[:B, :, 0], blocks[:-1], B, cfg.H),  # the out conv: residual rows first
        res_b=stack(lambda b: b.out.bias[:B], blocks[:-1], B),
        skip_w=stack(lambda b: b.out.weight[-B:, :, 0], blocks),
        skip_b=stack(lambda b: b.out.bias[-B:], blocks),
        mask_alpha=np.float32(model.mask_act.weight.item()),
        mask_w=a(model.mask_conv.weight[rows, :, 0]),
        mask_b=a(model.mask_conv.bias[rows]),
        sigmoid=cfg.mask == "sigmoid",
        dec=a(model.decoder.weight[:, 0, :].T),
        dec_b=np.zeros(cfg.L, np.float32),
        **_context_weights(model, a),
    )


def _context_weights(model, a) -> dict:
    """The context branch's fields of :class:`StreamWeights` (empty arrays for a model without one)."""
    cfg = model.cfg
    K = cfg.ctx_bins
    if not K:
        z = np.zeros(0, np.float32)
        return dict(ctx=np.zeros((0, cfg.window), np.float32), ctx_b=z, ctx_gain=z, ctx_bias=z,
                    ctx_w=np.zeros((cfg.B, 0), np.float32), ctx_pb=np.zeros(cfg.B, np.float32))
    return dict(ctx=a(model.context.weight[:, 0, :]), ctx_b=np.zeros(2 * K, np.float32),
                ctx_gain=a(model.ctx_norm.gain[:, 0]), ctx_bias=a(model.ctx_norm.bias[:, 0]),
                ctx_w=a(model.ctx_proj.weight[:, :, 0]), ctx_pb=a(model.ctx_proj.bias))


def new_framing(cfg, channels: int, latency: int) -> Framing:
    """Framing state at the start of a stream: the left pad, the first hop to drop, ``latency`` zeros out.

    Its ``frames``, ``ctx`` and ``dec`` buffers are sized by :func:`framing_buffers`.
    """
    S, W = cfg.hop, cfg.window
    return Framing(
        pend=np.zeros((channels, W), np.float32),
        tail=np.zeros((channels, S), np.float32),
        fifo=np.zeros((channels, latency), np.float32),
        dry=np.zeros((channels, latency), np.float32),
        count=np.array([W - S, S, latency], np.int64),
        **framing_buffers(cfg, 0),
    )


def framing_buffers(cfg, rows: int) -> dict:
    """:class:`Framing`'s chunk buffers for ``rows`` frames (no context windows for a model without context)."""
    return dict(frames=np.zeros((rows, cfg.L), np.float32),
                ctx=np.zeros((rows if cfg.ctx_window else 0, cfg.window), np.float32),
                dec=np.zeros((rows, cfg.L), np.float32))


DTYPES = {"neff": "float64", "cln": "float64", "pos": "int64"}  # by field name; everything else float32


def state_shapes(cfg, w: StreamWeights, channels: int) -> dict:
    """Shapes of :class:`NetState`'s arrays, by field name."""
    nb = len(w.dil)
    maxpad = int((cfg.P - 1) * w.dil.max()) if nb else 0
    layers = 1 + 2 * nb + (1 if cfg.ctx_window else 0)
    return {"neff": (1,), "cln": (layers, channels, 2), "hist": (nb, channels, maxpad, cfg.H), "pos": (1,)}


def scratch_shapes(cfg, channels: int, frames: int) -> dict:
    """Shapes of :class:`Scratch`'s arrays for chunks of ``frames`` frames, by field name."""
    rows = channels * frames
    N, B, H, K = cfg.N, cfg.B, cfg.H, cfg.ctx_bins
    return {"neff": (frames,), "enc": (rows, N), "m": (rows, N), "x": (rows, B), "skip": (rows, B),
            "y": (rows, H), "z": (rows, H), "re_im": (rows, 2 * K), "mag": (rows, K)}  # fmt: skip


class NumbaEngine:
    """CPU engine: :func:`rtha.enhance.kernels.process_block`, one compiled call per block."""

    def __init__(self, weights: StreamWeights, cfg, decay: float, latency: int, dry_mix: float) -> None:
        self.w = weights
        self.cfg = cfg
        self.decay = float(decay)
        self.latency = latency
        self.dry_mix = float(dry_mix)

    @staticmethod
    def _zeros(name: str, shape) -> np.ndarray:
        return np.zeros(shape, DTYPES.get(name, "float32"))

    def reset(self, channels: int, frames: int) -> None:
        """A new stream of ``channels`` channels, in chunks of up to ``frames`` frames."""
        state = state_shapes(self.cfg, self.w, channels)
        self.s = NetState(*(self._zeros(k, v) for k, v in state.items()), self.decay)
        self.io = new_framing(self.cfg, channels, self.latency)
        self.resize(frames)

    def resize(self, frames: int) -> None:
        """Work buffers for chunks of up to ``frames`` frames (the stream's state is kept)."""
        import numba

        C = self.io.pend.shape[0]
        self.b = Scratch(*(self._zeros(k, v) for k, v in scratch_shapes(self.cfg, C, frames).items()))
        self.io = self.io._replace(**framing_buffers(self.cfg, C * frames))
        self._stream = kernels.Stream(self.w, self.s, self.b, self.io, self.dry_mix)
        # The compiled function itself, without the dispatcher's type check per call: the stream's type
        # never changes, and process's x and out are C-contiguous float32 (channels, n) as
        # Stage.process_block makes them.
        block = numba.typeof(np.zeros((C, 1), np.float32))
        self._process_block = kernels.process_block.compile((block, block, numba.typeof(self._stream)))

    def process(self, x: np.ndarray, out: np.ndarray) -> None:
        """``x (C, n)`` -> ``out (C, n)``: C-contiguous float32 both (the call checks no types)."""
        self._process_block(x, out, self._stream)


class TorchOps:
    """torch versions of the numba kernels in :mod:`rtha.enhance.kernels`, same signatures and layout."""

    @staticmethod
    def frame_counts(state, decay, neff):
        import torch

        k = torch.arange(1, neff.shape[0] + 1, dtype=torch.float64, device=neff.device)
        if decay == 1.0:
            neff.copy_(state + k)
        else:  # c_f = decay**f * c_0 + (1 - decay**f) / (1 - decay), f = 1...F
            p = decay**k
            neff.copy_(state * p + (1.0 - p) / (1.0 - decay))
        state.copy_(neff[-1:])

    @staticmethod
    def dense(x, w, b, slope, out, add):
        import torch

        v = torch.addmm(b, x, w.t())
        if add:
            out.add_(v)
        else:
            torch.where(v < 0, v * slope, v, out=out)

    @staticmethod
    def cln(x, out, gain, bias, sums, neff, decay, C, F):
        import torch

        v = x.view(C, F, -1)
        a = torch.stack([v.sum(-1, dtype=torch.float64), v.pow(2).sum(-1, dtype=torch.float64)], -1)  # (C, F, 2)
        if decay == 1.0:
            s = a.cumsum(1) + sums[:, None, :]
        else:  # s_f = decay**(f+1) * s_-1 + sum_j decay**(f-j) * a_j
            k = torch.arange(F, dtype=torch.float64, device=x.device)[:, None]
            s = (a * decay ** (-k)).cumsum(1) * decay**k + sums[:, None, :] * decay ** (k + 1)
        sums.copy_(s[:, -1])
        count = neff[:, None] * v.shape[-1]
        mean = s[..., 0:1] / count
        scale = ((s[..., 1:2] / count - mean.pow(2)).clamp_min(0.0) + CLN_EPS).rsqrt()
        out.view(C, F, -1).copy_((v - mean.to(v.dtype)) * scale.to(v.dtype) * gain + bias)

    @staticmethod
    def depthwise(y, w, b, slope, hist, dil, pos, C, F, out):
        import torch

        P, H = w.shape
        pad = (P - 1) * int(dil)
        v = y.view(C, F, H)
        if pad:
            k = (torch.arange(-pad, F, device=y.device) + pos) % pad  # ring rows: of the frames read, then the new
            buf = torch.cat([hist[:, k[:pad]], v], 1)
        else:
            buf = v
        z = b + buf[:, 0:F] * w[0]
        for p in range(1, P):
            z = z + buf[:, p * int(dil) : p * int(dil) + F] * w[p]
        if pad:
            first = max(F - pad, 0)
            hist[:, k[pad + first :]] = v[:, first:]
        torch.where(z < 0, z * slope, z, out=out.view(C, F, H))

    @staticmethod
    def prelu(x, a):
        import torch

        x.copy_(torch.where(x < 0, x * a, x))

    @staticmethod
    def apply_mask(m, enc, sigmoid):
        import torch

        torch.mul(m.sigmoid() if sigmoid else m.relu(), enc, out=m)

    @staticmethod
    def magnitude(re_im, out):
        K = out.shape[1]
        re, im = re_im[:, :K], re_im[:, K:]
        out.copy_((re * re + im * im + CTX_EPS).pow(CTX_POWER / 2))

    @staticmethod
    def compress(x, out, power):
        out.copy_((x * x + CTX_EPS).pow(power / 2))


class TorchEngine:
    """PyTorch engine (CUDA, or CPU for checking): the same step, network state on ``device``."""

    def __init__(self, weights: StreamWeights, cfg, decay: float, latency: int, dry_mix: float, device) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.cfg = cfg
        self.decay = float(decay)
        self.latency = latency
        self.dry_mix = float(dry_mix)
        self.w_host = weights
        self.w = StreamWeights(*(self._to_device(v) for v in weights))
        self.layer_ops = LayerOps(*(getattr(TorchOps, name) for name in LayerOps._fields))
        self.block_ops = BlockOps(kernels.emit_fifo, kernels.take_frames, self.network, kernels.overlap_add,
                                  kernels.mix_dry)  # fmt: skip

    def _to_device(self, v):
        """Float arrays to the device; dilations stay host integers, the mask slope a float."""
        if isinstance(v, np.ndarray) and v.dtype == np.float32:
            return self.torch.from_numpy(v).to(self.device)
        return float(v) if isinstance(v, np.floating) else v

    def _zeros(self, name: str, shape):
        dtype = getattr(self.torch, DTYPES.get(name, "float32"))
        return self.torch.zeros(shape, dtype=dtype, device=self.device)

    def reset(self, channels: int, frames: int) -> None:
        """A new stream of ``channels`` channels, in chunks of up to ``frames`` frames."""
        state = state_shapes(self.cfg, self.w_host, channels)
        with self.torch.inference_mode():  # inference tensors, updated in place by process
            self.s = NetState(*(self._zeros(k, v) for k, v in state.items()), self.decay)
        self.io = new_framing(self.cfg, channels, self.latency)
        self.resize(frames)

    def resize(self, frames: int) -> None:
        """Work buffers for chunks of up to ``frames`` frames (the stream's state is kept)."""
        C = self.io.pend.shape[0]
        self.io = self.io._replace(**framing_buffers(self.cfg, C * frames))
        with self.torch.inference_mode():
            self.b = Scratch(*(self._zeros(k, v) for k, v in scratch_shapes(self.cfg, C, frames).items()))
            self.frames, self.ctx, self.dec = (self._zeros(k, v.shape) for k, v in
                                               framing_buffers(self.cfg, C * frames).items())

    def network(self, w, s, b, frames: np.ndarray, ctx: np.ndarray, dec: np.ndarray, C: int, F: int) -> None:
        """:func:`rtha.enhance.kernels.forward` with :class:`TorchOps`: host frames in, host decoded frames out."""
        M = C * F
        x = self.frames[:M]
        x.copy_(self.torch.from_numpy(frames))
        c = self.ctx[: M if len(ctx) else 0]
        c.copy_(self.torch.from_numpy(ctx))
        kernels.forward(self.layer_ops, w, s, b, x, c, self.dec[:M], C, F)
        dec[:] = self.dec[:M].cpu().numpy()

    def process(self, x: np.ndarray, out: np.ndarray) -> None:
        with self.torch.inference_mode():
            kernels.stream_block(self.block_ops, x, out, self.w, self.s, self.b, self.io, self.dry_mix)
