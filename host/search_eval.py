"""The search's candidate evaluator: store cache -> build -> measure (retry/restart) -> reward.

Called by ``hadmc.search.env.CompressionEnv`` at the end of every episode. Identical configurations
are measured once: the config key (sha256 of model hash + canonical action JSON + what else
shapes the artifact) is looked up in the SQLite store first. Every candidate is written to the
store as soon as it is measured or has failed; a failed one keeps its error and has no reward.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hadmc.device.chunking import chunk_file, delta_bytes
from hadmc.device.hal import ArtifactSpec, Device, DeviceError, Measurement, MeasureOptions
from hadmc.search.candidate import BuiltCandidate, build_candidate
from hadmc.search.env import EvalOutcome, JointAction
from hadmc.search.observation import LastCandidate
from hadmc.search.pareto import ParetoArchive
from hadmc.search.reward import Objectives, RewardConfig, compute_reward
from host.build_workers import BuildWorkersLost
from host.store import CandidateRecord, ResultsStore

log = logging.getLogger(__name__)

# Device failures for which a fresh local agent can help (the process died or hung).
RESTARTABLE = ("unreachable", "crashed", "timeout", "internal")


def artifact_spec(built: BuiltCandidate, runtime: str) -> ArtifactSpec:
    e = built.export
    return ArtifactSpec(
        path=Path(e.path),
        format=e.format,
        runtime=runtime,
        input_name=e.input_name,
        input_shape=tuple(e.input_shape),
        input_dtype=e.input_dtype,
        precision=e.precision,
        macs=built.macs,
        params=built.params,
    )


def metrics_of(
    built: BuiltCandidate,
    m: Measurement,
    update_bytes: int,
    baseline_latency_ms: float | None = None,
) -> dict[str, Any]:
    """Flat metrics dict as the store and ``Objectives.from_metrics`` read it.

    A paired measurement (the candidate timed interleaved with the baseline) also gives
    ``latency_ms_p50_paired`` = its latency ratio x ``baseline_latency_ms`` (the baseline's
    p50 measured at setup): the candidate's latency on the baseline's time base, which is
    what the search compares, because the ratio from one window does not drift with the
    board's load as two readings minutes apart do. ``latency_ms_p50`` stays the raw reading.
    """
    paired: dict[str, Any] = {}
    if m.latency_ratio is not None and baseline_latency_ms:
        paired = {
            "latency_ms_p50_paired": m.latency_ratio * baseline_latency_ms,
            "latency_ratio": m.latency_ratio,
            "latency_ratio_ci95": list(m.latency_ratio_ci95 or ()),
            "reference_latency_ms_p50": m.reference_latency_ms_p50,
        }
    return {
        **paired,
        "accuracy": built.accuracy,
        "latency_ms_p50": m.latency_ms_p50,
        "latency_ms_mean": m.latency_ms_mean,
        "latency_ms_p90": m.latency_ms_p90,
        "latency_ms_p99": m.latency_ms_p99,
        "latency_cv": m.latency_cv,
        "n_runs": m.n_runs,
        "load_ms": m.load_ms,
        "first_inference_ms": m.first_inference_ms,
        "peak_memory_mib": m.peak_memory_mib,
        "energy_mj": m.energy_mj,
        "energy_status": m.energy_status,
        "energy_source": m.energy_source,
        "source": m.source,
        "size_bytes": built.export.size_bytes,
        "update_bytes": update_bytes,
        "upload_bytes": m.upload_bytes,
        "macs": built.macs,
        "params": built.params,
        "precision": built.precision,
        "test_accuracy": built.test_accuracy,
        "test_n": built.test_n,
        "finetune_steps": built.finetune_steps,
        "finetune_lr": built.finetune_lr,
        "timings_s": built.timings_s,
    }


@dataclass
class EvalContext:
    """Everything the evaluator needs that is fixed for the run."""

    model: Any
    data: Any
    groups: list[Any]
    model_hash: str
    key_salt: str  # runtime, fine-tune steps, ... : anything else that shapes the artifact
    runtime: str
    finetune_steps: int
    seed: int
    threads: int
    options: MeasureOptions
    baseline: Objectives
    baseline_manifest: Any  # hadmc.device.chunking.Manifest of the baseline artifact
    reward_config: RewardConfig
    candidates_dir: Path
    teacher_logits: Any = None  # torch.Tensor: the model's logits on x_train, for fine-tunes
    host_device: Any = "cpu"  # torch.device of the fine-tune (hadmc.host_compute)
    passes: tuple[Any, ...] | None = None  # CompressionPass list; None = the registry
    reference: ArtifactSpec | None = None  # the baseline artifact, when candidates are paired


@dataclass
class PendingMeasurement:
    """A built candidate waiting for its device measurement (``CandidateEvaluator.measure``)."""

    episode: int
    key: str
    actions: dict[str, Any]
    built: BuiltCandidate
    spec: ArtifactSpec
    predicted: dict[str, Any] | None


@dataclass
class CandidateEvaluator:
    """Callable ``(JointAction, episode) -> EvalOutcome`` for ``CompressionEnv``."""

    ctx: EvalContext
    store: ResultsStore
    archive: ParetoArchive
    device: Device
    reopen_device: Callable[[], Device] | None = None  # recreate a dead local agent
    measurements: int = 0  # device measurements made by THIS process
    cache_hits: int = 0
    on_measured: Callable[[CandidateRecord], None] | None = None  # test hook (stop after k)
    history: list[EvalOutcome] = field(default_factory=list)
    # --host-workers / --ray: (joint, path stem) -> BuiltCandidate in a worker (host.build_workers)
    builder: Callable[[JointAction, Path], BuiltCandidate] | None = None
    _count_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def key(self, joint: JointAction) -> str:
        return joint.config_key(self.ctx.model_hash, self.ctx.key_salt)

    def outcome_of(self, rec: CandidateRecord, cached: bool) -> EvalOutcome:
        if rec.status != "measured" or rec.metrics is None:
            return EvalOutcome("failed", None, {}, str(rec.id), cached, rec.error or "")
        obj = Objectives.from_metrics(rec.metrics)
        b = self.ctx.baseline
        last = LastCandidate(
            accuracy_ratio=obj.accuracy / b.accuracy,
            latency_ratio=obj.latency_ms / b.latency_ms,
            size_ratio=obj.size_bytes / b.size_bytes,
            feasible=bool(rec.metrics.get("feasible", True)),
        )
        return EvalOutcome("measured", rec.reward, rec.metrics, str(rec.id), cached, "", last)

    def __call__(
        self, joint: JointAction, episode: int, predicted: dict[str, Any] | None = None
    ) -> EvalOutcome:
        """``predicted``: the surrogate's figures for this candidate before it was measured,
        stored beside the real ones under ``metrics["predicted"]`` (labelled predicted)."""
        job = self.prepare(joint, episode, predicted)
        if isinstance(job, PendingMeasurement):
            return self.finish(self.measure(job), cached=False)
        return self.finish(*job)

    # The three steps of __call__, apart so that a pool of boards can measure several built
    # candidates at once (host.search_loop): prepare and finish run in the loop's thread,
    # measure in any (it touches only the device and the store, which has its own lock).
    def prepare(
        self, joint: JointAction, episode: int, predicted: dict[str, Any] | None = None
    ) -> tuple[CandidateRecord, bool] | PendingMeasurement:
        """A store hit ``(record, True)``; a candidate that failed to build ``(record,
        False)`` (stored); else the built candidate, to ``measure``."""
        key = self.key(joint)
        rec = self.store.get_by_key(key)
        if rec is not None:
            return rec, True
        return self._build(joint, episode, key, predicted)

    def finish(self, rec: CandidateRecord, cached: bool) -> EvalOutcome:
        """The outcome of a stored record; a measured one joins the archive."""
        if cached:
            self.cache_hits += 1
        out = self.outcome_of(rec, cached=cached)
        if rec.status == "measured" and rec.id not in self.archive:
            self.archive.add(rec.id, Objectives.from_metrics(rec.metrics or {}))
        self.history.append(out)
        return out

    def _measure(self, spec: ArtifactSpec) -> Measurement:
        """Measure; the device client already retries with backoff. On a failure a fresh local
        agent can fix (it died), restart it once and try again."""
        try:
            return self.device.measure(spec, self.ctx.options, reference=self.ctx.reference)
        except DeviceError as exc:
            if self.reopen_device is None or exc.code not in RESTARTABLE:
                raise
            log.warning("device failed (%s); restarting the local agent", exc)
            try:
                self.device.close()
            except Exception:  # noqa: BLE001 - the old agent is gone; closing may fail
                pass
            self.device = self.reopen_device()
            raise

    def _build(
        self, joint: JointAction, episode: int, key: str, predicted: dict[str, Any] | None
    ) -> tuple[CandidateRecord, bool] | PendingMeasurement:
        ctx = self.ctx
        stem = ctx.candidates_dir / key[:16]
        actions = joint.to_dict()
        try:
            built = self.builder(joint, stem) if self.builder is not None else build_candidate(
                ctx.model,
                ctx.data,
                ctx.groups,
                joint,
                stem,
                runtime=ctx.runtime,
                finetune_steps=ctx.finetune_steps,
                seed=ctx.seed,
                threads=ctx.threads,
                teacher_logits=ctx.teacher_logits,
                passes=ctx.passes,
                host_device=ctx.host_device,
            )
        except BuildWorkersLost:
            raise
        except Exception as exc:  # noqa: BLE001 - a candidate that cannot be built is recorded
            log.exception("building candidate failed")
            rec = self.store.add_candidate(
                episode=episode,
                config_key=key,
                actions=actions,
                status="failed",
                error=f"build: {type(exc).__name__}: {exc}",
            )
            return rec, False
        spec = artifact_spec(built, ctx.runtime)
        return PendingMeasurement(episode, key, actions, built, spec, predicted)

    def measure(self, job: PendingMeasurement) -> CandidateRecord:
        """Measure a built candidate and store its row (measured, or failed on the device).
        ``host.pool.PoolExhausted`` propagates: with no board left nothing is recorded, and
        a resumed run measures the candidate then."""
        from host.pool import PoolExhausted

        ctx, spec = self.ctx, job.spec
        try:
            with self._count_lock:
                self.measurements += 1
            m = self._measure(spec)
        except PoolExhausted:
            raise
        except DeviceError as exc:
            return self.store.add_candidate(
                episode=job.episode,
                config_key=job.key,
                actions=job.actions,
                status="failed",
                error=f"device: {exc}",
                artifact_path=str(spec.path),
            )
        update_bytes = delta_bytes(chunk_file(spec.path), ctx.baseline_manifest)
        metrics = metrics_of(job.built, m, update_bytes, ctx.baseline.latency_ms)
        obj = Objectives.from_metrics(metrics)
        rb = compute_reward(obj, ctx.baseline, ctx.reward_config)
        metrics["feasible"] = rb.feasible
        if job.predicted is not None:
            metrics["predicted"] = job.predicted
        metrics["violations"] = rb.violations
        metrics["reward_terms"] = rb.terms
        rec = self.store.add_candidate(
            episode=job.episode,
            config_key=job.key,
            actions=job.actions,
            metrics=metrics,
            objectives=obj.to_dict(),
            provenance={"device": m.device, **m.provenance},
            status="measured",
            reward=rb.reward,
            artifact_path=str(spec.path),
        )
        if self.on_measured is not None:
            self.on_measured(rec)
        return rec


def copy_artifact(src: str | Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dest)
    return dest
