"""ResultsStore: durable rows, failed candidates, duplicate keys, schema version."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from host.store import DB_NAME, SCHEMA_VERSION, DuplicateKeyError, ResultsStore, StoreError

ACTIONS = {
    "pruning": [1.0, 0.5],
    "quantization": ["int8", "fp32"],
    "fusion": ["conv_bn", "none"],
    "distillation": {"temperature": 4.0, "alpha": 0.7},
    "update": "all",
}
METRICS = {
    "accuracy": 0.91,
    "latency_ms_p50": 1.25,
    "peak_memory_mb": 31.5,
    "energy_mj": None,
    "energy_status": "unavailable",
    "size_bytes": 12345,
    "update_bytes": 2048,
}


def test_rows_survive_reopening(tmp_path: Path) -> None:
    with ResultsStore(tmp_path / "run") as store:
        store.set_run({"episodes": 3, "max_latency_ms": 2.0, "out": tmp_path}, baseline=METRICS)
        rec = store.add_candidate(
            episode=0,
            config_key="k0",
            actions=ACTIONS,
            metrics=METRICS,
            objectives={"accuracy": 0.91},
            provenance={"runtime": "onnxruntime 1.32"},
            reward=0.95,
            artifact_path=tmp_path / "a.onnx",
        )
        assert rec.id == 1 and rec.status == "measured"
        store.set_run(device={"name": "sim:raspberry-pi-4"})
    assert (tmp_path / "run" / DB_NAME).is_file()
    with ResultsStore(tmp_path / "run") as again:
        assert again.count() == 1 and again.schema_version == SCHEMA_VERSION
        got = again.get_by_key("k0")
        assert got is not None
        assert got.actions == ACTIONS and got.metrics == METRICS
        assert got.reward == pytest.approx(0.95)
        assert got.artifact_path == str(tmp_path / "a.onnx")
        info = again.run_info()
        assert info["config"]["max_latency_ms"] == 2.0  # kept when only device was updated
        assert info["config"]["out"] == str(tmp_path)
        assert info["baseline"] == METRICS and info["device"]["name"] == "sim:raspberry-pi-4"
        assert again.last_episode() == 0


def test_committed_immediately_visible_to_other_connection(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    store.add_candidate(episode=2, config_key="k", actions=ACTIONS, metrics=METRICS, reward=1.0)
    # A second, independent connection (e.g. the report while searching) sees it at once.
    other = sqlite3.connect(tmp_path / DB_NAME)
    assert other.execute("SELECT COUNT(*) FROM candidates").fetchone()[0] == 1
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other.close()
    store.close()


def test_failed_candidate_keeps_error_and_no_reward(tmp_path: Path) -> None:
    with ResultsStore(tmp_path) as store:
        store.add_candidate(
            episode=1,
            config_key="bad",
            actions=ACTIONS,
            status="failed",
            error="crashed: worker exited with signal 11",
        )
        store.add_candidate(
            episode=1, config_key="good", actions=ACTIONS, metrics=METRICS, reward=0.5
        )
        failed = store.get_by_key("bad")
        assert failed is not None and failed.status == "failed"
        assert failed.reward is None and "signal 11" in (failed.error or "")
        assert store.count("failed") == 1 and store.count("measured") == 1
        assert [c.config_key for c in store.candidates("measured")] == ["good"]
        with pytest.raises(ValueError, match="not 0"):
            store.add_candidate(
                episode=1,
                config_key="x",
                actions=ACTIONS,
                status="failed",
                error="timeout",
                reward=0.0,
            )
        with pytest.raises(ValueError, match="error"):
            store.add_candidate(episode=1, config_key="y", actions=ACTIONS, status="failed")
        with pytest.raises(ValueError, match="status"):
            store.add_candidate(episode=1, config_key="z", actions=ACTIONS, status="ok")
        with pytest.raises(ValueError, match="reward"):
            store.add_candidate(episode=1, config_key="w", actions=ACTIONS, metrics=METRICS)
        assert store.count() == 2


def test_duplicate_key(tmp_path: Path) -> None:
    with ResultsStore(tmp_path) as store:
        store.add_candidate(
            episode=0, config_key="same", actions=ACTIONS, metrics=METRICS, reward=0.1
        )
        with pytest.raises(DuplicateKeyError, match="same"):
            store.add_candidate(
                episode=5, config_key="same", actions=ACTIONS, metrics=METRICS, reward=0.9
            )
        assert store.count() == 1 and store.get_by_key("same").reward == pytest.approx(0.1)
        assert store.get_by_key("other") is None


def test_nan_metrics_rejected(tmp_path: Path) -> None:
    with ResultsStore(tmp_path) as store, pytest.raises(ValueError):
        store.add_candidate(
            episode=0,
            config_key="n",
            actions=ACTIONS,
            metrics={**METRICS, "accuracy": float("nan")},
            reward=0.1,
        )


def test_schema_version_mismatch(tmp_path: Path) -> None:
    ResultsStore(tmp_path).close()
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="schema version 99"):
        ResultsStore(tmp_path)
