"""One measurement in its own process: the parent side (``run_worker``) and the child
(``python -m device_agent.worker``).

A fresh process per Profile means a model that crashes or hangs the runtime takes down only
that process, and the peak memory read is the worker's alone. The request travels as JSON on
stdin; the result comes back as one ``RESULT_MARKER`` line on stdout (runtimes may print their
own logs, so the marker, not "the last line", identifies it).

Containment: the worker runs in its own session (process group), so a timeout, a client that
went away or the agent's shutdown kills the runtime's threads and children too. It runs under
an address-space limit (``RLIMIT_AS``, set by the worker on itself before importing anything,
so the spare worker has it too), and with HOME, XDG and TMPDIR pointed inside the agent's
state directory and onnxruntime's telemetry off, so nothing is written outside the cache dir
(onnxruntime otherwise writes ``~/.cache/Microsoft/DeveloperTools/.onnxruntime/`` with a
device id).

Test hook, honest and inert unless enabled: when the agent runs with
``HADMC_DEVICE_TEST_FAULTS=1``, a model whose manifest name is ``fault:crash`` or
``fault:hang`` makes the worker abort (SIGABRT) or sleep forever after loading the model.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RESULT_MARKER = "HADMC_WORKER_RESULT "
FAULT_ENV = "HADMC_DEVICE_TEST_FAULTS"


POLL_S = 0.1  # how often a waiting measurement checks whether its client has gone


class WorkerFailure(Exception):
    """The worker died, timed out or was cancelled; ``kind`` is "crashed", "timeout" or
    "cancelled"."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class WorkerSettings:
    """How every worker process is started."""

    state_dir: Path  # HOME / XDG / TMPDIR of the workers live here, inside the cache dir
    max_address_space_bytes: int = 0  # RLIMIT_AS of each worker; 0: no limit

    def env(self) -> dict[str, str]:
        home = self.state_dir / "home"
        dirs = {
            "HOME": home,
            "XDG_CACHE_HOME": home / ".cache",
            "XDG_CONFIG_HOME": home / ".config",
            "XDG_DATA_HOME": home / ".local" / "share",
            "XDG_STATE_HOME": home / ".local" / "state",
            "TMPDIR": self.state_dir / "tmp",
        }
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in dirs}
        env.update({k: str(v) for k, v in dirs.items()})
        # glibc reserves a 64 MiB arena per thread; under RLIMIT_AS that virtual reservation,
        # not real use, would hit the limit first on a many-core board.
        env.setdefault("MALLOC_ARENA_MAX", "2")
        return env


def _spawn(runtime: str, settings: WorkerSettings | None) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "device_agent.worker", "--preload", runtime]
    if settings is not None and settings.max_address_space_bytes:
        cmd += ["--max-address-space", str(settings.max_address_space_bytes)]
    return subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=settings.env() if settings is not None else None,
        start_new_session=True,  # its own process group: a timeout kills runtime threads too
    )


class WorkerLauncher:
    """Hands out fresh worker processes, one per measurement.

    With ``prewarm``, after each measurement one spare worker is started for the same runtime;
    it imports numpy and the runtime, then blocks reading its request. The next Profile then
    skips interpreter start-up and imports (most of a call's overhead on a small board) while
    every measurement still gets a process of its own. The spare is started only after the
    previous worker has exited, so its imports never overlap a timed window.

    ``close()`` kills the spare and any worker still measuring (agent shutdown).
    """

    def __init__(self, prewarm: bool = True, settings: WorkerSettings | None = None) -> None:
        self.prewarm = prewarm
        self.settings = settings
        self._spare: tuple[str, subprocess.Popen[str]] | None = None
        self._active: set[subprocess.Popen[str]] = set()
        self._closed = False
        self._lock = threading.Lock()

    def take(self, runtime: str) -> subprocess.Popen[str]:
        with self._lock:
            if self._closed:
                raise WorkerFailure("cancelled", "the agent is shutting down")
            spare, self._spare = self._spare, None
        if spare is not None:
            if spare[0] == runtime and spare[1].poll() is None:
                proc = spare[1]
            else:
                _kill_group(spare[1])
                spare[1].communicate()
                proc = _spawn(runtime, self.settings)
        else:
            proc = _spawn(runtime, self.settings)
        with self._lock:
            self._active.add(proc)
        return proc

    def release(self, proc: subprocess.Popen[str]) -> None:
        with self._lock:
            self._active.discard(proc)

    def refill(self, runtime: str) -> None:
        if self.prewarm:
            with self._lock:
                if self._spare is None and not self._closed:
                    self._spare = (runtime, _spawn(runtime, self.settings))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            spare, self._spare = self._spare, None
            active = list(self._active)
        for proc in active:
            _kill_group(proc)
        if spare is not None:
            _kill_group(spare[1])
            spare[1].communicate()


def run_worker(
    request: dict[str, Any],
    timeout_s: float,
    launcher: WorkerLauncher | None = None,
    cancelled: threading.Event | None = None,
) -> dict[str, Any]:
    """Run one measurement; returns the worker's JSON (which may carry an ``error``).

    ``cancelled`` set (the client went away) kills the worker at once: a measurement nobody
    waits for must not hold the board.
    """
    launcher = launcher or WorkerLauncher(prewarm=False)
    proc = launcher.take(request["runtime"])
    try:
        return _communicate(proc, request, timeout_s, cancelled or threading.Event())
    finally:
        launcher.release(proc)
        if not (cancelled is not None and cancelled.is_set()):
            launcher.refill(request["runtime"])


def _communicate(
    proc: subprocess.Popen[str],
    request: dict[str, Any],
    timeout_s: float,
    cancelled: threading.Event,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    payload: str | None = json.dumps(request)
    while True:
        step = min(POLL_S, max(0.0, deadline - time.monotonic()))
        try:
            # communicate() may be called again after TimeoutExpired without losing output;
            # the input is sent only by the first call.
            out, err = proc.communicate(payload, timeout=step)
            break
        except subprocess.TimeoutExpired:
            payload = None
            if cancelled.is_set():
                _kill_group(proc)
                proc.communicate()
                raise WorkerFailure("cancelled", "the client went away") from None
            if time.monotonic() >= deadline:
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
    import numpy as np

    from device_agent import measure as m

    runtime = req["runtime"]
    try:
        if runtime == "onnxruntime":
            import onnxruntime

            _ort_telemetry_off(onnxruntime)
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
        if _is_out_of_memory(exc):
            return {"error": "out_of_memory", "message": str(exc)}
        return {"error": "invalid_model", "message": str(exc)}
    except m.BadInputError as exc:
        return {"error": "invalid_request", "message": str(exc)}
    total = sum(math.prod(s.shape) * np.dtype(m.DTYPES[s.dtype]).itemsize for s in specs)
    if total > int(req.get("max_input_bytes") or total):
        return {
            "error": "too_large",
            "message": f"the model's inputs take {total} B, over the agent's "
            f"{req['max_input_bytes']} B limit",
        }
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
    except MemoryError:
        raise
    except Exception as exc:  # runtime errors on these inputs (shape/type mismatch)
        if _is_out_of_memory(exc):
            return {"error": "out_of_memory", "message": f"inference ran out of memory: {exc}"}
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


def _ort_telemetry_off(ort: Any) -> None:
    """onnxruntime's telemetry writes a device id under ~/.cache on some builds: off."""
    try:
        ort.disable_telemetry_events()
    except AttributeError:  # builds without telemetry
        pass


def _is_out_of_memory(exc: Exception) -> bool:
    text = str(exc).lower()
    return "bad_alloc" in text or "failed to allocate" in text or "out of memory" in text


def _preload(runtime: str) -> None:
    """Import what the measurement needs before the request arrives (see WorkerLauncher).
    Import errors are ignored here and reported by ``_measure``."""
    import numpy  # noqa: F401

    from device_agent import measure  # noqa: F401

    try:
        if runtime == "onnxruntime":
            import onnxruntime

            _ort_telemetry_off(onnxruntime)
        elif runtime == "litert":
            import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        pass


def _limit_address_space(max_bytes: int) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        max_bytes = min(max_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (max_bytes, hard))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    opts = dict(zip(args[::2], args[1::2], strict=False))
    if "--max-address-space" in opts:  # first, so that imports count against it too
        _limit_address_space(int(opts["--max-address-space"]))
    if "--preload" in opts:
        _preload(opts["--preload"])
    raw = sys.stdin.read()
    if not raw:  # the agent went away before sending a request (spare worker): just exit
        return 0
    req = json.loads(raw)
    try:
        result = _measure(req)
    except MemoryError:
        result = {"error": "out_of_memory", "message": "the worker ran out of memory"}
    sys.stdout.write(RESULT_MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
