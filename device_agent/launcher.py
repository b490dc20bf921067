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
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device_agent.worker import RESULT_MARKER

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
        return env


def _spawn(runtime: str, settings: WorkerSettings | None) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "device_agent.worker", "--preload", runtime]
    if settings is not None and settings.max_address_space_bytes:
        cmd += ["--max-address-space", str(settings.max_address_space_bytes)]
    return subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=settings.env() if settings is not None else None,
        start_new_session=True,  # its own process group: a timeout kills runtime threads too
    )


class WorkerLauncher:
    """Hands out fresh worker processes, one per measurement.

    With ``prewarm``, after each measurement one spare worker is started for the same runtime;
    it imports numpy and the runtime, then blocks reading its request. The next Profile then
    skips interpreter start-up and imports (most of a call's overhead on a small board) while
    every measurement still gets a process of its own. The spare is started only after the
    previous worker has exited, so its imports never overlap a timed window.

    ``close()`` kills the spare and any worker still measuring (agent shutdown).
    """

    def __init__(self, prewarm: bool = True, settings: WorkerSettings | None = None) -> None:
        self.prewarm = prewarm
        self.settings = settings
        self._spare: tuple[str, subprocess.Popen[str]] | None = None
        self._active: set[subprocess.Popen[str]] = set()
        self._closed = False
        self._lock = threading.Lock()

    def take(self, runtime: str) -> subprocess.Popen[str]:
        with self._lock:
            if self._closed:
                raise WorkerFailure("cancelled", "the agent is shutting down")
            spare, self._spare = self._spare, None
        if spare is not None:
            if spare[0] == runtime and spare[1].poll() is None:
                proc = spare[1]
            else:
                _kill_group(spare[1])
                spare[1].communicate()
                proc = _spawn(runtime, self.settings)
        else:
            proc = _spawn(runtime, self.settings)
        with self._lock:
            self._active.add(proc)
        return proc

    def release(self, proc: subprocess.Popen[str]) -> None:
        with self._lock:
            self._active.discard(proc)

    def refill(self, runtime: str) -> None:
        if self.prewarm:
            with self._lock:
                if self._spare is None and not self._closed:
                    self._spare = (runtime, _spawn(runtime, self.settings))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            spare, self._spare = self._spare, None
            active = list(self._active)
        for proc in active:
            _kill_group(proc)
        if spare is not None:
            _kill_group(spare[1])
            spare[1].communicate()


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
    proc = launcher.take(request["runtime"])
    try:
        return _communicate(proc, request, timeout_s, cancelled or threading.Event())
    finally:
        launcher.release(proc)
        if not (cancelled is not None and cancelled.is_set()):
            launcher.refill(request["runtime"])


def _communicate(
    proc: subprocess.Popen[str],
    request: dict[str, Any],
    timeout_s: float,
    cancelled: threading.Event,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    payload: str | None = json.dumps(request)
    while True:
        step = min(POLL_S, max(0.0, deadline - time.monotonic()))
        try:
            # communicate() may be called again after TimeoutExpired without losing output;
            # the input is sent only by the first call.
            out, err = proc.communicate(payload, timeout=step)
            break
        except subprocess.TimeoutExpired:
            payload = None
            if cancelled.is_set():
                _kill_group(proc)
                proc.communicate()
                raise WorkerFailure("cancelled", "the client went away") from None
            if time.monotonic() >= deadline:
                _kill_group(proc)
                proc.communicate()
                raise WorkerFailure(
                    "timeout", f"worker exceeded {timeout_s:.1f} s and was killed"
                ) from None
    for line in reversed(out.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER) :])
    rc = proc.returncode
    how = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}"
    tail = " | ".join(err.strip().splitlines()[-3:])
    raise WorkerFailure("crashed", f"worker died ({how}) without a result: {tail}"[:2000])


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
