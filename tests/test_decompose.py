"""Output decomposition into target, noise and artefacts, on generated scenes with the shipped model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from training.decompose import MEASURES, ear_measures, main as decompose_main, split_output

from scene_fixtures import short_scenes

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return short_scenes(tmp_path_factory, seed=4)


def test_the_split_recovers_the_gains_and_the_artefact():
    g = torch.Generator().manual_seed(0)
    s, n, art = (torch.randn(16000, generator=g) for _ in range(3))
    a, b, r = split_output(0.7 * s + 0.2 * n + 0.05 * art, s, n)
    assert a == pytest.approx(0.7, abs=0.01) and b == pytest.approx(0.2, abs=0.01)
    assert torch.allclose(r.float(), 0.05 * art, atol=0.01)
    m = ear_measures(s + n, s + n, s)  # the mixture itself: everything kept, no artefact
    assert m["target_gain"] == pytest.approx(1.0) and m["noise_gain"] == pytest.approx(1.0)
    assert m["si_sdri_db"] == pytest.approx(0.0, abs=1e-4) and m["sar_db"] > 100
    m = ear_measures(0.5 * s, s + n, s)  # the target alone, at half level
    assert m["target_gain"] == pytest.approx(0.5) and abs(m["noise_gain"]) < 1e-6 and m["snr_out_db"] > 100


def test_the_command_splits_the_model_and_the_oracle_by_input_snr(scenes, capsys):
    model = ROOT / "models" / "default.pt"
    assert decompose_main([str(model), "--data", str(scenes), "--split", "test", "--oracle", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)["results"]
    assert set(r) == {str(model), "stft_psm_4ms"}
    for d in r.values():
        assert set(d["all"]) == {"ears", *MEASURES}
        assert sum(m["ears"] for m in d["bands"].values()) == d["all"]["ears"] == 2 * len(
            json.loads((scenes / "metadata" / "scenes.test.json").read_text()))
        lows = [float(b.split("..")[0]) for b in d["bands"]]
        assert lows == sorted(lows)
    # The oracle knows the target: it keeps less noise than the model and gains more.
    assert r["stft_psm_4ms"]["all"]["noise_gain"] < r[str(model)]["all"]["noise_gain"]
    assert r["stft_psm_4ms"]["all"]["si_sdri_db"] > r[str(model)]["all"]["si_sdri_db"]
    assert decompose_main([str(model), "--data", str(scenes), "--split", "test", "--max-scenes", "2"]) == 0
    assert "SI-SDRi" in capsys.readouterr().out


def test_a_bad_model_file_is_one_line_before_any_work(scenes, tmp_path, capsys):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    assert decompose_main([str(ROOT / "models" / "default.pt"), str(bad), "--data", str(scenes)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("decompose: error:") and "broken.pt" in err and "\n" not in err
