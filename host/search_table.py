"""The Pareto-front table printed at the end of a search (rich): one row per front member, with
speedup and accuracy drop against the run's baseline, and the held-out test accuracy with its
95 % interval. (``host.report`` gives the report's rows, for report.html.)"""

from __future__ import annotations

from typing import Any

import numpy as np
from rich.table import Table

from hadmc.search.reward import Objectives

# The same words and units as `hadmc-host profile` (host.fleet_tables): p50 ms, peak mem MiB,
# the precision words of hadmc.compress (fp32 / int8 / mixed), yes/no.
COLUMNS = ("id", "val acc %", "drop pts", "test acc % [95% CI]", "p50 ms", "speedup", "size KB",
           "peak mem MiB", "precision", "mean keep", "feasible")  # fmt: skip


def _test_cell(row: dict[str, Any]) -> str:
    if row.get("test_accuracy") is None:
        return "-"
    lo, hi = row["test_accuracy_ci95"]
    return f"{100 * row['test_accuracy']:.2f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def search_front_table(summary: dict[str, Any], baseline: Objectives) -> Table:
    """Baseline row first, then the front by latency; speedups and drops against ``baseline``."""
    b = baseline
    kind = "simulated" if summary.get("simulated") else "measured"
    table = Table(
        title=f"Pareto front ({summary['measured']} {kind}, {summary['failed']} failed, "
        f"HV {summary['hypervolume']:.3f}; {summary.get('strategy', '')})"
    )
    for col in COLUMNS:
        table.add_column(col, justify="right")
    table.add_row(
        "base", f"{100 * b.accuracy:.2f}", "0.00", _test_cell(summary.get("baseline", {})),
        f"{b.latency_ms:.3f}", "1.00", f"{b.size_bytes / 1024:.1f}", f"{b.memory_mib:.1f}",
        "fp32", "1.00", "-",
    )  # fmt: skip
    for r in summary["front"]:
        table.add_row(
            str(r["id"]),
            f"{100 * r['accuracy']:.2f}",
            f"{100 * (b.accuracy - r['accuracy']):.2f}",
            _test_cell(r),
            f"{r['latency_ms']:.3f}",
            f"{b.latency_ms / r['latency_ms']:.2f}",
            f"{r['size_bytes'] / 1024:.1f}",
            f"{r['memory_mib']:.1f}",
            str(r["precision"]),
            f"{np.mean(r['actions']['pruning']):.2f}",
            "-" if r["feasible"] is None else ("yes" if r["feasible"] else "no"),
        )
    return table
