"""SearchConfig: built from the CLI, round-trips through run_config.json without the secrets,
and derives the measurement window and the cache key salt every module agrees on."""

from __future__ import annotations

import argparse
import json

from hadmc.device.hal import MeasureOptions
from host.search import add_search_arguments
from host.search_config import SearchConfig


def _cfg(*argv: str) -> SearchConfig:
    p = argparse.ArgumentParser()
    add_search_arguments(p)
    return SearchConfig.from_args(p.parse_args(list(argv)))


def test_cli_defaults_and_types() -> None:
    cfg = _cfg("--episodes", "8", "--max-latency-ms", "2.5", "--token", "s3cret")
    assert cfg.episodes == 8 and cfg.max_latency_ms == 2.5 and cfg.max_accuracy_drop == 1.0
    assert cfg.strategy_label == "ppo+surrogate"
    assert _cfg("--strategy", "grid").strategy_label == "grid"  # grid proposes alone
    assert _cfg("--surrogate", "off").strategy_label == "ppo"
    assert cfg.limits.max_latency_ms == 2.5


def test_json_round_trip_leaves_out_secrets_and_machine_settings() -> None:
    cfg = _cfg("--token", "s3cret", "--host-threads", "1", "--seed", "3", "--json")
    text = cfg.to_json()
    assert "s3cret" not in text and "host_threads" not in text and '"json"' not in text
    back = SearchConfig.from_json(text)
    assert back.seed == 3 and back.token is None and back == cfg.replace(
        token=None, host_threads=None, json=False
    )
    # A run saved before a flag existed keeps today's default for it.
    old = json.loads(text)
    del old["surrogate"]
    assert SearchConfig.from_json(json.dumps(old)).surrogate == "on"


def test_measure_options_and_key_salt() -> None:
    cfg = _cfg("--num-runs", "20", "--min-secs", "0.4", "--warmup-min-secs", "0.1",
               "--num-threads", "2", "--finetune-steps", "7", "--seed", "5")  # fmt: skip
    assert cfg.measure_options() == MeasureOptions(
        threads=2, warmup_runs=10, warmup_min_seconds=0.1, min_runs=20, min_seconds=0.4,
        max_seconds=10.0,
    )  # fmt: skip
    # The exact text of earlier runs, so their stores stay valid caches.
    assert cfg.key_salt() == "onnxruntime|ft=7|seed=5|t=2"
    assert cfg.key_salt() != cfg.replace(seed=6).key_salt()


def test_demo_flag_defaults_and_older_runs() -> None:
    import pytest

    from host.errors import UsageError
    from host.search import _resolve_args

    assert _cfg().demo == "standard" and _cfg("--demo", "tiny").demo == "tiny"
    saved = json.loads(_cfg("--demo", "tiny").to_json())
    assert SearchConfig.from_json(json.dumps(saved)).demo == "tiny"
    # A run saved before --demo existed ran the 32x32 demo, today's "tiny": it resumes on it.
    del saved["demo"]
    assert SearchConfig.from_json(json.dumps(saved)).demo == "tiny"
    p = argparse.ArgumentParser()
    add_search_arguments(p)
    with pytest.raises(UsageError, match="--demo chooses the built-in demo"):
        _resolve_args(p.parse_args(["--model", "m.pt", "--data", "d.npz", "--demo", "tiny"]))
