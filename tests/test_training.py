"""Training pipeline end to end on a handful of generated scenes with a very small model."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from rtha.cli import main as rtha_main
from rtha.data.scenes import SceneConfig, generate
from rtha.enhance import load_checkpoint
from rtha.errors import RthaError
from training.calibrate import OutputGain, calibrate, main as calibrate_main
from training.config import from_dict, load_config
from training.evaluate import evaluate
from training.train import Trainer, si_sdr, train

from scene_fixtures import write_corpus

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    corpus = write_corpus(tmp_path_factory.mktemp("corpus"))
    out = tmp_path_factory.mktemp("scenes")
    generate(corpus, out, 10, seed=2, cfg=SceneConfig(duration_s=1.5, target_lead_s=0.25, target_tail_s=0.25))
    return out


def small_config(scenes: Path, out: Path, **train):
    return from_dict(
        {
            "model": {"preset": "tiny", "N": 16, "B": 16, "H": 32, "X": 3, "R": 1},
            "data": {"root": str(scenes), "segment_s": 0.5, "valid_max_scenes": 1},
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
    for name in ("default", "tiny"):
        cfg = load_config(ROOT / "training" / "configs" / f"{name}.toml")
        assert cfg.model_config().N > 0


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
    assert evaluate(tmp_path / "fixed.pt", scenes, "train")["output_gain"] == pytest.approx(1.0, abs=1e-6)
    # SI-SDR does not see the gain
    assert evaluate(tmp_path / "fixed.pt", scenes, "test")["si_sdri_db"] == pytest.approx(
        evaluate(tmp_path / "wrong.pt", scenes, "test")["si_sdri_db"], abs=1e-3)

    assert calibrate_main([str(tmp_path / "wrong.pt"), "--out", str(tmp_path / "fixed.pt"), "--data", str(scenes)]) == 2
    assert "--force" in capsys.readouterr().err  # never overwrites without asking
