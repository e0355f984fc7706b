"""Means with 95% confidence intervals per system, and paired differences against ``unprocessed``
(or, for ``--compare``, between one system of two scores files)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .results import METRICS, ScoreRow

BASELINE = "unprocessed"


@dataclass(frozen=True)
class Estimate:
    """Mean of ``n`` values with the half-width of its two-sided 95% t interval (NaN when n < 2)."""

    n: int
    mean: float
    half_width: float

    @classmethod
    def of(cls, values) -> Estimate:
        from scipy.stats import t

        v = np.asarray(values, dtype=np.float64)
        n = v.size
        if n == 0:
            return cls(0, math.nan, math.nan)
        if n == 1:
            return cls(1, float(v[0]), math.nan)
        half = t.ppf(0.975, n - 1) * v.std(ddof=1) / math.sqrt(n)
        return cls(n, float(v.mean()), float(half))

    @property
    def ci95(self) -> tuple[float, float]:
        return (self.mean - self.half_width, self.mean + self.half_width)

    def as_dict(self) -> dict:
        ok = math.isfinite(self.half_width)
        return {"n": self.n, "mean": self.mean, "ci95": list(self.ci95) if ok else None}

    def text(self, digits: int = 3) -> str:
        if self.n == 0:
            return "-"
        if not math.isfinite(self.half_width):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.half_width:.{digits}f}"


def system_estimates(rows: list[ScoreRow]) -> dict[str, dict[str, Estimate]]:
    """``{system: {metric: Estimate}}`` over every row of that system."""
    systems: dict[str, list[ScoreRow]] = {}
    for row in rows:
        systems.setdefault(row.system, []).append(row)
    return {s: {m: Estimate.of([getattr(r, m) for r in rs]) for m in METRICS} for s, rs in systems.items()}


def paired_differences(
    rows: list[ScoreRow], baseline: str = BASELINE, by_scene: bool = False
) -> dict[str, dict[str, Estimate]]:
    """``{system: {metric: Estimate of (system - baseline)}}`` over the pairs both systems scored.

    With ``by_scene`` the differences of a scene's listeners are averaged first,
    so the interval treats scenes, not pairs, as the independent samples (the
    listeners of one scene hear the same signals, so their pairs are correlated).
    """
    by_key = {row.key: row for row in rows}
    out = {}
    for system in sorted({r.system for r in rows} - {baseline}):
        groups: dict[str, list[tuple[ScoreRow, ScoreRow]]] = {}
        for row in rows:
            base = by_key.get((row.scene, row.listener, baseline))
            if row.system == system and base is not None:
                groups.setdefault(row.scene if by_scene else f"{row.scene}/{row.listener}", []).append((row, base))
        if groups:
            out[system] = {
                m: Estimate.of([np.mean([getattr(a, m) - getattr(b, m) for a, b in g]) for g in groups.values()])
                for m in METRICS
            }
    return out


def summary_dict(rows: list[ScoreRow]) -> dict:
    """Means and differences (over pairs, and over scene means) as plain JSON-ready data."""
    return {
        "systems": {s: {m: e.as_dict() for m, e in ms.items()} for s, ms in system_estimates(rows).items()},
        "differences": {
            f"{s}-{BASELINE}": {m: e.as_dict() for m, e in ms.items()} for s, ms in paired_differences(rows).items()
        },
        "differences_by_scene": {
            f"{s}-{BASELINE}": {m: e.as_dict() for m, e in ms.items()}
            for s, ms in paired_differences(rows, by_scene=True).items()
        },
    }


def summary_table(rows: list[ScoreRow], title: str = "scores"):
    """A rich table: per system n and mean ± 95% CI half-width of each metric, then the paired differences."""
    from rich.table import Table

    table = Table(
        title=f"{title}: mean ± 95% CI",
        caption=f"Δ: paired difference against {BASELINE} over the same pairs (by scene: listeners averaged "
        "per scene first); bold: the CI excludes 0",
    )
    table.add_column("system", no_wrap=True)
    table.add_column("n", justify="right")
    for m in METRICS:
        table.add_column(m, justify="right")
    for system, ests in sorted(system_estimates(rows).items()):
        table.add_row(system, str(ests["combined"].n), *(ests[m].text() for m in METRICS))
    differences = paired_differences(rows)
    by_scene = paired_differences(rows, by_scene=True)
    if differences:
        table.add_section()
    for system, ests in differences.items():
        table.add_row(f"Δ {system}", str(ests["combined"].n), *(_highlighted(ests[m]) for m in METRICS))
        scene_ests = by_scene[system]
        table.add_row(f"Δ {system} by scene", str(scene_ests["combined"].n), *(_highlighted(scene_ests[m]) for m in METRICS))
    return table


def _highlighted(e: Estimate, digits: int = 3) -> str:
    """Bold when the 95% interval excludes zero."""
    lo, hi = e.ci95
    excludes_zero = math.isfinite(e.half_width) and (lo > 0 or hi < 0)
    return f"[bold]{e.text(digits)}[/bold]" if excludes_zero else e.text(digits)


def compared_rows(new: list[ScoreRow], base: list[ScoreRow], systems: tuple[str, str]) -> list[ScoreRow]:
    """The rows of ``systems[0]`` in ``new`` and ``systems[1]`` in ``base`` on the (scene, listener)
    pairs both have, relabelled ``"new"`` and ``"base"`` (for :func:`paired_differences` with
    ``baseline="base"``)."""
    sides = (("new", new, systems[0]), ("base", base, systems[1]))
    pairs = set.intersection(*({r.key[:2] for r in rows if r.system == system} for _, rows, system in sides))
    return [
        replace(r, system=label)
        for label, rows, system in sides
        for r in rows
        if r.system == system and r.key[:2] in pairs
    ]


def group_differences(rows: list[ScoreRow], groups: dict[str, tuple[str, ...]]) -> dict[str, dict[str, Estimate]]:
    """``{group: {metric: Estimate of new - base}}`` by scene, over the rows of :func:`compared_rows`
    whose scene is in each group; ``groups`` maps a scene to its group labels
    (:func:`rtha.data.clarity.scene_groups`). Interferer kinds come first, then SNR bands, low to high."""
    members: dict[str, list[ScoreRow]] = {}
    for row in rows:
        for label in groups[row.scene]:
            members.setdefault(label, []).append(row)

    def order(label: str):
        is_band = label.startswith("SNR ")
        return (is_band, float(label.split()[1].split("..")[0]) if is_band else 0.0, label)

    return {label: paired_differences(members[label], baseline="base", by_scene=True)["new"]
            for label in sorted(members, key=order)}


def comparison_dict(new: list[ScoreRow], base: list[ScoreRow], systems: tuple[str, str],
                    groups: dict[str, tuple[str, ...]] | None = None) -> dict:
    """Means of each side (:func:`compared_rows`) over the pairs both have, and ``new - base`` (by pair
    and by scene; with ``groups``, also by scene within each group, :func:`group_differences`)."""
    rows = compared_rows(new, base, systems)
    out = {
        "systems": {"new": systems[0], "base": systems[1]},
        "pairs": len(rows) // 2,
        "means": {s: {m: e.as_dict() for m, e in ms.items()} for s, ms in system_estimates(rows).items()},
        "difference": {m: e.as_dict() for m, e in paired_differences(rows, baseline="base")["new"].items()},
        "difference_by_scene": {
            m: e.as_dict() for m, e in paired_differences(rows, baseline="base", by_scene=True)["new"].items()
        },
    }
    if groups is not None:
        out["difference_by_group"] = {
            label: {m: e.as_dict() for m, e in ests.items()} for label, ests in group_differences(rows, groups).items()
        }
    return out


def comparison_table(new: list[ScoreRow], base: list[ScoreRow], systems: tuple[str, str], names: tuple[str, str],
                     groups: dict[str, tuple[str, ...]] | None = None):
    """A rich table of :func:`comparison_dict`: each side's means, then ``new - base`` by pair and by
    scene, then (with ``groups``) by scene within each group."""
    from rich.table import Table

    rows = compared_rows(new, base, systems)
    table = Table(
        title=f"new: {names[0]}\nbase: {names[1]}\n{len(rows) // 2} (scene, listener) pairs in both: mean ± 95% CI",
        caption="Δ: paired difference new - base (by scene: listeners averaged per scene first); bold: the CI excludes 0",
    )
    table.add_column("", no_wrap=True)
    table.add_column("n", justify="right")
    for m in METRICS:
        table.add_column(m, justify="right")
    estimates = system_estimates(rows)
    for label, system in zip(("new", "base"), systems):
        ests = estimates[label]
        table.add_row(f"{label} ({system})", str(ests["combined"].n), *(ests[m].text(4) for m in METRICS))
    table.add_section()
    for title, by_scene in (("Δ new - base", False), ("Δ by scene", True)):
        ests = paired_differences(rows, baseline="base", by_scene=by_scene)["new"]
        table.add_row(title, str(ests["combined"].n), *(_highlighted(ests[m], 4) for m in METRICS))
    if groups is not None:
        table.add_section()
        for label, ests in group_differences(rows, groups).items():
            table.add_row(f"Δ {label}", str(ests["combined"].n), *(_highlighted(ests[m], 4) for m in METRICS))
    return table
