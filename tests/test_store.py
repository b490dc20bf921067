"""ResultsStore: durable rows, failed candidates, duplicate keys, schema version, artifact
paths relative to the run directory (moved directories, other working directories, stores
written before that rule), metric updates."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from host.store import DB_NAME, SCHEMA_VERSION, DuplicateKeyError, ResultsStore, StoreError

ACTIONS = {
    "pruning": [1.0, 0.5],
    "quantization": ["int8", "fp32"],
    "fusion": ["conv_bn", "none"],
    "distillation": {"temperature": 4.0, "alpha": 0.7},
    "update_scope": "all",
}
METRICS = {
    "accuracy": 0.91,
    "latency_ms_p50": 1.25,
    "peak_memory_mib": 31.5,
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


def _stored_paths(run_dir: Path) -> list[str | None]:
    conn = sqlite3.connect(run_dir / DB_NAME)
    rows = [r[0] for r in conn.execute("SELECT artifact_path FROM candidates ORDER BY id")]
    conn.close()
    return rows


def _add(store: ResultsStore, key: str, artifact: str | Path | None) -> None:
    store.add_candidate(
        episode=0, config_key=key, actions=ACTIONS, metrics=METRICS, reward=0.5,
        artifact_path=artifact,
    )  # fmt: skip


def test_artifact_paths_are_run_dir_relative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    run = Path("outputs/run-1")  # cwd-relative, as `hadmc-host search` makes it
    (run / "candidates").mkdir(parents=True)
    for name in ("a.onnx", "b.onnx"):
        (run / "candidates" / name).write_bytes(b"model")
    outside = tmp_path / "elsewhere.onnx"
    outside.write_bytes(b"model")
    with ResultsStore(run) as store:
        _add(store, "cwd-relative", run / "candidates" / "a.onnx")
        _add(store, "absolute", (run / "candidates" / "b.onnx").resolve())
        _add(store, "outside", outside)
        _add(store, "none", None)
        rec = store.get_by_key("cwd-relative")
        assert rec is not None and rec.artifact_relpath == "candidates/a.onnx"
        assert rec.artifact_path == str(tmp_path / "outputs/run-1/candidates/a.onnx")
        assert store.artifact_file(rec) == store.artifact_file(rec.id) == Path(rec.artifact_path)
        assert store.artifact_file(store.get_by_key("none")) is None
        with pytest.raises(KeyError):
            store.artifact_file(999)
    assert _stored_paths(run) == ["candidates/a.onnx", "candidates/b.onnx", str(outside), None]

    moved = tmp_path / "archive" / "kept-run"
    moved.parent.mkdir()
    shutil.move(str(run), str(moved))
    monkeypatch.chdir(moved.parent)  # and open it from somewhere else, relatively
    with ResultsStore(Path("kept-run")) as store:
        recs = {r.config_key: r for r in store.candidates()}
        monkeypatch.chdir("/")  # resolved at open: a later chdir changes nothing
        assert recs["cwd-relative"].artifact_path == str(moved / "candidates" / "a.onnx")
        assert recs["absolute"].artifact_path == str(moved / "candidates" / "b.onnx")
        assert recs["outside"].artifact_path == str(outside)
        assert recs["outside"].artifact_relpath == str(outside)
        assert all(Path(r.artifact_path).is_file() for r in recs.values() if r.artifact_path)
        assert recs["none"].artifact_path is None and recs["none"].artifact_relpath is None


def _as_legacy_store(run_dir: Path, paths: dict[str, str]) -> None:
    """Rewrite a store as an older hadmc left it: paths as given at search time (relative to
    where the search started) and no marker of where run-dir relative paths begin."""
    conn = sqlite3.connect(run_dir / DB_NAME)
    for key, path in paths.items():
        conn.execute("UPDATE candidates SET artifact_path = ? WHERE config_key = ?", (path, key))
    conn.execute("DELETE FROM meta WHERE key = 'relative_artifacts_from_id'")
    conn.commit()
    conn.close()


def test_legacy_cwd_relative_paths_still_resolve(tmp_path: Path) -> None:
    start = tmp_path / "start"  # the directory the old search ran in
    run = start / "outputs" / "run-1"
    (run / "candidates").mkdir(parents=True)
    (run / "candidates" / "a.onnx").write_bytes(b"a")
    (start / "models").mkdir()
    (start / "models" / "user.onnx").write_bytes(b"u")  # the user's own file, outside the run
    with ResultsStore(run) as store:
        for key in ("in-run", "user-file", "deleted"):
            _add(store, key, run / "candidates" / "a.onnx")
    _as_legacy_store(run, {"in-run": "outputs/run-1/candidates/a.onnx",
                           "user-file": "models/user.onnx",
                           "deleted": "outputs/run-1/candidates/gone.onnx"})  # fmt: skip

    with ResultsStore(run) as store:  # in place: the run dir's name, then its parent chain
        recs = {r.config_key: r for r in store.candidates()}
        assert recs["in-run"].artifact_path == str(run / "candidates" / "a.onnx")
        assert recs["in-run"].artifact_relpath == "candidates/a.onnx"
        assert recs["user-file"].artifact_path == str(start / "models" / "user.onnx")
        # A file that is gone resolves to where the current rule puts it (callers check).
        assert recs["deleted"].artifact_path == str(run / "outputs/run-1/candidates/gone.onnx")
        # Resuming a legacy run: new rows use the new rule, old rows keep their fallback.
        _add(store, "new", run / "candidates" / "a.onnx")
    assert _stored_paths(run)[-1] == "candidates/a.onnx"

    renamed = tmp_path / "shared" / "renamed"  # moved and renamed: ever shorter tails
    renamed.parent.mkdir()
    shutil.move(str(run), str(renamed))
    with ResultsStore(renamed) as store:
        recs = {r.config_key: r for r in store.candidates()}
        assert recs["in-run"].artifact_path == str(renamed / "candidates" / "a.onnx")
        assert recs["new"].artifact_path == str(renamed / "candidates" / "a.onnx")


def test_new_rows_never_use_the_legacy_fallback(tmp_path: Path) -> None:
    # A current-form path whose file is gone must not latch onto a same-named file above
    # the run directory (the fallback exists for old stores only).
    (tmp_path / "candidates").mkdir()
    (tmp_path / "candidates" / "a.onnx").write_bytes(b"unrelated")
    run = tmp_path / "run"
    with ResultsStore(run) as store:
        _add(store, "k", run / "candidates" / "a.onnx")
        assert store.get_by_key("k").artifact_path == str(run / "candidates" / "a.onnx")


def test_update_metrics_merges_and_commits(tmp_path: Path) -> None:
    with ResultsStore(tmp_path) as store:
        _add(store, "k", None)
        store.add_candidate(episode=1, config_key="bad", actions=ACTIONS, status="failed",
                            error="build: boom")  # fmt: skip
        rec = store.update_metrics(1, {"test_accuracy": 0.9, "test_accuracy_ci95": [0.88, 0.92]})
        assert rec.metrics == {**METRICS, "test_accuracy": 0.9, "test_accuracy_ci95": [0.88, 0.92]}
        with pytest.raises(KeyError):
            store.update_metrics(99, {"test_accuracy": 0.9})
        with pytest.raises(ValueError, match="failed"):
            store.update_metrics(2, {"test_accuracy": 0.9})
        with pytest.raises(ValueError):  # NaN is not JSON: rejected like at insertion
            store.update_metrics(1, {"test_accuracy": float("nan")})
    with ResultsStore(tmp_path) as again:
        assert again.get(1).metrics["test_accuracy"] == 0.9
