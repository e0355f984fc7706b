"""Block-wise audio file reading and writing (soundfile), with streaming resampling.

Files are never loaded whole: :class:`AudioReader` yields ``(channels, samples)``
float32 blocks of an exact size, resampled on the fly when the file's rate is not
the rate asked for, so files longer than memory stream through.  Input problems
raise :class:`AudioFileError` with one line naming the file:

* missing or unreadable file, a folder, an unknown format;
* zero-length file (no samples);
* more than ``max_channels`` channels (the chain takes mono, or left + right);
* NaN/Inf samples are not an error: they are replaced by 0 and counted in
  ``AudioReader.nonfinite_count``; with ``limit``, samples beyond ``±limit``
  are clamped to it and counted in ``AudioReader.clamped_count``.

:class:`AudioWriter` writes float blocks as they come and keeps the file's
header up to date after every block, so a partial file stays valid whatever
stops the writer (an error, Ctrl-C, SIGTERM, even SIGKILL or a power cut once
the data reached the disk). Formats without float samples (FLAC) get 24-bit
integers; samples beyond ±1 are then clipped and counted (``AudioWriter.clipped``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import RthaError

#: Frames read from the file at a time when resampling.
READ_CHUNK = 8192


class AudioFileError(RthaError):
    """An audio file that is missing, unreadable, empty or of the wrong shape."""


def _soundfile():
    try:
        import soundfile
    except OSError as e:  # libsndfile missing
        raise RthaError(f"cannot load libsndfile ({e}); install it (Debian: apt install libsndfile1)") from None
    return soundfile


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[-1]


def clamp_block(x: np.ndarray, limit: float) -> int:
    """Clamp ``x`` in place to ``±limit``; returns how many samples were beyond it (NaN is left alone).

    Two reductions and no temporary array when every sample is within (the usual case).
    """
    if x.size == 0 or (x.max() <= limit and x.min() >= -limit):
        return 0
    with np.errstate(invalid="ignore"):
        n = int(np.count_nonzero(np.abs(x) > limit))
    np.clip(x, -limit, limit, out=x)
    return n


class AudioReader:
    """An audio file read as exact-size blocks at a chosen rate.

    Args:
        path: the file (anything libsndfile reads: WAV, FLAC, OGG, ...).
        fs: rate of the blocks in Hz; None keeps the file's rate. Another rate
            than the file's is reached with :class:`~rtha.dsp.resample.StreamingResampler`.
        max_channels: channels accepted (2: mono, or channel 0 left + 1 right).
        limit: samples beyond ``±limit`` are clamped to it (None: no limit).

    Attributes:
        fs_file, fs: the file's rate and the blocks' rate (Hz).
        channels: channel count of the file and of the blocks.
        frames_file: samples per channel in the file.
        frames: samples per channel of the blocks in all.
        resampled: whether ``fs != fs_file``.
        nonfinite_count: NaN/Inf samples replaced by 0 so far.
        clamped_count: samples beyond ``±limit`` clamped so far.
    """

    def __init__(self, path, fs: int | None = None, max_channels: int = 2, limit: float | None = None) -> None:
        sf = _soundfile()
        self.path = Path(path)
        if not self.path.exists():
            raise AudioFileError(f"{self.path}: file not found")
        if self.path.is_dir():
            raise AudioFileError(f"{self.path}: is a folder; expected an audio file")
        try:
            open(self.path, "rb").close()  # the system's reason (libsndfile says only "System error.")
        except OSError as e:
            raise AudioFileError(f"{self.path}: cannot read ({e.strerror or e})") from None
        try:
            self._file = sf.SoundFile(str(self.path))
        except Exception as e:  # libsndfile's errors (unknown format, truncated header, ...)
            raise AudioFileError(f"{self.path}: cannot read audio ({_first_line(e)})") from None
        self.fs_file = int(self._file.samplerate)
        self.channels = int(self._file.channels)
        self.frames_file = int(self._file.frames)
        self.fs = int(fs) if fs else self.fs_file
        self.resampled = self.fs != self.fs_file
        self.nonfinite_count = 0
        self.clamped_count = 0
        self.limit = limit
        try:
            if self.frames_file <= 0:
                raise AudioFileError(f"{self.path}: contains no samples (zero-length audio)")
            if self.channels > max_channels:
                raise AudioFileError(
                    f"{self.path}: has {self.channels} channels; expected 1 (mono, both ears)"
                    f"{' or 2 (channel 0 left, 1 right)' if max_channels >= 2 else ''}"
                )
        except AudioFileError:
            self._file.close()
            raise
        self.frames = -(-self.frames_file * self.fs // self.fs_file) if self.resampled else self.frames_file

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames_file / self.fs_file

    def describe_resampling(self) -> dict | None:
        """What resampling is done (for reports), or None."""
        if not self.resampled:
            return None
        return {
            "from_hz": self.fs_file,
            "to_hz": self.fs,
            "method": "polyphase FIR, Kaiser window beta 5 (as scipy.signal.resample_poly), streamed",
        }

    def _read(self, n: int) -> np.ndarray:
        try:
            data = self._file.read(n, dtype="float32", always_2d=True)
        except Exception as e:
            raise AudioFileError(f"{self.path}: cannot read audio ({_first_line(e)})") from None
        x = np.ascontiguousarray(data.T)
        finite = np.isfinite(x)
        if not finite.all():
            self.nonfinite_count += int(x.size - np.count_nonzero(finite))
            x[~finite] = 0.0
        if self.limit is not None:
            self.clamped_count += clamp_block(x, self.limit)
        return x

    def _chunks(self) -> Iterator[np.ndarray]:
        """The file as ``(channels, n)`` float32 chunks at ``fs`` (uneven sizes)."""
        self._file.seek(0)
        if not self.resampled:
            while True:
                x = self._read(READ_CHUNK)
                if x.shape[1] == 0:
                    return
                yield x
        from .dsp.resample import StreamingResampler  # lazily: rtha.dsp loads numba

        rs = StreamingResampler(self.fs_file, self.fs, self.channels)
        while True:
            x = self._read(READ_CHUNK)
            if x.shape[1] == 0:
                break
            yield rs.process(x)
        yield rs.flush()

    def blocks(self, block: int) -> Iterator[np.ndarray]:
        """Yield ``(channels, block)`` float32 blocks at ``fs``; the last one may be shorter."""
        if block < 1:
            raise ValueError(f"block size {block}; expected >= 1 sample")
        if not self.resampled:
            self._file.seek(0)
            while True:
                x = self._read(block)
                if x.shape[1] == 0:
                    return
                yield x
                if x.shape[1] < block:
                    return
        pending = np.zeros((self.channels, 0), np.float32)
        for chunk in self._chunks():
            pending = np.concatenate([pending, chunk], axis=1) if pending.shape[1] else chunk
            n_full = pending.shape[1] // block * block
            for i in range(0, n_full, block):
                yield np.ascontiguousarray(pending[:, i : i + block])
            pending = pending[:, n_full:]
        if pending.shape[1]:
            yield np.ascontiguousarray(pending)

    def read_all(self) -> np.ndarray:
        """The whole file at ``fs`` as ``(channels, frames)`` float32 (for short files)."""
        parts = list(self._chunks())
        return np.concatenate(parts, axis=1) if parts else np.zeros((self.channels, 0), np.float32)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "AudioReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


#: libsndfile's ``SFC_SET_UPDATE_HEADER_AUTO`` (sndfile.h; soundfile does not name it).
_SFC_SET_UPDATE_HEADER_AUTO = 0x1061


def output_format(path) -> tuple[str, str]:
    """``(format, subtype)`` an :class:`AudioWriter` uses for ``path``, from its extension.

    32-bit float where the format has it (WAV, AIFF, ...), else 24-bit integer
    (FLAC), else the format's default. Raises :class:`AudioFileError` for an
    extension libsndfile cannot write, so commands can check before any work.
    """
    sf = _soundfile()
    path = Path(path)
    fmt = (path.suffix[1:] or "").upper()
    if fmt not in sf.available_formats():
        raise AudioFileError(f"{path}: unknown audio format {path.suffix or '(no extension)'!r}; use .wav or .flac")
    for subtype in ("FLOAT", "PCM_24"):
        if sf.check_format(fmt, subtype):
            return fmt, subtype
    return fmt, sf.default_subtype(fmt)


class AudioWriter:
    """Write ``(channels, samples)`` float blocks to a file as they come.

    Format and subtype from :func:`output_format`. The caller checks
    overwriting (``commands.common.output_path``). libsndfile rewrites the
    header after every block (a few microseconds), so the file on disk is a
    valid, complete-so-far file at any moment, even if the process is killed;
    closing (also on an exception, through ``with``) finishes it.

    Attributes:
        frames: samples per channel written.
        subtype: libsndfile's sample type (``"FLOAT"``, ``"PCM_24"``, ...).
        clipped: samples beyond ±1 that an integer format clipped (0 for float).
    """

    def __init__(self, path, fs: int, channels: int) -> None:
        sf = _soundfile()
        self.path = Path(path)
        fmt, self.subtype = output_format(self.path)
        try:
            self._file = sf.SoundFile(str(self.path), "w", int(fs), int(channels), subtype=self.subtype, format=fmt)
        except Exception as e:
            raise AudioFileError(f"{self.path}: cannot write audio ({_first_line(e)})") from None
        from soundfile import _ffi, _snd

        _snd.sf_command(self._file._file, _SFC_SET_UPDATE_HEADER_AUTO, _ffi.NULL, _snd.SF_TRUE)
        self._integer = self.subtype.startswith("PCM")
        self.frames = 0
        self.clipped = 0
        self.fs = int(fs)

    def write(self, block: np.ndarray) -> None:
        """Append ``(channels, n)`` samples."""
        if self._integer and block.size and not (block.max() <= 1.0 and block.min() >= -1.0):
            with np.errstate(invalid="ignore"):
                self.clipped += int(np.count_nonzero(np.abs(block) > 1.0))
        self._file.write(block.T)
        self.frames += block.shape[1]

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "AudioWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_audio(path, x: np.ndarray, fs: int) -> None:
    """Write a whole ``(channels, samples)`` signal (atomic: temp file, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        with AudioWriter(tmp, fs, x.shape[0]) as w:
            w.write(np.asarray(x, dtype=np.float32))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
