"""Score a dataset split: pairs -> (process pool) -> rows appended to the CSV, with a progress bar.

Workers are spawned processes, each limited to one BLAS/OpenMP/numba/torch
thread (metric calls too: ``threads=1``) and holding one scene at a time; the
parent sends only names and receives only scores, so memory stays bounded by
one scene per worker.  A job is one scene's pairs, so the scene is read and
enhanced once for all its listeners.  A single job scores inline, up to two
metric threads.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass

from ..errors import RthaError
from .config import ScoreSettings, uses_enhancer
from .pairs import scene_listener_pairs, select_shard
from .results import ScoreRow, ScoreWriter, check_configs, check_split

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
_scorer = None  # the worker's PairScorer, or the RthaError that stopped its creation


@dataclass
class RunResult:
    """What a run did: every row now in the CSV, how many pairs it scored and how long it took."""

    rows: list[ScoreRow]
    pairs_total: int
    pairs_scored: int
    seconds: float


def _init_worker(settings: ScoreSettings, configs: dict[str, str], dataset, metric_threads: int | None = None) -> None:
    global _scorer
    from .pair import PairScorer  # torch, numba and BLAS read their one-thread settings from the environment

    try:
        if uses_enhancer(settings.systems):
            from ..enhance.streaming import set_threads

            set_threads(1)  # the enhancer streams on one thread, inline as in a worker
        _scorer = PairScorer(settings, configs, metric_threads, dataset)
    except RthaError as e:  # reported with the first job instead of a pool that respawns forever
        _scorer = e


def _score_job(job):
    """Worker entry for ``(scene, [(listener, systems), ...])``: ``("ok", rows)``, or
    ``("error", message)`` for a user error (it reaches the CLI as one line)."""
    scene, items = job
    if isinstance(_scorer, RthaError):
        return "error", str(_scorer)
    try:
        return "ok", [row for listener, systems in items for row in _scorer.score(scene, listener, systems)]
    except RthaError as e:
        return "error", str(e)


def _by_scene(todo: list[tuple[str, str, tuple]]) -> list[tuple[str, list]]:
    """``(scene, listener, systems)`` items -> one job per run of the same scene, order kept."""
    jobs: list[tuple[str, list]] = []
    for scene, listener, systems in todo:
        if not jobs or jobs[-1][0] != scene:
            jobs.append((scene, []))
        jobs[-1][1].append((listener, systems))
    return jobs


@contextmanager
def _single_thread_env():
    """Spawned workers inherit one-thread settings for every native thread pool."""
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    os.environ.update({k: "1" for k in _THREAD_VARS})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _progress():
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("pairs"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )


def score_split(
    settings: ScoreSettings,
    configs: dict[str, str],
    out,
    dataset,
    *,
    jobs: int = 1,
    shard: tuple[int, int] | None = None,
    limit: int | None = None,
    force: bool = False,
    progress: bool = True,
) -> RunResult:
    """Score every pair of ``settings.split`` (or one shard of them) into the CSV ``out``.

    ``dataset`` is that split's :class:`~rtha.data.clarity.ClarityDataset`,
    opened once by the caller and handed to the workers. Pairs whose rows for all ``settings.systems`` are already in ``out`` are
    skipped (resume); the others get only their missing systems. ``force``
    starts ``out`` afresh.
    """
    split_pairs = pairs = scene_listener_pairs(dataset.scenes_listeners)
    if shard is not None:
        pairs = select_shard(pairs, *shard)
    if limit is not None:
        pairs = pairs[:limit]
    start = time.perf_counter()
    with ScoreWriter(out, force=force) as writer:
        check_configs(writer.existing, configs, out)
        check_split(writer.existing, split_pairs, settings.split, out)
        done = {row.key for row in writer.existing}
        todo = []
        for scene, listener in pairs:
            missing = tuple(s for s in settings.systems if (scene, listener, s) not in done)
            if missing:
                todo.append((scene, listener, missing))
        rows = list(writer.existing)
        for new in _run_jobs(settings, configs, dataset, todo, jobs, progress):
            for row in new:
                writer.write(row)
            rows.extend(new)
    return RunResult(rows, len(pairs), len(todo), time.perf_counter() - start)


def _run_jobs(settings, configs, dataset, todo, jobs, progress):
    """Yield each scene's rows as it finishes (inline for one job, else a spawned pool)."""
    if not todo:
        return
    bar = _progress() if progress else None
    task = bar.add_task("score", total=len(todo)) if bar else None
    work = _by_scene(todo)
    jobs = max(1, min(jobs, len(work)))
    with bar or _nothing():
        if jobs == 1:
            _init_worker(settings, configs, dataset)
            results = map(_score_job, work)
            pool = None
        else:
            with _single_thread_env():
                # One thread per worker: the metrics' own threads only for a single job.
                pool = multiprocessing.get_context("spawn").Pool(jobs, _init_worker, (settings, configs, dataset, 1))
            results = pool.imap_unordered(_score_job, work)
        try:
            for status, value in results:
                if status == "error":
                    raise RthaError(value)
                yield value
                if bar:
                    bar.advance(task, len({(row.scene, row.listener) for row in value}))
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()


@contextmanager
def _nothing():
    yield
