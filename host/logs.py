"""Logging for ``hadmc-host``: hadmc's own messages at ``--log-level``, third-party noise off.

Below DEBUG, what torch, torchao, the TFLite converter (absl / TensorFlow C++ logs), gRPC and
their Python warnings print (a LiteRT search used to open with 14 such lines) is silenced:
their log records below ERROR, their warnings, and the C++ loggers that read environment
variables. ``--log-level DEBUG`` shows all of it. Environment variables already set win.
"""

from __future__ import annotations

import logging
import os
import warnings

OWN_LOGGERS = ("hadmc", "host", "device_agent", "__main__")
# Read by the C++ loggers when the libraries load (so set before torch / TF are imported).
QUIET_ENV = {
    "GRPC_VERBOSITY": "ERROR",
    "TF_CPP_MIN_LOG_LEVEL": "3",  # TensorFlow / LiteRT converter
    "ABSL_MIN_LOG_LEVEL": "3",  # absl::InitializeLog and its "I0000 ..." lines
    "GLOG_minloglevel": "3",
    "TORCH_LOGS": "-all",  # torch._logging: only errors from torch's own loggers
}


class _OwnOrError(logging.Filter):
    """Passes hadmc's records at any level, other libraries' only from ERROR up."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.split(".")[0] in OWN_LOGGERS or record.levelno >= logging.ERROR


def configure_logging(level: str) -> None:
    """Set up stderr logging at ``level`` (DEBUG, INFO, WARNING, ERROR)."""
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if level == "DEBUG":
        return
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _OwnOrError) for f in handler.filters):
            handler.addFilter(_OwnOrError())
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)
