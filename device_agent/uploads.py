"""Bounds on UploadChunks streams: a fixed number of slots, and an idle deadline.

A stream that never ends would otherwise hold a server thread for ever, and forty of them
starve health checks. gRPC's sync server cannot time out a blocked ``next()`` on the request
iterator, so a pump thread reads it into a small queue and the handler waits on the queue
with a deadline; when the handler ends the call, gRPC ends the iterator and the pump exits.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

from device_agent.errors import AgentError
from protos import hadmc_device_pb2 as pb

_END = object()


class UploadSlots:
    """At most ``n`` streams at once; one more is refused at once (BUSY), not queued."""

    def __init__(self, n: int) -> None:
        self._sem = threading.BoundedSemaphore(n)
        self.n = n

    def __enter__(self) -> UploadSlots:
        if not self._sem.acquire(blocking=False):
            raise AgentError(
                pb.BUSY, f"all {self.n} upload slots are in use; retry in a few seconds"
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self._sem.release()


def idle_bounded(requests: Iterator[Any], idle_s: float) -> Iterator[Any]:
    """Yield from ``requests``; raise AgentError when nothing arrives for ``idle_s``."""
    q: queue.Queue[Any] = queue.Queue(maxsize=4)  # a few chunks ahead, no more (memory)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def pump() -> None:
        try:
            for item in requests:
                if not put(item):
                    return
            put(_END)
        except Exception as exc:  # noqa: BLE001 - the call ended (cancelled, aborted)
            put(exc)

    threading.Thread(target=pump, name="upload-pump", daemon=True).start()
    try:
        while True:
            try:
                item = q.get(timeout=idle_s)
            except queue.Empty:
                raise AgentError(
                    pb.INVALID_REQUEST,
                    f"upload stream sent nothing for {idle_s:.0f} s and was ended; "
                    "send chunks back to back",
                ) from None
            if item is _END:
                return
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        stop.set()
