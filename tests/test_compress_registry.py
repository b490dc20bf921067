"""The compression-pass registry: a pass defined here alone becomes a sixth agent.

``LogitScale`` is a toy operator that exists only in this file: one once-per-episode head
(scale the classifier's logits by 1 or 2; a positive scale never changes a prediction). It is
passed in at the call site, never registered, and the action spec, the policy, the env, the
stored candidates, the report and a short ``sim:`` search all pick it up.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from hadmc.compress.registry import (
    Build,
    CompressionPass,
    Feature,
    action_series,
    default_passes,
    registered,
)
from hadmc.search.env import CompressionEnv, EvalOutcome, JointAction, make_action_spec
from hadmc.search.observation import FEATURE_NAMES, HardwareFeatures, ObservationEncoder

BUILTIN = ("pruning", "quantization", "fusion", "distillation", "update_scope")
APPLIED: list[tuple[float, float]] = []  # (scale, measured weight ratio) per built candidate


class LogitScale(CompressionPass, register=False):
    """Multiplies the last Linear layer (weights and bias) by the chosen scale."""

    name = "logit_scale"
    order = 60
    per_group = False
    phase = "model"
    default_choice = 1.0
    plot_label = "scale"

    def choices(self, runtime: str) -> tuple[float, ...]:
        return (1.0, 2.0)

    def parse(self, stored: Any) -> float:
        return float(stored)

    def apply(self, value: float, build: Build) -> None:
        import torch
        from torch import nn

        student = copy.deepcopy(build.student)  # never change the model passed in
        last = [m for m in student.modules() if isinstance(m, nn.Linear)][-1]
        before = float(last.weight.detach().abs().sum())
        with torch.no_grad():
            last.weight.mul_(value)
            if last.bias is not None:
                last.bias.mul_(value)
        APPLIED.append((value, float(last.weight.detach().abs().sum()) / before))
        build.student = student


class Flag(CompressionPass, register=False):
    """A per-group toy with an observation feature: the fraction of groups flagged so far."""

    name = "flag"
    default_choice = "off"

    def choices(self, runtime: str) -> tuple[str, ...]:
        return ("off", "on")

    def features(self) -> tuple[Feature, ...]:
        return (Feature("frac_flag", lambda v, _: float(np.mean([x == "on" for x in v]))
                        if len(v) else 0.0),)  # fmt: skip

    def apply(self, value: list[str], build: Build) -> None:
        pass


def _groups(n: int) -> list[SimpleNamespace]:
    return [
        SimpleNamespace(index=i, name=f"g{i}", module_names=[f"m{i}"], kind="conv",
                        out_channels=16, kernel_size=3, stride=1, macs=1000, params=100,
                        position=i / max(1, n - 1))
        for i in range(n)
    ]  # fmt: skip


HW = HardwareFeatures(cores=4, memory_mib=4096, baseline_latency_ms=2.0, int8_available=True)


def test_builtin_passes_register_themselves_in_head_order() -> None:
    assert tuple(p.name for p in default_passes()) == BUILTIN
    assert set(BUILTIN) <= set(registered())
    assert "logit_scale" not in registered()  # register=False: only where it is passed in
    with pytest.raises(ValueError, match="taken"):

        class Clash(CompressionPass):  # a second pass may not take a registered name
            name = "pruning"


def test_a_pass_from_the_call_site_is_a_sixth_head() -> None:
    passes = (*default_passes(), LogitScale())
    spec = make_action_spec("onnxruntime", passes)
    assert spec.names == ("pruning", "quantization", "distillation", "update_scope", "logit_scale")
    assert len(make_action_spec("litert", passes).heads) == 6  # fusion is offered on LiteRT
    seen: list[JointAction] = []

    def evaluate(joint: JointAction, episode: int) -> EvalOutcome:
        seen.append(joint)
        return EvalOutcome("measured", 0.5)

    enc = ObservationEncoder(_groups(3), [0.0] * 3, HW, passes)
    env = CompressionEnv(enc, "litert", evaluate, passes=passes)
    from hadmc.rl.ppo import PPO, PPOConfig

    ppo = PPO(env.observation_dim, env.action_spec, PPOConfig(), seed=0)
    assert len(ppo.policy.heads) == 6  # one output layer per head
    _, info = env.reset()
    masks = [info["head_mask"]]
    for _ in range(3):
        step = ppo.act(np.zeros(env.observation_dim, np.float32), info["head_mask"])
        _, _, done, _, info = env.step({**step.action, "logit_scale": 1})
        masks.append(info["head_mask"])
    assert done and [m["logit_scale"] for m in masks[:3]] == [False, False, True]
    joint = seen[0]
    assert joint["logit_scale"] == 2.0 and list(joint.to_dict()) == [*BUILTIN, "logit_scale"]
    # The stored form round-trips, with and without knowing the pass.
    stored = json.loads(json.dumps(joint.to_dict()))
    assert JointAction.from_dict(stored, passes).canonical_json() == joint.canonical_json()
    assert JointAction.from_dict(stored).config_key("m") == joint.config_key("m")
    uniform = JointAction.uniform(3, 0.5, "int8", passes=passes, logit_scale=2.0)
    assert uniform["logit_scale"] == 2.0 and uniform.keep_ratios == [0.5] * 3


def test_a_per_group_pass_adds_its_observation_feature_after_the_builtins() -> None:
    passes = (*default_passes(), Flag())
    enc = ObservationEncoder(_groups(4), [0.0] * 4, HW, passes)
    names = list(enc.feature_names)
    assert names == [*FEATURE_NAMES[:-4], "frac_flag", *FEATURE_NAMES[-4:]]
    obs = enc.encode(2, {"pruning": [1.0, 0.5], "flag": ["on", "off"]}, None)
    f = dict(zip(names, obs, strict=True))
    assert f["frac_flag"] == pytest.approx(0.5) and f["mean_keep"] == pytest.approx(0.75)
    env = CompressionEnv(enc, "onnxruntime", lambda j, e: EvalOutcome("measured", 0.0),
                         passes=passes)  # fmt: skip
    assert env.acting(1)["flag"] and env.head_mask(1)["pruning"]


def test_action_plot_series_come_from_the_passes() -> None:
    actions = [
        JointAction.uniform(2, 0.5, "int8", passes=(*default_passes(), LogitScale())).to_dict(),
        {"pruning": [0.7, 0.9], "other": "x"},
    ]
    titles = [s.title for s in action_series(actions)]
    assert titles == [
        "pruning: keep ratio (all groups)", "quantization: precision (all groups)",
        "fusion: pattern (all groups)", "distillation: temperature T", "distillation: alpha",
        "update_scope: weights the fine-tune changes", "logit_scale", "other",
    ]  # fmt: skip
    series = action_series(actions, (*default_passes(), LogitScale()))
    toy = [s for s in series if s.title == "logit_scale: scale"][0]
    assert toy.numeric and toy.values == [1.0]
    assert series[0].values == [0.5, 0.5, 0.7, 0.9]


@pytest.fixture(scope="module")
def user_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int]:
    """A briefly trained model and its data, as a user would bring them (as test_search_e2e),
    and its number of layer groups."""
    import torch

    from hadmc.compress.pruning import find_layer_groups
    from hadmc.data import load_digits_splits
    from hadmc.models import build_model, train_classifier

    d = tmp_path_factory.mktemp("user")
    data = load_digits_splits(image_size=16, seed=0)
    model = build_model("mobilenetv2_small", num_classes=data.num_classes, in_channels=1)
    train_classifier(model, data, epochs=1, lr=3e-3, batch_size=64, seed=0)  # any model will do
    torch.save(model, d / "model.pt")
    splits = ("train", "val", "test")
    arrays = {f"{k}_{s}": getattr(data, f"{k}_{s}") for s in splits for k in ("x", "y")}
    np.savez(d / "data.npz", **arrays)
    return d / "model.pt", d / "data.npz", len(find_layer_groups(model, torch.zeros(1, 1, 16, 16)))


@pytest.mark.slow
def test_sim_search_runs_with_a_sixth_agent(
    user_files: tuple[Path, Path, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hadmc.rl.ppo import PPO
    from hadmc.surrogate.accuracy import SENSITIVITY_KEEPS
    from host.search import add_search_arguments, run_search
    from host.store import ResultsStore

    monkeypatch.setenv("HADMC_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "run"
    model, data, n_groups = user_files
    # A sensitivity table in the run directory, as a resumed run has one: measuring it would
    # be most of this test's time and is not what it is about.
    out.mkdir()
    (out / "sensitivity.json").write_text(json.dumps([[0.01] * len(SENSITIVITY_KEEPS)] * n_groups))
    parser = argparse.ArgumentParser()
    add_search_arguments(parser)
    args = parser.parse_args([
        "--model", str(model), "--data", str(data), "--out", str(out),
        "--device", "sim:raspberry-pi-4", "--strategy", "ppo", "--surrogate", "off",
        "--episodes", "4", "--episodes-per-update", "2", "--finetune-steps", "2",
        "--max-accuracy-drop", "none", "--host-threads", "1",
    ])  # fmt: skip
    APPLIED.clear()
    code = run_search(args, {"quiet": True}, passes=(*default_passes(), LogitScale()))
    with ResultsStore(out) as store:
        rows = store.candidates()
    assert code in (0, 3) and len(rows) == 4, [r.error for r in rows]
    # Every candidate's stored actions carry the sixth agent's choice, and it was applied.
    assert all(r.actions["logit_scale"] in (1.0, 2.0) for r in rows)
    assert sorted(v for v, _ in APPLIED) == sorted(r.actions["logit_scale"] for r in rows)
    assert all(ratio == pytest.approx(v) for v, ratio in APPLIED)
    # The policy that proposed them had six heads (its checkpoint says so).
    names = PPO.load(out / "checkpoint" / "ppo.pt").action_spec.names
    assert names == ("pruning", "quantization", "distillation", "update_scope", "logit_scale")
    report = json.loads((out / "report.json").read_text())
    assert all("logit_scale" in c["actions"] for c in report["candidates"])
    assert (out / report["plots"]["actions"]).is_file()  # drawn with a seventh panel
