"""Compression benchmark on the demo model: accuracy, size and 1-thread latency per variant.

Rows: fp32, fused, fp16, int8 (ONNX Runtime); pruned at several keep-ratios, each followed by
a short distillation fine-tune against the unpruned teacher, in fp32 and int8; TFLite fp32,
int8 and pruned+int8 (LiteRT). Accuracy is that of the exported artifact on the test split,
run in its own runtime. Latency: batch 1, 1 thread, warm-up, then timed calls
(perf_counter_ns around each call); variants are measured in interleaved rounds so that load
from other processes on a shared machine spreads over all of them instead of biasing one.
Speedup is against fp32 in the same runtime.

    python bench/compress.py            # full run, writes bench/results/compress.json
    python bench/compress.py --quick    # fewer keep-ratios, shorter fine-tunes and timing
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from hadmc.compress.distill import DistillConfig, distill_finetune, teacher_logits_for
from hadmc.compress.export import ExportResult, evaluate_artifact, export_onnx, export_tflite
from hadmc.compress.fusion import fuse_model
from hadmc.compress.pruning import count_macs_params, find_layer_groups, prune_model

RESULTS = Path(__file__).parent / "results" / "compress.json"
# Issue 10's target for the demo: a pruned+int8 ONNX variant >= 3x fp32 within 1 point on test.
SPEEDUP_MIN = 3.0
MAX_DROP_POINTS = 1.0


@dataclass
class Row:
    """One benchmarked variant."""

    name: str
    runtime: str  # "onnxruntime" | "litert"
    precision: str
    keep_ratio: float  # uniform pruning keep-ratio (1.0 = unpruned)
    accuracy_pct: float
    size_bytes: int
    macs: int | None = None
    params: int | None = None
    latency_ms_p50: float = float("nan")
    latency_ms_p90: float = float("nan")
    latency_ms_min: float = float("nan")
    n_runs: int = 0
    speedup_vs_fp32: float = float("nan")
    notes: str = ""
    model: str = "demo"  # or a third-party architecture (bench/third_party.py)
    latencies_ns: list[int] = field(default_factory=list, repr=False)


def _ort_runner(res: ExportResult, x: np.ndarray) -> Callable[[], object]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(str(res.path), so, providers=["CPUExecutionProvider"])
    feed = {res.input_name: x}
    return lambda: sess.run(None, feed)


def _litert_runner(res: ExportResult, x: np.ndarray) -> Callable[[], object]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(res.path), num_threads=1)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    if np.dtype(inp["dtype"]).kind in "iu":
        scale, zp = inp["quantization"]
        x = np.clip(np.round(x / scale) + zp, -128, 127).astype(inp["dtype"])
    interp.set_tensor(inp["index"], x)
    # Each timed call is invoke() only; the input stays set, as in benchmark_model.
    return interp.invoke


def measure_interleaved(
    runners: dict[str, Callable[[], object]], runs: int, rounds: int, warmup_s: float
) -> dict[str, list[int]]:
    """Per-call latencies (ns) for each runner, taken in ``rounds`` interleaved rounds."""
    for run in runners.values():  # warm-up: >= 10 calls and >= warmup_s per variant
        t_end = time.perf_counter() + warmup_s
        n = 0
        while n < 10 or time.perf_counter() < t_end:
            run()
            n += 1
    out: dict[str, list[int]] = {k: [] for k in runners}
    per_round = max(1, runs // rounds)
    for r in range(rounds):
        order = list(runners) if r % 2 == 0 else list(reversed(runners))
        for k in order:
            run, lat = runners[k], out[k]
            for _ in range(per_round):
                t0 = time.perf_counter_ns()
                run()
                lat.append(time.perf_counter_ns() - t0)
    return out


def _prune_and_distill(teacher, data, example, keep: float, epochs: float, logits):
    """(student, note): uniform keep-ratio pruning, then a distillation fine-tune."""
    t0 = time.perf_counter()
    groups = find_layer_groups(teacher, example)
    student = prune_model(teacher, [keep] * len(groups), example)
    cfg = DistillConfig(epochs=epochs, scope="all", temperature=4.0, alpha=0.7)
    student = distill_finetune(student, teacher, data, cfg, teacher_logits=logits).model.eval()
    return student, f"keep {keep}, distil {epochs} ep, {time.perf_counter() - t0:.0f} s"


def _fused(teacher: torch.nn.Module, example: torch.Tensor) -> torch.nn.Module:
    groups = find_layer_groups(teacher, example)
    return fuse_model(teacher, {m: "conv_bn_act" for g in groups for m in g.module_names})


def _load_teacher(weights: Path | None, demo: str = "standard"):
    from hadmc.models import DEMO_MODEL, build_model, load_demo

    teacher, data = load_demo(demo=demo)
    if weights is not None:  # e.g. a demo checkpoint trained with other settings
        teacher = build_model(DEMO_MODEL, data.num_classes, data.input_shape[0])
        teacher.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return teacher.eval(), data


def run(args: argparse.Namespace) -> list[Row]:
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    teacher, data = _load_teacher(args.weights, args.demo)
    example = torch.from_numpy(np.ascontiguousarray(data.x_test[:1]))
    x_test, y_test, calib = data.x_test, data.y_test, data.x_calib
    keeps = [0.5] if args.quick else [0.75, 0.5, 0.35]
    epochs = args.distill_epochs
    work = Path(tempfile.mkdtemp(prefix="hadmc-bench-"))
    rows: list[Row] = []
    results: dict[str, ExportResult] = {}

    def add(name, model, keep, fmt="onnx", precision="fp32", note="", model_name="demo", **kw):
        t0 = time.perf_counter()
        path = work / f"{name.replace(' ', '_').replace('+', '_')}.{fmt}"
        export = export_onnx if fmt == "onnx" else export_tflite
        calib_x = calib if precision == "int8" else None
        res = export(model, path, example, precision=precision, calib_x=calib_x, **kw)
        acc = evaluate_artifact(res, x_test, y_test) * 100
        macs, params = count_macs_params(model, example)
        runtime = "onnxruntime" if fmt == "onnx" else "litert"
        results[name] = res
        rows.append(
            Row(name, runtime, res.precision, keep, acc, res.size_bytes, macs, params, notes=note,
                model=model_name)
        )
        print(f"  {name:<24} acc {acc:6.2f}%  {res.size_bytes / 1024:8.1f} KB  "
              f"(export+eval {time.perf_counter() - t0:.1f} s)", flush=True)  # fmt: skip

    print("ONNX variants of the demo model", flush=True)
    add("fp32", teacher, 1.0)
    add(
        "fused",
        _fused(teacher, example),
        1.0,
        note="conv+bn(+act) folded in torch (legacy exporter folds BN too)",
    )
    add("fp16", teacher, 1.0, precision="fp16", note="ORT CPU: few fp16 kernels, casts inserted")
    add("int8", teacher, 1.0, precision="int8", note="static QDQ, u8 act / s8 per-channel weights")

    print(f"pruning + distillation ({epochs} epochs each)", flush=True)
    students = {}
    logits = teacher_logits_for(teacher, data)  # the teacher is fixed: its logits once
    for keep in keeps:
        student, note = _prune_and_distill(teacher, data, example, keep, epochs, logits)
        name = f"pruned{int(round(keep * 100))}"
        students[name] = (student, keep, note)
        add(name, student, keep, note=note)
        add(f"{name}+int8", student, keep, precision="int8", note=note)

    if not args.no_tflite:
        print("TFLite variants (litert-torch conversions take a while)", flush=True)
        add("tflite fp32", teacher, 1.0, fmt="tflite")
        add(
            "tflite int8",
            teacher,
            1.0,
            fmt="tflite",
            precision="int8",
            note="full-integer, int8 I/O",
        )
        name = "pruned50" if "pruned50" in students else next(iter(students))
        student, keep, note = students[name]
        add(f"tflite {name}+int8", student, keep, fmt="tflite", precision="int8", note=note)

    if args.third_party:
        import third_party

        print("third-party architectures (bench/third_party.py)", flush=True)
        third_party.add_rows(
            add, _prune_and_distill, data, example, args.third_party_epochs, epochs
        )

    print(f"timing {len(rows)} variants: batch 1, 1 thread, {args.runs} runs each, "
          f"{args.rounds} interleaved rounds", flush=True)  # fmt: skip
    torch.set_num_threads(1)
    x1 = np.ascontiguousarray(data.x_test[:1], dtype=np.float32)
    runners = {
        r.name: (_ort_runner if r.runtime == "onnxruntime" else _litert_runner)(results[r.name], x1)
        for r in rows
    }
    lat = measure_interleaved(runners, args.runs, args.rounds, args.warmup_s)
    for r in rows:
        ms = np.asarray(lat[r.name]) / 1e6
        r.latency_ms_p50 = float(np.percentile(ms, 50))
        r.latency_ms_p90 = float(np.percentile(ms, 90))
        r.latency_ms_min, r.n_runs, r.latencies_ns = float(ms.min()), len(ms), lat[r.name]
    base: dict[tuple[str, str], Row] = {}
    for r in rows:  # the first unpruned fp32 row of each model and runtime ("fp32", ...)
        if r.precision == "fp32" and r.keep_ratio == 1.0:
            base.setdefault((r.model, r.runtime), r)
    for r in rows:
        r.speedup_vs_fp32 = base[r.model, r.runtime].latency_ms_p50 / r.latency_ms_p50
    return rows


def _print_table(rows: list[Row]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="hadmc compression benchmark (demo model, test split, batch 1, 1 thread)")
    for col in (
        "variant",
        "runtime",
        "prec",
        "keep",
        "acc %",
        "Δacc",
        "size KB",
        "MMACs",
        "p50 ms",
        "p90 ms",
        "speedup",
    ):
        t.add_column(col, justify="left" if col in ("variant", "runtime", "prec") else "right")
    for r in rows:
        t.add_row(
            r.name,
            r.runtime,
            r.precision,
            f"{r.keep_ratio:.2f}",
            f"{r.accuracy_pct:.2f}",
            f"{r.accuracy_pct - _fp32_accuracy(rows, r.model):+.2f}",
            f"{r.size_bytes / 1024:.1f}",
            f"{r.macs / 1e6:.2f}" if r.macs else "-",
            f"{r.latency_ms_p50:.3f}",
            f"{r.latency_ms_p90:.3f}",
            f"{r.speedup_vs_fp32:.2f}x",
        )
    Console(width=200).print(t)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="one keep-ratio (0.5) and 200 timed runs")
    p.add_argument(
        "--runs", type=int, default=None, help="timed calls per variant (default 400; quick 200)"
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="interleaved rounds the runs are split into (default runs/5: 5 calls per variant per round)",
    )
    p.add_argument("--warmup-s", type=float, default=0.5)
    p.add_argument(
        "--distill-epochs",
        type=float,
        default=8.0,
        help="distillation epochs after pruning (default 8: 3 left pruned50 2 points short)",
    )
    p.add_argument(
        "--no-tflite", action="store_true", help="skip LiteRT rows (conversions are slow)"
    )
    p.add_argument("--third-party", action="store_true",
                   help="add EfficientNet-B0 and MONAI DenseNet rows (bench/third_party.py)")
    p.add_argument("--third-party-epochs", type=int, default=15,
                   help="training epochs of each third-party net on the digits (default 15)")
    p.add_argument("--demo", choices=("standard", "tiny"), default="standard",
                   help="the built-in demo: 48x48 (standard) or 32x32 (tiny)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--weights", type=Path, default=None,
                   help="state dict for the demo architecture instead of load_demo's weights")  # fmt: skip
    args = p.parse_args(argv)
    args.runs = args.runs or (200 if args.quick else 400)
    args.rounds = args.rounds or max(1, args.runs // 5)
    if args.runs < 200:
        p.error("--runs must be >= 200 (p50 of fewer calls is too noisy on a shared machine)")

    t0 = time.time()
    rows = run(args)
    acc_fp32 = _fp32_accuracy(rows, "demo")
    _print_table(rows)
    target = [
        r
        for r in rows
        if r.runtime == "onnxruntime"
        and r.model == "demo"
        and r.keep_ratio < 1.0
        and "int8" in r.name
        and r.speedup_vs_fp32 >= SPEEDUP_MIN
        and acc_fp32 - r.accuracy_pct <= MAX_DROP_POINTS
    ]
    verdict = (
        f"target met by {', '.join(r.name for r in target)}"
        if target
        else f"target (pruned+int8 ONNX >= {SPEEDUP_MIN}x fp32 within {MAX_DROP_POINTS} points "
        "on test) NOT met"
    )
    print(verdict)

    import onnxruntime

    out = {
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_s": round(time.time() - t0, 1),
        "machine": {
            "cpu": _cpu_name(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__,
            "torch": torch.__version__,
            "load_avg_1m": os.getloadavg()[0],
        },
        "timing": {
            "threads": 1,
            "batch": 1,
            "runs_per_variant": args.runs,
            "rounds": args.rounds,
            "warmup_s": args.warmup_s,
            "interleaved": True,
            "clock": "perf_counter_ns",
        },
        "demo": {"name": args.demo, "input_shape": list(_input_shape(args))},
        "target": {
            "speedup_min": SPEEDUP_MIN,
            "max_accuracy_drop_points": MAX_DROP_POINTS,
            "met_by": [r.name for r in target],
        },
        "rows": [{k: v for k, v in asdict(r).items() if k != "latencies_ns"} for r in rows],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


def _input_shape(args: argparse.Namespace) -> tuple[int, ...]:
    from hadmc.models import DEMOS

    size = DEMOS[args.demo]
    return (1, size, size)


def _fp32_accuracy(rows: list[Row], model: str) -> float:
    """The model's own unpruned fp32 ONNX row: what its Δacc is against."""
    return next(
        r.accuracy_pct
        for r in rows
        if r.model == model and r.runtime == "onnxruntime" and r.precision == "fp32"
        and r.keep_ratio == 1.0
    )  # fmt: skip


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
