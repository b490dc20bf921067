"""Shared helpers for the device-agent tests and bench: start a real agent process, build
small real models, upload by chunks, profile."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np

from protos import ERROR_TRAILER_KEY
from protos import hadmc_device_pb2 as pb
from protos import hadmc_device_pb2_grpc as pb_grpc

REPO = Path(__file__).resolve().parent.parent
FAST_BUDGET = {
    "warmup_runs": 2,
    "warmup_min_seconds": 0.05,
    "min_runs": 10,
    "min_seconds": 0.05,
    "max_seconds": 2.0,
}


@dataclass
class Agent:
    proc: subprocess.Popen[str]
    address: str
    token: str | None
    cold_start_s: float

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.address)

    def stub(self) -> pb_grpc.DeviceAgentStub:
        return pb_grpc.DeviceAgentStub(self.channel())

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def start_agent(
    cache_dir: Path,
    args: Sequence[str] = (),
    token: str | None = None,
    env: dict[str, str] | None = None,
    timeout_s: float = 30.0,
    cwd: Path = REPO,
) -> Agent:
    """Start ``python -m device_agent --port 0`` and wait for its LISTENING line. ``cwd`` is
    the tree whose ``device_agent`` runs (``python -m`` puts it first on sys.path)."""
    cmd = [sys.executable, "-m", "device_agent", "--port", "0", "--cache-dir", str(cache_dir)]
    if token:
        cmd += ["--token", token]
    full_env = {**os.environ, **(env or {})}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [*cmd, *args], stdout=subprocess.PIPE, text=True, env=full_env, cwd=cwd
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the line or exit
    cold = time.perf_counter() - t0
    if not line.startswith("HADMC_DEVICE_LISTENING "):
        proc.kill()
        raise RuntimeError(f"agent did not start: {line!r}, rc={proc.wait()}")
    return Agent(proc, line.split()[1], token, cold)


def onnx_cnn(
    seed: int = 0, channels: int = 32, bump_layer: int | None = None, hw: int = 16
) -> bytes:
    """A small real CNN (4 conv + global pool + gemm) built with onnx.helper; weights are
    seeded, ``hw`` is the input size, and ``bump_layer`` changes that one conv's weights only."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    prev, cin = "x", 3
    for i in range(4):
        w = rng.standard_normal((channels, cin, 3, 3)).astype(np.float32) * 0.1
        if bump_layer == i:
            w = w + 1.0
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        inits.append(numpy_helper.from_array(np.zeros(channels, np.float32), f"b{i}"))
        nodes.append(helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1] * 4))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        prev, cin = f"r{i}", channels
    nodes.append(helper.make_node("GlobalAveragePool", [prev], ["gp"]))
    nodes.append(helper.make_node("Flatten", ["gp"], ["fl"]))
    fc = rng.standard_normal((channels, 10)).astype(np.float32)
    inits.append(numpy_helper.from_array(fc, "fc"))
    nodes.append(helper.make_node("MatMul", ["fl", "fc"], ["y"]))
    graph = helper.make_graph(
        nodes,
        "cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, hw, hw])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def manifest_of(data: bytes, name: str = "model") -> pb.ModelManifest:
    from hadmc.device.chunking import chunk_bytes  # tests/bench may import hadmc; the agent never

    m = chunk_bytes(data, name)
    return pb.ModelManifest(
        name=m.name,
        sha256=m.sha256,
        size_bytes=m.size_bytes,
        chunks=[pb.ChunkRef(sha256=c.sha256, size_bytes=c.size_bytes) for c in m.chunks],
    )


def upload(agent: Agent, data: bytes, name: str = "model") -> tuple[pb.ModelManifest, int]:
    """MissingChunks then UploadChunks of only those; returns (manifest, bytes sent)."""
    stub, md = agent.stub(), agent.metadata()
    manifest = manifest_of(data, name)
    missing = stub.MissingChunks(
        pb.MissingChunksRequest(sha256=[c.sha256 for c in manifest.chunks]), metadata=md
    ).missing_sha256
    offsets, pos = {}, 0
    for c in manifest.chunks:
        offsets[c.sha256] = (pos, c.size_bytes)
        pos += c.size_bytes
    chunks = [
        pb.Chunk(sha256=h, data=data[offsets[h][0] : offsets[h][0] + offsets[h][1]])
        for h in missing
    ]
    sent = sum(len(c.data) for c in chunks)
    if chunks:
        stub.UploadChunks(iter(chunks), metadata=md)
    return manifest, sent


def profile_request(
    manifest: pb.ModelManifest, runtime: int = pb.ONNXRUNTIME, **kw: object
) -> pb.ProfileRequest:
    budget = {**FAST_BUDGET, **{k: v for k, v in kw.items() if k in FAST_BUDGET}}
    rest = {k: v for k, v in kw.items() if k not in FAST_BUDGET}
    return pb.ProfileRequest(model=manifest, runtime=runtime, threads=1, **budget, **rest)


def error_of(exc: grpc.RpcError) -> pb.ProfileError:
    """The typed ProfileError from the trailer of a failed call."""
    for key, value in exc.trailing_metadata() or ():
        if key == ERROR_TRAILER_KEY:
            return pb.ProfileError.FromString(value)
    raise AssertionError(f"no {ERROR_TRAILER_KEY} trailer on {exc.code()}: {exc.details()}")
