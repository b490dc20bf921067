"""A search over a pool of real loopback agents (issue: scale): candidates spread over the
boards, each board measures the baseline, a board killed mid-search loses nothing, a mixed
pool is refused unless allowed (then the worst kind's latency counts), and a parallel run
killed with SIGKILL resumes without measuring anything twice."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("hadmc.compress.pruning")

import torch  # noqa: E402
from agent_helpers import REPO, start_agent  # noqa: E402

from host.search import EXIT_USAGE, add_search_arguments, run_search  # noqa: E402
from host.store import ResultsStore  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def user_files(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - a generator
    """A small whole-model .pt and .npz (16x16 digits, briefly trained); a private cache for
    the module only (as in test_search_e2e)."""
    from hadmc.data import load_digits_splits
    from hadmc.models import build_model, train_classifier

    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("pool-user")
    env = pytest.MonkeyPatch()
    env.setenv("HADMC_CACHE_DIR", str(d / "cache"))
    data = load_digits_splits(image_size=16, seed=0)
    model = build_model("mobilenetv2_small", num_classes=data.num_classes, in_channels=1)
    train_classifier(model, data, epochs=1, lr=3e-3, batch_size=64, seed=0)
    torch.save(model, d / "model.pt")
    np.savez(d / "data.npz", x_train=data.x_train, y_train=data.y_train, x_val=data.x_val,
             y_val=data.y_val, x_test=data.x_test, y_test=data.y_test)  # fmt: skip
    yield d / "model.pt", d / "data.npz"
    env.undo()


@pytest.fixture
def agents(tmp_path: Path, request: pytest.FixtureRequest):
    """Two loopback agents; a test may pass extra args per agent via indirect params."""
    extra = getattr(request, "param", ([], []))
    started = [start_agent(tmp_path / f"cache{i}", args) for i, args in enumerate(extra)]
    yield started
    for a in started:
        if a.proc.poll() is None:
            a.stop()


def _argv(user_files: tuple[Path, Path], out: Path, *extra: str) -> list[str]:
    model, data = user_files
    return [
        "--model", str(model), "--data", str(data), "--out", str(out),
        "--strategy", "random", "--episodes", "4", "--episodes-per-update", "4",
        "--finetune-steps", "0", "--max-accuracy-drop", "none",
        "--num-runs", "5", "--min-secs", "0.05", "--warmup-min-secs", "0",
        "--int8-probe", "off", *extra,  # the probe has its own test (test_int8_probe)
    ]  # fmt: skip


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_search_arguments(parser)
    return parser.parse_args(list(argv))


def _rows(out: Path) -> list:
    with ResultsStore(out) as store:
        return store.candidates()


def test_a_pool_spreads_candidates_and_every_board_measures_the_baseline(
    user_files, agents, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    a, b = (x.address for x in agents)
    code = run_search(_args(*_argv(user_files, out, "--device", a, "--device", b)),
                      {"quiet": True})  # fmt: skip
    assert code in (0, 3)
    rows = _rows(out)
    measured = [r for r in rows if r.status == "measured"]
    assert len(measured) == 4, [r.error for r in rows]
    boards = [r.provenance["board"] for r in measured]
    assert set(boards) == {a, b}  # both boards measured candidates
    with ResultsStore(out) as store:
        pool = store.run_info()["device"]["pool"]
    assert [x["address"] for x in pool["boards"]] == [a, b]
    assert all(x["baseline_latency_ms_p50"] > 0 for x in pool["boards"])
    assert sum(x["measured"] for x in pool["boards"]) == 4 and pool["lost"] == []
    # Paired on the candidate's own board: ratio x the run's baseline is the latency used.
    base = json.loads((out / "summary.json").read_text())["baseline"]["latency_ms"]
    for r in measured:
        assert r.metrics["latency_ms_p50_paired"] == pytest.approx(r.metrics["latency_ratio"] * base)
    html = (out / "report.html").read_text()
    assert "Boards (2)" in html and a in html and b in html


def test_a_board_killed_mid_search_loses_nothing(user_files, agents, tmp_path: Path) -> None:
    out = tmp_path / "run"
    a, b = agents
    seen: list[int] = []

    def kill_b(rec) -> None:
        seen.append(rec.id)
        if len(seen) == 1:
            os.kill(b.proc.pid, signal.SIGKILL)
            b.proc.wait()

    args = _args(*_argv(user_files, out, "--device", f"{a.address},{b.address}",
                        "--episodes", "6", "--episodes-per-update", "3"))  # fmt: skip
    assert run_search(args, {"quiet": True, "on_measured": kill_b}) in (0, 3)
    rows = _rows(out)
    assert [r.status for r in rows] == ["measured"] * 6  # none failed: requeued, not lost
    assert len({r.config_key for r in rows}) == 6 and len(seen) == 6  # each measured once
    summary = json.loads((out / "summary.json").read_text())
    assert [x["address"] for x in summary["pool"]["lost"]] == [b.address]
    assert all(r.provenance["board"] == a.address for r in rows[2:])
    assert "lost" in (out / "report.html").read_text()


@pytest.mark.parametrize("agents", [([], ["--kind", "other-board"])], indirect=True)
def test_a_mixed_pool_is_refused_then_measured_on_every_kind(
    user_files, agents, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = (x.address for x in agents)
    out = tmp_path / "refused"
    code = run_search(_args(*_argv(user_files, out, "--device", a, "--device", b)),
                      {"quiet": True})  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_USAGE and len(err) == 1
    assert "--allow-mixed-pool" in err[0] and "'other-board'" in err[0]
    assert not out.exists()  # refused before anything was written

    out = tmp_path / "mixed"
    argv = _argv(user_files, out, "--device", a, "--device", b, "--allow-mixed-pool",
                 "--episodes", "2", "--episodes-per-update", "2")  # fmt: skip
    assert run_search(_args(*argv), {"quiet": True}) in (0, 3)
    measured = [r for r in _rows(out) if r.status == "measured"]
    assert len(measured) == 2
    for r in measured:
        per = r.provenance["per_kind"]
        assert len(per) == 2 and "other-board" in per
        # The worst kind's ratio is the candidate's (--fleet-objective worst, the default).
        assert r.metrics["latency_ratio"] == pytest.approx(max(k["latency_ratio"] for k in per.values()))
    assert "The front on every kind" in (out / "report.html").read_text()


_CHILD = """
import sys
from host.search import add_search_arguments, run_search
import argparse
p = argparse.ArgumentParser(); add_search_arguments(p)
sys.exit(run_search(p.parse_args(sys.argv[1:]), {"quiet": True}))
"""


def test_a_parallel_run_killed_with_sigkill_resumes_without_measuring_twice(
    user_files, agents, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    devices = ["--device", agents[0].address, "--device", agents[1].address]
    argv = _argv(user_files, out, *devices, "--episodes", "8", "--episodes-per-update", "4")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, *argv], env=env, cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and child.poll() is None:
        db = out / "results.sqlite"
        if db.is_file():
            con = sqlite3.connect(db)
            try:
                n = con.execute("SELECT COUNT(*) FROM candidates").fetchone()[0]
            except sqlite3.OperationalError:
                n = 0
            finally:
                con.close()
            if n >= 5:  # into the second round, measurements in flight
                break
        time.sleep(0.05)
    assert child.poll() is None, "the run ended before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    kept = {r.config_key for r in _rows(out) if r.status == "measured"}
    assert 5 <= len(kept) < 8
    resumed: list[int] = []
    resume = _args(*_argv(user_files, tmp_path / "unused", *devices, "--episodes", "8",
                          "--episodes-per-update", "4"))  # fmt: skip
    resume.resume, resume.out = str(out), None
    assert run_search(resume, {"quiet": True, "on_measured": lambda r: resumed.append(r.id)}) in (0, 3)
    rows = _rows(out)
    keys = [r.config_key for r in rows]
    assert len(keys) == len(set(keys)) == 8  # nothing measured twice, nothing lost
    assert kept <= set(keys) and len(resumed) == 8 - len(kept)
    for a in agents:  # the agents serve on: a killed host orphans nothing of theirs
        assert a.proc.poll() is None


def test_when_the_last_board_is_gone_the_run_stops_and_resumes_on_a_new_one(
    user_files, agents, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    seen: list[int] = []

    def kill_all(rec) -> None:
        seen.append(rec.id)
        if len(seen) == 1:
            for a in agents:
                os.kill(a.proc.pid, signal.SIGKILL)
                a.proc.wait()

    devices = f"{agents[0].address},{agents[1].address}"
    argv = _argv(user_files, out, "--device", devices, "--episodes", "4", "--episodes-per-update", "2")
    code = run_search(_args(*argv), {"quiet": True, "on_measured": kill_all})
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("hadmc-host")]
    assert code == 1 and len(err) == 1  # one line, exit 1 (a device failure)
    assert "has stopped answering" in err[0] and f"--resume {out}" in err[0]
    kept = [r for r in _rows(out) if r.status == "measured"]
    assert 1 <= len(kept) < 4 and all(r.status == "measured" for r in _rows(out))  # none failed

    fresh = start_agent(tmp_path / "fresh")
    try:
        resume = _args(*_argv(user_files, tmp_path / "unused", "--device", fresh.address,
                              "--episodes-per-update", "2"))  # fmt: skip
        resume.resume, resume.out = str(out), None
        again: list[int] = []
        assert run_search(resume, {"quiet": True, "on_measured": lambda r: again.append(r.id)}) in (0, 3)
    finally:
        fresh.stop()
    rows = _rows(out)
    assert [r.status for r in rows] == ["measured"] * 4
    assert len({r.config_key for r in rows}) == 4 and len(again) == 4 - len(kept)
