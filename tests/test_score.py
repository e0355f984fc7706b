"""``rtha score`` on a mini Clarity-format dataset made here: CSV vs direct metric calls,
shard/merge round trip, resume, external systems, reports and user errors."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from rtha.audiogram import CLARITY_CFS, Audiogram, Listener, save_listeners
from rtha.cli import main
from rtha.score.pairs import parse_shard, select_shard
from rtha.score.results import read_scores
from rtha.score.summary import Estimate, paired_differences

FS = 16000
SECONDS = 1.5
SPLIT = "dev"
SCENES_LISTENERS = {"S00001": ["L0001", "L0002"], "S00002": ["L0002"], "S00003": ["L0001"]}
PAIRS = [(s, lis) for s, ls in SCENES_LISTENERS.items() for lis in ls]


def _speech_like(rng: np.random.Generator, n: int) -> np.ndarray:
    """Voiced harmonics with a wandering pitch and syllable-rate bursts: enough structure for HASPI/HASQI."""
    t = np.arange(n) / FS
    f0 = 110 + 30 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / FS
    voiced = sum(np.sin(k * phase) / k for k in range(1, 25))
    syllables = np.clip(np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6)), 0, None) ** 2
    return voiced * syllables


def _make_dataset(root) -> None:
    """Three 1.5 s stereo scenes at 16 kHz in the Clarity layout, two listeners."""
    rng = np.random.default_rng(7)
    scenes_dir = root / SPLIT / "scenes"
    scenes_dir.mkdir(parents=True)
    (root / "metadata").mkdir()
    n = int(FS * SECONDS)
    for scene in SCENES_LISTENERS:
        dry = _speech_like(rng, n)
        anechoic = np.stack([0.05 * dry, 0.035 * dry])  # louder on the left
        room = rng.standard_normal((2, 400)) * np.exp(-np.arange(400) / 80.0)
        room[:, 0] = 1.0
        target = np.stack([np.convolve(a, h)[:n] for a, h in zip(anechoic, room)]) * 0.6
        interferer = 0.02 * rng.standard_normal((2, n))
        audio = {"target_anechoic": anechoic, "target": target, "interferer": interferer, "mix": target + interferer}
        for kind, x in audio.items():
            sf.write(scenes_dir / f"{scene}_{kind}_CH1.wav", x.T, FS, subtype="PCM_16")
    (root / "metadata" / f"scenes.{SPLIT}.json").write_text(json.dumps([{"scene": s} for s in SCENES_LISTENERS]))
    (root / "metadata" / f"scenes_listeners.{SPLIT}.json").write_text(json.dumps(SCENES_LISTENERS))
    save_listeners(
        {
            "L0001": Listener(Audiogram(CLARITY_CFS, [20, 25, 30, 40, 50, 55, 60, 65]),
                              Audiogram(CLARITY_CFS, [25, 30, 35, 45, 55, 60, 65, 70]), "L0001"),
            "L0002": Listener(Audiogram(CLARITY_CFS, [40] * 8), Audiogram(CLARITY_CFS, [30] * 8), "L0002"),
        },
        root / "metadata" / "listeners.json",
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The dataset, a random tiny model, and one full run (enhanced + unprocessed) with a report."""
    import torch

    from rtha.enhance import ConvTasNet, ConvTasNetConfig, save_checkpoint

    base = tmp_path_factory.mktemp("score")
    root = base / "clarity"
    _make_dataset(root)
    torch.manual_seed(0)
    model = save_checkpoint(base / "tiny.pt", ConvTasNet(ConvTasNetConfig.preset("tiny")), {"note": "random weights"})
    out = base / "full.csv"
    rc = main(["score", str(root), "--split", SPLIT, "--out", str(out), "--model", str(model),
               "--report", str(base / "report.json"), "--no-progress"])
    assert rc == 0
    return {"base": base, "root": root, "model": model, "csv": out, "rows": read_scores(out)[0]}


def _score(data, out, *extra) -> int:
    return main(["score", str(data["root"]), "--split", SPLIT, "--out", str(out), "--model", str(data["model"]),
                 "--no-progress", *extra])


def _by_key(rows):
    return {r.key: r for r in rows}


def test_full_run_has_every_pair_and_system(data):
    keys = sorted(r.key for r in data["rows"])
    assert keys == sorted((s, lis, sys) for s, lis in PAIRS for sys in ("enhanced", "unprocessed"))
    with open(data["csv"], newline="") as f:
        assert next(csv.reader(f))[:6] == ["scene", "listener", "system", "haspi", "hasqi", "combined"]
    for r in data["rows"]:
        assert 0.0 <= r.haspi <= 1.0 and 0.0 <= r.hasqi <= 1.0
        assert r.combined == 0.5 * (r.haspi + r.hasqi)


@pytest.mark.parametrize("system", ["unprocessed", "enhanced"])
def test_csv_equals_direct_metric_calls(data, system):
    """Rebuild one pair by hand: chain, challenge reference, seeded better-ear metrics."""
    from rtha.data.clarity import ClarityDataset
    from rtha.enhance import StreamingEnhancer
    from rtha.hearing_aid import hearing_aid_chain
    from rtha.metrics import haspi_v2_better_ear, hasqi_v2_better_ear

    scene, listener_id = PAIRS[1]
    ds = ClarityDataset(data["root"], SPLIT)
    listener = ds.listeners[listener_id]
    mix, fs = ds.read(scene, "mix")
    target, _ = ds.read(scene, "target")
    anechoic, _ = ds.read(scene, "target_anechoic")
    gain = np.sqrt(np.mean(target.astype(float) ** 2, axis=1) / np.mean(anechoic.astype(float) ** 2, axis=1))
    ref = anechoic.astype(float) * gain[:, None]
    enhancer = StreamingEnhancer(str(data["model"]), threads=1) if system == "enhanced" else None
    chain = hearing_aid_chain(listener, fs, enhancer=enhancer)
    flush = 2 * round(110 * fs / 44100) + (enhancer.latency if enhancer else 0)  # NAL-R order + enhancer delay
    out = chain.process(np.pad(mix, ((0, 0), (0, flush)))).astype(float)
    seed = int(hashlib.md5(scene.encode()).hexdigest(), 16) % 10**8
    rng = np.random.RandomState(seed)
    haspi = haspi_v2_better_ear(ref, out, fs, listener, level_db_spl=100, rng=rng)
    hasqi = hasqi_v2_better_ear(ref, out, fs, listener, level_db_spl=100, rng=rng)
    row = _by_key(data["rows"])[(scene, listener_id, system)]
    assert row.haspi == pytest.approx(float(haspi), abs=1e-12)
    assert row.hasqi == pytest.approx(float(hasqi), abs=1e-12)


def test_report_has_means_and_chain_configuration(data):
    report = json.loads((data["base"] / "report.json").read_text())
    for system in ("enhanced", "unprocessed"):
        rows = [r for r in data["rows"] if r.system == system]
        assert report["systems"][system]["combined"]["mean"] == pytest.approx(np.mean([r.combined for r in rows]))
        assert report["systems"][system]["combined"]["n"] == len(PAIRS)
        chain = report["chain"][system]
        assert chain["rate"] == FS and chain["nalr"]["phase"] == "minimum"
        assert chain["compressor"]["threshold"] == 0.35 and chain["compressor"]["attack_ms"] == 50.0
    model_sha = hashlib.sha256(data["model"].read_bytes()).hexdigest()
    assert report["chain"]["enhanced"]["enhancer"]["sha256"] == model_sha
    assert report["chain"]["enhanced"]["dry_mix"] == 0.0  # the model stores none
    assert set(report["differences"]) == {"enhanced-unprocessed"}


def test_compare_pairs_two_files_on_their_common_pairs(data, tmp_path, capsys):
    """--compare A B: A's system minus B's over the pairs both scored, the same numbers as the summary's differences."""
    only_s1 = tmp_path / "s1.csv"  # BASE holds a subset: the comparison runs over the common pairs only
    lines = data["csv"].read_text().splitlines(keepends=True)
    only_s1.write_text(lines[0] + "".join(x for x in lines[1:] if x.startswith("S00001,")))
    report = tmp_path / "compare.json"
    assert main(["score", "--compare", str(data["csv"]), str(only_s1), "--system", "enhanced,unprocessed",
                 "--report", str(report)]) == 0
    assert "Δ new - base" in capsys.readouterr().out
    got = json.loads(report.read_text())
    assert got["systems"] == {"new": "enhanced", "base": "unprocessed"} and got["pairs"] == 2
    s1 = [r for r in data["rows"] if r.scene == "S00001"]
    expected = paired_differences(s1, by_scene=True)["enhanced"]
    for m in ("haspi", "hasqi", "combined"):
        assert got["difference_by_scene"][m]["mean"] == pytest.approx(expected[m].mean)
        assert got["difference"][m]["n"] == 2 and got["difference_by_scene"][m]["n"] == 1
    assert main(["score", "--compare", str(data["csv"]), str(data["csv"]), "--report", str(report), "--force"]) == 0
    same = json.loads(report.read_text())  # a file against itself: zero differences
    assert same["pairs"] == len(PAIRS) and same["difference"]["combined"]["mean"] == 0.0


def test_compare_with_root_breaks_differences_down_by_scene_kind_and_snr(data, tmp_path, capsys):
    """--compare A B ROOT: new - base by scene within each interferer kind and SNR band of the split's metadata."""
    root = tmp_path / "clarity"
    shutil.copytree(data["root"] / "metadata", root / "metadata")
    talker = [{"type": "speech", "name": "x"}]
    meta = [{"scene": "S00001", "SNR": -1.0, "interferers": talker},
            {"scene": "S00002", "SNR": 2.0, "interferers": [{"type": "noise", "name": "y"}]},
            {"scene": "S00003", "SNR": 5.9, "interferers": talker}]
    (root / "metadata" / f"scenes.{SPLIT}.json").write_text(json.dumps(meta))
    report = tmp_path / "compare.json"
    assert main(["score", str(root), "--compare", str(data["csv"]), str(data["csv"]), "--system", "enhanced,unprocessed",
                 "--report", str(report)]) == 0
    assert "Δ with a competing talker" in capsys.readouterr().out
    got = json.loads(report.read_text())["difference_by_group"]
    assert list(got) == ["noise and babble only", "with a competing talker", "SNR -6..+0 dB", "SNR +0..+6 dB"]
    for label, scenes in (("with a competing talker", {"S00001", "S00003"}), ("SNR +0..+6 dB", {"S00002", "S00003"})):
        expected = paired_differences([r for r in data["rows"] if r.scene in scenes], by_scene=True)["enhanced"]
        for m in ("haspi", "hasqi", "combined"):
            assert got[label][m]["mean"] == pytest.approx(expected[m].mean) and got[label][m]["n"] == 2
    (root / "metadata" / f"scenes.{SPLIT}.json").write_text(json.dumps(meta[:2]))
    assert main(["score", str(root), "--compare", str(data["csv"]), str(data["csv"])]) == 2
    assert "scene S00003 is not in" in capsys.readouterr().err


def test_shards_merge_to_the_unsharded_run(data, tmp_path):
    """Two shards (one through a 2-process pool), unprocessed only, merge == the full run's unprocessed rows."""
    shards = [tmp_path / "s1.csv", tmp_path / "s2.csv"]
    assert _score(data, shards[0], "--systems", "unprocessed", "--shard", "1/2", "--jobs", "2") == 0
    assert _score(data, shards[1], "--systems", "unprocessed", "--shard", "2/2") == 0
    assert {r.scene for r in read_scores(shards[0])[0]} & {r.scene for r in read_scores(shards[1])[0]} == {"S00001"}
    merged = tmp_path / "merged.csv"
    assert main(["score", "--merge", *map(str, shards), "--out", str(merged)]) == 0
    expected = sorted((r for r in data["rows"] if r.system == "unprocessed"), key=lambda r: r.key)
    assert read_scores(merged)[0] == expected
    assert main(["score", "--merge", *map(str, shards), "--out", str(merged)]) == 2  # exists, no --force


def test_resume_scores_only_missing_pairs(data, tmp_path):
    out = tmp_path / "resume.csv"
    lines = data["csv"].read_text().splitlines(keepends=True)
    kept = lines[:-1]
    marked = kept[1].split(",")
    marked[3] = "0.123"  # a kept row must come back untouched, not recomputed
    kept[1] = ",".join(marked)
    out.write_text("".join(kept) + lines[-1][:10])  # the last row is torn, as a killed run leaves it
    assert _score(data, out) == 0
    rows = read_scores(out)[0]
    assert len(rows) == len(data["rows"])
    full = _by_key(data["rows"])
    for row in rows:
        if row.key == (marked[0], marked[1], marked[2]):
            assert row.haspi == 0.123
        else:
            assert row == full[row.key]
    before = out.read_bytes()
    assert _score(data, out) == 0  # nothing left to do: the file is unchanged
    assert out.read_bytes() == before


def test_resume_refuses_another_chain_configuration(data, tmp_path, capsys):
    out = tmp_path / "other.csv"
    shutil.copy(data["csv"], out)
    assert _score(data, out, "--systems", "unprocessed", "--linear-phase") == 2
    assert "another chain configuration" in capsys.readouterr().err
    assert _score(data, out, "--systems", "enhanced", "--dry-mix", "0.3") == 2
    assert "another chain configuration" in capsys.readouterr().err


def test_resume_refuses_rows_of_another_split(data, tmp_path, capsys):
    # the CSV has no split column: scores of pairs that are not in this split came from another one
    out = tmp_path / "train.csv"
    out.write_text(data["csv"].read_text().replace("S00001,", "S09001,"))
    before = out.read_bytes()
    assert _score(data, out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "S09001/L0001, which is not a pair of the 'dev' split" in err and "--force" in err
    assert out.read_bytes() == before


def test_an_unwritable_out_fails_before_scoring(data, capsys, unwritable_dir):
    assert _score(data, unwritable_dir / "s.csv") == 2
    err = capsys.readouterr().err
    assert err.startswith("rtha: error: --out") and "cannot write there" in err and err.count("\n") == 1


def test_external_copies_of_the_mix_score_like_unprocessed(data, tmp_path):
    enhanced_dir = tmp_path / "enhanced"
    enhanced_dir.mkdir()
    scene, listener = PAIRS[0]
    mix = data["root"] / SPLIT / "scenes" / f"{scene}_mix_CH1.wav"
    shutil.copy(mix, enhanced_dir / f"{scene}_{listener}_enhanced.wav")
    out = tmp_path / "external.csv"
    assert _score(data, out, "--enhanced-dir", str(enhanced_dir), "--systems", "external", "--limit", "1") == 0
    (external,) = read_scores(out)[0]
    unprocessed = _by_key(data["rows"])[(scene, listener, "unprocessed")]
    assert (external.key, external.haspi, external.hasqi) == ((scene, listener, "external"), unprocessed.haspi, unprocessed.hasqi)


def test_fidelity_switch_is_the_challenge_amplification(data):
    """--rate 44100 --nfir 220 --linear-phase: full np.convolve with the NAL-R taps, Compressor(44100), tanh."""
    from rtha.dsp import Compressor, nalr_fir
    from rtha.score.config import ScoreSettings
    from rtha.dsp.resample import resample
    from rtha.score.pair import PairScorer

    settings = ScoreSettings(str(data["root"]), SPLIT, ("unprocessed",), rate=44100, nfir=220, nalr_phase="linear")
    scorer = PairScorer(settings, {"unprocessed": "x"})
    scene, listener_id = PAIRS[0]
    listener = scorer.listener(scene, listener_id)
    mix = scorer.dataset.read(scene, "mix")
    got = scorer.system_output("unprocessed", scene, listener_id, listener, mix)
    x = resample(mix[0], FS, 44100).astype(np.float32).astype(float)
    amplified = np.stack([np.convolve(x[e], nalr_fir(a, 44100, 220)) for e, a in enumerate(listener.ears)])
    want = np.tanh(Compressor(44100).process(amplified.astype(np.float32)).astype(float))
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_a_scenes_listeners_share_one_enhancer_pass(data):
    from rtha.score.config import ScoreSettings
    from rtha.score.pair import PairScorer

    settings = ScoreSettings(str(data["root"]), SPLIT, ("enhanced",), rate=FS, model_path=str(data["model"]))
    scorer = PairScorer(settings, {"enhanced": "x"}, metric_threads=1)
    (scene, first), (same_scene, second), (other, third) = PAIRS[:3]
    rows = scorer.score(scene, first, ("enhanced",))
    kept = scorer.enhanced(scene, None)  # kept: the mix is not needed again
    rows += scorer.score(same_scene, second, ("enhanced",))
    assert same_scene == scene and scorer.enhanced(scene, None) is kept
    scorer.score(other, third, ("enhanced",))
    assert scorer.enhanced(other, None) is not kept  # a new scene replaces the kept one
    full = _by_key(data["rows"])
    assert [(r.haspi, r.hasqi) for r in rows] == [(full[r.key].haspi, full[r.key].hasqi) for r in rows]


def test_estimates_and_paired_differences():
    from scipy.stats import t

    values = [0.2, 0.5, 0.4, 0.9]
    e = Estimate.of(values)
    lo, hi = t.interval(0.95, 3, loc=np.mean(values), scale=np.std(values, ddof=1) / 2)
    assert e.ci95 == pytest.approx((lo, hi))
    from rtha.score.results import ScoreRow

    rows = [ScoreRow("S1", "L1", "enhanced", 0.6, 0.4, 0.5, "a"), ScoreRow("S1", "L1", "unprocessed", 0.5, 0.1, 0.3, "b"),
            ScoreRow("S2", "L1", "enhanced", 0.9, 0.1, 0.5, "a")]  # S2 has no baseline: not paired
    d = paired_differences(rows)["enhanced"]
    assert d["combined"].n == 1 and d["combined"].mean == pytest.approx(0.2)
    rows += [ScoreRow("S1", "L2", "enhanced", 0.6, 0.4, 0.5, "a"), ScoreRow("S1", "L2", "unprocessed", 0.5, 0.1, 0.1, "b")]
    assert paired_differences(rows)["enhanced"]["combined"].n == 2
    per_scene = paired_differences(rows, by_scene=True)["enhanced"]["combined"]
    assert per_scene.n == 1 and per_scene.mean == pytest.approx(0.3)  # mean of 0.2 and 0.4


def test_shards_partition_the_pairs():
    pairs = list(range(11))
    shards = [select_shard(pairs, *parse_shard(f"{i}/3")) for i in (1, 2, 3)]
    assert sorted(sum(shards, [])) == pairs


@pytest.mark.parametrize(
    "args, message",
    [
        (["score", "{tmp}/nowhere", "--out", "{tmp}/a.csv"], "nowhere"),
        (["score", "{root}", "--split", "eval", "--out", "{tmp}/a.csv", "--model", "{model}"], "eval"),
        (["score", "{root}", "--out", "{tmp}/a.csv", "--systems", "magic"], "unknown system"),
        (["score", "{root}", "--out", "{tmp}/a.csv", "--systems", "external"], "--enhanced-dir"),
        (["score", "{root}", "--out", "{tmp}/a.csv", "--shard", "0/2"], "numbered from 1"),
        (["score", "{root}", "--out", "{tmp}/a.csv", "--report", "{csv}"], "--force"),
        (["score", "--out", "{tmp}/a.csv"], "ROOT"),
        (["score", "{root}"], "--out CSV is required"),
        (["score", "--compare", "{csv}", "{tmp}/missing.csv"], "missing.csv: scores file not found"),
        (["score", "--compare", "{csv}", "{csv}", "--system", "external"], "no rows of system 'external'"),
        (["score", "--compare", "{csv}", "{csv}", "--system", "a,b,c"], "expected NEW or NEW,BASE"),
        (["score", "--compare", "{csv}", "{csv}", "--model", "{model}"], "takes no --model"),
        (["score", "--compare", "{csv}", "{csv}", "--out", "{tmp}/a.csv"], "takes no --out"),
        (["score", "--merge", "{tmp}/missing.csv", "--out", "{tmp}/a.csv"], "not found"),
        (["score", "{root}", "--out", "{tmp}/a.csv", "--report", "{tmp}"], "--report"),
        (["score", "{root}", "--out", "{tmp}", "--model", "{model}"], "is a folder"),
        (["score", "{csv}", "--out", "{tmp}/a.csv", "--model", "{model}"], "is a file; expected the dataset folder"),
    ],
)
def test_user_errors_are_one_line(data, tmp_path, capsys, args, message):
    fill = {"tmp": tmp_path, "root": data["root"], "model": data["model"], "csv": data["csv"]}
    assert main([a.format(**fill) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rtha: error:") and message in err and err.count("\n") == 1


def test_plots_need_matplotlib_or_are_written(data, tmp_path, capsys):
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert main(["score", "--merge", str(data["csv"]), "--out", str(tmp_path / "m.csv"),
                     "--plots", str(tmp_path / "plots")]) == 2
        assert "pip install matplotlib" in capsys.readouterr().err
        return
    assert main(["score", "--merge", str(data["csv"]), "--out", str(tmp_path / "m.csv"),
                 "--plots", str(tmp_path / "plots")]) == 0
    assert (tmp_path / "plots" / "distributions.png").stat().st_size > 0
    assert (tmp_path / "plots" / "scatter_enhanced_vs_unprocessed.png").stat().st_size > 0
