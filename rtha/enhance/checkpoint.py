"""One-file checkpoints: config + weights + training metadata.

The file is a plain ``torch.save`` of ``{"format", "version", "config",
"state_dict", "metadata"}`` holding only tensors, numbers, strings, lists and
dicts, so ``torch.load(path, weights_only=True)`` reads it.  Loading checks
every piece and says which file, key or shape is wrong.
"""

from __future__ import annotations

import math
import os
import pickle
import warnings
from pathlib import Path

from ..errors import RthaError

FORMAT = "rtha-convtasnet"
VERSION = 1
MODELS_DIR = Path(__file__).resolve().parents[2] / "models"


class CheckpointError(RthaError):
    """A model file is missing, unreadable, or does not match its config."""


def default_model_path(name: str = "default") -> Path:
    """Path of a shipped model: ``models/default.pt`` or ``models/tiny.pt`` (may not exist yet)."""
    if not name or Path(name).name != name or name.startswith("."):
        raise RthaError(f"model name {name!r} is not a plain name (like 'default' or 'tiny')")
    return MODELS_DIR / f"{name}.pt"


def _plain(value, where: str):
    """Metadata as plain Python (numpy scalars become numbers); other types raise TypeError."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if hasattr(value, "item") and getattr(value, "ndim", getattr(value, "dim", lambda: 1)()) == 0:
        return _plain(value.item(), where)  # numpy or torch scalar
    raise TypeError(f"checkpoint metadata {where} is a {type(value).__name__}; expected numbers, strings, lists, dicts")


def save_checkpoint(path, model, metadata: dict | None = None) -> Path:
    """Write ``model`` (a :class:`ConvTasNet`) with its config and ``metadata`` to ``path``.

    ``metadata`` holds training facts (data, steps, metrics) as plain values.
    The file is written next to ``path`` and renamed into place, so a crash
    never leaves a truncated checkpoint under the final name.
    """
    import torch

    path = Path(path)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": model.cfg.to_dict(),
        "state_dict": state,
        "metadata": _plain(dict(metadata or {}), "metadata"),
    }
    tmp = path.with_name(path.name + ".partial")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path, map_location="cpu"):
    """Read a checkpoint written by :func:`save_checkpoint`.

    Returns:
        ``(model, metadata)``: a :class:`ConvTasNet` in eval mode on
        ``map_location`` and the metadata dict.

    Raises:
        CheckpointError: missing, truncated or corrupt file, a file that holds
            other Python objects, a missing key, a bad config value, a weight
            whose name or shape does not match, or a weight with NaN/Inf values.
    """
    import torch

    from .config import ConvTasNetConfig
    from .model import ConvTasNet

    path = Path(path)
    if not path.is_file():
        hint = " (train one with `rtha train`, or pass --model FILE)" if path.parent == MODELS_DIR else ""
        raise CheckpointError(f"model file {path} not found{hint}")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before it refuses a file
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError, KeyError... for bad files
        # torch's own text for a pickle (load it with weights_only=False) would run code from the file,
        # and a KeyError's is a bare number: only the first sentence of the others is worth showing
        detail = "" if isinstance(e, (pickle.UnpicklingError, KeyError)) else str(e).strip().split(". ")[0].splitlines()[0]
        raise CheckpointError(
            f"{path} is not a readable rtha model checkpoint (truncated or corrupt, or not a model file)"
            + (f": {detail}" if detail else "")
        ) from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, found {type(payload).__name__}")
    for key in ("format", "version", "config", "state_dict", "metadata"):
        if key not in payload:
            raise CheckpointError(f"{path}: checkpoint has no {key!r} key (not an rtha model file?)")
    if payload["format"] != FORMAT:
        raise CheckpointError(f"{path}: format is {payload['format']!r}; expected {FORMAT!r}")
    if payload["version"] != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload['version']!r}; this rtha reads version {VERSION}")
    try:
        cfg = ConvTasNetConfig.from_dict(dict(payload["config"]))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: bad config: {e}") from None

    model = ConvTasNet(cfg)
    expected = model.state_dict()
    state = payload["state_dict"]
    missing = [k for k in expected if k not in state]
    if missing:
        raise CheckpointError(f"{path}: weight {missing[0]!r} missing ({len(missing)} missing in all) for config {cfg}")
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        raise CheckpointError(
            f"{path}: unexpected weight {unexpected[0]!r} ({len(unexpected)} in all) for config {cfg}"
        )
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{path}: weight {k!r} has shape {tuple(state[k].shape)} but the config needs {tuple(v.shape)}"
            )
        if state[k].is_floating_point() and not bool(torch.isfinite(state[k]).all()):
            raise CheckpointError(f"{path}: weight {k!r} has NaN or Inf values (a diverged training run?)")
    model.load_state_dict(state)
    model.to(map_location if map_location is not None else "cpu").eval()
    return model, payload["metadata"]
