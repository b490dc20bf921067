"""Execution targets: which accelerator of the board runs a measurement.

A target is a key string, ``"<runtime>:<accelerator>"`` (TVM's device keys are the model: a
new accelerator is a new row here, not a protocol change). Each row names the onnxruntime
execution provider or LiteRT delegate behind it, the precisions it really executes (fp16 is
real on GPUs, not on CPU EPs, where it would run as casts around fp32 kernels), and the
provider options a request may pass, with a validator for each value.

Availability is probed in a subprocess (``python -m device_agent.worker --probe``), once per
agent: importing onnxruntime in the agent itself would add tens of MB to its idle RSS.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from device_agent.errors import AgentError
from protos import hadmc_device_pb2 as pb
from protos import runtimes as runtime_table

_INT = re.compile(r"\d{1,6}")
_BOOL = re.compile(r"[01]|true|false|True|False")
_WORD = re.compile(r"[A-Za-z0-9_.]{1,32}")
# QNN loads a native backend library by path: only the SDK's own libraries, by name, never a
# path a client chooses (that would be "load this .so" on the board).
_QNN_BACKENDS = re.compile(r"(lib)?Qnn(Htp|Cpu|Gpu|Saver)\.(so|dll)")


def _matches(pattern: re.Pattern[str]) -> Callable[[str], bool]:
    return lambda v: bool(pattern.fullmatch(v))


@dataclass(frozen=True)
class Target:
    name: str  # "onnxruntime:cuda"
    runtime: str  # "onnxruntime" | "litert"
    backend: str  # ORT provider name, or LiteRT delegate library ("" = built in)
    precisions: tuple[str, ...]
    options: dict[str, Callable[[str], bool]] = field(default_factory=dict)

    @property
    def accelerator(self) -> str:
        return self.name.split(":", 1)[1]


_TABLE = [
    Target("onnxruntime:cpu", "onnxruntime", "CPUExecutionProvider", ("fp32", "int8")),
    Target(
        "onnxruntime:xnnpack",
        "onnxruntime",
        "XnnpackExecutionProvider",
        ("fp32", "int8"),
        {"intra_op_num_threads": _matches(_INT)},
    ),
    Target(
        "onnxruntime:cuda",
        "onnxruntime",
        "CUDAExecutionProvider",
        ("fp32", "fp16", "int8"),
        {
            "device_id": _matches(_INT),
            "gpu_mem_limit": _matches(re.compile(r"\d{1,14}")),
            "cudnn_conv_algo_search": _matches(re.compile(r"EXHAUSTIVE|HEURISTIC|DEFAULT")),
        },
    ),
    Target(
        "onnxruntime:tensorrt",
        "onnxruntime",
        "TensorrtExecutionProvider",
        ("fp32", "fp16", "int8"),
        {
            "device_id": _matches(_INT),
            "trt_fp16_enable": _matches(_BOOL),
            "trt_int8_enable": _matches(_BOOL),
            "trt_max_workspace_size": _matches(re.compile(r"\d{1,14}")),
        },
    ),
    Target(
        "onnxruntime:qnn",
        "onnxruntime",
        "QNNExecutionProvider",
        ("int8", "fp16"),
        {
            "backend_path": _matches(_QNN_BACKENDS),
            "htp_performance_mode": _matches(_WORD),
        },
    ),
    Target(
        "onnxruntime:openvino",
        "onnxruntime",
        "OpenVINOExecutionProvider",
        ("fp32", "fp16", "int8"),
        {
            "device_type": _matches(re.compile(r"(CPU|GPU|NPU)(\.\d)?")),
            "precision": _matches(re.compile(r"FP32|FP16|ACCURACY")),
            "num_of_threads": _matches(_INT),
        },
    ),
    Target("litert:xnnpack", "litert", "", ("fp32", "int8")),
    Target("litert:gpu", "litert", "libtensorflowlite_gpu_delegate.so", ("fp32", "fp16")),
]
DEFAULT_ACCELERATOR = runtime_table.DEFAULT_ACCELERATOR
# A runtime of the table with no row above still runs on its default target (its CPU path,
# no provider options), so a new runtime needs no edit here.
_TABLE += [
    Target(f"{r.name}:{r.default_accelerator}", r.name, "", r.precisions)
    for r in runtime_table.TABLE
    if f"{r.name}:{r.default_accelerator}" not in {t.name for t in _TABLE}
]
TARGETS: dict[str, Target] = {t.name: t for t in _TABLE}
MAX_OPTIONS = 16


def resolve(target: str, runtime: str) -> Target:
    """The Target a request names ("" means the runtime's CPU default), or INVALID_REQUEST."""
    name = target or f"{runtime}:{DEFAULT_ACCELERATOR[runtime]}"
    if name not in TARGETS:
        raise AgentError(
            pb.INVALID_REQUEST, f"unknown target {name[:80]!r}; known: {', '.join(TARGETS)}"
        )
    found = TARGETS[name]
    if found.runtime != runtime:
        raise AgentError(pb.INVALID_REQUEST, f"target {name} is not a {runtime} target")
    return found


def check_options(target: Target, options: dict[str, str]) -> dict[str, str]:
    """Only the options the target declares, each value matching its validator."""
    if len(options) > MAX_OPTIONS:
        raise AgentError(pb.INVALID_REQUEST, f"{len(options)} provider options (at most 16)")
    for key, value in options.items():
        check = target.options.get(key)
        if check is None:
            allowed = ", ".join(target.options) or "none"
            raise AgentError(
                pb.INVALID_REQUEST,
                f"{target.name} takes no provider option {key[:40]!r} (it takes: {allowed})",
            )
        if not check(value):
            raise AgentError(
                pb.INVALID_REQUEST, f"provider option {key}={value[:40]!r} is not valid"
            )
    return dict(options)


@dataclass
class Probe:
    """Result of the probe subprocess: target name -> (available, detail)."""

    status: dict[str, tuple[bool, str]]

    def available(self) -> list[str]:
        return [name for name, (ok, _) in self.status.items() if ok]

    def require(self, target: Target) -> None:
        ok, detail = self.status.get(target.name, (False, "not probed"))
        if not ok:
            raise AgentError(
                pb.RUNTIME_UNAVAILABLE,
                f"target {target.name} is not available on this board ({detail}); "
                f"available: {', '.join(self.available()) or 'none'}",
            )


def probe(env: dict[str, str] | None = None, timeout_s: float = 60.0) -> Probe:
    """Ask a fresh worker process (with the workers' environment) which targets load here."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "device_agent.worker", "--probe", "all"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
        )
        found = json.loads(proc.stdout.strip().splitlines()[-1])
        return Probe({k: (bool(v[0]), str(v[1])) for k, v in found.items()})
    except (subprocess.SubprocessError, ValueError, IndexError, OSError) as exc:
        reason = f"probe failed: {type(exc).__name__}"
        return Probe({name: (False, reason) for name in TARGETS})


def probe_in_worker() -> dict[str, tuple[bool, str]]:
    """Run inside the probe subprocess: import each runtime, list EPs, try each delegate."""
    out: dict[str, tuple[bool, str]] = {}
    try:
        import onnxruntime as ort

        providers = set(ort.get_available_providers())
        for t in _TABLE:
            if t.runtime == "onnxruntime":
                ok = t.backend in providers
                out[t.name] = (
                    ok,
                    t.backend if ok else f"{t.backend} not in this onnxruntime build",
                )
    except ImportError as exc:
        out.update({t.name: (False, str(exc)) for t in _TABLE if t.runtime == "onnxruntime"})
    try:
        from ai_edge_litert import interpreter as litert

        for t in _TABLE:
            if t.runtime != "litert":
                continue
            if not t.backend:
                out[t.name] = (True, "built-in XNNPACK delegate")
                continue
            try:
                litert.load_delegate(t.backend)
                out[t.name] = (True, t.backend)
            except (ValueError, RuntimeError, OSError) as exc:
                out[t.name] = (False, f"{t.backend} does not load: {str(exc)[:120]}")
    except ImportError as exc:
        out.update({t.name: (False, str(exc)) for t in _TABLE if t.runtime == "litert"})
    from device_agent import runtimes

    for t in _TABLE:  # a runtime with no probe above: its default target, if it imports
        if t.name not in out:
            st = runtimes.detect(t.runtime)
            out[t.name] = (st.available, st.version if st.available else st.unavailable_reason)
    return out
