"""CompressionEnv, the state encoder and the action mapping (no device, no training)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from hadmc.search.observation import (
    FEATURE_NAMES,
    HardwareFeatures,
    LastCandidate,
    ObservationEncoder,
)


def _groups(n: int = 4) -> list[SimpleNamespace]:
    kinds = ["conv", "depthwise", "pointwise", "linear"]
    return [
        SimpleNamespace(
            index=i,
            name=f"g{i}",
            module_names=[f"m{i}"],
            kind=kinds[i % 4],
            out_channels=16 * (i + 1),
            kernel_size=3 if kinds[i % 4] in ("conv", "depthwise") else 1,
            stride=2 if i == 1 else 1,
            macs=1000 * (i + 1) ** 2,
            params=100 * (i + 1),
            position=i / max(1, n - 1),
        )
        for i in range(n)
    ]


HW = HardwareFeatures(cores=4, memory_mib=4096, baseline_latency_ms=2.0, int8_available=True)


def test_state_features_are_normalised_and_track_actions() -> None:
    enc = ObservationEncoder(_groups(), [0.0, 0.3, 0.9, 2.0], HW)
    assert enc.dim == len(FEATURE_NAMES)
    obs0 = enc.encode(0, {}, None)
    assert obs0.shape == (enc.dim,) and obs0.dtype == np.float32
    assert np.all(obs0 >= 0.0) and np.all(obs0 <= 1.0)
    f = dict(zip(FEATURE_NAMES, obs0, strict=True))
    assert f["kind_conv"] == 1.0 and f["kind_depthwise"] == 0.0
    assert f["mean_keep"] == 1.0 and f["frac_int8"] == 0.0 and f["progress"] == 0.0
    assert f["cores"] == pytest.approx(0.25) and f["int8_available"] == 1.0
    so_far = {"pruning": [0.5, 1.0], "quantization": ["int8", "fp32"]}
    obs2 = enc.encode(2, so_far, LastCandidate(0.9, 0.5, 0.4, True))
    f2 = dict(zip(FEATURE_NAMES, obs2, strict=True))
    assert f2["sensitivity"] == pytest.approx(0.9)
    assert f2["mean_keep"] == pytest.approx(0.75) and f2["frac_int8"] == pytest.approx(0.5)
    # MACs kept: shares 1/30 and 4/30 of the group MACs, at keep 0.5 and 1.0.
    assert f2["macs_kept"] == pytest.approx((0.5 * 1 + 1.0 * 4) / 30)
    assert f2["last_lat_ratio"] == pytest.approx(0.25) and f2["last_feasible"] == 1.0
    assert np.all(obs2 >= 0.0) and np.all(obs2 <= 1.0)
    # Sensitivity above 1 (a bad input) is clipped, not propagated.
    f3 = dict(zip(FEATURE_NAMES, enc.encode(3, {}, None), strict=True))
    assert f3["sensitivity"] == 1.0


def test_state_encoder_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="no prunable"):
        ObservationEncoder([], [], HW)
    with pytest.raises(ValueError, match="sensitivities"):
        ObservationEncoder(_groups(), [0.1], HW)


def test_hardware_features_from_sim_info() -> None:
    info = {
        "profile": {"cores": 4, "ram_mib": 4096, "int8_speedup": 2.5, "runtimes": ["onnxruntime"]}
    }
    hw = HardwareFeatures.from_device_info(info, 3.0, "onnxruntime")
    assert hw == HardwareFeatures(4, 4096.0, 3.0, True)
    assert not HardwareFeatures.from_device_info(info, 3.0, "litert").int8_available


def _m():
    """hadmc.search.env and its dependencies (torch, the compression modules) are required: a missing
    one fails here, it does not skip (a skip once hid a broken import)."""
    import hadmc.search.env

    return hadmc.search.env


def test_distillation_mapping_grid() -> None:
    assert _m().map_distillation([4.26, 0.0]) == (4.5, 0.5)
    assert _m().map_distillation([-7.0, 50.0]) == (1.0, 0.95)
    assert _m().map_distillation([99.0, -50.0]) == (20.0, 0.05)
    # Nearby raw samples map to the same configuration (so the store recognises it).
    assert _m().map_distillation([4.1, 0.01]) == _m().map_distillation([3.9, -0.01])
    with pytest.raises(ValueError):
        _m().map_distillation([1.0])
    with pytest.raises(ValueError):
        _m().map_distillation([float("nan"), 0.0])


def _env(outcome_status: str = "measured", n: int = 4, runtime: str = "onnxruntime",
         keep_bound=None) -> tuple:  # fmt: skip
    seen: list = []

    def evaluate(joint, episode):
        seen.append((joint, episode))
        if outcome_status == "failed":
            return _m().EvalOutcome("failed", None, error="device: crashed")
        return _m().EvalOutcome(
            "measured", 0.8, {"accuracy": 0.9}, "1", last=LastCandidate(0.95, 0.5, 0.5, True)
        )

    enc = ObservationEncoder(_groups(n), [0.1 * (i % 5) for i in range(n)], HW)
    return _m().CompressionEnv(enc, runtime, evaluate, keep_bound=keep_bound), seen


def _action(p: int, q: int, f: int = 0) -> dict:
    return {"pruning": p, "quantization": q, "fusion": f,
            "distillation": np.array([6.2, 1.0], np.float32), "update_scope": 1}  # fmt: skip


def test_episode_walks_groups_masks_heads_and_rewards_at_the_end() -> None:
    env, seen = _env()
    # fusion is not offered on onnxruntime: the exporter folds every BN already.
    assert [h.name for h in env.action_spec.heads] == [
        "pruning", "quantization", "distillation", "update_scope",
    ]  # fmt: skip
    assert env.action_spec.head("quantization").size == 2  # fp32/int8: what ORT CPU executes
    obs, info = env.reset()
    assert obs.shape == (env.observation_dim,)
    assert info["head_mask"]["pruning"] and not info["head_mask"]["distillation"]
    picks = [(5, 1), (0, 0), (7, 1), (2, 0)]
    for t, (p, q) in enumerate(picks):
        obs, reward, term, trunc, info = env.step(_action(p, q))
        if t < 3:
            assert reward == 0.0 and not term and not seen
            assert info["head_mask"]["distillation"] == (t == 2)
            assert info["head_mask"]["update_scope"] == (t == 2)
    assert term and not trunc and reward == pytest.approx(0.8)
    joint, episode = seen[0]
    assert episode == 0
    assert joint.keep_ratios == [0.5, 1.0, 0.3, 0.8]
    # 4 groups = 4 stages of one group: each group's own choice.
    assert joint.precisions == ["int8", "fp32", "int8", "fp32"]
    assert joint.fusion == ["none"] * 4
    assert (joint.temperature, joint.alpha, joint.update_scope) == (6.0, 0.75, "last_1")
    assert "discard_episode" not in info
    # The next episode sees the last candidate's metrics in its observation.
    obs, _ = env.reset()
    f = dict(zip(FEATURE_NAMES, obs, strict=True))
    assert f["last_lat_ratio"] == pytest.approx(0.25) and env.episode == 1
    # Same joint action -> same config key; a different model hash -> a different key.
    same = _m().JointAction.from_dict(joint.to_dict())
    assert same.config_key("m") == joint.config_key("m") != joint.config_key("other")


def test_precision_is_chosen_per_stage_so_islands_cannot_form() -> None:
    env, seen = _env(n=10)
    assert env.stages == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
    env.reset()
    acting = []
    for t in range(10):
        _, _, _, _, info = env.step(_action(0, t % 2))  # asks for a new precision every step
        acting.append(env.acting(t)["quantization"])
    assert acting == [True, False, False, True, False, True, False, False, True, False]
    joint = seen[0][0]
    # Stage starts at steps 0, 3, 5, 8 chose fp32, int8, int8, fp32: at most 3 boundaries.
    assert joint.precisions == ["fp32"] * 3 + ["int8"] * 5 + ["fp32"] * 2


def test_litert_offers_fusion_and_one_precision_for_the_whole_model() -> None:
    env, seen = _env(n=6, runtime="litert")
    assert "fusion" in [h.name for h in env.action_spec.heads]
    assert env.stages == [0] * 6
    env.reset()
    for t in range(6):
        env.step(_action(0, 1 if t == 0 else 0, f=2))
    joint = seen[0][0]
    assert joint.precisions == ["int8"] * 6 and joint.fusion == ["conv_bn_act"] * 6


def test_keep_bound_lowers_the_keep_ratio_amc_style() -> None:
    calls = []

    def bound(step, keeps, precisions):
        calls.append((step, list(keeps), list(precisions)))
        return 0.55 if step == 1 else 1.0

    env, seen = _env(keep_bound=bound)
    env.reset()
    for _ in range(4):
        env.step(_action(0, 1))  # keep 1.0 asked everywhere
    joint = seen[0][0]
    assert joint.keep_ratios == [1.0, 0.5, 1.0, 1.0]  # 0.5: the largest choice <= 0.55
    assert calls[1] == (1, [1.0], ["int8", "int8"])  # decided so far + this group's precision


def test_failed_candidate_discards_the_episode() -> None:
    env, _ = _env("failed")
    env.reset()
    for _ in range(4):
        _, reward, term, _, info = env.step(
            {"pruning": 0, "quantization": 0, "distillation": [1.0, 0.0], "update_scope": 0}
        )
    assert term and reward == 0.0 and info["discard_episode"] is True
    assert info["outcome"].error == "device: crashed"


def test_env_rejects_incomplete_actions() -> None:
    env, _ = _env()
    with pytest.raises(RuntimeError):
        env.step({"pruning": 0, "quantization": 0})
    env.reset()
    with pytest.raises(ValueError, match="quantization"):
        env.step({"pruning": 0})


def test_uniform_joint_action() -> None:
    j = _m().JointAction.uniform(3, 0.5, "int8")
    assert j.keep_ratios == [0.5] * 3 and j.precisions == ["int8"] * 3
    assert (j.temperature, j.alpha, j.update_scope) == (4.0, 0.7, "all")


def test_ppo_collects_on_the_env() -> None:
    from hadmc.rl.ppo import PPO, PPOConfig

    env, seen = _env()
    ppo = PPO(env.observation_dim, env.action_spec, PPOConfig(), seed=3)
    stats = ppo.collect(env, 8)
    assert stats.episodes_finished == 2 and len(seen) == 2
    ppo.update()


def test_user_model_loading_errors(tmp_path) -> None:
    import torch

    from host.user_model import UserModelError, load_model_and_data, load_user_model

    with pytest.raises(UserModelError, match="pkg.module:factory"):
        load_user_model("no_colon_here")
    with pytest.raises(UserModelError, match="not found"):
        load_user_model(str(tmp_path / "missing.pt"))
    with pytest.raises(UserModelError, match="cannot import"):
        load_user_model("hadmc_no_such_module:make")
    with pytest.raises(UserModelError, match="no callable"):
        load_user_model("hadmc.search.env:no_such_factory")
    torch.save({"not": "a module"}, tmp_path / "state.pt")
    with pytest.raises(UserModelError, match="not an nn.Module"):
        load_user_model(str(tmp_path / "state.pt"))
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten())
    torch.save(net, tmp_path / "net.pt")
    loaded = load_user_model(str(tmp_path / "net.pt"))
    assert isinstance(loaded, torch.nn.Sequential) and not loaded.training
    with pytest.raises(UserModelError, match="needs --data"):
        load_model_and_data(str(tmp_path / "net.pt"), None)
    with pytest.raises(UserModelError, match="needs --model"):
        load_model_and_data(None, str(tmp_path / "d.npz"))
