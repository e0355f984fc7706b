"""Where an enhancer's error goes: its output split into target, noise and artefacts, by input SNR.

    python -m training.decompose models/default.pt --data scenes --split dev [--oracle] [--json]

Each ear's output ``y`` is fitted by least squares as ``a·s + b·n + r``, with
``s`` the target and ``n = mix - s`` the interference at that ear:

- ``target_gain`` ``a``: how much of the target is kept (1: all of it);
- ``noise_gain`` ``b``: how much of the interference is kept (1: all of it;
  ``-20 log10 b`` dB of noise reduction);
- ``snr_out_db``: ``a·s`` against ``b·n``, the interference left;
- ``sar_db``: ``a·s`` against ``r``, the artefacts (what is neither target nor
  interference: distortion the enhancer made);
- ``si_sdri_db``: as :mod:`training.evaluate` measures it.

Each is the mean over ears, in 6 dB bands of the ear's input SNR (``s`` against
``n``) and over all ears. A model whose SI-SDRi is flat across bands, with
``b`` far above the oracle's at low SNR, removes too little noise where there is
most to remove; a low ``sar_db`` says its masks distort the target instead.
``--oracle`` adds the phase-sensitive oracle mask on a 4 ms STFT
(:func:`training.oracle.stft_mask`), which knows the target, on the same ears.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from rtha.data import ClarityDataset, SceneSegments, snr_band
from rtha.enhance import load_checkpoint
from rtha.errors import RthaError

from .losses import si_sdr
from .evaluate import run_command
from .oracle import stft_mask

MEASURES = ("target_gain", "noise_gain", "snr_out_db", "sar_db", "si_sdri_db")


def _db(num: torch.Tensor, den: torch.Tensor) -> float:
    return 10 * math.log10(max(float(num), 1e-20) / max(float(den), 1e-20))


def split_output(y: torch.Tensor, s: torch.Tensor, n: torch.Tensor) -> tuple[float, float, torch.Tensor]:
    """Least-squares ``y = a·s + b·n + r`` of 1-D signals; returns ``(a, b, r)`` (float64)."""
    A = torch.stack([s, n], 1).double()
    coef = torch.linalg.lstsq(A, y.double()[:, None]).solution[:, 0]
    return float(coef[0]), float(coef[1]), y.double() - A @ coef


def ear_measures(y: torch.Tensor, mix: torch.Tensor, s: torch.Tensor) -> dict:
    """:data:`MEASURES` of one ear's output ``y (samples,)`` for mixture ``mix`` and target ``s``."""
    n = mix - s
    a, b, r = split_output(y, s, n)
    kept = (a * s.double()).pow(2).sum()
    return {"target_gain": a, "noise_gain": b, "snr_out_db": _db(kept, (b * n.double()).pow(2).sum()),
            "sar_db": _db(kept, r.pow(2).sum()),
            "si_sdri_db": float(si_sdr(y[None], s[None]) - si_sdr(mix[None], s[None]))}


def decompose(enhance, seg: SceneSegments) -> dict:
    """``{"bands": {band: {"ears", *MEASURES}}, "all": {...}}`` for ``enhance(mix (1, samples), target (1, samples))``
    ``-> (1, samples)`` over every item of ``seg``; bands are 6 dB bands of the input SNR, low to high."""
    rows = []
    with torch.no_grad():
        for i in range(len(seg)):
            mix, ref = (x[None] for x in seg[i])
            y = enhance(mix, ref)[0].float()
            snr_in = _db(ref.double().pow(2).sum(), (mix - ref).double().pow(2).sum())
            rows.append((snr_in, ear_measures(y, mix[0], ref[0])))

    def mean(group):
        return {"ears": len(group), **{k: round(sum(m[k] for m in group) / len(group), 3) for k in MEASURES}}

    bands: dict[float, list] = {}
    for snr_in, m in rows:
        bands.setdefault(math.floor(snr_in / 6), []).append(m)
    return {"bands": {snr_band(6 * lo): mean(g) for lo, g in sorted(bands.items())}, "all": mean([m for _, m in rows])}


def run(model_paths, root, split: str = "dev", oracle: bool = False, max_scenes: int | None = None) -> dict:
    """``{name: decompose dict}`` for each model (its own output, no dry mix) and, with ``oracle``, ``stft_psm_4ms``."""
    models = []
    for path in model_paths:  # every file is checked before any work
        model, _ = load_checkpoint(path)
        if model.cfg.sample_rate != 16000:
            raise RthaError(f"{path}: a {model.cfg.sample_rate} Hz model; expected 16000 Hz")
        models.append((str(path), model.eval()))
    seg = SceneSegments(ClarityDataset(root, split), sample_rate=16000, ears="both", max_scenes=max_scenes)
    out = {name: decompose(lambda mix, ref, m=m: m(mix)[:, 0], seg) for name, m in models}
    if oracle:
        out["stft_psm_4ms"] = decompose(stft_mask(4, "psm"), seg)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", type=Path, nargs="+", help="checkpoints (e.g. models/default.pt)")
    p.add_argument("--data", type=Path, default=Path("scenes"), help="Clarity-format root (default: scenes)")
    p.add_argument("--split", default="dev", help="split (default: dev)")
    p.add_argument("--oracle", action="store_true", help="also the phase-sensitive oracle mask on a 4 ms STFT")
    p.add_argument("--max-scenes", type=int, help="only the first N scenes")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args(argv)
    return run_command("decompose", lambda: run(args.models, args.data, args.split, args.oracle, args.max_scenes),
                       args, "results", lambda r: print_table(r, args))


def print_table(r: dict, args) -> None:
    """The decomposition as a table, a row per system and band."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"output = a·target + b·noise + artefacts, {args.data}/{args.split}")
    for col in ("system", "input SNR", "ears", "a (target kept)", "b (noise kept)", "SNR out dB", "SAR dB",
                "SI-SDRi dB"):
        t.add_column(col, justify="left" if col in ("system", "input SNR") else "right")
    for name, d in r.items():
        for band, m in [*d["bands"].items(), ("all", d["all"])]:
            t.add_row(name, band, str(m["ears"]), f"{m['target_gain']:.2f}", f"{m['noise_gain']:.2f}",
                      f"{m['snr_out_db']:+.1f}", f"{m['sar_db']:+.1f}", f"{m['si_sdri_db']:+.2f}")
    Console().print(t)


if __name__ == "__main__":
    sys.exit(main())
