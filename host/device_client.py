"""gRPC client for a ``hadmc-device`` agent: ``RemoteDevice`` implements ``hadmc.device.hal.Device``.

One measurement is GetInfo-free: chunk the artifact (``hadmc.device.chunking``), ask the agent which
chunks it lacks (MissingChunks), stream only those (UploadChunks), then Profile with the
manifest. Failures arrive as gRPC status codes plus a serialized ``ProfileError`` in the
``hadmc-error-bin`` trailer (see ``protos/hadmc_device.proto``); they are mapped to typed
``hadmc.device.hal.DeviceError`` codes here, and only retryable ones (the agent cannot be reached)
are retried, with exponential backoff.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hadmc.device.chunking import Manifest, chunk_bytes, iter_chunk_data
from hadmc.device.hal import (
    ENERGY_STATUSES,
    ArtifactSpec,
    Device,
    DeviceError,
    Measurement,
    MeasureOptions,
)
from host.rpc_errors import MissingChunksError, _one_line, map_rpc_error
from host.wire import _opt, device_info_to_dict, provenance_to_dict
from protos import AUTH_METADATA_KEY
from protos import hadmc_device_pb2 as pb
from protos import hadmc_device_pb2_grpc as pb_grpc
from protos import runtimes as runtime_table

log = logging.getLogger(__name__)
T = TypeVar("T")

# Generous message limits: chunks are <= 16 KiB, but GetInfo/Profile replies and a future
# larger chunking must not hit gRPC's 4 MiB default receive limit.
MAX_MESSAGE_BYTES = 64 * 2**20
CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Reconnect soon after an agent restart, so our own retry backoff is what paces retries.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]
# Slowest upload rate assumed when sizing the UploadChunks deadline.
MIN_UPLOAD_BYTES_PER_S = 256 * 1024

# Wire enums, derived from the shared runtime table (protos.runtimes). A runtime travels by
# name (ProfileRequest.runtime_name); the enums are sent too, for agents older than that
# field, and are 0 for a runtime newer than them.
FORMATS = {
    r.format: pb.ModelFormat.Value(r.format_wire) if r.format_wire else 0
    for r in runtime_table.TABLE
}
RUNTIMES = {r.name: pb.Runtime.Value(r.wire) if r.wire else 0 for r in runtime_table.TABLE}
DTYPES = {name: pb.DataType.Value(name.upper()) for name in runtime_table.DTYPE_BYTES}

# gRPC status -> (DeviceError code, retryable). UNAVAILABLE with a ProfileError
# RUNTIME_UNAVAILABLE is the "runtime not installed" case, handled before this table.
class RemoteDevice(Device):
    """A ``hadmc-device`` agent reached over gRPC at ``address`` ("host:port").

    ``timeout_s`` bounds the short calls (GetInfo, health, MissingChunks); Profile gets the
    options' worker timeout plus ``profile_queue_slack_s`` for waiting behind other hosts.
    ``retries`` extra attempts, ``backoff_s * 2**k`` apart, are made for retryable errors only.
    """

    def __init__(
        self,
        address: str,
        token: str | None = None,
        tls_ca: str | Path | None = None,
        timeout_s: float = 10.0,
        retries: int = 3,
        backoff_s: float = 0.25,
        *,
        label: str | None = None,
        profile_queue_slack_s: float = 300.0,
    ) -> None:
        if retries < 0 or timeout_s <= 0 or backoff_s < 0:
            raise ValueError("retries >= 0, timeout_s > 0 and backoff_s >= 0 are required")
        self.address = address
        self.name = label or address
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.profile_queue_slack_s = profile_queue_slack_s
        self._metadata: tuple[tuple[str, str], ...] = (
            ((AUTH_METADATA_KEY, f"Bearer {token}"),) if token else ()
        )
        if tls_ca is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=Path(tls_ca).read_bytes())
            self._channel = grpc.secure_channel(address, creds, options=CHANNEL_OPTIONS)
        else:
            self._channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        self._stub = pb_grpc.DeviceAgentStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    # -- plumbing -------------------------------------------------------------------------
    def _with_retries(self, fn: Callable[[], T], what: str) -> T:
        attempt = 0
        while True:
            try:
                return fn()
            except DeviceError as exc:
                if not exc.retryable or attempt >= self.retries:
                    raise
                delay = self.backoff_s * 2**attempt
                log.info(
                    "%s on %s: %s; retry %d in %.2f s", what, self.address, exc, attempt + 1, delay
                )
                time.sleep(delay)
                attempt += 1

    def _rpc(self, what: str, call: Callable[..., T], request: Any, timeout_s: float) -> T:
        try:
            return call(request, timeout=timeout_s, metadata=self._metadata)
        except grpc.RpcError as err:
            raise map_rpc_error(err, self.address, what) from None

    # -- Device API -----------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """GetInfo as a plain dict (enums as lowercase names, sizes as ints)."""
        msg: pb.DeviceInfo = self._with_retries(
            lambda: self._rpc("GetInfo", self._stub.GetInfo, pb.GetInfoRequest(), self.timeout_s),
            "GetInfo",
        )
        return device_info_to_dict(msg, self.address)

    def health(self) -> bool:
        """grpc.health.v1 Check of the whole server: True when SERVING, False otherwise."""
        try:
            reply = self._health.Check(
                health_pb2.HealthCheckRequest(service=""),
                timeout=self.timeout_s,
                metadata=self._metadata,
            )
        except grpc.RpcError as err:
            log.info("health check of %s failed: %s", self.address, _one_line(err.details() or ""))
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    def measure(
        self,
        artifact: ArtifactSpec,
        options: MeasureOptions,
        reference: ArtifactSpec | None = None,
    ) -> Measurement:
        request_parts = _validate(artifact)
        data = Path(artifact.path).read_bytes()
        models = [(data, chunk_bytes(data, name=Path(artifact.path).name))]
        if reference is not None:
            if _validate(reference)[:2] != request_parts[:2]:
                raise DeviceError(
                    "invalid_request",
                    "a paired measurement needs the reference in the same format and runtime",
                )
            ref_data = Path(reference.path).read_bytes()
            models.append((ref_data, chunk_bytes(ref_data, name=Path(reference.path).name)))
        return self._with_retries(
            lambda: self._measure_once(artifact, options, models, request_parts),
            "measure",
        )

    def close(self) -> None:
        self._channel.close()

    # -- measurement ----------------------------------------------------------------------
    def upload(self, data: bytes, manifest: Manifest) -> int:
        """Send the chunks the agent lacks; returns the payload bytes sent (0 if all cached)."""
        unique = list(dict.fromkeys(manifest.chunk_hashes()))
        reply = self._rpc(
            "MissingChunks",
            self._stub.MissingChunks,
            pb.MissingChunksRequest(sha256=unique),
            self.timeout_s,
        )
        return self._send_chunks(data, manifest, set(reply.missing_sha256))

    def _send_chunks(self, data: bytes, manifest: Manifest, wanted: set[str]) -> int:
        if not wanted:
            return 0
        to_send: dict[str, bytes] = {}
        for ref, chunk in iter_chunk_data(data, manifest):
            if ref.sha256 in wanted and ref.sha256 not in to_send:
                to_send[ref.sha256] = chunk
        sent = sum(len(c) for c in to_send.values())

        def chunks() -> Iterator[pb.Chunk]:
            for sha, chunk in to_send.items():
                yield pb.Chunk(sha256=sha, data=chunk)

        deadline_s = self.timeout_s + sent / MIN_UPLOAD_BYTES_PER_S
        self._rpc("UploadChunks", self._stub.UploadChunks, chunks(), deadline_s)
        return sent

    def _measure_once(
        self,
        artifact: ArtifactSpec,
        options: MeasureOptions,
        models: list[tuple[bytes, Manifest]],
        parts: tuple[int, int, list[pb.TensorSpec]],
    ) -> Measurement:
        """``models``: the artifact's (bytes, manifest), then the reference's if paired."""
        fmt, runtime, inputs = parts
        manifest = models[0][1]
        paired = {"reference": _manifest_msg(models[1][1])} if len(models) > 1 else {}
        request = pb.ProfileRequest(
            **paired,
            model=_manifest_msg(manifest),
            format=fmt,
            runtime=runtime,
            runtime_name=artifact.runtime,
            inputs=inputs,
            threads=options.threads,
            warmup_runs=options.warmup_runs,
            warmup_min_seconds=options.warmup_min_seconds,
            min_runs=options.min_runs,
            min_seconds=options.min_seconds,
            max_seconds=options.max_seconds,
            read_power=options.read_power,
            timeout_seconds=options.timeout_seconds,
            target=options.target,
            provider_options=options.provider_options,
        )
        deadline_s = options.timeout_seconds + self.profile_queue_slack_s
        sent = sum(self.upload(d, m) for d, m in models)
        try:
            result = self._rpc("Profile", self._stub.Profile, request, deadline_s)
        except MissingChunksError as exc:
            # Evicted from the agent's LRU cache between upload and Profile (another host's
            # upload, a restart, a damaged chunk dropped): the trailer holds only a sample of
            # the hashes, so ask MissingChunks for the full list, send those, retry once.
            log.info("%s lost chunks (%s); re-uploading once", self.address, exc)
            sent += sum(self.upload(d, m) for d, m in models)
            try:
                result = self._rpc("Profile", self._stub.Profile, request, deadline_s)
            except MissingChunksError as again:
                raise DeviceError(
                    "internal",
                    f"{self.address}: chunks still missing after re-upload ({len(again.missing)}); "
                    "the agent's cache may be smaller than the model",
                ) from None
        return self._to_measurement(result, sent, manifest)

    def _to_measurement(self, r: pb.ProfileResult, sent: int, manifest: Manifest) -> Measurement:
        power = r.power
        status = power.status or "unavailable"
        if status not in ENERGY_STATUSES:
            raise DeviceError("internal", f"{self.address}: unknown energy status {status!r}")
        lat = r.latency
        prov = provenance_to_dict(r.provenance)
        fallback = prov.get("cpu_fallback_fraction")
        prov["mostly_cpu_fallback"] = bool(fallback is not None and fallback > 0.5)
        if prov["mostly_cpu_fallback"]:
            log.warning(
                "%s: %.0f%% of the nodes fell back to the CPU on %s: the figure measures the "
                "CPU more than the accelerator",
                self.address,
                100 * fallback,
                prov.get("target"),
            )
        prov.update(
            {
                "address": self.address,
                "model_sha256": r.model_sha256,
                "model_size_bytes": manifest.size_bytes,
                "chunks_total": len(manifest.chunks),
                "load_ms": r.load_ms,
                "first_inference_ms": r.first_inference_ms,
                "warmup_runs": r.warmup_runs,
                "latency_ms_max": lat.max_ms,
                "peak_memory_method": r.peak_memory_method,
                "power": {
                    "status": power.status,
                    "source": power.source,
                    "method": power.method,
                    "mean_power_w": _opt(power, "mean_power_w"),
                    "idle_power_w": _opt(power, "idle_power_w"),
                    "energy_per_inference_mj": _opt(power, "energy_per_inference_mj"),
                    "window_seconds": _opt(power, "window_seconds"),
                },
            }
        )
        paired: dict[str, Any] = {}
        if r.HasField("latency_ratio"):
            paired = {
                "reference_latency_ms_p50": r.reference_latency.p50_ms,
                "latency_ratio": r.latency_ratio,
                "latency_ratio_ci95": (r.latency_ratio_ci95_low, r.latency_ratio_ci95_high),
            }
            prov["pair_blocks"] = r.pair_blocks
            prov["reference_latency_n"] = r.reference_latency.n
        return Measurement(
            **paired,
            latency_ms_p50=lat.p50_ms,
            latency_ms_mean=lat.mean_ms,
            latency_ms_min=lat.min_ms,
            latency_ms_p90=lat.p90_ms,
            latency_ms_p99=lat.p99_ms,
            latency_ms_std=lat.std_ms,
            latency_cv=lat.cv,
            n_runs=lat.n,
            load_ms=r.load_ms,
            first_inference_ms=r.first_inference_ms,
            peak_memory_mib=r.peak_memory_bytes / 2**20,
            energy_mj=_opt(power, "energy_per_inference_mj"),
            power_w=_opt(power, "mean_power_w"),
            energy_status=status,
            energy_source="; ".join(s for s in (power.source, power.method) if s) or "none",
            source="device",
            device=self.name,
            upload_bytes=sent,
            provenance=prov,
        )


def _manifest_msg(manifest: Manifest) -> pb.ModelManifest:
    return pb.ModelManifest(
        name=manifest.name,
        sha256=manifest.sha256,
        size_bytes=manifest.size_bytes,
        chunks=[pb.ChunkRef(sha256=c.sha256, size_bytes=c.size_bytes) for c in manifest.chunks],
    )


def _validate(artifact: ArtifactSpec) -> tuple[int, int, list[pb.TensorSpec]]:
    """Check the artifact before any network traffic; returns (format, runtime, inputs)."""
    path = Path(artifact.path)
    if not path.is_file():
        raise FileNotFoundError(f"artifact not found: {path}")
    if artifact.format not in FORMATS:
        raise DeviceError(
            "invalid_model", f"unknown format {artifact.format!r}; use {' or '.join(FORMATS)}"
        )
    if artifact.runtime not in RUNTIMES:
        raise DeviceError(
            "runtime_unavailable",
            f"unknown runtime {artifact.runtime!r}; use {' or '.join(RUNTIMES)}",
        )
    if artifact.input_dtype not in DTYPES:
        raise DeviceError("invalid_model", f"unsupported input dtype {artifact.input_dtype!r}")
    inputs: list[pb.TensorSpec] = []
    if artifact.input_shape:  # empty shape: let the agent use the model's own input shapes
        inputs.append(
            pb.TensorSpec(
                name=artifact.input_name,
                shape=list(artifact.input_shape),
                dtype=DTYPES[artifact.input_dtype],
            )
        )
    return FORMATS[artifact.format], RUNTIMES[artifact.runtime], inputs
