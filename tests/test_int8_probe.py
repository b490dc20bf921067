"""The int8 probe (host.int8_probe): stages whose int8 the device measured slower stay float,
in every strategy's joint actions, and a search on a real agent records and obeys it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from host.int8_probe import Int8Probe, StageTiming, decide, run_probe


def _t(stage: int | None, ratio: float, half_width: float = 0.02) -> StageTiming:
    return StageTiming(stage, ratio, (ratio - half_width, ratio + half_width))


def test_decide_excludes_only_stages_that_lose_beyond_noise() -> None:
    stages = [0, 0, 1, 1, 2, 3]
    probe = decide(stages, [
        _t(None, 0.62),  # every stage int8: 1.61x faster than fp32
        _t(0, 0.70),  # leaving stage 0 float is slower: its int8 wins
        _t(1, 0.61),  # within noise of all-int8: keep int8
        _t(2, 0.55),  # faster with stage 2 float (0.57 < 0.60): its int8 loses
        _t(3, 0.58, 0.005),  # 0.585 < 0.60: loses too
    ])  # fmt: skip
    assert probe.excluded_stages == [2, 3] and not probe.int8_dropped
    assert probe.excluded_groups() == [4, 5]
    assert "stage(s) 2, 3 lose with int8" in probe.summary()
    assert Int8Probe.from_json(probe.to_json()) == probe
    # int8 slower than fp32 everywhere, and no float stage fixes it: every stage stays float.
    slow = decide([0, 1], [_t(None, 1.10), _t(0, 1.06), _t(1, 1.08)])
    assert slow.int8_dropped and slow.excluded_stages == [0, 1]
    assert "keeps every stage float" in slow.summary()
    # Slower than fp32, but leaving stage 1 float makes it faster than fp32: only stage 1.
    fixable = decide([0, 1], [_t(None, 1.10), _t(0, 1.15), _t(1, 0.80)])
    assert not fixable.int8_dropped and fixable.excluded_stages == [1]


def test_excluded_groups_are_float_in_every_joint_action() -> None:
    from hadmc.compress.passes.quantization_pass import QuantizationPass
    from hadmc.compress.registry import StepContext, default_passes
    from hadmc.search.env import JointAction

    q = QuantizationPass(None, int8_excluded_groups=[2, 3])
    assert q.parse(["int8"] * 4) == ["int8", "int8", "fp32", "fp32"]
    assert q.uniform(4, "int8") == ["int8", "int8", "fp32", "fp32"]
    assert q.parse(["fp32", "int8", "int8", "fp32"]) == ["fp32", "int8", "fp32", "fp32"]
    ctx = lambda step: StepContext(step, "onnxruntime", {}, {}, {})  # noqa: E731
    assert q.refine("int8", ctx(1)) == "int8" and q.refine("int8", ctx(2)) == "fp32"
    passes = tuple(q if p.name == "quantization" else p for p in default_passes())
    joint = JointAction.uniform(4, 0.5, "int8", passes=passes)  # the grid's uniform int8
    assert joint.precisions == ["int8", "int8", "fp32", "fp32"]
    again = JointAction.from_dict(joint.to_dict(), passes)
    assert again.canonical_json() == joint.canonical_json()  # the same cache key on resume
    assert QuantizationPass().parse(["int8"] * 4) == ["int8"] * 4  # no probe: unchanged


def test_run_probe_exports_each_pattern_and_times_it(tmp_path: Path) -> None:
    """Real int8 exports of a small net; the 'device' makes stage 1's int8 slow."""
    import onnx
    import torch

    from hadmc.compress.pruning import find_layer_groups
    from hadmc.data import load_digits_splits

    torch.manual_seed(0)
    data = load_digits_splits(image_size=8, seed=0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10),
    ).eval()  # fmt: skip
    groups = find_layer_groups(model, torch.from_numpy(data.x_test[:1]))
    stages = list(range(len(groups)))
    seen: list[int] = []

    def measure(e):  # noqa: ANN001, ANN202
        graph = onnx.load(str(e.path)).graph
        dq = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        # Convs with int8 weights (their weight input comes out of a DequantizeLinear).
        seen.append(sum(n.op_type == "Conv" and n.input[1] in dq for n in graph.node))
        # The fake device: the pattern with stage 1 left float is the fastest.
        ratio = 0.5 if e.path.name == "probe-1.onnx" else 0.7
        return SimpleNamespace(latency_ratio=ratio, latency_ratio_ci95=(ratio - 0.01, ratio + 0.01))

    probe = run_probe(model, data, groups, stages, measure)
    assert [t.float_stage for t in probe.timings] == [None, *stages]
    assert probe.excluded_stages == [1] and probe.excluded_groups() == [1]
    # Each pattern is a real int8 graph with exactly its stage's conv left float.
    assert seen == [2, 1, 1]


# -- end to end ------------------------------------------------------------------------------

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_search_e2e import _args, user_files  # noqa: E402, F401  (a fixture)


@pytest.mark.slow
def test_search_measures_the_probe_and_obeys_it(
    user_files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    import host.int8_probe as int8_probe
    from host.search import run_search
    from host.store import ResultsStore

    real_decide = int8_probe.decide

    def last_stage_loses(stages, timings):  # noqa: ANN001, ANN202
        # The real timings, but the last stage's int8 declared slower whatever this machine
        # measured, so the exclusion is there to be obeyed on every run.
        probe = real_decide(stages, timings)
        probe.excluded_stages = [max(stages)]
        return probe

    monkeypatch.setattr(int8_probe, "decide", last_stage_loses)

    out = tmp_path / "run"
    args = _args(user_files, out, "--int8-probe", "on", "--strategy", "random", "--surrogate",
                 "off", "--episodes", "4")  # fmt: skip
    assert run_search(args, {"quiet": True}) in (0, 3)
    probe = Int8Probe.from_json((out / "int8_probe.json").read_text())
    assert len(probe.timings) == len(set(probe.stages)) + 1  # all-int8, then each stage float
    assert all(0.05 < t.latency_ratio < 5 for t in probe.timings)  # real paired ratios
    excluded = set(probe.excluded_groups())
    assert excluded
    with ResultsStore(out) as store:
        rows = store.candidates()
    assert len(rows) == 4
    for r in rows:  # whatever the policy drew, an excluded group is never int8
        assert not any(p == "int8" for g, p in enumerate(r.actions["quantization"])
                       if g in excluded)  # fmt: skip
    # ... while the other groups still are, somewhere: the head was not switched off.
    assert any(p == "int8" for r in rows for p in r.actions["quantization"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["int8_probe"]["excluded_stages"] == probe.excluded_stages
    report = json.loads((out / "report.json").read_text())
    assert report["int8_probe"]["timings"][0]["float_stage"] is None
