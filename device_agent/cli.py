"""``hadmc-device``: serve the DeviceAgent on this board."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from device_agent import __version__

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
TOKEN_ENV = "HADMC_DEVICE_TOKEN"
MIB = 1024 * 1024


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hadmc-device",
        description=(
            "Measure ONNX / TFLite models on this board for hadmc-host, over gRPC. "
            "Each Profile runs in a fresh worker process; chunks are cached on disk."
        ),
        epilog=(
            "Binds 127.0.0.1 by default. Binding any other address needs --token (or "
            f"${TOKEN_ENV}); --insecure overrides that refusal. Once serving, prints "
            "'HADMC_DEVICE_LISTENING <host>:<port>' on stdout."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind")
    p.add_argument("--port", type=int, default=50051, help="port; 0 picks a free one")
    p.add_argument(
        "--token",
        default=None,  # not the env value: --help must never print a secret
        help=f"require 'authorization: Bearer <token>' on every call (default: ${TOKEN_ENV})",
    )
    p.add_argument("--tls-cert", type=Path, help="PEM certificate chain (with --tls-key)")
    p.add_argument("--tls-key", type=Path, help="PEM private key (with --tls-cert)")
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(os.environ.get("HADMC_DEVICE_CACHE", "~/.cache/hadmc-device")).expanduser(),
        help="chunk cache directory",
    )
    p.add_argument("--cache-mb", type=float, default=1024.0, help="chunk cache capacity (MiB)")
    p.add_argument("--max-model-mb", type=float, default=512.0, help="largest model (MiB)")
    p.add_argument("--max-chunk-kb", type=float, default=1024.0, help="largest chunk (KiB)")
    p.add_argument(
        "--worker-timeout", type=float, default=120.0, help="default worker limit per Profile (s)"
    )
    p.add_argument("--grace", type=float, default=5.0, help="shutdown grace period (s)")
    p.add_argument(
        "--no-prewarm",
        action="store_true",
        help="do not keep a spare worker process ready between Profile calls (saves its RSS)",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow binding a non-loopback address without a token (trusted networks only)",
    )
    p.add_argument(
        "--sysfs-root",
        type=Path,
        default=Path("/"),
        help="root under which /sys and /proc-style sensor files are read (testing)",
    )
    p.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="stop serving when the process that started this agent exits (used by "
        "hadmc-host's local agent, so a killed host never leaves an agent behind)",
    )
    p.add_argument("--version", action="version", version=f"hadmc-device {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.token = args.token or os.environ.get(TOKEN_ENV) or None
    if args.host not in LOOPBACK and not args.token and not args.insecure:
        print(
            f"hadmc-device: refusing to bind {args.host} without --token "
            f"(or ${TOKEN_ENV}); pass --insecure to do it anyway",
            file=sys.stderr,
        )
        return 2
    from device_agent.worker import FAULT_ENV

    if os.environ.get(FAULT_ENV) == "1" and args.host not in LOOPBACK:
        # The fault hooks (fault:crash / fault:hang) exist for the test suite only: an agent
        # reachable from another machine must never let a client crash or hang it at will.
        print(
            f"hadmc-device: refusing to bind {args.host} with ${FAULT_ENV}=1 (test-only fault "
            "injection); unset it, or bind 127.0.0.1",
            file=sys.stderr,
        )
        return 2
    if (args.tls_cert is None) != (args.tls_key is None):
        print("hadmc-device: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    # Imported here so --help and argument errors stay fast.
    from device_agent.server import ServerOptions, start_server, stop_server
    from device_agent.service import AgentConfig

    config = AgentConfig(
        cache_dir=args.cache_dir,
        cache_capacity_bytes=int(args.cache_mb * MIB),
        max_model_bytes=int(args.max_model_mb * MIB),
        max_chunk_bytes=int(args.max_chunk_kb * 1024),
        worker_timeout_s=args.worker_timeout,
        token_required=bool(args.token),
        sysfs_root=args.sysfs_root,
        prewarm_worker=not args.no_prewarm,
    )
    opts = ServerOptions(
        host=args.host,
        port=args.port,
        token=args.token or None,
        tls_cert=args.tls_cert.read_bytes() if args.tls_cert else None,
        tls_key=args.tls_key.read_bytes() if args.tls_key else None,
    )
    try:
        running = start_server(config, opts)
    except (OSError, RuntimeError) as exc:
        print(f"hadmc-device: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if args.exit_with_parent:
        _watch_parent(stop)
    print(f"HADMC_DEVICE_LISTENING {running.address}", flush=True)
    stop.wait()
    stop_server(running, args.grace)
    return 0


def _watch_parent(stop: threading.Event, poll_s: float = 0.5) -> None:
    """Set ``stop`` once our parent is gone (we are re-parented, so getppid changes).

    Polling is portable (Linux and macOS boards); PR_SET_PDEATHSIG would fire when the
    *thread* that spawned us exits, which is wrong for hosts that start agents from threads.
    """
    parent = os.getppid()

    def watch() -> None:
        while not stop.wait(poll_s):
            if os.getppid() != parent:
                stop.set()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
