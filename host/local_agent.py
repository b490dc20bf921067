"""Start a ``hadmc-device`` agent on loopback and make sure it never outlives the host.

``LocalAgent`` runs ``python -m device_agent --host 127.0.0.1 --port 0 --cache-dir <tmp>``,
waits for its ``HADMC_DEVICE_LISTENING <host>:<port>`` line and stops it on ``close()``, at
interpreter exit (atexit) and on SIGINT/SIGTERM (terminate, wait, then kill; the agent's own
worker processes are swept too). ``LocalDevice`` is a ``RemoteDevice`` to that agent.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import psutil

from hadmc.device.hal import DeviceError
from host.device_client import RemoteDevice

log = logging.getLogger(__name__)

LISTENING_PREFIX = "HADMC_DEVICE_LISTENING "
DEFAULT_STARTUP_TIMEOUT_S = 60.0
# The agent's own shutdown grace is 5 s (its --grace default); kill only after that.
STOP_GRACE_S = 8.0
AGENT_TOKEN_ENV = "HADMC_DEVICE_TOKEN"  # read by device_agent when --token is not given

_LIVE: set[LocalAgent] = set()
_LIVE_LOCK = threading.Lock()
_PREVIOUS_HANDLERS: dict[int, Any] = {}


def _stop_all_live() -> None:
    with _LIVE_LOCK:
        agents = list(_LIVE)
    for agent in agents:
        agent.close()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """Stop every local agent, then behave as the handler we replaced would have."""
    _stop_all_live()
    previous = _PREVIOUS_HANDLERS.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)  # SIGINT's default raises KeyboardInterrupt here
    elif previous == signal.SIG_DFL:
        # Exit through SystemExit (not the raw default action) so finally blocks and atexit
        # still run; 128 + signal number is the shell convention for "killed by signal".
        raise SystemExit(128 + signum)


def install_signal_handlers() -> None:
    # signal.signal only works in the main thread; elsewhere atexit and close() remain.
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signum in _PREVIOUS_HANDLERS:
            continue
        current = signal.getsignal(signum)
        if current in (signal.SIG_IGN, _on_signal):
            continue  # the user asked to ignore it: do not turn it into a shutdown
        _PREVIOUS_HANDLERS[signum] = current
        signal.signal(signum, _on_signal)


atexit.register(_stop_all_live)


class LocalAgent:
    """A ``device_agent`` child process bound to 127.0.0.1 on a free port."""

    def __init__(
        self,
        cache_dir: str | Path | None = None,
        token: str | None = None,
        startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self._own_dir = cache_dir is None
        self.cache_dir = Path(cache_dir or tempfile.mkdtemp(prefix="hadmc-agent-"))
        self.token = token
        self.address = ""
        # Re-entrant: the signal handler may call close() while close() is running.
        self._lock = threading.RLock()
        self._stdout_tail: collections.deque[str] = collections.deque(maxlen=50)
        # stderr goes to a file, not a pipe: nobody has to drain it, and it is there to quote
        # when the agent fails to start.
        fd, stderr_name = tempfile.mkstemp(prefix="hadmc-agent-", suffix=".stderr")
        os.close(fd)
        self._stderr_path = Path(stderr_name)
        cmd = [
            sys.executable,
            "-m",
            "device_agent",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--cache-dir",
            str(self.cache_dir),
            # A host killed with SIGKILL runs no atexit hook: the agent watches for that itself.
            "--exit-with-parent",
            *extra_args,
        ]
        # The token travels in the environment, not argv, so `ps` does not show it; an
        # inherited one is dropped when we have none, or the agent would demand it.
        env = {k: v for k, v in os.environ.items() if k != AGENT_TOKEN_ENV}
        if token:
            env[AGENT_TOKEN_ENV] = token
        self._stderr_file = open(self._stderr_path, "w+b")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr_file,
            text=True,
            bufsize=1,
            env=env,
        )
        with _LIVE_LOCK:
            _LIVE.add(self)
        install_signal_handlers()
        self._listening = threading.Event()
        # A thread reads stdout: it finds the LISTENING line and then keeps draining the pipe,
        # so a chatty agent can never block on a full pipe.
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        try:
            self._wait_listening(startup_timeout_s)
        except BaseException:
            self.close()
            raise
        log.info("local agent pid %d listening on %s", self.proc.pid, self.address)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                line = line.rstrip("\n")
                if not self._listening.is_set() and line.startswith(LISTENING_PREFIX):
                    self.address = line[len(LISTENING_PREFIX) :].strip()
                    self._listening.set()
                else:
                    self._stdout_tail.append(line)
        except (OSError, ValueError):
            pass  # the pipe was closed under us by close(): nothing left to read

    def stderr_tail(self, n_lines: int = 8) -> str:
        """Last lines of the agent's stderr, joined into one line for error messages."""
        try:
            text = self._stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        return " | ".join(lines[-n_lines:])

    def _wait_listening(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self._listening.wait(0.05):
            if self.proc.poll() is not None:
                self._reader.join(1.0)
                if self._listening.is_set():
                    break
                raise DeviceError(
                    "unreachable",
                    f"local device agent exited with code {self.proc.returncode} before "
                    f"listening; its stderr: {self.stderr_tail() or '(empty)'}",
                )
            if time.monotonic() > deadline:
                raise DeviceError(
                    "unreachable",
                    f"local device agent did not print {LISTENING_PREFIX.strip()} within "
                    f"{timeout_s:.0f} s; its stderr: {self.stderr_tail() or '(empty)'}",
                )

    def close(self) -> None:
        """Terminate the agent (SIGTERM, wait, then SIGKILL) and its leftover children."""
        with self._lock:
            if self.proc.returncode is None:
                try:
                    children = psutil.Process(self.proc.pid).children(recursive=True)
                except psutil.Error:
                    children = []
                self.proc.terminate()
                try:
                    self.proc.wait(STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    log.warning("local agent pid %d ignored SIGTERM; killing it", self.proc.pid)
                    self.proc.kill()
                    self.proc.wait()
                _reap(children)
            with _LIVE_LOCK:
                _LIVE.discard(self)
            if self.proc.stdout is not None:
                self._reader.join(1.0)  # it sees EOF once the agent is gone
                self.proc.stdout.close()
            if not self._stderr_file.closed:
                self._stderr_file.close()
                self._stderr_path.unlink(missing_ok=True)
            if self._own_dir:
                shutil.rmtree(self.cache_dir, ignore_errors=True)

    def __enter__(self) -> LocalAgent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reap(children: list[psutil.Process]) -> None:
    """Workers the agent should have stopped itself; make sure none survive it."""
    alive = [c for c in children if c.is_running()]
    for child in alive:
        try:
            child.terminate()
        except psutil.Error:
            pass
    _, still = psutil.wait_procs(alive, timeout=STOP_GRACE_S)
    for child in still:
        try:
            child.kill()
        except psutil.Error:
            pass


class LocalDevice(RemoteDevice):
    """``RemoteDevice`` to an agent this process started on loopback; closes it on close()."""

    def __init__(
        self,
        token: str | None = None,
        cache_dir: str | Path | None = None,
        startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S,
        **remote_kwargs: Any,
    ) -> None:
        self.agent = LocalAgent(
            cache_dir=cache_dir, token=token, startup_timeout_s=startup_timeout_s
        )
        try:
            super().__init__(
                self.agent.address,
                token=token,
                label=f"local ({self.agent.address})",
                **remote_kwargs,
            )
        except BaseException:
            self.agent.close()
            raise

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.agent.close()


def agent_pid_alive(pid: int) -> bool:
    """True while ``pid`` is a live (non-zombie) process; used by tests and diagnostics."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
