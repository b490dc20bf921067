"""The DeviceAgent gRPC service: GetInfo, MissingChunks, UploadChunks, Profile.

Profile calls are serialised by one lock so timed windows never overlap (a concurrent call
would steal cores and skew both); the time spent waiting for it is reported as
``queue_wait_seconds`` and is not charged to the worker timeout.
"""

from __future__ import annotations

import math
import os
import platform
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import grpc

from device_agent import __version__, power, runtimes, security, sysinfo
from device_agent.errors import AgentError
from device_agent.storage import ChunkStore
from device_agent.worker import FAULT_ENV, WorkerFailure, WorkerLauncher, run_worker
from protos import ERROR_TRAILER_KEY
from protos import hadmc_device_pb2 as pb
from protos import hadmc_device_pb2_grpc as pb_grpc

DTYPE_NAMES = {
    pb.FLOAT32: "float32",
    pb.FLOAT16: "float16",
    pb.INT8: "int8",
    pb.UINT8: "uint8",
    pb.INT32: "int32",
    pb.INT64: "int64",
}
DTYPE_ENUMS = {v: k for k, v in DTYPE_NAMES.items()}
MAX_INPUT_ELEMENTS = 1 << 28  # 1 GiB of float32 per input: beyond any edge model's input
WORKER_ERRORS = {
    "invalid_model": pb.INVALID_MODEL,
    "invalid_request": pb.INVALID_REQUEST,
    "runtime_unavailable": pb.RUNTIME_UNAVAILABLE,
}


@dataclass
class AgentConfig:
    """Everything the service needs; built by the CLI."""

    cache_dir: Path
    cache_capacity_bytes: int = 1024 * 1024 * 1024
    max_model_bytes: int = 512 * 1024 * 1024
    max_chunk_bytes: int = 1024 * 1024
    worker_timeout_s: float = 120.0
    token_required: bool = False
    sysfs_root: Path = Path("/")
    default_max_seconds: float = 10.0
    prewarm_worker: bool = True


def abort(context: grpc.ServicerContext, err: AgentError) -> NoReturn:
    """End the call with the error's status and its ProfileError in the trailer."""
    context.set_trailing_metadata(((ERROR_TRAILER_KEY, err.to_proto().SerializeToString()),))
    context.abort(err.status, err.message)
    raise AssertionError("unreachable")  # context.abort always raises


class DeviceAgentService(pb_grpc.DeviceAgentServicer):
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.store = ChunkStore(
            config.cache_dir, config.cache_capacity_bytes, config.max_chunk_bytes
        )
        self.models_dir = Path(config.cache_dir) / "models"
        self.models_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.models_dir.glob("*.model"):  # left by an agent that was killed
            stale.unlink(missing_ok=True)
        self._measure_lock = threading.Lock()
        self.launcher = WorkerLauncher(config.prewarm_worker)

    def close(self) -> None:
        """Stop the spare worker, if any."""
        self.launcher.close()

    # -- GetInfo ---------------------------------------------------------------------------
    def GetInfo(self, request: pb.GetInfoRequest, context: grpc.ServicerContext) -> Any:
        total, available = sysinfo.memory_bytes()
        logical, physical = sysinfo.cores()
        info = pb.DeviceInfo(
            agent_version=__version__,
            hostname=sysinfo.hostname(),
            arch=platform.machine(),
            cpu_model=sysinfo.cpu_model(),
            cpu_cores_logical=logical,
            cpu_cores_physical=physical,
            memory_total_bytes=total,
            memory_available_bytes=available,
            os=platform.platform(),
            python_version=platform.python_version(),
            max_model_bytes=self.config.max_model_bytes,
            max_chunk_bytes=self.config.max_chunk_bytes,
            cache_capacity_bytes=self.config.cache_capacity_bytes,
            cache_used_bytes=self.store.used_bytes,
            cpu_governor=sysinfo.cpu_governor(self.config.sysfs_root),
            token_required=self.config.token_required,
        )
        temp = sysinfo.cpu_temperature_c(self.config.sysfs_root)
        if temp is not None:
            info.cpu_temperature_c = temp
        for st in runtimes.detect_all():
            info.runtimes.add(
                runtime=st.spec.runtime,
                available=st.available,
                version=st.version,
                unavailable_reason=st.unavailable_reason,
                formats=list(st.formats),
            )
        for r in power.discover(self.config.sysfs_root):
            info.power_sources.add(kind=r.kind, path=r.path, readable=r.readable, detail=r.detail)
        return info

    # -- chunks ----------------------------------------------------------------------------
    def MissingChunks(self, request: pb.MissingChunksRequest, context: grpc.ServicerContext) -> Any:
        try:
            return pb.MissingChunksResponse(missing_sha256=self.store.missing(request.sha256))
        except AgentError as err:
            abort(context, err)

    def UploadChunks(self, request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Any:
        summary = pb.UploadSummary()
        try:
            for chunk in request_iterator:
                if self.store.put(chunk.sha256, chunk.data):
                    summary.chunks_stored += 1
                    summary.bytes_stored += len(chunk.data)
                else:
                    summary.chunks_already_present += 1
        except AgentError as err:
            abort(context, err)
        return summary

    # -- Profile ---------------------------------------------------------------------------
    def Profile(self, request: pb.ProfileRequest, context: grpc.ServicerContext) -> Any:
        try:
            return self._profile(request)
        except AgentError as err:
            abort(context, err)

    def _check_request(self, req: pb.ProfileRequest) -> tuple[runtimes.RuntimeStatus, int]:
        if req.runtime not in runtimes.RUNTIMES:
            raise AgentError(pb.INVALID_REQUEST, f"unknown runtime {req.runtime}")
        fmt = req.format or runtimes.FORMAT_OF_RUNTIME[req.runtime]
        if fmt != runtimes.FORMAT_OF_RUNTIME[req.runtime]:
            raise AgentError(
                pb.INVALID_REQUEST,
                f"{pb.Runtime.Name(req.runtime)} does not run {pb.ModelFormat.Name(fmt)} models",
            )
        if req.model.size_bytes > self.config.max_model_bytes:
            raise AgentError(
                pb.TOO_LARGE,
                f"model of {req.model.size_bytes} B over the {self.config.max_model_bytes} B limit",
            )
        if req.model.size_bytes > self.config.cache_capacity_bytes:
            raise AgentError(pb.TOO_LARGE, "model larger than the chunk cache")
        numbers = (req.warmup_min_seconds, req.min_seconds, req.max_seconds, req.timeout_seconds)
        if any(x < 0 or x != x for x in numbers):
            raise AgentError(pb.INVALID_REQUEST, "time budgets must be >= 0")
        for spec in req.inputs:
            if spec.dtype and spec.dtype not in DTYPE_NAMES:
                raise AgentError(pb.INVALID_REQUEST, f"unsupported input dtype {spec.dtype}")
            if any(d <= 0 for d in spec.shape):
                raise AgentError(pb.INVALID_REQUEST, f"input shape must be concrete: {spec.shape}")
            if math.prod(spec.shape) > MAX_INPUT_ELEMENTS:
                raise AgentError(pb.TOO_LARGE, f"input of shape {list(spec.shape)} is too large")
        status = runtimes.detect(req.runtime)
        if not status.available:
            raise AgentError(
                pb.RUNTIME_UNAVAILABLE,
                f"{status.spec.name} is not available on this board: {status.unavailable_reason}",
            )
        return status, fmt

    def _worker_request(self, req: pb.ProfileRequest, path: Path, name: str) -> dict[str, Any]:
        max_s = req.max_seconds or self.config.default_max_seconds
        fault = ""
        if os.environ.get(FAULT_ENV) == "1" and req.model.name in ("fault:crash", "fault:hang"):
            fault = req.model.name.split(":", 1)[1]
        return {
            "model_path": str(path),
            "runtime": name,
            "threads": req.threads,
            "inputs": [
                {"name": s.name, "shape": list(s.shape), "dtype": DTYPE_NAMES.get(s.dtype, "")}
                for s in req.inputs
            ],
            "budget": {
                "warmup_runs": req.warmup_runs,
                "warmup_min_seconds": req.warmup_min_seconds,
                "min_runs": max(1, req.min_runs),
                "min_seconds": req.min_seconds,
                "max_seconds": max(max_s, req.min_seconds),
            },
            "read_power": req.read_power,
            "sysfs_root": str(self.config.sysfs_root),
            "fault": fault,
        }

    def _profile(self, req: pb.ProfileRequest) -> pb.ProfileResult:
        status, fmt = self._check_request(req)
        fd, tmp = tempfile.mkstemp(dir=self.models_dir, suffix=".model")
        os.close(fd)
        path = Path(tmp)
        try:
            self.store.assemble(req.model, path)
            security.check_model(path, fmt)
            wreq = self._worker_request(req, path, status.spec.name)
            timeout_s = req.timeout_seconds or self.config.worker_timeout_s
            t_queue = time.perf_counter()
            with self._measure_lock:
                queue_wait_s = time.perf_counter() - t_queue
                try:
                    out = run_worker(wreq, timeout_s, self.launcher)
                except WorkerFailure as exc:
                    code = pb.WORKER_TIMEOUT if exc.kind == "timeout" else pb.WORKER_CRASHED
                    raise AgentError(code, str(exc)) from None
        finally:
            path.unlink(missing_ok=True)
        if "error" in out:
            raise AgentError(WORKER_ERRORS.get(out["error"], pb.INTERNAL), out["message"])
        return self._result(req, status, out, queue_wait_s)

    def _result(
        self,
        req: pb.ProfileRequest,
        status: runtimes.RuntimeStatus,
        out: dict[str, Any],
        queue_wait_s: float,
    ) -> pb.ProfileResult:
        prov = pb.Provenance(
            agent_version=__version__,
            hostname=sysinfo.hostname(),
            runtime=status.spec.name,
            runtime_version=out.get("runtime_version") or status.version,
            threads=req.threads,
            cpu_governor=sysinfo.cpu_governor(self.config.sysfs_root),
            queue_wait_seconds=queue_wait_s,
            window_start_unix=out["window_start_unix"],
            window_end_unix=out["window_end_unix"],
            execution_provider=out.get("execution_provider", ""),
        )
        temp = sysinfo.cpu_temperature_c(self.config.sysfs_root)
        if temp is not None:
            prov.cpu_temperature_c = temp
        for s in out["inputs"]:
            prov.inputs.add(name=s["name"], shape=s["shape"], dtype=DTYPE_ENUMS[s["dtype"]])
        return pb.ProfileResult(
            model_sha256=req.model.sha256,
            load_ms=out["load_ms"],
            first_inference_ms=out["first_inference_ms"],
            warmup_runs=out["warmup_runs"],
            latency=pb.LatencyStats(**out["latency"]),
            peak_memory_bytes=out["peak_memory_bytes"],
            peak_memory_method=out["peak_memory_method"],
            power=pb.PowerResult(**out["power"]),
            provenance=prov,
        )
