"""Generate Clarity-format training scenes from a folder of real recordings (no downloads).

    python tools/make_scenes.py --corpus ../shared/data/corpus --out scenes --num-scenes 2000 --seed 1 --workers 2

Writes ``OUT/{train,dev,test}/scenes/SXXXXX_{mix,target,target_anechoic,interferer}_CH1.wav``
(stereo) and ``OUT/metadata/{scenes,scenes_listeners}.{split}.json``, ``listeners.json`` and
``generation.json`` (settings and the licences of the sources used). See
:mod:`rtha.data.scenes` for the recipe.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rtha.data.scenes import INTERFERER_TYPES, SPLITS, SceneConfig, generate, scene_counts  # noqa: E402
from rtha.errors import RthaError  # noqa: E402


def _pair(kind):
    def parse(text: str):
        parts = text.replace(":", ",").split(",")
        if len(parts) != 2:
            raise argparse.ArgumentTypeError(f"{text!r}: expected LOW,HIGH")
        return tuple(kind(p) for p in parts)

    return parse


def build_parser() -> argparse.ArgumentParser:
    d = SceneConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, required=True, help="folder with manifest.csv, or speech/<speaker>/*.wav, noise/*.wav, rir/*.wav")
    p.add_argument("--out", type=Path, required=True, help="output folder (Clarity layout)")
    p.add_argument("--num-scenes", type=int, required=True, help="scenes in all splits together")
    p.add_argument("--seed", type=int, required=True, help="the same seed and settings give the same scenes")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default: 1)")
    p.add_argument("--fs", type=int, default=d.fs, help=f"sample rate, Hz (default: {d.fs}; real Clarity data is 44100)")
    p.add_argument("--duration", type=float, default=d.duration_s, help=f"scene length, s (default: {d.duration_s:g})")
    p.add_argument("--target-lead", type=float, default=d.target_lead_s,
                   help=f"target onset after the interferers, s (default: {d.target_lead_s:g}; Clarity: 2)")
    p.add_argument("--target-tail", type=float, default=d.target_tail_s,
                   help=f"interferers go on after the target ends, s (default: {d.target_tail_s:g}; Clarity: 1)")
    p.add_argument("--snr", type=_pair(float), default=d.snr_db, metavar="LOW,HIGH",
                   help="SNR range, dB, over the target's active part, both ears (default: -6,12)")
    p.add_argument("--interferers", type=_pair(int), default=d.num_interferers, metavar="MIN,MAX",
                   help="interferers per scene (default: 1,3)")
    p.add_argument("--interferer-types", default=",".join(d.interferer_types),
                   help=f"comma-separated subset of {','.join(INTERFERER_TYPES)} (default: all)")
    p.add_argument("--rirs", choices=("corpus", "none"), default=d.rirs,
                   help="corpus: real room impulse responses; none: dry sources with random ITD/ILD (default: corpus)")
    p.add_argument("--dry-fraction", type=float, default=d.dry_fraction,
                   help=f"share of dry scenes when --rirs corpus (default: {d.dry_fraction:g})")
    p.add_argument("--split", type=str, default=",".join(f"{f:g}" for f in d.split_fractions), metavar="TRAIN,DEV,TEST",
                   help="fractions of speakers and scenes per split (default: 0.8,0.1,0.1)")
    p.add_argument("--listeners", type=int, default=d.num_listeners, help=f"listeners in listeners.json (default: {d.num_listeners})")
    p.add_argument("--subtype", default=d.subtype, help="WAV sample format: PCM_16 (default) or FLOAT")
    p.add_argument("--exclude-licence", action="append", default=[], metavar="TEXT",
                   help="leave out sources whose manifest licence contains TEXT (repeatable), e.g. BY-SA")
    p.add_argument("--only", default=",".join(SPLITS), metavar="SPLITS",
                   help="write only these splits, e.g. dev,test (the same scenes as in a full run)")
    p.add_argument("--force", action="store_true", help="write into an OUT that already holds metadata")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        fractions = tuple(float(f) for f in args.split.split(","))
        cfg = SceneConfig(
            fs=args.fs,
            duration_s=args.duration,
            target_lead_s=args.target_lead,
            target_tail_s=args.target_tail,
            snr_db=args.snr,
            num_interferers=args.interferers,
            interferer_types=tuple(t.strip() for t in args.interferer_types.split(",") if t.strip()),
            rirs=args.rirs,
            dry_fraction=args.dry_fraction,
            split_fractions=fractions,
            num_listeners=args.listeners,
            subtype=args.subtype,
            exclude_licences=tuple(args.exclude_licence),
        )
        only = tuple(s.strip() for s in args.only.split(",") if s.strip())
        if (args.out / "metadata").exists() and not args.force:
            raise RthaError(f"{args.out} already holds a data set; pass --force to write over it")
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        t0 = time.perf_counter()
        with Progress(TextColumn("scenes"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TimeRemainingColumn()) as bar:
            task = bar.add_task("scenes", total=sum(scene_counts(args.num_scenes, fractions)[s] for s in only))
            by_split = generate(args.corpus, args.out, args.num_scenes, args.seed, cfg, args.workers,
                                progress=lambda n: bar.update(task, completed=n), only=only)
        dt = time.perf_counter() - t0
    except RthaError as e:
        print(f"make_scenes: error: {e}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{s} {len(v)}" for s, v in by_split.items())
    written = sum(len(v) for v in by_split.values())
    print(f"wrote {written} scenes ({counts}) to {args.out} in {dt:.1f} s "
          f"({written / dt:.1f} scenes/s, {args.workers} worker(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
