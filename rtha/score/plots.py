"""``--plots DIR``: per-pair scatter of each system against ``unprocessed`` and score distributions.

matplotlib is optional (``pip install matplotlib``); :func:`require_matplotlib`
says so before any scoring starts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import RthaError
from .results import METRICS, ScoreRow
from .summary import BASELINE


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise RthaError("--plots needs matplotlib, which is not installed; run `pip install matplotlib`") from None


def plot_files(rows: list[ScoreRow]) -> list[str]:
    """Names of the files :func:`write_plots` makes for ``rows``."""
    systems = sorted({r.system for r in rows})
    names = ["distributions.png"]
    if BASELINE in systems:
        names += [f"scatter_{s}_vs_{BASELINE}.png" for s in systems if s != BASELINE]
    return names


def write_plots(rows: list[ScoreRow], folder, force: bool = False) -> list[Path]:
    """Write the plots into ``folder`` (created if missing); returns their paths."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    paths = [folder / name for name in plot_files(rows)]
    if not force:
        for path in paths:
            if path.exists():
                raise RthaError(f"{path} already exists; pass --force to overwrite it")
    folder.mkdir(parents=True, exist_ok=True)
    by_system: dict[str, list[ScoreRow]] = {}
    for row in rows:
        by_system.setdefault(row.system, []).append(row)

    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.2), constrained_layout=True)
    bins = np.linspace(0.0, 1.0, 26)
    for ax, metric in zip(axes, METRICS):
        for system, rs in sorted(by_system.items()):
            values = [getattr(r, metric) for r in rs]
            ax.hist(values, bins=bins, histtype="step", linewidth=1.5, label=f"{system} (mean {np.mean(values):.3f})")
        ax.set_xlabel(metric)
        ax.set_ylabel("pairs")
        ax.legend(fontsize="small")
    fig.savefig(paths[0], dpi=120)
    plt.close(fig)

    baseline = {(r.scene, r.listener): r for r in by_system.get(BASELINE, [])}
    for path, system in zip(paths[1:], [s for s in sorted(by_system) if s != BASELINE]):
        matched = [(baseline[(r.scene, r.listener)], r) for r in by_system[system] if (r.scene, r.listener) in baseline]
        fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 4), constrained_layout=True)
        for ax, metric in zip(axes, METRICS):
            x = np.array([getattr(b, metric) for b, _ in matched])
            y = np.array([getattr(s, metric) for _, s in matched])
            ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
            ax.scatter(x, y, s=10, alpha=0.7)
            diff = f"mean diff {np.mean(y - x):+.3f}" if len(x) else "no pairs"
            ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal", xlabel=f"{BASELINE} {metric}", ylabel=f"{system} {metric}")
            ax.set_title(f"{metric}: {diff} (n={len(x)})", fontsize="medium")
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return paths
