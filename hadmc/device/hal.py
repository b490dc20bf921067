"""Hardware abstraction layer: one interface for every way of measuring a candidate.

Three implementations exist:
- ``host.device_client.RemoteDevice``: a ``hadmc-device`` agent over gRPC (the real board);
- ``host.local_agent.LocalDevice``: the same agent, started by the host on loopback;
- ``hadmc.device.hal_sim.SimulatedDevice``: an analytic estimate from a device profile, labelled
  ``simulated`` in every field that could be mistaken for a measurement.

``hadmc`` holds only the interface (it may not import ``host``); ``host.devices.open_device``
picks the implementation from the ``--device`` argument.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ENERGY_STATUSES = ("measured", "estimated", "unavailable", "simulated")


@dataclass
class ArtifactSpec:
    """A deployable artifact and what a device needs to run it."""

    path: Path
    format: str  # "onnx" | "tflite"
    runtime: str  # "onnxruntime" | "litert"
    input_name: str
    input_shape: tuple[int, ...]
    input_dtype: str = "float32"
    precision: str = "fp32"  # "fp32" | "fp16" | "int8" | "mixed"
    macs: int | None = None  # multiply-accumulates per inference, for sim:
    params: int | None = None


@dataclass
class MeasureOptions:
    """Measurement budget (DESIGN §5 defaults: warm-up >= 10 runs and >= 0.5 s; >= 50 runs, >= 1 s)."""

    threads: int = 1
    warmup_runs: int = 10
    warmup_min_seconds: float = 0.5
    min_runs: int = 50
    min_seconds: float = 1.0
    max_seconds: float = 10.0
    read_power: bool = True
    timeout_seconds: float = 120.0
    target: str = ""  # "<runtime>:<accelerator>" (e.g. "onnxruntime:cuda"); "" = CPU default
    provider_options: dict[str, str] = field(default_factory=dict)


@dataclass
class Measurement:
    """What one device run of one artifact produced. Latencies in milliseconds."""

    latency_ms_p50: float
    latency_ms_mean: float
    latency_ms_min: float
    latency_ms_p90: float
    latency_ms_p99: float
    latency_ms_std: float
    latency_cv: float
    n_runs: int
    load_ms: float
    first_inference_ms: float
    peak_memory_mib: float
    energy_mj: float | None  # per inference; None when neither measured nor estimated
    power_w: float | None  # mean power over the timed window
    energy_status: str  # one of ENERGY_STATUSES
    energy_source: str  # sensor path, or how it was estimated / simulated
    source: str  # "device" | "simulated"
    device: str  # "127.0.0.1:50051", "local", "sim:raspberry-pi-4"
    upload_bytes: int = 0  # bytes sent for this artifact (0 when fully cached)
    provenance: dict[str, Any] = field(default_factory=dict)
    # A paired measurement (``Device.measure(..., reference=...)``): the reference's p50 from
    # the same window, and latency_ms_p50 / that, with a 95 % interval. None when unpaired.
    reference_latency_ms_p50: float | None = None
    latency_ratio: float | None = None
    latency_ratio_ci95: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DeviceError(Exception):
    """A typed device failure. ``retryable`` says whether backing off and retrying can help."""

    CODES = (
        "unreachable",
        "unauthenticated",
        "invalid_model",
        "invalid_request",
        "hash_mismatch",
        "too_large",
        "busy",
        "disk_full",
        "runtime_unavailable",
        "crashed",
        "timeout",
        "internal",
    )

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        if code not in self.CODES:
            raise ValueError(f"unknown DeviceError code {code!r}")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable


class Device(ABC):
    """A place where artifacts are measured."""

    name: str

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """Static and live facts about the device (arch, cores, memory, runtimes, power sources)."""

    @abstractmethod
    def health(self) -> bool:
        """True when the device answers and is serving."""

    @abstractmethod
    def measure(
        self,
        artifact: ArtifactSpec,
        options: MeasureOptions,
        reference: ArtifactSpec | None = None,
    ) -> Measurement:
        """Measure ``artifact``; raises ``DeviceError`` on failure.

        With ``reference`` (same format, runtime and inputs; typically the baseline), both
        are timed in one window, interleaved, and ``latency_ratio`` says how much faster
        ``artifact`` is with the board's drift cancelled (``device_agent.measure.run_paired``).
        """

    def close(self) -> None:  # noqa: B027 - optional hook, most devices hold nothing
        """Release connections or processes."""

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
