"""``hadmc-host search``: the hardware-in-the-loop compression search (PPO, random, Optuna, grid).

Run directory layout (``--out``): ``run_config.json`` (the arguments, for ``--resume``),
``results.sqlite`` (every candidate, written as soon as measured or failed), ``baseline.*``
(the uncompressed fp32 artifact), ``sensitivity.json``, ``candidates/`` (all artifacts),
``checkpoint/`` (policy + optimiser + RNG + archive ids + counters, written at every PPO
update), ``pareto/`` (front artifacts), ``best.<ext>`` (the chosen model under the limits),
``report.json`` / ``report.html``.

Resume: every strategy is deterministic for its seed, so a resumed run replays from the start:
it re-proposes the same candidates, finds them in the store (cache hits, no measurement) and
continues where the killed run stopped; nothing is lost and no candidate is measured twice
(``host.search_loop``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hadmc.hal import DeviceError
from host.search_config import SearchConfig

# Sizes. In the 2026-12-01 bench (2-vCPU VM, demo, local agent) one candidate cost ~18 s:
# fine-tune 20 steps of batch 64 ~11 s (0.55 s a step on that day's machine; 0.19 s on
# 2026-11-24's), export ~2.5 s, test + validation accuracy ~3 s, measurement ~1.5 s; a PPO
# surrogate round adds ~25 s per 4 candidates. 20 steps keep uniform int8 within 0.3 points and
# let keep ~0.7 int8 reach the 1-point limit; 50 steps recover more but cost 2.5x the time.
# The default run is what the bench measured: docs/results.md.
DEFAULT_EPISODES = 24
DEFAULT_EPISODES_PER_UPDATE = 4
DEFAULT_FINETUNE_STEPS = 20
DEFAULT_MAX_ACCURACY_DROP = 1.0


def _drop_points(text: str) -> float | None:
    """``--max-accuracy-drop``: points (0-100), or ``none`` to lift the limit."""
    if text.strip().lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        msg = f"expected points (e.g. 1.5) or none, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
_RESUMABLE = (
    "model data device runtime threads episodes episodes_per_update max_latency_ms "
    "max_accuracy_drop max_memory_mb strategy surrogate seed finetune_steps measure_runs "
    "measure_seconds warmup_seconds"
).split()


def add_search_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``hadmc-host search`` (DESIGN §6)."""
    a = parser.add_argument
    a(
        "--model",
        help="pkg.module:factory (called with no arguments) or a whole-model .pt file "
        "(unpickled: only trusted files). Default: the built-in demo (MobileNetV2-style CNN on "
        "scikit-learn digits, trained once and cached, ~2 min)",
    )
    a(
        "--data",
        help="file.npz with x_train, y_train, x_val, y_val (NCHW float32, int labels); "
        "required with --model",
    )
    a(
        "--device",
        help="ip:port of a hadmc-device agent, or sim:<profile> (analytic estimate, "
        "labelled simulated). Default: start a local agent on 127.0.0.1",
    )
    a(
        "--token",
        help="bearer token for a remote agent started with --token (default: $HADMC_TOKEN)",
    )
    a(
        "--runtime",
        choices=("onnxruntime", "litert"),
        default="onnxruntime",
        help="runtime on the device; decides the artifact (.onnx / .tflite) and the precisions "
        "the quantization agent may choose (fp32/int8). Default: onnxruntime",
    )
    a("--threads", type=int, default=1, help="inference threads on the device (default 1)")
    a(
        "--host-threads",
        type=int,
        default=None,
        help="torch threads for fine-tuning and evaluation on this machine (default: all cores; "
        "lower it when the machine is shared, e.g. 1 beside other heavy work)",
    )
    a(
        "--episodes",
        type=int,
        default=DEFAULT_EPISODES,
        help=f"budget: real candidates (built, fine-tuned, measured on the device) the search may "
        f"spend (default {DEFAULT_EPISODES}); a proposal already measured is free, and every "
        "strategy is compared at this count",
    )
    a(
        "--episodes-per-update",
        type=int,
        default=DEFAULT_EPISODES_PER_UPDATE,
        help="real candidates per round: per PPO update, per surrogate ranking, per checkpoint "
        f"(default {DEFAULT_EPISODES_PER_UPDATE})",
    )
    a("--max-latency-ms", type=float, help="latency limit, p50 in milliseconds (default none)")
    a(
        "--max-accuracy-drop",
        type=_drop_points,
        default=DEFAULT_MAX_ACCURACY_DROP,
        help="accuracy drop limit vs the fp32 baseline on validation, in percentage points "
        f"(default {DEFAULT_MAX_ACCURACY_DROP:g}; 'none' lifts it). A candidate over it scores "
        "below every candidate within it, and the chosen model must meet it",
    )
    a("--max-memory-mb", type=float, help="peak memory limit in MB (default none)")
    a("--out", help="run directory (default outputs/run-<UTC timestamp>)")
    a(
        "--resume",
        metavar="DIR",
        help="continue a killed run from its run directory; the run's saved arguments are used",
    )
    a(
        "--strategy",
        choices=("ppo", "random", "optuna", "grid"),
        default="ppo",
        help="ppo (multi-agent policy, default), random (uniform over the same actions), optuna "
        "(TPE over the same actions) or grid (uniform keep ratio x precision, what a user tries "
        "first; stops when the grid is done)",
    )
    a(
        "--surrogate",
        choices=("on", "off"),
        default="on",
        help="on (default): measure a small designed set first, then rank proposals with a "
        "latency model calibrated on the device and an accuracy proxy, and (ppo) train the "
        "policy on hundreds of predicted episodes between real rounds. Applies to ppo and "
        "random; predicted figures are labelled and never enter the Pareto front",
    )
    a(
        "--seed",
        type=int,
        default=0,
        help="seed of the policy / sampler and fine-tuning (default 0)",
    )
    a(
        "--finetune-steps",
        type=int,
        default=DEFAULT_FINETUNE_STEPS,
        help=f"distillation fine-tune steps per candidate, batch 64 (default {DEFAULT_FINETUNE_STEPS})",
    )
    a("--measure-runs", type=int, default=50, help="min timed runs per measurement (default 50)")
    a(
        "--measure-seconds",
        type=float,
        default=1.0,
        help="min timed window per measurement, seconds (default 1.0)",
    )
    a(
        "--warmup-seconds",
        type=float,
        default=0.5,
        help="min warm-up per measurement, seconds, after >= 10 runs (default 0.5)",
    )
    a("--json", action="store_true", help="print a JSON summary on stdout (table goes to stderr)")


# What --resume may change: where it measures and how long it runs (--token and --host-threads
# are never saved). Everything else shapes the candidates and must stay as the run began.
RESUME_OVERRIDES = ("device", "episodes")
# Exit codes (also in --help and the README).
EXIT_OK, EXIT_DEVICE, EXIT_USAGE, EXIT_NO_MODEL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def _defaults() -> SearchConfig:
    parser = argparse.ArgumentParser()
    add_search_arguments(parser)
    return SearchConfig.from_args(parser.parse_args([]))


def _fail(msg: str) -> int:
    print(f"hadmc-host search: error: {msg}", file=sys.stderr)
    return 2


def _runtime_missing(info: dict[str, Any], runtime: str) -> str:
    """Why the device cannot run ``runtime`` (GetInfo / the sim profile), '' when it can:
    checked before the model is loaded, so a wrong --runtime costs seconds, not a setup."""
    listed = info.get("runtimes") or (info.get("profile") or {}).get("runtimes") or []
    names = []
    for r in listed:
        if isinstance(r, str):
            names.append(r)
            if r == runtime:
                return ""
        else:
            if r.get("runtime") == runtime:
                if r.get("available", True):
                    return ""
                why = r.get("unavailable_reason") or "not installed"
                return (f"device {info.get('name') or info.get('address') or ''} cannot run "
                        f"--runtime {runtime}: {why}")  # fmt: skip
            if r.get("available", True):
                names.append(str(r.get("runtime")))
    if not listed:
        return ""  # nothing reported: let the first measurement say
    return f"--runtime {runtime} is not available on this device (it runs: {', '.join(names)})"


def _resume(cfg: SearchConfig) -> tuple[SearchConfig, Path]:
    """The saved run's configuration, with the flags a resume may change applied."""
    run_dir = Path(cfg.resume or "")
    cfg_path = run_dir / "run_config.json"
    if not cfg_path.is_file():
        raise ValueError(f"--resume {run_dir}: no run_config.json there")
    saved = SearchConfig.from_json(cfg_path.read_text())  # older files: today's defaults
    defaults = _defaults()
    given = {k: getattr(cfg, k) for k in _RESUMABLE if getattr(cfg, k) != getattr(defaults, k)}
    refused = [k for k, v in given.items() if k not in RESUME_OVERRIDES and v != getattr(saved, k)]
    if refused:
        flags = ", ".join(f"--{k.replace('_', '-')}" for k in refused)
        raise ValueError(
            f"--resume {run_dir}: {flags} cannot change on resume (only --device, --token, "
            "--host-threads and --episodes can); start a new --out instead"
        )
    overrides = {k: v for k, v in given.items() if k in RESUME_OVERRIDES}
    resumed = saved.replace(token=cfg.token, host_threads=cfg.host_threads, json=cfg.json,
                            resume=cfg.resume, out=str(run_dir), **overrides)  # fmt: skip
    if resumed.episodes < 1:
        raise ValueError("--episodes must be >= 1")
    cfg_path.write_text(resumed.to_json())
    return resumed, run_dir


def _resolve_args(args: argparse.Namespace) -> tuple[SearchConfig, Path, bool]:
    cfg = SearchConfig.from_args(args)
    if cfg.resume:
        return (*_resume(cfg), True)
    for name in ("threads", "episodes", "episodes_per_update", "measure_runs"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
    if cfg.finetune_steps < 0:
        raise ValueError("--finetune-steps must be >= 0")
    if cfg.host_threads is not None and cfg.host_threads < 1:
        raise ValueError("--host-threads must be >= 1")
    if cfg.measure_seconds <= 0 or cfg.warmup_seconds < 0:
        raise ValueError("--measure-seconds must be > 0 and --warmup-seconds >= 0")
    cfg.limits  # noqa: B018 - validates the limits
    run_dir = cfg.run_dir_default(time.strftime("%Y%m%d-%H%M%S", time.gmtime()))
    if (run_dir / "results.sqlite").exists():
        raise ValueError(f"{run_dir} already holds a run; use --resume {run_dir} or a new --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run_config.json").write_text(cfg.to_json())
    return cfg, run_dir, False


def run_search(
    args: argparse.Namespace,
    hooks: dict[str, Any] | None = None,
    passes: Sequence[Any] | None = None,
) -> int:
    """Entry point of ``hadmc-host search``; returns the exit code (2 = bad input/device).

    ``passes``: the compression passes to search over (``hadmc.compress.registry``); default
    every registered pass. A caller adds its own here, e.g. ``(*default_passes(), MyPass())``.
    """
    try:
        cfg, run_dir, resumed = _resolve_args(args)
    except ValueError as exc:
        return _fail(str(exc))
    from host.devices import open_device

    # The client logs each retry as a warning; at start-up an unreachable device must give
    # exactly one line on stderr, so those warnings are silenced until it answered.
    client_log = logging.getLogger("host.device_client")
    level = client_log.level
    client_log.setLevel(logging.ERROR)
    try:
        # Like `profile` and `devices`: $HADMC_TOKEN stands in for --token (and keeps the
        # token out of shell history and `ps`).
        device = open_device(cfg.device, token=cfg.token or os.environ.get("HADMC_TOKEN"))
        info = device.info()
    except (DeviceError, OSError) as exc:
        return _fail(f"device {cfg.device or 'local agent'}: {exc}")
    except ValueError as exc:  # e.g. an unknown sim: profile or a malformed address
        return _fail(str(exc))
    finally:
        client_log.setLevel(level)
    missing = _runtime_missing(info, cfg.runtime)
    if missing:
        device.close()
        return _fail(missing)
    hooks = hooks or {}
    if "on_device" in hooks:
        hooks["on_device"](device)
    run = None
    try:
        from hadmc.data import DataError
        from host.search_run import SearchRun
        from host.user_model import UserModelError

        try:
            run = SearchRun(cfg, run_dir, device, info, resumed, hooks, passes)
        except (UserModelError, DataError) as exc:
            return _fail(str(exc))
        except DeviceError as exc:
            return _fail(f"baseline measurement failed on {device.name}: {exc}")
        if resumed and not hooks.get("quiet"):
            print(f"resuming: {run.store.count()} candidates restored from {run_dir}",
                  file=sys.stderr)  # fmt: skip
        try:
            summary = run.run()
        except KeyboardInterrupt:
            print(f"hadmc-host: interrupted; resume with: hadmc-host search --resume {run_dir}",
                  file=sys.stderr)  # fmt: skip
            return EXIT_INTERRUPTED
        failed = run.store.candidates("failed") if not summary["measured"] else []
        run.finish(summary)
        if failed:
            print(f"hadmc-host search: every candidate failed; the first: {failed[0].error}",
                  file=sys.stderr)  # fmt: skip
            return EXIT_NO_MODEL
        return EXIT_OK if summary["best"] is not None else EXIT_NO_MODEL
    finally:
        device.close()
        if run is not None and run.evaluator.device is not device:
            run.evaluator.device.close()  # a local agent restarted during the search
