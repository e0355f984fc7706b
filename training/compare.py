"""Enhancers paired by scene: each one's SI-SDRi against the first's, with 95 % confidence intervals.

    python -m training.compare BASE MODEL... --data scenes --split dev [--json]

Two checkpoints a tenth of a dB apart on a split's mean may differ by chance;
paired by scene, the same scenes' differences say whether the gap is real.
Each model's own output (no dry mix unless ``--dry-mix``) is scored on both
ears of every scene as :mod:`training.evaluate` does. A scene's SI-SDRi is the
mean over its ears; the difference ``MODEL - BASE`` is taken per scene, so
the interval (two-sided t) treats scenes as the independent samples. It is
given over all scenes, over scenes with noise and babble only, and over
scenes with a competing talker.

A model is any of:

- a checkpoint (``models/default.pt``, a run's ``best.pt`` or ``last.pt``);
- a run's resumable ``state.pt``, read with the ``config.toml`` beside it;
- either as committed in git, ``REV:PATH`` with ``PATH`` from the repository's root (e.g.
  ``5582b44:models/state/default/state.pt``, the run at step 4,280), so a run's history
  compares at equal steps.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from rtha.data import ClarityDataset, SceneSegments, scene_groups
from rtha.enhance import ConvTasNet, load_checkpoint
from rtha.errors import RthaError
from rtha.score.summary import Estimate

from .config import load_config
from .evaluate import ear_scores, enhancer, run_command

GROUPS = ("all", "noise and babble only", "with a competing talker")
SHORT = {"all": "all", "noise and babble only": "noise", "with a competing talker": "talker"}


def _git_blob(spec: str, rev: str, path: str, dest: Path) -> Path:
    """``git show REV:PATH`` written to ``dest``."""
    done = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True)
    if done.returncode:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise RthaError(f"{spec}: not in git ({reason[-1] if reason else 'git show failed'})")
    dest.write_bytes(done.stdout)
    return dest


def _run_state(path: Path, config: Path, spec: str) -> tuple[ConvTasNet, int]:
    """The model of a run's ``state.pt`` built from the run's ``config``; returns it and its step."""
    if not config.is_file():
        raise RthaError(f"{spec}: a run's state needs the run's config.toml beside it")
    model = ConvTasNet(load_config(config).model_config())
    try:
        s = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(s["model"])
        return model, int(s["global_step"])
    except (RuntimeError, KeyError, EOFError, ValueError, OSError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
        raise RthaError(f"{spec}: not a run's state of the model in {config} ({first})") from None


def load_model(spec: str) -> tuple[ConvTasNet, int | None]:
    """``(model, training step or None)`` for a checkpoint, a run's ``state.pt`` or ``REV:PATH`` of either."""
    path = Path(spec)
    with tempfile.TemporaryDirectory() as tmp:
        if not path.exists() and ":" in spec:
            rev, inside = spec.split(":", 1)
            path = _git_blob(spec, rev, inside, Path(tmp) / Path(inside).name)
            if path.name == "state.pt":
                config = Path(tmp) / "config.toml"
                try:  # a commit without the run's config: _run_state names what is missing
                    _git_blob(spec, rev, f"{Path(inside).parent.as_posix()}/config.toml", config)
                except RthaError:
                    pass
                return _run_state(path, config, spec)
        elif path.name == "state.pt":
            return _run_state(path, path.parent / "config.toml", spec)
        model, meta = load_checkpoint(path)
        return model, meta.get("steps")


@torch.no_grad()
def scene_si_sdri(model: ConvTasNet, seg: SceneSegments, dry_mix: float) -> tuple[dict[str, float], float]:
    """``{scene: SI-SDRi in dB, the mean over its ears}`` and the output gain to the target."""
    rows, gain = ear_scores(enhancer(model, dry_mix), seg)
    ears: dict[str, list[float]] = {}
    for scene, mix_db, out_db in rows:
        ears.setdefault(scene, []).append(out_db - mix_db)
    return {scene: sum(v) / len(v) for scene, v in ears.items()}, gain.gain


def compare(specs: list[str], root, split: str = "dev", dry_mix: float = 0.0, max_scenes: int | None = None) -> dict:
    """``{"base", "scenes", "models": [{"model", "steps", "output_gain", "si_sdri_db": {group: mean},
    "difference_db": {group: {"n", "mean", "ci95"}}}]}``; groups: :data:`GROUPS`; the base's
    differences are zero. Every model is loaded before any is scored."""
    if len(specs) < 2:
        raise RthaError("expected a base model and at least one model to compare with it")
    if not 0.0 <= dry_mix <= 1.0:
        raise RthaError(f"--dry-mix {dry_mix}: expected a fraction in 0...1")
    if max_scenes is not None and max_scenes < 1:
        raise RthaError(f"--max-scenes {max_scenes}: expected a positive number of scenes")
    models = [(spec, *load_model(spec)) for spec in specs]
    for spec, model, _ in models:
        if model.cfg.sample_rate != models[0][1].cfg.sample_rate:
            raise RthaError(f"{spec}: a {model.cfg.sample_rate} Hz model; the base is "
                            f"{models[0][1].cfg.sample_rate} Hz")
    data = ClarityDataset(root, split)
    seg = SceneSegments(data, sample_rate=models[0][1].cfg.sample_rate, ears="both", max_scenes=max_scenes)
    group_of = {s["scene"]: scene_groups(s)[0] for s in data.scenes}
    scored = [(spec, steps, *scene_si_sdri(model, seg, dry_mix)) for spec, model, steps in models]
    base = scored[0][2]

    def in_group(group):
        return [s for s in base if group == "all" or group_of[s] == group]

    out = []
    for spec, steps, scores, gain in scored:
        out.append({
            "model": spec, "steps": steps, "output_gain": round(gain, 4),
            "si_sdri_db": {g: round(Estimate.of([scores[s] for s in in_group(g)]).mean, 3) for g in GROUPS
                           if in_group(g)},
            "difference_db": {g: Estimate.of([scores[s] - base[s] for s in in_group(g)]).as_dict() for g in GROUPS
                              if in_group(g)},
        })
    return {"base": specs[0], "scenes": len(base), "dry_mix": dry_mix, "models": out}


def print_table(r: dict, args) -> None:
    """Rows per model and scene group: SI-SDRi and its difference to the base."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"SI-SDRi on {args.data}/{args.split} ({r['scenes']} scenes), paired by scene "
                    f"against {r['base']}")
    t.add_column("model", overflow="fold")
    t.add_column("steps", justify="right")
    t.add_column("gain", justify="right")
    t.add_column("scenes")
    t.add_column("n", justify="right")
    t.add_column("SI-SDRi dB", justify="right")
    t.add_column("difference dB, 95 % CI", justify="right")
    for i, m in enumerate(r["models"]):
        for j, (group, d) in enumerate(m["difference_db"].items()):
            first = j == 0
            diff = "base" if i == 0 else f"{d['mean']:+.3f}"
            if i and d["ci95"] is not None:
                diff += f" ± {(d['ci95'][1] - d['ci95'][0]) / 2:.3f}"
            t.add_row(m["model"] if first else "", str(m["steps"]) if first and m["steps"] is not None else "",
                      f"{m['output_gain']:.3f}" if first else "", SHORT[group], str(d["n"]),
                      f"{m['si_sdri_db'][group]:+.2f}", diff, end_section=j == len(m["difference_db"]) - 1)
    Console().print(t)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="the base, then the models to pair with it (files or REV:PATH)")
    p.add_argument("--data", type=Path, default=Path("scenes"), help="Clarity-format root (default: scenes)")
    p.add_argument("--split", default="dev", help="split (default: dev)")
    p.add_argument("--dry-mix", type=float, default=0.0, help="fraction 0...1 of the input mixed back (default: 0)")
    p.add_argument("--max-scenes", type=int, help="only the first N scenes")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args(argv)
    return run_command("compare", lambda: compare(args.models, args.data, args.split, args.dry_mix, args.max_scenes),
                       args, "comparison", lambda r: print_table(r, args))


if __name__ == "__main__":
    sys.exit(main())
