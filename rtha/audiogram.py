"""Audiograms (hearing thresholds in dB HL) and listeners (one audiogram per ear).

Reads the Clarity ``listeners.json`` format::

    {"L0001": {"name": "L0001",
               "audiogram_cfs": [250, 500, 1000, 2000, 3000, 4000, 6000, 8000],
               "audiogram_levels_l": [...], "audiogram_levels_r": [...]}, ...}

and offers built-in presets (``normal``, ``mild``, ``moderate``, ``severe``;
the same audiogram in both ears) so that every command works without a file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import RthaError, read_text

#: Audiometric frequencies of the Clarity listener files (Hz).
CLARITY_CFS = (250, 500, 1000, 2000, 3000, 4000, 6000, 8000)
#: Frequencies (Hz) at which NAL-R prescribes gain and the HASPI/HASQI ear model reads the loss.
AUDIOMETRIC_FREQS = np.array([250.0, 500.0, 1000.0, 2000.0, 4000.0, 6000.0])
#: dB SPL of a digital RMS of 1 in the Clarity challenges (pyclarity's ``equiv_0db_spl``; the ICASSP 2023 scoring level).
CHALLENGE_LEVEL_DB_SPL = 100.0

MIN_HL, MAX_HL = -10.0, 120.0


class AudiogramError(RthaError, ValueError):
    """An audiogram or listener file that does not describe valid hearing thresholds."""


@dataclass(frozen=True)
class Audiogram:
    """Hearing thresholds of one ear.

    Args:
        frequencies: strictly increasing frequencies in Hz, shape ``(n,)``.
        levels: thresholds in dB HL at those frequencies, shape ``(n,)``,
            each within -10...120 dB HL.
    """

    frequencies: np.ndarray
    levels: np.ndarray

    def __post_init__(self) -> None:
        f = _numbers(self.frequencies, "frequencies", "Hz")
        lv = _numbers(self.levels, "levels", "dB HL")
        if f.size == 0:
            raise AudiogramError("audiogram has no frequencies; expected at least one")
        if f.size != lv.size:
            raise AudiogramError(
                f"audiogram has {f.size} frequencies but {lv.size} levels; expected one level per frequency"
            )
        if not np.all(np.isfinite(f)) or np.any(f <= 0):
            raise AudiogramError(f"audiogram frequencies {f.tolist()} must be finite and positive (Hz)")
        if np.any(np.diff(f) <= 0):
            raise AudiogramError(f"audiogram frequencies {f.tolist()} must be strictly increasing")
        if not np.all(np.isfinite(lv)):
            raise AudiogramError(f"audiogram levels {lv.tolist()} contain NaN or Inf; expected dB HL values")
        bad = lv[(lv < MIN_HL) | (lv > MAX_HL)]
        if bad.size:
            raise AudiogramError(
                f"audiogram level {bad[0]:g} dB HL is outside {MIN_HL:g}...{MAX_HL:g} dB HL"
            )
        f.setflags(write=False)
        lv.setflags(write=False)
        object.__setattr__(self, "frequencies", f)
        object.__setattr__(self, "levels", lv)

    def at(self, frequencies) -> np.ndarray:
        """Thresholds (dB HL) at ``frequencies`` (Hz): linear in log-frequency, ends held."""
        q = np.asarray(frequencies, dtype=np.float64)
        return np.interp(np.log(q), np.log(self.frequencies), self.levels)

    @property
    def max_loss(self) -> float:
        return float(self.levels.max())

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Audiogram)
            and np.array_equal(self.frequencies, other.frequencies)
            and np.array_equal(self.levels, other.levels)
        )

    def __hash__(self) -> int:
        return hash((self.frequencies.tobytes(), self.levels.tobytes()))


def _numbers(values, what: str, unit: str) -> np.ndarray:
    """``values`` as a 1-D float64 array: a flat list of numbers (not strings, booleans or nested lists)."""
    try:
        a = np.asarray(values)
    except ValueError:  # ragged nesting
        a = np.asarray(values, dtype=object)
    if a.ndim != 1 or a.dtype.kind not in "iuf":
        shown = values if isinstance(values, (list, tuple)) else repr(values)
        raise AudiogramError(f"audiogram {what} {_short(shown)} are not a flat list of numbers; expected {unit} values")
    return a.astype(np.float64)


def _short(values, limit: int = 60) -> str:
    text = str(list(values) if isinstance(values, tuple) else values)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Listener:
    """A listener: the audiograms of the left and right ears."""

    left: Audiogram
    right: Audiogram
    name: str = ""

    @property
    def ears(self) -> tuple[Audiogram, Audiogram]:
        """``(left, right)``: channel 0 is the left ear, channel 1 the right."""
        return (self.left, self.right)

    def to_clarity(self) -> dict:
        """This listener as one entry of a Clarity ``listeners.json``."""
        if not np.array_equal(self.left.frequencies, self.right.frequencies):
            raise AudiogramError(f"listener {self.name!r}: ears use different frequencies; Clarity needs one list")
        return {
            "name": self.name,
            "audiogram_cfs": [_num(v) for v in self.left.frequencies],
            "audiogram_levels_l": [_num(v) for v in self.left.levels],
            "audiogram_levels_r": [_num(v) for v in self.right.levels],
        }


def _num(v: float):
    return int(v) if float(v).is_integer() else float(v)


def _preset(name: str, levels) -> Listener:
    a = Audiogram(CLARITY_CFS, levels)
    return Listener(a, a, name)


#: Built-in listeners (same audiogram both ears), dB HL at :data:`CLARITY_CFS`.
PRESETS: dict[str, Listener] = {
    "normal": _preset("normal", [0, 0, 0, 0, 0, 0, 0, 0]),
    "mild": _preset("mild", [30, 30, 30, 30, 30, 30, 30, 30]),
    "moderate": _preset("moderate", [25, 30, 35, 45, 50, 55, 60, 65]),
    "severe": _preset("severe", [50, 55, 65, 75, 80, 85, 90, 95]),
}


def load_listeners(path) -> dict[str, Listener]:
    """Read a Clarity ``listeners.json``; returns ``{listener id: Listener}``."""
    path = Path(path)
    text = read_text(path, "listeners file", AudiogramError)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise AudiogramError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}); expected a Clarity listeners.json") from None
    if not isinstance(data, dict) or not data:
        raise AudiogramError(f"{path}: expected a JSON object {{listener id: {{audiogram_cfs, ...}}}}")
    out = {}
    for key, entry in data.items():
        if not isinstance(entry, dict):
            raise AudiogramError(
                f"{path}: listener {key!r} is a {type(entry).__name__}; expected an object with audiogram_cfs, "
                "audiogram_levels_l, audiogram_levels_r"
            )
        try:
            cfs = entry["audiogram_cfs"]
            left = Audiogram(cfs, entry["audiogram_levels_l"])
            right = Audiogram(cfs, entry["audiogram_levels_r"])
        except (KeyError, TypeError) as e:
            raise AudiogramError(
                f"{path}: listener {key!r} lacks {e}; expected keys audiogram_cfs, audiogram_levels_l, audiogram_levels_r"
            ) from None
        except AudiogramError as e:
            raise AudiogramError(f"{path}: listener {key!r}: {e}") from None
        out[key] = Listener(left, right, str(entry.get("name", key)))
    return out


def save_listeners(listeners: dict[str, Listener], path) -> None:
    """Write listeners in the Clarity ``listeners.json`` format."""
    Path(path).write_text(json.dumps({k: v.to_clarity() for k, v in listeners.items()}, indent=2) + "\n")


def get_listener(name: str, listeners_file=None) -> Listener:
    """A listener by id from ``listeners_file``, or a built-in preset when no file is given."""
    if listeners_file is not None:
        listeners = load_listeners(listeners_file)
        if name not in listeners:
            some = ", ".join(sorted(listeners)[:5])
            raise AudiogramError(f"{listeners_file}: unknown listener {name!r}; it has {len(listeners)} (e.g. {some})")
        return listeners[name]
    if name not in PRESETS:
        raise AudiogramError(
            f"unknown listener {name!r}; expected a preset ({', '.join(PRESETS)}) or --listeners FILE with an id"
        )
    return PRESETS[name]


