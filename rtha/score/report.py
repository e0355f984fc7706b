"""``--report report.json``: per-system means with 95% CIs, paired differences and the chain configuration."""

from __future__ import annotations

import json
from pathlib import Path

from .. import __version__
from .results import ScoreRow
from .summary import summary_dict


def build_report(rows: list[ScoreRow], csv_path, **context) -> dict:
    """The report: rtha version, the CSV, ``context`` (dataset, settings, chain...), then the summary.

    ``config_hashes`` maps each system to the hash in the CSV's ``config`` column.
    """
    hashes = {}
    for row in rows:
        hashes.setdefault(row.system, row.config)
    return {
        "rtha_version": __version__,
        "csv": str(Path(csv_path)),
        "rows": len(rows),
        **context,
        "config_hashes": hashes,
        **summary_dict(rows),
    }


def write_report(report: dict, path) -> None:
    Path(path).write_text(json.dumps(report, indent=2, default=str) + "\n")
