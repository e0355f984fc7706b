"""How far masking can go at all: SI-SDRi of oracle masks, which know the target.

    python -m training.oracle --data scenes --split dev --model models/default.pt [--json]

A mask-based enhancer can only be as good as the best mask on its own frames.
These oracles compute that mask from the target, so they bound what any model
of the kind can learn, whatever its size or training:

- ``stft_iam_<W>ms``: an STFT with a ``W`` ms sqrt-Hann window (hop ``W/2``), the
  ideal amplitude mask ``|S| / |X|`` clipped to 0...1 on the mixture's phase;
- ``stft_psm_<W>ms``: the phase-sensitive mask ``Re(S / X)`` clipped to 0...1,
  the best real mask in 0...1 per bin for the squared error;
- ``model_mask``: the model's own encoder and decoder with the mask a free
  parameter in 0...1 (a sigmoid of logits, starting from the model's mask),
  fitted per item by Adam to the SI-SDR: the best its 0...1 mask can do on its
  learnt frames. ``model`` is the model itself, on the same items.

A mask in 0...1 on a frame can only remove what does not overlap the target in
that frame, so the short windows a hearing aid's latency allows (a 4 ms window
for 2 ms latency) bound it well below long ones. Same scenes, same measure
(:func:`training.evaluate.measure_estimates`) as ``training.evaluate``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from rtha.data import ClarityDataset, SceneSegments
from rtha.enhance import load_checkpoint
from rtha.errors import RthaError

from .evaluate import measure, measure_estimates, run_command
from .losses import si_sdr


def stft_mask(window_ms: float, kind: str, sample_rate: int = 16000):
    """An ``enhance(mix (1, samples), target (1, samples)) -> (1, samples)`` that applies the
    oracle ``kind`` (``"iam"`` or ``"psm"``) mask on a ``window_ms`` STFT."""
    n_fft = int(round(window_ms * sample_rate / 1000))
    window = torch.hann_window(n_fft, periodic=True).sqrt()

    def spec(x):
        return torch.stft(x, n_fft, n_fft // 2, window=window, return_complex=True)

    def enhance(mix, ref):
        X, S = spec(mix), spec(ref)
        ratio = S / (X + 1e-12 * (X.abs() == 0))  # a silent bin gets mask 0
        mask = ratio.abs() if kind == "iam" else ratio.real
        est = torch.istft(X * mask.clamp(0.0, 1.0), n_fft, n_fft // 2, window=window, length=mix.shape[-1])
        return est

    return enhance


def model_mask(model, steps: int = 150, lr: float = 0.1):
    """An ``enhance`` that fits the model's mask (in 0...1, as logits) to the target by Adam on
    the SI-SDR, ``steps`` steps from the model's own mask; its encoder and decoder stay fixed."""
    model.eval()

    def enhance(mix, ref):
        with torch.no_grad():
            w, ctx = model.encode(mix)
            start = model.masks(w, ctx).clamp(1e-4, 1 - 1e-4)
        logits = torch.logit(start).requires_grad_(True)
        opt = torch.optim.Adam([logits], lr=lr)
        with torch.enable_grad():
            for _ in range(steps):
                opt.zero_grad()
                loss = -si_sdr(model.decode(w.unsqueeze(1) * torch.sigmoid(logits), mix.shape[-1])[:, 0], ref).sum()
                loss.backward()
                opt.step()
        with torch.no_grad():
            return model.decode(w.unsqueeze(1) * torch.sigmoid(logits), mix.shape[-1])[:, 0]

    return enhance


def oracles(root, split: str = "dev", model_path=None, windows_ms=(4, 8, 16, 32), max_scenes: int | None = None,
            steps: int = 150) -> dict:
    """``{name: training.evaluate.measure_estimates dict}`` for every oracle (and ``model``)."""
    seg = SceneSegments(ClarityDataset(root, split), sample_rate=16000, ears="both", max_scenes=max_scenes)
    results = {}
    for w in windows_ms:
        for kind in ("iam", "psm"):
            results[f"stft_{kind}_{w:g}ms"] = measure_estimates(stft_mask(w, kind), seg)
    if model_path is not None:
        model, _ = load_checkpoint(model_path)
        if model.cfg.sample_rate != 16000:
            raise RthaError(f"{model_path}: a {model.cfg.sample_rate} Hz model; the oracles run at 16000 Hz")
        results["model"] = measure(model, seg)
        results["model_mask"] = measure_estimates(model_mask(model, steps), seg)
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("scenes"), help="Clarity-format root (default: scenes)")
    p.add_argument("--split", default="dev", help="split (default: dev)")
    p.add_argument("--model", type=Path, help="also the model's own output and its best 0...1 mask (model_mask)")
    p.add_argument("--windows-ms", default="4,8,16,32", help="STFT windows in ms, comma-separated (default: 4,8,16,32)")
    p.add_argument("--steps", type=int, default=150, help="Adam steps per item for model_mask (default: 150)")
    p.add_argument("--max-scenes", type=int, help="only the first N scenes")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args(argv)

    def work():
        try:
            windows = tuple(float(w) for w in args.windows_ms.split(","))
        except ValueError:
            raise RthaError(f"--windows-ms {args.windows_ms!r}: expected comma-separated numbers of ms") from None
        if not all(2 <= w <= 128 for w in windows):
            raise RthaError(f"--windows-ms {args.windows_ms!r}: expected windows of 2...128 ms")
        if args.steps < 1:
            raise RthaError(f"--steps {args.steps}: expected a positive number of Adam steps")
        return oracles(args.data, args.split, args.model, windows, args.max_scenes, args.steps)

    return run_command("oracle", work, args, "oracles", lambda r: print_table(r, args))


def print_table(r: dict, args) -> None:
    """The oracles' SI-SDRi as a table."""
    from rich.console import Console
    from rich.table import Table

    first = next(iter(r.values()))
    t = Table(title=f"oracle masks on {args.data}/{args.split}: {first['scenes']} scenes, {first['segments']} ears "
                    f"(mixture SI-SDR {first['si_sdr_mix_db']:.2f} dB)")
    for col in ("oracle", "SI-SDRi dB", "noise only", "talker", "output gain"):
        t.add_column(col, justify="left" if col == "oracle" else "right")
    for name, m in r.items():
        t.add_row(name, *(f"{m[k]:+.2f}" if m[k] is not None else "" for k in
                          ("si_sdri_db", "si_sdri_noise_db", "si_sdri_talker_db")), f"{m['output_gain']:.2f}")
    Console().print(t)


if __name__ == "__main__":
    sys.exit(main())
