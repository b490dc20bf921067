"""The measurement itself, run inside the worker process (DESIGN §5).

Phases are reported apart: load (session/interpreter creation), first inference, warm-up
(>= warmup_runs and >= warmup_min_seconds), then timed runs, each call timed alone with
``perf_counter_ns`` (>= min_runs and >= min_seconds). ``max_seconds`` bounds the warm-up and
the timed window whatever the run counts say: a request for 2**32 runs stops there, and
``n`` reports how many were timed. Inputs are random data of the requested shape/dtype, made once before timing so that
only the runtime call is timed.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from protos import runtimes as runtime_table

DTYPES = {name: np.dtype(name).type for name in runtime_table.DTYPE_BYTES}  # protos.runtimes
ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
}


class ModelLoadError(Exception):
    """The runtime refused the model (corrupt, unsupported op...)."""


class BadInputError(Exception):
    """The requested inputs do not fit the model."""


class TargetUnavailableError(Exception):
    """The requested execution provider / delegate did not initialise on this board."""


@dataclass
class Budget:
    warmup_runs: int = 10
    warmup_min_seconds: float = 0.5
    min_runs: int = 50
    min_seconds: float = 1.0
    max_seconds: float = 10.0


@dataclass
class InputSpec:
    name: str
    shape: list[int]
    dtype: str


@dataclass
class Timing:
    load_ms: float = 0.0
    first_inference_ms: float = 0.0
    warmup_runs: int = 0
    warmup_ms: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    window_start_unix: float = 0.0
    window_end_unix: float = 0.0


def random_input(spec: InputSpec, rng: np.random.Generator) -> np.ndarray:
    dtype = DTYPES[spec.dtype]
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(spec.shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -128), min(info.max, 127), spec.shape).astype(dtype)


def stats_ms(latencies_ms: list[float]) -> dict[str, float]:
    """n, min, p50, mean, std (sample, ddof=1), p90, p99, max, cv = std/mean."""
    a = np.asarray(latencies_ms, dtype=np.float64)
    mean = float(a.mean())
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    p50, p90, p99 = (float(x) for x in np.percentile(a, [50, 90, 99]))
    return {
        "n": int(a.size),
        "min_ms": float(a.min()),
        "p50_ms": p50,
        "mean_ms": mean,
        "std_ms": std,
        "p90_ms": p90,
        "p99_ms": p99,
        "max_ms": float(a.max()),
        "cv": std / mean if mean > 0 else 0.0,
    }


def peak_memory() -> tuple[int, str]:
    """Peak RSS of this process alone. ``VmHWM`` is per address space, so unlike
    ``ru_maxrss`` it does not inherit the agent's peak across fork/exec."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024, "VmHWM (/proc/self/status)"
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return rss * scale, "getrusage(RUSAGE_SELF).ru_maxrss"


def _ns_to_ms(ns: int) -> float:
    return ns / 1e6


def _warm_up(calls: tuple[Any, ...], budget: Budget, timing: Timing) -> None:
    """Run ``calls`` in turn (one warm-up run) until >= warmup_runs and >= warmup_min_seconds,
    never past max_seconds; records the count and the phase's wall time in ``timing``."""
    t_warm = time.perf_counter()
    end, hard_end = t_warm + budget.warmup_min_seconds, t_warm + budget.max_seconds
    while timing.warmup_runs < budget.warmup_runs or time.perf_counter() < end:
        if time.perf_counter() >= hard_end:
            break
        for fn in calls:
            fn()
        timing.warmup_runs += 1
    timing.warmup_ms = (time.perf_counter() - t_warm) * 1000


def run_budget(call: Any, budget: Budget, timing: Timing, on_window: Any = None) -> None:
    """First inference, warm-up, then timed runs of ``call()``; ``on_window(start|stop)``
    brackets exactly the timed runs (power meter)."""
    t = time.perf_counter_ns()
    call()
    timing.first_inference_ms = _ns_to_ms(time.perf_counter_ns() - t)
    _warm_up((call,), budget, timing)
    lat = timing.latencies_ms
    if on_window:
        on_window("start")
    timing.window_start_unix = time.time()
    start = time.perf_counter()
    min_end, max_end = start + budget.min_seconds, start + budget.max_seconds
    while True:
        t = time.perf_counter_ns()
        call()
        lat.append(_ns_to_ms(time.perf_counter_ns() - t))
        now = time.perf_counter()
        if now >= max_end or (len(lat) >= budget.min_runs and now >= min_end):
            break
    timing.window_end_unix = time.time()
    if on_window:
        on_window("stop")


# Runs per block of a paired measurement. The first run of each block is not timed: it
# follows the other model's block and pays to bring this model's weights back into the
# caches, a cost a deployed model running alone does not pay on every call.
PAIR_BLOCK_RUNS = 8
RATIO_BOOTSTRAP = 400


@dataclass
class PairedTiming:
    """What ``run_paired`` adds for the reference; the candidate's runs go to ``Timing``."""

    first_inference_ms: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    blocks: int = 0  # timed blocks per model


def run_paired(call: Any, ref_call: Any, budget: Budget, timing: Timing, ref: PairedTiming) -> None:
    """Warm up, then time ``call`` and ``ref_call`` in alternating blocks (A B B A A B ...:
    each model goes first in half the pairs, so neither always follows the other).

    The budget's run counts apply to each model; its seconds to the window as a whole. The
    candidate's first inference must already be in ``timing`` (the worker reads peak memory
    after it, before the reference is loaded); the reference's is taken here.
    """
    t = time.perf_counter_ns()
    ref_call()
    ref.first_inference_ms = _ns_to_ms(time.perf_counter_ns() - t)
    _warm_up((call, ref_call), budget, timing)
    timed = PAIR_BLOCK_RUNS - 1
    timing.window_start_unix = time.time()
    start = time.perf_counter()
    min_end, max_end = start + budget.min_seconds, start + budget.max_seconds
    order = ((call, timing.latencies_ms), (ref_call, ref.latencies_ms))
    while True:
        pair = order if ref.blocks % 2 == 0 else order[::-1]
        for fn, lat in pair:
            fn()  # untimed: refills the caches after the other model's block
            for _ in range(timed):
                t = time.perf_counter_ns()
                fn()
                lat.append(_ns_to_ms(time.perf_counter_ns() - t))
        ref.blocks += 1
        now = time.perf_counter()
        if now >= max_end or (len(ref.latencies_ms) >= budget.min_runs and now >= min_end):
            break
    timing.window_end_unix = time.time()


def paired_ratio(
    latencies_ms: list[float], ref_latencies_ms: list[float], blocks: int, seed: int = 0
) -> tuple[float, float, float]:
    """p50(candidate) / p50(reference), with a 95 % interval from a bootstrap over the
    interleaved blocks (blocks, not single runs, are resampled: runs within a block share
    the moment's load, so resampling runs would understate the spread)."""
    a = np.asarray(latencies_ms, dtype=np.float64).reshape(blocks, -1)
    b = np.asarray(ref_latencies_ms, dtype=np.float64).reshape(blocks, -1)
    ratio = float(np.median(a) / np.median(b))
    if blocks < 2:
        return ratio, ratio, ratio
    idx = np.random.default_rng(seed).integers(0, blocks, (RATIO_BOOTSTRAP, blocks))
    boot = np.median(a[idx].reshape(RATIO_BOOTSTRAP, -1), axis=1) / np.median(
        b[idx].reshape(RATIO_BOOTSTRAP, -1), axis=1
    )
    low, high = np.percentile(boot, [2.5, 97.5])
    return ratio, float(low), float(high)


def prepare_ort(
    path: str,
    threads: int,
    inputs: list[InputSpec],
    provider: str = "CPUExecutionProvider",
    options: dict[str, str] | None = None,
) -> tuple[Any, list[InputSpec], dict[str, Any]]:
    """Create the ORT session on ``provider`` (CPU as the fallback for the nodes it lacks);
    load is timed by the caller. Refuses when the provider did not register: onnxruntime
    would otherwise run everything on the CPU and the result would be mislabelled."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    providers: list[Any] = [(provider, dict(options or {}))]
    if provider != "CPUExecutionProvider":
        providers.append("CPUExecutionProvider")
    try:
        sess = ort.InferenceSession(path, opts, providers=providers)
    except Exception as exc:  # ORT raises several types (Fail, InvalidGraph, ...)
        raise ModelLoadError(f"onnxruntime could not load the model: {exc}") from exc
    if provider not in sess.get_providers():
        raise TargetUnavailableError(
            f"{provider} did not initialise (onnxruntime fell back to {sess.get_providers()})"
        )
    model_inputs = sess.get_inputs()
    resolved = _resolve(
        [(i.name, list(i.shape), ORT_DTYPES.get(i.type, "")) for i in model_inputs], inputs
    )
    meta = {"runtime_version": ort.__version__, "execution_provider": sess.get_providers()[0]}
    return sess, resolved, meta


def node_placement(
    path: str, provider: str, options: dict[str, str], specs: list[InputSpec]
) -> dict[str, int]:
    """Nodes per execution provider, from one profiled run of a second session.

    onnxruntime's profile lists every node it ran with its provider; that is the only
    public record of which nodes an accelerator took and which fell back to the CPU. It is
    taken after the timed window, on a separate session, so profiling never perturbs timing.
    """
    import json as _json
    import os
    import tempfile

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.enable_profiling = True
    opts.profile_file_prefix = os.path.join(tempfile.gettempdir(), "hadmc-placement")
    providers: list[Any] = [(provider, dict(options))]
    if provider != "CPUExecutionProvider":
        providers.append("CPUExecutionProvider")
    sess = ort.InferenceSession(path, opts, providers=providers)
    rng = np.random.default_rng(0)
    sess.run(None, {s.name: random_input(s, rng) for s in specs})
    trace = sess.end_profiling()
    try:
        with open(trace) as fh:
            events = _json.load(fh)
    finally:
        os.unlink(trace)
    nodes: dict[str, str] = {}
    for ev in events:
        args = ev.get("args") or {}
        if ev.get("cat") == "Node" and "provider" in args:
            nodes[ev["name"].rsplit("_kernel_time", 1)[0]] = args["provider"]
    counts: dict[str, int] = {}
    for prov in nodes.values():
        counts[prov] = counts.get(prov, 0) + 1
    return counts


def _resolve(model: list[tuple[str, list[Any], str]], req: list[InputSpec]) -> list[InputSpec]:
    """Requested specs (by name or position) or the model's own, dynamic dims -> 1."""
    if req and len(req) != len(model):
        raise BadInputError(f"model has {len(model)} input(s), request gave {len(req)}")
    out = []
    for i, (name, shape, dtype) in enumerate(model):
        if req:
            r = req[i] if not req[i].name else next((x for x in req if x.name == name), None)
            if r is None:
                raise BadInputError(f"no requested input named {name!r}")
            out.append(InputSpec(name, list(r.shape), r.dtype or dtype or "float32"))
        else:
            dims = [d if isinstance(d, int) and d > 0 else 1 for d in shape]
            if dtype not in DTYPES:
                raise BadInputError(f"input {name!r} has unsupported type {dtype!r}")
            out.append(InputSpec(name, dims, dtype))
    return out


def prepare_litert(
    path: str, threads: int, inputs: list[InputSpec], delegate: str = ""
) -> tuple[Any, list[InputSpec], dict[str, Any]]:
    from ai_edge_litert import interpreter as litert

    delegates = []
    if delegate:
        try:
            delegates = [litert.load_delegate(delegate)]
        except (ValueError, RuntimeError, OSError) as exc:
            raise TargetUnavailableError(f"{delegate} does not load: {exc}") from exc
    try:
        interp = litert.Interpreter(
            model_path=path, num_threads=threads or None, experimental_delegates=delegates
        )
        details = interp.get_input_details()
        resolved = _resolve(
            [
                (d["name"], [int(x) for x in d["shape_signature"]], d["dtype"].__name__)
                for d in details
            ],
            inputs,
        )
        for d, spec in zip(details, resolved, strict=True):
            if list(d["shape"]) != spec.shape:
                interp.resize_tensor_input(d["index"], spec.shape)
        interp.allocate_tensors()
    except BadInputError:
        raise
    except Exception as exc:  # LiteRT raises ValueError/RuntimeError on bad models
        raise ModelLoadError(f"LiteRT could not load the model: {exc}") from exc
    version = getattr(litert, "__version__", "") or _dist_version("ai-edge-litert")
    provider = delegate or "builtin (XNNPACK default delegate)"
    meta = {"runtime_version": version, "execution_provider": provider}
    return interp, resolved, meta


def _dist_version(dist: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return ""
