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
    block = ChunkStore(tmp_path / "probe", 1 << 20, 1 << 20).block_bytes
    store = ChunkStore(tmp_path, capacity_bytes=3 * block, max_chunk_bytes=block)
    chunks = [os.urandom(block) for _ in range(4)]
    for c in chunks[:3]:
        assert store.put(sha(c), c)
    assert not store.put(sha(chunks[0]), chunks[0])  # already there: touched, not stored
    store.put(sha(chunks[3]), chunks[3])  # over capacity: evicts the oldest, chunks[1]
    assert store.missing([sha(c) for c in chunks]) == [sha(chunks[1])]
    assert store.used_bytes == 3 * block
    store.close()
    reopened = ChunkStore(tmp_path, capacity_bytes=3 * block, max_chunk_bytes=block)
    assert reopened.used_bytes == 3 * block
    assert reopened.missing([sha(chunks[1])]) == [sha(chunks[1])]


def test_accounting_charges_a_block_per_file(tmp_path: Path) -> None:
    # Row 7: 8-byte chunks cost a filesystem block each on disk; charging their payload let
    # 20,000 of them take 81 MiB under a "1 MiB" cache.
    store = ChunkStore(tmp_path, capacity_bytes=1 << 20, max_chunk_bytes=1 << 20)
    for i in range(600):
        data = i.to_bytes(8, "little")
        store.put(sha(data), data)
    on_disk = sum(1 for _ in (tmp_path / "chunks").glob("??/*"))
    assert store.used_bytes <= 1 << 20
    assert on_disk * store.block_bytes <= 1 << 20  # what is on disk fits the capacity
    assert on_disk < 600  # the oldest were evicted


def test_missing_touches_present_chunks(tmp_path: Path) -> None:
    # Row 13: a chunk MissingChunks reported present must not be the next one evicted.
    block = ChunkStore(tmp_path / "probe", 1 << 20, 1 << 20).block_bytes
    store = ChunkStore(tmp_path, capacity_bytes=2 * block, max_chunk_bytes=block)
    a, b, c = (os.urandom(block) for _ in range(3))
    store.put(sha(a), a)
    store.put(sha(b), b)
    assert store.missing([sha(a), sha(c)]) == [sha(c)]  # a is present: now the newest
    store.put(sha(c), c)  # evicts the least recently used: b, not a
    assert store.missing([sha(a), sha(b), sha(c)]) == [sha(b)]


def test_hash_with_trailing_newline_is_refused(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path, capacity_bytes=10_000, max_chunk_bytes=100)
    with pytest.raises(AgentError) as exc:
        store.missing([sha(b"x") + "\n"])  # re.match accepted this
    assert exc.value.code == pb.INVALID_REQUEST


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


def _manifest(parts: list[bytes], sizes: list[int] | None = None) -> pb.ModelManifest:
    sizes = sizes or [len(p) for p in parts]
    whole = b"".join(parts)
    refs = [pb.ChunkRef(sha256=sha(p), size_bytes=n) for p, n in zip(parts, sizes, strict=True)]
    return pb.ModelManifest(sha256=sha(whole), size_bytes=sum(sizes), chunks=refs)


def test_assemble_checks_whole_hash(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path, capacity_bytes=100_000, max_chunk_bytes=1000)
    parts = [b"x" * 500, b"y" * 300]
    for p in parts:
        store.put(sha(p), p)
    good = _manifest(parts)
    store.assemble(good, tmp_path / "m", max_model_bytes=10_000)
    assert (tmp_path / "m").read_bytes() == b"".join(parts)
    bad = pb.ModelManifest(sha256=sha(b"other"), size_bytes=800, chunks=good.chunks)
    with pytest.raises(AgentError) as exc:
        store.assemble(bad, tmp_path / "m2", max_model_bytes=10_000)
    assert exc.value.code == pb.HASH_MISMATCH


def test_assemble_refuses_lying_sizes_and_repeated_chunks(tmp_path: Path) -> None:
    # Row 1: a manifest of zero-size refs to one chunk repeated 3,000 times built a 187 MiB
    # model under a 1 MiB limit.
    store = ChunkStore(tmp_path, capacity_bytes=1 << 20, max_chunk_bytes=1 << 16)
    chunk = os.urandom(1 << 16)
    store.put(sha(chunk), chunk)
    with pytest.raises(AgentError) as exc:  # more refs than any 1 MiB model can have
        store.assemble(_manifest([chunk] * 3000, [0] * 3000), tmp_path / "m", 1 << 20)
    assert exc.value.code == pb.TOO_LARGE and "3000 chunks" in exc.value.message
    zero_sizes = _manifest([chunk] * 1000, sizes=[0] * 1000)
    with pytest.raises(AgentError) as exc:
        store.assemble(zero_sizes, tmp_path / "m", max_model_bytes=1 << 20)
    assert exc.value.code == pb.INVALID_REQUEST and "manifest says 0 B" in exc.value.message
    honest = _manifest([chunk] * 100)  # true sizes, but 6.4 MiB in all
    with pytest.raises(AgentError) as exc:
        store.assemble(honest, tmp_path / "m", max_model_bytes=1 << 20)
    assert exc.value.code == pb.TOO_LARGE
    assert (tmp_path / "m").stat().st_size <= 1 << 20  # stopped at the limit, not after


def test_damaged_chunk_is_dropped_and_reported_missing(tmp_path: Path) -> None:
    # Row 9: a chunk truncated by a power loss made every Profile fail with HASH_MISMATCH,
    # and re-uploading did nothing, since the cache still said "present".
    store = ChunkStore(tmp_path, capacity_bytes=100_000, max_chunk_bytes=1000)
    parts = [os.urandom(700), os.urandom(600)]
    for p in parts:
        store.put(sha(p), p)
    (tmp_path / "chunks" / sha(parts[1])[:2] / sha(parts[1])).write_bytes(b"garbage")
    with pytest.raises(AgentError) as exc:
        store.assemble(_manifest(parts), tmp_path / "m", max_model_bytes=10_000)
    assert exc.value.code == pb.MISSING_CHUNKS and exc.value.missing == [sha(parts[1])]
    assert store.put(sha(parts[1]), parts[1])  # re-upload is stored again
    store.assemble(_manifest(parts), tmp_path / "m", max_model_bytes=10_000)


def test_unclean_restart_rehashes_and_drops_bad_chunks(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path, capacity_bytes=100_000, max_chunk_bytes=1000)
    good, bad, empty = os.urandom(500), os.urandom(500), os.urandom(500)
    for p in (good, bad, empty):
        store.put(sha(p), p)
    root = tmp_path / "chunks"
    (root / sha(bad)[:2] / sha(bad)).write_bytes(b"x" * 500)  # same size, wrong bytes
    (root / sha(empty)[:2] / sha(empty)).write_bytes(b"")  # what a power loss leaves
    (root / sha(good)[:2] / ".tmp-leftover").write_bytes(b"partial")
    # no close(): the agent died, so there is no clean marker
    again = ChunkStore(tmp_path, capacity_bytes=100_000, max_chunk_bytes=1000)
    assert sorted(again.dropped_at_start) == sorted([sha(bad), sha(empty)])
    assert again.missing([sha(good), sha(bad), sha(empty)]) == [sha(bad), sha(empty)]
    assert not list(root.glob("??/.tmp-*"))


def test_full_disk_evicts_then_types_the_error(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    # Row 8: ENOSPC came back as UNKNOWN "Errno 28" with a .tmp- file left behind.
    import errno

    from device_agent import storage

    store = ChunkStore(tmp_path, capacity_bytes=100_000, max_chunk_bytes=1000)
    old = [os.urandom(900) for _ in range(3)]
    for p in old:
        store.put(sha(p), p)
    real_write = storage._durable_write
    budget = {"fails": 2}  # the disk is full until two chunks are evicted

    def full_disk(path: Path, data: bytes) -> None:
        if budget["fails"] > 0:
            budget["fails"] -= 1
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(storage, "_durable_write", full_disk)
    new = os.urandom(900)
    assert store.put(sha(new), new)  # stored after eviction freed space
    assert store.missing([sha(new)]) == [] and store.missing([sha(old[0])]) == [sha(old[0])]
    budget["fails"] = 100
    with pytest.raises(AgentError) as exc:
        store.put(sha(b"z" * 900), b"z" * 900)
    assert exc.value.code == pb.DISK_FULL and "disk is full" in exc.value.message
    assert exc.value.status.name == "RESOURCE_EXHAUSTED"


def test_durable_write_leaves_no_temp_file_on_failure(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    import errno

    from device_agent import storage

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage.os, "fsync", no_space)
    with pytest.raises(OSError):
        storage._durable_write(tmp_path / "ab" / "chunk", b"data")
    assert list((tmp_path / "ab").iterdir()) == []


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
