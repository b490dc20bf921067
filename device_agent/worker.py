"""One measurement in its own process: the child side (``python -m device_agent.worker``);
the agent's side is ``device_agent.launcher``. Two modes: one-shot (a process per request,
``--no-prewarm``) and zygote (``--zygote RUNTIME``: imports once, forks a child per request).

The request arrives as JSON on stdin; the result leaves as one ``RESULT_MARKER`` line on
stdout. Before anything else the worker limits its own address space (``--max-address-space``)
and starts watching for its agent's exit; onnxruntime's telemetry is switched off.

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
from dataclasses import asdict
from typing import Any

RESULT_MARKER = "HADMC_WORKER_RESULT "
EXIT_MARKER = "HADMC_WORKER_EXIT "  # from the zygote: a child's exit code (negative: signal)
FAULT_ENV = "HADMC_DEVICE_TEST_FAULTS"


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
    from device_agent.adapters import adapter

    runtime = adapter(req["runtime"])
    try:
        runtime.load()
    except ImportError as exc:
        return {"error": "runtime_unavailable", "message": str(exc)}
    paired = bool(req.get("reference_path"))
    meter, power_out = (None, dict(PAIRED_POWER)) if paired else _power_begin(req)
    specs = [m.InputSpec(**s) for s in req.get("inputs", [])]
    backend, options = req.get("backend", ""), req.get("provider_options", {})
    path, threads = req["model_path"], int(req.get("threads", 0))
    timing = m.Timing()
    try:
        t = time.perf_counter_ns()
        handle, specs, meta = runtime.prepare(path, threads, specs, backend, options)
        timing.load_ms = (time.perf_counter_ns() - t) / 1e6
    except m.TargetUnavailableError as exc:
        return {"error": "runtime_unavailable", "message": str(exc)}
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
    if paired:
        return _measure_paired(req, runtime, handle, specs, timing, meta, power_out)
    try:
        call = runtime.run(handle, specs)
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
    except Exception as exc:  # noqa: BLE001 - runtime errors on these inputs
        return _inference_error(exc)
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
    placement = runtime.placement(path, backend, options, specs)  # after the timed window
    out = asdict(timing)
    out.pop("latencies_ms")
    return {
        **out,
        "latency": stats,
        "peak_memory_bytes": peak,
        "peak_memory_method": peak_method,
        "inputs": [asdict(s) for s in specs],
        "power": power_out,
        "nodes_per_provider": placement,
        **meta,
    }


def _inference_error(exc: Exception, prefix: str = "") -> dict[str, str]:
    """The typed error of a runtime error during inference (shape or type mismatch with the
    inputs, or memory); one place for the single and the paired measurement."""
    if _is_out_of_memory(exc):
        return {"error": "out_of_memory", "message": f"{prefix}inference ran out of memory: {exc}"}
    message = f"{prefix}inference failed on these inputs: {exc}"
    return {"error": "invalid_request", "message": message}


PAIRED_POWER = {
    "status": "unavailable",
    "method": "not read for a paired measurement: its window mixes two models",
}


def _measure_paired(
    req: dict[str, Any],
    runtime: Any,
    handle: Any,
    specs: list[Any],
    timing: Any,
    meta: dict[str, Any],
    power_out: dict[str, Any],
) -> dict[str, Any]:
    """The candidate and the reference interleaved in one window (``measure.run_paired``).
    Peak memory is read after the candidate's first inference and before the reference is
    loaded, so it is the candidate's alone."""
    from device_agent import measure as m

    backend, options = req.get("backend", ""), req.get("provider_options", {})
    threads = int(req.get("threads", 0))
    ref = m.PairedTiming()
    try:
        call = runtime.run(handle, specs)
        t = time.perf_counter_ns()
        call()
        timing.first_inference_ms = (time.perf_counter_ns() - t) / 1e6
        peak, peak_method = m.peak_memory()
        try:
            ref_handle, _, _ = runtime.prepare(
                req["reference_path"], threads, specs, backend, options
            )
        except (m.ModelLoadError, m.BadInputError) as exc:
            return {"error": "invalid_request", "message": f"the reference model: {exc}"}
        try:
            ref_call = runtime.run(ref_handle, specs)
            ref_call()  # once, so that an error here names the reference, not the candidate
        except Exception as exc:  # noqa: BLE001 - runtime errors on these inputs
            return _inference_error(exc, "the reference model: ")
        m.run_paired(call, ref_call, m.Budget(**req["budget"]), timing, ref)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - runtime errors on these inputs
        return _inference_error(exc)
    ratio, low, high = m.paired_ratio(timing.latencies_ms, ref.latencies_ms, ref.blocks)
    placement = runtime.placement(req["model_path"], backend, options, specs)
    out = asdict(timing)
    out.pop("latencies_ms")
    return {
        **out,
        "latency": m.stats_ms(timing.latencies_ms),
        "reference_latency": m.stats_ms(ref.latencies_ms),
        "latency_ratio": ratio,
        "latency_ratio_ci95_low": low,
        "latency_ratio_ci95_high": high,
        "pair_blocks": ref.blocks,
        "peak_memory_bytes": peak,
        "peak_memory_method": f"{peak_method}, read before the reference model was loaded",
        "inputs": [asdict(s) for s in specs],
        "power": power_out,
        "nodes_per_provider": placement,
        **meta,
    }


def _is_out_of_memory(exc: Exception) -> bool:
    text = str(exc).lower()
    return "bad_alloc" in text or "failed to allocate" in text or "out of memory" in text


def _preload(runtime: str) -> None:
    """Import what the measurement needs before the request arrives (see WorkerLauncher).
    Import errors are ignored here and reported by ``_measure``."""
    import numpy as np

    from device_agent import measure, power  # noqa: F401

    # First calls import lazily (np.percentile pulls numpy.ma: ~35 ms on a small x86 core);
    # pay that here, once, not in every forked measurement.
    measure.stats_ms([1.0, 2.0, 3.0])
    measure.random_input(measure.InputSpec("x", [1, 2], "float32"), np.random.default_rng(0))

    from device_agent.adapters import ADAPTERS

    try:
        if runtime in ADAPTERS:
            ADAPTERS[runtime].load()
    except ImportError:
        pass


def _limit_address_space(max_bytes: int) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        max_bytes = min(max_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (max_bytes, hard))


def _exit_with_agent(poll_s: float = 0.5) -> None:
    """Exit once the agent is gone (we are re-parented): an agent killed with SIGKILL runs no
    clean-up, and a worker stuck in a model must not measure on for nobody."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, name="agent-watch", daemon=True).start()


def _run(req: dict[str, Any]) -> bytes:
    try:
        result = _measure(req)
    except MemoryError:
        result = {"error": "out_of_memory", "message": "the worker ran out of memory"}
    return (RESULT_MARKER + json.dumps(result) + "\n").encode()


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _zygote(runtime: str) -> int:
    """Serve measurements by fork: one request per stdin line, one fresh child per request.

    The imports are paid once here; each child starts with numpy and the runtime loaded, so
    a Profile call costs a fork (milliseconds), not an interpreter start-up and imports
    (hundreds of milliseconds on a board). Isolation is unchanged: a child that crashes or
    hangs is its own process, and the agent kills this whole process group on a timeout.
    No thread exists here before a fork. The agent's exit closes stdin, and then this
    process kills its group (itself and any child still measuring).
    """
    import select

    _preload(runtime)
    stdin, pending = sys.stdin.fileno(), b""
    while True:
        while b"\n" not in pending:
            chunk = os.read(stdin, 1 << 16)
            if not chunk:
                return 0  # the agent went away while we were idle
            pending += chunk
        line, pending = pending.split(b"\n", 1)
        pid = os.fork()
        if pid == 0:  # the measuring child
            code = 0
            try:
                _exit_with_agent()
                _write_all(1, _run(json.loads(line)))
            except BaseException:  # noqa: BLE001 - the exit status tells the agent
                code = 70
            os._exit(code)
        watch = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None
        while True:
            if watch is not None:
                ready, _, _ = select.select([watch, stdin], [], [])
            else:  # no pidfd (not Linux): poll the child, sparingly
                ready, _, _ = select.select([stdin], [], [], 0.02)
            if stdin in ready:
                chunk = os.read(stdin, 1 << 16)
                if not chunk:  # the agent is gone: take the measuring child with us
                    os.killpg(0, signal.SIGKILL)
                pending += chunk
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
        if watch is not None:
            os.close(watch)
        _write_all(1, f"{EXIT_MARKER}{os.waitstatus_to_exitcode(status)}\n".encode())


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    opts = dict(zip(args[::2], args[1::2], strict=False))
    if "--probe" in opts:  # which execution targets load here (device_agent.targets)
        from device_agent.targets import probe_in_worker

        print(json.dumps(probe_in_worker()))
        return 0
    if "--max-address-space" in opts:  # first, so that imports count against it too
        _limit_address_space(int(opts["--max-address-space"]))
    if "--zygote" in opts:
        return _zygote(opts["--zygote"])
    _exit_with_agent()
    if "--preload" in opts:
        _preload(opts["--preload"])
    raw = sys.stdin.read()
    if not raw:  # the agent went away before sending a request: just exit
        return 0
    sys.stdout.flush()
    _write_all(1, _run(json.loads(raw)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
