"""The scores CSV: one row per (scene, listener, system), written row by row, resumable, mergeable.

Columns: ``scene, listener, system, haspi, hasqi, combined, config``. Scores are
written with ``repr`` (shortest exact float text) so a CSV round-trips bit for
bit. ``config`` is a short hash of the system's chain configuration; a resumed
or merged file must not mix configurations of one system.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import RthaError

COLUMNS = ("scene", "listener", "system", "haspi", "hasqi", "combined", "config")
METRICS = ("haspi", "hasqi", "combined")


@dataclass(frozen=True)
class ScoreRow:
    """Scores of one system for one (scene, listener) pair (HASPI/HASQI better ear, 0...1)."""

    scene: str
    listener: str
    system: str
    haspi: float
    hasqi: float
    combined: float
    config: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.scene, self.listener, self.system)

    def as_record(self) -> list[str]:
        return [self.scene, self.listener, self.system, repr(self.haspi), repr(self.hasqi), repr(self.combined), self.config]


def read_scores(path, allow_partial_tail: bool = False) -> tuple[list[ScoreRow], int]:
    """Read a scores CSV.

    Returns ``(rows, complete_bytes)``: the rows and the byte length of the
    file's complete lines. A last line without its newline is what a killed
    run leaves behind; it is dropped when ``allow_partial_tail`` (resume),
    otherwise an error.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RthaError(f"{path}: scores file not found") from None
    except OSError as e:
        raise RthaError(f"{path}: cannot read scores file ({e.strerror})") from None
    complete = len(data)
    if data and not data.endswith(b"\n"):
        if not allow_partial_tail:
            raise RthaError(f"{path}: last line is incomplete (an interrupted run?); resume it with the same --out first")
        complete = data.rfind(b"\n") + 1
    lines = data[:complete].decode("utf-8", errors="replace").splitlines()
    if not lines:
        return [], complete
    header = next(csv.reader(lines[:1]))
    if tuple(header) != COLUMNS:
        raise RthaError(f"{path}: header {','.join(header)!r} is not an rtha scores file; expected {','.join(COLUMNS)!r}")
    rows = []
    for lineno, record in enumerate(csv.reader(lines[1:]), start=2):
        if len(record) != len(COLUMNS):
            raise RthaError(f"{path}: line {lineno} has {len(record)} fields; expected {len(COLUMNS)}")
        try:
            scores = [float(v) for v in record[3:6]]
        except ValueError:
            raise RthaError(f"{path}: line {lineno} has a score that is not a number: {record[3:6]}") from None
        rows.append(ScoreRow(*record[:3], *scores, record[6]))
    return rows, complete


class ScoreWriter:
    """Appends rows to a scores CSV, flushed after every row.

    An existing file is resumed (its rows are kept in ``existing``, new rows
    are appended; an incomplete last line from a killed run is cut off) unless
    ``force``, which starts a new file.
    """

    def __init__(self, path, force: bool = False) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise RthaError(f"{self.path}: folder {self.path.parent} does not exist")
        self.existing: list[ScoreRow] = []
        if self.path.exists() and not force:
            self.existing, complete = read_scores(self.path, allow_partial_tail=True)
            if complete < self.path.stat().st_size:
                os.truncate(self.path, complete)
        fresh = force or not self.path.exists() or self.path.stat().st_size == 0
        self._file = open(self.path, "w" if fresh else "a", newline="", encoding="utf-8")
        self._csv = csv.writer(self._file, lineterminator="\n")
        if fresh:
            self._csv.writerow(COLUMNS)
            self._file.flush()

    def write(self, row: ScoreRow) -> None:
        self._csv.writerow(row.as_record())
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ScoreWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_scores(path, rows: list[ScoreRow]) -> None:
    """Write ``rows`` as a new scores CSV (the caller checked ``--force``)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(COLUMNS)
        out.writerows(row.as_record() for row in rows)


def check_configs(rows: list[ScoreRow], configs: dict[str, str], path) -> None:
    """Refuse to resume into rows of a system scored with another configuration."""
    for row in rows:
        want = configs.get(row.system)
        if want is not None and row.config != want:
            raise RthaError(
                f"{path}: system {row.system!r} was scored there with another chain configuration "
                f"({row.config}, now {want}); pass --force to start over or choose another --out"
            )


def check_split(rows: list[ScoreRow], pairs, split: str, path) -> None:
    """Refuse to resume into rows of pairs that are not in this split (the CSV has no split column)."""
    known = set(pairs)
    for row in rows:
        if (row.scene, row.listener) not in known:
            raise RthaError(
                f"{path}: holds scores of {row.scene}/{row.listener}, which is not a pair of the {split!r} split "
                "(scored on another split?); pass --force to start over or choose another --out"
            )


def merge_scores(paths) -> list[ScoreRow]:
    """Union of shard CSVs, sorted by (scene, listener, system).

    The same pair in two files must carry the same scores and configuration;
    one system must have one configuration across all files.
    """
    merged: dict[tuple[str, str, str], tuple[ScoreRow, Path]] = {}
    configs: dict[str, tuple[str, Path]] = {}
    for path in map(Path, paths):
        rows, _ = read_scores(path)
        for row in rows:
            seen_config = configs.setdefault(row.system, (row.config, path))
            if seen_config[0] != row.config:
                raise RthaError(
                    f"{path}: system {row.system!r} has configuration {row.config} but {seen_config[1]} "
                    f"has {seen_config[0]}; shards must be scored with the same settings"
                )
            seen = merged.setdefault(row.key, (row, path))
            if seen[0] != row:
                raise RthaError(f"{path}: {'/'.join(row.key)} differs from the same pair in {seen[1]}")
    return [merged[k][0] for k in sorted(merged)]
