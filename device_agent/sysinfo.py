"""Facts about the board for GetInfo and provenance: CPU, memory, governor, temperature."""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (x86 "model name", ARM "Model"/"Hardware")."""
    text = _read_text(Path("/proc/cpuinfo")) or ""
    for key in ("model name", "Model", "Hardware", "cpu model"):
        for line in text.splitlines():
            if line.startswith(key) and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_governor(sysfs_root: Path = Path("/")) -> str:
    """cpufreq scaling governor of CPU 0; empty where unreadable (containers, VMs)."""
    path = sysfs_root / "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"
    return _read_text(path) or ""


def cpu_temperature_c(sysfs_root: Path = Path("/")) -> float | None:
    """Highest thermal-zone temperature in deg C (sysfs millidegrees); None where unreadable."""
    temps: list[float] = []
    for zone in sorted((sysfs_root / "sys/class/thermal").glob("thermal_zone*/temp")):
        raw = _read_text(zone)
        try:
            temps.append(int(raw) / 1000.0) if raw else None
        except ValueError:
            continue
    return max(temps) if temps else None


def hostname() -> str:
    return socket.gethostname()


def memory_bytes() -> tuple[int, int]:
    """(total, available) physical memory in bytes."""
    import psutil  # here, not at the top: ~20 ms of the agent's cold start (bench/agent.py)

    vm = psutil.virtual_memory()
    return int(vm.total), int(vm.available)


def cores() -> tuple[int, int]:
    """(logical, physical) core counts; physical falls back to logical where unknown."""
    import psutil  # deferred: see memory_bytes

    logical = psutil.cpu_count(logical=True) or os.cpu_count() or 1
    physical = psutil.cpu_count(logical=False) or logical
    return int(logical), int(physical)
