"""End-to-end search: local agent, simulated device, kill + resume, agent killed, unreachable.

Kept small (a briefly trained model on 16x16 digits, 2 fine-tune steps, tiny measurement
budgets, a few episodes) so the whole file runs in about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("hadmc.compress.pruning")
pytest.importorskip("hadmc.models")

import torch  # noqa: E402

from host.search import add_search_arguments, run_search  # noqa: E402
from host.store import ResultsStore  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def user_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """A whole-model .pt and an .npz, as a user would bring them. The private cache is set
    for this module only: a later module (the session's demo fixture and the cache test of
    test_models) must see the cache directory it started with."""
    from hadmc.data import load_digits_splits
    from hadmc.models import build_model, train_classifier

    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("user")
    # A private cache (sensitivity numbers are cached by model hash): nothing leaks in or out.
    env = pytest.MonkeyPatch()
    env.setenv("HADMC_CACHE_DIR", str(d / "cache"))
    data = load_digits_splits(image_size=16, seed=0)
    model = build_model("mobilenetv2_small", num_classes=data.num_classes, in_channels=1)
    train_classifier(model, data, epochs=3, lr=3e-3, batch_size=64, seed=0)
    torch.save(model, d / "model.pt")
    np.savez(
        d / "data.npz",
        x_train=data.x_train,
        y_train=data.y_train,
        x_val=data.x_val,
        y_val=data.y_val,
        x_test=data.x_test,
        y_test=data.y_test,
    )
    yield d / "model.pt", d / "data.npz"
    env.undo()


def _args(user_files: tuple[Path, Path], out: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_search_arguments(parser)
    model, data = user_files
    return parser.parse_args(
        [
            "--model", str(model), "--data", str(data), "--out", str(out),
            "--episodes", "3", "--episodes-per-update", "2", "--finetune-steps", "2",
            "--max-accuracy-drop", "none",
            "--num-runs", "5", "--min-secs", "0.05", "--warmup-min-secs", "0",
            # The int8 probe's 4-5 setup measurements have their own test (test_int8_probe).
            "--int8-probe", "off",
            *extra,
        ]
    )  # fmt: skip


def _check_outputs(out: Path, n_episodes: int) -> list:
    with ResultsStore(out) as store:
        rows = store.candidates()
        info = store.run_info()
    assert 1 <= len(rows) <= n_episodes
    assert len({r.config_key for r in rows}) == len(rows)
    measured = [r for r in rows if r.status == "measured"]
    assert measured, [r.error for r in rows]
    for r in measured:
        m = r.metrics
        assert 0.0 <= m["accuracy"] <= 1.0 and m["latency_ms_p50"] > 0 and m["size_bytes"] > 0
        assert Path(r.artifact_path).is_file()
        assert len(r.actions["pruning"]) == len(r.actions["quantization"])
    assert info["baseline"]["latency_ms_p50"] > 0
    summary = json.loads((out / "summary.json").read_text())
    # The front holds working models only: more than half the baseline's accuracy (a collapsed
    # one is kept in the database, never offered as a trade-off).
    floor = 0.5 * info["baseline"]["accuracy"]
    working = {r.id for r in measured if r.metrics["accuracy"] > floor}
    front = {f["id"] for f in summary["front"]}
    assert front <= working and bool(front) == bool(working)
    # summary.json paths are relative to the run directory (it can be moved).
    assert all((out / f["pareto_path"]).is_file() for f in summary["front"])
    assert all((out / f["artifact"]).is_file() for f in summary["front"])
    for f in summary["front"]:  # held-out truth beside the validation accuracy
        lo, hi = f["test_accuracy_ci95"]
        assert 0.0 <= lo <= f["test_accuracy"] <= hi <= 1.0 and f["test_n"] > 0
    # No limits were set, so a model is chosen exactly when the front has one.
    assert (summary["best"] is None) == (not front)
    assert (out / "best.onnx").is_file() == bool(front)
    assert (out / "report.json").is_file() and (out / "checkpoint" / "progress.json").is_file()
    return rows


def _check_baseline_ms(out: Path) -> float:
    with ResultsStore(out) as store:
        return float(store.run_info()["baseline"]["latency_ms_p50"])


def test_search_local_agent_end_to_end(
    user_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert run_search(_args(user_files, out, "--json"), {"quiet": True}) == 0
    rows = _check_outputs(out, 3)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # ppo+surrogate measures its design set first: uniform int8 at keep 1.0 keeps the
    # baseline's accuracy, so the front and best.onnx path is exercised.
    assert summary["strategy"] == "ppo+surrogate"
    assert [r.actions["pruning"][0] for r in rows] == [1.0, 0.7, 0.5]
    assert summary["front"] and summary["best"]
    assert summary["best"]["test_accuracy"] is not None
    # Every candidate carries the surrogate's prediction, made before it was measured.
    assert all(r.metrics["predicted"]["predicted"] is True for r in rows)
    assert summary["measured"] == sum(r.status == "measured" for r in rows)
    assert rows[0].metrics["source"] == "device"
    # Candidates are timed paired with the baseline (the default): the objective is the
    # ratio from that window on the baseline's time base, and the report says so.
    base_ms = _check_baseline_ms(out)
    for r in (r for r in rows if r.status == "measured"):
        m = r.metrics
        assert m["latency_ms_p50_paired"] == pytest.approx(m["latency_ratio"] * base_ms)
        assert r.objectives["latency_ms"] == pytest.approx(m["latency_ms_p50_paired"])
        lo, hi = m["latency_ratio_ci95"]
        assert lo <= m["latency_ratio"] <= hi
    report = json.loads((out / "report.json").read_text())
    assert {f["latency_timing"] for f in report["pareto_front"]} == {"paired"}
    # A real int8 choice shows up as an int8/mixed artifact that is smaller than fp32.
    for r in rows:
        if r.status == "measured" and all(p == "int8" for p in r.actions["quantization"]):
            assert r.metrics["precision"] == "int8"


def test_search_simulated_device(
    user_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    args = _args(user_files, out, "--device", "sim:raspberry-pi-4", "--strategy", "random")
    code = run_search(args, {})  # not quiet: what a user sees
    rows = _check_outputs(out, 3)
    assert all(r.metrics["source"] == "simulated" for r in rows if r.status == "measured")
    seen = capsys.readouterr()
    # Setup (model, baseline, sensitivity) says what it is doing before the episode bar.
    assert "setup: model and data" in seen.err and "setup: fp32 baseline" in seen.err
    summary = json.loads((out / "summary.json").read_text())
    assert code == (0 if summary["best"] else 3)  # 3: finished without a working model
    assert "[simulated" in seen.err  # the progress lines say what the numbers are
    if summary["front"]:
        # No limits were given (--max-accuracy-drop none): the rule is named as it is.
        assert "Pareto front" in seen.out and "best by reward" in seen.out
    else:  # every proposal collapsed: say so, rather than blame the (absent) limits
        assert "no working model" in seen.err


@pytest.mark.parametrize("strategy", ["grid", "optuna"])
def test_baseline_strategies_share_the_pipeline_and_budget(
    user_files: tuple[Path, Path], tmp_path: Path, strategy: str
) -> None:
    out = tmp_path / "run"
    args = _args(user_files, out, "--device", "sim:raspberry-pi-4", "--strategy", strategy)
    code = run_search(args, {"quiet": True})
    rows = _check_outputs(out, 3)
    assert len(rows) == 3  # the budget: three real candidates, whatever proposes them
    summary = json.loads((out / "summary.json").read_text())
    assert code == (0 if summary["best"] else 3)
    assert summary["strategy"] == strategy and summary["simulated"] is True
    if strategy == "grid":  # uniform configurations, never the baseline itself
        for r in rows:
            keep, prec = set(r.actions["pruning"]), set(r.actions["quantization"])
            assert len(keep) == 1 and len(prec) == 1 and (keep, prec) != ({1.0}, {"fp32"})


class _Killed(BaseException):
    """Stands for SIGKILL: nothing after the raise point runs (no checkpoint, no cleanup)."""


def test_killed_run_resumes_without_measuring_twice(
    user_files: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    first: list[int] = []

    def kill_after_3(rec) -> None:
        first.append(rec.id)
        if len(first) == 3:  # in the second round (2 per round): one checkpoint exists
            raise _Killed

    # The plain PPO loop (no surrogate): its proposals come from the policy and its updates.
    extra = ("--episodes", "4", "--surrogate", "off")
    with pytest.raises(_Killed):
        run_search(_args(user_files, out, *extra), {"quiet": True, "on_measured": kill_after_3})
    with ResultsStore(out) as store:
        kept = {r.config_key for r in store.candidates()}
    assert len(kept) >= 3
    ckpt = json.loads((out / "checkpoint" / "progress.json").read_text())
    assert ckpt["measurements_total"] == 2 and ckpt["strategy"] == "ppo"

    second: list[int] = []
    resume = argparse.Namespace(
        **{**vars(_args(user_files, out, *extra)), "resume": str(out), "out": None}
    )
    # 0 or 3: the resumed run must finish; whether 4 candidates at 2 fine-tune steps keep
    # half the baseline's accuracy depends on the fixture's training, not on resuming.
    code = run_search(resume, {"quiet": True, "on_measured": lambda r: second.append(r.id)})
    assert code in (0, 3)
    with ResultsStore(out) as store:
        rows = store.candidates()
    keys = [r.config_key for r in rows]
    assert kept <= set(keys)  # every candidate row of the killed run kept
    assert len(set(keys)) == len(keys)
    # No candidate measured twice: each device measurement made exactly one stored row.
    assert len(first) + len(second) == sum(r.status == "measured" for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cache_hits"] >= 3  # the killed run's candidates were replayed, not re-measured
    assert summary["measured"] == 4


def test_agent_killed_during_search_is_recorded_and_run_finishes(
    user_files: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    devices: list = []
    killed: list[int] = []

    def kill_agent(rec) -> None:
        if not killed:
            pid = devices[0].agent.pid
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    hooks = {"quiet": True, "on_device": devices.append, "on_measured": kill_agent}
    assert run_search(_args(user_files, out, "--strategy", "random"), hooks) == 0
    with ResultsStore(out) as store:
        rows = store.candidates()
    failed = [r for r in rows if r.status == "failed"]
    assert len(failed) == 1 and failed[0].reward is None
    assert failed[0].error.startswith("device:")
    # The search went on with a restarted local agent: a later candidate was measured.
    assert any(r.status == "measured" and r.id > failed[0].id for r in rows)


def test_unreachable_device_is_one_line_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A device failure (host.errors: 1), and no run directory left behind."""
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    parser = argparse.ArgumentParser()
    add_search_arguments(parser)
    args = parser.parse_args(["--device", f"127.0.0.1:{port}", "--out", str(tmp_path / "r")])
    assert run_search(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unreachable" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()
