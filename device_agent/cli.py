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
MIN_TOKEN_CHARS = 16  # shorter is guessable; `openssl rand -hex 16` gives 32
MIB = 1024 * 1024


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"the port must be 0-65535 (0 picks a free one): {port}")
    return port


def _positive(kind: type) -> object:
    def parse(text: str) -> object:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value >= 0 or value != value or value == float("inf"):
            raise argparse.ArgumentTypeError(f"must be a finite number >= 0: {text}")
        return value

    return parse


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
    p.add_argument("--port", type=_port, default=50051, help="port (0-65535); 0 picks a free one")
    p.add_argument(
        "--token",
        default=None,  # not the env value: --help must never print a secret
        help=f"require 'authorization: Bearer <token>' on every call, at least "
        f"{MIN_TOKEN_CHARS} characters. Visible in `ps`: prefer --token-file or ${TOKEN_ENV}",
    )
    p.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help="read the token from this file (first line), so it is not in argv",
    )
    p.add_argument("--tls-cert", type=Path, help="PEM certificate chain (with --tls-key)")
    p.add_argument("--tls-key", type=Path, help="PEM private key (with --tls-cert)")
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(os.environ.get("HADMC_DEVICE_CACHE", "~/.cache/hadmc-device")).expanduser(),
        help="chunk cache directory",
    )
    p.add_argument(
        "--cache-mib", "--cache-mb", type=float, default=1024.0, help="chunk cache capacity (MiB)"
    )
    p.add_argument(
        "--max-model-mib", "--max-model-mb", type=float, default=512.0, help="largest model (MiB)"
    )
    p.add_argument(
        "--max-chunk-kib", "--max-chunk-kb", type=float, default=1024.0, help="largest chunk (KiB)"
    )
    p.add_argument(
        "--worker-timeout",
        type=_positive(float),
        default=120.0,
        help="worker wall-clock limit per Profile (s); a request may ask for less, never more",
    )
    p.add_argument(
        "--worker-memory-mib",
        "--worker-memory-mb",
        type=_positive(float),
        default=0.0,
        help="address-space limit of each measuring worker (MiB); 0: the board's RAM, or no "
        "limit where a CUDA/TensorRT target is available (CUDA reserves more address space "
        "than the board has memory)",
    )
    p.add_argument(
        "--max-input-mib",
        "--max-input-mb",
        type=_positive(float),
        default=256.0,
        help="all inputs of one Profile (MiB)",
    )
    p.add_argument(
        "--max-queued",
        type=_positive(int),
        default=8,
        help="Profile calls that may wait behind the one measuring; more get BUSY at once",
    )
    p.add_argument(
        "--max-upload-streams",
        type=_positive(int),
        default=8,
        help="concurrent UploadChunks streams; more get BUSY at once",
    )
    p.add_argument(
        "--upload-idle-timeout",
        type=_positive(float),
        default=30.0,
        help="end an upload stream that sends nothing for this long (s)",
    )
    p.add_argument("--grace", type=_positive(float), default=5.0, help="shutdown grace period (s)")
    p.add_argument(
        "--no-prewarm",
        action="store_true",
        help="no zygote worker: every Profile spawns a fresh worker that imports the runtime "
        "(saves the zygote's ~50 MiB RSS, costs ~0.5 s per call)",
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
    p.add_argument(
        "--kind",
        default="",
        metavar="KEY",
        help="this board's kind, e.g. pi5 or jetson-orin (GetInfo's device_kind): a host "
        "pools only boards of one kind unless told otherwise. Default: derived by the host "
        "from arch, CPU model, cores and runtime versions",
    )
    p.add_argument("--version", action="version", version=f"hadmc-device {__version__}")
    return p


def _fail(message: str, code: int = 2) -> int:
    print(f"hadmc-device: {message}", file=sys.stderr)
    return code


def _read_token(args: argparse.Namespace) -> str | None:
    """--token, else --token-file, else $HADMC_DEVICE_TOKEN; raises ValueError when bad."""
    if args.token_file is not None:
        try:
            lines = args.token_file.read_text().splitlines()
        except OSError as exc:
            raise ValueError(
                f"cannot read --token-file {args.token_file}: {exc.strerror}"
            ) from None
        token = lines[0].strip() if lines else ""
    else:
        token = args.token if args.token is not None else os.environ.get(TOKEN_ENV)
    if token is None or token == "":
        return None
    if len(token.strip()) < MIN_TOKEN_CHARS or token != token.strip():
        raise ValueError(
            f"the token must be at least {MIN_TOKEN_CHARS} characters, without surrounding "
            "spaces (e.g. `openssl rand -hex 16`)"
        )
    return token


def _read_tls(args: argparse.Namespace) -> tuple[bytes, bytes] | None:
    """The PEM cert chain and key, checked to load and match; raises ValueError."""
    if args.tls_cert is None and args.tls_key is None:
        return None
    if (args.tls_cert is None) != (args.tls_key is None):
        raise ValueError("--tls-cert and --tls-key go together")
    for what, path in (("certificate", args.tls_cert), ("key", args.tls_key)):
        if not path.is_file():
            raise ValueError(f"TLS {what} not found: {path}")
    import ssl

    try:  # stdlib ssl checks what gRPC would only report as a failed bind
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            args.tls_cert, args.tls_key
        )
    except ssl.SSLError as exc:
        reason = (
            "the key does not match the certificate"
            if "KEY_VALUES_MISMATCH" in str(exc)
            else f"not a PEM certificate and key ({exc.reason or exc})"
        )
        raise ValueError(f"TLS: {reason}: {args.tls_cert}, {args.tls_key}") from None
    except OSError as exc:
        raise ValueError(f"TLS: cannot read {exc.filename}: {exc.strerror}") from None
    return args.tls_cert.read_bytes(), args.tls_key.read_bytes()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.token = _read_token(args)
        tls = _read_tls(args)
    except ValueError as exc:
        return _fail(str(exc))
    if args.host not in LOOPBACK and not args.token and not args.insecure:
        return _fail(
            f"refusing to bind {args.host} without --token (or --token-file, ${TOKEN_ENV}); "
            "pass --insecure to do it anyway"
        )
    from device_agent.worker import FAULT_ENV

    if os.environ.get(FAULT_ENV) == "1" and args.host not in LOOPBACK:
        # The fault hooks (fault:crash / fault:hang) exist for the test suite only: an agent
        # reachable from another machine must never let a client crash or hang it at will.
        return _fail(
            f"refusing to bind {args.host} with ${FAULT_ENV}=1 (test-only fault "
            "injection); unset it, or bind 127.0.0.1"
        )
    if args.host not in LOOPBACK and tls is None:
        print(
            f"hadmc-device: warning: serving {args.host} without TLS: the token and models "
            "travel in clear text; use --tls-cert/--tls-key on untrusted networks",
            file=sys.stderr,
        )
    # Imported here so --help and argument errors stay fast.
    from device_agent.server import ServerOptions, start_server, stop_server
    from device_agent.service import AgentConfig

    # -1: "the board's RAM, unless a GPU runtime is found" (decided after the probe).
    worker_memory = int(args.worker_memory_mib * MIB) or -1
    config = AgentConfig(
        cache_dir=args.cache_dir,
        cache_capacity_bytes=int(args.cache_mib * MIB),
        max_model_bytes=int(args.max_model_mib * MIB),
        max_chunk_bytes=int(args.max_chunk_kib * 1024),
        worker_timeout_s=args.worker_timeout,
        token_required=bool(args.token),
        sysfs_root=args.sysfs_root,
        prewarm_worker=not args.no_prewarm,
        max_input_bytes=int(args.max_input_mib * MIB),
        worker_memory_bytes=worker_memory,
        max_queued_profiles=args.max_queued,
        max_upload_streams=max(1, args.max_upload_streams),
        upload_idle_timeout_s=args.upload_idle_timeout,
        device_kind=args.kind.strip(),
    )
    opts = ServerOptions(
        host=args.host,
        port=args.port,
        token=args.token,
        tls_cert=tls[0] if tls else None,
        tls_key=tls[1] if tls else None,
    )
    try:
        running = start_server(config, opts)
    except (OSError, RuntimeError) as exc:
        return _fail(str(exc), 1)
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
