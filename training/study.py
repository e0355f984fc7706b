"""Time to quality: compare training runs by dev SI-SDRi reached per training CPU-hour.

    python -m training.study runs/study/* --plot models/study.png [--json] [--budget-min 10]
    python -m training.study models/state/default --plot models/training_curve.png --no-rtf
    python -m training.study models/state/lean_fresh models/state/lean_ctx_fresh --paired-loss [--window 800]

Each argument is a run folder (``log.csv``, ``config.toml``, and ``last.pt`` or,
as committed, only the resumable ``state.pt``) trained
with validations on a CPU-time grid (``[train] valid_every_cpu_s``, ``rtha train
--max-minutes M --cpu-clock``). For each run: dev SI-SDRi (all scenes, noise and
babble only, with a competing talker) at every validation against training
CPU-minutes; training throughput in audio seconds per CPU-second; the model's
cost (GMAC per audio second); and, from the same process side by side, the
streaming real-time factor at 4 ms blocks on one thread and the offline model's.
The plot has one panel per scene kind, one line per run.

``--paired-loss``: runs with the same seed, batch size, loss and ``[data]`` draw the
same batches at every step, so their logged training losses pair by step; each
run's loss minus the first run's, per ``--window`` steps, with a 95 % interval
over the logged steps (negative: it fits the same batches better). The
difference of learning speed shows long before validation can tell it.
"""

from __future__ import annotations

import argparse
import csv
import json
import pickle
import sys
import time
from pathlib import Path

import numpy as np

from rtha.errors import RthaError

from .config import load_config


def read_curve(run: Path) -> dict:
    """``{"cpu_min": [...], "si_sdri_db": [...], "noise": [...], "talker": [...], "audio_s_per_cpu_s"}``."""
    log = run / "log.csv"
    if not log.is_file():
        raise RthaError(f"{log} not found; expected a training run folder")
    with open(log, newline="") as fh:
        rows = list(csv.DictReader(fh))
    valid = [r for r in rows if r["phase"] == "valid" and r.get("train_cpu_s")]
    train = [r for r in rows if r["phase"] == "train" and r.get("train_cpu_s")]
    num = lambda v: float(v) if v not in ("", None) else float("nan")  # noqa: E731
    last = train[-1] if train else None
    return {
        "cpu_min": [num(r["train_cpu_s"]) / 60 for r in valid],
        "si_sdri_db": [num(r["si_sdri_db"]) for r in valid],
        "noise": [num(r["si_sdri_noise_db"]) for r in valid],
        "talker": [num(r["si_sdri_talker_db"]) for r in valid],
        "steps": int(last["step"]) if last else 0,
        "audio_h": num(last["audio_h"]) if last else 0.0,
        "audio_s_per_cpu_s": num(last["audio_h"]) * 3600 / num(last["train_cpu_s"]) if last else float("nan"),
    }


def read_losses(run: Path) -> dict[int, float]:
    """``{step: logged training loss}`` of a run folder's ``log.csv`` (the last row of a step wins)."""
    log = run / "log.csv"
    if not log.is_file():
        raise RthaError(f"{log} not found; expected a training run folder")
    with open(log, newline="") as fh:
        return {int(r["step"]): float(r["loss"]) for r in csv.DictReader(fh) if r["phase"] == "train" and r["loss"]}


def same_batches(base: Path, run: Path) -> None:
    """Raise :class:`RthaError` naming the first setting that gives ``run`` other batches than ``base``."""
    a, b = (load_config(r / "config.toml") for r in (base, run))
    for name, x, y in [("[train] seed", a.train.seed, b.train.seed),
                       ("[train] batch_size", a.train.batch_size, b.train.batch_size),
                       ("[train] loss", a.train.loss, b.train.loss),
                       *((f"[data] {k}", v, getattr(b.data, k)) for k, v in vars(a.data).items())]:
        if x != y:
            raise RthaError(f"{run}: {name} = {y!r}, {base}'s is {x!r}; training losses pair by step only "
                            "on the same batches and loss")


def paired_losses(runs: list[Path], window: int) -> list[dict]:
    """``[{"run", "base", "from_step", "to_step", "n", "mean", "ci95"}]``: each run's training loss minus
    ``runs[0]``'s at the steps both logged, per ``window`` steps (dB for the SNR losses)."""
    from rtha.score.summary import Estimate

    if window < 1:
        raise RthaError(f"--window {window}: expected a positive number of steps")
    if len(runs) < 2:
        raise RthaError("--paired-loss: expected a base run and at least one run to pair with it")
    for run in runs[1:]:
        same_batches(runs[0], run)
    base = read_losses(runs[0])
    out = []
    for run in runs[1:]:
        other = read_losses(run)
        bins: dict[int, list[float]] = {}
        for step in sorted(set(base) & set(other)):
            bins.setdefault((step - 1) // window, []).append(other[step] - base[step])
        for k, diffs in bins.items():
            e = Estimate.of(diffs).as_dict()
            out.append({"run": run.name, "base": runs[0].name, "from_step": k * window + 1,
                        "to_step": (k + 1) * window, **e})
    return out


def gmac_per_s(cfg) -> float:
    """Multiply-adds per second of audio (encoder, bottleneck, blocks, masks, decoder, context), in GMAC."""
    per_frame = (2 * cfg.N * cfg.L + 2 * cfg.N * cfg.B
                 + cfg.X * cfg.R * (3 * cfg.B * cfg.H + cfg.H * cfg.P)
                 + cfg.ctx_bins * (2 * cfg.ctx_window + cfg.B))
    return per_frame * cfg.sample_rate / cfg.hop / 1e9


def run_model(run: Path):
    """The run's latest model: ``last.pt``, else the weights in its resumable ``state.pt``."""
    import torch

    from rtha.enhance import ConvTasNet, load_checkpoint

    if (run / "last.pt").is_file() or not (run / "state.pt").is_file():
        return load_checkpoint(run / "last.pt")[0]
    model = ConvTasNet(load_config(run / "config.toml").model_config())
    try:
        model.load_state_dict(torch.load(run / "state.pt", map_location="cpu", weights_only=True)["model"])
    except RuntimeError as e:  # names and shapes that do not match the config
        raise RthaError(f"{run / 'state.pt'}: its weights do not fit {run / 'config.toml'} "
                        f"({str(e).splitlines()[-1].strip()[:160]})") from None
    except (KeyError, EOFError, ValueError, pickle.UnpicklingError):
        raise RthaError(f"{run / 'state.pt'}: not a training state written by rtha train") from None
    return model.eval()


def stream_rtf(model, seconds: float = 8.0, block_ms: float = 4.0) -> tuple[float, float]:
    """``(streaming RTF, offline RTF)`` of ``model`` on one thread, measured side by side (CPU time)."""
    import torch

    from rtha.enhance import StreamingEnhancer

    torch.set_num_threads(1)
    fs = model.cfg.sample_rate
    block = int(round(block_ms * fs / 1000))
    x = (0.05 * np.random.default_rng(0).standard_normal((1, int(seconds * fs)))).astype(np.float32)
    enh = StreamingEnhancer(model, threads=1, block_size=block)
    enh.process_block(x[:, :block])  # compile / warm up
    enh.reset()
    t0 = time.process_time()
    for i in range(0, x.shape[1] - block + 1, block):
        enh.process_block(x[:, i : i + block])
    stream = (time.process_time() - t0) / seconds
    with torch.no_grad():
        model(torch.from_numpy(x))
        t0 = time.process_time()
        model(torch.from_numpy(x))
        offline = (time.process_time() - t0) / seconds
    return stream, offline


def summarise(runs: list[Path], budget_min: float | None, rtf: bool) -> list[dict]:
    out = []
    for run in runs:
        c = read_curve(run)
        model = run_model(run)
        keep = [i for i, m in enumerate(c["cpu_min"]) if budget_min is None or m <= budget_min + 0.5]
        if not keep:
            raise RthaError(f"{run}: no validation within {budget_min} CPU-minutes")
        end = keep[-1]
        row = {
            "run": run.name, "preset_config": model.cfg.to_dict(), "gmac_per_s": round(gmac_per_s(model.cfg), 3),
            "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
            "latency_ms": round(1000 * (model.cfg.L - model.cfg.hop) / model.cfg.sample_rate, 2),
            "audio_s_per_cpu_s": round(c["audio_s_per_cpu_s"], 2),
            "cpu_min": round(c["cpu_min"][end], 1), "si_sdri_db": c["si_sdri_db"][end],
            "si_sdri_noise_db": c["noise"][end], "si_sdri_talker_db": c["talker"][end],
            "curve": {k: [c[k][i] for i in keep] for k in ("cpu_min", "si_sdri_db", "noise", "talker")},
        }
        if rtf:
            row["stream_rtf"], row["offline_rtf"] = (round(v, 4) for v in stream_rtf(model))
            row["stream_over_offline"] = round(row["stream_rtf"] / row["offline_rtf"], 2)
        out.append(row)
    return out


def plot(rows: list[dict], path: Path, title: str) -> None:
    try:
        import matplotlib
    except ImportError:
        raise RthaError("--plot needs matplotlib: pip install -e '.[plots]'") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
    # the default cycle has 10 colours; past that, runs would share one
    colours = plt.get_cmap("tab10" if len(rows) <= 10 else "tab20").colors
    for ax, key, name in zip(axes, ("si_sdri_db", "noise", "talker"),
                             ("all dev scenes", "noise and babble only", "with a competing talker")):
        for i, r in enumerate(rows):
            ax.plot(r["curve"]["cpu_min"], r["curve"][key], marker="o", ms=3, label=r["run"],
                    color=colours[i % len(colours)])
        ax.set_title(name)
        ax.set_xlabel("training CPU-minutes (one thread)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("dev SI-SDRi, dB")
    axes[0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", type=Path, nargs="+", help="training run folders")
    p.add_argument("--budget-min", type=float, help="compare at this many training CPU-minutes")
    p.add_argument("--plot", type=Path, help="write the curves to this PNG")
    p.add_argument("--title", default="Dev SI-SDRi against training CPU time")
    p.add_argument("--no-rtf", action="store_true", help="skip the streaming/offline timing")
    p.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    p.add_argument("--paired-loss", action="store_true",
                   help="training loss of each run minus the first's, paired by step (same batches)")
    p.add_argument("--window", type=int, default=800, help="steps per --paired-loss row (default: 800)")
    args = p.parse_args(argv)
    try:
        if args.paired_loss:
            rows, table = paired_losses(args.runs, args.window), paired_loss_table
        else:
            rows, table = summarise(args.runs, args.budget_min, not args.no_rtf), curve_table
            if args.plot:
                plot(rows, args.plot, args.title)
    except RthaError as e:
        print(f"study: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows))
    else:
        table(rows, args)
    return 0


def curve_table(rows: list[dict], args) -> None:
    """A Markdown row per run: cost, throughput and dev SI-SDRi at the budget (and the timings)."""
    cols = ["run", "gmac_per_s", "params_m", "latency_ms", "audio_s_per_cpu_s", "cpu_min", "si_sdri_db",
            "si_sdri_noise_db", "si_sdri_talker_db"] + (["stream_rtf", "offline_rtf", "stream_over_offline"]
                                                          if not args.no_rtf else [])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")


def paired_loss_table(rows: list[dict], args) -> None:
    """``--paired-loss``: a Markdown row per run and window of steps."""
    print(f"| run | steps | logged steps | training loss minus {args.runs[0].name}'s (95 % CI) |")
    print("|---|---|---|---|")
    for r in rows:
        ci = f" ({r['ci95'][0]:+.3f} … {r['ci95'][1]:+.3f})" if r["ci95"] else ""
        print(f"| {r['run']} | {r['from_step']}–{r['to_step']} | {r['n']} | {r['mean']:+.3f}{ci} |")

if __name__ == "__main__":
    sys.exit(main())
