"""Memory is named in the unit it holds, MiB (2**20 bytes): runs, configs, profiles and flags
written under the old "_mb" names still load, under the new names and with the same values."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

from test_report import fill

from host.report import render
from host.search_config import SearchConfig


def _to_old_names(db: Path) -> int:
    """Rewrite every JSON text in the store as a version before the rename wrote it."""
    con = sqlite3.connect(db)
    changed = 0
    for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
        for col in con.execute(f"PRAGMA table_info({table})").fetchall():
            if col[2].upper() == "TEXT":
                cur = con.execute(
                    f"UPDATE {table} SET {col[1]} = replace({col[1]}, 'memory_mib', 'memory_mb')"
                    f" WHERE {col[1]} LIKE '%memory_mib%'"
                )
                changed += cur.rowcount
    con.commit()
    con.close()
    return changed


def test_a_run_stored_with_mb_names_renders_as_today(tmp_path: Path) -> None:
    new = tmp_path / "new"
    fill(new, n=10)
    old = tmp_path / "old"
    shutil.copytree(new, old)
    assert _to_old_names(old / "results.sqlite") >= 9  # baseline + every measured candidate
    a, b = render(new), render(old)
    assert a["pareto_front"] and a["pareto_front"] == b["pareto_front"]
    assert a["baseline"] == b["baseline"] and "peak_memory_mib" in json.dumps(a["baseline"])
    assert a["hypervolume"] == b["hypervolume"]
    text = (old / "report.json").read_text()
    assert "memory_mb" not in text and "memory_mib" in text


def test_a_saved_search_config_with_max_memory_mb_resumes() -> None:
    cfg = SearchConfig.from_json(json.dumps({"max_memory_mb": 64.0, "episodes": 8}))
    assert cfg.max_memory_mib == 64.0 and cfg.limits.max_memory_mib == 64.0


def test_a_profile_with_ram_mb_loads(tmp_path: Path) -> None:
    import tomllib

    import profiles

    src = Path(profiles.__file__).parent / "raspberry-pi-4.toml"
    data = tomllib.loads(src.read_text())
    data["ram_mb"] = data.pop("ram_mib")
    assert profiles._validate(data, "old").ram_mib == profiles.load_profile("raspberry-pi-4").ram_mib


def test_the_old_flag_spellings_still_work(capsys) -> None:
    import argparse

    from device_agent.cli import build_parser
    from host.search_args import add_search_arguments

    p = argparse.ArgumentParser()
    add_search_arguments(p)
    assert p.parse_args(["--max-memory-mb", "48"]).max_memory_mib == 48.0
    assert "--max-memory-mb is deprecated, use --max-memory-mib" in capsys.readouterr().err
    assert p.parse_args(["--max-memory-mib", "32"]).max_memory_mib == 32.0
    agent = build_parser().parse_args(["--cache-mb", "8", "--max-chunk-kb", "64"])
    assert (agent.cache_mib, agent.max_chunk_kib) == (8.0, 64.0)


def test_actions_stored_with_the_update_head_load_as_update_scope(tmp_path: Path) -> None:
    """The update-scope head was stored as "update" (also PPO's update and the update's
    size); such a run loads under today's name, and its configuration keeps its config key."""
    from hadmc.search.env import JointAction
    from host.store import ResultsStore

    old = {"pruning": [1.0, 0.5], "quantization": ["int8", "int8"], "fusion": ["none", "none"],
           "distillation": {"temperature": 4.0, "alpha": 0.7}, "update": "bn_bias"}  # fmt: skip
    with ResultsStore(tmp_path) as store:
        cid = store.add_candidate(episode=0, config_key="k", actions=old, status="failed",
                                  error="timeout")
        loaded = store.get(cid.id).actions
    assert loaded["update_scope"] == "bn_bias" and "update" not in loaded
    joint = JointAction.from_dict(old)
    assert joint.update_scope == "bn_bias"
    # The key is computed from the stored names, so a pre-rename run still recognises it.
    assert '"update":"bn_bias"' in joint.canonical_json()
    assert JointAction.from_dict(loaded).config_key("m") == joint.config_key("m")
