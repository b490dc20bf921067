"""``SearchConfig``: the typed, frozen configuration of one search, built once from the CLI.

Everything downstream (setup, loop, outputs) reads this instead of an ``argparse.Namespace``.
It round-trips through ``run_config.json`` for ``--resume`` (``to_json`` / ``from_json``, the
secrets and per-machine settings left out), and derives the two things that must agree
everywhere: the measurement window (``measure_options``) and the candidate cache key salt
(``key_salt``: whatever besides the model and the joint action shapes an artifact or its
numbers, so a store hit is only ever a candidate built and measured the same way).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hadmc.device.hal import MeasureOptions
from hadmc.search.reward import Limits
from host.legacy import renamed_keys  # max_memory_mb: the name before it said MiB

# Fields that are never written to run_config.json: a secret, and how this machine runs.
NOT_SAVED = ("token", "host_threads", "host_device", "host_workers", "ray", "ray_gpus_per_build",
             "json", "resume", "out")


@dataclass(frozen=True)
class SearchConfig:
    """One search (every field is a ``hadmc-host search`` flag of the same name)."""

    model: str | None = None
    demo: str = "standard"  # the built-in demo without --model (hadmc.models.DEMOS)
    weights: str | None = None  # a state_dict for the --model factory
    data: str | None = None
    image_size: int | None = None  # image folders
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    device: str | None = None  # one address, or a pool's addresses joined by ","
    allow_mixed_pool: bool = False
    fleet_objective: str = "worst"  # a mixed pool's latency: the worst kind's, or the mean
    token: str | None = None
    runtime: str = "onnxruntime"
    target: str | None = None  # "<runtime>:<accelerator>"; None: the runtime's CPU target
    threads: int = 1
    host_threads: int | None = None
    host_device: str = "auto"  # hadmc.host_compute: where host torch runs
    host_workers: int | None = None  # candidates built at once in worker processes
    ray: str | None = None  # "auto" | "local" | a cluster address: builds as Ray actors
    ray_gpus_per_build: float = 0.0
    episodes: int = 16  # the budget: real candidates built and measured
    episodes_per_update: int = 4
    max_latency_ms: float | None = None
    max_accuracy_drop: float | None = 1.0
    max_memory_mib: float | None = None
    strategy: str = "ppo"
    surrogate: str = "on"
    int8_probe: str = "on"  # measure which stages lose with int8 at setup (host.int8_probe)
    paired_latency: str = "on"  # candidates timed interleaved with the baseline (--paired-latency)
    seed: int = 0
    finetune_steps: int = 20
    measure_runs: int = 50
    measure_seconds: float = 1.0
    warmup_seconds: float = 0.5
    json: bool = False
    out: str | None = None
    resume: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SearchConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        given = {k: v for k, v in vars(args).items() if k in names}
        if isinstance(given.get("device"), list):  # --device repeated: a pool of boards
            given["device"] = ",".join(given["device"]) or None
        return cls(**given)

    def to_json(self) -> str:
        d = {k: v for k, v in dataclasses.asdict(self).items() if k not in NOT_SAVED}
        return json.dumps(d, indent=2)

    @classmethod
    def from_json(cls, text: str, **overrides: Any) -> SearchConfig:
        """A saved run's configuration; keys it lacks keep today's defaults."""
        names = {f.name for f in dataclasses.fields(cls)}
        saved = {k: v for k, v in renamed_keys(json.loads(text)).items() if k in names}
        # Runs saved before --paired-latency existed timed candidates alone: a resumed one
        # keeps doing so, so that its candidates stay comparable with each other.
        saved.setdefault("paired_latency", "off")
        # Runs saved before --demo existed ran today's "tiny" demo (32x32).
        saved.setdefault("demo", "tiny")
        # ... and without the int8 probe: their candidates keep their precisions.
        saved.setdefault("int8_probe", "off")
        return cls(**{**saved, **overrides})

    def replace(self, **changes: Any) -> SearchConfig:
        return dataclasses.replace(self, **changes)

    @property
    def limits(self) -> Limits:
        return Limits(self.max_latency_ms, self.max_accuracy_drop, self.max_memory_mib)

    @property
    def uses_surrogate(self) -> bool:
        """The surrogate ranks proposals for ppo and random; grid and optuna propose alone."""
        return self.surrogate == "on" and self.strategy in ("ppo", "random")

    @property
    def strategy_label(self) -> str:
        return self.strategy + ("+surrogate" if self.uses_surrogate else "")

    def measure_options(self) -> MeasureOptions:
        """The measurement window of ``--num-runs/--min-secs/--warmup-min-secs``."""
        return MeasureOptions(
            threads=self.threads,
            warmup_runs=10,
            warmup_min_seconds=self.warmup_seconds,
            min_runs=self.measure_runs,
            min_seconds=self.measure_seconds,
            max_seconds=max(10.0, 2 * self.measure_seconds),
            target=self.target or "",
        )

    def key_salt(self) -> str:
        """Runtime, fine-tune steps, seed and device threads: the same text earlier runs used,
        so their stores stay valid caches."""
        salt = f"{self.runtime}|ft={self.finetune_steps}|seed={self.seed}|t={self.threads}"
        return salt + (f"|target={self.target}" if self.target else "")

    def run_dir_default(self, stamp: str) -> Path:
        return Path(self.out or f"outputs/run-{stamp}")
