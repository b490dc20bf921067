"""Content-addressed chunk cache on disk, bounded, with LRU eviction.

Layout: ``<cache_dir>/chunks/<sha[:2]>/<sha>``. Recency is the file's mtime, touched on every
use, so the order survives agent restarts. Chunks are verified (SHA-256) before they are
written, and written atomically (temp file + rename), so a crash never leaves a bad chunk.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

from device_agent.errors import AgentError
from protos import hadmc_device_pb2 as pb

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def check_sha256(value: str) -> str:
    if not _SHA256_HEX.match(value):
        raise AgentError(pb.INVALID_REQUEST, f"not a lowercase hex SHA-256: {value[:80]!r}")
    return value


class ChunkStore:
    """Thread-safe LRU chunk cache of at most ``capacity_bytes``."""

    def __init__(self, cache_dir: Path, capacity_bytes: int, max_chunk_bytes: int) -> None:
        self.root = Path(cache_dir) / "chunks"
        self.root.mkdir(parents=True, exist_ok=True)
        self.capacity_bytes = capacity_bytes
        self.max_chunk_bytes = max_chunk_bytes
        self._lock = threading.Lock()
        self._lru: OrderedDict[str, int] = OrderedDict()  # sha -> size, oldest first
        self._used = 0
        self._load_index()

    def _load_index(self) -> None:
        entries = []
        for path in self.root.glob("??/*"):
            if _SHA256_HEX.match(path.name):
                st = path.stat()
                entries.append((st.st_mtime, path.name, st.st_size))
        for _, sha, size in sorted(entries):
            self._lru[sha] = size
            self._used += size

    def _path(self, sha: str) -> Path:
        return self.root / sha[:2] / sha

    @property
    def used_bytes(self) -> int:
        return self._used

    def missing(self, hashes: Iterable[str]) -> list[str]:
        """Hashes not in the cache, in request order, without duplicates."""
        out: list[str] = []
        seen: set[str] = set()
        with self._lock:
            for sha in hashes:
                check_sha256(sha)
                if sha not in seen and sha not in self._lru:
                    out.append(sha)
                seen.add(sha)
        return out

    def put(self, sha: str, data: bytes) -> bool:
        """Verify and store one chunk; False when it was already cached."""
        check_sha256(sha)
        if len(data) > self.max_chunk_bytes:
            raise AgentError(
                pb.TOO_LARGE, f"chunk of {len(data)} B over the {self.max_chunk_bytes} B limit"
            )
        if len(data) > self.capacity_bytes:
            raise AgentError(pb.TOO_LARGE, "chunk larger than the whole cache")
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha:
            raise AgentError(pb.HASH_MISMATCH, f"chunk sha256 is {actual}, message says {sha}")
        with self._lock:
            if sha in self._lru:
                self._touch(sha)
                return False
            path = self._path(sha)
            path.parent.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
            self._lru[sha] = len(data)
            self._used += len(data)
            self._evict()
            return True

    def _touch(self, sha: str) -> None:
        self._lru.move_to_end(sha)
        now = time.time()
        try:
            os.utime(self._path(sha), (now, now))
        except OSError:
            pass

    def _evict(self) -> None:
        while self._used > self.capacity_bytes and self._lru:
            sha, size = self._lru.popitem(last=False)
            self._used -= size
            try:
                self._path(sha).unlink()
            except OSError:
                pass

    def assemble(self, manifest: pb.ModelManifest, out_path: Path) -> None:
        """Write the model named by ``manifest`` to ``out_path`` and check its SHA-256."""
        check_sha256(manifest.sha256)
        declared = sum(c.size_bytes for c in manifest.chunks)
        if declared != manifest.size_bytes:
            raise AgentError(
                pb.INVALID_REQUEST,
                f"chunk sizes sum to {declared} B but the manifest says {manifest.size_bytes} B",
            )
        missing = self.missing(c.sha256 for c in manifest.chunks)
        if missing:
            raise AgentError(
                pb.MISSING_CHUNKS, f"{len(missing)} chunk(s) not in the cache", missing
            )
        digest = hashlib.sha256()
        with self._lock, open(out_path, "wb") as out:
            for ref in manifest.chunks:
                try:
                    data = self._path(ref.sha256).read_bytes()
                except FileNotFoundError:  # evicted or removed between check and read
                    raise AgentError(
                        pb.MISSING_CHUNKS, "chunk vanished from the cache", [ref.sha256]
                    ) from None
                self._touch(ref.sha256)
                digest.update(data)
                out.write(data)
        if digest.hexdigest() != manifest.sha256:
            raise AgentError(
                pb.HASH_MISMATCH,
                f"reassembled model sha256 {digest.hexdigest()} != manifest {manifest.sha256}",
            )
