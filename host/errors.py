"""What went wrong, in one vocabulary: exit codes and error codes for every ``hadmc-host``
command (``search``, ``profile``, ``devices``, ``report``).

Error codes are stable words: the ``error_code`` of ``--json`` output and the word before the
message in a table cell or an error line are the same. Device failures use the codes of
``hadmc.device.hal.DeviceError``; the host adds its own for mistakes caught before any device is asked.
Never a Python class name: ``error_code(exc)`` maps every exception to one of these.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

from hadmc.device.hal import DeviceError

EXIT_OK = 0
EXIT_DEVICE = 1  # a device or runtime failure
EXIT_USAGE = 2  # a usage error or bad input
EXIT_NO_MODEL = 3  # a search finished with no working model, or none within the limits
EXIT_INTERRUPTED = 130
EXIT_CODES_TEXT = (
    "0 success; 1 a device or runtime failure; 2 a usage error or bad input; 3 a search "
    "finished with no working model, or none within the limits; 130 interrupted"
)

ERROR_CODES: dict[str, str] = {
    # From the device (hadmc.device.hal.DeviceError.CODES).
    "unreachable": "no hadmc-device agent answered at the address",
    "unauthenticated": "the agent refused the token (pass it with --token or $HADMC_TOKEN)",
    "invalid_model": "the model file cannot be read, or the runtime cannot load it",
    "invalid_request": "the agent refused a field of the request (a budget, a shape, a target)",
    "hash_mismatch": "the model's bytes did not match their SHA-256 on the agent",
    "too_large": "the model, its inputs or its memory use exceed the agent's limits",
    "busy": "the agent's queue is full (other hosts are measuring); retried with back-off",
    "disk_full": "the board's disk is full even after the agent emptied its chunk cache",
    "runtime_unavailable": "the runtime is not installed on the device",
    "crashed": "the measuring worker crashed",
    "timeout": "the measurement ran past its time limit",
    "internal": "an unexpected failure (--log-level DEBUG for details)",
    # From the host, before any device is asked.
    "bad_address": "--device is not host:port, sim:<profile> or local",
    "unknown_profile": "sim:<profile> names no bundled device profile",
    "bad_input": "a flag value or input file cannot be used",
    "not_found": "a file or directory named on the command line does not exist",
    "unhealthy": "the agent answers but its health check does not report SERVING",
    # Outcomes of a finished search (exit 3).
    "no_working_model": "no measured candidate kept more than half the baseline's accuracy",
    "none_within_limits": "no front member meets the limits",
    "interrupted": "stopped by Ctrl-C or a signal",
}
USAGE_CODES = frozenset({"bad_address", "unknown_profile", "bad_input", "not_found"})
assert set(DeviceError.CODES) <= ERROR_CODES.keys()


class UsageError(ValueError):
    """A mistake on the command line or in an input file; ``code`` is one of ERROR_CODES."""

    def __init__(self, message: str, code: str = "bad_input") -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code = code


def error_code(exc: BaseException) -> str:
    """The stable code of any exception (never its class name)."""
    if isinstance(exc, DeviceError | UsageError):
        return exc.code
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, FileNotFoundError):
        return "not_found"
    if isinstance(exc, ValueError):
        return "bad_input"
    return "internal"


def error_message(exc: BaseException) -> str:
    """One line: the message without the code DeviceError puts in front of it."""
    text = exc.message if isinstance(exc, DeviceError) else str(exc)
    return " ".join(text.split())


def exit_code_for(codes: Iterable[str | None]) -> int:
    """Exit status of a command that asked several devices: 0 when none failed, 2 when a
    device was named wrongly (a usage error), else 1."""
    failed = [c for c in codes if c is not None]
    if not failed:
        return EXIT_OK
    return EXIT_USAGE if any(c in USAGE_CODES for c in failed) else EXIT_DEVICE


def exit_code_of(exc: BaseException) -> int:
    """Exit status for a failure that ends a command."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, DeviceError):
        return EXIT_DEVICE
    return EXIT_USAGE


def print_error_json(code: str, message: str, **extra: Any) -> None:
    """The ``--json`` answer of a command that failed before it had results."""
    print(json.dumps({"ok": False, "error_code": code, "error": message, **extra}, indent=2))
    sys.stdout.flush()


def search_fail(
    exc: BaseException | str, json_out: bool, code: str | None = None, status: int = EXIT_USAGE
) -> int:
    """One line on stderr (and the same as JSON on stdout under --json); returns ``status``."""
    message = exc if isinstance(exc, str) else error_message(exc)
    code = code or ("bad_input" if isinstance(exc, str) else error_code(exc))
    print(f"hadmc-host search: error: {code}: {message}", file=sys.stderr)
    if json_out:
        print_error_json(code, message)
    return status


def search_interrupted(line: str, json_out: bool, **extra: Any) -> int:
    print(line, file=sys.stderr)
    if json_out:
        print_error_json("interrupted", line.removeprefix("hadmc-host: "), **extra)
    return EXIT_INTERRUPTED
