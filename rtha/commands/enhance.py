"""``rtha enhance IN.wav --out OUT.wav [--model M]``: the enhancer alone over a file, offline.

No amplification: for listening to the enhancer and for SI-SDR checks.  The
file is resampled to the model's rate (and back) when the rates differ, each
channel is enhanced independently (channels are the model's batch), and the
output is aligned with the input (the streaming engine's latency is removed),
equal to the offline model's output to float32 precision.  The file streams
through in blocks, so long recordings need little memory.

The output is 32-bit float where the format allows (WAV); FLAC holds 24-bit
integers, so samples beyond ±1 clip there, and a warning says how many.
Input samples beyond ±:data:`INPUT_LIMIT` are clamped (and counted): far
beyond any recording, they would only overflow the model's arithmetic.
SIGTERM stops as Ctrl-C does; the partial output is a valid file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import RthaError
from .common import (
    add_dry_mix_arg,
    add_threads_arg,
    check_threads,
    dry_mix_from_args,
    output_path,
    setup_threads,
    sigterm_as_interrupt,
)

BLOCK_S = 1.0  # seconds per block: long blocks cost the least per sample
MAX_CHANNELS = 16
#: Input samples beyond ±INPUT_LIMIT (80 dB above full scale) are clamped: the
#: enhancer alone takes hot input as it is, but values like 3e38 overflow it.
INPUT_LIMIT = 1e4


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "enhance",
        help="run the enhancer alone over an audio file (offline, no amplification)",
        description="Enhance an audio file with the causal Conv-TasNet alone (no NAL-R, no compression). "
        "Each channel is enhanced on its own; the file is resampled to the model's rate and back if needed; "
        "the output has the input's rate, channels and length, time-aligned with it.",
    )
    p.add_argument("input", type=Path, metavar="IN", help="audio file to enhance (WAV, FLAC, ...)")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="OUT.wav",
        help="enhanced audio: 32-bit float where the format allows (.wav); .flac holds 24-bit integers "
        "(samples beyond ±1 clip, with a warning)",
    )
    p.add_argument(
        "--model",
        default="default",
        metavar="FILE|NAME",
        help="checkpoint file, or the name of a shipped model in models/ (default, tiny) (default: default)",
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the model runs (default: cpu)")
    add_threads_arg(p)
    add_dry_mix_arg(p)
    p.add_argument("--force", action="store_true", help="overwrite OUT")
    p.set_defaults(func=run)


def model_path(spec: str) -> Path:
    """``--model``: an existing file, or the name of a shipped model."""
    from ..enhance import default_model_path

    path = Path(spec)
    if path.is_file() or path.suffix or len(path.parts) > 1:
        return path
    return default_model_path(spec)


def run(args: argparse.Namespace) -> int:
    with sigterm_as_interrupt():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..audio_io import AudioReader, AudioWriter, output_format
    from ..dsp.resample import StreamingResampler
    from ..enhance import StreamingEnhancer, load_checkpoint

    out = output_path(args.out, args.force)
    output_format(out)  # an extension libsndfile cannot write fails now, not after the model loads
    if out.resolve() == args.input.resolve():
        raise RthaError(f"--out {out} is the input file; choose another output file")
    threads = check_threads(args)
    with AudioReader(args.input, max_channels=MAX_CHANNELS) as probe:  # check the file before loading a model
        fs_file, channels, frames_file = probe.fs_file, probe.channels, probe.frames_file
    path = model_path(args.model)
    model, meta = load_checkpoint(path)
    dry_mix = dry_mix_from_args(args, meta, path)
    setup_threads(threads)
    enhancer = StreamingEnhancer(model, device=args.device, threads=threads, dry_mix=dry_mix)
    fs = enhancer.fs
    back = StreamingResampler(fs, fs_file, channels) if fs != fs_file else None
    skip = enhancer.latency  # the stream lags the offline output by this much
    written = 0

    def write(y, writer) -> None:
        nonlocal written
        y = y[:, : frames_file - written]
        writer.write(y)
        written += y.shape[1]

    def emit(y, writer) -> None:
        write(back.process(y) if back is not None else y, writer)

    reader = AudioReader(args.input, fs=fs, max_channels=MAX_CHANNELS, limit=INPUT_LIMIT)
    with reader, AudioWriter(out, fs_file, channels) as w:
        for block in reader.blocks(round(BLOCK_S * fs)):
            y = enhancer.process_block(block)
            y, skip = y[:, skip:], max(0, skip - y.shape[1])
            emit(y, w)
        emit(enhancer.process_block(np.zeros((channels, enhancer.latency), np.float32))[:, skip:], w)
        if back is not None:
            write(back.flush(), w)
    resampled = f", resampled {fs_file} -> {fs} -> {fs_file} Hz" if fs != fs_file else ""
    print(
        f"rtha: enhanced {args.input} ({channels} ch, {frames_file / fs_file:.2f} s{resampled}) "
        f"with {path} -> {out}",
        file=sys.stderr,
    )
    if reader.nonfinite_count:
        print(f"rtha: warning: {reader.nonfinite_count} NaN/Inf input samples were replaced by 0", file=sys.stderr)
    if reader.clamped_count:
        print(f"rtha: warning: {reader.clamped_count} input samples beyond ±{INPUT_LIMIT:g} were clamped", file=sys.stderr)
    if w.clipped:
        print(
            f"rtha: warning: {out}: {w.clipped} samples beyond ±1 were clipped ({w.subtype}: this format holds "
            "no float samples; write .wav for 32-bit float)",
            file=sys.stderr,
        )
    return 0
