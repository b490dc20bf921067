"""Candidates built in parallel (``--host-workers``, ``--ray``): the same candidates, in the
same order, with the same episode numbers as a sequential run of the same seed, and artifacts
the host wrote itself. Real worker processes, a real local agent, a real local Ray."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

pytest.importorskip("hadmc.compress.pruning")

from test_pool import user_files  # noqa: E402, F401 - the shared small model fixture

from host.search import add_search_arguments, run_search  # noqa: E402
from host.store import ResultsStore  # noqa: E402

pytestmark = pytest.mark.slow


def _args(files: tuple[Path, Path], out: Path, *extra: str) -> argparse.Namespace:
    model, data = files
    parser = argparse.ArgumentParser()
    add_search_arguments(parser)
    return parser.parse_args([
        "--model", str(model), "--data", str(data), "--out", str(out), "--strategy", "random",
        "--episodes", "4", "--episodes-per-update", "4", "--finetune-steps", "2",
        "--max-accuracy-drop", "none", "--num-runs", "5", "--min-secs", "0.05",
        "--warmup-min-secs", "0", "--host-threads", "1",
        # The int8 probe measures at setup: its exclusions could differ between two runs.
        "--int8-probe", "off", *extra,
    ])  # fmt: skip


def _rows(out: Path) -> list:
    with ResultsStore(out) as store:
        return store.candidates()


@pytest.fixture(scope="module")
def sequential(user_files, tmp_path_factory: pytest.TempPathFactory) -> list:  # noqa: F811
    out = tmp_path_factory.mktemp("seq") / "run"
    assert run_search(_args(user_files, out), {"quiet": True}) in (0, 3)
    return _rows(out)


def _same_as_sequential(rows: list, sequential: list) -> None:
    assert [r.status for r in rows] == ["measured"] * 4, [r.error for r in rows]
    assert [r.config_key for r in rows] == [r.config_key for r in sequential]
    assert [r.episode for r in rows] == [r.episode for r in sequential]
    for a, b in zip(rows, sequential, strict=True):
        # One torch thread in both runs: the same fine-tune, so the same artifact accuracy.
        assert a.metrics["accuracy"] == pytest.approx(b.metrics["accuracy"], abs=0.01)
        assert a.metrics["size_bytes"] == pytest.approx(b.metrics["size_bytes"], rel=0.01)
        assert Path(a.artifact_path).is_file()  # written by the host, where it belongs


def test_host_workers_build_the_same_candidates(user_files, sequential, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "run"
    assert run_search(_args(user_files, out, "--host-workers", "2"), {"quiet": True}) in (0, 3)
    _same_as_sequential(_rows(out), sequential)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["measured"] == 4 and summary["failed"] == 0


def test_ray_builds_the_same_candidates(user_files, sequential, tmp_path: Path) -> None:  # noqa: F811
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        out = tmp_path / "run"
        code = run_search(_args(user_files, out, "--ray", "auto", "--host-workers", "2"),
                          {"quiet": True})  # fmt: skip
        assert code in (0, 3)
        _same_as_sequential(_rows(out), sequential)
        # The actors were released at the end of the run: nothing of ours holds the CPUs.
        import time

        deadline = time.monotonic() + 20
        while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ray.available_resources().get("CPU", 0) == pytest.approx(2)
    finally:
        ray.shutdown()


def test_ray_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from host.build_workers import RayBuilders
    from host.errors import UsageError

    real = builtins.__import__

    def no_ray(name, *a, **k):
        if name == "ray":
            raise ImportError("no ray")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(UsageError, match=r'pip install "hadmc\[scale\]"'):
        RayBuilders(None, "auto", 1)  # type: ignore[arg-type]


_CHILD = """
import sys, argparse
from host.search import add_search_arguments, run_search
p = argparse.ArgumentParser(); add_search_arguments(p)
sys.exit(run_search(p.parse_args(sys.argv[1:]), {"quiet": True}))
"""


# Per builder kind: how to recognise a build worker among the host's descendants (spawned pool
# processes, or Ray's actor processes titled "ray::_RayBuilder..."), and how long every
# descendant may take to go. Ray's own node agents (RuntimeEnvAgent, DashboardAgent) notice
# their raylet is gone on their own health check, measured here at 35-60 s; the build actors
# go at once.
_KINDS = {"--host-workers": ("spawn_main", 30), "--ray": ("ray::_RayBuilder", 90)}


@pytest.mark.parametrize(
    "builders", [("--host-workers", "2"), ("--ray", "local", "--host-workers", "2")],
    ids=["processes", "ray"],
)  # fmt: skip
def test_a_host_killed_with_sigkill_leaves_no_build_worker(
    user_files, tmp_path: Path, builders: tuple[str, ...]  # noqa: F811
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    if builders[0] == "--ray":
        pytest.importorskip("ray")
    mark, wait_s = _KINDS[builders[0]]
    out = tmp_path / "run"
    cmd_args = [
        "--model", str(user_files[0]), "--data", str(user_files[1]), "--out", str(out),
        "--strategy", "random", "--episodes", "8", "--episodes-per-update", "4",
        "--finetune-steps", "200", "--max-accuracy-drop", "none", *builders,
    ]  # fmt: skip
    repo = Path(__file__).resolve().parent.parent
    child = subprocess.Popen([sys.executable, "-c", _CHILD, *cmd_args], cwd=repo,
                             env={**os.environ, "PYTHONPATH": str(repo)},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    proc = psutil.Process(child.pid)
    try:
        deadline = time.monotonic() + 420
        workers: list[psutil.Process] = []
        while time.monotonic() < deadline and child.poll() is None:
            kids = proc.children(recursive=True)
            workers = [k for k in kids if mark in " ".join(_cmdline(k))]
            if len(workers) >= 2:
                break
            time.sleep(0.2)
        assert len(workers) >= 2, "the build workers never started"
        everyone = proc.children(recursive=True)  # build workers and the local agent
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    # A zombie has exited (this sandbox's init may not reap it promptly).
    gone, alive = psutil.wait_procs(everyone, timeout=wait_s)
    alive = [p for p in alive if _status(p) != psutil.STATUS_ZOMBIE]
    assert not alive, [_cmdline(p)[:3] for p in alive]


def _status(proc) -> str:
    import psutil

    try:
        return proc.status()
    except psutil.NoSuchProcess:
        return psutil.STATUS_DEAD


def _cmdline(proc) -> list[str]:
    """A process's command line, or [] for one that ended meanwhile."""
    import psutil

    try:
        return proc.cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return []
