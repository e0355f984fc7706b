"""Score one (scene, listener) pair: read it, run each system's chain, build the reference, score.

This is the whole per-pair recipe of the Clarity ICASSP 2023 evaluation, with
rtha's chain as the hearing aid:

1. input: the stereo ``mix_CH1`` (or an external ``{scene}_{listener}_enhanced.wav``),
   resampled to the chain rate when the files have another;
2. the system's chain run offline (``Chain.process``: reset + one block, the
   same code that streams), the input followed by zeros that flush it:
   ``enhanced`` = enhancer -> NAL-R -> compressor -> tanh,
   ``unprocessed``/``external`` = NAL-R -> compressor -> tanh;
3. reference: ``target_anechoic_CH1`` scaled per channel to the RMS of
   ``target_CH1`` (at the file rate, then resampled like the input);
4. HASPI v2 and HASQI v2 better ear at 100 dB SPL for RMS 1, the metric noise
   drawn from ``RandomState(scene seed)``; combined = (HASPI + HASQI) / 2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.clarity import ClarityDataset
from ..dsp import default_nfir
from ..dsp.resample import resample
from ..errors import RthaError
from ..stage import process_with_tail
from .config import SYSTEMS, ScoreSettings, System, uses_enhancer
from .results import ScoreRow


def challenge_reference(anechoic: np.ndarray, target: np.ndarray, scene: str = "") -> np.ndarray:
    """``anechoic`` scaled per channel to the RMS of ``target``; both ``(2, samples)``, float64 out."""
    anechoic = np.asarray(anechoic, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    rms_target = np.sqrt(np.mean(target**2, axis=1))
    rms_anechoic = np.sqrt(np.mean(anechoic**2, axis=1))
    if np.any(rms_anechoic == 0):
        raise RthaError(f"scene {scene}: target_anechoic_CH1 is silent in a channel; cannot scale the reference")
    return anechoic * (rms_target / rms_anechoic)[:, None]


def read_external(folder, scene: str, listener: str) -> tuple[np.ndarray, int]:
    """``{folder}/{scene}_{listener}_enhanced.wav`` as ``(2, samples)`` float32 and its rate."""
    import soundfile as sf

    path = Path(folder) / f"{scene}_{listener}_enhanced.wav"
    if not path.is_file():
        raise RthaError(f"{path}: enhanced signal not found; --enhanced-dir needs {{scene}}_{{listener}}_enhanced.wav per pair")
    try:
        audio, fs = sf.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as e:
        raise RthaError(f"{path}: cannot read audio ({e})") from None
    if audio.shape[1] != 2:
        raise RthaError(f"{path}: has {audio.shape[1]} channel(s); expected stereo (left, right)")
    if audio.shape[0] == 0:
        raise RthaError(f"{path}: has no samples")
    return np.ascontiguousarray(audio.T), int(fs)


def _flushed(x: np.ndarray, tail: int) -> np.ndarray:
    """``x`` followed by ``tail`` zeros, float32."""
    return np.pad(np.asarray(x, dtype=np.float32), ((0, 0), (0, int(tail))))


class PairScorer:
    """Scores pairs of one dataset; one per worker process (holds the enhancer, never more than one scene).

    The scene's mix, reference and enhancer output are kept until the next
    scene: its listeners share them (the enhancer does not depend on the
    listener), so scoring a scene's pairs one after the other runs it once.

    ``metric_threads``: threads of each HASPI/HASQI call (None: up to 2, for
    one process scoring alone; 1 in each worker of a pool).
    """

    def __init__(self, settings: ScoreSettings, configs: dict[str, str], metric_threads: int | None = None,
                 dataset: ClarityDataset | None = None) -> None:
        self.settings = settings
        self.configs = configs
        self.metric_threads = metric_threads
        nfir = settings.nfir if settings.nfir is not None else default_nfir(settings.rate)
        self.amplification_tail = nfir  # NalrFilter.tail (taps - 1); the compressor and tanh add none
        self.dataset = dataset if dataset is not None else ClarityDataset(settings.root, settings.split)
        self.enhancer = None
        self._scene: str | None = None
        self._kept: dict = {}  # what the listeners of self._scene share
        if uses_enhancer(settings.systems):
            from ..enhance import StreamingEnhancer

            self.enhancer = StreamingEnhancer(settings.model_path, threads=1, dry_mix=settings.dry_mix)

    def listener(self, scene: str, listener_id: str):
        try:
            return self.dataset.listeners[listener_id]
        except KeyError:
            raise RthaError(
                f"scene {scene}: listener {listener_id!r} is not in {self.settings.root}/metadata/listeners.json"
            ) from None

    def _shared(self, scene: str, key: str, make):
        """``make()`` once per scene and ``key``; a new scene drops the last one's."""
        if scene != self._scene:
            self._scene, self._kept = scene, {}
        if key not in self._kept:
            self._kept[key] = make()
        return self._kept[key]

    def reference(self, scene: str) -> np.ndarray:
        """The scene's reference ``(2, samples)`` at the chain rate."""

        def make():
            (target, anechoic), fs = self.dataset.read_pair(scene, ("target", "target_anechoic"))
            ref, rate = challenge_reference(anechoic, target, scene), self.settings.rate
            # float32 once resampled: the scores computed so far used that reference
            return ref if fs == rate else resample(ref, fs, rate).astype(np.float32)

        return self._shared(scene, "reference", make)

    def enhanced(self, scene: str, mix) -> np.ndarray:
        """The enhancer's output for the scene's ``mix = (audio, fs)`` at the scoring rate, flushed.

        Computed once per scene (its listeners share it); flushed as
        :meth:`system_input` says. At the scoring rate the enhancer and the
        amplification flush as one chain: the mix gets both tails. At another
        rate the enhancer gets its own tail, and the amplification's zeros
        follow its resampled output.
        """

        def make():
            x, fs = mix
            rate, enhancer_fs = self.settings.rate, int(self.enhancer.fs)
            if enhancer_fs == rate:
                return process_with_tail(self.enhancer, resample(x, fs, rate), then=self.amplification_tail)
            y = process_with_tail(self.enhancer, resample(x, fs, enhancer_fs))
            return _flushed(resample(y, enhancer_fs, rate), self.amplification_tail)

        return self._shared(scene, "enhanced", make)

    def system_input(self, system: System, scene: str, listener_id: str, mix) -> np.ndarray:
        """What ``system`` feeds the amplification: ``(2, samples + flush)`` float32 at the scoring rate.

        Every input is followed by the zeros that flush all that runs after it
        at its rate (each stage's ``tail``: the enhancer's latency, the NAL-R
        filter order), so the output holds all of the signal, as
        ``np.convolve``'s full output does in the challenge's evaluation.
        """
        if system.enhancer:
            return self.enhanced(scene, mix)
        x, fs = read_external(self.settings.enhanced_dir, scene, listener_id) if system.external else mix
        return _flushed(resample(x, fs, self.settings.rate), self.amplification_tail)

    def system_output(self, system: str, scene: str, listener_id: str, listener, mix) -> np.ndarray:
        """The hearing-aid output ``(2, samples + flush)`` float64 at the scoring rate for the system named ``system``."""
        from ..hearing_aid import hearing_aid_chain

        s = self.settings
        amplification = hearing_aid_chain(listener, s.rate, nalr_phase=s.nalr_phase, nfir=s.nfir)
        return amplification.process(self.system_input(SYSTEMS[system], scene, listener_id, mix)).astype(np.float64)

    def score(self, scene: str, listener_id: str, systems) -> list[ScoreRow]:
        """Rows for ``systems`` of one pair (metric noise re-seeded from the scene name per system)."""
        from ..metrics import haspi_v2_better_ear, hasqi_v2_better_ear, scene_seed

        s = self.settings
        listener = self.listener(scene, listener_id)
        ref = self.reference(scene)
        reads_mix = not all(SYSTEMS[name].external for name in systems)
        mix = self._shared(scene, "mix", lambda: self.dataset.read(scene, "mix")) if reads_mix else None
        rows = []
        for system in systems:
            out = self.system_output(system, scene, listener_id, listener, mix)
            rng = np.random.RandomState(scene_seed(scene))  # HASPI left, right, then HASQI left, right
            try:
                kw = {"level_db_spl": s.level_db_spl, "rng": rng, "threads": self.metric_threads}
                haspi = float(haspi_v2_better_ear(ref, out, s.rate, listener, **kw))
                hasqi = float(hasqi_v2_better_ear(ref, out, s.rate, listener, **kw))
            except RthaError as e:
                raise RthaError(f"scene {scene}, listener {listener_id}, system {system}: {e}") from None
            rows.append(ScoreRow(scene, listener_id, system, haspi, hasqi, 0.5 * (haspi + hasqi), self.configs[system]))
        return rows
