"""fp32 / fp16 / int8 of one model on ``onnxruntime:cpu`` against ``onnxruntime:cuda``.

Where the board (here: this machine, through a loopback agent) has a CUDA execution provider,
each precision is profiled on both targets and a table is printed and written to
``bench/results/accelerator.json``, with each measurement's node placement (CPU fallback).
Elsewhere the script says what is missing and exits 0.

    python bench/accelerator.py
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from agent_helpers import onnx_cnn, profile_request, start_agent, upload  # noqa: E402

from protos import hadmc_device_pb2 as pb  # noqa: E402

RESULTS = REPO / "bench" / "results" / "accelerator.json"
BUDGET = {"warmup_runs": 10, "warmup_min_seconds": 0.5, "min_runs": 50, "min_seconds": 1.0}
TARGETS = ("onnxruntime:cpu", "onnxruntime:cuda")


def variants(work: Path) -> dict[str, bytes]:
    """The same CNN (3x128x128 input) as fp32, fp16 (onnxconverter-common) and int8
    (onnxruntime.quantization, dynamic)."""
    import onnx
    from onnxconverter_common import float16
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = onnx_cnn(seed=0, channels=64, hw=128)
    (work / "fp32.onnx").write_bytes(fp32)
    half = float16.convert_float_to_float16(onnx.load_from_string(fp32), keep_io_types=True)
    quantize_dynamic(str(work / "fp32.onnx"), str(work / "int8.onnx"), weight_type=QuantType.QInt8)
    return {
        "fp32": fp32,
        "fp16": half.SerializeToString(),
        "int8": (work / "int8.onnx").read_bytes(),
    }


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        agent = start_agent(Path(tmp) / "cache")
        try:
            info = agent.stub().GetInfo(pb.GetInfoRequest(), timeout=60)
            found = {t.target: t for t in info.targets}
            cuda = found.get("onnxruntime:cuda")
            if cuda is None or not cuda.available:
                why = cuda.detail if cuda is not None else "agent lists no targets"
                print(f"no CUDA execution provider on this machine ({why}); nothing to compare.")
                print("Install NVIDIA's onnxruntime-gpu build on a CUDA machine to run this bench.")
                return 0
            rows = []
            for precision, data in variants(Path(tmp)).items():
                manifest, _ = upload(agent, data, name=precision)
                for target in TARGETS:
                    r = agent.stub().Profile(
                        profile_request(manifest, target=target, **BUDGET), timeout=300
                    )
                    rows.append(
                        {
                            "precision": precision,
                            "target": target,
                            "p50_ms": r.latency.p50_ms,
                            "p90_ms": r.latency.p90_ms,
                            "n": r.latency.n,
                            "nodes_per_provider": dict(r.provenance.nodes_per_provider),
                            "cpu_fallback_fraction": r.provenance.cpu_fallback_fraction,
                        }
                    )
        finally:
            agent.stop()
    base = {r["precision"]: r["p50_ms"] for r in rows if r["target"] == "onnxruntime:cpu"}
    print(f"{'precision':<10} {'target':<18} {'p50 ms':>9} {'vs cpu':>8} {'CPU fallback':>13}")
    for r in rows:
        ratio = base[r["precision"]] / r["p50_ms"]
        fallback = f"{r['cpu_fallback_fraction']:.0%}" if r["nodes_per_provider"] else "-"
        print(
            f"{r['precision']:<10} {r['target']:<18} {r['p50_ms']:>9.3f} {ratio:>7.2f}x "
            f"{fallback:>13}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    out = {"machine": platform.platform(), "gpu": cuda.detail, "rows": rows}
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
