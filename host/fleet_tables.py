"""Terminal tables of ``hadmc-host profile`` and ``devices`` (rich), in the words and units the
search table uses: ms, MiB (2**20 bytes), yes/no, and "-" where a field does not apply (a
simulated row has no timed runs, load time or upload). A failed row shows its error code from
``host.errors`` and the message."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hadmc.device.hal import ArtifactSpec
from host.fleet import NOT_SIMULATED, FleetRow, is_simulated

PROFILE_COLUMNS = (
    "device", "runtime", "mean ms", "p50 ms", "p90 ms", "p99 ms", "first ms", "CV", "runs",
    "load ms", "peak mem MiB", "energy mJ/inf", "upload B", "status",
)  # fmt: skip
DEVICE_COLUMNS = (
    "device", "health", "agent", "arch", "cpu", "cores phys/logical", "memory MiB free/total",
    "runtimes", "targets", "power sources", "token required",
)  # fmt: skip


def console_for_stdout() -> Any:
    from rich.console import Console

    # Not a terminal (pipes, CI logs): a wide fixed width rather than rich's 80 columns,
    # which would wrap every number.
    return Console(width=None if sys.stdout.isatty() else 200)


def yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _energy_text(m: dict[str, Any]) -> str:
    if m["energy_mj"] is None:
        return f"- ({m['energy_status']})"
    return f"{m['energy_mj']:.3f} ({m['energy_status']})"


def _profile_cells(artifact: ArtifactSpec, r: FleetRow) -> list[str]:
    m = r.measurement
    if m is None:
        return [r.label, artifact.runtime, *["-"] * 11, f"[red]{r.error_code}: {r.error}"]
    if m["source"] == "simulated":
        m = {k: (None if k in NOT_SIMULATED else v) for k, v in m.items()}
    runtime = f"{artifact.runtime} {m['provenance'].get('runtime_version', '')}".strip()
    return [
        r.label,
        runtime,
        _fmt(m["latency_ms_mean"]),
        _fmt(m["latency_ms_p50"]),
        _fmt(m["latency_ms_p90"]),
        _fmt(m["latency_ms_p99"]),
        _fmt(m["first_inference_ms"]),
        _fmt(m["latency_cv"]),
        "-" if m["n_runs"] is None else str(m["n_runs"]),
        _fmt(m["load_ms"], 1),
        _fmt(m["peak_memory_mib"], 1),
        _energy_text(m),
        "-" if m["upload_bytes"] is None else str(m["upload_bytes"]),
        "[green]ok" if m["source"] == "device" else f"[yellow]{m['source']}",
    ]


def print_profile_table(artifact: ArtifactSpec, rows: list[FleetRow]) -> None:
    """One row per device: mean, percentiles and first inference (as benchmark_model prints
    them), errors in the status column."""
    from rich.table import Table

    title = (
        f"{Path(artifact.path).name}  ({artifact.format}, {artifact.precision}, "
        f"input {artifact.input_name or '?'} {list(artifact.input_shape) or 'model default'})"
    )
    if any(is_simulated(r) for r in rows):
        title += "\nsimulated rows are analytic estimates: one latency figure, nothing timed"
    table = Table(title=title)
    for col in PROFILE_COLUMNS:
        table.add_column(col, justify="left" if col in ("device", "runtime", "status") else "right")
    for r in rows:
        table.add_row(*_profile_cells(artifact, r))
    console_for_stdout().print(table)


def _device_cells(r: FleetRow) -> list[str]:
    i = r.info or {}
    if i.get("source") == "simulated":  # SimulatedDevice.info() has its own shape
        return [
            r.label, "simulated", "-", i.get("arch", "-"), i.get("cpu", "-"),
            str(i.get("cores", "-")), f"- / {i.get('ram_mib', '-')}",
            ", ".join(i.get("runtimes", [])), "cpu (modelled)", "simulated", "-",
        ]  # fmt: skip
    health = "[green]serving" if r.healthy else f"[red]{r.error_code or 'unhealthy'}: {r.error}"
    if r.healthy and not r.ok:  # serving, but failed a check (devices --target)
        health = f"[yellow]serving; {r.error_code}: {r.error}"
    runtimes = ", ".join(
        f"{rt['runtime']} {rt['version']}" if rt["available"] else f"{rt['runtime']} (missing)"
        for rt in i.get("runtimes", [])
    )
    power = ", ".join(
        f"{s['kind']}{'' if s['readable'] else ' (unreadable)'}" for s in i.get("power_sources", [])
    )
    memory = (
        f"{i['memory_available_bytes'] / 2**20:.0f} / {i['memory_total_bytes'] / 2**20:.0f}"
        if i
        else "-"
    )
    return [
        r.label,
        health,
        i.get("agent_version", "-"),
        i.get("arch", "-"),
        i.get("cpu_model", "-") + (f" (kind {i['device_kind']})" if i.get("device_kind") else ""),
        f"{i['cpu_cores_physical']}/{i['cpu_cores_logical']}" if i else "-",
        memory,
        runtimes or "-",
        ", ".join(t["target"] for t in i.get("targets", []) if t["available"]) or "-",
        power or ("none" if i else "-"),
        yes_no(i.get("token_required")) if i else "-",
    ]


def print_devices_table(rows: list[FleetRow]) -> None:
    """GetInfo + health per device."""
    from rich.table import Table

    table = Table(title="devices")
    for col in DEVICE_COLUMNS:
        table.add_column(col)
    for r in rows:
        table.add_row(*_device_cells(r))
    console_for_stdout().print(table)
