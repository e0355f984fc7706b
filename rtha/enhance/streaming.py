"""``StreamingEnhancer``: the causal Conv-TasNet as a block-streaming Stage.

Blocks of any length (even shorter than one encoder hop) go in; the output
equals the offline model's output delayed by ``latency`` samples, because the
engine carries every piece of state the offline pass would see:

- the encoder input tail (the last ``L - S`` samples plus any partial hop),
- for each dilated depthwise conv, its last ``(P-1)*dilation`` input frames,
- for each cLN, the running sum and sum of squares (float64) and one frame
  count shared by all cLN layers,
- the decoder overlap-add tail (``S`` samples) and the output FIFO.

Latency: an output sample is complete once the frame after it is encoded, up
to ``L - 1`` samples after it arrives.  With ``block_size=None`` (or a size
that is not a multiple of the hop ``S``) the latency is ``L - 1`` and any
block length works.  With ``block_size`` a multiple of ``S`` it is ``L - S``,
and every block must then keep the stream aligned to ``S`` samples.  The
total delay heard live is the block plus this latency.

Engines: on CPU a numba step function (:mod:`rtha.enhance.kernels`: BLAS
matmuls on time-major features, everything else compiled), elsewhere (CUDA)
a time-major PyTorch step whose state stays on the device: each block is one
host-to-device copy in and one copy out.

cLN over long streams: exact cLN (the default) averages over the whole
stream, so after minutes the statistics hardly move and a quiet room turning
into a loud cafe is normalised with stale values.  ``cln_horizon_s`` makes the
running sums forget exponentially with that time constant (seconds, >= 1),
which tracks level changes but no longer equals the offline model.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import RthaError
from ..stage import BlockShapeError, Stage
from .config import CLN_EPS

MAX_FRAMES_PER_STEP = 1024  # long blocks are run in pieces to bound temporaries


def export_weights(model, source: int = 0) -> dict[str, np.ndarray]:
    """The model's weights, time-major float32 (matrices are ``(in, out)``), for one source.

    Keys match the arguments of :func:`rtha.enhance.kernels.stream_step`.
    """
    import torch

    cfg = model.cfg
    if not 0 <= source < cfg.n_src:
        raise ValueError(f"source {source} out of range for a model with {cfg.n_src} source(s)")

    def a(t: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())

    blocks = list(model.blocks)
    nb = len(blocks)
    H, B = cfg.H, cfg.B
    w = {
        "enc": a(model.encoder.weight[:, 0, :].T),
        "norm_gain": a(model.in_norm.gain[:, 0]),
        "norm_bias": a(model.in_norm.bias[:, 0]),
        "bn_w": a(model.bottleneck.weight[:, :, 0].T),
        "bn_b": a(model.bottleneck.bias),
        "in_w": a(torch.stack([b.in_conv.weight[:, :, 0].T for b in blocks])),
        "in_b": a(torch.stack([b.in_conv.bias for b in blocks])),
        "alpha": a(torch.stack([torch.cat([b.act1.weight, b.act2.weight]) for b in blocks])),
        "gain": a(torch.stack([torch.stack([b.norm1.gain[:, 0], b.norm2.gain[:, 0]]) for b in blocks])),
        "bias": a(torch.stack([torch.stack([b.norm1.bias[:, 0], b.norm2.bias[:, 0]]) for b in blocks])),
        "dw": a(torch.stack([b.dconv.weight[:, 0, :].T for b in blocks])),
        "db": a(torch.stack([b.dconv.bias for b in blocks])),
        "dil": np.array([b.dconv.dilation[0] for b in blocks], np.int64),
        "out_w": a(torch.stack([b.out.weight[:, :, 0].T for b in blocks[:-1]]))
        if nb > 1
        else np.zeros((0, H, 2 * B), np.float32),
        "out_b": a(torch.stack([b.out.bias for b in blocks[:-1]])) if nb > 1 else np.zeros((0, 2 * B), np.float32),
        "last_w": a(blocks[-1].out.weight[:, :, 0].T),
        "last_b": a(blocks[-1].out.bias),
        "mask_alpha": np.float32(model.mask_act.weight.item()),
        "mask_w": a(model.mask_conv.weight[source * cfg.N : (source + 1) * cfg.N, :, 0].T),
        "mask_b": a(model.mask_conv.bias[source * cfg.N : (source + 1) * cfg.N]),
        "dec": a(model.decoder.weight[:, 0, :]),
    }
    return w


class NumbaEngine:
    """CPU engine: one compiled call per block (:func:`rtha.enhance.kernels.stream_step`)."""

    def __init__(self, weights: dict, cfg, decay: float) -> None:
        from . import kernels

        self._step = kernels.stream_step
        self.w = weights
        self.cfg = cfg
        self.decay = float(decay)
        self.sigmoid = cfg.mask == "sigmoid"
        self.maxpad = int((cfg.P - 1) * weights["dil"].max())

    def reset(self, batch: int) -> None:
        nb = len(self.w["dil"])
        self.neff = np.zeros(1, np.float64)
        self.cln = np.zeros((1 + 2 * nb, batch, 2), np.float64)
        self.hist = np.zeros((nb, batch, self.maxpad, self.cfg.H), np.float32)

    def step(self, frames: np.ndarray) -> np.ndarray:
        w = self.w
        return self._step(
            frames, w["enc"], w["norm_gain"], w["norm_bias"], w["bn_w"], w["bn_b"], w["in_w"], w["in_b"],
            w["alpha"], w["gain"], w["bias"], w["dw"], w["db"], w["dil"], w["out_w"], w["out_b"],
            w["last_w"], w["last_b"], w["mask_alpha"], w["mask_w"], w["mask_b"], self.sigmoid, w["dec"],
            self.decay, self.neff, self.cln, self.hist,
        )  # fmt: skip


class TorchEngine:
    """PyTorch engine (CUDA, or CPU for checking): the same step, state on ``device``."""

    def __init__(self, weights: dict, cfg, decay: float, device) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.cfg = cfg
        self.decay = float(decay)
        self.w = {k: torch.as_tensor(np.asarray(v)).to(self.device) for k, v in weights.items() if k != "dil"}
        self.dil = [int(d) for d in weights["dil"]]
        self.maxpad = (cfg.P - 1) * max(self.dil)

    def reset(self, batch: int) -> None:
        with self.torch.inference_mode():  # state tensors are inference tensors, updated in place by step
            self._reset(batch)

    def _reset(self, batch: int) -> None:
        torch = self.torch
        nb = len(self.dil)
        self.batch = batch
        self.neff = 0.0  # a host float: the frame count does not depend on the audio
        self.cln = torch.zeros(1 + 2 * nb, batch, 2, dtype=torch.float64, device=self.device)
        self.hist = torch.zeros(nb, batch, self.maxpad, self.cfg.H, device=self.device)

    def _cln(self, x, i: int, gain, bias, neff, powers):
        """Cumulative layer norm of ``x (batch, F, C)`` with carried sums ``self.cln[i]``."""
        torch = self.torch
        a = torch.stack([x.sum(-1, dtype=torch.float64), x.pow(2).sum(-1, dtype=torch.float64)], -1)
        prev = self.cln[i]  # (batch, 2)
        if powers is None:  # exact cLN: plain running sums
            s = a.cumsum(1) + prev[:, None, :]
        else:  # s_f = decay**(f+1) * prev + sum_j decay**(f-j) * a_j
            dpos, dneg = powers
            s = (a * dneg[:, None]).cumsum(1) * dpos[:, None] + prev[:, None, :] * (dpos[:, None] * self.decay)
        self.cln[i] = s[:, -1]
        count = neff * x.shape[-1]
        mean = s[..., 0] / count
        var = (s[..., 1] / count - mean.pow(2)).clamp_min(0.0)
        scale = (var + CLN_EPS).rsqrt()
        return (x - mean[..., None].to(x.dtype)) * scale[..., None].to(x.dtype) * gain + bias

    def step(self, frames: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self._step(frames)

    def _step(self, frames: np.ndarray) -> np.ndarray:
        torch = self.torch
        w = self.w
        batch, F, L = frames.shape
        d = self.decay
        k = torch.arange(F, dtype=torch.float64, device=self.device)
        if d == 1.0:
            neff = self.neff + 1.0 + k
            powers = None
        else:
            dpos = d**k  # decay**f
            neff = self.neff * d * dpos + (1.0 - d ** (k + 1)) / (1.0 - d)
            powers = (dpos, d ** (-k))
        self.neff = self.neff + F if d == 1.0 else self.neff * d**F + (1.0 - d**F) / (1.0 - d)
        x = torch.from_numpy(frames).to(self.device, non_blocking=True)
        enc = torch.relu(x @ w["enc"])  # (batch, F, N)
        x = self._cln(enc, 0, w["norm_gain"], w["norm_bias"], neff, powers) @ w["bn_w"] + w["bn_b"]
        skip = None
        B = self.cfg.B
        nb = len(self.dil)
        for i, dil in enumerate(self.dil):
            y = torch.nn.functional.prelu(x @ w["in_w"][i] + w["in_b"][i], w["alpha"][i, 0:1])
            y = self._cln(y, 1 + 2 * i, w["gain"][i, 0], w["bias"][i, 0], neff, powers)
            pad = (self.cfg.P - 1) * dil
            buf = torch.cat([self.hist[i, :, self.maxpad - pad :], y], 1) if pad else y
            z = w["db"][i] + buf[:, 0:F] * w["dw"][i, 0]
            for p in range(1, self.cfg.P):
                z = z + buf[:, p * dil : p * dil + F] * w["dw"][i, p]
            if pad:
                self.hist[i, :, self.maxpad - pad :] = buf[:, F:]
            z = torch.nn.functional.prelu(z, w["alpha"][i, 1:2])
            z = self._cln(z, 2 + 2 * i, w["gain"][i, 1], w["bias"][i, 1], neff, powers)
            if i < nb - 1:
                o = z @ w["out_w"][i] + w["out_b"][i]
                x = x + o[..., :B]
                s = o[..., B:]
            else:
                s = z @ w["last_w"] + w["last_b"]
            skip = s if skip is None else skip + s
        m = torch.nn.functional.prelu(skip, w["mask_alpha"].reshape(1)) @ w["mask_w"] + w["mask_b"]
        m = torch.sigmoid(m) if self.cfg.mask == "sigmoid" else torch.relu(m)
        return ((enc * m) @ w["dec"]).cpu().numpy()


class StreamingEnhancer(Stage):
    """The enhancer as a Stage: blocks ``(channels, samples)`` at ``fs`` in, enhanced blocks out.

    Channels are independent streams (the batch dimension): a mono mic or
    both ears.  Output is the target source (``source``) of the model.

    Args:
        model_or_checkpoint_path: a :class:`ConvTasNet` or a checkpoint file.
        device: ``"cpu"`` or a torch device such as ``"cuda"``.
        threads: the intra-op thread count the caller set up for torch and
            the BLAS used on CPU (:func:`set_threads`, process wide; the
            commands do it), recorded in ``threads``; None: not stated.
            Checked, never applied here: a constructor does not change a
            process-wide setting.
        block_size: the block length the caller will use, in samples; a
            multiple of the hop ``S`` lowers the latency from ``L-1`` to
            ``L-S`` samples (then every block must keep the stream aligned).
        backend: ``"auto"`` (numba on CPU, torch elsewhere), ``"numba"`` or ``"torch"``.
        source: which model output to return (0 = the target).
        cln_horizon_s: None for exact cLN (stream == offline), or a time
            constant in seconds (>= 1) after which cLN statistics forget.
        dry_mix: fraction 0...1 of the input mixed back into the output,
            ``(1 - dry_mix) * enhanced + dry_mix * input`` (the input delayed
            by ``latency`` to line up). Hearing aids cap noise reduction like
            this: some noise is kept, artefacts are masked. None: the value
            stored with the model (``metadata["dry_mix"]``), else 0.

    Attributes:
        fs: the model's sample rate (Hz).
        latency: delay of the output behind the offline model, samples.
        cfg: the model's :class:`ConvTasNetConfig`.
    """

    def __init__(
        self,
        model_or_checkpoint_path,
        device="cpu",
        threads: int | None = None,
        block_size: int | None = None,
        backend: str = "auto",
        source: int = 0,
        cln_horizon_s: float | None = None,
        dry_mix: float | None = None,
    ) -> None:
        import torch

        from .checkpoint import load_checkpoint

        if isinstance(model_or_checkpoint_path, (str, Path)):
            model, meta = load_checkpoint(model_or_checkpoint_path)
        else:
            model, meta = model_or_checkpoint_path, {}
        if dry_mix is None:
            dry_mix = meta.get("dry_mix", 0.0)
        if not (isinstance(dry_mix, (int, float)) and 0.0 <= dry_mix <= 1.0):
            raise RthaError(f"dry_mix = {dry_mix!r}; expected a fraction in 0...1")
        self.dry_mix = float(dry_mix)
        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RthaError(f"device {device} requested but no CUDA GPU is available")
        if threads is not None and threads < 1:
            raise RthaError(f"threads = {threads}; expected a positive count")
        self.threads = threads
        cfg = model.cfg
        self.cfg = cfg
        self.fs = int(cfg.sample_rate)
        self.hop = cfg.hop
        if backend == "auto":
            backend = "numba" if device.type == "cpu" else "torch"
        if backend not in ("numba", "torch"):
            raise ValueError(f"backend {backend!r}; expected 'auto', 'numba' or 'torch'")
        if backend == "numba" and device.type != "cpu":
            raise ValueError(f"the numba backend runs on the CPU only, not on {device}")
        if cln_horizon_s is None:
            decay = 1.0
        elif cln_horizon_s >= 1.0:
            decay = math.exp(-cfg.hop / (cln_horizon_s * cfg.sample_rate))
        else:
            raise RthaError(f"cln_horizon_s = {cln_horizon_s}; expected None (exact cLN) or >= 1 second")
        self.cln_horizon_s = cln_horizon_s
        self.backend = backend
        self.device = device
        weights = export_weights(model, source)
        if backend == "numba":
            self._engine = NumbaEngine(weights, cfg, decay)
        else:
            self._engine = TorchEngine(weights, cfg, decay, device)
        # compile (numba) / initialise (CUDA) now, not on the first audio block
        self._engine.reset(1)
        self._engine.step(np.zeros((1, 1, cfg.L), np.float32))
        if block_size is not None and block_size > 0 and block_size % cfg.hop == 0:
            self.latency = cfg.L - cfg.hop
            self.aligned = True
        else:
            self.latency = cfg.L - 1
            self.aligned = False
        self.block_size = block_size
        super().__init__()

    def _allocate(self, channels: int) -> None:
        cfg = self.cfg
        self._engine.reset(channels)
        self._pending = np.zeros((channels, cfg.L - cfg.hop), np.float32)  # left pad, then partial hop
        self._tail = np.zeros((channels, cfg.hop), np.float32)  # decoder overlap-add tail
        self._drop = cfg.hop  # the first frame's leading half lies in the left pad
        self._fifo = np.zeros((channels, self.latency), np.float32)
        self._dry = np.zeros((channels, self.latency), np.float32)  # input delayed to meet the output

    def _reset(self) -> None:
        pass  # state is sized and zeroed by _allocate on the next block

    def cln_statistics(self) -> np.ndarray:
        """Running cLN ``(mean, variance)`` of every cLN layer now, float64 ``(layers, channels, 2)``.

        Layer 0 normalises the encoder output; then two per temporal block.
        (Zeros before the first frame.)
        """
        eng = self._engine
        if self._channels is None or not hasattr(eng, "cln"):
            return np.zeros((0, 0, 2))
        sums = eng.cln.cpu().numpy() if hasattr(eng.cln, "cpu") else eng.cln.copy()
        neff = float(eng.neff if isinstance(eng.neff, float) else eng.neff[0])
        if neff == 0.0:
            return np.zeros_like(sums)
        channels = np.array([self.cfg.N] + [self.cfg.H] * (sums.shape[0] - 1), np.float64)[:, None]
        mean = sums[..., 0] / (neff * channels)
        var = sums[..., 1] / (neff * channels) - mean**2
        return np.stack([mean, var], axis=-1)

    def _process_block(self, x: np.ndarray) -> np.ndarray:
        L, S = self.cfg.L, self.hop
        n = x.shape[1]
        if self.aligned and (self._pending.shape[1] - (L - S) + n) % S:
            raise BlockShapeError(
                f"block of {n} samples breaks the {S}-sample alignment this enhancer was built for "
                f"(block_size={self.block_size}, latency {self.latency}); use a multiple of {S}, "
                f"or block_size=None (latency {L - 1}) for any block length"
            )
        buf = np.concatenate([self._pending, x], axis=1)
        n_frames = (buf.shape[1] - (L - S)) // S
        done = [self._fifo]
        for f0 in range(0, n_frames, MAX_FRAMES_PER_STEP):
            f1 = min(n_frames, f0 + MAX_FRAMES_PER_STEP)
            hops = buf[:, f0 * S : (f1 + 1) * S].reshape(x.shape[0], f1 - f0 + 1, S)  # L == 2S
            dec = self._engine.step(np.concatenate([hops[:, :-1], hops[:, 1:]], axis=2))  # (channels, F, L)
            # overlap-add: each frame completes its first half with the previous frame's second half
            prev = np.concatenate([self._tail[:, None, :], dec[:, :-1, S:]], axis=1)
            out = (dec[:, :, :S] + prev).reshape(x.shape[0], -1)
            self._tail = np.ascontiguousarray(dec[:, -1, S:])
            if self._drop:
                out = out[:, self._drop :]
                self._drop = 0
            done.append(out)
        self._pending = buf[:, n_frames * S :].copy()
        fifo = np.concatenate(done, axis=1) if len(done) > 1 else self._fifo
        self._fifo = fifo[:, n:]
        if not self.dry_mix:
            return fifo[:, :n]
        dry = np.concatenate([self._dry, x], axis=1)
        self._dry = dry[:, n:]
        return (np.float32(1.0 - self.dry_mix) * fifo[:, :n] + np.float32(self.dry_mix) * dry[:, :n])


def set_threads(n: int) -> None:
    """Use ``n`` intra-op threads in torch and in the OpenBLAS that numba's ``np.dot`` calls (process wide).

    OpenBLAS is found among the loaded libraries (Linux); elsewhere only torch is set.
    """
    import ctypes

    import scipy.linalg  # noqa: F401  (loads the OpenBLAS that numba's np.dot uses)
    import torch

    if n < 1:
        raise RthaError(f"threads = {n}; expected a positive count")
    torch.set_num_threads(n)
    try:
        with open("/proc/self/maps") as maps:
            libs = {line.split()[-1] for line in maps if "openblas" in line.lower() and line.rstrip().endswith(".so")}
    except OSError:
        libs = set()
    for lib in sorted(libs):
        handle = ctypes.CDLL(lib)
        for name in ("scipy_openblas_set_num_threads", "openblas_set_num_threads"):
            if hasattr(handle, name):
                getattr(handle, name)(ctypes.c_int(n))
                break
