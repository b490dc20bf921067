"""LocalAgent / LocalDevice start the real ``device_agent`` and never leave it behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from hadmc.device.hal import DeviceError
from host.devices import open_device
from host.local_agent import LocalAgent, LocalDevice, agent_pid_alive


def _gone(pids: list[int], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(agent_pid_alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def test_start_stop_leaves_no_process_and_no_cache_dir() -> None:
    agent = LocalAgent()
    pid, cache_dir = agent.pid, agent.cache_dir
    assert agent_pid_alive(pid)
    host, _, port = agent.address.rpartition(":")
    assert host == "127.0.0.1" and int(port) > 0
    family = [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
    agent.close()
    agent.close()  # idempotent
    assert _gone(family, timeout_s=1.0)
    assert not cache_dir.exists()


def test_local_device_labels_itself_and_closes_its_agent(monkeypatch) -> None:
    # A token for some other agent in the environment must not lock us out of our own.
    monkeypatch.setenv("HADMC_DEVICE_TOKEN", "meant-for-another-agent")
    device = open_device(None)
    assert isinstance(device, LocalDevice)
    assert device.name == f"local ({device.address})"
    assert device.health() is True
    assert device.info()["arch"]
    pid = device.agent.pid
    device.close()
    assert _gone([pid], timeout_s=1.0)


def test_agent_that_cannot_start_reports_its_stderr_on_one_line() -> None:
    with pytest.raises(DeviceError) as err:
        LocalAgent(extra_args=("--no-such-flag",))
    assert err.value.code == "unreachable"
    assert "--no-such-flag" in str(err.value) and "\n" not in str(err.value)


def test_startup_timeout_kills_the_agent() -> None:
    before = {p.pid for p in psutil.Process().children()}
    with pytest.raises(DeviceError, match="did not print HADMC_DEVICE_LISTENING within"):
        LocalAgent(startup_timeout_s=0.01)
    started = [p.pid for p in psutil.Process().children() if p.pid not in before]
    assert _gone(started, timeout_s=1.0)


# CI (and any background job of a non-interactive shell) starts us with SIGINT ignored, and
# children inherit that: Python then never raises KeyboardInterrupt and Ctrl-C is moot. The child
# first takes what an interactive terminal gives it, which is the case this test is about. (Done
# in the child rather than with Popen(preexec_fn=...), which is unsafe after threads started.)
SCRIPT = textwrap.dedent(
    """
    import signal
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    import time
    from host.local_agent import LocalDevice
    device = LocalDevice()
    print("AGENT_PID", device.agent.pid, flush=True)
    time.sleep(120)
    """
)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_parent_takes_the_agent_down(signum: int) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", SCRIPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = parent.stdout.readline()
        assert line.startswith("AGENT_PID"), parent.stderr.read()
        agent_pid = int(line.split()[1])
        assert agent_pid_alive(agent_pid)
        parent.send_signal(signum)  # the parent only, not its process group
        parent.wait(timeout=20)
        assert parent.returncode != 0
        assert _gone([agent_pid], timeout_s=2.0)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_parent_killed_with_sigkill_does_not_orphan_the_agent() -> None:
    # SIGKILL runs no handler and no atexit hook: the agent's --exit-with-parent watch must act.
    parent = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = parent.stdout.readline()
        assert line.startswith("AGENT_PID"), parent.stderr.read()
        agent_pid = int(line.split()[1])
        assert agent_pid_alive(agent_pid)
        parent.kill()
        parent.wait(timeout=20)
        assert _gone([agent_pid], timeout_s=10.0)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
