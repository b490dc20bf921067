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

from hadmc.device.hal import DeviceError
from host.build_workers import BuildWorkersLost
from host.errors import (
    EXIT_DEVICE,
    EXIT_INTERRUPTED,
    EXIT_NO_MODEL,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    error_code,
    error_message,
    print_error_json,
    search_fail,
    search_interrupted,
)
from host.flags import flag_of
from host.pool import PoolExhausted, open_pool, split_devices
from host.search_args import FLAGS, _drop_points, add_search_arguments
from host.search_config import SearchConfig
from host.targets import runtime_problem

_RESUMABLE = (
    "model demo weights data image_size mean std device runtime threads episodes episodes_per_update max_latency_ms "
    "max_accuracy_drop max_memory_mib strategy surrogate int8_probe seed finetune_steps measure_runs "
    "measure_seconds warmup_seconds allow_mixed_pool fleet_objective"
).split()

# What --resume may change: where it measures and how long it runs (--token and --host-threads
# are never saved). Everything else shapes the candidates and must stay as the run began.
RESUME_OVERRIDES = ("device", "episodes", "allow_mixed_pool")
# Exit codes: host.errors (also in --help and the README).
__all__ = ["EXIT_DEVICE", "EXIT_INTERRUPTED", "EXIT_NO_MODEL", "EXIT_OK", "EXIT_USAGE",
           "_drop_points", "add_search_arguments", "run_search"]  # fmt: skip


def _defaults() -> SearchConfig:
    parser = argparse.ArgumentParser()
    add_search_arguments(parser)
    return SearchConfig.from_args(parser.parse_args([]))


# One line on stderr (+ JSON under --json) for a failed or interrupted search; the missing
# runtime check: in host.errors and host.targets, shared with host.search_targets.
_fail, _interrupted, _runtime_missing = search_fail, search_interrupted, runtime_problem


def _resume(cfg: SearchConfig) -> tuple[SearchConfig, Path]:
    """The saved run's configuration, with the flags a resume may change applied (written back
    to run_config.json only once the resumed run's setup succeeded)."""
    run_dir = Path(cfg.resume or "")
    cfg_path = run_dir / "run_config.json"
    if not cfg_path.is_file():
        raise UsageError(f"--resume {run_dir}: no run_config.json there", "not_found")
    saved = SearchConfig.from_json(cfg_path.read_text())  # older files: today's defaults
    defaults = _defaults()
    given = {k: getattr(cfg, k) for k in _RESUMABLE if getattr(cfg, k) != getattr(defaults, k)}
    refused = [k for k, v in given.items() if k not in RESUME_OVERRIDES and v != getattr(saved, k)]
    if refused:
        flags = ", ".join(flag_of(k, FLAGS) for k in refused)
        raise UsageError(
            f"--resume {run_dir}: {flags} cannot change on resume (only --device, --allow-mixed-pool, --token, "
            "--host-threads and --episodes can); start a new --out instead"
        )
    overrides = {k: v for k, v in given.items() if k in RESUME_OVERRIDES}
    resumed = saved.replace(token=cfg.token, host_threads=cfg.host_threads,
                            host_workers=cfg.host_workers, ray=cfg.ray,
                            ray_gpus_per_build=cfg.ray_gpus_per_build,
                            host_device=cfg.host_device, json=cfg.json,
                            resume=cfg.resume, out=str(run_dir), **overrides)  # fmt: skip
    if resumed.episodes < 1:
        raise UsageError("--episodes must be >= 1")
    return resumed, run_dir


def _resolve_args(args: argparse.Namespace) -> tuple[SearchConfig, Path, bool]:
    """The configuration and run directory, validated; nothing is written yet."""
    cfg = SearchConfig.from_args(args)
    if cfg.resume:
        return (*_resume(cfg), True)
    for name in ("threads", "episodes", "episodes_per_update", "measure_runs"):
        if getattr(cfg, name) < 1:
            raise UsageError(f"{flag_of(name, FLAGS)} must be >= 1")
    if cfg.finetune_steps < 0:
        raise UsageError("--finetune-steps must be >= 0")
    if cfg.host_threads is not None and cfg.host_threads < 1:
        raise UsageError("--host-threads must be >= 1")
    if cfg.host_workers is not None and cfg.host_workers < 1:
        raise UsageError("--host-workers must be >= 1")
    if cfg.ray_gpus_per_build < 0 or (cfg.ray_gpus_per_build and not cfg.ray):
        raise UsageError("--ray-gpus-per-build needs --ray and a share >= 0")
    from hadmc.host_compute import HostDeviceError, resolve_host_device

    try:
        resolve_host_device(cfg.host_device)
    except HostDeviceError as exc:
        raise UsageError(str(exc)) from None
    if cfg.measure_seconds <= 0 or cfg.warmup_seconds < 0:
        raise UsageError("--min-secs must be > 0 and --warmup-min-secs >= 0")
    if cfg.model is not None and cfg.demo != "standard":
        raise UsageError("--demo chooses the built-in demo and cannot go with --model")
    if cfg.weights is not None and cfg.model is None:
        raise UsageError("--weights needs --model (the demo model brings its own weights)")
    if cfg.target and cfg.target != "auto":
        from host.targets import parse_target

        cfg = cfg.replace(target=parse_target(cfg.target, cfg.runtime))
    cfg.limits  # noqa: B018 - validates the limits
    run_dir = cfg.run_dir_default(time.strftime("%Y%m%d-%H%M%S", time.gmtime()))
    if (run_dir / "results.sqlite").exists():
        raise UsageError(f"{run_dir} already holds a run; use --resume {run_dir} or a new --out")
    return cfg, run_dir, False


class _RunDirGuard:
    """Creates the run directory and takes back what it created when setup fails: a
    validation failure leaves nothing behind (a resumed run's directory is never touched)."""

    def __init__(self, run_dir: Path, resumed: bool) -> None:
        self.run_dir, self.resumed = run_dir, resumed
        self.existed = run_dir.is_dir()
        self.before = set(os.listdir(run_dir)) if self.existed else set()

    def create(self, cfg: SearchConfig) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "run_config.json").write_text(cfg.to_json())

    def undo(self) -> None:
        import shutil

        if self.resumed:
            return
        if not self.existed:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            return
        for name in set(os.listdir(self.run_dir)) - self.before:
            path = self.run_dir / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def _open_device(cfg: SearchConfig) -> tuple[Any, dict[str, Any]]:
    from host.devices import open_device

    # The client logs each retry as a warning; at start-up an unreachable device must give
    # exactly one line on stderr, so those warnings are silenced until it answered.
    client_log = logging.getLogger("host.device_client")
    level = client_log.level
    client_log.setLevel(logging.ERROR)
    try:
        # Like `profile` and `devices`: $HADMC_TOKEN stands in for --token (and keeps the
        # token out of shell history and `ps`).
        token = cfg.token or os.environ.get("HADMC_TOKEN")
        addresses = split_devices(cfg.device)
        if len(addresses) > 1:
            device = open_pool(
                addresses, lambda a: open_device(a, token=token),
                allow_mixed=cfg.allow_mixed_pool, fleet_objective=cfg.fleet_objective,
            )  # fmt: skip
        else:
            device = open_device(addresses[0] if addresses else None, token=token)
        return device, device.info()
    finally:
        client_log.setLevel(level)


def run_search(
    args: argparse.Namespace,
    hooks: dict[str, Any] | None = None,
    passes: Sequence[Any] | None = None,
) -> int:
    """Entry point of ``hadmc-host search``; returns the exit code (``host.errors``).

    ``passes``: the compression passes to search over (``hadmc.compress.registry``); default
    every registered pass. A caller adds its own here, e.g. ``(*default_passes(), MyPass())``.
    """
    json_out = bool(getattr(args, "json", False))
    try:
        cfg, run_dir, resumed = _resolve_args(args)
    except ValueError as exc:
        return _fail(exc, json_out)
    try:
        device, info = _open_device(cfg)
    except (DeviceError, OSError) as exc:
        where = f"device {cfg.device or 'local agent'}: "
        code = error_code(exc) if isinstance(exc, DeviceError) else "unreachable"
        return _fail(where + error_message(exc), json_out, code, EXIT_DEVICE)
    except ValueError as exc:  # a malformed address or an unknown sim: profile
        return _fail(exc, json_out)
    try:
        if cfg.target == "auto":
            from host.search_targets import run_per_target

            return run_per_target(cfg, run_dir, resumed, device, info, hooks or {}, passes,
                                  search_one=search_on)  # fmt: skip
        return search_on(cfg, run_dir, resumed, device, info, hooks or {}, passes)
    finally:
        device.close()


def search_on(
    cfg: SearchConfig,
    run_dir: Path,
    resumed: bool,
    device: Any,
    info: dict[str, Any],
    hooks: dict[str, Any],
    passes: Sequence[Any] | None = None,
) -> int:
    """One search on an open device (the caller closes it); returns the exit code."""
    json_out = cfg.json
    missing = _runtime_missing(info, cfg.runtime)
    if not missing and cfg.target:
        from host.targets import target_problem

        missing = target_problem(info, cfg.target)
    if missing:
        return _fail(missing, json_out, "runtime_unavailable")
    if "on_device" in hooks:
        hooks["on_device"](device)
    guard = _RunDirGuard(run_dir, resumed)
    run = None
    try:
        from hadmc.data import DataError
        from host.search_run import SearchRun
        from host.user_model import UserModelError

        try:
            if not resumed:
                guard.create(cfg)
            run = SearchRun(cfg, run_dir, device, info, resumed, hooks, passes)
        except (UserModelError, DataError, UsageError) as exc:
            guard.undo()
            return _fail(exc, json_out)
        except DeviceError as exc:
            guard.undo()
            message = f"baseline measurement failed on {device.name}: {error_message(exc)}"
            return _fail(message, json_out, exc.code, EXIT_DEVICE)
        except KeyboardInterrupt:
            guard.undo()
            return _interrupted("hadmc-host: interrupted during setup", json_out)
        except BaseException:
            guard.undo()
            raise
        if resumed:
            (run_dir / "run_config.json").write_text(cfg.to_json())  # the overrides, kept
            if not hooks.get("quiet"):
                print(f"resuming: {run.store.count()} candidates restored from {run_dir}",
                      file=sys.stderr)  # fmt: skip
        try:
            summary = run.run()
        except (PoolExhausted, BuildWorkersLost) as exc:
            text = exc.message if isinstance(exc, PoolExhausted) else str(exc)
            line = f"hadmc-host: {text.replace('DIR', str(run_dir))}"
            print(line, file=sys.stderr)
            if json_out:
                print_error_json("unreachable", line.removeprefix("hadmc-host: "))
            return EXIT_DEVICE
        except KeyboardInterrupt:
            hint = f"resume with: hadmc-host search --resume {run_dir}"
            return _interrupted(f"hadmc-host: interrupted; {hint}", json_out, resume=hint)
        run.finish(summary)
        return EXIT_OK if summary["best"] is not None else EXIT_NO_MODEL
    finally:
        if run is not None:
            run.close()  # build workers
        if run is not None and run.evaluator.device is not device:
            run.evaluator.device.close()  # a local agent restarted during the search
