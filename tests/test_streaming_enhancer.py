"""StreamingEnhancer: block streaming equals the offline model, delayed by its latency."""

import numpy as np
import pytest
import torch

from rtha.chain import Chain
from rtha.enhance import PRESETS, ConvTasNet, ConvTasNetConfig, StreamingEnhancer, save_checkpoint
from rtha.enhance.model import context_magnitudes
from rtha.enhance.streaming import MAX_FRAMES_PER_STEP
from rtha.errors import RthaError
from rtha.stage import BlockShapeError, SoftClip

SMALL = ConvTasNetConfig(N=32, L=16, B=16, H=32, P=3, X=3, R=2)
BACKENDS = ["numba", "torch"]


def random_model(cfg=SMALL, seed=0):
    torch.manual_seed(seed)
    return ConvTasNet(cfg).eval()


def offline(model, x, source=0):
    with torch.inference_mode():
        return model(torch.from_numpy(x))[:, source].numpy()


def stream(enhancer, x, sizes):
    """Run ``x (channels, samples)`` through ``enhancer`` in blocks of the given sizes (cycled)."""
    out, i, k = [], 0, 0
    while i < x.shape[1]:
        n = sizes[k % len(sizes)]
        out.append(enhancer.process_block(x[:, i : i + n]))
        i, k = i + n, k + 1
    return np.concatenate(out, axis=1)


def assert_delayed_equal(y, ref, delay, rtol=1e-6):
    """``y`` is ``ref`` delayed by ``delay`` samples, to ``rtol`` of its peak (float32 sums run in other orders)."""
    assert y.shape == ref.shape
    assert np.abs(y[:, delay:] - ref[:, : ref.shape[1] - delay]).max() <= rtol * np.abs(ref).max()
    assert not y[:, :delay].any()


def signal(channels=2, samples=3000, seed=1):
    return np.random.default_rng(seed).standard_normal((channels, samples)).astype(np.float32)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The offline model and the torch engine on one thread: a pool's threads wait on each other on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model():
    return random_model()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("block", [1, 7, 16, 64, 160, 1000])
def test_stereo_stream_equals_offline(model, backend, block):
    x = signal(samples=1200 if block < 16 else 3000)
    enh = StreamingEnhancer(model, backend=backend)
    assert enh.latency == SMALL.L - 1 and enh.fs == 16000
    assert_delayed_equal(stream(enh, x, [block]), offline(model, x), enh.latency)


@pytest.mark.parametrize("backend", BACKENDS)
def test_irregular_blocks_equal_offline(model, backend):
    x = signal(samples=4000, seed=2)
    sizes = list(np.random.default_rng(3).integers(1, 300, 40))
    enh = StreamingEnhancer(model, backend=backend)
    assert_delayed_equal(stream(enh, x, sizes), offline(model, x), enh.latency)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_streams_like_the_offline_model(preset):
    model = random_model(ConvTasNetConfig.preset(preset))
    x = signal(samples=3200, seed=4) * 0.1  # whole hops of every preset (8, 16, 32, 40 samples)
    ref = offline(model, x)
    hop = model.cfg.hop
    for backend in BACKENDS:
        for block_size, sizes in ((None, [1, 37, 64, 500]), (4 * hop, [4 * hop, hop, 20 * hop])):
            enh = StreamingEnhancer(model, backend=backend, block_size=block_size)
            assert_delayed_equal(stream(enh, x, sizes), ref, enh.latency)


@pytest.mark.parametrize("backend", BACKENDS)
def test_compressed_features_stream_like_the_offline_model(backend):
    m = random_model(ConvTasNetConfig(**{**SMALL.to_dict(), "feature_power": 0.3}), seed=5)
    x = signal(samples=3000, seed=16) * 0.01  # quiet: the compression's eps floor is reached
    x[:, 1000:1400] = 0.0  # and digital silence
    for sizes in ([1, 37, 64, 500], [16]):
        enh = StreamingEnhancer(m, backend=backend)
        assert_delayed_equal(stream(enh, x, sizes), offline(m, x), enh.latency, rtol=1e-5)


def context_model(seed=0):
    """SMALL with a 48-sample context analysis of 9 bins, its projection made non-zero (it starts at zero)."""
    m = random_model(ConvTasNetConfig(**{**SMALL.to_dict(), "ctx_window": 48, "ctx_bins": 9}), seed)
    with torch.no_grad():
        m.ctx_proj.weight.normal_(0.0, 0.5)
        m.ctx_norm.gain.normal_(1.0, 0.3)
    return m


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_context_analysis_streams_like_the_offline_model_at_the_same_latency(backend):
    m = context_model()
    x = signal(samples=MAX_FRAMES_PER_STEP * SMALL.hop + 904, seed=15)  # whole hops: aligned blocks
    ref = offline(m, x)
    with torch.no_grad():
        m.ctx_proj.weight.zero_()
    assert np.abs(offline(m, x) - ref).max() > 0.01 * np.abs(ref).max()  # the context changes the output
    m = context_model()
    # rtol 3e-5: the random projection (9 bins x N(0, 0.5)) amplifies the float32 rounding of the DFT sums
    for block_size, sizes in ((None, [1, 7, 64, 500, x.shape[1]]), (64, [64, 8, 160])):
        enh = StreamingEnhancer(m, backend=backend, block_size=block_size)
        assert enh.latency == (SMALL.L - 1 if block_size is None else SMALL.L - SMALL.hop)
        assert_delayed_equal(stream(enh, x, sizes), ref, enh.latency, rtol=3e-5)
        enh.reset()
        assert_delayed_equal(stream(enh, x, sizes[::-1]), ref, enh.latency, rtol=3e-5)
    # the context's cLN (the last layer) has the statistics of all its magnitudes so far
    with torch.inference_mode():
        padded = torch.nn.functional.pad(torch.from_numpy(x), (48 - SMALL.hop, 0))
        c = context_magnitudes(m.context(padded[:, None, :])).double()  # every frame the stream has taken
    stats = enh.cln_statistics()
    assert stats.shape == (2 + 2 * SMALL.R * SMALL.X, 2, 2)
    np.testing.assert_allclose(stats[-1, 0], [c[0].mean().item(), c[0].var(unbiased=False).item()], rtol=1e-5)


def test_a_block_longer_than_the_work_buffers_runs_in_chunks(model):
    x = signal(samples=MAX_FRAMES_PER_STEP * SMALL.hop * 2 + 77, seed=14)
    for backend in BACKENDS:
        enh = StreamingEnhancer(model, backend=backend)  # buffers sized for the first block, then grown
        y = np.concatenate([enh.process_block(x[:, :64]), enh.process_block(x[:, 64:])], axis=1)
        assert_delayed_equal(y, offline(model, x), enh.latency)


@pytest.mark.parametrize("backend", BACKENDS)
def test_aligned_block_size_lowers_latency_to_L_minus_S(model, backend):
    x = signal(samples=3200, seed=5)
    enh = StreamingEnhancer(model, backend=backend, block_size=64)
    assert enh.latency == SMALL.L - SMALL.hop
    assert_delayed_equal(stream(enh, x, [64, 16, 8, 32]), offline(model, x), enh.latency)
    enh.reset()
    enh.process_block(x[:, :64])
    with pytest.raises(BlockShapeError, match="block_size=None"):
        enh.process_block(x[:, :7])
    assert StreamingEnhancer(model, block_size=60).latency == SMALL.L - 1


def identity_model(L=16):
    """A model whose offline output is its input: +/- unit encoder bases, masks of 1."""
    cfg = ConvTasNetConfig(N=2 * L, L=L, B=8, H=8, P=3, X=2, R=1)
    m = ConvTasNet(cfg).eval()
    with torch.no_grad():
        eye = torch.eye(L)
        m.encoder.weight.copy_(torch.cat([eye, -eye])[:, None, :])
        m.decoder.weight.copy_(0.5 * torch.cat([eye, -eye])[:, None, :])  # two frames overlap each sample
        m.mask_conv.weight.zero_()
        m.mask_conv.bias.fill_(40.0)  # sigmoid(40) == 1 in float32
    return m


@pytest.mark.parametrize("block_size, block", [(None, 7), (None, 1), (64, 64), (32, 16)])
def test_impulse_arrives_after_exactly_the_reported_latency(block_size, block):
    m = identity_model()
    x = np.zeros((1, 640), np.float32)
    x[0, 101] = 1.0
    np.testing.assert_allclose(offline(m, x), x, atol=1e-6)
    enh = StreamingEnhancer(m, block_size=block_size)
    y = stream(enh, x, [block])
    assert int(np.argmax(np.abs(y[0]))) - 101 == enh.latency
    assert y[0, 101 + enh.latency] == pytest.approx(1.0, abs=1e-6)


def test_reset_and_process_reproduce_the_stream(model):
    x = signal(channels=1, samples=2000, seed=6)
    enh = StreamingEnhancer(model)
    first = stream(enh, x, [100])
    enh.reset()
    np.testing.assert_array_equal(stream(enh, x, [100]), first)
    np.testing.assert_allclose(enh.process(x), first, atol=1e-6)
    enh.reset()
    assert enh.process_block(signal(channels=2, samples=50)).shape == (2, 50)  # channel count re-fixed on reset


def test_second_source_and_nonfinite_input():
    cfg = ConvTasNetConfig(**{**SMALL.to_dict(), "n_src": 2, "mask": "relu"})
    m = random_model(cfg, seed=7)
    x = signal(samples=1500, seed=8)
    enh = StreamingEnhancer(m, source=1)
    assert_delayed_equal(stream(enh, x, [50]), offline(m, x, source=1), enh.latency)
    enh.reset()
    bad = x[:, :100].copy()
    bad[0, 5] = np.nan
    assert np.isfinite(enh.process_block(bad)).all() and enh.nonfinite_count == 1


def test_loads_a_checkpoint_and_prepends_to_a_chain(model, tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", model, {"steps": 0})
    enh = StreamingEnhancer.from_checkpoint(path)
    chain = Chain(enh, SoftClip())
    assert chain.latency == enh.latency and chain.fs == 16000
    x = signal(samples=800, seed=9)
    np.testing.assert_allclose(chain.process(x), np.tanh(StreamingEnhancer(model).process(x)), atol=1e-6)
    with pytest.raises(RthaError, match="not found"):
        StreamingEnhancer.from_checkpoint(tmp_path / "none.pt")


@pytest.mark.parametrize("backend", BACKENDS)
def test_dry_mix_adds_the_input_in_line_with_the_output(model, backend, tmp_path):
    x = signal(samples=2000, seed=4)
    ref = 0.7 * offline(model, x) + 0.3 * x
    for block_size, sizes in ((None, [1, 13, 160]), (64, [64, 128])):
        enh = StreamingEnhancer(model, backend=backend, dry_mix=0.3, block_size=block_size)
        assert_delayed_equal(stream(enh, x, sizes), ref, enh.latency)
    # the model file's stored value is the default; an explicit value wins
    path = save_checkpoint(tmp_path / "m.pt", model, {"dry_mix": 0.3})
    assert StreamingEnhancer.from_checkpoint(path).dry_mix == 0.3
    assert StreamingEnhancer.from_checkpoint(path, dry_mix=0.0, backend=backend).dry_mix == 0.0
    assert StreamingEnhancer(path).dry_mix == 0.3  # a path given to the constructor reads the file the same way
    assert StreamingEnhancer(model).dry_mix == 0.0
    bad = save_checkpoint(tmp_path / "bad.pt", model, {"dry_mix": 5.0})
    with pytest.raises(RthaError, match=r"bad\.pt stores dry_mix 5\.0"):
        StreamingEnhancer.from_checkpoint(bad)
    assert StreamingEnhancer.from_checkpoint(bad, dry_mix=0.1).dry_mix == 0.1


@pytest.mark.parametrize(
    "kw, named",
    [
        ({"backend": "blas"}, "backend = 'blas'"),
        ({"source": 1}, "source = 1"),
        ({"source": -1}, "source = -1"),
        ({"block_size": 0}, "block_size = 0"),
        ({"block_size": 6.5}, "block_size = 6.5"),
        ({"dry_mix": 1.5}, "dry_mix = 1.5"),
        ({"dry_mix": "0.3"}, "dry_mix = '0.3'"),
        ({"cln_horizon_s": 0.1}, "cln_horizon_s = 0.1"),
        ({"threads": 0}, "threads = 0"),
        ({"device": "warp-drive"}, "device = 'warp-drive'"),
    ],
)
def test_a_bad_argument_is_one_line_naming_the_value(model, kw, named):
    with pytest.raises(RthaError) as e:
        StreamingEnhancer(model, **kw)
    assert named in str(e.value) and "\n" not in str(e.value)


def test_cln_horizon_forgets_old_statistics_the_same_way_in_both_engines(model):
    x = signal(samples=4000, seed=10)
    x[:, 2000:] *= 30.0  # a level step
    exact = StreamingEnhancer(model).process(x)
    outs = [stream(StreamingEnhancer(model, backend=b, cln_horizon_s=1.0), x, [160]) for b in BACKENDS]
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-4, rtol=1e-4)
    assert np.abs(outs[0] - exact).max() > 1e-3
    with pytest.raises(RthaError, match="cln_horizon_s"):
        StreamingEnhancer(model, cln_horizon_s=0.1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
@pytest.mark.parametrize("block", [1, 7, 64, 1000])
def test_cuda_stream_equals_offline(block):
    model = random_model()
    x = signal(samples=2000, seed=11)
    enh = StreamingEnhancer(model.to("cuda"), device="cuda")
    assert enh.backend == "torch"
    ref = offline(model.to("cpu"), x)
    assert_delayed_equal(stream(enh, x, [block]), ref, enh.latency)


def test_cuda_request_without_gpu_is_a_user_error(model):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RthaError, match="CUDA"):
        StreamingEnhancer(model, device="cuda")


@pytest.mark.parametrize("fs_file", [16000, 22050])
def test_enhance_command_equals_the_offline_model(model, tmp_path, fs_file):
    import soundfile as sf
    from scipy.signal import resample_poly

    from rtha.cli import main

    ckpt = save_checkpoint(tmp_path / "m.pt", model, {})
    x = signal(samples=9000, seed=12) * 0.1
    sf.write(tmp_path / "in.wav", x.T, fs_file, subtype="FLOAT")
    out = tmp_path / "out.wav"
    assert main(["enhance", str(tmp_path / "in.wav"), "--out", str(out), "--model", str(ckpt)]) == 0
    y, fs = sf.read(out, dtype="float32", always_2d=True)
    assert fs == fs_file and y.shape == (9000, 2)
    if fs_file == 16000:
        ref = offline(model, x)
    else:  # the command resamples to the model rate and back, as resample_poly does
        up, down = 320, 441
        ref = resample_poly(offline(model, resample_poly(x, up, down, axis=1).astype(np.float32)), down, up, axis=1)
    np.testing.assert_allclose(y.T, ref[:, :9000], atol=1e-5)
    assert main(["enhance", str(tmp_path / "in.wav"), "--out", str(out), "--model", str(ckpt)]) == 2  # no --force


def test_enhance_command_reports_a_missing_model(tmp_path, capsys):
    import soundfile as sf

    from rtha.cli import main

    sf.write(tmp_path / "in.wav", np.zeros(100, np.float32), 16000)
    assert main(["enhance", str(tmp_path / "in.wav"), "--out", str(tmp_path / "o.wav"), "--model", "nomodel"]) == 2
    assert "nomodel.pt not found" in capsys.readouterr().err
    assert not (tmp_path / "o.wav").exists()


@pytest.mark.parametrize("backend", BACKENDS)
def test_cln_statistics_are_those_of_all_frames_so_far(model, backend):
    x = signal(channels=1, samples=2000, seed=13)
    enh = StreamingEnhancer(model, backend=backend)
    stream(enh, x, [100])
    with torch.inference_mode():
        padded = torch.nn.functional.pad(torch.from_numpy(x), (SMALL.L - SMALL.hop, 0))
        w = torch.relu(model.encoder(padded[:, None, :])).double()
    stats = enh.cln_statistics()
    assert stats.shape == (1 + 2 * SMALL.R * SMALL.X, 1, 2)
    np.testing.assert_allclose(stats[0, 0], [w.mean().item(), w.var(unbiased=False).item()], rtol=1e-6)


def test_threads_are_checked_and_set_up_by_the_caller(model):
    from rtha.enhance.streaming import set_threads

    before = torch.get_num_threads()
    try:
        set_threads(2)
        assert StreamingEnhancer(model, threads=1).threads == 1
        assert torch.get_num_threads() == 2  # a constructor changes no process-wide setting
        set_threads(1)
        assert torch.get_num_threads() == 1
        with pytest.raises(RthaError, match="threads"):
            StreamingEnhancer(model, threads=0)
        with pytest.raises(RthaError, match="threads"):
            set_threads(0)
    finally:
        set_threads(before)


DENSE_CHECK = """
import numpy as np
from rtha.enhance.kernels import WIDE_TILES, dense
rng = np.random.default_rng(0)
worst = 0.0
for M in range(1, 10):
    for N in (1, 5, 8, 13):
        x = rng.standard_normal((M, 37)).astype(np.float32)
        w = rng.standard_normal((N, 37)).astype(np.float32)
        b = rng.standard_normal(N).astype(np.float32)
        ref = x.astype(np.float64) @ w.T.astype(np.float64) + b
        for slope, add in ((np.float32(0.25), False), (np.float32(1.0), True)):
            out = rng.standard_normal((M, N)).astype(np.float32)
            want = out + ref if add else np.where(ref < 0, slope * ref, ref)
            dense(x, w, b, slope, out, add)
            worst = max(worst, float(np.abs(out - want).max()))
print(WIDE_TILES, worst)
"""


def test_dense_tiles_compute_prelu_and_accumulate_on_this_cpu_and_on_avx2(tmp_path):
    """Every row count and a ragged last tile, with the tiles of this CPU and of AVX2 (a fresh process,
    own numba cache): AVX-512 machines run 4-row tiles, others 2-row ones."""
    import os
    import subprocess
    import sys

    avx2 = {"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": "", "NUMBA_CACHE_DIR": str(tmp_path)}
    for extra, wide in (({}, None), (avx2, "False")):
        run = subprocess.run([sys.executable, "-c", DENSE_CHECK], env={**os.environ, **extra},
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        tiles, worst = run.stdout.split()
        assert wide is None or tiles == wide
        assert float(worst) < 1e-4
