"""One search run's setup: model, data, baseline, sensitivity table, surrogate, environment and
strategy (chosen here, in one place). The loop is ``host.search_loop``; the outputs (Pareto
artifacts, best model, report, table, JSON summary) are ``host.search_outputs``."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hadmc.compress.distill import teacher_logits_for
from hadmc.compress.passes.quantization_pass import QuantizationPass
from hadmc.compress.pruning import find_layer_groups, unprunable_groups
from hadmc.compress.registry import CompressionPass, resolve_passes
from hadmc.device.chunking import chunk_file
from hadmc.device.hal import Device
from hadmc.search.candidate import (
    ARTIFACT_EXT,
    example_input_for,
    export_baseline,
    model_hash,
)
from hadmc.search.env import CompressionEnv, EvalOutcome
from hadmc.search.observation import HardwareFeatures, ObservationEncoder
from hadmc.search.pareto import ParetoArchive
from hadmc.search.reward import Objectives, RewardConfig
from hadmc.surrogate.accuracy import SENSITIVITY_KEEPS
from host.search_config import SearchConfig
from host.search_eval import CandidateEvaluator, EvalContext, artifact_spec, metrics_of
from host.store import ResultsStore
from host.strategies import Proposal
from host.user_model import UserModelError, load_model_and_data, near_chance

# Validation images the per-group sensitivity table is measured on (see _sensitivity_table).
SENSITIVITY_IMAGES = 512

# PPO step size for the search: 1e-3 rather than CleanRL's 2.5e-4. Why: a search makes a few
# hundred decisions in all (32 episodes x ~20 steps), not millions; at 2.5e-4, annealed over 4
# updates of 12 Adam steps each, the heads (initialised at gain 0.01) barely leave the uniform
# initial policy. Measured on the default run (seed 0, 32 episodes): 2.5e-4 with an update
# every 8 episodes reached HV 3.52, 1e-3 with an update every 4 reached HV 3.72; in neither did
# the mean reward of the second half beat the first, so 32 episodes remain a short search. The
# clipped objective still bounds how far one update can move the policy.
SEARCH_PPO_LEARNING_RATE = 1e-3


class SearchRun:
    """Holds the state of one (possibly resumed) search; see ``host.search``."""

    def __init__(
        self,
        cfg: SearchConfig,
        run_dir: Path,
        device: Device,
        device_info: dict[str, Any],
        resumed: bool,
        hooks: dict[str, Any],
        passes: Sequence[CompressionPass] | None = None,
    ) -> None:
        # Host-side torch work (training, fine-tuning, evaluation) never overlaps a measurement
        # (the loop is sequential), so by default it takes every core: on a quiet 2-core machine
        # 2 threads fine-tuned 1.4x faster than 1. On a machine shared with other work, fewer
        # is better (measured under load 4-7: 2 threads ~4x slower than 1): --host-threads.
        import os

        import torch

        args = cfg  # short local name in this setup; everything reads the typed config
        host_threads = cfg.host_threads or os.cpu_count() or 1
        torch.set_num_threads(max(1, int(host_threads)))
        from hadmc.host_compute import resolve_host_device

        self.host_device = resolve_host_device(cfg.host_device)
        self.cfg, self.run_dir, self.resumed, self.hooks = cfg, run_dir, resumed, hooks
        # The compression passes (agents) of this run: the registry unless a caller passed
        # its own (a resumed run must be given the same ones).
        self.passes = resolve_passes(passes)
        # The quantization head chooses among what the target really executes (GetInfo):
        # fp32/int8 on CPU targets, plus fp16 on GPU ones (host.targets.search_precisions).
        from host.targets import search_precisions

        precisions = search_precisions(device_info, cfg.target, cfg.runtime)
        self.passes = tuple(
            QuantizationPass(precisions) if type(p) is QuantizationPass and p.precisions is None
            else p for p in self.passes
        )  # fmt: skip
        quant = next((p for p in self.passes if p.name == "quantization"), None)
        self.precisions = quant.choices(cfg.runtime) if quant is not None else precisions
        if "fp16" in self.precisions:
            self._say(f"setup: {cfg.target} executes {'/'.join(self.precisions)}; the "
                      "quantization agent chooses among them")  # fmt: skip
        self.ext = ARTIFACT_EXT[args.runtime]
        self._say(
            "setup: model and data"
            + (" (the demo trains on first use, 1-3 min, then is cached)" if not args.model else "")
        )
        self.model, self.data, self.model_label = load_model_and_data(
            args.model, args.data, seed=args.seed, progress=not hooks.get("quiet"),
            weights=args.weights, image_size=cfg.image_size, mean=cfg.mean, std=cfg.std,
            demo=cfg.demo,
        )  # fmt: skip
        if getattr(self.data, "files", None):  # an image folder split here: keep the split
            (run_dir / "data_splits.json").write_text(json.dumps(
                {"classes": self.data.class_names, "files": self.data.files}, indent=1
            ))  # fmt: skip
        example = example_input_for(self.data.input_shape)
        self.groups = find_layer_groups(self.model, example)
        self.unprunable = [dataclasses.asdict(g) for g in unprunable_groups(self.model, example)]
        if self.unprunable:
            self._say(
                f"setup: {len(self.unprunable)} layer group(s) stay unpruned, outside the "
                "pruning head: "
                + "; ".join(f"{g['name']} ({g['reason']})" for g in self.unprunable)
            )
        if not self.groups:
            raise UserModelError(
                "no layer group of this model can be pruned safely"
                + (f" ({self.unprunable[0]['reason']})" if self.unprunable else "")
                + "; the search needs at least one: see docs/user-models.md"
            )
        self.model_hash = model_hash(self.model)
        self.store = ResultsStore(run_dir)
        self.limits = cfg.limits
        options = cfg.measure_options()

        # Baseline: the uncompressed fp32 model on the same device, measured once per run.
        base_path = run_dir / f"baseline.{self.ext}"
        baseline_built = export_baseline(
            self.model, self.data, run_dir / "baseline", runtime=args.runtime, threads=args.threads
        )
        stored = self.store.run_info()["baseline"]
        pool = getattr(device, "measure_baselines", None)  # host.pool.DevicePool
        if pool is not None:
            # Every board measures the baseline, also on resume: a candidate's latency ratio
            # is against its own board, and the report shows the spread between boards.
            self._say(f"setup: the baseline on each of the {len(device.boards)} boards")
            pool_baseline = pool(artifact_spec(baseline_built, args.runtime), options)
            device_info = {**device_info, "pool": device.describe()}
        if stored is None:
            m = (pool_baseline if pool is not None
                 else device.measure(artifact_spec(baseline_built, args.runtime), options))  # fmt: skip
            # update_bytes 0: the baseline is what is deployed, updating to it sends nothing.
            stored = metrics_of(baseline_built, m, update_bytes=0)
            self.store.set_run(
                {**json.loads(cfg.to_json()), "model_label": self.model_label,
                 "model_hash": self.model_hash, "layer_groups": len(self.groups),
                 "unprunable_groups": self.unprunable},  # fmt: skip  (no token: to_json drops it)
                baseline=stored,
                device=device_info,
            )
        self.baseline_metrics = stored
        self.baseline = Objectives.from_metrics(stored)
        self._say(
            f"setup: fp32 baseline {100 * self.baseline.accuracy:.2f} % val accuracy,"
            f" {self.baseline.latency_ms:.3f} ms p50 on {device.name}; per-group sensitivity next"
        )
        n_classes = int(self.data.num_classes)
        if near_chance(self.baseline.accuracy, len(self.data.y_val), n_classes):
            print(
                f"hadmc-host search: warning: the baseline's validation accuracy "
                f"({100 * self.baseline.accuracy:.1f} %) is near chance "
                f"({100 / n_classes:.1f} % for {n_classes} classes): --model must return the "
                "trained model, or pass its weights with --weights state_dict.pt",
                file=sys.stderr,
                flush=True,
            )

        from host.int8_probe import probe_for_search

        # Stages whose int8 is slower on this device stay float in every candidate.
        self.int8_probe, self.passes = probe_for_search(
            self, device, device_info, options, artifact_spec(baseline_built, args.runtime))
        self.sensitivity_table = self._sensitivity_table(example)
        # The state's per-group sensitivity: the drop at keep 0.5 (a column of the table).
        sensitivity = [row[SENSITIVITY_KEEPS.index(0.5)] for row in self.sensitivity_table]
        hardware = HardwareFeatures.from_device_info(
            device_info, self.baseline.latency_ms, args.runtime
        )
        self.encoder = ObservationEncoder(self.groups, sensitivity, hardware, self.passes)
        self.archive = ParetoArchive(self.baseline)
        for rec in self.store.candidates("measured"):  # resume: everything measured so far
            self.archive.add(rec.id, Objectives.from_metrics(rec.metrics or {}))
        ctx = EvalContext(
            model=self.model,
            data=self.data,
            groups=self.groups,
            model_hash=self.model_hash,
            key_salt=cfg.key_salt(),
            runtime=args.runtime,
            finetune_steps=args.finetune_steps,
            seed=args.seed,
            threads=args.threads,
            options=options,
            baseline=self.baseline,
            baseline_manifest=chunk_file(base_path),
            reward_config=RewardConfig(limits=self.limits),
            candidates_dir=run_dir / "candidates",
            teacher_logits=teacher_logits_for(self.model, self.data, self.host_device)
            if args.finetune_steps > 0
            else None,
            passes=self.passes,
            host_device=self.host_device,
            reference=artifact_spec(baseline_built, args.runtime)
            if cfg.paired_latency == "on"
            else None,
        )
        reopen = None
        if args.device is None:
            from host.devices import open_device

            reopen = lambda: open_device(None)  # noqa: E731 - a fresh local agent
        self.evaluator = CandidateEvaluator(
            ctx, self.store, self.archive, device, reopen, on_measured=hooks.get("on_measured")
        )
        from host.build_workers import BuildInputs, make_builders

        self.builders = make_builders(cfg, BuildInputs(
            model=self.model, data=self.data, groups=self.groups, runtime=args.runtime,
            finetune_steps=args.finetune_steps, seed=args.seed, threads=args.threads,
            teacher_logits=ctx.teacher_logits, passes=tuple(self.passes),
            host_device=self.host_device, torch_threads=1,
        ))  # fmt: skip
        if self.builders is not None:
            self.evaluator.builder = self.builders.build
            self._say(f"setup: {self.builders.width} build workers"
                      + (f" on Ray ({cfg.ray})" if cfg.ray else ""))  # fmt: skip
        self.surrogate = self._make_surrogate(example)
        self.use_surrogate = cfg.uses_surrogate
        self.strategy_label = cfg.strategy_label
        keep_bound = None
        if self.use_surrogate and self.limits.max_latency_ms is not None:
            keep_bound = self.surrogate.keep_bound(self.limits.max_latency_ms)
        from host.strategies import _deferred

        self.env = CompressionEnv(
            self.encoder, args.runtime, _deferred, keep_bound=keep_bound, passes=self.passes
        )
        self.budget = int(args.episodes)
        self.batch = int(args.episodes_per_update)
        self.strategy = self._make_strategy()
        self.stop_reason = ""
        self.proposals = 0

    def _say(self, message: str) -> None:
        """One line on stderr for a setup stage (the episode bar starts after setup)."""
        if not self.hooks.get("quiet"):
            print(message, file=sys.stderr, flush=True)

    def _sensitivity_table(self, example: Any) -> list[list[float]]:
        """Drop per group per keep ratio (BN re-estimated, no fine-tune): from the run dir
        (resume), else a cache keyed by model hash and data (the same model and data always
        give the same numbers), else measured (``hadmc.surrogate.accuracy``)."""
        import hashlib

        from hadmc.models import default_cache_dir
        from hadmc.surrogate.accuracy import measure_sensitivity_table

        # 512 images (SENSITIVITY_IMAGES): a per-group drop is summed over ~20 groups, so each
        # needs a standard error well under a point (256 images gave ~1 point each). Against
        # 1024 on the 48x48 demo (2026-12-03): 195 s instead of about 330 s of a default run's
        # setup, Spearman 0.99 / 0.92 / 0.98 per keep column, 0.18 points mean difference.
        x, y = self.data.x_val[:SENSITIVITY_IMAGES], self.data.y_val[:SENSITIVITY_IMAGES]
        calib = self.data.x_calib
        digest = hashlib.sha256(x.tobytes() + y.tobytes() + calib.tobytes()).hexdigest()[:16]
        name = f"{self.model_hash[:32]}-{digest}-k{'-'.join(map(str, SENSITIVITY_KEEPS))}.json"
        cached = default_cache_dir() / "sensitivity" / name
        run_copy = self.run_dir / "sensitivity.json"
        for path in (run_copy, cached):
            if path.is_file():
                values = json.loads(path.read_text())
                if len(values) == len(self.groups) and all(
                    isinstance(r, list) and len(r) == len(SENSITIVITY_KEEPS) for r in values
                ):
                    run_copy.write_text(json.dumps(values))
                    return values
        values = measure_sensitivity_table(
            self.model, self.groups, example, calib, x, y, device=self.host_device
        )
        run_copy.write_text(json.dumps(values))
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_text(json.dumps(values))
        except OSError:
            pass  # a read-only cache only costs time
        return values

    def _make_surrogate(self, example: Any) -> Any:
        """Latency model + accuracy proxy; built for every strategy so that every candidate
        carries the prediction made before it was measured (``metrics["predicted"]``)."""
        from hadmc.surrogate.accuracy import AccuracyProxy
        from hadmc.surrogate.latency import LatencyModel
        from hadmc.surrogate.model import Surrogate
        from hadmc.surrogate.structure import ModelStructure

        structure = ModelStructure(self.model, example)
        n = structure.n_groups
        b = self.baseline
        latency = LatencyModel(
            structure.features([1.0] * n, ["fp32"] * n),
            b.latency_ms, float(b.size_bytes), b.memory_mib,
        )  # fmt: skip
        proxy = AccuracyProxy(self.sensitivity_table, b.accuracy)
        surrogate = Surrogate(structure, latency, proxy, b, self.evaluator.ctx.reward_config)
        return surrogate

    def _make_strategy(self) -> Any:
        """The one place where ``--strategy`` / ``--surrogate`` decide what proposes."""
        from host.strategies import (
            GridStrategy,
            OptunaStrategy,
            PPOStrategy,
            RandomStrategy,
            StrategyContext,
        )

        args = self.cfg
        ctx = StrategyContext(
            env=self.env,
            key=self.evaluator.key,
            known=set(),  # starts empty: a resumed run replays (host.search_loop)
            seed=int(args.seed),
            surrogate=self.surrogate if self.use_surrogate else None,
            max_latency_ms=self.limits.max_latency_ms,
            runtime=args.runtime,
            precisions=self.precisions,
            n_groups=len(self.groups),
            archive=self.archive,
        )
        if args.strategy == "grid":
            s = self.surrogate
            return GridStrategy(
                ctx, lambda j: s.latency.predict_latency_ms(s.structure.features(
                    j.keep_ratios, j.precisions))
            )  # fmt: skip
        if args.strategy == "optuna":
            return OptunaStrategy(ctx)
        if args.strategy == "random":
            return RandomStrategy(ctx)
        return PPOStrategy(ctx, self.ppo_agent(int(args.seed)))

    def ppo_agent(self, seed: int) -> Any:
        """A fresh PPO controller for this run's env, as ``--strategy ppo`` builds it
        (``bench/surrogate_optimiser.py`` builds more, one per seed)."""
        from hadmc.rl.ppo import PPO, PPOConfig

        updates = math.ceil(self.budget / self.batch)
        config = PPOConfig(
            learning_rate=SEARCH_PPO_LEARNING_RATE,
            # gamma = lambda = 1: one terminal reward per episode, as in AMC; every step's
            # advantage is R - V(s_t), so the first group's choice gets the whole signal
            # (at 0.99 / 0.95 over 20 silent steps it got about 0.31 of it).
            gamma=1.0,
            gae_lambda=1.0,
            # With the surrogate the policy makes many inner updates: a constant step size.
            anneal_lr=not self.use_surrogate,
            total_updates=updates,
            gaussian_init_mean={
                p.name: list(p.init_mean)
                for p in self.passes
                if p.init_mean is not None and p.name in self.env.heads
            },
        )
        return PPO(self.env.observation_dim, self.env.action_spec, config, seed)

    def evaluate(self, proposal: Proposal, episode: int) -> EvalOutcome:
        """One real candidate: the surrogate's prediction is made first and stored beside it."""
        return self.evaluator(proposal.joint, episode, predicted=self.predicted(proposal))

    def predicted(self, proposal: Proposal) -> dict[str, Any]:
        pred = self.surrogate.predict(proposal.joint).to_dict()
        pred["source"] = proposal.source
        return pred

    @property
    def build_width(self) -> int:
        """Candidates built at once: ``--host-workers`` / ``--ray`` workers, else 1."""
        return self.builders.width if self.builders is not None else 1

    def close(self) -> None:
        if self.builders is not None:
            self.builders.close()
            self.builders = None

    @property
    def measure_width(self) -> int:
        """Candidates measured at once: a pool's live boards, else 1."""
        return int(getattr(self.evaluator.device, "concurrency", 1))

    @property
    def overlap_measurements(self) -> bool:
        """Whether builds overlap measurements (``host.search_loop``): for a pool of boards,
        and for one agent on another machine. Not for the embedded local agent, a sim: device
        or one agent on loopback, which share this machine's cores with the fine-tunes."""
        from host.pool import split_devices

        addresses = split_devices(self.cfg.device)
        if len(addresses) > 1:
            return True
        return bool(addresses) and not addresses[0].startswith("sim:") and not _is_loopback(
            addresses[0]
        )

    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "checkpoint"

    def run(self) -> dict[str, Any]:
        from host.search_loop import run_loop
        from host.search_outputs import summary

        run_loop(self)
        return summary(self)

    def finish(self, summary: dict[str, Any]) -> None:
        from host.search_outputs import finish

        finish(self, summary)


def _is_loopback(address: str) -> bool:
    import ipaddress

    from host.devices import parse_address

    host = parse_address(address)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: assume another machine
