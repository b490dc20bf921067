"""``hadmc-host``: the workstation command (search / profile / devices / report).

Startup stays light: torch, onnx and the search/report modules are imported inside the
subcommand handlers, so ``hadmc-host --help`` answers at once and works even before those
modules exist. Bare ``hadmc-host`` (no subcommand) runs ``hadmc-host search`` with its
defaults, because that is the README's main job; ``hadmc-host --help`` lists everything.
Exit codes and error codes: ``host.errors`` (one table for every command, in the epilog).
Under ``--json`` every outcome is JSON on stdout, failures included.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from hadmc.device.hal import DeviceError
from host.errors import (
    ERROR_CODES,
    EXIT_CODES_TEXT,
    EXIT_USAGE,
    UsageError,
    error_code,
    error_message,
    exit_code_for,
    exit_code_of,
    print_error_json,
)
from host.flags import add_flag
from protos import runtimes as runtime_table

COMMANDS = ("search", "profile", "devices", "report")
GLOBAL_OPTIONS_WITH_VALUE = ("--log-level",)
EPILOG = """\
commands:
  search    compress a model: PPO (or grid / random / optuna) proposals, each candidate
            really compressed, fine-tuned, exported and measured on a device (default)
  profile   measure one .onnx/.tflite file on several devices at once
  devices   show what devices are (GetInfo) and whether they serve (health)
  report    (re)build report.json / report.html of a search run directory

Devices (--device): host:port of a hadmc-device agent, sim:<profile> for an analytic
estimate (labelled simulated), or nothing for an agent started on 127.0.0.1.
`hadmc-host` with no command runs `hadmc-host search` with its defaults.

{exit_codes}
error codes (before an error message, and error_code in --json output):
  {error_codes}
""".format(
    exit_codes=textwrap.fill(f"exit codes: {EXIT_CODES_TEXT}.", width=90),
    error_codes="\n  ".join(f"{code:19} {why}" for code, why in ERROR_CODES.items()),
)


class Parser(argparse.ArgumentParser):
    """Answers a bad command line in JSON too when ``--json`` is on it (``json_errors``)."""

    json_errors = False

    def error(self, message: str) -> Any:
        if Parser.json_errors:
            print_error_json("bad_input", f"{self.prog}: {message}")
        super().error(message)


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep hand-wrapped descriptions and show every default.

    Defaults of None/False are left out: those flags say in words what happens without them.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("hadmc")
    except metadata.PackageNotFoundError:
        from hadmc import __version__

        return __version__


def _add_device_access(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        action="append",
        metavar="ADDR",
        help="device to use, repeatable: host:port, sim:<profile>, or 'local'. "
        "Default: one agent started on 127.0.0.1",
    )
    p.add_argument(
        "--token",
        help="bearer token of agents started with --token (default: $HADMC_TOKEN if set)",
    )
    p.add_argument("--tls-ca", metavar="PEM", help="CA certificate to verify TLS agents")
    p.add_argument(
        "--connect-timeout-s",
        type=float,
        default=10.0,
        help="seconds to wait for GetInfo / health / upload calls",
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON only")


def _add_profile(sub: Any) -> None:
    p = sub.add_parser(
        "profile",
        help="measure one model file on several devices concurrently",
        description="Measure the same .onnx or .tflite file on every --device at once and\n"
        "print mean, first-inference and p50/p90/p99 latency (ms), load time (ms), peak memory\n"
        "(MiB) and energy per inference (mJ, with how it was obtained); sim: rows are analytic\n"
        "estimates, with '-' where nothing was timed. Flag names follow TFLite's benchmark_model\n"
        "(--num-threads, --num-runs, --warmup-runs, --warmup-min-secs, --min-secs, --max-secs).\n"
        "Exit code 1 if any device failed, 2 if one was named wrongly.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("model", help="path of the .onnx or .tflite file to measure")
    _add_device_access(p)
    p.add_argument(
        "--runtime",
        choices=runtime_table.RUNTIME_NAMES,
        help="runtime on the device (default: onnxruntime for .onnx, litert for .tflite)",
    )
    p.add_argument(
        "--input-shape",
        metavar="N,C,H,W",
        help="input shape to feed, comma-separated (default: the model's own, dynamic dims = 1)",
    )
    add_flag(p, "--num-threads", "--threads", dest="threads", type=int, default=1,
             help="intra-op inference threads")  # fmt: skip
    add_flag(p, "--num-runs", "--runs", dest="runs", type=int, default=50,
             help="minimum timed runs")  # fmt: skip
    p.add_argument("--warmup-runs", type=int, default=10, help="minimum warm-up runs")
    add_flag(p, "--warmup-min-secs", "--warmup-seconds", dest="warmup_seconds", type=float,
             default=0.5, help="minimum warm-up, seconds")  # fmt: skip
    add_flag(p, "--min-secs", "--min-seconds", dest="min_seconds", type=float, default=1.0,
             help="minimum timed window, seconds")  # fmt: skip
    add_flag(p, "--max-secs", "--max-seconds", dest="max_seconds", type=float, default=10.0,
             help="timed window cap, seconds")  # fmt: skip
    p.add_argument(
        "--timeout-s", type=float, default=120.0, help="measuring worker time limit, seconds"
    )
    p.add_argument("--no-power", action="store_true", help="do not read power sensors")
    _add_target_flags(p)
    p.set_defaults(handler=_cmd_profile)


def _add_devices(sub: Any) -> None:
    p = sub.add_parser(
        "devices",
        help="show device info (GetInfo) and health",
        description="Ask every --device what it is (arch, CPU, memory, runtimes, power\n"
        "sources) and whether it is serving. Exit code 1 if any device failed, 2 if one was\n"
        "named wrongly (bad_address, unknown_profile).",
        formatter_class=HelpFormatter,
    )
    _add_device_access(p)
    p.add_argument(
        "--target",
        default=None,
        metavar="RUNTIME:ACCEL",
        help="check that every device offers this execution target, e.g. onnxruntime:cuda: "
        "a device that does not is failed with the reason and what it runs (exit 1)",
    )
    p.set_defaults(handler=_cmd_devices)


def _add_report(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="rebuild report.json / report.html of a run directory",
        description="Render report.json, report.html and plots/*.png of a search run.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("run_dir", metavar="DIR", help="run directory (holds results.sqlite)")
    p.set_defaults(handler=_cmd_report)


def _add_search(sub: Any, with_flags: bool) -> None:
    # The search module formats its own defaults into each help text, so no
    # ArgumentDefaultsHelpFormatter here (it would print every default twice).
    p = sub.add_parser(
        "search",
        help="hardware-aware compression search (the default command)",
        description="Compress a model with the 5-agent PPO search; every candidate is\n"
        "exported, measured on the device and scored; outputs a Pareto front and a report.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(handler=_cmd_search, search_import_error=None)
    if not with_flags:
        return
    try:
        from host.search import add_search_arguments
    except ImportError as exc:
        p.set_defaults(search_import_error=exc)
        p.description = f"{p.description}\n\nUNAVAILABLE: host.search cannot be imported ({exc})"
        return
    add_search_arguments(p)


def build_parser(with_search_flags: bool = True) -> argparse.ArgumentParser:
    """The full parser; ``with_search_flags=False`` skips importing ``host.search``."""
    parser = Parser(
        prog="hadmc-host",
        description="Hardware-aware model compression, measured on a real edge device.",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="logging verbosity (to stderr)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_search(sub, with_search_flags)
    _add_profile(sub)
    _add_devices(sub)
    _add_report(sub)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (first positional after the global options)."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in GLOBAL_OPTIONS_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def _devices_arg(args: argparse.Namespace) -> list[str | None]:
    given = args.device or [None]
    return [None if a is None or a.strip() in ("", "local") else a.strip() for a in given]


def _fleet_config(args: argparse.Namespace) -> Any:
    from host.fleet import FleetConfig

    # The environment is read here, not as the argparse default, so --help never prints it.
    token = args.token or os.environ.get("HADMC_TOKEN") or None
    return FleetConfig(token=token, tls_ca=args.tls_ca, timeout_s=args.connect_timeout_s)


def _parse_shape(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(",") if s.strip())
    except ValueError:
        raise UsageError(f"--input-shape {text!r}: expected integers like 1,1,32,32") from None
    if not shape or any(d <= 0 for d in shape):
        raise UsageError(f"--input-shape {text!r}: every dimension must be a positive integer")
    return shape


def _add_target_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--target",
        default=None,
        metavar="RUNTIME:ACCEL",
        help="execution target on the device, e.g. onnxruntime:cuda, onnxruntime:tensorrt, "
        "litert:gpu (`hadmc-host devices` lists what each board has). Default: the "
        "runtime's CPU target (onnxruntime:cpu, litert:xnnpack)",
    )
    p.add_argument(
        "--provider-option",
        action="append",
        metavar="KEY=VALUE",
        help="an execution-provider option, e.g. device_id=0 or trt_fp16_enable=1 "
        "(repeatable; the device validates them)",
    )


def _cmd_profile(args: argparse.Namespace) -> int:
    from hadmc.device.hal import MeasureOptions
    from host.fleet import artifact_spec_for, fleet_json, profile_fleet
    from host.fleet_tables import print_profile_table

    # Every local check before any device is asked (or a model uploaded).
    if args.threads < 1 or args.runs < 1 or args.max_seconds < args.min_seconds:
        raise UsageError("need --num-threads >= 1, --num-runs >= 1 and --max-secs >= --min-secs")
    artifact = artifact_spec_for(args.model, _parse_shape(args.input_shape), args.runtime)
    from host.targets import DEFAULT_ACCELERATOR, check_fp16, parse_options, parse_target

    target = parse_target(args.target, artifact.runtime)
    if target.split(":", 1)[1] == DEFAULT_ACCELERATOR[artifact.runtime]:
        check_fp16(artifact.path, target, ("fp32", "int8"))  # the CPU targets' precisions
    options = MeasureOptions(
        threads=args.threads,
        warmup_runs=args.warmup_runs,
        warmup_min_seconds=args.warmup_seconds,
        min_runs=args.runs,
        min_seconds=args.min_seconds,
        max_seconds=args.max_seconds,
        read_power=not args.no_power,
        timeout_seconds=args.timeout_s,
        target=target,
        provider_options=parse_options(args.provider_option),
    )
    rows = profile_fleet(artifact, _devices_arg(args), options, _fleet_config(args))
    if args.json:
        print(json.dumps(fleet_json(artifact, options, rows), indent=2))
    else:
        print_profile_table(artifact, rows)
    return exit_code_for(r.error_code if not r.ok else None for r in rows)


def _cmd_devices(args: argparse.Namespace) -> int:
    from host.fleet import describe_devices, row_json
    from host.fleet_tables import print_devices_table

    target = getattr(args, "target", None)
    if target and ":" not in target:
        raise UsageError(f"--target {target}: name the runtime too, e.g. onnxruntime:{target}")
    rows = describe_devices(_devices_arg(args), _fleet_config(args))
    if target:
        from dataclasses import replace

        from host.targets import target_problem

        for i, r in enumerate(rows):
            problem = target_problem(r.info or {}, target) if r.ok else ""
            if problem:
                rows[i] = replace(r, ok=False, error=problem, error_code="runtime_unavailable")
    if args.json:
        ok = all(r.ok for r in rows)
        print(json.dumps({"ok": ok, "devices": [row_json(r) for r in rows]}, indent=2))
    else:
        print_devices_table(rows)
    return exit_code_for((r.error_code or "unhealthy") if not r.ok else None for r in rows)


def _cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    try:
        from host.report import render
    except ImportError as exc:
        print(
            f"hadmc-host report: unavailable, host.report cannot be imported ({exc})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"run directory not found: {run_dir}", "not_found")
    render(run_dir)
    print(f"report: {(run_dir / 'report.html').resolve()}")
    print(f"json:   {(run_dir / 'report.json').resolve()}")
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    if args.search_import_error is not None:
        print(
            "hadmc-host search: unavailable, host.search cannot be imported "
            f"({args.search_import_error})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    from host.search import run_search

    return int(run_search(args))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hadmc-host`` console script; returns the exit code."""
    from host.logs import configure_logging

    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_in(argv)
    if command is None and not any(a in ("-h", "--help", "--version") for a in argv):
        print(
            "hadmc-host: no command given; running `hadmc-host search` with defaults",
            file=sys.stderr,
        )
        argv.append("search")
        command = "search"
    parser = build_parser(with_search_flags=command == "search")
    Parser.json_errors = "--json" in argv
    try:
        args = parser.parse_args(argv)
    finally:
        Parser.json_errors = False
    configure_logging(args.log_level)
    try:
        return int(args.handler(args))
    except (DeviceError, ValueError, FileNotFoundError, KeyboardInterrupt) as exc:
        return _fail(args, exc)


def _fail(args: argparse.Namespace, exc: BaseException) -> int:
    """An expected failure (bad input, a device that failed, Ctrl-C): one line, no traceback,
    and under --json the same as JSON on stdout."""
    code, message = error_code(exc), error_message(exc)
    if isinstance(exc, KeyboardInterrupt):
        print("hadmc-host: interrupted", file=sys.stderr)
    else:
        print(f"hadmc-host {args.command}: error: {code}: {message}", file=sys.stderr)
    if getattr(args, "json", False):
        print_error_json(code, message or "interrupted")
    return exit_code_of(exc)
