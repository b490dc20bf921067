"""The runtime table, shared by host and device: one row per inference runtime.

Both sides may import ``protos`` and neither imports the other, so the table lives here, in
plain Python (no generated code, no grpc import: ``hadmc``'s exporters read it too). Every
other runtime mapping derives from it: the host's wire enums (``host.device_client``), the
artifact extension (``hadmc.search.candidate``), the wire's input dtypes, the precisions the quantization head may
offer (``hadmc.compress.passes.quantization_pass``), the CLI's ``--runtime`` choices and the
suffix a ``profile`` file is recognised by (``host.fleet``), and the board's runtime probe
(``device_agent.runtimes``).

A new runtime is a row here, an exporter on the host (``hadmc.compress.export``) and an
adapter on the board (``device_agent.adapters``); see docs/architecture.md, "Adding a
runtime". It needs no proto change: a runtime travels by its ``name`` (``ProfileRequest.
runtime_name``, ``RuntimeInfo.name``). The ``Runtime`` / ``ModelFormat`` enum names of the rows
that have them are kept for agents older than those fields; a new row leaves ``wire`` and
``format_wire`` empty.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RuntimeRow:
    name: str  # what the CLI, the store and provenance call it
    wire: str  # its ``Runtime`` enum name in hadmc_device.proto; "" for a runtime newer than it
    format: str  # artifact format (CLI / store word)
    format_wire: str  # its ``ModelFormat`` enum name; "" likewise
    extension: str  # artifact file extension, without the dot
    # Precisions whose kernels the runtime executes on a CPU (why fp16 is absent: see
    # quantization_pass). The quantization head offers exactly these.
    precisions: tuple[str, ...]
    # Whether one artifact can hold a different precision per layer group (ONNX QDQ can; the
    # LiteRT converter quantizes the whole model).
    per_group_precision: bool
    module: str  # what the board imports to run it (probed with find_spec, never imported)
    distributions: tuple[str, ...]  # pip distributions that provide ``module`` (for versions)
    # The accelerator of its default target "<name>:<accelerator>" (a request with no target).
    # A row with no target in device_agent.targets gets this one, with no provider options.
    default_accelerator: str = "cpu"


TABLE: tuple[RuntimeRow, ...] = (
    RuntimeRow(
        name="onnxruntime",
        wire="ONNXRUNTIME",
        format="onnx",
        format_wire="ONNX",
        extension="onnx",
        precisions=("fp32", "int8"),
        per_group_precision=True,
        module="onnxruntime",
        distributions=("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"),
    ),
    RuntimeRow(
        name="litert",
        wire="LITERT",
        format="tflite",
        format_wire="TFLITE",
        extension="tflite",
        precisions=("fp32", "int8"),
        per_group_precision=False,
        module="ai_edge_litert.interpreter",
        distributions=("ai-edge-litert",),
        default_accelerator="xnnpack",  # LiteRT's CPU path is its built-in XNNPACK delegate
    ),
)

# Input dtypes the wire can carry: numpy name -> bytes per element. The ``DataType`` enum name in
# hadmc_device.proto is the numpy name upper-cased (FLOAT32, INT8, ...).
DTYPE_BYTES: dict[str, int] = {
    "float32": 4, "float16": 2, "int8": 1, "uint8": 1, "int32": 4, "int64": 8,
}  # fmt: skip

BY_NAME: dict[str, RuntimeRow] = {r.name: r for r in TABLE}
RUNTIME_NAMES: tuple[str, ...] = tuple(BY_NAME)
BY_EXTENSION: dict[str, RuntimeRow] = {r.extension: r for r in TABLE}
DEFAULT_ACCELERATOR: dict[str, str] = {r.name: r.default_accelerator for r in TABLE}


def row(name: str) -> RuntimeRow:
    """The row of runtime ``name``; a ValueError naming the known ones otherwise."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown runtime {name!r}; known {sorted(BY_NAME)}") from None
