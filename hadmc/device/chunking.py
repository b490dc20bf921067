"""Content-defined chunking of model artifacts, with a SHA-256 manifest.

Used twice: the host uploads only the chunks a device lacks, and the update agent's cost
("update bytes") is the size of the chunks a new artifact does not share with the deployed
one. Chunk boundaries come from FastCDC (the maintained ``fastcdc`` package, Cython
accelerated), so an edit in one tensor moves only the chunks around it, unlike fixed-size
blocks where every later block would shift.

Sizes are small (1 KiB min, 4 KiB average, 16 KiB max) because demo artifacts are
0.1-5 MB and a layer's weights are a few KiB: a coarser split would drag unchanged
neighbours into every delta.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from fastcdc import fastcdc

MIN_CHUNK_BYTES = 1024
AVG_CHUNK_BYTES = 4096
MAX_CHUNK_BYTES = 16384


@dataclass(frozen=True)
class ChunkRef:
    """One chunk: its SHA-256 (lowercase hex), byte offset and length in the artifact."""

    sha256: str
    offset: int
    size_bytes: int


@dataclass
class Manifest:
    """An artifact as an ordered list of chunks; ``sha256`` is the whole file's hash."""

    name: str
    sha256: str
    size_bytes: int
    chunks: list[ChunkRef] = field(default_factory=list)

    def chunk_hashes(self) -> list[str]:
        return [c.sha256 for c in self.chunks]

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "chunks": [[c.sha256, c.offset, c.size_bytes] for c in self.chunks],
        }

    @classmethod
    def from_dict(cls, d: dict) -> Manifest:
        return cls(d["name"], d["sha256"], d["size_bytes"], [ChunkRef(*c) for c in d["chunks"]])


def chunk_bytes(
    data: bytes,
    name: str = "model",
    min_size: int = MIN_CHUNK_BYTES,
    avg_size: int = AVG_CHUNK_BYTES,
    max_size: int = MAX_CHUNK_BYTES,
) -> Manifest:
    """Split ``data`` into content-defined chunks and return its manifest."""
    chunks: list[ChunkRef] = []
    if data:
        for c in fastcdc(data, min_size, avg_size, max_size, fat=False, hf=hashlib.sha256):
            chunks.append(ChunkRef(c.hash, c.offset, c.length))
    return Manifest(name, hashlib.sha256(data).hexdigest(), len(data), chunks)


def chunk_file(path: str | Path, **sizes: int) -> Manifest:
    path = Path(path)
    return chunk_bytes(path.read_bytes(), name=path.name, **sizes)


def iter_chunk_data(data: bytes, manifest: Manifest) -> Iterable[tuple[ChunkRef, bytes]]:
    """Yield each chunk with its bytes (for uploading)."""
    for ref in manifest.chunks:
        yield ref, data[ref.offset : ref.offset + ref.size_bytes]


def reassemble(manifest: Manifest, store: dict[str, bytes]) -> bytes:
    """Concatenate chunks from ``store`` (hash -> bytes) and verify the whole-file hash."""
    data = b"".join(store[ref.sha256] for ref in manifest.chunks)
    if hashlib.sha256(data).hexdigest() != manifest.sha256:
        raise ValueError(f"reassembled bytes do not match manifest sha256 {manifest.sha256}")
    return data


def delta_bytes(new: Manifest, base: Manifest) -> int:
    """Bytes of ``new`` whose chunks ``base`` lacks: what an over-the-air update must send."""
    have = set(base.chunk_hashes())
    sent: set[str] = set()
    total = 0
    for ref in new.chunks:
        if ref.sha256 not in have and ref.sha256 not in sent:
            sent.add(ref.sha256)
            total += ref.size_bytes
    return total


def shared_fraction(new: Manifest, base: Manifest) -> float:
    """Fraction of ``new``'s bytes held in chunks that ``base`` also has."""
    if new.size_bytes == 0:
        return 1.0
    have = set(base.chunk_hashes())
    shared = sum(ref.size_bytes for ref in new.chunks if ref.sha256 in have)
    return shared / new.size_bytes
