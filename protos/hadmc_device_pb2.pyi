from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_FORMAT_UNSPECIFIED: _ClassVar[ModelFormat]
    ONNX: _ClassVar[ModelFormat]
    TFLITE: _ClassVar[ModelFormat]

class Runtime(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUNTIME_UNSPECIFIED: _ClassVar[Runtime]
    ONNXRUNTIME: _ClassVar[Runtime]
    LITERT: _ClassVar[Runtime]

class DataType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATA_TYPE_UNSPECIFIED: _ClassVar[DataType]
    FLOAT32: _ClassVar[DataType]
    FLOAT16: _ClassVar[DataType]
    INT8: _ClassVar[DataType]
    UINT8: _ClassVar[DataType]
    INT32: _ClassVar[DataType]
    INT64: _ClassVar[DataType]

class ErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_CODE_UNSPECIFIED: _ClassVar[ErrorCode]
    INVALID_MODEL: _ClassVar[ErrorCode]
    HASH_MISMATCH: _ClassVar[ErrorCode]
    TOO_LARGE: _ClassVar[ErrorCode]
    MISSING_CHUNKS: _ClassVar[ErrorCode]
    RUNTIME_UNAVAILABLE: _ClassVar[ErrorCode]
    WORKER_CRASHED: _ClassVar[ErrorCode]
    WORKER_TIMEOUT: _ClassVar[ErrorCode]
    UNAUTHENTICATED_TOKEN: _ClassVar[ErrorCode]
    INVALID_REQUEST: _ClassVar[ErrorCode]
    INTERNAL: _ClassVar[ErrorCode]
    BUSY: _ClassVar[ErrorCode]
    DISK_FULL: _ClassVar[ErrorCode]
MODEL_FORMAT_UNSPECIFIED: ModelFormat
ONNX: ModelFormat
TFLITE: ModelFormat
RUNTIME_UNSPECIFIED: Runtime
ONNXRUNTIME: Runtime
LITERT: Runtime
DATA_TYPE_UNSPECIFIED: DataType
FLOAT32: DataType
FLOAT16: DataType
INT8: DataType
UINT8: DataType
INT32: DataType
INT64: DataType
ERROR_CODE_UNSPECIFIED: ErrorCode
INVALID_MODEL: ErrorCode
HASH_MISMATCH: ErrorCode
TOO_LARGE: ErrorCode
MISSING_CHUNKS: ErrorCode
RUNTIME_UNAVAILABLE: ErrorCode
WORKER_CRASHED: ErrorCode
WORKER_TIMEOUT: ErrorCode
UNAUTHENTICATED_TOKEN: ErrorCode
INVALID_REQUEST: ErrorCode
INTERNAL: ErrorCode
BUSY: ErrorCode
DISK_FULL: ErrorCode

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RuntimeInfo(_message.Message):
    __slots__ = ("runtime", "available", "version", "unavailable_reason", "formats", "name")
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_REASON_FIELD_NUMBER: _ClassVar[int]
    FORMATS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    runtime: Runtime
    available: bool
    version: str
    unavailable_reason: str
    formats: _containers.RepeatedScalarFieldContainer[ModelFormat]
    name: str
    def __init__(self, runtime: _Optional[_Union[Runtime, str]] = ..., available: _Optional[bool] = ..., version: _Optional[str] = ..., unavailable_reason: _Optional[str] = ..., formats: _Optional[_Iterable[_Union[ModelFormat, str]]] = ..., name: _Optional[str] = ...) -> None: ...

class TargetInfo(_message.Message):
    __slots__ = ("target", "available", "detail", "precisions", "options")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    PRECISIONS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    target: str
    available: bool
    detail: str
    precisions: _containers.RepeatedScalarFieldContainer[str]
    options: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, target: _Optional[str] = ..., available: _Optional[bool] = ..., detail: _Optional[str] = ..., precisions: _Optional[_Iterable[str]] = ..., options: _Optional[_Iterable[str]] = ...) -> None: ...

class PowerSourceInfo(_message.Message):
    __slots__ = ("kind", "path", "readable", "detail")
    KIND_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    READABLE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    kind: str
    path: str
    readable: bool
    detail: str
    def __init__(self, kind: _Optional[str] = ..., path: _Optional[str] = ..., readable: _Optional[bool] = ..., detail: _Optional[str] = ...) -> None: ...

class DeviceInfo(_message.Message):
    __slots__ = ("agent_version", "hostname", "arch", "cpu_model", "cpu_cores_logical", "cpu_cores_physical", "memory_total_bytes", "memory_available_bytes", "os", "python_version", "runtimes", "power_sources", "max_model_bytes", "max_chunk_bytes", "cache_capacity_bytes", "cache_used_bytes", "cpu_governor", "cpu_temperature_c", "token_required", "targets", "device_kind")
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    CPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    CPU_CORES_LOGICAL_FIELD_NUMBER: _ClassVar[int]
    CPU_CORES_PHYSICAL_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_AVAILABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    RUNTIMES_FIELD_NUMBER: _ClassVar[int]
    POWER_SOURCES_FIELD_NUMBER: _ClassVar[int]
    MAX_MODEL_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    CACHE_CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    CACHE_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    CPU_GOVERNOR_FIELD_NUMBER: _ClassVar[int]
    CPU_TEMPERATURE_C_FIELD_NUMBER: _ClassVar[int]
    TOKEN_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_KIND_FIELD_NUMBER: _ClassVar[int]
    agent_version: str
    hostname: str
    arch: str
    cpu_model: str
    cpu_cores_logical: int
    cpu_cores_physical: int
    memory_total_bytes: int
    memory_available_bytes: int
    os: str
    python_version: str
    runtimes: _containers.RepeatedCompositeFieldContainer[RuntimeInfo]
    power_sources: _containers.RepeatedCompositeFieldContainer[PowerSourceInfo]
    max_model_bytes: int
    max_chunk_bytes: int
    cache_capacity_bytes: int
    cache_used_bytes: int
    cpu_governor: str
    cpu_temperature_c: float
    token_required: bool
    targets: _containers.RepeatedCompositeFieldContainer[TargetInfo]
    device_kind: str
    def __init__(self, agent_version: _Optional[str] = ..., hostname: _Optional[str] = ..., arch: _Optional[str] = ..., cpu_model: _Optional[str] = ..., cpu_cores_logical: _Optional[int] = ..., cpu_cores_physical: _Optional[int] = ..., memory_total_bytes: _Optional[int] = ..., memory_available_bytes: _Optional[int] = ..., os: _Optional[str] = ..., python_version: _Optional[str] = ..., runtimes: _Optional[_Iterable[_Union[RuntimeInfo, _Mapping]]] = ..., power_sources: _Optional[_Iterable[_Union[PowerSourceInfo, _Mapping]]] = ..., max_model_bytes: _Optional[int] = ..., max_chunk_bytes: _Optional[int] = ..., cache_capacity_bytes: _Optional[int] = ..., cache_used_bytes: _Optional[int] = ..., cpu_governor: _Optional[str] = ..., cpu_temperature_c: _Optional[float] = ..., token_required: _Optional[bool] = ..., targets: _Optional[_Iterable[_Union[TargetInfo, _Mapping]]] = ..., device_kind: _Optional[str] = ...) -> None: ...

class ChunkRef(_message.Message):
    __slots__ = ("sha256", "size_bytes")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    size_bytes: int
    def __init__(self, sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class ModelManifest(_message.Message):
    __slots__ = ("name", "sha256", "size_bytes", "chunks")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    name: str
    sha256: str
    size_bytes: int
    chunks: _containers.RepeatedCompositeFieldContainer[ChunkRef]
    def __init__(self, name: _Optional[str] = ..., sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., chunks: _Optional[_Iterable[_Union[ChunkRef, _Mapping]]] = ...) -> None: ...

class MissingChunksRequest(_message.Message):
    __slots__ = ("sha256",)
    SHA256_FIELD_NUMBER: _ClassVar[int]
    sha256: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, sha256: _Optional[_Iterable[str]] = ...) -> None: ...

class MissingChunksResponse(_message.Message):
    __slots__ = ("missing_sha256",)
    MISSING_SHA256_FIELD_NUMBER: _ClassVar[int]
    missing_sha256: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, missing_sha256: _Optional[_Iterable[str]] = ...) -> None: ...

class Chunk(_message.Message):
    __slots__ = ("sha256", "data")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    data: bytes
    def __init__(self, sha256: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class UploadSummary(_message.Message):
    __slots__ = ("chunks_stored", "bytes_stored", "chunks_already_present")
    CHUNKS_STORED_FIELD_NUMBER: _ClassVar[int]
    BYTES_STORED_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_ALREADY_PRESENT_FIELD_NUMBER: _ClassVar[int]
    chunks_stored: int
    bytes_stored: int
    chunks_already_present: int
    def __init__(self, chunks_stored: _Optional[int] = ..., bytes_stored: _Optional[int] = ..., chunks_already_present: _Optional[int] = ...) -> None: ...

class TensorSpec(_message.Message):
    __slots__ = ("name", "shape", "dtype")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: DataType
    def __init__(self, name: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[_Union[DataType, str]] = ...) -> None: ...

class ProfileRequest(_message.Message):
    __slots__ = ("model", "format", "runtime", "inputs", "threads", "warmup_runs", "warmup_min_seconds", "min_runs", "min_seconds", "max_seconds", "read_power", "target", "runtime_name", "provider_options", "timeout_seconds", "reference")
    class ProviderOptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    WARMUP_RUNS_FIELD_NUMBER: _ClassVar[int]
    WARMUP_MIN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MIN_RUNS_FIELD_NUMBER: _ClassVar[int]
    MIN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_SECONDS_FIELD_NUMBER: _ClassVar[int]
    READ_POWER_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_NAME_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    model: ModelManifest
    format: ModelFormat
    runtime: Runtime
    inputs: _containers.RepeatedCompositeFieldContainer[TensorSpec]
    threads: int
    warmup_runs: int
    warmup_min_seconds: float
    min_runs: int
    min_seconds: float
    max_seconds: float
    read_power: bool
    target: str
    runtime_name: str
    provider_options: _containers.ScalarMap[str, str]
    timeout_seconds: float
    reference: ModelManifest
    def __init__(self, model: _Optional[_Union[ModelManifest, _Mapping]] = ..., format: _Optional[_Union[ModelFormat, str]] = ..., runtime: _Optional[_Union[Runtime, str]] = ..., inputs: _Optional[_Iterable[_Union[TensorSpec, _Mapping]]] = ..., threads: _Optional[int] = ..., warmup_runs: _Optional[int] = ..., warmup_min_seconds: _Optional[float] = ..., min_runs: _Optional[int] = ..., min_seconds: _Optional[float] = ..., max_seconds: _Optional[float] = ..., read_power: _Optional[bool] = ..., target: _Optional[str] = ..., runtime_name: _Optional[str] = ..., provider_options: _Optional[_Mapping[str, str]] = ..., timeout_seconds: _Optional[float] = ..., reference: _Optional[_Union[ModelManifest, _Mapping]] = ...) -> None: ...

class LatencyStats(_message.Message):
    __slots__ = ("n", "min_ms", "p50_ms", "mean_ms", "std_ms", "p90_ms", "p99_ms", "max_ms", "cv")
    N_FIELD_NUMBER: _ClassVar[int]
    MIN_MS_FIELD_NUMBER: _ClassVar[int]
    P50_MS_FIELD_NUMBER: _ClassVar[int]
    MEAN_MS_FIELD_NUMBER: _ClassVar[int]
    STD_MS_FIELD_NUMBER: _ClassVar[int]
    P90_MS_FIELD_NUMBER: _ClassVar[int]
    P99_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_MS_FIELD_NUMBER: _ClassVar[int]
    CV_FIELD_NUMBER: _ClassVar[int]
    n: int
    min_ms: float
    p50_ms: float
    mean_ms: float
    std_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    cv: float
    def __init__(self, n: _Optional[int] = ..., min_ms: _Optional[float] = ..., p50_ms: _Optional[float] = ..., mean_ms: _Optional[float] = ..., std_ms: _Optional[float] = ..., p90_ms: _Optional[float] = ..., p99_ms: _Optional[float] = ..., max_ms: _Optional[float] = ..., cv: _Optional[float] = ...) -> None: ...

class PowerResult(_message.Message):
    __slots__ = ("status", "source", "method", "mean_power_w", "idle_power_w", "energy_per_inference_mj", "window_seconds")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    MEAN_POWER_W_FIELD_NUMBER: _ClassVar[int]
    IDLE_POWER_W_FIELD_NUMBER: _ClassVar[int]
    ENERGY_PER_INFERENCE_MJ_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    status: str
    source: str
    method: str
    mean_power_w: float
    idle_power_w: float
    energy_per_inference_mj: float
    window_seconds: float
    def __init__(self, status: _Optional[str] = ..., source: _Optional[str] = ..., method: _Optional[str] = ..., mean_power_w: _Optional[float] = ..., idle_power_w: _Optional[float] = ..., energy_per_inference_mj: _Optional[float] = ..., window_seconds: _Optional[float] = ...) -> None: ...

class Provenance(_message.Message):
    __slots__ = ("agent_version", "hostname", "runtime", "runtime_version", "threads", "inputs", "cpu_governor", "cpu_temperature_c", "queue_wait_seconds", "window_start_unix", "window_end_unix", "execution_provider", "target", "provider_options", "nodes_per_provider", "cpu_fallback_fraction")
    class ProviderOptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class NodesPerProviderEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_VERSION_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    CPU_GOVERNOR_FIELD_NUMBER: _ClassVar[int]
    CPU_TEMPERATURE_C_FIELD_NUMBER: _ClassVar[int]
    QUEUE_WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_UNIX_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_UNIX_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    NODES_PER_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    CPU_FALLBACK_FRACTION_FIELD_NUMBER: _ClassVar[int]
    agent_version: str
    hostname: str
    runtime: str
    runtime_version: str
    threads: int
    inputs: _containers.RepeatedCompositeFieldContainer[TensorSpec]
    cpu_governor: str
    cpu_temperature_c: float
    queue_wait_seconds: float
    window_start_unix: float
    window_end_unix: float
    execution_provider: str
    target: str
    provider_options: _containers.ScalarMap[str, str]
    nodes_per_provider: _containers.ScalarMap[str, int]
    cpu_fallback_fraction: float
    def __init__(self, agent_version: _Optional[str] = ..., hostname: _Optional[str] = ..., runtime: _Optional[str] = ..., runtime_version: _Optional[str] = ..., threads: _Optional[int] = ..., inputs: _Optional[_Iterable[_Union[TensorSpec, _Mapping]]] = ..., cpu_governor: _Optional[str] = ..., cpu_temperature_c: _Optional[float] = ..., queue_wait_seconds: _Optional[float] = ..., window_start_unix: _Optional[float] = ..., window_end_unix: _Optional[float] = ..., execution_provider: _Optional[str] = ..., target: _Optional[str] = ..., provider_options: _Optional[_Mapping[str, str]] = ..., nodes_per_provider: _Optional[_Mapping[str, int]] = ..., cpu_fallback_fraction: _Optional[float] = ...) -> None: ...

class ProfileResult(_message.Message):
    __slots__ = ("model_sha256", "load_ms", "first_inference_ms", "warmup_runs", "latency", "peak_memory_bytes", "peak_memory_method", "power", "provenance", "warmup_ms", "reference_latency", "latency_ratio", "latency_ratio_ci95_low", "latency_ratio_ci95_high", "pair_blocks")
    MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    LOAD_MS_FIELD_NUMBER: _ClassVar[int]
    FIRST_INFERENCE_MS_FIELD_NUMBER: _ClassVar[int]
    WARMUP_RUNS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    PEAK_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    PEAK_MEMORY_METHOD_FIELD_NUMBER: _ClassVar[int]
    POWER_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    WARMUP_MS_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_LATENCY_FIELD_NUMBER: _ClassVar[int]
    LATENCY_RATIO_FIELD_NUMBER: _ClassVar[int]
    LATENCY_RATIO_CI95_LOW_FIELD_NUMBER: _ClassVar[int]
    LATENCY_RATIO_CI95_HIGH_FIELD_NUMBER: _ClassVar[int]
    PAIR_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    model_sha256: str
    load_ms: float
    first_inference_ms: float
    warmup_runs: int
    latency: LatencyStats
    peak_memory_bytes: int
    peak_memory_method: str
    power: PowerResult
    provenance: Provenance
    warmup_ms: float
    reference_latency: LatencyStats
    latency_ratio: float
    latency_ratio_ci95_low: float
    latency_ratio_ci95_high: float
    pair_blocks: int
    def __init__(self, model_sha256: _Optional[str] = ..., load_ms: _Optional[float] = ..., first_inference_ms: _Optional[float] = ..., warmup_runs: _Optional[int] = ..., latency: _Optional[_Union[LatencyStats, _Mapping]] = ..., peak_memory_bytes: _Optional[int] = ..., peak_memory_method: _Optional[str] = ..., power: _Optional[_Union[PowerResult, _Mapping]] = ..., provenance: _Optional[_Union[Provenance, _Mapping]] = ..., warmup_ms: _Optional[float] = ..., reference_latency: _Optional[_Union[LatencyStats, _Mapping]] = ..., latency_ratio: _Optional[float] = ..., latency_ratio_ci95_low: _Optional[float] = ..., latency_ratio_ci95_high: _Optional[float] = ..., pair_blocks: _Optional[int] = ...) -> None: ...

class ProfileError(_message.Message):
    __slots__ = ("code", "message", "missing_sha256", "missing_count")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MISSING_SHA256_FIELD_NUMBER: _ClassVar[int]
    MISSING_COUNT_FIELD_NUMBER: _ClassVar[int]
    code: ErrorCode
    message: str
    missing_sha256: _containers.RepeatedScalarFieldContainer[str]
    missing_count: int
    def __init__(self, code: _Optional[_Union[ErrorCode, str]] = ..., message: _Optional[str] = ..., missing_sha256: _Optional[_Iterable[str]] = ..., missing_count: _Optional[int] = ...) -> None: ...
