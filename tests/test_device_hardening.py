"""hadmc-device under hostile use: each row of the hardening table, against a real agent
process over loopback, asserting the status code, the typed trailer, and that the agent
stays healthy afterwards (memory and files checked where the row is about them)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from agent_helpers import (
    Agent,
    error_of,
    manifest_of,
    onnx_cnn,
    profile_request,
    start_agent,
    upload,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos import hadmc_device_pb2 as pb
from protos import hadmc_device_pb2_grpc as pb_grpc

TOKEN = "hardening-token-0123456789"


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def healthy(agent: Agent, within_s: float = 1.0) -> bool:
    ch = agent.channel()
    t0 = time.perf_counter()
    reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=within_s)
    pb_stub = agent.stub()
    pb_stub.GetInfo(pb.GetInfoRequest(), metadata=agent.metadata(), timeout=within_s)
    return reply.status == health_pb2.HealthCheckResponse.SERVING and (
        time.perf_counter() - t0 < 2 * within_s
    )


def fails_with(call, status: grpc.StatusCode, code: int) -> pb.ProfileError:  # noqa: ANN001
    with pytest.raises(grpc.RpcError) as exc:
        call()
    assert exc.value.code() == status, exc.value.details()
    err = error_of(exc.value)
    assert err.code == code, err.message
    return err


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Agent:
    a = start_agent(
        tmp_path_factory.mktemp("cache"),
        ["--max-model-mib", "1", "--worker-timeout", "6", "--upload-idle-timeout", "2"],
        env={"HADMC_DEVICE_TEST_FAULTS": "1"},
    )
    yield a
    a.stop()


def test_row1_manifest_cannot_claim_sizes_or_repeat_chunks(agent: Agent) -> None:
    stub = agent.stub()
    chunk = os.urandom(64 * 1024)
    digest = hashlib.sha256(chunk).hexdigest()
    stub.UploadChunks(iter([pb.Chunk(sha256=digest, data=chunk)]))
    whole = hashlib.sha256(chunk * 3000).hexdigest()
    zero = pb.ModelManifest(
        sha256=whole, size_bytes=0, chunks=[pb.ChunkRef(sha256=digest, size_bytes=0)] * 1000
    )
    rss0 = rss_bytes(agent.proc.pid)
    err = fails_with(
        lambda: stub.Profile(profile_request(zero)),
        grpc.StatusCode.INVALID_ARGUMENT,
        pb.INVALID_REQUEST,
    )
    assert "manifest says 0 B" in err.message
    many = pb.ModelManifest(
        sha256=whole,
        size_bytes=3000 * len(chunk),
        chunks=[pb.ChunkRef(sha256=digest, size_bytes=len(chunk))] * 3000,
    )
    fails_with(
        lambda: stub.Profile(profile_request(many)),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        pb.TOO_LARGE,
    )
    assert rss_bytes(agent.proc.pid) - rss0 < 20 * 2**20
    assert healthy(agent)


def test_row2_max_seconds_ends_the_window_and_timeout_is_capped(agent: Agent) -> None:
    manifest, _ = upload(agent, onnx_cnn(seed=21))
    t0 = time.perf_counter()
    req = profile_request(
        manifest, min_runs=2**32 - 1, max_seconds=1.0, min_seconds=0.0, timeout_seconds=1e6
    )
    result = agent.stub().Profile(req, timeout=30)
    assert time.perf_counter() - t0 < 10
    assert 1 <= result.latency.n < 2**32 - 1  # stopped by max_seconds; n says how many
    hang, _ = upload(agent, onnx_cnn(seed=22), name="fault:hang")
    t0 = time.perf_counter()
    fails_with(  # asks for 1e6 s; the agent's --worker-timeout 6 wins
        lambda: agent.stub().Profile(profile_request(hang, timeout_seconds=1e6), timeout=60),
        grpc.StatusCode.DEADLINE_EXCEEDED,
        pb.WORKER_TIMEOUT,
    )
    assert 5.5 < time.perf_counter() - t0 < 20
    assert healthy(agent)


def test_row3_health_under_load_and_abandoned_calls_are_cancelled(agent: Agent) -> None:
    hang, _ = upload(agent, onnx_cnn(seed=23), name="fault:hang")
    stalls = []

    def never_ends():  # noqa: ANN202 - a stream that sends nothing and never closes
        stop = threading.Event()
        stalls.append(stop)
        stop.wait(20)
        return
        yield  # pragma: no cover

    upload_futures = [agent.stub().UploadChunks.future(never_ends(), timeout=15) for _ in range(40)]
    with ThreadPoolExecutor(50) as pool:
        profiles = [
            pool.submit(
                lambda: agent.stub().Profile(profile_request(hang, timeout_seconds=18), timeout=8)
            )
            for _ in range(50)
        ]
        time.sleep(1.5)
        t0 = time.perf_counter()
        assert healthy(agent, within_s=1.0)
        assert time.perf_counter() - t0 < 1.0 * 2
        codes = []
        for f in profiles:
            try:
                f.result()
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                codes.append(exc.code())
    busy = codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert busy >= 40, codes  # the bounded queue refused the excess at once
    upload_codes = []
    for f in upload_futures:
        try:
            f.result()
        except grpc.RpcError as exc:
            upload_codes.append(exc.code())
    for stop in stalls:
        stop.set()
    # Beyond 8 slots: BUSY; the 8 admitted ended by the 2 s idle deadline.
    assert upload_codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 30
    assert grpc.StatusCode.INVALID_ARGUMENT in upload_codes
    # Every Profile client gave up at 8 s: their hung workers must be gone, so the next
    # measurement does not wait for them.
    ok, _ = upload(agent, onnx_cnn(seed=24))
    result = agent.stub().Profile(profile_request(ok), timeout=20)
    assert result.provenance.queue_wait_seconds < 2.0


def test_row5_missing_chunks_stay_typed_for_large_models(agent: Agent) -> None:
    fake = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(1000)]
    manifest = pb.ModelManifest(
        sha256=fake[0],
        size_bytes=1000 * 1024,
        chunks=[pb.ChunkRef(sha256=h, size_bytes=1024) for h in fake],
    )
    err = fails_with(
        lambda: agent.stub().Profile(profile_request(manifest)),
        grpc.StatusCode.FAILED_PRECONDITION,
        pb.MISSING_CHUNKS,
    )
    assert err.missing_count == 1000 and 0 < len(err.missing_sha256) <= 32


def test_row10_every_enum_and_range_is_validated(agent: Agent) -> None:
    manifest, _ = upload(agent, onnx_cnn(seed=25))
    bad = [
        profile_request(manifest, format=99),
        profile_request(manifest, timeout_seconds=float("inf")),
        profile_request(manifest, timeout_seconds=3e6),
        profile_request(manifest, max_seconds=float("nan")),
        pb.ProfileRequest(model=manifest, runtime=77),
    ]
    for req in bad:
        fails_with(
            lambda req=req: agent.stub().Profile(req),
            grpc.StatusCode.INVALID_ARGUMENT,
            pb.INVALID_REQUEST,
        )
    assert healthy(agent)


def test_row12_threads_capped_and_inputs_bounded(agent: Agent) -> None:
    manifest, _ = upload(agent, onnx_cnn(seed=26))
    req = profile_request(manifest)
    req.threads = 10**6
    result = agent.stub().Profile(req, timeout=60)
    assert 1 <= result.provenance.threads <= os.cpu_count()
    huge = profile_request(manifest, inputs=[pb.TensorSpec(shape=[1, 1, 2**14, 2**14])])
    err = fails_with(
        lambda: agent.stub().Profile(huge),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        pb.TOO_LARGE,
    )
    assert "limit" in err.message
    assert healthy(agent)


def test_row14_hash_with_newline_is_refused(agent: Agent) -> None:
    h = hashlib.sha256(b"x").hexdigest() + "\n"
    fails_with(
        lambda: agent.stub().MissingChunks(pb.MissingChunksRequest(sha256=[h])),
        grpc.StatusCode.INVALID_ARGUMENT,
        pb.INVALID_REQUEST,
    )


def test_worker_memory_limit_is_typed(tmp_path: Path) -> None:
    a = start_agent(tmp_path, ["--worker-memory-mib", "600", "--no-prewarm"])
    try:
        manifest, _ = upload(a, onnx_cnn(seed=27))
        big = profile_request(manifest, inputs=[pb.TensorSpec(shape=[64, 3, 512, 512])])
        err = fails_with(
            lambda: a.stub().Profile(big, timeout=60),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            pb.TOO_LARGE,
        )
        assert "600 MiB" in err.message
        assert a.stub().Profile(profile_request(manifest), timeout=60).latency.n >= 10
    finally:
        a.stop()


def test_row6_unauthenticated_big_calls_are_not_buffered(tmp_path: Path) -> None:
    a = start_agent(tmp_path, token=TOKEN)
    try:
        big = pb.ProfileRequest(model=pb.ModelManifest(name="x" * (38 * 2**20)))
        rss0 = rss_bytes(a.proc.pid)

        def call() -> grpc.StatusCode:
            try:
                a.stub().Profile(big, timeout=30)
            except grpc.RpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK

        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda _: call(), range(8)))
        assert set(codes) == {grpc.StatusCode.UNAUTHENTICATED}
        # +278 MiB with a unary denier; +11-63 MiB with gRPC's BDP-grown windows (load made
        # the difference); +1.4 MiB with 64 KiB windows (server.py).
        assert rss_bytes(a.proc.pid) - rss0 < 16 * 2**20
        small = pb.GetInfoRequest()
        info = a.stub().GetInfo(small, metadata=a.metadata(), timeout=5)
        assert info.token_required
        # Row 5, second half: a MissingChunks reply naming 70,000 chunks (~4.6 MB, a ~70 MiB
        # model of 1 KiB chunks) is over gRPC's default 4 MiB send limit; the agent's send
        # limit fits its own model limit.
        hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(70_000)]
        from host.device_client import CHANNEL_OPTIONS  # the host's client, as it connects

        channel = grpc.insecure_channel(a.address, options=CHANNEL_OPTIONS)
        reply = pb_grpc.DeviceAgentStub(channel).MissingChunks(
            pb.MissingChunksRequest(sha256=hashes), metadata=a.metadata(), timeout=30
        )
        assert len(reply.missing_sha256) == 70_000
    finally:
        a.stop()


def test_row4_sigterm_ends_agent_and_kills_its_workers(tmp_path: Path) -> None:
    a = start_agent(tmp_path, ["--grace", "2"], env={"HADMC_DEVICE_TEST_FAULTS": "1"})
    manifest, _ = upload(a, onnx_cnn(seed=28), name="fault:hang")
    pending = a.stub().Profile.future(profile_request(manifest, timeout_seconds=60), timeout=60)
    deadline = time.time() + 20
    workers: list[int] = []
    while time.time() < deadline and len(workers) < 1:
        time.sleep(0.3)
        workers = children(a.proc.pid)
    assert workers, "no worker started"
    t0 = time.perf_counter()
    a.proc.send_signal(signal.SIGTERM)
    rc = a.proc.wait(timeout=20)
    assert rc == 0 and time.perf_counter() - t0 < 2 + 5
    time.sleep(0.5)
    assert not [w for w in workers if alive(w)], "orphaned workers"
    with pytest.raises(grpc.RpcError):
        pending.result()


def test_row9_damaged_chunk_after_power_loss_is_repaired_by_reupload(tmp_path: Path) -> None:
    a = start_agent(tmp_path)
    data = onnx_cnn(seed=29)
    manifest, _ = upload(a, data)
    victim = manifest.chunks[1].sha256
    a.proc.kill()  # no clean shutdown, as after a power loss
    a.proc.wait()
    (tmp_path / "chunks" / victim[:2] / victim).write_bytes(b"")
    b = start_agent(tmp_path)
    try:
        missing = (
            b.stub()
            .MissingChunks(pb.MissingChunksRequest(sha256=[c.sha256 for c in manifest.chunks]))
            .missing_sha256
        )
        assert list(missing) == [victim]  # dropped at start-up, not "present" for ever
        upload(b, data)
        assert b.stub().Profile(profile_request(manifest), timeout=60).latency.n >= 10
    finally:
        b.stop()


def test_row11_nothing_is_written_outside_the_cache_dir(tmp_path: Path) -> None:
    home, cache = tmp_path / "home", tmp_path / "home" / "cache"
    home.mkdir()
    env = {"HOME": str(home), "XDG_CACHE_HOME": "", "XDG_CONFIG_HOME": "", "TMPDIR": str(home)}
    a = start_agent(cache, env=env)
    try:
        manifest, _ = upload(a, onnx_cnn(seed=30))
        assert a.stub().Profile(profile_request(manifest), timeout=60).latency.n >= 10
    finally:
        a.stop()
    outside = [p for p in home.rglob("*") if cache not in p.parents and p != cache]
    assert outside == [], outside


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30):  # noqa: ANN202
    import sys

    return subprocess.run(
        [sys.executable, "-m", "device_agent", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_row15_token_hygiene(tmp_path: Path) -> None:
    for token in (" ", "short"):
        proc = _cli("--port", "0", "--token", token, "--cache-dir", str(tmp_path))
        assert proc.returncode == 2 and "at least 16 characters" in proc.stderr
        assert "Traceback" not in proc.stderr
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    a = start_agent(tmp_path / "c", ["--token-file", str(token_file)])
    try:
        with pytest.raises(grpc.RpcError) as exc:
            a.stub().GetInfo(pb.GetInfoRequest(), timeout=5)
        assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
        md = (("authorization", f"Bearer {TOKEN}"),)
        assert a.stub().GetInfo(pb.GetInfoRequest(), metadata=md, timeout=5).token_required
    finally:
        a.stop()


def test_row15_non_loopback_without_tls_warns(tmp_path: Path) -> None:
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "device_agent", "--host", "0.0.0.0", "--port", "0",
         "--cache-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "HADMC_DEVICE_TOKEN": TOKEN},
    )  # fmt: skip
    try:
        assert proc.stdout.readline().startswith("HADMC_DEVICE_LISTENING")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert "without TLS" in err


def test_row15_tls_files_are_checked_before_binding(tmp_path: Path) -> None:
    import shutil

    proc = _cli("--tls-cert", str(tmp_path / "missing.pem"), "--tls-key", str(tmp_path / "k"))
    assert proc.returncode == 2
    assert f"TLS certificate not found: {tmp_path / 'missing.pem'}" in proc.stderr
    assert "Traceback" not in proc.stderr
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed: cannot make test certificates")
    pairs = []
    for name in ("a", "b"):
        cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=localhost", "-days", "1",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )  # fmt: skip
        pairs.append((cert, key))
    proc = _cli("--port", "0", "--tls-cert", str(pairs[0][0]), "--tls-key", str(pairs[1][1]))
    assert proc.returncode == 2 and "does not match" in proc.stderr, proc.stderr
    proc = _cli("--port", "0", "--tls-cert", str(pairs[0][1]), "--tls-key", str(pairs[0][1]))
    assert proc.returncode == 2 and "TLS:" in proc.stderr and "Traceback" not in proc.stderr


def test_port_in_use_and_out_of_range_are_refused(tmp_path: Path) -> None:
    a = start_agent(tmp_path / "a")
    try:
        port = a.address.rsplit(":", 1)[1]
        proc = _cli("--port", port, "--cache-dir", str(tmp_path / "b"))
        assert proc.returncode == 1 and f"127.0.0.1:{port}" in proc.stderr
        assert "in use" in proc.stderr and "LISTENING" not in proc.stdout
    finally:
        a.stop()
    proc = _cli("--port", "99999")
    assert proc.returncode == 2 and "0-65535" in proc.stderr


def test_manifest_of_is_the_hosts_chunker() -> None:
    # The tests above build manifests by hand; the host's own must stay within the bounds.
    from device_agent.storage import max_manifest_chunks

    data = onnx_cnn(seed=31)
    assert len(manifest_of(data).chunks) <= max_manifest_chunks(len(data))


def _put(a: Agent, blobs: list[bytes]) -> None:
    a.stub().UploadChunks(
        iter([pb.Chunk(sha256=hashlib.sha256(b).hexdigest(), data=b) for b in blobs]), timeout=60
    )


def _missing(a: Agent, blobs: list[bytes]) -> list[str]:
    hashes = [hashlib.sha256(b).hexdigest() for b in blobs]
    return list(a.stub().MissingChunks(pb.MissingChunksRequest(sha256=hashes)).missing_sha256)


def test_row7_and_row13_cache_accounting_and_lru_on_a_live_agent(tmp_path: Path) -> None:
    a = start_agent(tmp_path, ["--cache-mib", "1"])
    try:
        tiny = [i.to_bytes(8, "little") for i in range(2000)]  # row 7: 8-byte chunks
        _put(a, tiny)
        files = list((tmp_path / "chunks").glob("??/*"))
        block = os.statvfs(tmp_path).f_frsize
        assert len(files) * block <= 2**20  # what lies on disk fits the 1 MiB cache
        big = [os.urandom(400 * 1024) for _ in range(3)]  # row 13: 3 x 400 KiB in 1 MiB
        _put(a, big[:2])
        assert _missing(a, [big[0], big[2]]) == [hashlib.sha256(big[2]).hexdigest()]
        _put(a, big[2:])  # evicts the least recently used: big[1], not big[0]
        assert _missing(a, big) == [hashlib.sha256(big[1]).hexdigest()]
        assert healthy(a)
    finally:
        a.stop()


def test_row8_full_disk_on_a_live_agent(tmp_path: Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()[:80]}")
    try:
        a = start_agent(mount / "cache", ["--cache-mib", "64"])  # the disk, not the cache, is small
        try:
            # A disk smaller than the cache: the agent evicts old chunks to make room.
            _put(a, [os.urandom(60 * 1024) for _ in range(12)])
            chunks = mount / "cache" / "chunks"
            assert len(list(chunks.glob("??/*"))) < 12
            # A chunk larger than the whole disk: even an emptied cache cannot take it.
            with pytest.raises(grpc.RpcError) as exc:
                _put(a, [os.urandom(600 * 1024)])
            assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            err = error_of(exc.value)
            assert err.code == pb.DISK_FULL and "disk is full" in err.message
            assert not list(chunks.glob("??/.tmp-*"))  # no temp file left behind
            _put(a, [os.urandom(60 * 1024)])  # later uploads work
            assert healthy(a)
        finally:
            a.stop()
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
