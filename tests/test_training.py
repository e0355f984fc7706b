"""Training pipeline end to end on a handful of generated scenes with a very small model."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rtha.cli import main as rtha_main
from rtha.data.scenes import SceneConfig, generate
from rtha.enhance import load_checkpoint
from rtha.errors import RthaError
from training.calibrate import OutputGain, calibrate, main as calibrate_main, measure_gain
from training.config import from_dict, load_config
from training.evaluate import evaluate
from training.train import Trainer, si_sdr, train

from scene_fixtures import write_corpus

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def scenes(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes")
    generate(corpus, out, 10, seed=2, cfg=SceneConfig(duration_s=1.5, target_lead_s=0.25, target_tail_s=0.25))
    return out


def small_config(scenes: Path, out: Path, data: dict | None = None, **train):
    return from_dict(
        {
            "model": {"preset": "tiny", "N": 16, "B": 16, "H": 32, "X": 3, "R": 1},
            "data": {"root": str(scenes), "segment_s": 0.5, "valid_max_scenes": 1, **(data or {})},
            "train": {"batch_size": 2, "lr": 1e-3, "warmup_steps": 2, "epochs": 2, "steps_per_epoch": 3,
                      "threads": 1, "checkpoint_every": 1, "log_every": 1, **train},
            "output": {"dir": str(out)},
        }
    )


def log_rows(out: Path) -> list[dict]:
    with open(out / "log.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_si_sdr_is_scale_invariant_and_rewards_cleaner_signals():
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(2, 4000, generator=g)
    noise = torch.randn(2, 4000, generator=g)
    noisy = ref + 0.3 * noise
    assert torch.allclose(si_sdr(3 * noisy, ref), si_sdr(noisy, ref), atol=1e-4)
    assert (si_sdr(ref + 0.1 * noise, ref) > si_sdr(ref + noise, ref)).all()
    assert si_sdr(ref + noise, ref).mean().item() == pytest.approx(0.0, abs=0.5)  # equal power: ~0 dB


def test_training_writes_checkpoints_logs_and_validates(scenes, tmp_path):
    trainer = train(small_config(scenes, tmp_path / "run"), progress=False)
    assert trainer.global_step == 6 and trainer.epoch == 2
    rows = log_rows(tmp_path / "run")
    assert [r["phase"] for r in rows].count("valid") == 2
    assert float(rows[0]["segments_per_s"]) > 0
    for name in ("best.pt", "last.pt"):
        model, meta = load_checkpoint(tmp_path / "run" / name)
        assert model.cfg.N == 16
        assert meta["steps"] == 6 if name == "last.pt" else meta["steps"] in (3, 6)
        assert "valid_si_sdri_db" in meta["metrics"] and meta["data"]["generation"]["seed"] == 2
    raw = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert raw["metadata"]["train_config"]["train"]["batch_size"] == 2
    result = evaluate(tmp_path / "run" / "best.pt", scenes, "test")
    assert result["segments"] == 2 and set(result) >= {"si_sdr_mix_db", "si_sdr_enhanced_db", "si_sdri_db"}
    assert set(result["by_interferer"]) <= {"with a competing talker", "noise and babble only"}
    assert result["by_interferer"] and all(math.isfinite(v) for v in result["by_interferer"].values())
    # Exported models carry the validation output gain: the trained weights times it, in the decoder.
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=True)
    model, meta = load_checkpoint(tmp_path / "run" / "last.pt")
    g = meta["output_gain"]
    assert g == state["output_gain"] and g != 1.0
    torch.testing.assert_close(model.decoder.weight, state["model"]["decoder.weight"] * g)
    assert torch.equal(model.encoder.weight, state["model"]["encoder.weight"])


def test_resume_reproduces_the_uninterrupted_run_exactly(scenes, tmp_path):
    with pytest.raises(RthaError, match="start without --resume"):
        Trainer(small_config(scenes, tmp_path / "never"), resume=True, progress=False)
    assert not (tmp_path / "never").exists()
    whole = train(small_config(scenes, tmp_path / "whole"), progress=False)
    part = train(small_config(scenes, tmp_path / "part"), max_steps=2, progress=False)
    assert part.global_step == 2
    with pytest.raises(RthaError, match="--resume"):
        Trainer(small_config(scenes, tmp_path / "part"), progress=False)
    resumed = train(small_config(scenes, tmp_path / "part"), resume=True, progress=False)
    assert resumed.global_step == 6
    train_losses = lambda out: [(r["step"], r["loss"]) for r in log_rows(out) if r["phase"] == "train"]  # noqa: E731
    assert train_losses(tmp_path / "part") == train_losses(tmp_path / "whole")  # full-precision floats
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_config_errors_are_user_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nbatch_sise = 4\n")
    with pytest.raises(RthaError, match="batch_sise"):
        load_config(bad)
    bad.write_text("[train]\nlr = 'fast'\n")
    with pytest.raises(RthaError, match="expected a float"):
        load_config(bad)
    bad.write_text("[model]\npreset = 'huge'\n")
    with pytest.raises(RthaError, match="huge"):
        load_config(bad)
    with pytest.raises(RthaError, match="not found"):
        load_config(tmp_path / "missing.toml")
    configs = sorted((ROOT / "training" / "configs").rglob("*.toml"))
    assert {"default.toml", "tiny.toml", "lean_fresh.toml", "lean_h256_fresh.toml"} <= {c.name for c in configs}
    for path in configs:  # every committed config reads and builds its model's config
        assert load_config(path).model_config().N > 0


def test_rtha_train_command(scenes, tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[model]\npreset = "tiny"\nN = 16\nB = 16\nH = 32\nX = 2\nR = 1\n'
        f'[data]\nroot = "{scenes}"\nsegment_s = 0.5\nvalid_max_scenes = 1\n'
        f'[train]\nbatch_size = 2\nepochs = 1\nsteps_per_epoch = 2\nthreads = 1\n'
        f'[output]\ndir = "{tmp_path / "run"}"\n'
    )
    assert rtha_main(["train", str(cfg), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["steps"] == 2 and "valid_si_sdri_db" in metrics
    assert rtha_main(["train", str(cfg)]) == 2  # an existing run is not overwritten
    assert "--resume" in capsys.readouterr().err
    assert rtha_main(["train", str(tmp_path / "nope.toml")]) == 2


def test_output_gain_is_the_least_squares_gain_sign_included():
    g = torch.Generator().manual_seed(1)
    target = torch.randn(2, 3000, generator=g)
    acc = OutputGain()
    assert acc.gain == 1.0  # nothing seen yet
    acc.add(-0.25 * target[:1], target[:1])
    acc.add(-0.25 * target[1:], target[1:])
    assert acc.gain == pytest.approx(-4.0)


def test_calibrate_folds_level_and_polarity_into_the_decoder(scenes, tmp_path, capsys):
    train(small_config(scenes, tmp_path / "run", epochs=1), progress=False)
    src = tmp_path / "run" / "last.pt"
    model, meta = load_checkpoint(src)
    model.scale_output_(-3.0)  # an inverted, loud model, as SI-SDR training may leave it
    from rtha.enhance import save_checkpoint

    save_checkpoint(tmp_path / "wrong.pt", model, meta)
    mix = torch.randn(1, 800, generator=torch.Generator().manual_seed(2))
    before = load_checkpoint(src)[0](mix)
    torch.testing.assert_close(model(mix), -3.0 * before)  # scale_output_ is exact

    assert evaluate(tmp_path / "wrong.pt", scenes, "train")["output_gain"] < 0
    r = calibrate(tmp_path / "wrong.pt", tmp_path / "fixed.pt", scenes, "train", dry_mix=0.25)
    assert r["gain"] < 0 and r["scenes"] == 8
    fixed, fixed_meta = load_checkpoint(tmp_path / "fixed.pt")
    assert fixed_meta["output_gain"] == pytest.approx(meta["output_gain"] * r["gain"])
    assert fixed_meta["calibration"]["split"] == "train" and fixed_meta["dry_mix"] == 0.25
    # Calibration makes the enhancer's own output level-true; evaluate() measures it as played, dry mix in.
    assert measure_gain(fixed, scenes, "train")[0] == pytest.approx(1.0, abs=1e-6)
    played = evaluate(tmp_path / "fixed.pt", scenes, "train")
    assert played["dry_mix"] == 0.25 and played["output_gain"] > 0
    # SI-SDR does not see the gain
    assert evaluate(tmp_path / "fixed.pt", scenes, "test", dry_mix=0)["si_sdri_db"] == pytest.approx(
        evaluate(tmp_path / "wrong.pt", scenes, "test")["si_sdri_db"], abs=1e-3)

    assert calibrate_main([str(tmp_path / "wrong.pt"), "--out", str(tmp_path / "fixed.pt"), "--data", str(scenes)]) == 2
    assert "--force" in capsys.readouterr().err  # never overwrites without asking


# ----------------------------------------------------------------------------- dynamic mixing, SNR loss, budgets


def dynamic(corpus: Path) -> dict:
    return {"mixing": "dynamic", "corpus": str(corpus), "segment_s": 1.0}


def test_dynamic_mix_is_deterministic_and_draws_only_train_speakers(corpus, scenes):
    from training.dynamic_mix import DynamicMix, MixConfig

    speakers = json.loads((scenes / "metadata" / "generation.json").read_text())["speakers"]
    a = DynamicMix(corpus, scenes, batch_size=3, seed=5, mix=MixConfig(segment_s=1.0))
    b = DynamicMix(corpus, scenes, batch_size=3, seed=5, mix=MixConfig(segment_s=1.0))
    mix, target = a[7]
    assert mix.shape == target.shape == (3, 16000) and mix.dtype == torch.float32
    assert torch.equal(mix, b[7][0]) and torch.equal(target, b[7][1])  # (seed, step) fixes the batch
    assert not torch.equal(mix, a[8][0])
    held_out = set(speakers["dev"]) | set(speakers["test"])
    for i in range(40):
        m, t, meta = a.example(i)
        assert meta["target"]["speaker"] in speakers["train"]
        names = [n for itf in meta["interferers"] for n in itf["name"]]
        assert not any(f"/{spk}/" in n for n in names for spk in held_out)
        assert np.isfinite(m).all() and np.abs(m).max() <= 1.0
        assert rms_db(t) < 0  # a real target in every example


def test_dynamic_mix_draws_only_the_interferer_kinds_asked_for(corpus, scenes, tmp_path):
    from training.dynamic_mix import DynamicMix, MixConfig

    noise = DynamicMix(corpus, scenes, batch_size=2, seed=5, mix=MixConfig(segment_s=1.0, interferer_types=("noise",)))
    every = DynamicMix(corpus, scenes, batch_size=2, seed=5, mix=MixConfig(segment_s=1.0))
    kinds = {k: {itf["type"] for i in range(30) for itf in d.example(i)[2]["interferers"]}
             for k, d in (("noise", noise), ("every", every))}
    assert kinds["noise"] == {"noise"} and len(kinds["every"]) > 1
    with pytest.raises(RthaError, match=r"\[data\] interferer_types: unknown kind\(s\) \['music'\]"):
        small_config(scenes, tmp_path / "run", data={**dynamic(corpus), "interferer_types": ["noise", "music"]})
    cfg = small_config(scenes, tmp_path / "run", data={**dynamic(corpus), "interferer_types": ["babble", "noise"]})
    assert Trainer(cfg, progress=False).train_set.scene_cfg.interferer_types == ("babble", "noise")


def rms_db(x) -> float:
    return 10 * math.log10(float(np.mean(np.square(x))) + 1e-20)


def test_dynamic_mixing_needs_generated_scenes_for_its_speakers(corpus, tmp_path):
    from training.dynamic_mix import DynamicMix

    with pytest.raises(RthaError, match="generation.json"):
        DynamicMix(corpus, tmp_path, batch_size=2)


def test_dynamic_training_resumes_exactly(corpus, scenes, tmp_path):
    cfg = lambda out: small_config(scenes, out, data=dynamic(corpus), loss="snr")  # noqa: E731
    whole = train(cfg(tmp_path / "whole"), progress=False)
    part = train(cfg(tmp_path / "part"), max_steps=4, progress=False)
    assert part.global_step == 4
    resumed = train(cfg(tmp_path / "part"), resume=True, progress=False)
    assert resumed.global_step == whole.global_step == 6
    train_losses = lambda out: [(r["step"], r["loss"]) for r in log_rows(out) if r["phase"] == "train"]  # noqa: E731
    assert train_losses(tmp_path / "part") == train_losses(tmp_path / "whole")
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    _, meta = load_checkpoint(tmp_path / "whole" / "last.pt")
    assert meta["data"]["mixing"] == "dynamic" and meta["data"]["audio_hours_seen"] == pytest.approx(6 * 2 / 3600,
                                                                                                       abs=1e-3)
    valid = [r for r in log_rows(tmp_path / "whole") if r["phase"] == "valid"]
    assert len(valid) == 2 and all(r["si_sdri_db"] and float(r["train_cpu_s"]) > 0 for r in valid)


def test_snr_loss_is_level_and_sign_true_and_its_models_are_not_rescaled(corpus, scenes, tmp_path):
    from training.losses import snr

    g = torch.Generator().manual_seed(3)
    ref = torch.randn(2, 4000, generator=g)
    assert snr(0.5 * ref, ref).numpy() == pytest.approx([6.02, 6.02], abs=0.01)  # half level: 6 dB error
    assert (snr(-ref, ref) < -6).all()  # inverted: worse than silence
    assert snr(ref, ref).min() > 70  # exact: capped, finite
    trainer = train(small_config(scenes, tmp_path / "run", data=dynamic(corpus), loss="snr", epochs=1),
                    progress=False)
    model, meta = load_checkpoint(tmp_path / "run" / "last.pt")
    assert torch.equal(model.decoder.weight, trainer.model.decoder.weight)
    assert "output_gain" not in meta and meta["valid_output_gain"] == trainer.output_gain


def test_compressed_spectrum_loss_counts_removed_speech_worse_than_noise_left():
    from training.losses import compressed_spectrum_snr, loss_fn

    g = torch.Generator().manual_seed(4)
    ref = torch.randn(2, 8000, generator=g)
    quiet, loud = compressed_spectrum_snr(0.5 * ref, ref), compressed_spectrum_snr(1.5 * ref, ref)
    assert (quiet < loud - 3).all()  # speech removed costs more than the same-sized excess
    assert compressed_spectrum_snr(ref, ref).min() > 70
    assert loss_fn("snr_cs")(ref, ref) < -70


def test_training_with_a_dry_mix_ships_it_and_validates_as_played(corpus, scenes, tmp_path):
    trainer = train(small_config(scenes, tmp_path / "run", data=dynamic(corpus), loss="snr_cs", dry_mix=0.3,
                                 epochs=1), progress=False)
    model, meta = load_checkpoint(tmp_path / "run" / "last.pt")
    assert meta["dry_mix"] == 0.3
    played = evaluate(tmp_path / "run" / "last.pt", scenes, "dev")
    assert played["dry_mix"] == 0.3
    assert evaluate(tmp_path / "run" / "last.pt", scenes, "dev", dry_mix=1.0)["si_sdri_db"] == pytest.approx(0, abs=1e-3)
    first = evaluate(tmp_path / "run" / "last.pt", scenes, "dev", max_scenes=1)  # the validation set
    assert first["si_sdri_db"] == pytest.approx(trainer.last_metrics["valid_si_sdri_db"], abs=1e-3)
    with pytest.raises(RthaError, match="dry_mix"):
        small_config(scenes, tmp_path / "bad", dry_mix=1.0)
    # Resumed with another dry mix, validation measures another output: the plateau rule starts afresh.
    more = Trainer(small_config(scenes, tmp_path / "run", data=dynamic(corpus), loss="snr_cs", dry_mix=0.1, epochs=2),
                   resume=True, progress=False)
    assert more.best == -math.inf and more.bad_epochs == 0 and more.global_step == trainer.global_step
    same = Trainer(small_config(scenes, tmp_path / "run", data=dynamic(corpus), loss="snr_cs", dry_mix=0.3, epochs=2),
                   resume=True, progress=False)
    assert same.best == trainer.best
    # Resumed on another loss, the run aims elsewhere: best.pt starts afresh too.
    other = Trainer(small_config(scenes, tmp_path / "run", data=dynamic(corpus), loss="snr_pooled", dry_mix=0.3,
                                 epochs=2), resume=True, progress=False)
    assert other.best == -math.inf and other.global_step == trainer.global_step


def test_time_budget_stops_resumably(corpus, scenes, tmp_path):
    cfg = small_config(scenes, tmp_path / "run", data=dynamic(corpus), loss="snr", epochs=1000)
    t = train(cfg, max_seconds=1.0, clock="cpu", progress=False)
    assert t.cpu_elapsed >= 1.0 and t.global_step > 0 and (tmp_path / "run" / "state.pt").is_file()
    again = train(cfg, resume=True, max_seconds=1.0, clock="cpu", progress=False)
    assert again.global_step == t.global_step  # the budget is summed over resumes: already spent


def test_rtha_train_rejects_bad_steps_and_outputs_before_training(scenes, tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[model]\npreset = "tiny"\n[data]\nroot = "{scenes}"\n[output]\ndir = "{tmp_path / "run"}"\n')
    for steps in ("0", "-5"):
        assert rtha_main(["train", str(cfg), "--max-steps", steps]) == 2
        err = capsys.readouterr().err
        assert f"--max-steps {steps}" in err and len(err.strip().splitlines()) == 1
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert rtha_main(["train", str(cfg), "--out", str(a_file)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_resume_hint_keeps_out_and_data():
    import argparse

    from rtha.commands.train import resume_command

    args = argparse.Namespace(config=Path("c.toml"), out=Path("my runs/x"), data=Path("d"))
    assert resume_command(args) == "rtha train c.toml --resume --out 'my runs/x' --data d"


def test_timed_run_trains_for_its_budget_then_validates_and_resumes(corpus, scenes, tmp_path, capsys):
    from training.timed import main as timed_main

    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[model]\npreset = "tiny"\nN = 16\nB = 16\nH = 32\nX = 2\nR = 1\n'
        f'[data]\nroot = "{scenes}"\nmixing = "dynamic"\ncorpus = "{corpus}"\nsegment_s = 0.5\nvalid_max_scenes = 1\n'
        f'[train]\nbatch_size = 2\nloss = "snr"\nepochs = 1000\nsteps_per_epoch = 1000\nthreads = 1\n'
        f'[output]\ndir = "{tmp_path / "unused"}"\n'
    )
    out = tmp_path / "gpu"
    assert timed_main([str(cfg), "--minutes", "0.02", "--out", str(out), "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["device"].startswith("cpu") and s["steps"] == s["new_steps"] > 0
    assert math.isfinite(s["dev_si_sdri_db"]) and s["audio_hours_seen"] > 0
    assert {"last.pt", "best.pt", "state.pt", "log.csv"} <= {p.name for p in out.iterdir()}
    assert timed_main([str(cfg), "--minutes", "0.02", "--out", str(out)]) == 2  # never replaces a run silently
    assert "--force" in capsys.readouterr().err
    more = tmp_path / "more"
    assert timed_main([str(cfg), "--minutes", "0.04", "--out", str(more), "--resume", str(out), "--json"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["steps"] == s["steps"] + r["new_steps"] and r["new_steps"] > 0  # M more minutes from the resumed state


def test_study_reads_curves_and_times_the_streaming_model(corpus, scenes, tmp_path, capsys):
    from training.study import gmac_per_s, main as study_main

    train(small_config(scenes, tmp_path / "a", data=dynamic(corpus), loss="snr"), progress=False)
    assert study_main([str(tmp_path / "a"), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["run"] == "a" and len(row["curve"]["cpu_min"]) == 2 and row["audio_s_per_cpu_s"] > 0
    assert row["stream_rtf"] > 0 and row["offline_rtf"] > 0
    plot = tmp_path / "study.png"
    try:
        import matplotlib  # noqa: F401  (the optional "plots" extra)
    except ImportError:
        assert study_main([str(tmp_path / "a"), "--no-rtf", "--plot", str(plot)]) == 2
        assert "matplotlib" in capsys.readouterr().err
    else:
        assert study_main([str(tmp_path / "a"), "--no-rtf", "--plot", str(plot)]) == 0
        assert plot.stat().st_size > 1000
    from rtha.enhance import ConvTasNetConfig

    assert gmac_per_s(ConvTasNetConfig.preset("default")) == pytest.approx(2.85, abs=0.01)
    assert gmac_per_s(ConvTasNetConfig.preset("lean")) == pytest.approx(0.18, abs=0.01)
    assert study_main([str(tmp_path / "missing")]) == 2
    # a run as committed (state.pt and log, no last.pt): the weights come from the resumable state
    committed = tmp_path / "committed"
    committed.mkdir()
    capsys.readouterr()
    for name in ("state.pt", "log.csv"):
        (committed / name).write_bytes((tmp_path / "a" / name).read_bytes())
    (committed / "config.toml").write_text('[model]\npreset = "tiny"\nN = 16\nB = 16\nH = 32\nX = 3\nR = 1\n')
    assert study_main([str(committed), "--json"]) == 0
    (same,) = json.loads(capsys.readouterr().out)
    assert same["curve"] == row["curve"] and same["params_m"] == row["params_m"]
    (committed / "state.pt").write_bytes(b"not a state")
    assert study_main([str(committed), "--no-rtf"]) == 2
    assert "state.pt" in capsys.readouterr().err


def test_study_pairs_training_losses_by_step_only_for_runs_on_the_same_batches(corpus, scenes, tmp_path, capsys):
    from training.study import main as study_main

    def run(name: str, H: int = 32, seed: int = 0) -> Path:
        cfg = tmp_path / f"{name}.toml"
        cfg.write_text(
            f'[model]\npreset = "tiny"\nN = 16\nB = 16\nH = {H}\nX = 3\nR = 1\n'
            f'[data]\nroot = "{scenes}"\nmixing = "dynamic"\ncorpus = "{corpus}"\nsegment_s = 0.5\n'
            f'valid_max_scenes = 1\n[train]\nbatch_size = 2\nloss = "snr"\nepochs = 2\nsteps_per_epoch = 3\n'
            f'threads = 1\nlog_every = 1\nseed = {seed}\n[output]\ndir = "{tmp_path / name}"\n')
        train(load_config(cfg), progress=False)
        return tmp_path / name

    a, wide, again = run("a"), run("wide", H=48), run("again")
    assert study_main([str(a), str(again), str(wide), "--paired-loss", "--window", "3", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    # the same model and batches: the same losses; a wider model: other losses on the same 6 steps
    assert [(r["run"], r["from_step"], r["to_step"], r["n"]) for r in rows] == [
        ("again", 1, 3, 3), ("again", 4, 6, 3), ("wide", 1, 3, 3), ("wide", 4, 6, 3)]
    assert all(r["mean"] == 0.0 for r in rows[:2]) and any(r["mean"] != 0.0 for r in rows[2:])
    assert study_main([str(a), str(wide), "--paired-loss"]) == 0
    assert "training loss minus a's" in capsys.readouterr().out
    other_seed = run("other_seed", seed=1)
    for args, names in [([str(a), str(other_seed)], "[train] seed = 1"), ([str(a), str(wide), "--window", "0"],
                        "--window 0"), ([str(a)], "a base run and at least one")]:
        assert study_main([*args, "--paired-loss"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("study: error:") and names in err and "\n" not in err


def test_init_from_starts_a_new_model_from_a_trained_one_and_continues_its_counters(corpus, scenes, tmp_path):
    first = train(small_config(scenes, tmp_path / "plain", data=dynamic(corpus), loss="snr", epochs=1),
                  progress=False)
    ctx = {"preset": "tiny", "N": 16, "B": 16, "H": 32, "X": 3, "R": 1, "ctx_window": 64, "ctx_bins": 9}

    def ctx_config(out, init):
        cfg = small_config(scenes, out, data=dynamic(corpus), loss="snr", epochs=1, init_from=str(init))
        cfg.model = ctx
        return cfg

    t = Trainer(ctx_config(tmp_path / "ctx", tmp_path / "plain" / "last.pt"), progress=False)
    assert t.global_step == first.global_step and t.cpu_elapsed == pytest.approx(first.cpu_elapsed, abs=0.2)
    plain, _ = load_checkpoint(tmp_path / "plain" / "last.pt")
    x = torch.randn(1, 4000)
    with torch.no_grad():
        torch.testing.assert_close(t.model(x), plain(x), rtol=0, atol=0)  # the context starts as a no-op
    again = Trainer(ctx_config(tmp_path / "ctx2", tmp_path / "plain" / "state.pt"), progress=False)
    assert again.global_step == first.global_step
    t.fit()
    assert t.global_step == 2 * first.global_step
    with pytest.raises(RthaError, match="init_from .*last.pt: .*context"):  # a context model into a plain one
        Trainer(small_config(scenes, tmp_path / "back", data=dynamic(corpus), loss="snr",
                             init_from=str(tmp_path / "ctx" / "last.pt")), progress=False)


def test_init_from_grows_a_trained_model_by_a_repeat_without_changing_its_output(corpus, scenes, tmp_path):
    small = small_config(scenes, tmp_path / "plain", data=dynamic(corpus), loss="snr", epochs=1)
    small.source = str(tmp_path / "plain.toml")  # the run keeps its config beside state.pt
    (tmp_path / "plain.toml").write_text('[model]\npreset = "tiny"\nN = 16\nB = 16\nH = 32\nX = 3\nR = 1\n')
    train(small, progress=False)
    plain, _ = load_checkpoint(tmp_path / "plain" / "last.pt")

    def grown(out, init, **model):
        cfg = small_config(scenes, out, data=dynamic(corpus), loss="snr", epochs=1, init_from=str(init))
        cfg.model = {**cfg.model, **model}
        return Trainer(cfg, progress=False)

    x = torch.randn(1, 4000)
    for init in ("last.pt", "state.pt"):  # a model file, and a committed run's state (X from its config.toml)
        t = grown(tmp_path / "deep", tmp_path / "plain" / init, R=2)
        with torch.no_grad():
            torch.testing.assert_close(t.model(x), plain(x), rtol=0, atol=0)  # the new repeat starts as a no-op
        assert t.global_step == 3
    old_last = t.model.blocks[2].out.weight.detach().clone()
    t.fit()
    assert t.model.blocks[5].out.weight.abs().sum() > 0  # the new depth learns
    assert t.model.blocks[2].out.weight[:16].abs().sum() > 0  # so does the old last block's new residual path
    assert not torch.equal(t.model.blocks[2].out.weight, old_last)
    for init in ("last.pt", "state.pt"):  # another X would move every block to another dilation
        with pytest.raises(RthaError, match=f"init_from .*{init}: its blocks per repeat X = 3; this model's X = 2"):
            grown(tmp_path / "wrong", tmp_path / "plain" / init, X=2, R=2)
    with pytest.raises(RthaError, match=r"init_from .*last.pt: blocks.0.in_conv.weight has shape \(32, 16, 1\)"):
        grown(tmp_path / "wrong", tmp_path / "plain" / "last.pt", H=24)


def test_lr_min_floors_the_plateau_halving_and_lifts_a_resumed_run(corpus, scenes, tmp_path):
    def cfg(**kw):
        return small_config(scenes, tmp_path / "run", data=dynamic(corpus), loss="snr", lr_patience=1,
                            **{"epochs": 1, **kw})

    t = train(cfg(), progress=False)
    for _ in range(3):  # three validations without a new best: halved each time
        t.best = math.inf
        t.end_epoch()
    assert t.lr_scale == 0.125
    floored = Trainer(cfg(lr_min=2.5e-4, epochs=10), resume=True, progress=False)
    assert floored.lr_scale == 0.25  # lifted to the floor
    assert floored.opt.param_groups[0]["lr"] == pytest.approx(2.5e-4)  # from the first step on
    for _ in range(2):
        floored.best = math.inf
        floored.end_epoch()
    assert floored.lr_scale == 0.25
    raised = Trainer(cfg(lr=2e-3, lr_min=1e-3, epochs=10), resume=True, progress=False)
    assert raised.lr_scale == 0.5 and raised.opt.param_groups[0]["lr"] == pytest.approx(1e-3)  # a new lr counts
    raised.fit()
    assert float(log_rows(tmp_path / "run")[-1]["lr"]) == pytest.approx(1e-3)
    with pytest.raises(RthaError, match="lr_min"):
        cfg(lr_min=2e-3)


def test_lr_decay_anneals_a_branch_by_a_cosine_to_lr_min_and_resumes_on_it(corpus, scenes, tmp_path):
    train(small_config(scenes, tmp_path / "run", data=dynamic(corpus), loss="snr", epochs=1), progress=False)

    def branch(**kw):
        return small_config(scenes, tmp_path / "branch", data=dynamic(corpus), **{
            "loss": "snr", "lr": 1e-3, "lr_min": 1e-4, "lr_decay_steps": 4, "lr_patience": 0, "warmup_steps": 0,
            "init_from": str(tmp_path / "run" / "state.pt"), **kw})

    def expected(k):  # the lr after k scheduler steps of the branch
        return 1e-4 + 0.9e-3 * 0.5 * (1 + math.cos(math.pi * min(k, 4) / 4))

    first = train(branch(epochs=1), progress=False)
    assert first.sched.last_epoch == 3 and first.global_step == 6  # the branch counts its own steps
    resumed = Trainer(branch(epochs=3), resume=True, progress=False)
    assert resumed.opt.param_groups[0]["lr"] == pytest.approx(expected(3))  # the resume continues on the curve
    resumed.fit()
    lrs = [float(r["lr"]) for r in log_rows(tmp_path / "branch") if r["phase"] == "train"]
    assert lrs == sorted(lrs, reverse=True) and lrs[0] < 1e-3 and lrs[-1] == pytest.approx(1e-4)
    assert lrs.count(lrs[-1]) >= 4  # held at lr_min once the decay is over
    assert resumed.opt.param_groups[0]["lr"] == pytest.approx(expected(9))
    with pytest.raises(RthaError, match="lr_decay_steps = -1"):
        branch(lr_decay_steps=-1)


def test_pooled_snr_scales_like_least_squares_where_per_example_snr_leaves_noise_in():
    from training.losses import pooled_snr, snr

    g = torch.Generator().manual_seed(5)
    ref = torch.randn(2, 8000, generator=g)
    assert pooled_snr(ref[:1] * 0.5, ref[:1]).item() == pytest.approx(snr(ref[:1] * 0.5, ref[:1]).item(), abs=1e-4)
    # One easy example (noise 20 dB down) and one hard one (noise 6 dB up), at different levels.
    noise = torch.randn(2, 8000, generator=g) * torch.tensor([[0.1], [2.0]])
    ref, est = ref * torch.tensor([[3.0], [0.2]]), (ref + noise) * torch.tensor([[3.0], [0.2]])
    scales = torch.linspace(0.05, 1.5, 2901)
    best = {name: scales[torch.stack([measure(s * est, ref).mean() for s in scales]).argmax()].item()
            for name, measure in (("pooled", pooled_snr), ("snr", snr))}
    # The least-squares gain of the scaled output on the batch, each example relative to its target's energy:
    energy = ref.pow(2).sum(-1)
    ls_gain = lambda s: ((s * est * ref).sum(-1) / energy).sum() / ((s * est).pow(2).sum(-1) / energy).sum()  # noqa: E731
    assert ls_gain(best["pooled"]).item() == pytest.approx(1.0, abs=0.002)  # level-true over the batch
    assert ls_gain(best["snr"]).item() < 0.6  # the hard example's noise is left in: the output is too loud


def test_rtha_train_saves_when_sigterm_reaches_its_whole_process_group(corpus, scenes, tmp_path):
    """`kill -- -PGID`, `pkill -f` or Ctrl-C also signal the mixing worker; the run must still stop and save."""
    run = tmp_path / "run"
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[model]\npreset = "tiny"\nN = 16\nB = 16\nH = 32\nX = 2\nR = 1\n'
        f'[data]\nroot = "{scenes}"\nmixing = "dynamic"\ncorpus = "{corpus}"\nsegment_s = 0.5\nvalid_max_scenes = 1\n'
        f'[train]\nbatch_size = 2\nepochs = 1000\nsteps_per_epoch = 1000\nthreads = 1\ncheckpoint_every = 1\n'
        f'log_every = 1\n[output]\ndir = "{run}"\n'
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "rtha", "train", str(cfg)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not ((run / "log.csv").is_file() and len(log_rows(run)) >= 3) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert out.startswith("stopped:") or "\nstopped:" in out
    state = torch.load(run / "state.pt", weights_only=True)
    assert state["global_step"] >= 3 and state["global_step"] == int(log_rows(run)[-1]["step"])
