"""Pre-checks on a model file before any runtime touches it.

ONNX: the board has no ``onnx`` package (``hadmc[device]`` does not pull it), and the protobuf
runtime cannot decode a message without its schema, so this walks the protobuf *wire format*
by hand — only the few fields that matter (field numbers from onnx/onnx.proto3):
- tensors with ``data_location = EXTERNAL`` (14) or ``external_data`` entries (13): rejected,
  they would make the runtime open arbitrary paths on the board;
- node domains other than the standard ones (and functions defined inside the model):
  rejected as custom ops, which need native libraries the board must not load. Only domains
  that nodes *use* count: an ``opset_import`` entry alone runs nothing (onnxruntime's own
  quantizer declares contrib domains such as ``com.microsoft.nchwc`` that a QDQ graph never
  uses), so declared-but-unused domains are accepted.
Anything this walk cannot decode is not a valid ONNX file. Deeper validity (types, shapes,
op versions) is left to onnxruntime itself, in the isolated worker.

TFLite: the FlatBuffer file identifier ``TFL3`` at bytes 4..8; LiteRT validates the rest in
the worker. Nothing here ever unpickles.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from device_agent.errors import AgentError
from protos import hadmc_device_pb2 as pb

STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})
MAX_DEPTH = 32  # nested subgraphs (If/Loop bodies); deeper is hostile, not a model

# (message, field number) of the fields we descend into or read.
_MODEL_GRAPH, _MODEL_FUNCTIONS, _MODEL_IR = 7, 25, 1
_GRAPH_NODE, _GRAPH_INIT, _GRAPH_SPARSE_INIT = 1, 5, 15
_NODE_ATTR, _NODE_DOMAIN = 5, 7
_ATTR_T, _ATTR_G, _ATTR_TENSORS, _ATTR_GRAPHS = 5, 6, 10, 11
_ATTR_SPARSE, _ATTR_SPARSES = 22, 23
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_TENSOR_EXT, _TENSOR_LOC, _TENSOR_NAME = 13, 14, 8
_FUNC_NODE, _FUNC_DOMAIN = 7, 10


class WireError(ValueError):
    pass


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise WireError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError("varint too long")


def fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """Yield (field number, wire type, value) of one message; value is an int or a slice."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise WireError("field number 0")
        if wt == 0:
            val, pos = _varint(buf, pos)
            yield num, wt, val
        elif wt == 1 or wt == 5:
            size = 8 if wt == 1 else 4
            if pos + size > len(buf):
                raise WireError("truncated fixed field")
            pos += size
        elif wt == 2:
            n, pos = _varint(buf, pos)
            if pos + n > len(buf):
                raise WireError(f"field {num}: length {n} runs past the end")
            yield num, wt, buf[pos : pos + n]
            pos += n
        else:
            raise WireError(f"unsupported wire type {wt}")


def _sub(wt: int, val: int | memoryview) -> memoryview:
    if wt != 2 or not isinstance(val, memoryview):
        raise WireError("expected an embedded message")
    return val


class _OnnxChecker:
    def __init__(self) -> None:
        self.domains: set[str] = set()
        self.local_function_domains: set[str] = set()

    def tensor(self, buf: memoryview) -> None:
        name = ""
        for num, wt, val in fields(buf):
            if num == _TENSOR_NAME and wt == 2:
                name = bytes(_sub(wt, val)).decode("utf-8", "replace")
            elif num == _TENSOR_LOC and val == 1:
                raise AgentError(pb.INVALID_MODEL, f"tensor {name!r} uses external data")
            elif num == _TENSOR_EXT:
                raise AgentError(
                    pb.INVALID_MODEL, f"tensor {name!r} references an external data file"
                )

    def sparse(self, buf: memoryview) -> None:
        for num, wt, val in fields(buf):
            if num in (_SPARSE_VALUES, _SPARSE_INDICES):
                self.tensor(_sub(wt, val))

    def node(self, buf: memoryview, depth: int) -> None:
        for num, wt, val in fields(buf):
            if num == _NODE_DOMAIN:
                self.domains.add(bytes(_sub(wt, val)).decode("utf-8", "replace"))
            elif num == _NODE_ATTR:
                self.attribute(_sub(wt, val), depth)

    def attribute(self, buf: memoryview, depth: int) -> None:
        for num, wt, val in fields(buf):
            if num in (_ATTR_T, _ATTR_TENSORS):
                self.tensor(_sub(wt, val))
            elif num in (_ATTR_G, _ATTR_GRAPHS):
                self.graph(_sub(wt, val), depth + 1)
            elif num in (_ATTR_SPARSE, _ATTR_SPARSES):
                self.sparse(_sub(wt, val))

    def graph(self, buf: memoryview, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise AgentError(pb.INVALID_MODEL, "subgraphs nested too deeply")
        for num, wt, val in fields(buf):
            if num == _GRAPH_NODE:
                self.node(_sub(wt, val), depth)
            elif num == _GRAPH_INIT:
                self.tensor(_sub(wt, val))
            elif num == _GRAPH_SPARSE_INIT:
                self.sparse(_sub(wt, val))

    def model(self, buf: memoryview) -> None:
        has_graph = has_ir = False
        for num, wt, val in fields(buf):
            if num == _MODEL_IR and wt == 0:
                has_ir = True
            elif num == _MODEL_GRAPH:
                has_graph = True
                self.graph(_sub(wt, val), 0)
            elif num == _MODEL_FUNCTIONS:
                for fnum, fwt, fval in fields(_sub(wt, val)):
                    if fnum == _FUNC_NODE:
                        self.node(_sub(fwt, fval), 0)
                    elif fnum == _FUNC_DOMAIN:
                        domain = bytes(_sub(fwt, fval)).decode("utf-8", "replace")
                        self.local_function_domains.add(domain)
        if not (has_graph and has_ir):
            raise AgentError(pb.INVALID_MODEL, "not an ONNX model: no ir_version or no graph")


def check_onnx(data: bytes) -> None:
    """Raise AgentError(INVALID_MODEL) for undecodable ONNX, external data or custom ops."""
    checker = _OnnxChecker()
    try:
        checker.model(memoryview(data))
    except WireError as exc:
        raise AgentError(pb.INVALID_MODEL, f"not a valid ONNX protobuf: {exc}") from None
    custom = checker.domains - STANDARD_DOMAINS - checker.local_function_domains
    if custom:
        raise AgentError(pb.INVALID_MODEL, f"custom-op domain(s) not allowed: {sorted(custom)}")


def check_tflite(data: bytes) -> None:
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise AgentError(pb.INVALID_MODEL, "not a TFLite FlatBuffer (no 'TFL3' identifier)")


def check_model(path: Path, model_format: str) -> None:
    """The pre-load check of ``model_format`` (the runtime table's format word). A format
    with no check here is refused: a worker must never parse a file nothing has looked at, so
    a runtime with a new model format brings its check to this module."""
    check = CHECKS.get(model_format)
    if check is None:
        raise AgentError(
            pb.INVALID_REQUEST, f"no pre-load check for {model_format!r} models on this agent"
        )
    check(path.read_bytes())


CHECKS = {"onnx": check_onnx, "tflite": check_tflite}
