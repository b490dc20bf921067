"""Regenerate the committed protobuf/gRPC modules from ``protos/hadmc_device.proto``.

Run from anywhere: ``python -m protos.generate`` (or ``python protos/generate.py``).
The modules are generated with the repository root as include path, so the gRPC module
imports ``from protos import hadmc_device_pb2`` and works from an installed package.
A test regenerates into a temporary folder and fails if the committed files differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTO_NAME = "hadmc_device.proto"
GENERATED = ("hadmc_device_pb2.py", "hadmc_device_pb2.pyi", "hadmc_device_pb2_grpc.py")


def generate(out_root: Path) -> list[Path]:
    """Write the generated modules under ``out_root/protos/`` and return their paths."""
    # host-side tool only: the board never runs this
    import grpc_tools
    from grpc_tools import protoc

    repo_root = Path(__file__).resolve().parent.parent
    (out_root / "protos").mkdir(parents=True, exist_ok=True)
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{repo_root}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"protos/{PROTO_NAME}",
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")
    return [out_root / "protos" / name for name in GENERATED]


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    for path in generate(root):
        print(f"wrote {path.relative_to(root)}")
    sys.exit(0)
