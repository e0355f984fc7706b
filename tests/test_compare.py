"""Enhancers paired by scene (``python -m training.compare``) on generated scenes: checkpoints,
a run's resumable state beside its config, and a state as committed in a real git repository."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

from rtha.enhance import ConvTasNet, ConvTasNetConfig, save_checkpoint
from training.compare import GROUPS, compare, main as compare_main
from training.evaluate import evaluate

from scene_fixtures import short_scenes

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = str(ROOT / "models" / "default.pt")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return short_scenes(tmp_path_factory, seed=5)


def _run(tmp: Path, seed: int, step: int) -> tuple[Path, Path]:
    """A tiny model's run folder (``state.pt`` + ``config.toml``) and the same weights as a checkpoint."""
    torch.manual_seed(seed)
    model = ConvTasNet(ConvTasNetConfig.preset("tiny"))
    run = tmp / "run"
    run.mkdir(exist_ok=True)
    (run / "config.toml").write_text('[model]\npreset = "tiny"\n')
    torch.save({"model": model.state_dict(), "global_step": step}, run / "state.pt")
    return run / "state.pt", save_checkpoint(tmp / f"tiny_{seed}.pt", model, {"steps": step})


def test_a_model_paired_with_itself_differs_by_nothing_and_scores_as_evaluate_does(scenes, capsys):
    r = compare([DEFAULT, DEFAULT], scenes, "train")
    n = len(json.loads((scenes / "metadata" / "scenes.train.json").read_text()))
    assert r["scenes"] == n and r["base"] == DEFAULT and len(r["models"]) == 2
    for m in r["models"]:
        assert m["difference_db"]["all"] == {"n": n, "mean": 0.0, "ci95": [0.0, 0.0]}
        assert set(m["difference_db"]) <= set(GROUPS) and m["steps"] > 0
    # Every scene has both ears, so the mean over scenes is evaluate's mean over ears.
    e = evaluate(DEFAULT, scenes, "train", dry_mix=0.0)
    assert r["models"][0]["si_sdri_db"]["all"] == pytest.approx(e["si_sdri_db"], abs=2e-3)
    assert r["models"][0]["output_gain"] == pytest.approx(e["output_gain"], abs=1e-3)
    groups = [g for g in GROUPS[1:] if g in r["models"][0]["difference_db"]]
    assert sum(r["models"][0]["difference_db"][g]["n"] for g in groups) == n


def test_a_runs_state_pairs_with_its_checkpoint_and_from_git(scenes, tmp_path, monkeypatch, capsys):
    state, ckpt = _run(tmp_path, seed=1, step=1234)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    monkeypatch.chdir(tmp_path)
    subprocess.run(["git", "init", "-q"], check=True)
    subprocess.run([*git, "add", "run"], check=True)
    subprocess.run([*git, "commit", "-qm", "run at 1234"], check=True)
    _run(tmp_path, seed=2, step=2000)  # the run trains on: the working tree moves away from the commit
    args = [str(ckpt), "run/state.pt", "HEAD:run/state.pt", "--data", str(scenes), "--split", "train",
            "--max-scenes", "4", "--json"]
    assert compare_main(args) == 0
    r = json.loads(capsys.readouterr().out)["comparison"]
    base, now, committed = r["models"]
    assert [m["steps"] for m in r["models"]] == [1234, 2000, 1234]
    assert committed["difference_db"]["all"]["mean"] == 0.0  # the same weights, read from git
    assert now["difference_db"]["all"]["mean"] != 0.0
    assert compare_main(args[:-1]) == 0  # the table
    out = capsys.readouterr().out
    assert "1234" in out and "2000" in out and "+0.000" in out


@pytest.mark.parametrize("args, names", [
    ([DEFAULT], "a base model and at least one"),
    ([DEFAULT, DEFAULT, "--dry-mix", "1.5"], "--dry-mix 1.5"),
    ([DEFAULT, DEFAULT, "--max-scenes", "0"], "--max-scenes 0"),
    ([DEFAULT, "no-such-rev:models/default.pt"], "no-such-rev:models/default.pt: not in git"),
    ([DEFAULT, "{tmp}/lone/state.pt"], "needs the run's config.toml beside it"),
    ([DEFAULT, "{tmp}/run/state.pt"], "not a run's state of the model in"),
    ([DEFAULT, DEFAULT, "--split", "nope"], "nope"),
])
def test_bad_input_is_one_line_before_any_work(scenes, tmp_path, capsys, args, names):
    (tmp_path / "lone").mkdir()
    torch.save({"model": {}, "global_step": 1}, tmp_path / "lone" / "state.pt")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.toml").write_text('[model]\npreset = "lean"\n')
    torch.save({"model": ConvTasNet(ConvTasNetConfig.preset("tiny")).state_dict(), "global_step": 1},
               tmp_path / "run" / "state.pt")
    args = [a.format(tmp=tmp_path) for a in args]
    assert compare_main([*args, "--data", str(scenes)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("compare: error:") and names in err and "\n" not in err
