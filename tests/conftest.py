"""Shared fixtures: a JACK server for the tests that go through a real audio stream.

``jack_server`` starts JACK2 on its dummy driver with a loopback driver, in
synchronous mode (``tools/setup_audio.sh``, which apt-installs jackd2 and
libportaudio2 when missing) under a server name of its own
(``RTHA_TEST_JACK_SERVER``, default ``rtha-test``), so a user's running JACK is
never touched. The live tests run ``rtha live`` in subprocesses and wire it with the
JACK-Client package; this process never imports sounddevice, so stopping the
server at the end cannot abort it. If JACK cannot run here, the tests that need
it are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
JACK_SERVER = os.environ.get("RTHA_TEST_JACK_SERVER", "rtha-test")
JACK_RATE = 16000
#: JACK period (frames). The dummy driver counts an xrun whenever a cycle ends
#: after the next one is due, so with a 64-frame (4 ms) period every stall of
#: the machine longer than 4 ms is an xrun: on a loaded 2-core VM the host takes
#: the CPUs away for 5-35 ms dozens of times a minute, whatever runs in it (a C
#: SCHED_FIFO thread and JACK's own C example client see the same stalls). 1024 frames
#: (64 ms) outlasts those stalls; the stream still runs 64-sample blocks (16 per
#: JACK cycle), whose compute deadline rtha checks itself (deadline misses).
JACK_PERIOD = int(os.environ.get("RTHA_TEST_JACK_PERIOD", "1024"))  # 64 reproduces the 4 ms-period xruns


@pytest.fixture(scope="session")
def jack_server():
    """``{"server", "rate", "period", "pid", "env"}`` of a running JACK server (started for the session)."""
    env = dict(
        JACK_DEFAULT_SERVER=JACK_SERVER,
        JACK_NO_START_SERVER="1",  # libjack must never spawn a server with other settings
        JACK_NO_AUDIO_RESERVATION="1",
        AUDIO_STATE_DIR=os.environ.get("AUDIO_STATE_DIR", "/tmp/rtha-audio"),
    )
    if shutil.which("bash") is None:
        pytest.skip("JACK tests need bash to run tools/setup_audio.sh")
    script = [
        "bash",
        str(ROOT / "tools" / "setup_audio.sh"),
        "start",
        "--rate",
        str(JACK_RATE),
        "--period",
        str(JACK_PERIOD),
        "--sync",
    ]
    try:
        r = subprocess.run(script, env={**os.environ, **env}, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"JACK could not be started with tools/setup_audio.sh: {e}")
    if r.returncode != 0:
        lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
        pytest.skip(f"JACK could not be started with tools/setup_audio.sh: {' / '.join(lines[-3:]) or 'no output'}")
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)  # this process's JACK clients and the subprocesses find the server
        try:
            pid = int((Path(env["AUDIO_STATE_DIR"]) / f"jackd-{JACK_SERVER}.pid").read_text())
            yield {"server": JACK_SERVER, "rate": JACK_RATE, "period": JACK_PERIOD, "pid": pid, "env": dict(os.environ)}
        finally:
            subprocess.run(
                ["bash", str(ROOT / "tools" / "setup_audio.sh"), "stop"],
                env={**os.environ, **env},
                capture_output=True,
                timeout=60,
            )


@pytest.fixture(scope="session")
def random_tiny_model(tmp_path_factory):
    """A checkpoint of the ``tiny`` preset with random weights (seeded): the enhancer path without the trained model."""
    import torch

    from rtha.enhance import ConvTasNet, ConvTasNetConfig, save_checkpoint

    torch.manual_seed(0)
    model = ConvTasNet(ConvTasNetConfig.preset("tiny"))
    path = tmp_path_factory.mktemp("models") / "random-tiny.pt"
    save_checkpoint(path, model, {"note": "random weights, for tests"})
    return path


@pytest.fixture
def unwritable_dir(tmp_path):
    """A folder this process cannot create files in: a read-only folder, or ``/sys`` for root (which ignores permissions)."""
    import tempfile

    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    folder = Path("/sys")
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        yield folder
    else:
        pytest.skip("no folder here refuses new files to root")
