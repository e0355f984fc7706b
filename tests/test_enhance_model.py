"""The causal Conv-TasNet, its config and its checkpoint files."""

import numpy as np
import pytest
import torch

from rtha.enhance import (
    CheckpointError,
    ConvTasNet,
    ConvTasNetConfig,
    default_model_path,
    load_checkpoint,
    save_checkpoint,
)
from rtha.enhance.model import CumulativeLayerNorm
from rtha.errors import RthaError

SMALL = ConvTasNetConfig(N=24, L=8, B=16, H=32, P=3, X=3, R=2)


def small_model(seed=0, cfg=SMALL):
    torch.manual_seed(seed)
    return ConvTasNet(cfg).eval()


def test_presets_and_dict_round_trip():
    d = ConvTasNetConfig.preset("default")
    assert (d.N, d.L, d.B, d.H, d.P, d.X, d.R, d.n_src, d.mask, d.sample_rate) == (
        128, 16, 128, 256, 3, 7, 2, 1, "sigmoid", 16000,
    )  # fmt: skip
    tiny = ConvTasNetConfig.preset("tiny")
    assert tiny.sample_rate == 16000 and tiny.hop == tiny.L // 2
    assert ConvTasNetConfig.from_dict(tiny.to_dict()) == tiny
    with pytest.raises(ValueError, match="huge"):
        ConvTasNetConfig.preset("huge")


def test_tiny_preset_is_several_times_cheaper():
    def cost_per_second(cfg):
        m = ConvTasNet(cfg)
        per_frame = sum(p.numel() for n, p in m.named_parameters() if "weight" in n and p.dim() > 1)
        return per_frame * cfg.sample_rate / cfg.hop

    assert cost_per_second(ConvTasNetConfig.preset("default")) > 4 * cost_per_second(ConvTasNetConfig.preset("tiny"))


@pytest.mark.parametrize(
    "change, word",
    [(dict(L=15), "even"), (dict(mask="tanh"), "mask"), (dict(H=0), "H"), (dict(X=2.5), "X")],
)
def test_bad_config_values_name_the_field(change, word):
    with pytest.raises(ValueError, match=word):
        ConvTasNetConfig(**{**SMALL.to_dict(), **change})


def test_from_dict_names_unknown_and_missing_keys():
    d = SMALL.to_dict()
    with pytest.raises(ValueError, match="Q"):
        ConvTasNetConfig.from_dict({**d, "Q": 1})
    del d["H"]
    with pytest.raises(ValueError, match="H"):
        ConvTasNetConfig.from_dict(d)


@pytest.mark.parametrize("samples", [1, 3, 8, 9, 100, 1001])
def test_forward_keeps_length_for_every_source(samples):
    cfg = ConvTasNetConfig(**{**SMALL.to_dict(), "n_src": 2, "mask": "relu"})
    y = small_model(cfg=cfg)(torch.randn(3, samples))
    assert y.shape == (3, 2, samples)
    assert torch.isfinite(y).all()


def test_forward_rejects_wrong_rank():
    with pytest.raises(ValueError, match="batch, samples"):
        small_model()(torch.randn(100))


def test_output_depends_on_at_most_L_minus_1_future_samples():
    m = small_model()
    x = torch.randn(2, 600)
    L = SMALL.L
    with torch.inference_mode():
        y = m(x)
        for cut in (200, 203, 207):
            x2 = x.clone()
            x2[:, cut:] = torch.randn(2, 600 - cut)
            y2 = m(x2)
            assert torch.equal(y[..., : cut - L + 1], y2[..., : cut - L + 1])
        assert not torch.equal(y[..., :cut], y2[..., :cut])  # and it does look ahead within L-1


def test_batch_items_are_independent():
    m = small_model()
    x = torch.randn(3, 500)
    with torch.inference_mode():
        together = m(x)
        alone = torch.cat([m(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-6)


def test_cumulative_layer_norm_uses_all_channels_and_past_frames_only():
    torch.manual_seed(1)
    norm = CumulativeLayerNorm(4)
    with torch.no_grad():
        norm.gain.uniform_(0.5, 2.0)
        norm.bias.uniform_(-1.0, 1.0)
    x = torch.randn(2, 4, 30) * 3 + 1
    y = norm(x)
    xd = x.double()
    for k in (0, 1, 17, 29):
        past = xd[:, :, : k + 1].reshape(2, -1)
        mean = past.mean(1)
        var = past.var(1, unbiased=False)
        expect = (xd[:, :, k] - mean[:, None]) / torch.sqrt(var[:, None] + 1e-8) * norm.gain[:, 0].double() + norm.bias[
            :, 0
        ].double()
        torch.testing.assert_close(y[:, :, k].double(), expect, rtol=1e-5, atol=1e-5)


def test_checkpoint_round_trip_is_plain_torch_load(tmp_path):
    m = small_model(3)
    path = save_checkpoint(tmp_path / "m.pt", m, {"steps": np.int64(12), "sisdr": np.float32(7.5), "data": ["a"]})
    raw = torch.load(path, weights_only=True)
    assert raw["config"] == SMALL.to_dict()
    assert raw["metadata"] == {"steps": 12, "sisdr": 7.5, "data": ["a"]}
    loaded, meta = load_checkpoint(path)
    assert meta["steps"] == 12 and not loaded.training
    x = torch.randn(1, 300)
    with torch.inference_mode():
        assert torch.equal(loaded(x), m(x))
    assert not list(tmp_path.glob("*.partial"))


def test_checkpoint_rejects_non_plain_metadata(tmp_path):
    with pytest.raises(TypeError, match="metadata.when"):
        save_checkpoint(tmp_path / "m.pt", small_model(), {"when": object()})


def test_missing_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(RthaError, match="nothere.pt not found"):
        load_checkpoint(tmp_path / "nothere.pt")


def test_truncated_checkpoint_is_a_user_error(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", small_model(), {})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="m.pt"):
        load_checkpoint(path)


def test_mismatched_checkpoint_names_the_key_or_shape(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", small_model(), {})
    payload = torch.load(path, weights_only=True)

    bad = dict(payload, config={**payload["config"], "H": 40})
    torch.save(bad, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match=r"'blocks\.0\.in_conv\.weight' has shape \(32, 16, 1\).*\(40, 16, 1\)"):
        load_checkpoint(tmp_path / "shape.pt")

    state = dict(payload["state_dict"])
    del state["decoder.weight"]
    torch.save(dict(payload, state_dict=state), tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="'decoder.weight' missing"):
        load_checkpoint(tmp_path / "missing.pt")

    torch.save({k: v for k, v in payload.items() if k != "config"}, tmp_path / "nokey.pt")
    with pytest.raises(CheckpointError, match="no 'config' key"):
        load_checkpoint(tmp_path / "nokey.pt")

    torch.save(dict(payload, config={**payload["config"], "mask": "tanh"}), tmp_path / "cfg.pt")
    with pytest.raises(CheckpointError, match="bad config.*mask"):
        load_checkpoint(tmp_path / "cfg.pt")


def test_default_model_paths():
    assert default_model_path().name == "default.pt"
    assert default_model_path("tiny").parent.name == "models"
    with pytest.raises(RthaError):
        default_model_path("../etc/passwd")


def test_missing_default_model_says_how_to_get_one(monkeypatch, tmp_path):
    import rtha.enhance.checkpoint as ckpt

    monkeypatch.setattr(ckpt, "MODELS_DIR", tmp_path)
    with pytest.raises(RthaError, match="rtha train"):
        load_checkpoint(ckpt.default_model_path("default"))


def test_a_context_branch_is_optional_in_files_and_starts_as_a_no_op():
    ctx = ConvTasNetConfig(**{**SMALL.to_dict(), "ctx_window": 32, "ctx_bins": 17})
    assert ConvTasNetConfig.from_dict(ctx.to_dict()) == ctx and ctx.window == 32
    assert "ctx_window" not in SMALL.to_dict() and SMALL.window == SMALL.L  # files of older models unchanged
    plain = small_model()
    with_ctx = small_model(cfg=ctx)
    missing, unexpected = with_ctx.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(("context", "ctx_")) for k in missing)
    x = torch.randn(2, 999)
    with torch.no_grad():
        torch.testing.assert_close(with_ctx(x), plain(x), rtol=0, atol=0)
        with_ctx.ctx_proj.weight.normal_()
        assert (with_ctx(x) - plain(x)).abs().max() > 1e-3


def test_the_context_analysis_is_a_hann_dft_of_the_frames_past():
    from rtha.enhance.model import context_magnitudes, dft_bases

    bases = dft_bases(64, 33)
    x = torch.randn(64, dtype=torch.float64)
    t = torch.arange(64, dtype=torch.float64)
    ref = torch.fft.rfft(x * (0.5 - 0.5 * torch.cos(2 * torch.pi * (t + 0.5) / 64)))  # a symmetric Hann
    got = bases.double() @ x
    torch.testing.assert_close(got[:33], ref.real, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[33:], ref.imag, rtol=1e-5, atol=1e-5)
    mags = context_magnitudes(got.float()[None, :, None])[0, :, 0]
    torch.testing.assert_close(mags, (ref.abs() ** 2 + 1e-8).float() ** 0.15, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "change, word",
    [(dict(ctx_window=32), "both"), (dict(ctx_window=8, ctx_bins=3), "longer"),
     (dict(ctx_window=32, ctx_bins=18), "bins"), (dict(ctx_window=-1, ctx_bins=3), "ctx_window")],
)
def test_bad_context_values_name_the_field(change, word):
    with pytest.raises(ValueError, match=word):
        ConvTasNetConfig(**{**SMALL.to_dict(), **change})


def test_compressed_features_are_optional_in_files_and_change_only_what_the_separator_reads():
    pow_cfg = ConvTasNetConfig(**{**SMALL.to_dict(), "feature_power": 0.3})
    assert ConvTasNetConfig.from_dict(pow_cfg.to_dict()) == pow_cfg
    assert "feature_power" not in SMALL.to_dict()  # files of older models unchanged
    plain, compressed = small_model(), small_model(cfg=pow_cfg)
    compressed.load_state_dict(plain.state_dict())  # the same weights
    x = torch.randn(2, 999)
    with torch.no_grad():
        w, _ = plain.encode(x)
        assert (compressed.masks(w) - plain.masks(w)).abs().max() > 1e-3
        m = compressed.masks(w)[:, :1]
        torch.testing.assert_close(compressed(x), compressed.decode(w.unsqueeze(1) * m, 999))


@pytest.mark.parametrize("power", [0.0, -0.3, 1.5, True, "0.3"])
def test_a_bad_feature_power_names_the_field(power):
    with pytest.raises(ValueError, match="feature_power"):
        ConvTasNetConfig(**{**SMALL.to_dict(), "feature_power": power})
