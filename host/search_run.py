"""One search run: setup (model, baseline, sensitivity, env), the PPO / random loop with
checkpoints, and the outputs (Pareto artifacts, best model, report, table, JSON summary)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from hadmc.candidate import (
    ARTIFACT_EXT,
    example_input_for,
    export_baseline,
    measure_sensitivity,
    model_hash,
)
from hadmc.chunking import chunk_file
from hadmc.compress.distill import teacher_logits_for
from hadmc.compress.pruning import find_layer_groups
from hadmc.env import DISTILLATION_INIT_RAW, CompressionEnv, EvalOutcome, JointAction
from hadmc.hal import Device
from hadmc.pareto import ParetoArchive
from hadmc.reward import Limits, Objectives, RewardConfig
from hadmc.state import HardwareFeatures, StateEncoder
from host.search_eval import CandidateEvaluator, EvalContext, copy_artifact
from host.search_table import search_front_table
from host.store import ResultsStore
from host.user_model import load_model_and_data

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
        args: argparse.Namespace,
        run_dir: Path,
        device: Device,
        device_info: dict[str, Any],
        resumed: bool,
        hooks: dict[str, Any],
    ) -> None:
        # Host-side torch work (training, fine-tuning, evaluation) never overlaps a measurement
        # (the loop is sequential), so by default it takes every core: on a quiet 2-core machine
        # 2 threads fine-tuned 1.4x faster than 1. On a machine shared with other work, fewer
        # is better (measured under load 4-7: 2 threads ~4x slower than 1): --host-threads.
        import os

        import torch

        from host.search import measure_options

        host_threads = getattr(args, "host_threads", None) or os.cpu_count() or 1
        torch.set_num_threads(max(1, int(host_threads)))
        self.args, self.run_dir, self.resumed, self.hooks = args, run_dir, resumed, hooks
        self.ext = ARTIFACT_EXT[args.runtime]
        self._say(
            "setup: model and data"
            + (" (the demo trains on first use, 1-2 min, then is cached)" if not args.model else "")
        )
        self.model, self.data, self.model_label = load_model_and_data(
            args.model, args.data, seed=args.seed, progress=not hooks.get("quiet")
        )
        example = example_input_for(self.data.input_shape)
        self.groups = find_layer_groups(self.model, example)
        self.model_hash = model_hash(self.model)
        self.store = ResultsStore(run_dir)
        self.limits = Limits(args.max_latency_ms, args.max_accuracy_drop, args.max_memory_mb)
        options = measure_options(args)

        # Baseline: the uncompressed fp32 model on the same device, measured once per run.
        base_path = run_dir / f"baseline.{self.ext}"
        baseline_built = export_baseline(
            self.model, self.data, run_dir / "baseline", runtime=args.runtime, threads=args.threads
        )
        stored = self.store.run_info()["baseline"]
        if stored is None:
            from host.search_eval import artifact_spec, metrics_of

            m = device.measure(artifact_spec(baseline_built, args.runtime), options)
            # update_bytes 0: the baseline is what is deployed, updating to it sends nothing.
            stored = metrics_of(baseline_built, m, update_bytes=0)
            self.store.set_run(
                {**vars(args), "model_label": self.model_label, "model_hash": self.model_hash},
                baseline=stored,
                device=device_info,
            )
        self.baseline_metrics = stored
        self.baseline = Objectives.from_metrics(stored)
        self._say(
            f"setup: fp32 baseline {100 * self.baseline.accuracy:.2f} % val accuracy,"
            f" {self.baseline.latency_ms:.3f} ms p50 on {device.name}; per-group sensitivity next"
        )

        sensitivity = self._sensitivity(example)
        hardware = HardwareFeatures.from_device_info(
            device_info, self.baseline.latency_ms, args.runtime
        )
        self.encoder = StateEncoder(self.groups, sensitivity, hardware)
        self.archive = ParetoArchive(self.baseline)
        for rec in self.store.candidates("measured"):  # resume: everything measured so far
            self.archive.add(rec.id, Objectives.from_metrics(rec.metrics or {}))
        ctx = EvalContext(
            model=self.model,
            data=self.data,
            groups=self.groups,
            model_hash=self.model_hash,
            key_salt=f"{args.runtime}|ft={args.finetune_steps}|seed={args.seed}|t={args.threads}",
            runtime=args.runtime,
            finetune_steps=args.finetune_steps,
            seed=args.seed,
            threads=args.threads,
            options=options,
            baseline=self.baseline,
            baseline_manifest=chunk_file(base_path),
            reward_config=RewardConfig(limits=self.limits),
            candidates_dir=run_dir / "candidates",
            teacher_logits=teacher_logits_for(self.model, self.data)
            if args.finetune_steps > 0
            else None,
        )
        reopen = None
        if args.device is None:
            from host.devices import open_device

            reopen = lambda: open_device(None)  # noqa: E731 - a fresh local agent
        self.evaluator = CandidateEvaluator(
            ctx, self.store, self.archive, device, reopen, on_measured=hooks.get("on_measured")
        )
        self.env = CompressionEnv(self.encoder, args.runtime, self._evaluate)
        self._progress: Any = None
        self._task: Any = None

    def _say(self, message: str) -> None:
        """One line on stderr for a setup stage (the episode bar starts after setup)."""
        if not self.hooks.get("quiet"):
            print(message, file=sys.stderr, flush=True)

    def _sensitivity(self, example: Any) -> list[float]:
        """Per-group sensitivity: from the run dir (resume), else a cache keyed by model hash
        and validation data (the same model and data always give the same numbers), else
        measured (one prune + evaluation per group)."""
        import hashlib

        from hadmc.models import default_cache_dir

        x, y = self.data.x_val[:256], self.data.y_val[:256]
        data_hash = hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()[:16]
        cached = default_cache_dir() / "sensitivity" / f"{self.model_hash[:32]}-{data_hash}.json"
        run_copy = self.run_dir / "sensitivity.json"
        for path in (run_copy, cached):
            if path.is_file():
                values = json.loads(path.read_text())
                if len(values) == len(self.groups):
                    run_copy.write_text(json.dumps(values))
                    return values
        values = measure_sensitivity(self.model, self.groups, example, x, y)
        run_copy.write_text(json.dumps(values))
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_text(json.dumps(values))
        except OSError:
            pass  # a read-only cache only costs time
        return values

    # -- progress -----------------------------------------------------------------------
    def _evaluate(self, joint: JointAction, episode: int) -> EvalOutcome:
        out = self.evaluator(joint, episode)
        if self._progress is not None:
            front = self.archive.front()
            best = max(front, key=lambda e: e.objectives.accuracy, default=None)
            desc = f"ep {episode + 1}/{self.args.episodes}"
            if best is not None:
                fastest = min(e.objectives.latency_ms for e in front)
                desc += (
                    f" best acc {100 * best.objectives.accuracy:.1f}% "
                    f"fastest {fastest:.3f} ms HV {self.archive.hypervolume():.3f}"
                )
            self._progress.update(self._task, advance=1, description=desc)
            if not self._progress.console.is_terminal:
                # Piped or redirected (CI, nohup, | tee): a live bar draws nothing there, so
                # the same line goes out once per episode instead.
                self._progress.console.print(
                    f"{desc} [{out.status}]", highlight=False, markup=False
                )
        return out

    # -- checkpoints ----------------------------------------------------------------------
    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "checkpoint"

    def _save_checkpoint(self, episodes_done: int, agent: Any) -> None:
        self.ckpt_dir.mkdir(exist_ok=True)
        state: dict[str, Any] = {
            "episodes_done": episodes_done,
            "env": self.env.state_dict(),
            "archive_ids": [e.candidate_id for e in self.archive.entries],
            "measurements_total": self.store.count(),
        }
        if self.args.strategy == "ppo":
            agent.save(self.ckpt_dir / "ppo.pt")
        else:
            state["rng"] = agent.rng.bit_generator.state
        tmp = self.ckpt_dir / "state.json.tmp"
        tmp.write_text(json.dumps(state, default=int))
        tmp.replace(self.ckpt_dir / "state.json")  # atomic: a kill never leaves half a file

    def _load_checkpoint(self, agent: Any) -> tuple[int, Any]:
        path = self.ckpt_dir / "state.json"
        if not path.is_file():
            return 0, agent
        state = json.loads(path.read_text())
        self.env.load_state_dict(state["env"])
        if self.args.strategy == "ppo":
            from hadmc.ppo import PPO

            agent = PPO.load(self.ckpt_dir / "ppo.pt")
        else:
            agent.rng.bit_generator.state = state["rng"]
        return int(state["episodes_done"]), agent

    # -- the loop -------------------------------------------------------------------------
    def _make_agent(self) -> Any:
        if self.args.strategy == "ppo":
            from hadmc.ppo import PPO, PPOConfig

            updates = math.ceil(self.args.episodes / self.args.episodes_per_update)
            config = PPOConfig(
                learning_rate=SEARCH_PPO_LEARNING_RATE,
                total_updates=updates,
                gaussian_init_mean={"distillation": list(DISTILLATION_INIT_RAW)},
            )
            return PPO(self.env.observation_dim, self.env.action_spec, config, self.args.seed)
        from hadmc.policy import RandomPolicy

        return RandomPolicy(self.env.action_spec, seed=self.args.seed)

    def _random_episode(self, agent: Any) -> None:
        obs, info = self.env.reset()
        done = False
        while not done:
            action = agent.act(info.get("head_mask"))
            obs, _, done, _, info = self.env.step(action)

    def run(self) -> dict[str, Any]:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        args = self.args
        agent = self._make_agent()
        done, agent = self._load_checkpoint(agent)
        self.env.episode = done
        n = len(self.groups)
        console = Console(stderr=True)
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=bool(self.hooks.get("quiet")),
        ) as progress:
            self._progress = progress
            self._task = progress.add_task("search", total=args.episodes, completed=done)
            while done < args.episodes:
                target = min(done + args.episodes_per_update, args.episodes)
                if args.strategy == "ppo":
                    # Stop the rollout at the episode target: an episode discarded for a
                    # device failure still counts as proposed (equal footing with random).
                    agent.collect(
                        self.env,
                        (target - done) * n,
                        callback=lambda t, tg=target: not (t.terminated and self.env.episode >= tg),
                    )
                    if len(agent.buffer):
                        agent.update()
                else:
                    while self.env.episode < target:
                        self._random_episode(agent)
                done = self.env.episode
                self._save_checkpoint(done, agent)
        self._progress = None
        return self.summary()

    # -- outputs --------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        rows = {r.id: r for r in self.store.candidates()}
        front = []
        for e in sorted(self.archive.front(), key=lambda e: e.objectives.latency_ms):
            rec = rows[e.candidate_id]
            front.append(
                {
                    "id": rec.id,
                    "artifact": rec.artifact_path,
                    **e.objectives.to_dict(),
                    "precision": (rec.metrics or {}).get("precision"),
                    "feasible": (rec.metrics or {}).get("feasible"),
                    "reward": rec.reward,
                    "actions": rec.actions,
                }
            )
        # Chosen like host.report does by default: highest reward among feasible front members.
        best = self.archive.best_under(self.limits, score=lambda e: rows[e.candidate_id].reward)
        b = self.baseline
        return {
            "run_dir": str(self.run_dir),
            "strategy": self.args.strategy,
            "device": self.evaluator.device.name,
            "model": self.model_label,
            "episodes": self.args.episodes,
            "candidates": len(rows),
            "measured": sum(r.status == "measured" for r in rows.values()),
            "failed": sum(r.status == "failed" for r in rows.values()),
            "measurements_this_process": self.evaluator.measurements,
            "cache_hits": self.evaluator.cache_hits,
            "hypervolume": self.archive.hypervolume(),
            "hypervolume_history": [h for _, _, h in self.archive.history],
            "baseline": b.to_dict(),
            "front": front,
            "best": None
            if best is None
            else {
                "id": best.candidate_id,
                **best.objectives.to_dict(),
                "speedup": b.latency_ms / best.objectives.latency_ms,
                "accuracy_drop_points": 100 * (b.accuracy - best.objectives.accuracy),
            },
        }

    def finish(self, summary: dict[str, Any]) -> None:
        from rich.console import Console

        pareto_dir = self.run_dir / "pareto"
        for row in summary["front"]:
            row["pareto_path"] = str(
                copy_artifact(row["artifact"], pareto_dir / f"candidate-{row['id']}.{self.ext}")
            )
        best = summary["best"]
        if best is not None:
            rec = self.store.get(int(best["id"]))
            assert rec is not None and rec.artifact_path
            best["path"] = str(copy_artifact(rec.artifact_path, self.run_dir / f"best.{self.ext}"))
        try:
            from host.report import render

            render(self.run_dir)
            summary["report"] = [
                str(self.run_dir / "report.json"),
                str(self.run_dir / "report.html"),
            ]
        except Exception as exc:  # noqa: BLE001 - the results stand without the report
            print(f"hadmc-host search: warning: report not rendered: {exc}", file=sys.stderr)
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))

        out = Console(stderr=self.args.json)
        if not out.is_terminal:
            out = Console(stderr=self.args.json, width=140)  # logs/pipes: no truncated columns
        out.print(search_front_table(summary, self.baseline))
        out.print(f"run directory: {self.run_dir}")
        out.print(f"results: {self.store.path}   Pareto artifacts: {pareto_dir}")
        if best is not None:
            out.print(
                f"best under limits: {best['path']} (speedup {best['speedup']:.2f}x, "
                f"accuracy drop {best['accuracy_drop_points']:.2f} points)"
            )
        elif not summary["front"]:
            out.print(
                "no working model: every measured candidate kept half of the baseline's accuracy"
                " or less (all are in results.sqlite); try more --finetune-steps or --episodes"
            )
        else:
            out.print("no front member satisfies the limits")
        if self.args.json:
            print(json.dumps(summary, default=str))
        self.store.close()
