"""Scene generator and Clarity-format reader, on a synthetic corpus written in the test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rtha.audiogram import load_listeners
from rtha.data import ClarityDataset, SceneSegments
from rtha.data.scenes import SceneConfig, generate
from rtha.errors import RthaError

from scene_fixtures import write_corpus

ROOT = Path(__file__).resolve().parents[1]
SHORT = dict(duration_s=2.0, target_lead_s=0.5, target_tail_s=0.25)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def scenes(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes")
    generate(corpus, out, 10, seed=3, cfg=SceneConfig(**SHORT, subtype="FLOAT"))
    return out


def test_generator_writes_the_clarity_layout(scenes):
    meta = scenes / "metadata"
    for split, n in (("train", 8), ("dev", 1), ("test", 1)):
        listed = json.loads((meta / f"scenes.{split}.json").read_text())
        assert len(listed) == n
        pairs = json.loads((meta / f"scenes_listeners.{split}.json").read_text())
        assert set(pairs) == {s["scene"] for s in listed}
        for s in listed:
            for kind in ("mix", "target", "target_anechoic", "interferer"):
                info = sf.info(scenes / split / "scenes" / f"{s['scene']}_{kind}_CH1.wav")
                assert (info.channels, info.samplerate, info.frames) == (2, 16000, 32000)
    listeners = load_listeners(meta / "listeners.json")
    assert all(ids and set(ids) <= set(listeners) for ids in pairs.values())
    gen = json.loads((meta / "generation.json").read_text())
    spk = gen["speakers"]
    assert not (set(spk["train"]) & set(spk["dev"]) or set(spk["train"]) & set(spk["test"]))


def test_scene_signals_add_up_and_meet_the_snr(scenes):
    data = ClarityDataset(scenes, "train")
    for s in data.scenes:
        (mix, target, interferer), fs = data.read_pair(s["scene"], ("mix", "target", "interferer"))
        np.testing.assert_allclose(mix, target + interferer, atol=1e-6)
        t0, t1 = s["target"]["time_start"], s["target"]["time_end"]
        assert t0 == 8000 and t1 <= 32000 - 4000
        assert np.abs(target[:, :t0]).max() < 1e-3 * np.abs(target).max() + 1e-6  # silent before onset
        snr = 10 * np.log10(np.sum(target[:, t0:t1] ** 2) / np.sum(interferer[:, t0:t1] ** 2))
        assert snr == pytest.approx(s["SNR"], abs=0.05)
        assert -6 <= s["SNR"] <= 12 and 1 <= len(s["interferers"]) <= 3


def test_generation_is_reproducible_and_independent_of_workers(corpus, tmp_path):
    cfg = SceneConfig(**SHORT)
    a = generate(corpus, tmp_path / "a", 6, seed=5, cfg=cfg, workers=1)
    b = generate(corpus, tmp_path / "b", 6, seed=5, cfg=cfg, workers=2)
    assert a == b
    for s in a["train"]:
        name = f"train/scenes/{s['scene']}_mix_CH1.wav"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    c = generate(corpus, tmp_path / "c", 6, seed=6, cfg=cfg)
    assert c != a
    # One split alone: the same scenes as in the full run (each keeps its index and seed).
    d = generate(corpus, tmp_path / "d", 6, seed=5, cfg=cfg, only=("dev",))
    assert list(d) == ["dev"] and d["dev"] == a["dev"]
    for s in a["dev"]:
        name = f"dev/scenes/{s['scene']}_mix_CH1.wav"
        assert (tmp_path / "d" / name).read_bytes() == (tmp_path / "a" / name).read_bytes()
    assert not list((tmp_path / "d" / "train" / "scenes").iterdir())
    with pytest.raises(RthaError, match="splits"):
        generate(corpus, tmp_path / "e", 6, seed=5, cfg=cfg, only=("valid",))


def test_other_rates_and_dry_scenes(corpus, tmp_path):
    generate(corpus, tmp_path, 4, seed=1, cfg=SceneConfig(**SHORT, fs=22050, rirs="none"))
    data = ClarityDataset(tmp_path, "train")
    x, fs = data.read(data.names[0], "mix")
    assert fs == 22050 and x.shape == (2, 44100) and x.dtype == np.float32
    assert all(s["room"] == "anechoic" for s in data.scenes)
    seg = SceneSegments(data, sample_rate=16000)  # whole scenes, resampled
    mix, target = seg[0]
    assert mix.shape == target.shape == (32000,)


def test_make_scenes_cli(corpus, tmp_path):
    tool = [sys.executable, str(ROOT / "tools" / "make_scenes.py")]
    assert "--snr" in subprocess.run(tool + ["--help"], capture_output=True, text=True, check=True).stdout
    args = ["--corpus", str(corpus), "--out", str(tmp_path / "s"), "--num-scenes", "3", "--seed", "1",
            "--duration", "2", "--target-lead", "0.5", "--target-tail", "0.25", "--snr", "0,3"]
    done = subprocess.run(tool + args, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert all(0 <= s["SNR"] <= 3 for s in ClarityDataset(tmp_path / "s", "train").scenes)
    again = subprocess.run(tool + args, capture_output=True, text=True)  # never overwrite silently
    assert again.returncode == 2 and "--force" in again.stderr
    bad = subprocess.run(tool + args[:2] + ["--out", str(tmp_path / "t"), "--num-scenes", "3", "--seed", "1",
                                            "--duration", "1"], capture_output=True, text=True)
    assert bad.returncode == 2 and "target" in bad.stderr


def test_reader_errors_name_what_is_wrong(scenes, tmp_path):
    with pytest.raises(RthaError, match="does not exist"):
        ClarityDataset(tmp_path / "nowhere", "train")
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(RthaError, match="is a file"):
        ClarityDataset(tmp_path / "a_file", "train")
    with pytest.raises(RthaError, match=r"no split 'eval'.*splits found: dev, test, train"):
        ClarityDataset(scenes, "eval")
    data = ClarityDataset(scenes, "dev")
    with pytest.raises(RthaError, match="CH3.wav not found"):
        data.read(data.names[0], "mix", channel=3)
    with pytest.raises(RthaError, match="unknown signal kind"):
        data.path(data.names[0], "noise")
    with pytest.raises(RthaError, match="not in the dev split"):
        data.read("S99999", "mix")


def test_reader_rejects_mismatched_lengths_and_rates(scenes, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(scenes, root)
    data = ClarityDataset(root, "dev")
    name = data.names[0]
    x, fs = data.read(name, "target")
    sf.write(data.path(name, "target"), x.T[:-10], fs)
    with pytest.raises(RthaError, match="different lengths"):
        data.read_pair(name)
    sf.write(data.path(name, "target"), x.T, 8000)
    with pytest.raises(RthaError, match="different sample rates"):
        data.read_pair(name)


def test_segments_crop_deterministically_per_epoch(scenes):
    seg = SceneSegments(scenes, "train", sample_rate=16000, segment_s=0.5, ears="both", seed=1)
    assert len(seg) == 16  # 8 scenes x 2 ears
    a, _ = seg[3]
    assert a.shape == (8000,)
    assert np.array_equal(seg[3][0], a)
    seg.set_epoch(1)
    assert not np.array_equal(seg[3][0], a)
    seg.set_epoch(0)
    assert np.array_equal(seg[3][1], SceneSegments(scenes, "train", segment_s=0.5, seed=1)[3][1])
    left = SceneSegments(scenes, "train", segment_s=None, ears="left", target="target_anechoic")
    mix, target = left[0]
    assert len(left) == 8 and mix.shape == target.shape == (32000,)
    with pytest.raises(RthaError, match="training target"):
        SceneSegments(scenes, "train", target="interferer")
    assert len(SceneSegments(scenes, "train", ears="left", max_scenes=2)) == 2
    for bad in (0, -1):  # not a slice from the end
        with pytest.raises(RthaError, match=f"max scenes {bad}; expected 1 or more"):
            SceneSegments(scenes, "train", max_scenes=bad)
