"""``host.pool.DevicePool`` with in-process boards: the queue, lost boards, kinds and the fleet
objective, against hand-computed values. The real-process tests are in test_pool.py."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from hadmc.device.hal import ArtifactSpec, Device, DeviceError, Measurement, MeasureOptions
from host.errors import UsageError
from host.pool import Board, DevicePool, PoolExhausted, board_kind, open_pool, split_devices

SPEC = ArtifactSpec(Path("m.onnx"), "onnx", "onnxruntime", "x", (1, 3, 8, 8))
OPTS = MeasureOptions()


def _m(p50: float, ratio: float | None = None, mem: float = 10.0) -> Measurement:
    return Measurement(
        latency_ms_p50=p50, latency_ms_mean=p50, latency_ms_min=p50, latency_ms_p90=p50,
        latency_ms_p99=p50, latency_ms_std=0.0, latency_cv=0.0, n_runs=10, load_ms=1.0,
        first_inference_ms=p50, peak_memory_mib=mem, energy_mj=None, power_w=None,
        energy_status="unavailable", energy_source="", source="device", device="fake",
        latency_ratio=ratio,
    )  # fmt: skip


class FakeBoard(Device):
    """Answers with fixed latencies; ``fail`` makes the next measure raise that code."""

    def __init__(self, name: str, p50: float, kind: str = "", hold_s: float = 0.0) -> None:
        self.name, self.p50, self.kind, self.hold_s = name, p50, kind, hold_s
        self.calls: list[str] = []
        self.fail: str | None = None
        self.healthy = True
        self.busy = 0
        self.max_busy = 0
        self.closed = False
        self._lock = threading.Lock()

    def close(self) -> None:
        self.closed = True

    def info(self) -> dict:
        return {"arch": "x86_64", "cpu_model": "Fake CPU", "cpu_cores_logical": 2,
                "runtimes": [{"runtime": "onnxruntime", "version": "1.0"}],
                "device_kind": self.kind}  # fmt: skip

    def health(self) -> bool:
        return self.healthy

    def measure(self, artifact, options, reference=None) -> Measurement:
        with self._lock:
            self.busy += 1
            self.max_busy = max(self.max_busy, self.busy)
        try:
            self.calls.append(str(artifact.path))
            time.sleep(self.hold_s)
            if self.fail:
                code, self.fail = self.fail, None
                raise DeviceError(code, f"{self.name} failed")
            ratio = 0.5 if reference is not None else None
            return _m(self.p50 * (0.5 if reference is not None else 1.0), ratio)
        finally:
            with self._lock:
                self.busy -= 1


def _pool(*boards: FakeBoard, **kw) -> DevicePool:
    return DevicePool([Board(b.name, b, board_kind(b.info())) for b in boards], **kw)


def test_measurements_rotate_over_the_free_boards_and_each_board_runs_one_at_a_time() -> None:
    a, b = FakeBoard("a", 2.0, hold_s=0.05), FakeBoard("b", 2.0, hold_s=0.05)
    pool = _pool(a, b)
    assert pool.concurrency == 2
    done = []
    threads = [threading.Thread(target=lambda: done.append(pool.measure(SPEC, OPTS)))
               for _ in range(6)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(done) == 6 and len(a.calls) + len(b.calls) == 6
    assert a.calls and b.calls  # spread over both
    assert a.max_busy == 1 and b.max_busy == 1  # never two candidates on one board
    assert {m.provenance["board"] for m in done} == {"a", "b"}


def test_unpaired_ratio_is_against_the_boards_own_baseline() -> None:
    fast, slow = FakeBoard("fast", 1.0), FakeBoard("slow", 3.0)
    pool = _pool(fast, slow)
    base = pool.measure_baselines(SPEC, OPTS)
    # Two boards of one kind: the run's baseline is the median board (the lower middle).
    assert base.latency_ms_p50 == 1.0
    assert [b.baseline_ms for b in pool.boards] == [1.0, 3.0]
    m1, m2 = pool.measure(SPEC, OPTS), pool.measure(SPEC, OPTS)
    # Same file on both: a ratio of 1 on each, whichever board took it.
    assert m1.latency_ratio == pytest.approx(1.0) and m2.latency_ratio == pytest.approx(1.0)
    assert m1.provenance["latency_ratio_source"] == "board_baseline"
    paired = pool.measure(SPEC, OPTS, reference=SPEC)
    assert paired.latency_ratio == 0.5 and paired.provenance["latency_ratio_source"] == "paired"


def test_a_lost_board_leaves_the_pool_and_its_candidate_is_requeued() -> None:
    a, b = FakeBoard("a", 2.0), FakeBoard("b", 2.0)
    pool = _pool(a, b)
    a.fail, a.healthy = "unreachable", False
    m = pool.measure(SPEC, OPTS)  # taken by a first (FIFO), requeued on b
    assert m.provenance["board"] == "b" and len(a.calls) == 1 and len(b.calls) == 1
    assert [x["address"] for x in pool.lost] == ["a"] and not pool.boards[0].alive
    assert pool.concurrency == 1
    pool.measure(SPEC, OPTS)
    assert len(a.calls) == 1  # never taken again
    b.fail, b.healthy = "timeout", False  # a timeout after which Health fails: the board
    with pytest.raises(PoolExhausted, match="resume"):
        pool.measure(SPEC, OPTS)


def test_a_candidates_own_failure_fails_the_candidate_only() -> None:
    a, b = FakeBoard("a", 2.0), FakeBoard("b", 2.0)
    pool = _pool(a, b)
    a.fail = "invalid_model"
    with pytest.raises(DeviceError) as info:
        pool.measure(SPEC, OPTS)
    assert info.value.code == "invalid_model" and not isinstance(info.value, PoolExhausted)
    a.fail = "crashed"  # the model crashed the worker, but the board still answers Health
    pool.measure(SPEC, OPTS)  # b
    with pytest.raises(DeviceError):
        pool.measure(SPEC, OPTS)  # a again: crashed, healthy, so the candidate failed
    assert pool.lost == [] and pool.concurrency == 2


def test_mixed_kinds_are_refused_unless_allowed() -> None:
    a, b = FakeBoard("a", 2.0, kind="pi4"), FakeBoard("b", 1.0, kind="pi5")
    with pytest.raises(UsageError, match="--allow-mixed-pool") as info:
        _pool(a, b)
    assert "'pi4'" in str(info.value) and "'pi5'" in str(info.value)
    assert _pool(a, b, mixed=True).mixed


@pytest.mark.parametrize(("objective", "expected"), [("worst", 0.8), ("mean", 0.65)])
def test_the_fleet_objective_combines_the_kinds_ratios(objective: str, expected: float) -> None:
    pool = _pool(FakeBoard("a", 2.0, kind="pi4"), FakeBoard("b", 1.0, kind="pi5"),
                 mixed=True, fleet_objective=objective)  # fmt: skip
    per = {"pi4": _m(1.6, 0.8, mem=30.0), "pi5": _m(0.5, 0.5, mem=20.0)}
    for k, m in per.items():
        m.provenance["board"] = {"pi4": "a", "pi5": "b"}[k]
    m = pool._combine(per)
    assert m.latency_ratio == pytest.approx(expected)
    assert m.peak_memory_mib == 30.0  # the worst board's memory
    assert m.provenance["worst_kind"] == "pi4"
    assert m.provenance["per_kind"]["pi5"]["latency_ratio"] == 0.5


def test_a_mixed_pool_measures_every_candidate_on_each_kind() -> None:
    a, b = FakeBoard("a", 2.0, kind="pi4"), FakeBoard("b", 1.0, kind="pi5")
    pool = _pool(a, b, mixed=True)
    base = pool.measure_baselines(SPEC, OPTS)
    assert base.latency_ms_p50 == 2.0  # the slowest kind's time base
    m = pool.measure(SPEC, OPTS)
    assert len(a.calls) == len(b.calls) == 2
    assert set(m.provenance["per_kind"]) == {"pi4", "pi5"}


def test_kind_is_the_label_else_the_hardware_and_runtimes() -> None:
    info = FakeBoard("a", 1.0).info()
    assert board_kind({**info, "device_kind": "pi5"}) == "pi5"
    derived = board_kind(info)
    assert "Fake CPU" in derived and "onnxruntime-1.0" in derived
    other = {**info, "runtimes": [{"runtime": "onnxruntime", "version": "1.1"}]}
    assert board_kind(other) != derived  # another runtime version is another kind


def test_device_lists_and_pool_refusals() -> None:
    assert split_devices(["a:1,b:2", "c:3"]) == ["a:1", "b:2", "c:3"]
    assert split_devices(None) == [] and split_devices("a:1") == ["a:1"]
    with pytest.raises(UsageError, match="twice"):
        open_pool(["a:1", "a:1"], lambda a: FakeBoard(a, 1.0))
    with pytest.raises(UsageError, match="sim:"):
        open_pool(["a:1", "sim:raspberry-pi-4"], lambda a: FakeBoard(a, 1.0))
    opened: list[FakeBoard] = []

    def one(address: str) -> FakeBoard:
        opened.append(FakeBoard(address, 1.0, kind=address))
        return opened[-1]

    with pytest.raises(UsageError):
        open_pool(["a:1", "b:2"], one)  # two kinds: refused, and both boards closed again
    assert len(opened) == 2 and all(b.closed for b in opened)
