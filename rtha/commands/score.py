"""``rtha score``: score hearing-aid systems over a Clarity-format dataset with HASPI v2 / HASQI v2."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_dry_mix_arg, dry_mix_from_args

DESCRIPTION = """\
Score hearing-aid systems over every (scene, listener) pair of a Clarity-format split the
way the Clarity ICASSP 2023 evaluation does: the stereo mix_CH1 through the chain offline,
reference = target_anechoic_CH1 scaled per channel to the RMS of target_CH1, HASPI v2 and
HASQI v2 better ear at 100 dB SPL for RMS 1 (metric noise seeded from the scene name),
combined = (HASPI + HASQI) / 2. Systems: enhanced (enhancer -> NAL-R -> compressor -> tanh),
unprocessed (NAL-R -> compressor -> tanh, the challenge baseline), external (--enhanced-dir
files through the same amplification).

An existing --out is resumed: its rows are kept and only missing pairs are scored (rows are
appended and flushed one by one); --force starts it afresh. Shards: run `--shard i/N` for
i = 1..N, then `rtha score --merge shard*.csv --out all.csv`.
Two models or settings, paired on the pairs both scored: `rtha score --compare new.csv old.csv`
(system enhanced in each; --system NEW[,BASE] picks others; --report writes the numbers as JSON);
with ROOT (and --split) also by scene kind (noise and babble only / competing talker) and SNR band.
Challenge-comparable amplification: --systems unprocessed --rate 44100 --nfir 220 --linear-phase."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "score",
        help="score systems over a Clarity-format dataset (HASPI/HASQI better ear)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("root", nargs="?", type=Path, metavar="ROOT", help="dataset root (holds metadata/ and SPLIT/scenes/)")
    p.add_argument("--split", default="dev", help="split to score (default: dev)")
    p.add_argument("--out", type=Path, metavar="CSV", help="scores CSV (resumed when it exists); required unless --compare")
    p.add_argument("--force", action="store_true", help="start --out afresh; overwrite --report and --plots files")

    g = p.add_argument_group("systems")
    g.add_argument(
        "--systems",
        help="comma-separated: enhanced, unprocessed, external "
        "(default: enhanced,unprocessed; external,unprocessed with --enhanced-dir)",
    )
    g.add_argument("--model", type=Path, metavar="FILE", help="enhancer checkpoint (default: the shipped models/default.pt)")
    add_dry_mix_arg(g)
    g.add_argument(
        "--enhanced-dir", type=Path, metavar="DIR", help="score external {scene}_{listener}_enhanced.wav files (system external)"
    )

    g = p.add_argument_group("amplification (defaults: rtha's streaming chain)")
    g.add_argument("--rate", type=int, metavar="HZ", help="chain and metric rate (default: the model's rate)")
    g.add_argument("--nfir", type=int, metavar="N", help="NAL-R filter order (default: 5 ms each side, 220 at 44.1 kHz)")
    g.add_argument("--linear-phase", action="store_true", help="linear-phase NAL-R as pyclarity (default: minimum phase)")

    g = p.add_argument_group("scale")
    g.add_argument("--jobs", type=int, default=1, metavar="N", help="worker processes, one thread each (default: 1)")
    g.add_argument("--shard", metavar="i/N", help="score only shard i of N (numbered from 1)")
    g.add_argument("--limit", type=int, metavar="N", help="score only the first N pairs (after --shard)")
    g.add_argument("--merge", nargs="+", type=Path, metavar="CSV", help="merge shard CSVs into --out instead of scoring")

    g = p.add_argument_group("compare two scores files (no scoring)")
    g.add_argument("--compare", nargs=2, type=Path, metavar=("NEW", "BASE"),
                   help="paired differences NEW - BASE of one system over the pairs both CSVs scored")
    g.add_argument("--system", default="enhanced", metavar="NEW[,BASE]",
                   help="the system compared in NEW, and in BASE if it differs (default: enhanced)")

    g = p.add_argument_group("reports")
    g.add_argument("--report", type=Path, metavar="JSON", help="write means, CIs and the chain configuration")
    g.add_argument("--plots", type=Path, metavar="DIR", help="write scatter and distribution plots (needs matplotlib)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ..errors import RthaError
    from ..score.plots import require_matplotlib, write_plots
    from ..score.report import build_report, write_report
    from ..score.summary import summary_table
    from .common import check_writable, output_path

    if args.compare:
        return _compare(args)
    if args.out is None:
        raise RthaError("--out CSV is required (where the scores go), unless you --compare two scores files")
    if args.plots is not None:
        require_matplotlib()
    if args.report is not None:
        output_path(args.report, args.force, "--report")
    if not args.merge:
        check_writable(args.out, "--out")  # resumed when it exists, so only where it goes is checked here
    console = Console()

    if args.merge:
        rows, context = _merge(args)
        title = f"merged {len(args.merge)} file(s)"
    else:
        if args.root is None:
            raise RthaError("ROOT (the dataset folder) is required, unless you --merge shard CSVs")
        rows, context = _score(args, console)
        title = f"{args.split} split"

    console.print(summary_table(rows, title=title))
    if args.report is not None:
        write_report(build_report(rows, args.out, **context), args.report)
        console.print(f"report: {args.report}")
    if args.plots is not None:
        for path in write_plots(rows, args.plots, force=args.force):
            console.print(f"plot: {path}")
    return 0


def _compare(args) -> int:
    from rich.console import Console

    from ..errors import RthaError
    from ..score.report import write_report
    from ..score.results import read_scores
    from ..score.summary import comparison_dict, comparison_table
    from .common import output_path

    for flag in ("out", "merge", "shard", "limit", "enhanced_dir", "systems", "rate", "nfir", "model", "dry_mix",
                 "plots"):
        if getattr(args, flag) is not None:
            raise RthaError(f"--compare reads two scores CSVs; it takes no --{flag.replace('_', '-')}")
    if args.report is not None:
        output_path(args.report, args.force, "--report")
    names = [s.strip() for s in args.system.split(",")]
    if len(names) > 2 or not all(names):
        raise RthaError(f"--system {args.system}: expected NEW or NEW,BASE (system names, e.g. enhanced,unprocessed)")
    systems = (names[0], names[-1])
    new, base = (read_scores(path)[0] for path in args.compare)
    for path, rows, system in zip(args.compare, (new, base), systems):
        present = sorted({r.system for r in rows})
        if system not in present:
            raise RthaError(f"{path}: no rows of system {system!r} (it has: {', '.join(present) or 'no rows'})")
    groups = None if args.root is None else _scene_groups(args.root, args.split, args.compare, (new, base))
    result = comparison_dict(new, base, systems, groups)
    if result["pairs"] < 2:
        raise RthaError(f"{args.compare[0]} and {args.compare[1]} share {result['pairs']} (scene, listener) pair(s) "
                        f"of {systems[0]!r} and {systems[1]!r}; expected 2 or more to compare")
    Console().print(comparison_table(new, base, systems, tuple(str(p) for p in args.compare), groups))
    if args.report is not None:
        write_report({"new": str(args.compare[0]), "base": str(args.compare[1]), **result}, args.report)
        Console().print(f"report: {args.report}")
    return 0


def _merge(args):
    from ..score.results import merge_scores, write_scores
    from .common import output_path

    for flag in ("root", "shard", "limit", "enhanced_dir", "systems", "rate", "nfir", "model"):
        if getattr(args, flag) is not None:
            from ..errors import RthaError

            raise RthaError(f"--merge combines CSVs; it takes no {'ROOT' if flag == 'root' else '--' + flag.replace('_', '-')}")
    out = output_path(args.out, args.force)
    rows = merge_scores(args.merge)
    write_scores(out, rows)
    return rows, {"merged_from": [str(p) for p in args.merge]}


def _score(args, console):
    from ..data.clarity import ClarityDataset
    from ..enhance import default_model_path
    from ..errors import RthaError
    from ..score.config import (
        ScoreSettings, config_hash, model_info, parse_systems, system_configurations, uses_enhancer, uses_external,
    )
    from ..score.pairs import parse_shard
    from ..score.run import score_split

    if args.systems:
        systems = parse_systems(args.systems)
    else:
        systems = ("external", "unprocessed") if args.enhanced_dir else ("enhanced", "unprocessed")
    enhancer = uses_enhancer(systems)
    if uses_external(systems) and args.enhanced_dir is None:
        raise RthaError("system 'external' needs --enhanced-dir DIR with {scene}_{listener}_enhanced.wav files")
    if args.enhanced_dir is not None:
        if not uses_external(systems):
            raise RthaError("--enhanced-dir is scored as system 'external'; add it to --systems")
        if not args.enhanced_dir.is_dir():
            raise RthaError(f"--enhanced-dir {args.enhanced_dir}: folder not found")
    if args.jobs < 1:
        raise RthaError(f"--jobs {args.jobs}: expected 1 or more worker processes")
    if args.rate is not None and args.rate < 1000:
        raise RthaError(f"--rate {args.rate}: expected a sample rate in Hz (e.g. 16000 or 44100)")
    if args.nfir is not None and args.nfir < 2:
        raise RthaError(f"--nfir {args.nfir}: expected a filter order of 2 or more")
    if args.limit is not None and args.limit < 1:
        raise RthaError(f"--limit {args.limit}: expected 1 or more pairs")
    shard = parse_shard(args.shard) if args.shard else None
    if args.root.exists() and not args.root.is_dir():
        raise RthaError(f"ROOT {args.root} is a file; expected the dataset folder (holding metadata/ and SPLIT/scenes/)")
    dataset = ClarityDataset(args.root, args.split)  # a missing root or split fails here, before the model loads

    model = None
    if enhancer:
        model = model_info(args.model or default_model_path())
    elif args.rate is None:
        try:  # the chain runs at the model's rate even when no system uses the model
            model = model_info(args.model or default_model_path())
        except RthaError as e:
            raise RthaError(f"{e}; or pass --rate HZ to choose the chain rate without a model") from None
    settings = ScoreSettings(
        root=str(args.root),
        split=args.split,
        systems=systems,
        rate=args.rate or model["sample_rate"],
        nfir=args.nfir,
        nalr_phase="linear" if args.linear_phase else "minimum",
        model_path=model["path"] if enhancer else None,
        dry_mix=dry_mix_from_args(args, model["metadata"], model["path"]) if enhancer else None,
        enhanced_dir=str(args.enhanced_dir) if args.enhanced_dir else None,
    )
    configurations = system_configurations(settings, model)
    configs = {s: config_hash(c) for s, c in configurations.items()}
    result = score_split(
        settings, configs, args.out, dataset, jobs=args.jobs, shard=shard, limit=args.limit,
        force=args.force, progress=not args.no_progress,
    )
    per_min = 60 * result.pairs_scored / result.seconds if result.pairs_scored else 0.0
    console.print(
        f"{result.pairs_scored} of {result.pairs_total} pairs scored in {result.seconds:.1f} s "
        f"({per_min:.1f} pairs/min, {args.jobs} job(s)); {len(result.rows)} rows in {args.out}"
    )
    context = {
        "dataset": {"root": settings.root, "split": settings.split, "shard": args.shard, "pairs": result.pairs_total},
        "run": {"pairs_scored": result.pairs_scored, "seconds": result.seconds, "jobs": args.jobs},
        "chain": configurations,
        "model_metadata": model["metadata"] if enhancer else None,
    }
    return result.rows, context


def _scene_groups(root, split, paths, files) -> dict[str, tuple[str, ...]]:
    """``{scene: group labels}`` from the split's metadata, for every scene the scores files hold."""
    from ..data.clarity import ClarityDataset, scene_groups
    from ..errors import RthaError

    meta = {s["scene"]: s for s in ClarityDataset(root, split).scenes}
    for path, rows in zip(paths, files):
        missing = sorted({r.scene for r in rows} - meta.keys())
        if missing:
            raise RthaError(f"{path}: scene {missing[0]} is not in {root}'s {split!r} split "
                            f"({len(missing)} scene(s) missing); expected the split the file scored (--split)")
    return {name: scene_groups(s) for name, s in meta.items()}
