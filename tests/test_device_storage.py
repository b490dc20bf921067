"""Chunk cache (verify, LRU eviction, reassembly) and model pre-checks, in-process."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from agent_helpers import onnx_cnn

from device_agent import security
from device_agent.errors import AgentError
from device_agent.storage import ChunkStore
from protos import hadmc_device_pb2 as pb


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_lru_eviction_keeps_recently_used(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path, capacity_bytes=3000, max_chunk_bytes=1000)
    chunks = [os.urandom(1000) for _ in range(4)]
    for c in chunks[:3]:
        assert store.put(sha(c), c)
    assert not store.put(sha(chunks[0]), chunks[0])  # already there: touched, not stored
    store.put(sha(chunks[3]), chunks[3])  # over capacity: evicts the oldest, chunks[1]
    assert store.missing([sha(c) for c in chunks]) == [sha(chunks[1])]
    assert store.used_bytes == 3000
    reopened = ChunkStore(tmp_path, capacity_bytes=3000, max_chunk_bytes=1000)
    assert reopened.used_bytes == 3000 and reopened.missing([sha(chunks[1])]) == [sha(chunks[1])]


def test_put_rejects_bad_hash_and_size(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path, capacity_bytes=10_000, max_chunk_bytes=100)
    with pytest.raises(AgentError) as exc:
        store.put(sha(b"a"), b"b")
    assert exc.value.code == pb.HASH_MISMATCH
    with pytest.raises(AgentError) as exc:
        store.put(sha(bytes(101)), bytes(101))
    assert exc.value.code == pb.TOO_LARGE
    with pytest.raises(AgentError) as exc:
        store.missing(["../../etc/passwd"])
    assert exc.value.code == pb.INVALID_REQUEST


def test_assemble_checks_whole_hash(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path, capacity_bytes=10_000, max_chunk_bytes=1000)
    parts = [b"x" * 500, b"y" * 300]
    for p in parts:
        store.put(sha(p), p)
    refs = [pb.ChunkRef(sha256=sha(p), size_bytes=len(p)) for p in parts]
    whole = b"".join(parts)
    good = pb.ModelManifest(sha256=sha(whole), size_bytes=len(whole), chunks=refs)
    store.assemble(good, tmp_path / "m")
    assert (tmp_path / "m").read_bytes() == whole
    bad = pb.ModelManifest(sha256=sha(b"other"), size_bytes=len(whole), chunks=refs)
    with pytest.raises(AgentError) as exc:
        store.assemble(bad, tmp_path / "m2")
    assert exc.value.code == pb.HASH_MISMATCH


def _onnx_with(mutate) -> bytes:  # noqa: ANN001
    import onnx

    model = onnx.load_from_string(onnx_cnn(seed=0))
    mutate(model)
    return model.SerializeToString()


def test_onnx_precheck_accepts_real_model() -> None:
    security.check_onnx(onnx_cnn(seed=0))


def test_onnx_precheck_rejects_external_data_and_custom_ops() -> None:
    from onnx import TensorProto, helper

    def external(model) -> None:  # noqa: ANN001
        init = model.graph.initializer[0]
        init.ClearField("raw_data")
        init.data_location = TensorProto.EXTERNAL
        init.external_data.add(key="location", value="/etc/shadow")

    def custom(model) -> None:  # noqa: ANN001
        model.graph.node.append(helper.make_node("Evil", ["y"], ["z"], domain="my.custom"))
        model.opset_import.append(helper.make_opsetid("my.custom", 1))

    with pytest.raises(AgentError, match="external"):
        security.check_onnx(_onnx_with(external))
    with pytest.raises(AgentError, match="custom-op"):
        security.check_onnx(_onnx_with(custom))


def test_onnx_precheck_accepts_declared_but_unused_domains() -> None:
    # onnxruntime's quantizer declares contrib domains its QDQ output never uses; a declaration
    # runs nothing, so only domains that nodes use are checked.
    from onnx import helper

    def declare(model) -> None:  # noqa: ANN001
        model.opset_import.append(helper.make_opsetid("com.microsoft.nchwc", 1))
        model.opset_import.append(helper.make_opsetid("my.custom", 1))

    security.check_onnx(_onnx_with(declare))


@pytest.mark.parametrize("data", [os.urandom(4096), b"", b"\x08\x01", bytes(64)])
def test_onnx_precheck_rejects_garbage(data: bytes) -> None:
    with pytest.raises(AgentError) as exc:
        security.check_onnx(data)
    assert exc.value.code == pb.INVALID_MODEL
