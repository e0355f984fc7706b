"""The causal Conv-TasNet enhancer: config, model, checkpoints, streaming enhancer.

``config`` (hyperparameters), ``model`` (the offline network, for training),
``checkpoint`` (model files), ``streaming`` (:class:`StreamingEnhancer`, the
Stage), ``engines`` (its numba and torch engines and the weight export) and
``kernels`` (the streaming step, written once, and its numba kernels).

Torch is imported only when a model or the streaming engine is used, so
``from rtha.enhance import ConvTasNetConfig`` stays light.
"""

from __future__ import annotations

from .checkpoint import CheckpointError, default_model_path, load_checkpoint, save_checkpoint
from .config import PRESETS, ConvTasNetConfig

__all__ = [
    "PRESETS",
    "CheckpointError",
    "ConvTasNet",
    "ConvTasNetConfig",
    "StreamingEnhancer",
    "default_model_path",
    "load_checkpoint",
    "save_checkpoint",
]


def __getattr__(name: str):
    if name == "ConvTasNet":
        from .model import ConvTasNet

        return ConvTasNet
    if name == "StreamingEnhancer":
        from .streaming import StreamingEnhancer

        return StreamingEnhancer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
