"""The committed generated protobuf/gRPC modules match the .proto."""

from __future__ import annotations

from pathlib import Path

from protos.generate import GENERATED, generate

PROTOS = Path(__file__).resolve().parent.parent / "protos"


def test_generated_modules_are_fresh(tmp_path: Path) -> None:
    paths = generate(tmp_path)
    assert [p.name for p in paths] == list(GENERATED)
    stale = [p.name for p in paths if p.read_bytes() != (PROTOS / p.name).read_bytes()]
    assert not stale, f"regenerate with `python -m protos.generate`: {stale} differ"
