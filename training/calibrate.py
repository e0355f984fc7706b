"""Output calibration: the level and polarity that SI-SDR training leaves free.

    python -m training.calibrate models/default.pt --data scenes --split train --max-scenes 200 --out calibrated.pt

SI-SDR is blind to the scale of the estimate, sign included, so a trained
model may come out quiet or inverted (``default.pt`` at 2,120 steps did both:
gain -0.39). The hearing aid after it is not blind: NAL-R and the compressor
act on the level, and HASQI compares the fine structure with the reference.
The least-squares gain ``g = <est, target> / <est, est>`` over a split (both
ears, every sample) maps the output onto the target; it is folded into the
decoder (:meth:`ConvTasNet.scale_output_`, exact), and the metadata records
``output_gain`` (the product of every gain folded in so far) and ``calibration``.
Training does the same on its validation split for every exported checkpoint.

``--dry-mix F`` also stores the fraction of input the hearing aid mixes back
by default with this model (``StreamingEnhancer(dry_mix=None)`` reads it);
choose it on training scenes (``rtha score --split train --dry-mix F``), not on
the split you report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from rtha.data import ClarityDataset, SceneSegments
from rtha.enhance import load_checkpoint, save_checkpoint
from rtha.errors import RthaError


class OutputGain:
    """Running least-squares gain from output to target; feed ``(est, target)`` pairs of equal shape."""

    def __init__(self) -> None:
        self.cross = 0.0  # <est, target>
        self.energy = 0.0  # <est, est>

    def add(self, est: torch.Tensor, target: torch.Tensor) -> None:
        est, target = est.detach().double(), target.detach().double()
        self.cross += float((est * target).sum())
        self.energy += float(est.pow(2).sum())

    @property
    def gain(self) -> float:
        """The gain (1.0 before any signal), negative when the output is inverted."""
        return self.cross / self.energy if self.energy > 0 else 1.0


@torch.no_grad()
def measure_gain(model, root, split: str = "train", target: str = "target", channel: int = 1,
                 max_scenes: int | None = None) -> tuple[float, int]:
    """The least-squares output gain of ``model`` over a split; returns ``(gain, scenes)``."""
    data = ClarityDataset(root, split)
    seg = SceneSegments(data, sample_rate=model.cfg.sample_rate, target=target, channel=channel, ears="both",
                        max_scenes=max_scenes)
    acc = OutputGain()
    model.eval()
    for i in range(len(seg)):
        mix, ref = seg[i]
        acc.add(model(mix[None])[:, 0], ref[None])
    return acc.gain, len({item[0] for item in seg.items})


def calibrate(model_path, out, root, split: str = "train", target: str = "target", max_scenes: int | None = None,
              force: bool = False, dry_mix: float | None = None) -> dict:
    """Fold the measured gain into a copy of ``model_path`` written to ``out``; returns what was done."""
    out = Path(out)
    if out.exists() and not force:
        raise RthaError(f"{out} exists; pass --force to overwrite it")
    if dry_mix is not None and not 0.0 <= dry_mix <= 1.0:
        raise RthaError(f"--dry-mix {dry_mix}: expected a fraction in 0...1")
    model, meta = load_checkpoint(model_path)
    gain, scenes = measure_gain(model, root, split, target, max_scenes=max_scenes)
    if gain == 0.0:
        raise RthaError(f"{model_path}: its output is uncorrelated with the target on {root}/{split}; cannot calibrate")
    model.scale_output_(gain)
    meta = dict(meta)
    meta["output_gain"] = float(meta.get("output_gain", 1.0)) * gain
    meta["calibration"] = {"root": str(root), "split": split, "target": target, "scenes": scenes, "gain": gain}
    if dry_mix is not None:
        meta["dry_mix"] = float(dry_mix)
    save_checkpoint(out, model, meta)
    return {"model": str(model_path), "out": str(out), "gain": gain, "scenes": scenes,
            "output_gain": meta["output_gain"], "dry_mix": meta.get("dry_mix")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, help="checkpoint to calibrate")
    p.add_argument("--out", type=Path, required=True, help="calibrated checkpoint to write (may equal MODEL with --force)")
    p.add_argument("--data", type=Path, default=Path("scenes"), help="Clarity-format root (default: scenes)")
    p.add_argument("--split", default="train", help="split to measure on (default: train; keep dev/test for scoring)")
    p.add_argument("--target", default="target", choices=("target", "target_anechoic"))
    p.add_argument("--max-scenes", type=int, help="only the first N scenes")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    p.add_argument("--dry-mix", type=float, metavar="F", help="also store this default dry mix (0...1) with the model")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        r = calibrate(args.model, args.out, args.data, args.split, args.target, args.max_scenes, args.force,
                      args.dry_mix)
    except RthaError as e:
        print(f"calibrate: error: {e}", file=sys.stderr)
        return 2
    print(f"{r['out']}: output gain {r['gain']:+.4f} folded in (measured on {r['scenes']} scenes); "
          f"total output_gain {r['output_gain']:+.4f}; dry_mix {r['dry_mix']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
