"""One measurement in its own process: the parent side (``run_worker``) and the child
(``python -m device_agent.worker``).

A fresh process per Profile means a model that crashes or hangs the runtime takes down only
that process, and the peak memory read is the worker's alone. The request travels as JSON on
stdin; the result comes back as one ``RESULT_MARKER`` line on stdout (runtimes may print their
own logs, so the marker, not "the last line", identifies it).

Test hook, honest and inert unless enabled: when the agent runs with
``HADMC_DEVICE_TEST_FAULTS=1``, a model whose manifest name is ``fault:crash`` or
``fault:hang`` makes the worker abort (SIGABRT) or sleep forever after loading the model.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from typing import Any

RESULT_MARKER = "HADMC_WORKER_RESULT "
FAULT_ENV = "HADMC_DEVICE_TEST_FAULTS"


class WorkerFailure(Exception):
    """The worker died or timed out; ``kind`` is "crashed" or "timeout"."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _spawn(runtime: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "device_agent.worker", "--preload", runtime],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a timeout kills runtime threads too
    )


class WorkerLauncher:
    """Hands out fresh worker processes, one per measurement.

    With ``prewarm``, after each measurement one spare worker is started for the same runtime;
    it imports numpy and the runtime, then blocks reading its request. The next Profile then
    skips interpreter start-up and imports (most of a call's overhead on a small board) while
    every measurement still gets a process of its own. The spare is started only after the
    previous worker has exited, so its imports never overlap a timed window.
    """

    def __init__(self, prewarm: bool = True) -> None:
        self.prewarm = prewarm
        self._spare: tuple[str, subprocess.Popen[str]] | None = None
        self._lock = threading.Lock()

    def take(self, runtime: str) -> subprocess.Popen[str]:
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            if spare[0] == runtime and spare[1].poll() is None:
                return spare[1]
            _kill_group(spare[1])
            spare[1].communicate()
        return _spawn(runtime)

    def refill(self, runtime: str) -> None:
        if self.prewarm:
            with self._lock:
                if self._spare is None:
                    self._spare = (runtime, _spawn(runtime))

    def close(self) -> None:
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            _kill_group(spare[1])
            spare[1].communicate()


def run_worker(
    request: dict[str, Any], timeout_s: float, launcher: WorkerLauncher | None = None
) -> dict[str, Any]:
    """Run one measurement; returns the worker's JSON (which may carry an ``error``)."""
    launcher = launcher or WorkerLauncher(prewarm=False)
    proc = launcher.take(request["runtime"])
    try:
        return _communicate(proc, request, timeout_s)
    finally:
        launcher.refill(request["runtime"])


def _communicate(
    proc: subprocess.Popen[str], request: dict[str, Any], timeout_s: float
) -> dict[str, Any]:
    try:
        out, err = proc.communicate(json.dumps(request), timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        raise WorkerFailure(
            "timeout", f"worker exceeded {timeout_s:.1f} s and was killed"
        ) from None
    for line in reversed(out.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER) :])
    rc = proc.returncode
    how = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}"
    tail = " | ".join(err.strip().splitlines()[-3:])
    raise WorkerFailure("crashed", f"worker died ({how}) without a result: {tail}"[:2000])


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _power_begin(req: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Pick the first readable sensor and take the idle baseline (before the model loads)."""
    from pathlib import Path

    from device_agent import power

    if not req.get("read_power"):
        return None, {"status": "unavailable", "method": "not requested"}
    readers = [r for r in power.discover(Path(req.get("sysfs_root", "/"))) if r.readable]
    for reader in readers:
        try:
            meter = power.EnergyMeter(reader)
            idle_w = meter.idle_power_w()
            return meter, {"status": "measured", "source": reader.source, "idle_power_w": idle_w}
        except (OSError, ValueError, subprocess.SubprocessError):
            continue
    return None, {
        "status": "unavailable",
        "method": "no readable power sensor (ina3221, rapl, power_supply, pi5_pmic)",
    }


def _measure(req: dict[str, Any]) -> dict[str, Any]:
    from device_agent import measure as m

    runtime = req["runtime"]
    try:
        if runtime == "onnxruntime":
            import onnxruntime  # noqa: F401
        else:
            import ai_edge_litert.interpreter  # noqa: F401
    except ImportError as exc:
        return {"error": "runtime_unavailable", "message": str(exc)}
    meter, power_out = _power_begin(req)
    specs = [m.InputSpec(**s) for s in req.get("inputs", [])]
    prepare = m.prepare_ort if runtime == "onnxruntime" else m.prepare_litert
    timing = m.Timing()
    try:
        t = time.perf_counter_ns()
        handle, specs, meta = prepare(req["model_path"], int(req.get("threads", 0)), specs)
        timing.load_ms = (time.perf_counter_ns() - t) / 1e6
    except m.ModelLoadError as exc:
        return {"error": "invalid_model", "message": str(exc)}
    except m.BadInputError as exc:
        return {"error": "invalid_request", "message": str(exc)}
    fault = req.get("fault", "")
    if fault == "crash":
        os.abort()
    if fault == "hang":
        while True:
            time.sleep(3600)
    try:
        call = m.make_call(runtime, handle, specs)
        window: dict[str, Any] = {}

        def on_window(event: str) -> None:
            if meter is None:
                return
            if event == "start":
                meter.start()
            else:
                window["mean_w"], window["energy_j"], window["seconds"] = meter.stop()

        m.run_budget(call, m.Budget(**req["budget"]), timing, on_window)
    except Exception as exc:  # runtime errors on these inputs (shape/type mismatch)
        return {"error": "invalid_request", "message": f"inference failed: {exc}"}
    stats = m.stats_ms(timing.latencies_ms)
    if window:
        power_out.update(
            mean_power_w=window["mean_w"],
            window_seconds=window["seconds"],
            # W x ms = mJ: mean power over the timed window x mean latency of one call
            energy_per_inference_mj=window["mean_w"] * stats["mean_ms"],
            method="mean sensor power over the timed window x mean latency",
        )
    peak, peak_method = m.peak_memory()
    out = asdict(timing)
    out.pop("latencies_ms")
    return {
        **out,
        "latency": stats,
        "peak_memory_bytes": peak,
        "peak_memory_method": peak_method,
        "inputs": [asdict(s) for s in specs],
        "power": power_out,
        **meta,
    }


def _preload(runtime: str) -> None:
    """Import what the measurement needs before the request arrives (see WorkerLauncher).
    Import errors are ignored here and reported by ``_measure``."""
    import numpy  # noqa: F401

    from device_agent import measure  # noqa: F401

    try:
        if runtime == "onnxruntime":
            import onnxruntime  # noqa: F401
        elif runtime == "litert":
            import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        pass


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--preload":
        _preload(sys.argv[2])
    raw = sys.stdin.read()
    if not raw:  # the agent went away before sending a request (spare worker): just exit
        return 0
    req = json.loads(raw)
    result = _measure(req)
    sys.stdout.write(RESULT_MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
