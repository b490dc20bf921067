"""Results store: one SQLite file (``results.sqlite``) per run directory.

Every candidate is committed the moment it is measured (or fails), so a crash loses at most
the candidate in flight and ``--resume`` can skip everything already stored: the
``config_key`` (actions + model hash) is UNIQUE and :meth:`ResultsStore.get_by_key` is the
"identical configurations are measured once" cache.

SQLite via the standard library (no ORM needed for two tables). WAL journal mode lets the
report read while the search writes; ``synchronous=NORMAL`` in WAL is still durable against
process crashes, which is the failure we guard against.

Tables (schema version ``SCHEMA_VERSION``, in ``meta``):
- ``meta(key, value)``: ``schema_version``, ``created_at``, ``relative_artifacts_from_id``
  (the first candidate id whose artifact path was stored run-dir relative; older rows are
  "legacy", see :func:`resolve_artifact`).
- ``run(id=1, config_json, baseline_json, device_json, updated_at)``: the run configuration,
  the baseline metrics (same keys as candidate metrics) and the device's ``info()``.
- ``candidates``: see :class:`CandidateRecord`.

Artifact paths are stored relative to the run directory (POSIX form) whenever the file lies
under it, so a run directory that is moved, copied or opened from another working directory
keeps valid paths; files outside it are stored absolute. Stores written before this rule hold
the path as given, i.e. relative to the directory the search was started from;
:func:`resolve_artifact` still finds those files (see there).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from host.legacy import renamed_actions, renamed_keys

SCHEMA_VERSION = 1
DB_NAME = "results.sqlite"
STATUSES = ("measured", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS run (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    config_json TEXT NOT NULL DEFAULT '{}',
    baseline_json TEXT,
    device_json TEXT,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS candidates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    episode INTEGER NOT NULL,
    config_key TEXT NOT NULL UNIQUE,
    actions_json TEXT NOT NULL,
    metrics_json TEXT,
    objectives_json TEXT,
    provenance_json TEXT,
    status TEXT NOT NULL CHECK (status IN ('measured', 'failed')),
    error TEXT,
    reward REAL,
    artifact_path TEXT,
    created_at REAL NOT NULL,
    CHECK (status = 'measured' OR (reward IS NULL AND error IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS candidates_episode ON candidates (episode);
"""


class StoreError(RuntimeError):
    """The store file is unusable (e.g. written by an incompatible schema version)."""


class DuplicateKeyError(ValueError):
    """A candidate with this ``config_key`` is already stored."""


def normalise_artifact(run_dir: Path, path: str | Path) -> str:
    """The stored form of ``path``: relative to ``run_dir`` (POSIX) when it lies under it,
    else absolute. A relative ``path`` is relative to the current working directory (what the
    search passes: its run directory plus ``candidates/...``)."""
    # abspath, not resolve(): symlinks inside the run dir stay as the user laid them out; both
    # sides still get resolve()d once so /tmp vs /private/tmp style aliases compare equal.
    absolute = Path(os.path.abspath(path))
    root = run_dir.resolve()
    for candidate in (absolute, absolute.resolve()):
        try:
            return candidate.relative_to(root).as_posix()
        except ValueError:
            continue
    return str(absolute)


def resolve_artifact(run_dir: Path, stored: str | None, *, legacy: bool = False) -> Path | None:
    """Absolute path of a stored artifact path, valid from any working directory.

    Current rows: ``run_dir / stored`` (or ``stored`` itself when absolute). ``legacy`` rows,
    written before paths were run-dir relative, hold the path relative to where the search
    started (e.g. ``outputs/run-1/candidates/a.onnx``); the first existing of these wins: the
    path as the current form reads it, the part after the run directory's own name (the
    directory was moved), each ancestor of ``run_dir`` joined with the string (it was not),
    then ever shorter tails (moved and renamed). None existing (a deleted file), the
    current-form reading is returned.
    """
    if not stored:
        return None
    root = run_dir.resolve()
    path = Path(stored)
    primary = path if path.is_absolute() else root / path
    if not legacy or primary.is_file():
        return primary
    tries = []
    parts = path.parts[1:] if path.is_absolute() else path.parts
    if root.name in parts[:-1]:
        i = len(parts) - 1 - parts[::-1].index(root.name)
        tries.append(root.joinpath(*parts[i + 1 :]))
    if not path.is_absolute():
        tries.extend(ancestor / path for ancestor in root.parents)
    tries.extend(root.joinpath(*parts[k:]) for k in range(1, len(parts)))
    return next((t for t in tries if t.is_file()), primary)


@dataclass
class CandidateRecord:
    """One stored candidate. ``reward`` is None for failed candidates (never 0).

    ``artifact_path`` is the exported model's absolute path, resolved against the store's run
    directory when the record was read: open or copy it from any working directory (it stays
    absolute, rather than the stored form, so callers need no run directory to use it).
    ``artifact_relpath`` is the same file relative to the run directory when it lies under it
    (the stored form; what ``report.json`` shows), else absolute.
    """

    id: int
    episode: int
    config_key: str
    actions: dict[str, Any]
    metrics: dict[str, Any] | None
    objectives: dict[str, Any] | None
    provenance: dict[str, Any] | None
    status: str
    error: str | None
    reward: float | None
    artifact_path: str | None
    created_at: float
    artifact_relpath: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _dumps(value: Any, *, lenient: bool = False) -> str | None:
    # allow_nan=False: NaN/inf are not JSON and would poison report.json later. ``lenient``
    # (run metadata only) writes objects such as Path as their str, as CLI namespaces hold them.
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, allow_nan=False, default=str if lenient else None)


def _loads(text: str | None) -> Any:
    return None if text is None else renamed_keys(json.loads(text))


class ResultsStore:
    """SQLite results of one run. Safe to share between threads of one process."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # Absolute once, at open: artifact paths resolve against it even if the process later
        # changes its working directory.
        self.root = self.run_dir.resolve()
        self.path = self.run_dir / DB_NAME
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        # Autocommit connection (isolation_level=None): every statement is its own durable
        # transaction, which is exactly "committed the moment it is measured".
        with self._lock:
            self._conn.executescript(_SCHEMA)  # idempotent (IF NOT EXISTS)
            self._conn.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?), ('created_at', ?)",
                (str(SCHEMA_VERSION), repr(time.time())),
            )
            row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if int(row["value"]) != SCHEMA_VERSION:
                self._conn.close()
                raise StoreError(
                    f"{self.path} has schema version {row['value']}, this hadmc reads "
                    f"{SCHEMA_VERSION}; use a new run directory"
                )
            # Same table layout, new path rule: rather than a schema bump (which would lock
            # old runs out), remember where the rule started. New store: 1; a store written by
            # an older hadmc: after its last row (a resumed run mixes both forms).
            self._conn.execute(
                "INSERT OR IGNORE INTO meta SELECT 'relative_artifacts_from_id', "
                "CAST(COALESCE(MAX(id), 0) + 1 AS TEXT) FROM candidates"
            )
            self._relative_from = int(
                self._conn.execute(
                    "SELECT value FROM meta WHERE key='relative_artifacts_from_id'"
                ).fetchone()["value"]
            )

    @property
    def schema_version(self) -> int:
        row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row["value"])

    # -- run metadata ---------------------------------------------------------------------
    def set_run(
        self,
        config: dict[str, Any] | None = None,
        *,
        baseline: dict[str, Any] | None = None,
        device: dict[str, Any] | None = None,
    ) -> None:
        """Store (or update) run metadata; arguments left None keep their stored value."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO run (id, config_json, updated_at) VALUES (1, '{}', ?) "
                "ON CONFLICT(id) DO NOTHING",
                (time.time(),),
            )
            for column, value in (
                ("config_json", config),
                ("baseline_json", baseline),
                ("device_json", device),
            ):
                if value is not None:
                    self._conn.execute(
                        f"UPDATE run SET {column} = ?, updated_at = ? WHERE id = 1",
                        (_dumps(value, lenient=True), time.time()),
                    )

    def run_info(self) -> dict[str, Any]:
        """``{"config": {...}, "baseline": {...} | None, "device": {...} | None}``."""
        row = self._conn.execute("SELECT * FROM run WHERE id = 1").fetchone()
        if row is None:
            return {"config": {}, "baseline": None, "device": None}
        return {
            "config": _loads(row["config_json"]) or {},
            "baseline": _loads(row["baseline_json"]),
            "device": _loads(row["device_json"]),
        }

    # -- candidates -----------------------------------------------------------------------
    def add_candidate(
        self,
        *,
        episode: int,
        config_key: str,
        actions: dict[str, Any],
        metrics: dict[str, Any] | None = None,
        objectives: dict[str, Any] | None = None,
        provenance: dict[str, Any] | None = None,
        status: str = "measured",
        error: str | None = None,
        reward: float | None = None,
        artifact_path: str | Path | None = None,
    ) -> CandidateRecord:
        """Insert one candidate and commit it at once. Raises ``DuplicateKeyError`` when the
        key exists (check :meth:`get_by_key` first), ``ValueError`` on inconsistent fields.
        ``artifact_path``: absolute or relative to the working directory; stored relative to
        the run directory when it lies under it (see :func:`normalise_artifact`)."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        if not config_key:
            raise ValueError("config_key must be a non-empty string")
        if status == "failed":
            if not error:
                raise ValueError("a failed candidate needs its error message")
            if reward is not None:
                raise ValueError("a failed candidate has no reward (not 0): pass reward=None")
        elif metrics is None or reward is None:
            raise ValueError("a measured candidate needs metrics and a reward")
        created_at = time.time()
        try:
            with self._lock:
                cur = self._conn.execute(
                    "INSERT INTO candidates (episode, config_key, actions_json, metrics_json, "
                    "objectives_json, provenance_json, status, error, reward, artifact_path, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        int(episode),
                        config_key,
                        _dumps(actions),
                        _dumps(metrics),
                        _dumps(objectives),
                        _dumps(provenance),
                        status,
                        error,
                        None if reward is None else float(reward),
                        None
                        if artifact_path is None
                        else normalise_artifact(self.root, artifact_path),
                        created_at,
                    ),
                )
                new_id = int(cur.lastrowid)
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc) and "config_key" in str(exc):
                raise DuplicateKeyError(f"config_key {config_key!r} is already stored") from exc
            raise
        record = self.get(new_id)
        assert record is not None
        return record

    def _record(self, row: sqlite3.Row) -> CandidateRecord:
        stored = row["artifact_path"]
        resolved = resolve_artifact(self.root, stored, legacy=row["id"] < self._relative_from)
        return CandidateRecord(
            id=row["id"],
            episode=row["episode"],
            config_key=row["config_key"],
            actions=renamed_actions(_loads(row["actions_json"])),
            metrics=_loads(row["metrics_json"]),
            objectives=_loads(row["objectives_json"]),
            provenance=_loads(row["provenance_json"]),
            status=row["status"],
            error=row["error"],
            reward=row["reward"],
            artifact_path=None if resolved is None else str(resolved),
            created_at=row["created_at"],
            artifact_relpath=None if resolved is None else self.relative(resolved),
        )

    def update_metrics(self, candidate_id: int, updates: dict[str, Any]) -> CandidateRecord:
        """Merge ``updates`` into a stored candidate's metrics (e.g. ``test_accuracy`` and
        ``test_accuracy_ci95`` evaluated for the chosen model only, after the search) and
        commit. Raises ``KeyError`` for an unknown id, ``ValueError`` for a failed one."""
        with self._lock:
            row = self._conn.execute(
                "SELECT status, metrics_json FROM candidates WHERE id = ?", (candidate_id,)
            ).fetchone()
            if row is None:
                raise KeyError(f"no candidate with id {candidate_id}")
            if row["status"] != "measured":
                raise ValueError(f"candidate {candidate_id} failed: it has no metrics to update")
            merged = {**(_loads(row["metrics_json"]) or {}), **updates}
            self._conn.execute(
                "UPDATE candidates SET metrics_json = ? WHERE id = ?",
                (_dumps(merged), candidate_id),
            )
        record = self.get(candidate_id)
        assert record is not None
        return record

    # -- artifact paths -------------------------------------------------------------------
    def relative(self, path: str | Path) -> str:
        """``path`` (absolute or working-directory relative) as report files write it:
        relative to the run directory when under it, else absolute."""
        return normalise_artifact(self.root, path)

    def artifact_file(self, record: CandidateRecord | int) -> Path | None:
        """Absolute path of a candidate's artifact (a record or its id), valid from any
        working directory; None when it has none. The file may since have been deleted."""
        if not isinstance(record, CandidateRecord):
            found = self.get(int(record))
            if found is None:
                raise KeyError(f"no candidate with id {record}")
            record = found
        return None if record.artifact_path is None else Path(record.artifact_path)

    def get(self, candidate_id: int) -> CandidateRecord | None:
        row = self._conn.execute(
            "SELECT * FROM candidates WHERE id = ?", (candidate_id,)
        ).fetchone()
        return None if row is None else self._record(row)

    def get_by_key(self, config_key: str) -> CandidateRecord | None:
        """The stored candidate with this configuration key, or None (cache / resume)."""
        row = self._conn.execute(
            "SELECT * FROM candidates WHERE config_key = ?", (config_key,)
        ).fetchone()
        return None if row is None else self._record(row)

    def candidates(self, status: str | None = None) -> list[CandidateRecord]:
        """All candidates in insertion order, optionally only one status."""
        if status is None:
            rows = self._conn.execute("SELECT * FROM candidates ORDER BY id").fetchall()
        else:
            rows = self._conn.execute(
                "SELECT * FROM candidates WHERE status = ? ORDER BY id", (status,)
            ).fetchall()
        return [self._record(r) for r in rows]

    def count(self, status: str | None = None) -> int:
        if status is None:
            return int(self._conn.execute("SELECT COUNT(*) FROM candidates").fetchone()[0])
        return int(
            self._conn.execute(
                "SELECT COUNT(*) FROM candidates WHERE status = ?", (status,)
            ).fetchone()[0]
        )

    def last_episode(self) -> int | None:
        """Highest stored episode number (for resume), None when empty."""
        value = self._conn.execute("SELECT MAX(episode) FROM candidates").fetchone()[0]
        return None if value is None else int(value)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
