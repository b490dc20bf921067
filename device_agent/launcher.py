"""The agent's side of a measurement: start a worker process (``device_agent.worker``), hand
it the request, wait for its result with a timeout and a cancel flag, kill its process group.

A fresh process per Profile means a model that crashes or hangs the runtime takes down only
that process, and the peak memory read is the worker's alone. The request travels as JSON on
stdin; the result comes back as one ``RESULT_MARKER`` line on stdout (runtimes may print their
own logs, so the marker, not "the last line", identifies it).

Containment: the worker runs in its own session (process group), so a timeout, a client that
went away or the agent's shutdown kills the runtime's threads and children too. It runs under
an address-space limit (``RLIMIT_AS``, set by the worker on itself before importing anything,
so the spare worker has it too), and with HOME, XDG and TMPDIR pointed inside the agent's
state directory and onnxruntime's telemetry off, so nothing is written outside the cache dir
(onnxruntime otherwise writes ``~/.cache/Microsoft/DeveloperTools/.onnxruntime/`` with a
device id).
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device_agent.worker import EXIT_MARKER, RESULT_MARKER

POLL_S = 0.1  # how often a waiting measurement checks whether its client has gone


class WorkerFailure(Exception):
    """The worker died, timed out or was cancelled; ``kind`` is "crashed", "timeout" or
    "cancelled"."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class WorkerSettings:
    """How every worker process is started."""

    state_dir: Path  # HOME / XDG / TMPDIR of the workers live here, inside the cache dir
    max_address_space_bytes: int = 0  # RLIMIT_AS of each worker; 0: no limit

    def env(self) -> dict[str, str]:
        home = self.state_dir / "home"
        dirs = {
            "HOME": home,
            "XDG_CACHE_HOME": home / ".cache",
            "XDG_CONFIG_HOME": home / ".config",
            "XDG_DATA_HOME": home / ".local" / "share",
            "XDG_STATE_HOME": home / ".local" / "state",
            "TMPDIR": self.state_dir / "tmp",
        }
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in dirs}
        env.update({k: str(v) for k, v in dirs.items()})
        # glibc reserves a 64 MiB arena per thread; under RLIMIT_AS that virtual reservation,
        # not real use, would hit the limit first on a many-core board.
        env.setdefault("MALLOC_ARENA_MAX", "2")
        # numpy's OpenBLAS starts a thread pool at import; the zygote must fork with none, and
        # the measurement uses the runtime's own threads, not BLAS.
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        return env


def _spawn(
    runtime: str, settings: WorkerSettings | None, zygote: bool = False
) -> subprocess.Popen[bytes]:
    mode = "--zygote" if zygote else "--preload"
    cmd = [sys.executable, "-m", "device_agent.worker", mode, runtime]
    if settings is not None and settings.max_address_space_bytes:
        cmd += ["--max-address-space", str(settings.max_address_space_bytes)]
    return subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=settings.env() if settings is not None else None,
        start_new_session=True,  # its own process group: a timeout kills runtime threads too
    )


class Zygote:
    """A ``python -m device_agent.worker --zygote RUNTIME`` process and its output buffers."""

    def __init__(self, runtime: str, settings: WorkerSettings | None) -> None:
        self.runtime = runtime
        self.proc = _spawn(runtime, settings, zygote=True)
        self.out, self.err = bytearray(), bytearray()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        _kill_and_reap(self.proc)


class WorkerLauncher:
    """Hands out a fresh process for every measurement.

    With ``prewarm`` (the default) a zygote per runtime imports numpy and the runtime once and
    forks one child per measurement, so a call skips interpreter start-up and imports (most
    of a call's overhead on a small board) while every measurement still runs in a process of
    its own. The zygote is idle (blocked on a read) between calls, so nothing of it overlaps
    a timed window. A timeout, a cancelled call or a crash of the zygote itself kills the
    zygote's whole process group; the next call starts a new one. Without ``prewarm`` each
    measurement spawns a one-shot worker.

    ``close()`` kills the zygote and any worker still measuring (agent shutdown).
    """

    def __init__(self, prewarm: bool = True, settings: WorkerSettings | None = None) -> None:
        self.prewarm = prewarm
        self.settings = settings
        self._zygote: Zygote | None = None
        self._active: set[subprocess.Popen[bytes]] = set()
        self._closed = False
        self._lock = threading.Lock()

    def zygote(self, runtime: str) -> Zygote:
        with self._lock:
            if self._closed:
                raise WorkerFailure("cancelled", "the agent is shutting down")
            old = self._zygote
            if old is not None and old.runtime == runtime and old.alive():
                return old
            self._zygote = Zygote(runtime, self.settings)
            self._active.add(self._zygote.proc)
        if old is not None:
            self._forget(old.proc)
            old.kill()
        return self._zygote

    def drop(self, zygote: Zygote) -> None:
        """Kill a zygote that timed out, was cancelled or died."""
        with self._lock:
            if self._zygote is zygote:
                self._zygote = None
        self._forget(zygote.proc)
        zygote.kill()

    def one_shot(self, runtime: str) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._closed:
                raise WorkerFailure("cancelled", "the agent is shutting down")
            proc = _spawn(runtime, self.settings)
            self._active.add(proc)
        return proc

    def _forget(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._active.discard(proc)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._zygote = None
            active = list(self._active)
        for proc in active:
            _kill_group(proc)


def run_worker(
    request: dict[str, Any],
    timeout_s: float,
    launcher: WorkerLauncher | None = None,
    cancelled: threading.Event | None = None,
) -> dict[str, Any]:
    """Run one measurement; returns the worker's JSON (which may carry an ``error``).

    ``cancelled`` set (the client went away) kills the worker at once: a measurement nobody
    waits for must not hold the board.
    """
    launcher = launcher or WorkerLauncher(prewarm=False)
    cancelled = cancelled or threading.Event()
    if launcher.prewarm:
        zygote = launcher.zygote(request["runtime"])
        try:
            return _via_zygote(zygote, request, timeout_s, cancelled)
        except WorkerFailure:
            launcher.drop(zygote)
            raise
    proc = launcher.one_shot(request["runtime"])
    try:
        return _communicate(proc, request, timeout_s, cancelled)
    finally:
        launcher._forget(proc)


def _via_zygote(
    zygote: Zygote, request: dict[str, Any], timeout_s: float, cancelled: threading.Event
) -> dict[str, Any]:
    """Send one request line; read the child's result line, then its exit line."""
    proc = zygote.proc
    assert proc.stdin is not None
    try:
        proc.stdin.write(json.dumps(request).encode() + b"\n")
        proc.stdin.flush()
    except BrokenPipeError:
        raise WorkerFailure("crashed", "the worker zygote died before the request") from None
    zygote.err.clear()  # stderr from here on belongs to this measurement
    result: dict[str, Any] | None = None
    deadline = time.monotonic() + timeout_s
    for _ in _read(proc, zygote.out, zygote.err, deadline, timeout_s, cancelled):
        if result is None:
            result = _take_line(zygote.out, RESULT_MARKER)
        exit_line = _take_line(zygote.out, EXIT_MARKER, parse=False)
        if exit_line is not None:
            if result is not None:
                return result
            raise _crash(int(exit_line), zygote.err)
    raise _crash(proc.wait(), zygote.err, "the worker zygote died")


def _read(
    proc: subprocess.Popen[bytes],
    out: bytearray,
    err: bytearray,
    deadline: float,
    timeout_s: float,
    cancelled: threading.Event,
) -> Iterator[None]:
    """Read stdout/stderr into the buffers, yielding after each read, until both close.
    A timeout or a cancel raises WorkerFailure (the caller kills the process)."""
    assert proc.stdout is not None and proc.stderr is not None
    buffers = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    with selectors.DefaultSelector() as sel:
        for stream in (proc.stdout, proc.stderr):
            sel.register(stream, selectors.EVENT_READ)
        while sel.get_map():
            if cancelled.is_set():
                raise WorkerFailure("cancelled", "the client went away")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerFailure("timeout", f"worker exceeded {timeout_s:.1f} s and was killed")
            for key, _ in sel.select(timeout=min(POLL_S, remaining)):
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                buf = buffers[key.fd]
                buf += chunk
                if buf is err and len(err) > 1 << 16:  # keep the tail only: logs can be long
                    del err[: len(err) - (1 << 16)]
            yield


def _take_line(buf: bytearray, marker: str, parse: bool = True) -> Any:
    """Remove and return the first complete ``marker`` line from ``buf`` (None if none)."""
    tag = marker.encode()
    at = buf.find(tag)
    if at < 0:
        return None
    end = buf.find(b"\n", at)
    if end < 0:
        return None  # the line is still arriving
    body = bytes(buf[at + len(tag) : end])
    del buf[: end + 1]
    return json.loads(body) if parse else body.decode()


def _crash(rc: int, err: bytearray, what: str = "worker died") -> WorkerFailure:
    how = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}"
    tail = " | ".join(err.decode("utf-8", "replace").strip().splitlines()[-3:])
    return WorkerFailure("crashed", f"{what} ({how}) without a result: {tail}"[:2000])


def _communicate(
    proc: subprocess.Popen[bytes],
    request: dict[str, Any],
    timeout_s: float,
    cancelled: threading.Event,
) -> dict[str, Any]:
    """One-shot worker: send the request; return as soon as the result line arrives.

    The worker is then killed (SIGKILL to its group) and reaped rather than left to exit: a
    Python process with onnxruntime loaded takes 100-200 ms to tear down. Killing a process
    that has already written its result loses nothing.
    """
    deadline = time.monotonic() + timeout_s
    try:
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(request).encode())
        proc.stdin.close()
    except BrokenPipeError:
        pass  # the worker died first; reported below as a crash, with its stderr
    out, err = bytearray(), bytearray()
    try:
        for _ in _read(proc, out, err, deadline, timeout_s, cancelled):
            result = _take_line(out, RESULT_MARKER)
            if result is not None:
                return result
    finally:
        _kill_and_reap(proc)
    raise _crash(proc.returncode, err)


def _kill_and_reap(proc: subprocess.Popen[bytes]) -> None:
    _kill_group(proc)
    proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
