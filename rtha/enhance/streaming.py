"""``StreamingEnhancer``: the causal Conv-TasNet as a block-streaming Stage.

Blocks of any length (even shorter than one encoder hop) go in; the output
equals the offline model's output delayed by ``latency`` samples, because the
engine carries every piece of state the offline pass would see:

- the encoder input tail (the last ``L - S`` samples plus any partial hop;
  ``ctx_window - S`` for a model with a context analysis),
- for each dilated depthwise conv, its last ``(P-1)*dilation`` input frames
  (rings indexed by one frame count),
- for each cLN, the running sum and sum of squares (float64) and one frame
  count shared by all cLN layers,
- the decoder overlap-add tail (``S`` samples) and the output FIFO.

Latency: an output sample is complete once the frame after it is encoded, up
to ``L - 1`` samples after it arrives.  With ``block_size=None`` (or a size
that is not a multiple of the hop ``S``) the latency is ``L - 1`` and any
block length works.  With ``block_size`` a multiple of ``S`` it is ``L - S``,
and every block must then keep the stream aligned to ``S`` samples.  The
total delay heard live is the block plus this latency.

Engines (:mod:`rtha.enhance.engines`): on CPU one compiled numba call per
block, elsewhere (CUDA) the same step in PyTorch with the network's state on
the device.  Both run the one definition of the step in
:mod:`rtha.enhance.kernels`.

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

MAX_FRAMES_PER_STEP = 1024  # long blocks run in chunks of this many frames (bounds the work buffers)


def stored_dry_mix(path, metadata: dict) -> float:
    """The ``dry_mix`` a model file stores (0 if none); one-line error if it is not a fraction."""
    value = metadata.get("dry_mix", 0.0)
    if not _is_fraction(value):
        raise RthaError(f"{path} stores dry_mix {value!r}, not a fraction in 0...1")
    return float(value)


class StreamingEnhancer(Stage):
    """The enhancer as a Stage: blocks ``(channels, samples)`` at ``fs`` in, enhanced blocks out.

    Channels are independent streams (the batch dimension): a mono mic or
    both ears.  Output is the target source (``source``) of the model.
    :meth:`from_checkpoint` builds one from a model file.

    Args:
        model: a :class:`ConvTasNet` (a model file's path is read as by
            :meth:`from_checkpoint`).
        device: ``"cpu"`` or a torch device such as ``"cuda"``.
        threads: the intra-op thread count the caller set up for torch and
            the BLAS used on CPU (:func:`set_threads`, process wide; the
            commands do it), recorded in ``threads``; None: not stated.
            Checked, never applied here: a constructor does not change a
            process-wide setting.
        block_size: the block length the caller will use, in samples; a
            multiple of the hop ``S`` lowers the latency from ``L-1`` to
            ``L-S`` samples (then every block must keep the stream aligned).
            It also sizes the work buffers (they grow for longer blocks).
        backend: ``"auto"`` (numba on CPU, torch elsewhere), ``"numba"`` or ``"torch"``.
        source: which model output to return (0 = the target).
        cln_horizon_s: None for exact cLN (stream == offline), or a time
            constant in seconds (>= 1) after which cLN statistics forget.
        dry_mix: fraction 0...1 of the input mixed back into the output,
            ``(1 - dry_mix) * enhanced + dry_mix * input`` (the input delayed
            by ``latency`` to line up). Hearing aids cap noise reduction like
            this: some noise is kept, artefacts are masked. None: 0 (for a
            model file, the value it stores).

    Raises:
        RthaError: a bad argument (one line naming the value), or CUDA asked
            for without a GPU.

    Attributes:
        fs: the model's sample rate (Hz).
        latency: delay of the output behind the offline model, samples.
        cfg: the model's :class:`ConvTasNetConfig`.
    """

    def __init__(
        self,
        model,
        device="cpu",
        threads: int | None = None,
        block_size: int | None = None,
        backend: str = "auto",
        source: int = 0,
        cln_horizon_s: float | None = None,
        dry_mix: float | None = None,
    ) -> None:
        import torch

        from .engines import NumbaEngine, TorchEngine, export_weights

        if isinstance(model, (str, Path)):
            model, dry_mix = self._read(model, dry_mix)
        dry_mix = 0.0 if dry_mix is None else dry_mix
        if not _is_fraction(dry_mix):
            raise RthaError(f"dry_mix = {dry_mix!r}; expected a fraction in 0...1")
        try:
            device = torch.device(device)
        except (RuntimeError, TypeError):
            raise RthaError(f"device = {device!r}; expected 'cpu', 'cuda' or another torch device") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RthaError(f"device {device} requested but no CUDA GPU is available")
        if threads is not None and not (_is_int(threads) and threads >= 1):
            raise RthaError(f"threads = {threads!r}; expected a positive count")
        if block_size is not None and not (_is_int(block_size) and block_size >= 1):
            raise RthaError(f"block_size = {block_size!r}; expected None or a positive number of samples")
        if backend == "auto":
            backend = "numba" if device.type == "cpu" else "torch"
        if backend not in ("numba", "torch"):
            raise RthaError(f"backend = {backend!r}; expected 'auto', 'numba' or 'torch'")
        if backend == "numba" and device.type != "cpu":
            raise RthaError(f"backend = 'numba' runs on the CPU only, not on device {device}")
        cfg = model.cfg
        if not (_is_int(source) and 0 <= source < cfg.n_src):
            raise RthaError(f"source = {source!r}; expected 0...{cfg.n_src - 1} for a model with {cfg.n_src} source(s)")
        if cln_horizon_s is None:
            decay = 1.0
        elif isinstance(cln_horizon_s, (int, float)) and cln_horizon_s >= 1.0:
            decay = math.exp(-cfg.hop / (cln_horizon_s * cfg.sample_rate))
        else:
            raise RthaError(f"cln_horizon_s = {cln_horizon_s!r}; expected None (exact cLN) or >= 1 second")
        self.cfg = cfg
        self.fs = int(cfg.sample_rate)
        self.hop = cfg.hop
        self.threads = threads
        self.dry_mix = float(dry_mix)
        self.cln_horizon_s = cln_horizon_s
        self.backend = backend
        self.device = device
        self.block_size = block_size
        self.aligned = block_size is not None and block_size % cfg.hop == 0
        self.latency = cfg.L - cfg.hop if self.aligned else cfg.L - 1
        weights = export_weights(model, source)
        if backend == "numba":
            self._engine = NumbaEngine(weights, cfg, decay, self.latency, self.dry_mix)
        else:
            self._engine = TorchEngine(weights, cfg, decay, self.latency, self.dry_mix, device)
        self._frames = 0
        # compile (numba) / initialise (CUDA) now, not on the first audio block
        self._engine.reset(1, 1)
        self._engine.process(np.zeros((1, cfg.L), np.float32), np.zeros((1, cfg.L), np.float32))
        super().__init__()

    @classmethod
    def from_checkpoint(cls, path, dry_mix: float | None = None, **kw) -> "StreamingEnhancer":
        """A streaming enhancer for the model file ``path``; ``dry_mix`` None takes the value it stores.

        Other keywords as for the constructor.  Raises :class:`CheckpointError`
        for a missing or bad file.
        """
        model, dry_mix = cls._read(path, dry_mix)
        return cls(model, dry_mix=dry_mix, **kw)

    @staticmethod
    def _read(path, dry_mix):
        """``(model, dry_mix)`` from a model file: ``dry_mix`` if given, else the stored one."""
        from .checkpoint import load_checkpoint

        model, meta = load_checkpoint(path)
        return model, stored_dry_mix(path, meta) if dry_mix is None else dry_mix

    def _start(self, channels: int) -> None:
        hint = self.block_size or 0
        self._frames = min(MAX_FRAMES_PER_STEP, max(1, -(-hint // self.hop) + 1))
        self._engine.reset(channels, self._frames)

    def cln_statistics(self) -> np.ndarray:
        """Running cLN ``(mean, variance)`` of every cLN layer now, float64 ``(layers, channels, 2)``.

        Layer 0 normalises the encoder output; then two per temporal block;
        then the context magnitudes' for a model with a context branch.
        (Zeros before the first frame.)
        """
        if self._channels is None:
            return np.zeros((0, 0, 2))
        s = self._engine.s
        sums = s.cln.cpu().numpy() if hasattr(s.cln, "cpu") else s.cln.copy()
        neff = float(s.neff[0])
        if neff == 0.0:
            return np.zeros_like(sums)
        blocks = self.cfg.R * self.cfg.X
        widths = [self.cfg.N] + [self.cfg.H] * (2 * blocks) + ([self.cfg.ctx_bins] if self.cfg.ctx_window else [])
        channels = np.array(widths, np.float64)[:, None]
        mean = sums[..., 0] / (neff * channels)
        var = sums[..., 1] / (neff * channels) - mean**2
        return np.stack([mean, var], axis=-1)

    def _step(self, x: np.ndarray, out: np.ndarray) -> None:
        W, S = self.cfg.window, self.hop
        n = x.shape[1]
        held = int(self._engine.io.count[0])  # input samples not yet framed
        if self.aligned and (held - (W - S) + n) % S:
            raise BlockShapeError(
                f"block of {n} samples breaks the {S}-sample alignment this enhancer was built for "
                f"(block_size={self.block_size}, latency {self.latency}); use a multiple of {S}, "
                f"or block_size=None (latency {self.cfg.L - 1}) for any block length"
            )
        frames = (held - (W - S) + n) // S
        if frames > self._frames and self._frames < MAX_FRAMES_PER_STEP:  # a longer block: larger buffers
            self._frames = min(frames, MAX_FRAMES_PER_STEP)
            self._engine.resize(self._frames)
        self._engine.process(x, out)


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_fraction(v) -> bool:
    return isinstance(v, (int, float, np.floating)) and not isinstance(v, bool) and 0.0 <= v <= 1.0


def set_threads(n: int) -> None:
    """Use ``n`` intra-op threads in torch and in OpenBLAS (scipy's, which numba's ``np.dot`` calls), process wide.

    The numba engine calls no BLAS; torch runs the offline model and the
    torch engine.  OpenBLAS is found among the loaded libraries (Linux);
    elsewhere only torch is set.
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
