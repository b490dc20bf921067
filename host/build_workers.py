"""Candidates built in parallel: ``--host-workers N`` (local processes) or ``--ray auto|ADDRESS``
(Ray actors on a cluster). Both implement ``build(joint, stem) -> BuiltCandidate``, which
``host.search_eval.CandidateEvaluator`` calls instead of building in its own process.

Each worker receives the run's fixed inputs once (``BuildInputs``: the model, the data, the
layer groups, the teacher's logits, the passes) and then builds one candidate per call with
``hadmc.search.candidate.build_candidate``, exactly as the in-process path does, seed included.
It returns the ``BuiltCandidate`` and the artifact's bytes, and the host writes them where it
would have written the file itself: a Ray node has its own disk. The policy's decisions and
the stored rows are those of a sequential run; a build with fewer torch threads can differ in
the last float bits of a fine-tune, which is below measurement noise.

Why processes and not threads: a fine-tune runs Python between torch ops under the GIL, and
torch's intra-op threads already use the cores one build is given; N processes with
``cores / N`` threads each keep N builds truly parallel. Why ``spawn``: the host runs gRPC
threads, and ``fork`` with live threads can deadlock the child.

Ray is an optional extra (``pip install "hadmc[scale]"``); without it ``--ray`` names the extra.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import pickle
import tempfile
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from host.errors import UsageError

if TYPE_CHECKING:  # torch-heavy: imported where a build runs, not by `hadmc-host --help`
    from hadmc.search.candidate import BuiltCandidate
    from hadmc.search.env import JointAction

RAY_EXTRA = 'pip install "hadmc[scale]"'


class BuildWorkersLost(RuntimeError):
    """The build workers are gone (a process died, the Ray cluster went away): the search
    stops, resumable, rather than record every later candidate as failed."""


@dataclass
class BuildInputs:
    """What every build of a run shares (``host.search_eval.EvalContext``'s build half)."""

    model: Any
    data: Any
    groups: list[Any]
    runtime: str
    finetune_steps: int
    seed: int
    threads: int  # onnxruntime threads for the artifact's accuracy evaluation
    teacher_logits: Any
    passes: tuple[Any, ...] | None
    host_device: Any
    torch_threads: int  # per worker: the host's cores / workers


def build_bytes(inputs: BuildInputs, joint: JointAction, name: str) -> tuple[BuiltCandidate, bytes]:
    """One candidate, built in a scratch directory; returns it and its artifact's bytes."""
    from hadmc.search.candidate import build_candidate

    with tempfile.TemporaryDirectory(prefix="hadmc-build-") as tmp:
        built = build_candidate(
            inputs.model, inputs.data, inputs.groups, joint, Path(tmp) / name,
            runtime=inputs.runtime, finetune_steps=inputs.finetune_steps, seed=inputs.seed,
            threads=inputs.threads, teacher_logits=inputs.teacher_logits, passes=inputs.passes,
            host_device=inputs.host_device,
        )  # fmt: skip
        return built, Path(built.export.path).read_bytes()


def land(built: BuiltCandidate, data: bytes, stem: Path) -> BuiltCandidate:
    """Write a worker's artifact at ``stem`` + its extension; the candidate now points there."""
    path = Path(f"{stem}{Path(built.export.path).suffix}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)  # a killed host never leaves half an artifact under the real name
    return dataclasses.replace(built, export=dataclasses.replace(built.export, path=path))


def payload_of(inputs: BuildInputs) -> bytes:
    """The inputs pickled once for every worker, or one sentence on why they cannot be."""
    try:
        return pickle.dumps(inputs, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise UsageError(
            f"the model or data cannot be sent to build workers ({type(exc).__name__}: {exc}); "
            "give --model as package.module:factory or a .pt of an importable class, or drop "
            "--host-workers / --ray"
        ) from None


# -- local processes ---------------------------------------------------------------------
_WORKER_INPUTS: BuildInputs | None = None


def _init_worker(payload: bytes, host_pid: int) -> None:
    global _WORKER_INPUTS
    _exit_with_host(host_pid)  # first: the host may be killed while torch still imports
    import torch

    _WORKER_INPUTS = pickle.loads(payload)
    torch.set_num_threads(max(1, _WORKER_INPUTS.torch_threads))


def _exit_with_host(host_pid: int, poll_s: float = 0.5) -> None:
    """A host killed with SIGKILL runs no cleanup, and a pool worker blocked on its task queue
    waits for ever (the workers hold the queue's write end themselves, so it never sees EOF):
    a watcher thread ends the worker once its parent is no longer the host, as the local
    agent's ``--exit-with-parent`` does. The host's pid comes from the host, not from
    ``os.getppid()`` here, which is already 1 if the host died during the imports."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == host_pid:
            time.sleep(poll_s)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-host", daemon=True).start()


def _build_task(joint: JointAction, name: str) -> tuple[BuiltCandidate, bytes]:
    assert _WORKER_INPUTS is not None, "worker not initialised"
    return build_bytes(_WORKER_INPUTS, joint, name)


class ProcessBuilders:
    """``--host-workers N``: N spawned processes on this machine."""

    def __init__(self, inputs: BuildInputs, workers: int) -> None:
        self.width = int(workers)
        self._ex = ProcessPoolExecutor(
            self.width, mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker, initargs=(payload_of(inputs), os.getpid()),
        )  # fmt: skip

    def build(self, joint: JointAction, stem: Path) -> BuiltCandidate:
        try:
            built, data = self._ex.submit(_build_task, joint, stem.name).result()
        except BrokenProcessPool:
            raise BuildWorkersLost(
                "a build worker process died (out of memory, or the model could not be "
                "loaded there); resume with fewer --host-workers, or without"
            ) from None
        return land(built, data, stem)

    def close(self) -> None:
        self._ex.shutdown(wait=True, cancel_futures=True)


# -- Ray ---------------------------------------------------------------------------------
class RayBuilders:
    """``--ray auto|ADDRESS``: one Ray actor per build slot, the inputs put in the object
    store once. ``gpus_per_build`` > 0 asks Ray for (a share of) a GPU per actor, and the
    actor fine-tunes on it."""

    def __init__(
        self, inputs: BuildInputs, address: str, workers: int | None, gpus_per_build: float = 0.0
    ) -> None:
        try:
            import ray
        except ImportError:
            raise UsageError(f"--ray needs Ray: {RAY_EXTRA}") from None
        self._ray = ray
        if not ray.is_initialized():
            # "auto": the cluster this machine belongs to (RAY_ADDRESS or a local head), else
            # a local instance; anything else is a cluster address (ray://host:10001, host:6379).
            ray.init(address=None if address == "local" else address, log_to_driver=False,
                     include_dashboard=False)  # fmt: skip
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.width = int(workers or max(1, cpus))
        if gpus_per_build > 0:
            inputs = dataclasses.replace(inputs, host_device="cuda")
        ref = ray.put(payload_of(inputs))
        actor = ray.remote(num_cpus=1, num_gpus=gpus_per_build)(_RayBuilder)
        self._actors = [actor.remote(ref) for _ in range(self.width)]
        self._free = list(range(self.width))
        import threading

        self._cond = threading.Condition()

    def build(self, joint: JointAction, stem: Path) -> BuiltCandidate:
        with self._cond:
            while not self._free:
                self._cond.wait()
            slot = self._free.pop(0)
        try:
            built, data = self._ray.get(self._actors[slot].build.remote(joint, stem.name))
        finally:
            with self._cond:
                self._free.append(slot)
                self._cond.notify()
        return land(built, data, stem)

    def close(self) -> None:
        for a in self._actors:
            self._ray.kill(a)


class _RayBuilder:
    """The Ray actor (wrapped with ``ray.remote`` at run time: Ray stays optional)."""

    def __init__(self, payload: bytes) -> None:
        import torch

        self.inputs: BuildInputs = pickle.loads(payload)
        torch.set_num_threads(1)

    def build(self, joint: JointAction, name: str) -> tuple[BuiltCandidate, bytes]:
        return build_bytes(self.inputs, joint, name)


def make_builders(cfg: Any, inputs: BuildInputs) -> ProcessBuilders | RayBuilders | None:
    """The builders ``--host-workers`` / ``--ray`` ask for; None: build in this process."""
    if cfg.ray:
        return RayBuilders(inputs, cfg.ray, cfg.host_workers, cfg.ray_gpus_per_build)
    if cfg.host_workers and cfg.host_workers > 1:
        cores = cfg.host_threads or os.cpu_count() or 1
        inputs = dataclasses.replace(inputs, torch_threads=max(1, cores // cfg.host_workers))
        return ProcessBuilders(inputs, cfg.host_workers)
    return None
