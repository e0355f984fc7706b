"""``ConvTasNetConfig``: every hyperparameter of the causal Conv-TasNet in one object.

The config is saved inside every checkpoint, so a model file alone is enough
to rebuild the network.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

MASKS = ("sigmoid", "relu")
CONTEXT_FIELDS = ("ctx_window", "ctx_bins")  # optional: 0 (absent from files) means no context branch
FEATURE_POWER = "feature_power"  # optional: 1.0 (absent from files) means the separator reads the encoder output itself
CLN_EPS = 1e-8  # added to the cLN variance (offline and streaming alike)
CTX_POWER = 0.3  # context magnitudes are compressed |X|**0.3 (their cLN then removes the level)
CTX_EPS = 1e-8  # added to |X|**2 so that silence has a finite slope


@dataclass(frozen=True)
class ConvTasNetConfig:
    """Hyperparameters of the causal Conv-TasNet (names as in Luo & Mesgarani, 2019).

    Attributes:
        N: encoder filters (basis size).
        L: encoder kernel length in samples; the hop is ``S = L // 2`` (L must be even).
        B: bottleneck (and skip) channels.
        H: channels inside each temporal block.
        P: depthwise kernel size.
        X: temporal blocks per repeat (dilations 1, 2, ..., 2**(X-1)).
        R: repeats.
        n_src: output sources (masks).
        mask: mask nonlinearity, ``"sigmoid"`` or ``"relu"``.
        sample_rate: the rate the model runs at, Hz.
        ctx_window: context window in samples (0: none).  A second, longer
            analysis of the same past, ``|STFT|**0.3`` of ``ctx_bins`` bins
            over the last ``ctx_window`` samples at every hop, feeds the
            separator only: its frequency resolution separates harmonics
            that the ``L``-sample encoder frames cannot, while the mask still
            acts on the encoder frames, so the latency stays ``L - S``.
        ctx_bins: DFT bins of the context analysis, from 0 Hz in steps of
            ``sample_rate / ctx_window`` (at most ``ctx_window // 2 + 1``).
        feature_power: the separator reads ``(w**2 + eps)**(feature_power / 2)``
            of the encoder output ``w``: a power below 1 compresses its
            dynamic range, so quiet bands weigh in beside loud ones (as the
            compressed spectra of small enhancers do). The mask still acts on
            ``w`` itself. 1.0: no compression.
    """

    N: int = 128
    L: int = 16
    B: int = 128
    H: int = 256
    P: int = 3
    X: int = 7
    R: int = 2
    n_src: int = 1
    mask: str = "sigmoid"
    sample_rate: int = 16000
    ctx_window: int = 0
    ctx_bins: int = 0
    feature_power: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", int) and f.name not in CONTEXT_FIELDS:
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ValueError(f"ConvTasNetConfig.{f.name} = {value!r}; expected a positive integer")
        if self.L < 2 or self.L % 2:
            raise ValueError(f"ConvTasNetConfig.L = {self.L}; expected an even kernel length >= 2 (hop L/2)")
        if self.mask not in MASKS:
            raise ValueError(f"ConvTasNetConfig.mask = {self.mask!r}; expected one of {', '.join(MASKS)}")
        for name in CONTEXT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"ConvTasNetConfig.{name} = {value!r}; expected a count >= 0")
        if (self.ctx_window == 0) != (self.ctx_bins == 0):
            raise ValueError(f"ConvTasNetConfig ctx_window = {self.ctx_window}, ctx_bins = {self.ctx_bins}; "
                             "expected both 0 (no context) or both positive")
        p = self.feature_power
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1:
            raise ValueError(f"ConvTasNetConfig.feature_power = {p!r}; expected a power in (0, 1]")
        if self.ctx_window and not (self.ctx_window > self.L and self.ctx_bins <= self.ctx_window // 2 + 1):
            raise ValueError(f"ConvTasNetConfig ctx_window = {self.ctx_window}, ctx_bins = {self.ctx_bins}; "
                             f"expected a window longer than L = {self.L} and at most window/2 + 1 bins")

    @property
    def hop(self) -> int:
        """Encoder stride ``S = L // 2`` in samples."""
        return self.L // 2

    @property
    def window(self) -> int:
        """Input samples each frame reads: the longer of ``L`` and ``ctx_window``."""
        return max(self.L, self.ctx_window)

    @property
    def receptive_field_frames(self) -> int:
        """Past frames the separator sees: ``R * (P - 1) * (2**X - 1)``."""
        return self.R * (self.P - 1) * (2**self.X - 1)

    @classmethod
    def preset(cls, name: str) -> "ConvTasNetConfig":
        """A named preset: ``"default"`` or ``"tiny"`` (see :data:`PRESETS`)."""
        try:
            return cls(**PRESETS[name])
        except KeyError:
            raise ValueError(f"unknown Conv-TasNet preset {name!r}; expected one of {', '.join(PRESETS)}") from None

    def to_dict(self) -> dict:
        """Plain ``{field: value}`` (numbers and a string), as stored in checkpoints.

        Without a context branch its two fields are left out, and so is
        ``feature_power`` at 1.0, so the files and score-config hashes of
        models made before they existed stay the same.
        """
        d = asdict(self)
        if not self.ctx_window:
            for name in CONTEXT_FIELDS:
                del d[name]
        if self.feature_power == 1.0:
            del d[FEATURE_POWER]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ConvTasNetConfig":
        """Inverse of :meth:`to_dict`; unknown or missing keys raise ``ValueError`` naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown ConvTasNetConfig key(s): {', '.join(unknown)}")
        missing = sorted(known - set(d) - set(CONTEXT_FIELDS) - {FEATURE_POWER})
        if missing:
            raise ValueError(f"ConvTasNetConfig is missing key(s): {', '.join(missing)}")
        return cls(**d)


# lean_deep: lean with a third repeat of blocks (R=3), ~0.26 GMAC per second, the same 2 ms latency;
# grown from a trained lean model (ConvTasNet.load_grown_), whose output it starts with.
# lean_ctx: lean plus a 32 ms context analysis (0-4 kHz in 31.25 Hz bins) for the separator,
# ~0.25 GMAC per second, the same 2 ms latency.
# lean, lean_wide: coarse frames for CPU-hour training and cheap streaming (2 ms and
# 2.5 ms hop, 4 and 5 ms window; ~0.18 and ~0.30 GMAC per second of 16 kHz audio;
# streaming latency with hop-aligned blocks L - S = 2 and 2.5 ms).
# default: the small causal model (about 1.4 M multiply-adds per 0.5 ms frame,
# ~2.9 GMAC per second of 16 kHz audio).  tiny: half the channels, one block fewer per
# repeat and a 2 ms kernel (1 ms hop), ~0.3 GMAC per second: about 9x cheaper, for
# CPU-bound live use at the price of 1 ms more latency.
PRESETS: dict[str, dict] = {
    "default": dict(N=128, L=16, B=128, H=256, P=3, X=7, R=2, n_src=1, mask="sigmoid", sample_rate=16000),
    "tiny": dict(N=64, L=32, B=64, H=128, P=3, X=6, R=2, n_src=1, mask="sigmoid", sample_rate=16000),
    "lean": dict(N=256, L=64, B=64, H=128, P=3, X=6, R=2, n_src=1, mask="sigmoid", sample_rate=16000),
    "lean_wide": dict(N=256, L=80, B=96, H=192, P=3, X=6, R=2, n_src=1, mask="sigmoid", sample_rate=16000),
    "lean_deep": dict(N=256, L=64, B=64, H=128, P=3, X=6, R=3, n_src=1, mask="sigmoid", sample_rate=16000),
    "lean_ctx": dict(N=256, L=64, B=64, H=128, P=3, X=6, R=2, n_src=1, mask="sigmoid", sample_rate=16000,
                     ctx_window=512, ctx_bins=129),
}
