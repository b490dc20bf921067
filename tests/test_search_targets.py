"""The quantization agent's precisions come from the execution target (fp16 only where the
target executes it), and ``--target auto`` runs one search per target with one front across
them (host.search_targets)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from host.errors import UsageError
from host.search_config import SearchConfig
from host.search_targets import merge, offered_targets, split_budget
from host.targets import search_precisions

CPU = {"target": "onnxruntime:cpu", "available": True, "precisions": ["fp32", "int8"]}
CUDA = {"target": "onnxruntime:cuda", "available": True, "precisions": ["fp32", "fp16", "int8"]}


def test_precisions_follow_the_target() -> None:
    info = {"targets": [
        CPU, CUDA,
        {"target": "onnxruntime:qnn", "available": True, "precisions": ["int8", "fp16"]},
        {"target": "litert:gpu", "available": True, "precisions": ["fp32", "fp16"]},
        {"target": "litert:xnnpack", "available": True, "precisions": ["fp32", "int8"]},
    ]}  # fmt: skip
    # The CPU target's choices, in the runtime's order: head index i means what it always did.
    assert search_precisions(info, "onnxruntime:cpu", "onnxruntime") == ("fp32", "int8")
    assert search_precisions(info, None, "onnxruntime") == ("fp32", "int8")
    assert search_precisions(info, "onnxruntime:cuda", "onnxruntime") == ("fp32", "fp16", "int8")
    assert search_precisions(info, "onnxruntime:qnn", "onnxruntime") == ("fp16", "int8")
    # No fp16 .tflite exporter: the GPU delegate's fp16 is not a separate choice.
    assert search_precisions(info, "litert:gpu", "litert") == ("fp32",)
    assert search_precisions(info, "litert:xnnpack", "litert") == ("fp32", "int8")
    with pytest.raises(UsageError, match="nothing to search over"):
        search_precisions({"targets": [{"target": "litert:npu", "precisions": ["int4"]}]},
                          "litert:npu", "litert")  # fmt: skip


def _build(n_groups: int) -> SimpleNamespace:
    groups = [SimpleNamespace(module_names=[f"m{i}"]) for i in range(n_groups)]
    return SimpleNamespace(runtime="onnxruntime", groups=groups, export={"precision": "fp32"},
                           data=SimpleNamespace(x_calib="calib"))  # fmt: skip


def test_quantization_pass_builds_what_the_target_runs() -> None:
    from hadmc.compress.passes.quantization_pass import QuantizationPass

    assert QuantizationPass().choices("onnxruntime") == ("fp32", "int8")
    gpu = QuantizationPass(("fp32", "fp16", "int8"))
    assert gpu.choices("onnxruntime") == ("fp32", "fp16", "int8")
    assert gpu.size("onnxruntime") == 3 and gpu.choices("litert") == ("fp32", "int8")
    cases = {
        ("fp16", "fp16", "fp16", "fp16"): {"precision": "fp16"},
        ("fp16", "fp16", "fp32", "fp32"): {"precision": "fp16"},  # half: whole-graph fp16
        ("fp16", "fp32", "fp32", "fp32"): {"precision": "fp32"},
        ("fp32",) * 4: {"precision": "fp32"},
        # int8 present: QDQ, every other group float32 (fp16 beside int8 is built as fp32).
        ("int8", "fp16", "int8", "fp32"): {"precision": "int8", "calib_x": "calib",
                                           "float_modules": ["m1", "m3"]},
    }  # fmt: skip
    for value, want in cases.items():
        b = _build(4)
        gpu.apply(list(value), b)
        assert b.export == want, value


def test_an_fp16_choice_exports_an_fp16_graph(tmp_path: Path) -> None:
    import numpy as np
    import onnxruntime as ort
    import torch

    from hadmc.compress.onnx_export import export_onnx
    from hadmc.compress.passes.quantization_pass import QuantizationPass
    from host.targets import is_fp16_onnx

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3)).eval()  # fmt: skip
    b = _build(2)
    QuantizationPass(("fp32", "fp16", "int8")).apply(["fp16", "fp16"], b)
    x = torch.randn(1, 1, 8, 8)
    out = export_onnx(model, tmp_path / "m.onnx", x, **b.export)
    assert out.precision == "fp16" and is_fp16_onnx(tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, model(x).detach().numpy(), atol=2e-2)  # fp16 arithmetic


def test_offered_targets_and_budget_split() -> None:
    info = {
        "runtimes": [{"runtime": "onnxruntime"}, {"runtime": "litert"}],
        "targets": [CPU, {**CUDA, "available": False},
                    {"target": "litert:xnnpack", "available": True}],
    }  # fmt: skip
    assert offered_targets(info) == ["onnxruntime:cpu", "litert:xnnpack"]
    # LiteRT missing on the board: its targets are not offered even if listed.
    no_litert = {**info, "runtimes": [{"runtime": "onnxruntime"},
                                      {"runtime": "litert", "available": False}]}  # fmt: skip
    assert offered_targets(no_litert) == ["onnxruntime:cpu"]
    # A sim: profile lists runtimes only: each on its CPU target.
    assert offered_targets({"profile": {"runtimes": ["onnxruntime"]}}) == ["onnxruntime:cpu"]
    assert split_budget(7, 3) == [3, 2, 2] and split_budget(2, 2) == [1, 1]


def _summary(base_ms: float, rows: list[tuple[int, float, float, bool]]) -> dict:
    base = {"accuracy": 0.95, "latency_ms": base_ms, "memory_mib": 10.0, "energy_mj": None,
            "size_bytes": 40_000, "update_bytes": 0}  # fmt: skip
    front = [{**base, "id": i, "accuracy": acc, "latency_ms": ms, "size_bytes": 20_000,
              "speedup": base_ms / ms, "feasible": ok, "precision": "int8", "test_accuracy": acc,
              "test_accuracy_ci95": [acc - 0.01, acc + 0.01], "artifact": f"candidates/{i}.x"}
             for i, acc, ms, ok in rows]  # fmt: skip
    return {"baseline": base, "front": front, "measured": len(rows), "budget": len(rows),
            "hypervolume": 0.5}  # fmt: skip


def test_merge_gives_one_front_against_the_fastest_fp32_target(tmp_path: Path) -> None:
    runs = {
        # A slow fp32 baseline (4 ms): its 2.0 ms int8 is "2x" on its own.
        "litert:xnnpack": _summary(4.0, [(1, 0.95, 2.0, True), (2, 0.90, 0.5, False)]),
        # The fastest fp32 baseline (2 ms): its 1.0 ms candidate is faster and as accurate.
        "onnxruntime:cpu": _summary(2.0, [(1, 0.95, 1.0, True), (2, 0.94, 0.8, True)]),
    }
    for t, s in runs.items():
        d = tmp_path / "targets" / t.replace(":", "-")
        d.mkdir(parents=True)
        (d / "summary.json").write_text(json.dumps(s))
    merged = merge(tmp_path, list(runs), {t: 0 for t in runs}, SearchConfig(episodes=4))
    assert merged["fastest_fp32_target"] == "onnxruntime:cpu"
    got = {(r["target"], r["id"]): r for r in merged["front"]}
    # litert #1 (2.0 ms, 95 %) is dominated by onnxruntime #1 (1.0 ms, 95 %) and leaves.
    assert set(got) == {("onnxruntime:cpu", 1), ("onnxruntime:cpu", 2), ("litert:xnnpack", 2)}
    assert got[("litert:xnnpack", 2)]["speedup"] == pytest.approx(8.0)  # its own baseline
    assert got[("litert:xnnpack", 2)]["speedup_vs_fastest_fp32"] == pytest.approx(4.0)
    assert got[("onnxruntime:cpu", 2)]["speedup_vs_fastest_fp32"] == pytest.approx(2.5)
    assert got[("litert:xnnpack", 2)]["artifact"] == "targets/litert-xnnpack/candidates/2.x"
    # The choice: the fastest feasible row; litert #2 is faster but outside the limits.
    assert (merged["best"]["target"], merged["best"]["id"]) == ("onnxruntime:cpu", 2)
    assert [t["baseline_latency_ms"] for t in merged["targets"]] == [4.0, 2.0]


def test_merge_never_chooses_a_row_slower_than_the_fastest_fp32(tmp_path: Path) -> None:
    runs = {
        # Feasible and 1.33x against its own 4 ms baseline, but slower than onnxruntime's fp32.
        "litert:xnnpack": _summary(4.0, [(1, 0.95, 3.0, True)]),
        # Its only candidate is outside the limits.
        "onnxruntime:cpu": _summary(2.0, [(1, 0.90, 1.0, False)]),
    }
    for t, s in runs.items():
        d = tmp_path / "targets" / t.replace(":", "-")
        d.mkdir(parents=True)
        (d / "summary.json").write_text(json.dumps(s))
    merged = merge(tmp_path, list(runs), {t: 0 for t in runs}, SearchConfig(episodes=2))
    row = next(r for r in merged["front"] if r["target"] == "litert:xnnpack")
    assert row["feasible"] and row["speedup_vs_fastest_fp32"] == pytest.approx(2.0 / 3.0)
    assert merged["best"] is None and merged["ok"] is False


# -- end to end -------------------------------------------------------------------------------

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_search_e2e import _args, user_files  # noqa: E402, F401  (a fixture)


@pytest.mark.slow
def test_search_offers_fp16_where_the_target_executes_it(
    user_files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    """A board whose CPU target says it executes fp16 (a sim: profile standing in for a GPU
    board): the grid's uniform fp16 is built as an fp16 graph and measured."""
    import host.search as search
    from host.store import ResultsStore

    real_open = search._open_device

    def open_gpu_like(cfg: SearchConfig):  # noqa: ANN202
        device, info = real_open(cfg)
        return device, {**info, "targets": [{**CPU, "precisions": ["fp32", "fp16", "int8"]}]}

    monkeypatch.setattr(search, "_open_device", open_gpu_like)
    out = tmp_path / "run"
    args = _args(user_files, out, "--device", "sim:raspberry-pi-4", "--strategy", "grid",
                 "--target", "onnxruntime:cpu", "--episodes", "1")  # fmt: skip
    assert search.run_search(args, {"quiet": True}) in (0, 3)
    with ResultsStore(out) as store:
        (row,) = store.candidates()
    # Mildest first: keep 1.0 at fp16 is the grid's slowest non-baseline configuration.
    assert set(row.actions["quantization"]) == {"fp16"}
    assert row.status == "measured" and row.metrics["precision"] == "fp16"


@pytest.mark.slow
def test_target_auto_searches_every_target_and_merges(
    user_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    from host.devices import open_device
    from host.search import run_search

    with open_device(None) as device:
        targets = offered_targets(device.info())
    assert "onnxruntime:cpu" in targets
    out = tmp_path / "auto"
    n = len(targets)
    args = _args(user_files, out, "--target", "auto", "--strategy", "random", "--surrogate",
                 "off", "--episodes", str(n), "--json")  # fmt: skip
    code = run_search(args, {"quiet": True})
    merged = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == (0 if merged["best"] else 3)
    assert [t["target"] for t in merged["targets"]] == targets
    fastest = min(t["baseline_latency_ms"] for t in merged["targets"])
    for t in merged["targets"]:  # one search of one episode per target, each a full run
        sub = out / t["run_dir"]
        assert json.loads((sub / "run_config.json").read_text())["target"] == t["target"]
        assert t["episodes"] == 1 and t["exit_code"] in (0, 3)
    for row in merged["front"]:
        assert row["target"] in targets and (out / row["artifact"]).is_file()
        assert row["speedup_vs_fastest_fp32"] == pytest.approx(fastest / row["latency_ms"])
    assert json.loads((out / "summary.json").read_text())["front"] == merged["front"]
    # Running it again into the same directory is refused; --resume merges again.
    assert run_search(args, {"quiet": True}) == 2
