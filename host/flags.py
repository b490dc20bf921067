"""Flags shared by ``search`` and ``profile``: one name per concept, the names TFLite's
``benchmark_model`` uses (``--num_threads``, ``--num_runs``, ``--min_secs``, ``--max_secs``,
``--warmup_runs``, ``--warmup_min_secs``) written with dashes. The names hadmc used before stay
as deprecated aliases for one release: they still work and print a one-line warning."""

from __future__ import annotations

import argparse
import sys
from typing import Any

# Old name -> new name, for the warning and for messages that name a flag by its dest.
RENAMED = {
    "--threads": "--num-threads",
    "--runs": "--num-runs",
    "--measure-runs": "--num-runs",
    "--min-seconds": "--min-secs",
    "--measure-seconds": "--min-secs",
    "--max-seconds": "--max-secs",
    "--warmup-seconds": "--warmup-min-secs",
    "--max-memory-mb": "--max-memory-mib",  # it always meant 2**20 bytes
}


class DeprecatedAlias(argparse.Action):
    """Stores like the new flag, after one line on stderr saying which name to use."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        new = RENAMED.get(option_string or "", "")
        print(
            f"hadmc-host: warning: {option_string} is deprecated, use {new} (the old name "
            "goes in the next release)",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


def add_flag(
    parser: argparse.ArgumentParser, name: str, *old: str, dest: str, **kwargs: Any
) -> None:
    """``name`` with ``kwargs``, plus each ``old`` name as a hidden deprecated alias."""
    kwargs.setdefault("metavar", name.lstrip("-").upper().replace("-", "_"))
    parser.add_argument(name, dest=dest, **kwargs)
    for alias in old:
        parser.add_argument(
            alias,
            dest=dest,
            type=kwargs.get("type"),
            action=DeprecatedAlias,
            default=argparse.SUPPRESS,
            help=argparse.SUPPRESS,
        )


def flag_of(dest: str, flags: dict[str, str] | None = None) -> str:
    """The flag a user types for ``dest`` (``measure_runs`` -> ``--num-runs``)."""
    return (flags or {}).get(dest, "--" + dest.replace("_", "-"))
