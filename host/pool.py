"""A pool of boards behind the one ``Device`` interface: ``hadmc-host search --device A --device B``.

Kinds. A board's kind is GetInfo's ``device_kind`` when its owner labelled it
(``hadmc-device --kind pi5``), else ``arch | CPU model | logical cores | runtime versions``:
boards of one kind give the same latency for the same file, up to noise. A pool of one kind is
the default; boards of several kinds are refused (one sentence naming them) unless the user
passes ``--allow-mixed-pool``.

Queue. Each board measures one candidate at a time. A measurement takes the first free board of
its kind from a queue (as TVM's RPC tracker does, keyed by kind); the RPC deadline starts when
the board is taken, so time spent waiting for a board never counts against a measurement's
timeout. ``concurrency`` is how many measurements the pool runs at once.

Baselines. Every board measures the baseline at setup (``measure_baselines``), and a candidate's
latency ratio is against its own board: from the paired window when the measurement is paired
(the board times the baseline interleaved with the candidate), else against the board's setup
baseline. The run's baseline is the median board of one kind; of a mixed pool, the slowest
kind's median board, so that every latency of the run is on one time base.

A mixed pool. Every candidate is measured on one board of every kind, concurrently; its ratio is
the worst kind's (``fleet_objective="worst"``, the default: the model must be fast on every
board it ships to) or the mean over kinds (``"mean"``). The per-kind figures travel in the
measurement's provenance (``per_kind``), and the report shows a column per kind.

Lost boards. A measurement that fails because the board is gone (unreachable, or a crash or
timeout after which the board no longer answers Health) removes the board from the pool, logs
one line and records it in ``lost``; the candidate is requeued on another board of its kind, so
it is never lost and, once a measurement succeeded, never measured twice. A failure that is the
candidate's own (a model the runtime refuses, a crash while the board stays healthy) fails that
candidate only. When a kind has no board left the pool raises ``PoolExhausted``: the search
stops cleanly and ``--resume`` continues once boards are back.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from hadmc.device.hal import ArtifactSpec, Device, DeviceError, Measurement, MeasureOptions
from host.errors import UsageError

log = logging.getLogger(__name__)

FLEET_OBJECTIVES = ("worst", "mean")
# Errors that may mean the board, not the candidate, failed; Health decides which.
MAYBE_BOARD = ("crashed", "timeout", "internal")
# How often a measurement waiting for a board re-checks that its kind still has one.
WAIT_POLL_S = 0.5


class PoolExhausted(DeviceError):
    """Every board of a kind stopped answering: the search stops (resumable), nothing fails."""

    def __init__(self, message: str) -> None:
        super().__init__("unreachable", message)


def board_kind(info: dict[str, Any]) -> str:
    """The kind a board belongs to (see the module docstring)."""
    if info.get("device_kind"):
        return str(info["device_kind"])
    runtimes = ",".join(
        sorted(
            f"{r.get('runtime')}-{r.get('version')}"
            for r in info.get("runtimes") or []
            if isinstance(r, dict) and r.get("available", True)
        )
    )
    cpu = info.get("cpu_model") or "unknown CPU"
    return f"{info.get('arch') or '?'} | {cpu} | {info.get('cpu_cores_logical') or '?'} cores | {runtimes}"


@dataclasses.dataclass
class Board:
    address: str
    device: Device
    kind: str
    baseline_ms: float | None = None  # its own baseline p50 (measure_baselines)
    measured: int = 0  # candidates measured here
    alive: bool = True


class DevicePool(Device):
    """Boards of one kind (or, ``mixed``, of several) measured as one device."""

    def __init__(
        self, boards: Sequence[Board], *, mixed: bool = False, fleet_objective: str = "worst"
    ) -> None:
        if fleet_objective not in FLEET_OBJECTIVES:
            raise UsageError(f"--fleet-objective must be one of {', '.join(FLEET_OBJECTIVES)}")
        self.boards = list(boards)
        self.kinds = list(dict.fromkeys(b.kind for b in self.boards))
        if len(self.kinds) > 1 and not mixed:
            raise UsageError(mixed_pool_message(self.boards))
        self.mixed, self.fleet_objective = len(self.kinds) > 1, fleet_objective
        self.name = f"pool of {len(self.boards)} ({', '.join(b.address for b in self.boards)})"
        self.lost: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._free: dict[str, queue.Queue[Board]] = {k: queue.Queue() for k in self.kinds}
        for b in self.boards:
            self._free[b.kind].put(b)

    # -- Device ----------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        first = next(iter(self._alive()), self.boards[0])
        out = dict(first.device.info())
        out["name"] = self.name
        out["pool"] = self.describe()
        return out

    def health(self) -> bool:
        return any(b.device.health() for b in self._alive())

    @property
    def concurrency(self) -> int:
        """Measurements in flight at once: one per board (of the scarcest kind when mixed)."""
        alive = self._alive()
        return max(1, min(sum(b.kind == k for b in alive) for k in self.kinds)) if alive else 1

    def measure(
        self,
        artifact: ArtifactSpec,
        options: MeasureOptions,
        reference: ArtifactSpec | None = None,
    ) -> Measurement:
        if not self.mixed:
            return self._on_kind(self.kinds[0], artifact, options, reference)
        with ThreadPoolExecutor(len(self.kinds)) as ex:
            futures = {k: ex.submit(self._on_kind, k, artifact, options, reference)
                       for k in self.kinds}  # fmt: skip
            per = {k: f.result() for k, f in futures.items()}
        return self._combine(per)

    def measure_baselines(self, artifact: ArtifactSpec, options: MeasureOptions) -> Measurement:
        """The baseline on every board at once; returns the run's baseline (module docstring)."""
        with ThreadPoolExecutor(len(self.boards)) as ex:
            results = list(ex.map(lambda b: self._baseline(b, artifact, options), self.boards))
        by_kind: dict[str, list[Measurement]] = {}
        for b, m in zip(self.boards, results, strict=True):
            if m is not None:
                by_kind.setdefault(b.kind, []).append(m)
        missing = [k for k in self.kinds if k not in by_kind]
        if missing:
            raise PoolExhausted(f"no board of kind {missing[0]!r} measured the baseline")
        medians = {k: _median_measurement(ms) for k, ms in by_kind.items()}
        return max(medians.values(), key=lambda m: m.latency_ms_p50)

    def close(self) -> None:
        for b in self.boards:
            try:
                b.device.close()
            except Exception:  # noqa: BLE001 - a lost board may not close cleanly
                pass

    # -- what the report shows -------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {
            "kinds": self.kinds,
            "mixed": self.mixed,
            "fleet_objective": self.fleet_objective if self.mixed else None,
            "boards": [
                {"address": b.address, "kind": b.kind, "baseline_latency_ms_p50": b.baseline_ms,
                 "measured": b.measured, "alive": b.alive}
                for b in self.boards
            ],  # fmt: skip
            "lost": list(self.lost),
        }

    # -- internals -------------------------------------------------------------------------
    def _alive(self, kind: str | None = None) -> list[Board]:
        return [b for b in self.boards if b.alive and (kind is None or b.kind == kind)]

    def _take(self, kind: str) -> Board:
        while True:
            if not self._alive(kind):
                last = next((x for x in reversed(self.lost) if x["kind"] == kind), None)
                why = f" (last: {last['address']}: {last['reason']})" if last else ""
                raise PoolExhausted(
                    f"every board of kind {kind!r} has stopped answering{why}; the run is "
                    "saved: resume with hadmc-host search --resume DIR once a board is back"
                )
            try:
                board = self._free[kind].get(timeout=WAIT_POLL_S)
            except queue.Empty:
                continue
            if board.alive:
                return board

    def _lose(self, board: Board, exc: DeviceError) -> None:
        with self._lock:
            board.alive = False
            self.lost.append({"address": board.address, "kind": board.kind,
                              "reason": f"{exc.code}: {exc.message}"[:300],
                              "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})  # fmt: skip
        log.warning("board %s stopped answering (%s); it leaves the pool, its candidate is "
                    "requeued on another board", board.address, exc.code)  # fmt: skip

    def _board_lost(self, board: Board, exc: DeviceError) -> bool:
        if exc.code == "unreachable":
            return True
        if exc.code not in MAYBE_BOARD:
            return False
        try:
            return not board.device.health()
        except Exception:  # noqa: BLE001 - a board that cannot even answer Health is gone
            return True

    def _run_on(self, kind: str, fn: Callable[[Board], Measurement]) -> tuple[Board, Measurement]:
        while True:
            board = self._take(kind)
            try:
                m = fn(board)
            except DeviceError as exc:
                if self._board_lost(board, exc):
                    self._lose(board, exc)
                    continue  # requeued on the next free board of this kind
                self._free[kind].put(board)
                raise
            except BaseException:
                self._free[kind].put(board)
                raise
            self._free[kind].put(board)
            return board, m

    def _baseline(
        self, board: Board, artifact: ArtifactSpec, options: MeasureOptions
    ) -> Measurement | None:
        try:
            m = board.device.measure(artifact, options)
        except DeviceError as exc:
            if not self._board_lost(board, exc):
                raise
            self._lose(board, exc)
            return None
        board.baseline_ms = m.latency_ms_p50
        return m

    def _on_kind(
        self, kind: str, artifact: ArtifactSpec, options: MeasureOptions,
        reference: ArtifactSpec | None,
    ) -> Measurement:  # fmt: skip
        board, m = self._run_on(kind, lambda b: b.device.measure(artifact, options, reference))
        with self._lock:
            board.measured += 1
        prov = {**m.provenance, "board": board.address, "board_kind": board.kind}
        ratio, source = m.latency_ratio, "paired"
        if ratio is None and board.baseline_ms:
            # Unpaired: against this board's own baseline from setup, so that a slower board
            # does not make its candidates look slower than a faster board's.
            ratio, source = m.latency_ms_p50 / board.baseline_ms, "board_baseline"
        prov["latency_ratio_source"] = source if ratio is not None else None
        return dataclasses.replace(m, latency_ratio=ratio, provenance=prov)

    def _combine(self, per: dict[str, Measurement]) -> Measurement:
        """A mixed pool's candidate: the worst kind's measurement, with the fleet ratio."""
        ratios = {k: m.latency_ratio for k, m in per.items() if m.latency_ratio is not None}
        worst = max(per, key=lambda k: ratios.get(k, 0.0))
        m = per[worst]
        ratio = (max(ratios.values()) if self.fleet_objective == "worst"
                 else statistics.fmean(ratios.values())) if ratios else None  # fmt: skip
        per_kind = {
            k: {"board": x.provenance.get("board"), "latency_ms_p50": x.latency_ms_p50,
                "latency_ratio": x.latency_ratio, "peak_memory_mib": x.peak_memory_mib}
            for k, x in per.items()
        }  # fmt: skip
        prov = {**m.provenance, "per_kind": per_kind, "fleet_objective": self.fleet_objective,
                "worst_kind": worst}  # fmt: skip
        return dataclasses.replace(
            m,
            latency_ratio=ratio,
            latency_ratio_ci95=m.latency_ratio_ci95 if self.fleet_objective == "worst" else None,
            peak_memory_mib=max(x.peak_memory_mib for x in per.values()),
            upload_bytes=sum(x.upload_bytes for x in per.values()),
            device=self.name,
            provenance=prov,
        )


def _median_measurement(ms: list[Measurement]) -> Measurement:
    ordered = sorted(ms, key=lambda m: m.latency_ms_p50)
    return ordered[(len(ordered) - 1) // 2]


def mixed_pool_message(boards: Sequence[Board]) -> str:
    kinds: dict[str, list[str]] = {}
    for b in boards:
        kinds.setdefault(b.kind, []).append(b.address)
    listed = "; ".join(f"{', '.join(a)} is {k!r}" for k, a in kinds.items())
    return (
        f"the --device boards are of {len(kinds)} kinds ({listed}): a pool measures identical "
        "boards; pass --allow-mixed-pool to measure every candidate on each kind"
    )


def split_devices(value: str | Sequence[str] | None) -> list[str]:
    """``--device`` values (repeated, or comma-separated in one) as a list of addresses."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    return [a.strip() for item in items for a in str(item).split(",") if a.strip()]


def open_pool(
    addresses: Sequence[str],
    open_one: Callable[[str], Device],
    *,
    allow_mixed: bool = False,
    fleet_objective: str = "worst",
) -> DevicePool:
    """Open every board (GetInfo checks each answers) and group them by kind."""
    if len(set(addresses)) != len(addresses):
        raise UsageError("a board is named twice in --device: each board measures once")
    from host.devices import LOCAL_ALIASES

    if any(a.startswith("sim:") or a in LOCAL_ALIASES for a in addresses):
        raise UsageError("a pool is made of agents (host:port); sim: and the local agent "
                         "measure alone")  # fmt: skip
    boards: list[Board] = []
    try:
        for a in addresses:
            device = open_one(a)
            boards.append(Board(a, device, board_kind(device.info())))
        return DevicePool(boards, mixed=allow_mixed, fleet_objective=fleet_objective)
    except BaseException:
        for b in boards:
            b.device.close()
        raise
