"""Oracle masks: the ceiling of masking, on generated scenes with the shipped model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.oracle import main as oracle_main, oracles, stft_mask

from scene_fixtures import short_scenes

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return short_scenes(tmp_path_factory, seed=3)


@pytest.mark.parametrize("window_ms", [4, 32])
def test_stft_oracles_pass_the_target_whole_and_remove_what_is_not_there(window_ms):
    x = torch.randn(1, 8000, generator=torch.Generator().manual_seed(0))
    for kind in ("iam", "psm"):
        enhance = stft_mask(window_ms, kind)
        assert torch.allclose(enhance(x, x), x, atol=1e-5)  # mask 1 everywhere: perfect reconstruction
        assert enhance(x, torch.zeros_like(x)).abs().max() == 0


def test_oracles_bound_the_model_and_its_own_mask_fits_the_target_better(scenes):
    r = oracles(scenes, "test", ROOT / "models" / "default.pt", windows_ms=(4, 32), steps=30)
    assert set(r) == {"stft_iam_4ms", "stft_psm_4ms", "stft_iam_32ms", "stft_psm_32ms", "model", "model_mask"}
    assert {m["segments"] for m in r.values()} == {2 * r["model"]["scenes"]}
    for name in ("stft_iam_4ms", "stft_psm_4ms", "stft_iam_32ms", "stft_psm_32ms"):
        assert r[name]["si_sdri_db"] > r["model"]["si_sdri_db"] + 3, name
    # Starting from the model's mask, fitting it to the target can only raise the SI-SDR.
    assert r["model_mask"]["si_sdri_db"] > r["model"]["si_sdri_db"] + 3


def test_oracle_command_rejects_bad_windows_before_any_work(scenes, capsys):
    assert oracle_main(["--data", str(scenes), "--windows-ms", "4,1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("oracle: error: --windows-ms '4,1'") and "\n" not in err
    assert oracle_main(["--data", str(scenes), "--split", "test", "--windows-ms", "4"]) == 0
    assert "stft_psm_4ms" in capsys.readouterr().out
