"""Write pyclarity's HASQI v2 feature values and an ICASSP 2023 score as test fixtures.

Runs in a separate venv with pyclarity 0.9.0 (never the project's environment)::

    /work/scratch-pyclarity/bin/python tools/make_hasqi_fixture.py

It runs pyclarity's ear model (quality mode) on 0.2 s of ``ref_16000`` and
``proc_16000_white_snr5`` from tests/data/signals.npz, stores the model outputs
as float32 (small), and stores what pyclarity's feature functions return for
exactly those float32 values, plus one HASQI v2 case with equalisation 2
(whole signals, ``eq2_expected``). tests/test_hasqi.py feeds the same arrays to
rtha's feature functions, so they are checked without rtha's ear model.

It also writes tests/data/icassp2023_expected.json: pyclarity's better-ear
HASPI, better-ear HASQI and their mean for one stereo pair (the first 1.5 s of
``proc_16000_white_snr5`` left and ``proc_16000_talker_snr0`` right against
``ref_16000``; mild_flat left, moderate_sloping right; 100 dB SPL), with the
global stream seeded from the scene name as the ICASSP 2023 evaluation does.
"""

import hashlib
import json

from pathlib import Path

import numpy as np
from clarity.evaluator.haspi import eb, haspi_v2_be
from clarity.evaluator.hasqi import hasqi_v2, hasqi_v2_better_ear
from clarity.utils.audiogram import Audiogram, Listener

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
FS = 16000
START, STOP = int(0.5 * FS), int(0.7 * FS)
LEVELS_HL = [40, 30, 20, 50, 60, 65, 80, 75]  # moderate_sloping
LEVEL_DB_SPL = 65.0
AUDIOGRAM_FREQS = [250, 500, 1000, 2000, 3000, 4000, 6000, 8000]
SCENE = "S06001"
STEREO_SAMPLES = 24000


def main() -> None:
    signals = np.load(DATA / "signals.npz")
    ref = signals["ref_16000"][START:STOP].astype(np.float64)
    proc = signals["proc_16000_white_snr5"][START:STOP].astype(np.float64)
    audiogram = Audiogram(levels=np.array(LEVELS_HL), frequencies=np.array(AUDIOGRAM_FREQS))
    hl = audiogram.resample(np.array([250, 500, 1000, 2000, 4000, 6000])).levels
    np.random.seed(0)
    ref_db, ref_bm, proc_db, proc_bm, ref_sl, proc_sl, fs = eb.ear_model(ref, FS, proc, FS, hl, 1, LEVEL_DB_SPL)
    inputs = {
        name: np.asarray(a, dtype=np.float32)
        for name, a in dict(
            ref_db=ref_db, proc_db=proc_db, ref_bm=ref_bm, proc_bm=proc_bm, ref_sl=ref_sl, proc_sl=proc_sl
        ).items()
    }
    x = {k: v.astype(np.float64) for k, v in inputs.items()}
    ref_smooth = eb.env_smooth(x["ref_db"], 16, fs)
    proc_smooth = eb.env_smooth(x["proc_db"], 16, fs)
    np.random.seed(1)
    cep_average, cep_each = eb.mel_cepstrum_correlation(ref_smooth, proc_smooth, 2.5, 0.0)
    loud, _, slope = eb.spectrum_diff(x["ref_sl"], x["proc_sl"])
    cov, ref_ms, _ = eb.bm_covary(x["ref_bm"], x["proc_bm"], 16, fs)
    _, sync = eb.ave_covary2(cov, ref_ms, 2.5)
    np.savez_compressed(
        DATA / "hasqi_features.npz",
        fs=fs,
        center_freqs=eb.center_frequency(ref_db.shape[0]),
        **inputs,
        ref_smooth=ref_smooth,
        proc_smooth=proc_smooth,
        cep_average=cep_average,
        cep_each=cep_each,
        loudness_std=loud[1],
        slope_std=slope[1],
        cov=cov,
        ref_ms=ref_ms,
        sync5=sync[4],
        rng_after_cepstrum=np.random.rand(4),
        **equalisation2_case(signals, audiogram),
    )
    print(f"wrote {DATA / 'hasqi_features.npz'} ({(DATA / 'hasqi_features.npz').stat().st_size} bytes)")
    write_icassp2023_expected(signals)


def equalisation2_case(signals, audiogram) -> dict:
    """HASQI v2 in mode 2 (reference already equalised) on the whole 16 kHz signals, seed 0."""
    ref = signals["ref_16000"].astype(np.float64)
    proc = signals["proc_16000_white_snr5"].astype(np.float64)
    np.random.seed(0)
    combined, nonlinear, linear, raw = hasqi_v2(ref, FS, proc, FS, audiogram, equalisation=2, level1=LEVEL_DB_SPL)
    return {"eq2_expected": np.array([combined, nonlinear, linear, *raw])}


def write_icassp2023_expected(signals) -> None:
    expected = json.loads((DATA / "expected.json").read_text())
    levels = expected["audiograms"]
    ears = ("mild_flat", "moderate_sloping")
    listener = Listener(*(Audiogram(levels=np.array(levels[e]), frequencies=np.array(AUDIOGRAM_FREQS)) for e in ears))
    ref = signals["ref_16000"][:STEREO_SAMPLES].astype(np.float64)
    proc = [signals[f"proc_16000_{n}"][:STEREO_SAMPLES].astype(np.float64) for n in ("white_snr5", "talker_snr0")]
    seed = int(hashlib.md5(SCENE.encode("utf-8")).hexdigest(), 16) % 10**8
    np.random.seed(seed)
    haspi = haspi_v2_be(ref, ref, proc[0], proc[1], FS, listener, 100.0)
    hasqi = hasqi_v2_better_ear(ref, ref, proc[0], proc[1], FS, listener, 100.0)
    out = {
        "about": "pyclarity 0.9.0, written by tools/make_hasqi_fixture.py",
        "scene": SCENE,
        "seed": seed,
        "fs": FS,
        "samples": STEREO_SAMPLES,
        "ref": ["ref_16000", "ref_16000"],
        "proc": ["proc_16000_white_snr5", "proc_16000_talker_snr0"],
        "audiograms": {"left": ears[0], "right": ears[1]},
        "freqs": AUDIOGRAM_FREQS,
        "level_db_spl": 100.0,
        "haspi_better_ear": haspi,
        "hasqi_better_ear": hasqi,
        "combined": 0.5 * (haspi + hasqi),
    }
    (DATA / "icassp2023_expected.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {DATA / 'icassp2023_expected.json'}: {out['combined']}")


if __name__ == "__main__":
    main()
