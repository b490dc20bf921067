"""Redirect this process's stdout/stderr at the file-descriptor level, so that output from
C++ (torch's exporters, LiteRT's "Created TensorFlow Lite XNNPACK delegate for CPU.") goes to
a log file or nowhere instead of the user's terminal. Python-level redirection
(``contextlib.redirect_stderr``) cannot catch what native code writes to fd 2."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def output_to(log_path: Path | str) -> Iterator[None]:
    """fds 1 and 2 append to ``log_path`` for the duration (``os.devnull`` discards)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log_path, "a") as log:
        try:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


@contextlib.contextmanager
def quiet_native() -> Iterator[None]:
    """Discard native output unless logging is at DEBUG (then the user asked to see it)."""
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        yield
        return
    with output_to(os.devnull):
        yield
