"""SI-SDR improvement of a checkpoint on a Clarity-format split (held-out speakers: ``test``).

    python -m training.evaluate models/default.pt --data scenes --split test [--json]

Every scene, both ears of ``{scene}_mix_CH1`` against ``{scene}_target_CH1`` (or
``target_anechoic``) at the model's rate; prints the mean SI-SDR of the mixture and of
the enhanced signal, their difference (SI-SDRi), and SI-SDRi by SNR band and by
whether a competing talker is among the interferers (a single-channel enhancer
has no cue that tells the target from another talker but the target's later onset).
HASPI/HASQI through the hearing-aid chain: ``rtha score DATA --split test --model M``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from rtha.data import ClarityDataset, SceneSegments, scene_groups, snr_band
from rtha.enhance import load_checkpoint
from rtha.errors import RthaError

from .calibrate import OutputGain
from .losses import si_sdr


def run_command(prog: str, work, args, key: str, table) -> int:
    """Run ``work()`` for a measuring command and report it; returns the exit code.

    A :class:`RthaError` is one line, ``{prog}: error: ...`` (2); with ``args.json``, prints
    ``{"split", "seconds", key: result}``; else ``table(result)`` prints it. One thread: these
    measures run beside training, where a thread pool only waits on its own threads.
    """
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    try:
        result = work()
    except RthaError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"split": args.split, "seconds": round(time.perf_counter() - t0, 1), key: result}))
    else:
        table(result)
    return 0


@torch.no_grad()
def measure(model, seg: SceneSegments, device=None, dry_mix: float = 0.0) -> dict:
    """SI-SDR of mixture and enhanced signal on every item of ``seg`` (mean over items).

    The enhanced signal is ``(1 - dry_mix) * model(mix) + dry_mix * mix``, as
    :class:`rtha.enhance.StreamingEnhancer` plays it. Returns :func:`measure_estimates`'s dict.
    """
    return measure_estimates(enhancer(model, dry_mix), seg, device)


def enhancer(model, dry_mix: float = 0.0):
    """``enhance(mix (1, samples), target) -> (1, samples)``: ``model``'s output with ``dry_mix`` of the input."""
    model.eval()

    def enhance(mix, ref):
        est = model(mix)[:, 0].float()
        return (1.0 - dry_mix) * est + dry_mix * mix if dry_mix else est

    return enhance


def ear_scores(enhance, seg: SceneSegments, device=None) -> tuple[list[tuple[str, float, float]], OutputGain]:
    """``[(scene, SI-SDR of the mixture, SI-SDR of the output)]`` in dB, an item (ear) of ``seg`` each,
    and the least-squares gain from output to target over them all; ``enhance`` as in :func:`measure_estimates`."""
    device = device or torch.device("cpu")
    rows = []
    gain = OutputGain()
    for i in range(len(seg)):
        mix, ref = (x.to(device)[None] for x in seg[i])
        est = enhance(mix, ref).detach()
        gain.add(est, ref)
        rows.append((seg.items[i][0], si_sdr(mix, ref).item(), si_sdr(est, ref).item()))
    return rows, gain


def measure_estimates(enhance, seg: SceneSegments, device=None) -> dict:
    """SI-SDR of mixture and ``enhance(mix (1, samples), target (1, samples)) -> (1, samples)``
    on every item of ``seg`` (mean over items); ``enhance`` may use the target (an oracle).

    Returns ``{"scenes", "segments", "si_sdr_mix_db", "si_sdr_enhanced_db", "si_sdri_db",
    "si_sdri_noise_db", "si_sdri_talker_db", "by_snr": {band: si_sdri}, "by_interferer": {kind: si_sdri},
    "output_gain"}``; ``si_sdri_noise_db`` is over scenes with noise and babble only,
    ``si_sdri_talker_db`` over scenes with a competing talker (``None`` where there are none);
    ``output_gain``: least-squares gain from output to target (1 for a level-true model).
    """
    meta = {s["scene"]: s for s in seg.data.scenes}
    rows, gain = ear_scores(enhance, seg, device)
    n = len(rows)
    by_snr: dict[float, list[float]] = {}  # lower edge of a 6 dB SNR band -> SI-SDRi values
    by_kind: dict[str, list[float]] = {}
    for scene, a, b in rows:
        snr = meta[scene].get("SNR")
        if snr is not None:
            by_snr.setdefault(math.floor(snr / 6) * 6, []).append(b - a)
        by_kind.setdefault(scene_groups(meta[scene])[0], []).append(b - a)

    def mean(v):
        return round(sum(v) / len(v), 3) if v else None

    return {
        "scenes": len({r[0] for r in rows}),
        "segments": n,
        "si_sdr_mix_db": mean([r[1] for r in rows]),
        "si_sdr_enhanced_db": mean([r[2] for r in rows]),
        "si_sdri_db": mean([r[2] - r[1] for r in rows]),
        "si_sdri_noise_db": mean(by_kind.get("noise and babble only", [])),
        "si_sdri_talker_db": mean(by_kind.get("with a competing talker", [])),
        "by_snr": {snr_band(lo): mean(v) for lo, v in sorted(by_snr.items())},
        "by_interferer": {k: mean(v) for k, v in sorted(by_kind.items())},
        "output_gain": round(gain.gain, 4),
    }


def evaluate(model_path, root, split: str = "test", target: str = "target", channel: int = 1,
             max_scenes: int | None = None, threads: int | None = None, dry_mix: float | None = None) -> dict:
    """SI-SDR of mixture and enhanced signal against the target on a split, both ears
    (:func:`measure` with ``dry_mix``, None: the model's stored one; plus ``model``, ``split``,
    ``model_steps`` and ``dry_mix``)."""
    if threads:
        torch.set_num_threads(threads)
    model, meta = load_checkpoint(model_path)
    seg = SceneSegments(ClarityDataset(root, split), sample_rate=model.cfg.sample_rate, target=target,
                        channel=channel, ears="both", max_scenes=max_scenes)
    from rtha.enhance.streaming import stored_dry_mix

    dry = stored_dry_mix(model_path, meta) if dry_mix is None else float(dry_mix)
    return {"model": str(model_path), "split": split, **measure(model, seg, dry_mix=dry), "model_steps": meta.get("steps"),
            "dry_mix": dry}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, help="checkpoint (e.g. models/default.pt or runs/default/best.pt)")
    p.add_argument("--data", type=Path, default=Path("scenes"), help="Clarity-format root (default: scenes)")
    p.add_argument("--split", default="test", help="split (default: test, the held-out speakers)")
    p.add_argument("--target", default="target", choices=("target", "target_anechoic"))
    p.add_argument("--max-scenes", type=int, help="only the first N scenes")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    p.add_argument("--dry-mix", type=float, help="fraction 0...1 of the input mixed back (default: the model's stored value, else 0)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args(argv)
    try:
        t0 = time.perf_counter()
        if args.dry_mix is not None and not 0.0 <= args.dry_mix <= 1.0:
            raise RthaError(f"--dry-mix {args.dry_mix}: expected a fraction in 0...1")
        r = evaluate(args.model, args.data, args.split, args.target, max_scenes=args.max_scenes,
                     threads=args.threads, dry_mix=args.dry_mix)
        r["seconds"] = round(time.perf_counter() - t0, 1)
    except RthaError as e:
        print(f"evaluate: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(r))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{r['model']} on {args.data}/{r['split']}: {r['scenes']} scenes, {r['segments']} ears")
    t.add_column("measure")
    t.add_column("dB", justify="right")
    for key in ("si_sdr_mix_db", "si_sdr_enhanced_db", "si_sdri_db"):
        t.add_row(key.replace("_db", "").replace("_", " "), f"{r[key]:.2f}")
    for band, v in r["by_snr"].items():
        t.add_row(f"si sdri, SNR {band}", f"{v:.2f}")
    for kind, v in r["by_interferer"].items():
        t.add_row(f"si sdri, {kind}", f"{v:.2f}")
    g = r["output_gain"]
    sign = "inverted" if g < 0 else "same sign"
    t.add_row(f"output gain to target ({sign}; 0 dB when calibrated)", f"{20 * math.log10(abs(g) or 1e-12):.2f}")
    Console().print(t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
