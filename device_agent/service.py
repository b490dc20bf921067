"""The DeviceAgent gRPC service: GetInfo, MissingChunks, UploadChunks, Profile.

Profile calls are serialised by one lock so timed windows never overlap (a concurrent call
would steal cores and skew both); the time spent waiting for it is reported as
``queue_wait_seconds`` and is not charged to the worker timeout. The queue is bounded
(``max_queued_profiles``; beyond it BUSY at once), and a call whose client has gone stops
waiting, or has its worker killed, so the queue moves on.

Every handler is wrapped by ``typed``: whatever fails, the client gets a status with a
ProfileError trailer, never gRPC's bare UNKNOWN.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from device_agent import __version__, power, runtimes, security, sysinfo, targets, validation
from device_agent.errors import AgentError, abort
from device_agent.launcher import POLL_S, WorkerFailure, WorkerLauncher, WorkerSettings, run_worker
from device_agent.storage import ChunkStore, max_manifest_chunks
from device_agent.uploads import UploadSlots, idle_bounded
from device_agent.worker import FAULT_ENV
from protos import hadmc_device_pb2 as pb
from protos import hadmc_device_pb2_grpc as pb_grpc

WORKER_ERRORS = {
    "invalid_model": pb.INVALID_MODEL,
    "invalid_request": pb.INVALID_REQUEST,
    "runtime_unavailable": pb.RUNTIME_UNAVAILABLE,
    "too_large": pb.TOO_LARGE,
}
MIB = 1024 * 1024
_FAILURE_CODES = {
    "timeout": pb.WORKER_TIMEOUT,
    "crashed": pb.WORKER_CRASHED,
    "cancelled": pb.INTERNAL,  # nobody is listening; the code only reaches logs
}
log = logging.getLogger("hadmc-device")


@dataclass
class AgentConfig:
    """Everything the service needs; built by the CLI."""

    cache_dir: Path
    cache_capacity_bytes: int = 1024 * MIB
    max_model_bytes: int = 512 * MIB
    max_chunk_bytes: int = 1024 * 1024
    worker_timeout_s: float = 120.0
    token_required: bool = False
    sysfs_root: Path = Path("/")
    default_max_seconds: float = 10.0
    prewarm_worker: bool = True
    max_input_bytes: int = 256 * MIB  # all inputs of one Profile together
    worker_memory_bytes: int = 0  # RLIMIT_AS of each worker; 0: none; -1: RAM unless a GPU EP
    max_queued_profiles: int = 8  # waiting behind the one measuring; beyond: BUSY
    max_upload_streams: int = 8  # concurrent UploadChunks streams; beyond: BUSY
    upload_idle_timeout_s: float = 30.0  # a stream silent this long is ended
    device_kind: str = ""  # --kind: the owner's label for this board's kind; "" = derived

    def limits(self) -> validation.Limits:
        return validation.Limits(
            max_model_bytes=self.max_model_bytes,
            cache_capacity_bytes=self.cache_capacity_bytes,
            max_input_bytes=self.max_input_bytes,
            worker_timeout_s=self.worker_timeout_s,
            default_max_seconds=self.default_max_seconds,
        )


def typed(fn: Any) -> Any:
    """Run a handler so that every failure is typed: AgentError as itself, anything else
    as INTERNAL with a trailer (never gRPC's bare UNKNOWN)."""

    def handler(self: DeviceAgentService, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(self, request, context)
        except AgentError as err:
            failure = err
        except Exception as exc:  # noqa: BLE001 - the point: nothing escapes untyped
            log.exception("unexpected failure in %s", fn.__name__)
            failure = AgentError(pb.INTERNAL, f"agent fault: {type(exc).__name__}: {exc}")
        abort(context, failure)

    handler.__name__ = fn.__name__
    handler.__doc__ = fn.__doc__
    return handler


class DeviceAgentService(pb_grpc.DeviceAgentServicer):
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.limits = config.limits()
        self.store = ChunkStore(
            config.cache_dir, config.cache_capacity_bytes, config.max_chunk_bytes
        )
        if self.store.dropped_at_start:
            log.warning(
                "dropped %d damaged chunk(s) from the cache at start-up (unclean shutdown?)",
                len(self.store.dropped_at_start),
            )
        self.models_dir = Path(config.cache_dir) / "models"
        self.models_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.models_dir.glob("*.model"):  # left by an agent that was killed
            stale.unlink(missing_ok=True)
        self._measure_lock = threading.Lock()
        self._pending_lock = threading.Lock()
        self._pending = 0  # Profile calls in the agent: measuring + queued
        self.uploads = UploadSlots(config.max_upload_streams)
        settings = WorkerSettings(
            state_dir=Path(config.cache_dir) / "worker",
            max_address_space_bytes=max(0, config.worker_memory_bytes),
        )
        self.launcher = WorkerLauncher(config.prewarm_worker, settings)
        # Which accelerators load is probed once, in a subprocess, at start-up; measurements
        # wait for it, so the probe's imports never overlap a timed window.
        self._probe: targets.Probe | None = None
        self._probed = threading.Event()
        threading.Thread(
            target=self._run_probe, args=(settings.env(),), name="probe", daemon=True
        ).start()

    def _run_probe(self, env: dict[str, str]) -> None:
        try:
            self._probe = targets.probe(env)
            if self.config.worker_memory_bytes == -1:  # the default: decided now
                self._default_memory_limit(self._probe)
        finally:
            self._probed.set()

    def _default_memory_limit(self, found: targets.Probe) -> None:
        """The board's RAM as each worker's address-space limit, except where a CUDA or
        TensorRT target is available: CUDA reserves far more address space than memory."""
        gpu = [t for t in ("onnxruntime:cuda", "onnxruntime:tensorrt") if t in found.available()]
        limit = 0 if gpu else sysinfo.memory_bytes()[0]
        if gpu:
            log.info("no worker address-space limit by default: %s available", ", ".join(gpu))
        self.launcher.settings = dataclasses.replace(
            self.launcher.settings, max_address_space_bytes=limit
        )
        self.config.worker_memory_bytes = limit

    def probe(self, wait_s: float) -> targets.Probe | None:
        self._probed.wait(wait_s)
        return self._probe

    def close(self) -> None:
        """Kill the measuring worker and the spare, if any; mark the cache clean."""
        self.launcher.close()
        self.store.close()

    # -- GetInfo ---------------------------------------------------------------------------
    @typed
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
            device_kind=self.config.device_kind,
        )
        temp = sysinfo.cpu_temperature_c(self.config.sysfs_root)
        if temp is not None:
            info.cpu_temperature_c = temp
        for st in runtimes.detect_all():
            info.runtimes.add(
                runtime=st.spec.runtime,
                name=st.spec.name,
                available=st.available,
                version=st.version,
                unavailable_reason=st.unavailable_reason,
                formats=list(st.formats),
            )
        for r in power.discover(self.config.sysfs_root):
            info.power_sources.add(kind=r.kind, path=r.path, readable=r.readable, detail=r.detail)
        found = self.probe(wait_s=5.0)
        for t in targets.TARGETS.values():
            ok, detail = found.status.get(t.name, (False, "")) if found else (False, "probing")
            info.targets.add(
                target=t.name,
                available=ok,
                detail=detail,
                precisions=list(t.precisions),
                options=list(t.options),
            )
        return info

    # -- chunks ----------------------------------------------------------------------------
    @typed
    def MissingChunks(self, request: pb.MissingChunksRequest, context: grpc.ServicerContext) -> Any:
        limit = max_manifest_chunks(self.config.max_model_bytes)
        if len(request.sha256) > limit:
            raise AgentError(pb.TOO_LARGE, f"{len(request.sha256)} hashes (at most {limit})")
        return pb.MissingChunksResponse(missing_sha256=self.store.missing(request.sha256))

    @typed
    def UploadChunks(self, request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Any:
        summary = pb.UploadSummary()
        with self.uploads:
            for chunk in idle_bounded(request_iterator, self.config.upload_idle_timeout_s):
                if self.store.put(chunk.sha256, chunk.data):
                    summary.chunks_stored += 1
                    summary.bytes_stored += len(chunk.data)
                else:
                    summary.chunks_already_present += 1
        return summary

    # -- Profile ---------------------------------------------------------------------------
    @typed
    def Profile(self, request: pb.ProfileRequest, context: grpc.ServicerContext) -> Any:
        cancelled = threading.Event()
        context.add_callback(cancelled.set)  # fires when the call ends, the client's cancel too
        with self._pending_lock:
            if self._pending > self.config.max_queued_profiles:
                raise AgentError(
                    pb.BUSY,
                    f"{self._pending} Profile calls are already running or queued on this "
                    "board; retry later",
                )
            self._pending += 1
        try:
            return self._profile(request, cancelled)
        finally:
            with self._pending_lock:
                self._pending -= 1

    def _fault(self, req: pb.ProfileRequest) -> str:
        if os.environ.get(FAULT_ENV) == "1" and req.model.name in ("fault:crash", "fault:hang"):
            return req.model.name.split(":", 1)[1]
        return ""

    def _acquire_measure_lock(self, cancelled: threading.Event) -> float:
        """Wait for the measuring slot; seconds waited. A client that leaves stops waiting."""
        t_queue = time.perf_counter()
        while not self._probed.wait(POLL_S):  # the start-up probe imports runtimes
            if cancelled.is_set():
                raise AgentError(pb.INTERNAL, "cancelled by the client while queued")
        while not self._measure_lock.acquire(timeout=POLL_S):
            if cancelled.is_set():
                raise AgentError(pb.INTERNAL, "cancelled by the client while queued")
        return time.perf_counter() - t_queue

    def _profile(self, req: pb.ProfileRequest, cancelled: threading.Event) -> pb.ProfileResult:
        status, fmt, target = validation.check_request(req, self.limits)
        if target.accelerator != targets.DEFAULT_ACCELERATOR[target.runtime]:
            found = self.probe(wait_s=60.0)
            if found is None:
                raise AgentError(pb.INTERNAL, "the accelerator probe did not finish")
            found.require(target)
        paths = [self._temp_model()]
        try:
            self.store.assemble(req.model, paths[0], self.config.max_model_bytes)
            security.check_model(paths[0], fmt)
            if req.HasField("reference"):  # a paired measurement (measure.run_paired)
                paths.append(self._temp_model())
                self.store.assemble(req.reference, paths[1], self.config.max_model_bytes)
                security.check_model(paths[1], fmt)
            wreq = validation.worker_request(
                req,
                self.limits,
                paths[0],
                target,
                self.config.sysfs_root,
                self._fault(req),
                reference_path=paths[1] if len(paths) > 1 else None,
            )
            queue_wait_s = self._acquire_measure_lock(cancelled)
            try:
                out = run_worker(
                    wreq, validation.timeout_s(req, self.limits), self.launcher, cancelled
                )
            except WorkerFailure as exc:
                raise AgentError(_FAILURE_CODES[exc.kind], str(exc)) from None
            finally:
                self._measure_lock.release()
        finally:
            for path in paths:
                path.unlink(missing_ok=True)
        if "error" in out:
            if out["error"] == "out_of_memory":
                raise AgentError(pb.TOO_LARGE, self._oom_message(out["message"]))
            raise AgentError(WORKER_ERRORS.get(out["error"], pb.INTERNAL), out["message"])
        return self._result(req, status, target, out, queue_wait_s)

    def _temp_model(self) -> Path:
        fd, tmp = tempfile.mkstemp(dir=self.models_dir, suffix=".model")
        os.close(fd)
        return Path(tmp)

    def _oom_message(self, detail: str) -> str:
        limit = self.config.worker_memory_bytes
        where = f"its {limit // MIB} MiB limit (--worker-memory-mib)" if limit else "memory"
        return f"the measuring worker ran out of {where}: {detail}"

    def _result(
        self,
        req: pb.ProfileRequest,
        status: runtimes.RuntimeStatus,
        target: targets.Target,
        out: dict[str, Any],
        queue_wait_s: float,
    ) -> pb.ProfileResult:
        prov = pb.Provenance(
            agent_version=__version__,
            hostname=sysinfo.hostname(),
            runtime=status.spec.name,
            runtime_version=out.get("runtime_version") or status.version,
            threads=validation.threads(req),
            cpu_governor=sysinfo.cpu_governor(self.config.sysfs_root),
            queue_wait_seconds=queue_wait_s,
            window_start_unix=out["window_start_unix"],
            window_end_unix=out["window_end_unix"],
            execution_provider=out.get("execution_provider", ""),
            target=target.name,
            provider_options=dict(req.provider_options),
        )
        placement = out.get("nodes_per_provider") or {}
        prov.nodes_per_provider.update(placement)
        if placement:
            on_cpu = placement.get("CPUExecutionProvider", 0)
            prov.cpu_fallback_fraction = on_cpu / max(1, sum(placement.values()))
        temp = sysinfo.cpu_temperature_c(self.config.sysfs_root)
        if temp is not None:
            prov.cpu_temperature_c = temp
        for s in out["inputs"]:
            prov.inputs.add(
                name=s["name"], shape=s["shape"], dtype=validation.DTYPE_ENUMS[s["dtype"]]
            )
        paired = {}
        if "reference_latency" in out:
            paired = {
                "reference_latency": pb.LatencyStats(**out["reference_latency"]),
                "latency_ratio": out["latency_ratio"],
                "latency_ratio_ci95_low": out["latency_ratio_ci95_low"],
                "latency_ratio_ci95_high": out["latency_ratio_ci95_high"],
                "pair_blocks": out["pair_blocks"],
            }
        return pb.ProfileResult(
            **paired,
            model_sha256=req.model.sha256,
            load_ms=out["load_ms"],
            first_inference_ms=out["first_inference_ms"],
            warmup_runs=out["warmup_runs"],
            warmup_ms=out.get("warmup_ms", 0.0),
            latency=pb.LatencyStats(**out["latency"]),
            peak_memory_bytes=out["peak_memory_bytes"],
            peak_memory_method=out["peak_memory_method"],
            power=pb.PowerResult(**out["power"]),
            provenance=prov,
        )
