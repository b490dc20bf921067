"""The Pareto-front table printed at the end of a search (rich): one row per front member, with
speedup and accuracy drop against the run's baseline. (``host.report.front_table`` gives the
report's rows, with reward and measurement source, for report.html.)"""

from __future__ import annotations

from typing import Any

import numpy as np
from rich.table import Table

from hadmc.reward import Objectives


def search_front_table(summary: dict[str, Any], baseline: Objectives) -> Table:
    """Baseline row first, then the front by latency; speedups and drops against ``baseline``."""
    b = baseline
    table = Table(
        title=f"Pareto front ({summary['measured']} measured, "
        f"{summary['failed']} failed, HV {summary['hypervolume']:.3f})"
    )
    for col in (
        "id",
        "acc %",
        "drop pts",
        "p50 ms",
        "speedup",
        "size KB",
        "mem MB",
        "precision",
        "mean keep",
        "feasible",
    ):
        table.add_column(col, justify="right")
    table.add_row(
        "base",
        f"{100 * b.accuracy:.2f}",
        "0.00",
        f"{b.latency_ms:.3f}",
        "1.00",
        f"{b.size_bytes / 1024:.1f}",
        f"{b.memory_mb:.1f}",
        "fp32",
        "1.00",
        "",
    )
    for r in summary["front"]:
        table.add_row(
            str(r["id"]),
            f"{100 * r['accuracy']:.2f}",
            f"{100 * (b.accuracy - r['accuracy']):.2f}",
            f"{r['latency_ms']:.3f}",
            f"{b.latency_ms / r['latency_ms']:.2f}",
            f"{r['size_bytes'] / 1024:.1f}",
            f"{r['memory_mb']:.1f}",
            str(r["precision"]),
            f"{np.mean(r['actions']['pruning']):.2f}",
            str(r["feasible"]),
        )
    return table
