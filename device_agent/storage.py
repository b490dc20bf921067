"""Content-addressed chunk cache on disk, bounded, with LRU eviction, that survives power loss.

Layout: ``<cache_dir>/chunks/<sha[:2]>/<sha>``. Recency is the file's mtime, touched on every
use (a MissingChunks hit included, so an upload cannot evict what it was just told is there),
so the order survives agent restarts.

Durability: a chunk is verified (SHA-256) before it is written, written to a temp file,
fsync'ed, renamed into place, and its directory fsync'ed, so a crash leaves either no chunk or
a whole one. A power loss can still leave damage the kernel had not flushed (a renamed file
truncated to 0 bytes), so:
- at start-up, temp files and empty chunks are removed, and after an *unclean* shutdown (no
  ``.clean`` marker, which ``close()`` writes) every chunk is re-hashed and bad ones dropped;
- on assembly, each chunk is re-hashed as it is read; a bad one is dropped and reported
  missing, so the host's re-upload repairs the cache instead of failing on HASH_MISMATCH.

Accounting charges each file at least one filesystem block (``f_frsize``), so many tiny chunks
cannot fill the disk while the books say the cache is nearly empty.
"""

from __future__ import annotations

import errno
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

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
CLEAN_MARKER = ".clean"
MIN_CHUNK_BYTES = 1024  # smallest chunk the host's chunker makes (hadmc.device.chunking)


def check_sha256(value: str) -> str:
    if not _SHA256_HEX.fullmatch(value):  # fullmatch: "…\n" must not pass, as re.match lets it
        raise AgentError(pb.INVALID_REQUEST, f"not a lowercase hex SHA-256: {value[:80]!r}")
    return value


def max_manifest_chunks(max_model_bytes: int) -> int:
    """Most chunks a legitimate manifest of the largest model can have."""
    return max_model_bytes // MIN_CHUNK_BYTES + 1


class ChunkStore:
    """Thread-safe LRU chunk cache of at most ``capacity_bytes`` (as charged on disk)."""

    def __init__(self, cache_dir: Path, capacity_bytes: int, max_chunk_bytes: int) -> None:
        self.root = Path(cache_dir) / "chunks"
        self.root.mkdir(parents=True, exist_ok=True)
        self.capacity_bytes = capacity_bytes
        self.max_chunk_bytes = max_chunk_bytes
        self.block_bytes = max(512, os.statvfs(self.root).f_frsize or 4096)
        self._lock = threading.Lock()
        self._lru: OrderedDict[str, int] = OrderedDict()  # sha -> payload size, oldest first
        self._used = 0
        self.dropped_at_start: list[str] = []
        self._load_index()

    def charge(self, size: int) -> int:
        """Bytes a file of ``size`` costs on disk: whole blocks, at least one."""
        return max(1, -(-size // self.block_bytes)) * self.block_bytes

    def _load_index(self) -> None:
        marker = self.root / CLEAN_MARKER
        clean = marker.exists()
        marker.unlink(missing_ok=True)  # until close() writes it again, we are "unclean"
        for tmp in self.root.glob("??/.tmp-*"):
            tmp.unlink(missing_ok=True)
        entries = []
        for path in self.root.glob("??/*"):
            if not _SHA256_HEX.fullmatch(path.name):
                continue
            st = path.stat()
            bad = st.st_size == 0 or (not clean and _sha256_file(path) != path.name)
            if bad:
                path.unlink(missing_ok=True)
                self.dropped_at_start.append(path.name)
                continue
            entries.append((st.st_mtime, path.name, st.st_size))
        for _, sha, size in sorted(entries):
            self._lru[sha] = size
            self._used += self.charge(size)

    def close(self) -> None:
        """Mark a clean shutdown, so the next start-up need not re-hash the cache."""
        with self._lock:
            (self.root / CLEAN_MARKER).write_bytes(b"")

    def _path(self, sha: str) -> Path:
        return self.root / sha[:2] / sha

    @property
    def used_bytes(self) -> int:
        return self._used

    def missing(self, hashes: Iterable[str]) -> list[str]:
        """Hashes not in the cache, in request order, without duplicates; present ones are
        touched, so the upload that follows cannot evict them."""
        out: list[str] = []
        seen: set[str] = set()
        with self._lock:
            for sha in hashes:
                check_sha256(sha)
                if sha in seen:
                    continue
                seen.add(sha)
                if sha in self._lru:
                    self._touch(sha)
                else:
                    out.append(sha)
        return out

    def put(self, sha: str, data: bytes) -> bool:
        """Verify and store one chunk; False when it was already cached."""
        check_sha256(sha)
        if len(data) > self.max_chunk_bytes:
            raise AgentError(
                pb.TOO_LARGE, f"chunk of {len(data)} B over the {self.max_chunk_bytes} B limit"
            )
        if self.charge(len(data)) > self.capacity_bytes:
            raise AgentError(pb.TOO_LARGE, "chunk larger than the whole cache")
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha:
            raise AgentError(pb.HASH_MISMATCH, f"chunk sha256 is {actual}, message says {sha}")
        with self._lock:
            if sha in self._lru:
                self._touch(sha)
                return False
            self._write(sha, data)
            self._lru[sha] = len(data)
            self._used += self.charge(len(data))
            self._evict(self.capacity_bytes)
            return True

    def _write(self, sha: str, data: bytes) -> None:
        """Durable write; on a full disk, evict oldest chunks (a little, half, all) and retry."""
        need = 4 * self.charge(len(data))
        for target in (None, self._used - need, self._used // 2, 0):
            if target is not None:
                self._evict(max(0, target))
            try:
                _durable_write(self._path(sha), data)
                return
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
        raise AgentError(
            pb.DISK_FULL,
            f"the board's disk is full ({self.root}): the chunk cache was emptied and the chunk "
            "still does not fit; free disk space on the board or lower --cache-mib",
        )

    def _touch(self, sha: str) -> None:
        self._lru.move_to_end(sha)
        now = time.time()
        try:
            os.utime(self._path(sha), (now, now))
        except OSError:
            pass

    def _drop(self, sha: str) -> None:
        size = self._lru.pop(sha, None)
        if size is not None:
            self._used -= self.charge(size)
        self._path(sha).unlink(missing_ok=True)

    def _evict(self, target_bytes: int) -> None:
        while self._used > target_bytes and self._lru:
            self._drop(next(iter(self._lru)))

    def assemble(self, manifest: pb.ModelManifest, out_path: Path, max_model_bytes: int) -> None:
        """Write the model named by ``manifest`` to ``out_path`` and check its SHA-256.

        The manifest's claims are checked against the cache, not trusted: each chunk's real
        length must equal its ``size_bytes``, and writing stops once the running total passes
        ``max_model_bytes``, so a manifest that names one chunk many times cannot build an
        oversized model.
        """
        check_sha256(manifest.sha256)
        if len(manifest.chunks) > max_manifest_chunks(max_model_bytes):
            raise AgentError(pb.TOO_LARGE, f"manifest names {len(manifest.chunks)} chunks")
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
        digest, total, bad = hashlib.sha256(), 0, []
        with self._lock, open(out_path, "wb") as out:
            for ref in manifest.chunks:
                real = self._lru.get(ref.sha256)
                if real is None:  # evicted between the check and now
                    bad.append(ref.sha256)
                    continue
                if real != ref.size_bytes:
                    raise AgentError(
                        pb.INVALID_REQUEST,
                        f"chunk {ref.sha256[:12]}… is {real} B, the manifest says "
                        f"{ref.size_bytes} B",
                    )
                total += real
                if total > max_model_bytes:
                    raise AgentError(pb.TOO_LARGE, f"model over the {max_model_bytes} B limit")
                data = self._read_verified(ref.sha256)
                if data is None:
                    bad.append(ref.sha256)
                    continue
                digest.update(data)
                out.write(data)
        if bad:
            raise AgentError(
                pb.MISSING_CHUNKS, f"{len(bad)} chunk(s) damaged or gone from the cache", bad
            )
        if digest.hexdigest() != manifest.sha256:
            raise AgentError(
                pb.HASH_MISMATCH,
                f"reassembled model sha256 {digest.hexdigest()} != manifest {manifest.sha256}",
            )

    def _read_verified(self, sha: str) -> bytes | None:
        """The chunk's bytes, or None (and the chunk dropped) when it is gone or damaged."""
        try:
            data = self._path(sha).read_bytes()
        except FileNotFoundError:
            data = None
        if data is None or hashlib.sha256(data).hexdigest() != sha:
            self._drop(sha)
            return None
        self._touch(sha)
        return data


def _durable_write(path: Path, data: bytes) -> None:
    """temp file + fsync + rename + fsync(dir); the temp file never outlives a failure."""
    path.parent.mkdir(exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
