"""Execution targets on the host side: parse ``--target`` / ``--provider-option`` and check
them (and the runtime, ``runtime_problem``) against what the device's GetInfo says it has.

A target is the device's key string ``"<runtime>:<accelerator>"`` (``device_agent.targets``
holds the table; the host never imports it, it reads GetInfo). The precisions a target really
executes come from GetInfo too, so the host refuses, before any upload, an fp16 artifact on a
target that would run it as casts around fp32 kernels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from host.errors import UsageError
from protos.runtimes import DEFAULT_ACCELERATOR  # noqa: F401  (re-exported for host.cli)


def runtime_problem(info: dict[str, Any], runtime: str) -> str:
    """Why the device cannot run ``runtime`` (GetInfo / the sim profile), '' when it can:
    checked before the model is loaded, so a wrong --runtime costs seconds, not a setup."""
    listed = info.get("runtimes") or (info.get("profile") or {}).get("runtimes") or []
    names = []
    for r in listed:
        if isinstance(r, str):
            names.append(r)
            if r == runtime:
                return ""
        else:
            if r.get("runtime") == runtime:
                if r.get("available", True):
                    return ""
                why = r.get("unavailable_reason") or "not installed"
                return (f"device {info.get('name') or info.get('address') or ''} cannot run "
                        f"--runtime {runtime}: {why}")  # fmt: skip
            if r.get("available", True):
                names.append(str(r.get("runtime")))
    if not listed:
        return ""  # nothing reported: let the first measurement say
    return f"--runtime {runtime} is not available on this device (it runs: {', '.join(names)})"


def parse_target(target: str | None, runtime: str) -> str:
    """The full target for ``runtime`` ("" -> the runtime's CPU default), or UsageError."""
    if not target:
        return f"{runtime}:{DEFAULT_ACCELERATOR[runtime]}"
    name = target if ":" in target else f"{runtime}:{target}"  # "--target cuda" is fine too
    if name.split(":", 1)[0] != runtime:
        raise UsageError(f"--target {target} is not a {runtime} target (use {runtime}:<name>)")
    return name


def parse_options(pairs: list[str] | None) -> dict[str, str]:
    """``KEY=VALUE`` strings -> a dict; the device validates keys and values."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--provider-option wants KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


def target_problem(info: dict[str, Any], target: str) -> str:
    """Why the device cannot run ``target`` ('' when it can, or when it lists no targets:
    an older agent runs only the CPU default, and the measurement will say so)."""
    listed = info.get("targets") or []
    if not listed:
        return ""
    by_name = {t["target"]: t for t in listed}
    available = [t["target"] for t in listed if t.get("available")]
    found = by_name.get(target)
    if found is None:
        return f"--target {target} is unknown to this device (it runs: {', '.join(available)})"
    if not found.get("available"):
        return (
            f"--target {target} is not available on this device ({found.get('detail')}); "
            f"available: {', '.join(available) or 'none'}"
        )
    return ""


def target_precisions(info: dict[str, Any], target: str) -> tuple[str, ...]:
    """What ``target`` executes, per GetInfo; the CPU default's (fp32, int8) when unlisted."""
    for t in info.get("targets") or []:
        if t["target"] == target:
            return tuple(t.get("precisions") or ())
    return ("fp32", "int8")


def search_precisions(info: dict[str, Any], target: str | None, runtime: str) -> tuple[str, ...]:
    """The quantization agent's choices for a search on ``target``: what GetInfo says the
    target executes, kept to what ``runtime``'s exporter builds (no fp16 .tflite), in the
    runtime's order. No target: the runtime's CPU precisions."""
    from hadmc.compress.passes.quantization_pass import EXPORT_PRECISIONS, RUNTIME_PRECISIONS

    if not target:
        return RUNTIME_PRECISIONS[runtime]
    executes = target_precisions(info, target)
    found = tuple(p for p in EXPORT_PRECISIONS[runtime] if p in executes)
    if not found:
        raise UsageError(
            f"{target} executes {'/'.join(executes) or 'nothing'} and the {runtime} exporter "
            f"builds {'/'.join(EXPORT_PRECISIONS[runtime])}: there is nothing to search over"
        )
    return found


def is_fp16_onnx(path: Path) -> bool:
    """True when the ONNX graph computes in float16 (any fp16 initializer)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)


def check_fp16(path: Path, target: str, precisions: tuple[str, ...]) -> None:
    """Refuse an fp16 artifact on a target that does not execute fp16."""
    if "fp16" in precisions or path.suffix != ".onnx" or not is_fp16_onnx(path):
        return
    raise UsageError(
        f"{path.name} is an fp16 model, and {target} does not execute fp16 (it runs "
        f"{'/'.join(precisions)}: fp16 there is casts around fp32 kernels, slower than fp32); "
        "profile it on a GPU target (e.g. --target onnxruntime:cuda) or export fp32/int8"
    )
