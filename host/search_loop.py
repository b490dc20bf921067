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
"""

from __future__ import annotations

import json
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
            results: list[tuple[Proposal, EvalOutcome]] = []
            for p in batch:
                if run.store.count() >= run.budget:
                    break
                out = run.evaluate(p, proposals)
                proposals += 1
                results.append((p, out))
                if out.status == "measured" and out.candidate_id not in seen_by_surrogate:
                    seen_by_surrogate.add(out.candidate_id)
                    run.surrogate.observe(p.joint, out.metrics)
                    run.strategy.ctx.observed_real += 1
                if out.last is not None:
                    run.env.last = out.last
                run.strategy.ctx.known.add(run.evaluator.key(p.joint))
                progress.update(task, completed=run.store.count(), description=_describe(run) + sim)
                if not progress.console.is_terminal and not run.hooks.get("quiet"):
                    # Piped or redirected (CI, nohup, | tee): a live bar draws nothing there.
                    progress.console.print(
                        f"{_describe(run)} [{_label(run, out)}]", highlight=False, markup=False
                    )
            run.strategy.observe(results)
            _checkpoint(run, proposals)
    run.proposals = proposals


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
