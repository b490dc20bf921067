"""The budgeted search loop, the same for every strategy (CleanRL-style: read top to bottom).

    while real candidates in the store < budget:
        proposals = strategy.propose(k)          # k = --episodes-per-update
        for each proposal:
            outcome = evaluator(joint)           # store hit, or build + device measurement
            surrogate.observe(joint, outcome)    # refit latency model + accuracy proxy
        strategy.observe(outcomes)               # PPO update on the real rewards, TPE tell, ...
        checkpoint

The budget is the number of distinct candidates sent through the pipeline (measured or
failed): a proposal found in the store costs nothing, so every strategy is compared at the
same number of device measurements. Resume replays: strategies are deterministic for a seed,
so a resumed run re-proposes the same candidates, finds them in the store (cache hits, no
measurement) and continues where the killed run stopped.

With a pool of boards, or one board on another machine, the boards measure while this process
builds the round's next candidates, and ``--host-workers`` / ``--ray`` build several at once
(``_evaluate_parallel``); the decisions and rows are the
sequential loop's. With the embedded local agent, a simulated device or an agent on loopback,
the host's fine-tunes would compete with the measurement for the same cores and bias it, so
building and measuring stay apart (``SearchRun.overlap_measurements``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from hadmc.search.env import EvalOutcome
from host.strategies import Proposal

# A strategy that keeps proposing stored candidates (a converged policy, a tiny space) stops
# after this many proposals per budget unit rather than loop forever.
MAX_PROPOSALS_PER_BUDGET = 20


def run_loop(run: Any) -> None:
    """Drive ``run.strategy`` until ``run.budget`` real candidates are in ``run.store``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    console = Console(stderr=True)
    # The live bar says so too (piped output labels each line below).
    sim = " [simulated]" if str(getattr(run.evaluator.device, "name", "")).startswith("sim:") else ""
    seen_by_surrogate: set[str] = set()
    proposals = 0
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=bool(run.hooks.get("quiet")),
    ) as progress:
        task = progress.add_task("search" + sim, total=run.budget, completed=run.store.count())
        while run.store.count() < run.budget:
            if proposals >= MAX_PROPOSALS_PER_BUDGET * run.budget:
                run.stop_reason = "the strategy proposed only candidates already measured"
                break
            # Always a full round, even near the budget: the round size must not depend on the
            # store's count, or a resumed run (which starts with a fuller store) would not
            # replay the same proposals. Proposals past the budget are never evaluated.
            batch = run.strategy.propose(run.batch)
            if not batch:
                run.stop_reason = f"{run.strategy_label} has no untried proposal left"
                break
            def after(p: Proposal, out: EvalOutcome) -> None:
                if out.status == "measured" and out.candidate_id not in seen_by_surrogate:
                    seen_by_surrogate.add(out.candidate_id)
                    run.surrogate.observe(p.joint, out.metrics)
                    run.strategy.ctx.observed_real += 1
                if out.last is not None:
                    run.env.last = out.last
                run.strategy.ctx.known.add(run.evaluator.key(p.joint))
                tick()
                if not progress.console.is_terminal and not run.hooks.get("quiet"):
                    # Piped or redirected (CI, nohup, | tee): a live bar draws nothing there.
                    progress.console.print(
                        f"{_describe(run)} [{_label(run, out)}]", highlight=False, markup=False
                    )

            def tick() -> None:
                progress.update(task, completed=run.store.count(), description=_describe(run) + sim)

            if run.overlap_measurements or run.build_width > 1:
                results, proposals = _evaluate_parallel(run, batch, proposals, after, tick)
            else:
                results = []
                for p in batch:
                    if run.store.count() >= run.budget:
                        break
                    out = run.evaluate(p, proposals)
                    proposals += 1
                    results.append((p, out))
                    after(p, out)
            run.strategy.observe(results)
            _checkpoint(run, proposals)
    run.proposals = proposals


def _evaluate_parallel(
    run: Any,
    batch: list[Proposal],
    proposals: int,
    after: Callable[[Proposal, EvalOutcome], None],
    tick: Callable[[], None],
) -> tuple[list[tuple[Proposal, EvalOutcome]], int]:
    """One round with builds and measurements in flight at once: ``run.build_width`` builds
    (``--host-workers`` / ``--ray``; 1 = in this process) and, when
    ``run.overlap_measurements``, one measurement per board beside them. Otherwise (the local
    agent) the round's builds finish before its measurements start, one at a time, so that no
    build shares the cores with a timed window.

    Same decisions and rows as the sequential loop: the round was proposed before any of it
    is evaluated, the budget is counted the same way (a new candidate spends one unit when it
    is sent, a store hit or a repeat within the round spends none), rows carry the same
    episode numbers, and the outcomes reach the surrogate, the archive and the strategy in
    proposal order. What differs: every surrogate prediction of the round is made before any
    of its candidates is measured, so ``metrics["predicted"]`` can differ from a sequential
    run's in the later members of a round.
    """
    from host.search_eval import PendingMeasurement

    overlap = run.overlap_measurements
    build_slots = threading.Semaphore(max(1, run.build_width))

    def job(joint: Any, episode: int, predicted: dict) -> Any:
        with build_slots:  # at most build_width builds at once, whatever the thread count
            prepared = run.evaluator.prepare(joint, episode, predicted)
        if overlap and isinstance(prepared, PendingMeasurement):
            return run.evaluator.measure(prepared), False
        return prepared

    spent = run.store.count()
    jobs: list[tuple[Proposal, str, Any]] = []  # (proposal, "done" | "future" | "repeat", x)
    in_round: set[str] = set()
    width = max(1, run.build_width) + (run.measure_width if overlap else 0)
    ex = ThreadPoolExecutor(width, thread_name_prefix="candidate")
    try:
        for p in batch:
            if spent >= run.budget:
                break
            key = run.evaluator.key(p.joint)
            episode, proposals = proposals, proposals + 1
            if key in in_round:  # built (or being built) in this round: a store hit
                jobs.append((p, "repeat", key))
                continue
            in_round.add(key)
            hit = run.store.get_by_key(key)
            if hit is not None:
                jobs.append((p, "done", (hit, True)))
                continue
            spent += 1  # one row, measured or failed
            fut = ex.submit(job, p.joint, episode, run.predicted(p))  # predicted here: one thread
            fut.add_done_callback(lambda _f: tick())
            jobs.append((p, "future", fut))
        if not overlap:  # the local agent: every build done before the first timed window
            wait([x for _, kind, x in jobs if kind == "future"])
        results = []
        for p, kind, x in jobs:
            if kind == "repeat":
                out = run.evaluator.finish(run.store.get_by_key(x), cached=True)
            else:
                done = x.result() if kind == "future" else x
                if isinstance(done, PendingMeasurement):
                    done = (run.evaluator.measure(done), False)
                out = run.evaluator.finish(*done)
            results.append((p, out))
            after(p, out)
    finally:
        # A board pool that ran dry, or Ctrl-C: what is on a board or a build worker
        # finishes and is stored (never measured twice on resume); queued work is dropped.
        ex.shutdown(wait=True, cancel_futures=True)
    return results, proposals


def _label(run: Any, out: EvalOutcome) -> str:
    if out.status != "measured":
        return out.status
    source = (out.metrics or {}).get("source")
    status = "simulated" if source == "simulated" else "measured"
    return f"{status}, cached" if out.cached else status


def _describe(run: Any) -> str:
    front = run.archive.front()
    desc = f"{run.store.count()}/{run.budget} {run.strategy_label}"
    if front:
        best = max(e.objectives.accuracy for e in front)
        fastest = min(e.objectives.latency_ms for e in front)
        desc += (
            f" best acc {100 * best:.1f}% fastest {fastest:.3f} ms"
            f" HV {run.archive.hypervolume():.3f}"
        )
    return desc


def _checkpoint(run: Any, proposals: int) -> None:
    """Counters for inspection (resume replays; see module docstring); written atomically."""
    run.ckpt_dir.mkdir(exist_ok=True)
    state = {
        "strategy": run.strategy_label,
        "proposals": proposals,
        "measurements_total": run.store.count(),
        "budget": run.budget,
        "env": run.env.state_dict(),
        "archive_ids": [e.candidate_id for e in run.archive.entries],
    }
    agent = getattr(run.strategy, "agent", None)
    if agent is not None:
        agent.save(run.ckpt_dir / "ppo.pt")
    tmp = run.ckpt_dir / "progress.json.tmp"
    tmp.write_text(json.dumps(state, default=int))
    tmp.replace(run.ckpt_dir / "progress.json")  # a kill never leaves half a file
