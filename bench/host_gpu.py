"""Fine-tune step time on this machine's CPU against its CUDA GPU (``--host-device``).

One distillation fine-tune step (student forward + backward, Adam, batch 64, teacher logits
cached, as in a search candidate) of the demo net on 32x32 digits, timed after warm-up steps,
median of several runs. Prints a table and writes bench/results/host_gpu.json. Where torch sees
no CUDA device it says so, writes the CPU row, and exits 0.

    python bench/host_gpu.py [--steps 20] [--batch 64]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def step_seconds(device: str, steps: int, batch: int) -> dict:
    import torch

    from hadmc.compress.distill import DistillConfig, distill_finetune, teacher_logits_for
    from hadmc.data import load_digits_splits
    from hadmc.host_compute import autocast_dtype, resolve_host_device
    from hadmc.models import build_model

    dev = resolve_host_device(device)
    torch.manual_seed(0)
    data = load_digits_splits(image_size=32, seed=0)
    net = build_model("mobilenetv2_small", num_classes=10, in_channels=1).eval()
    logits = teacher_logits_for(net, data, dev)
    times = []
    for n in (2, steps):  # the 2-step run absorbs start-up (allocator, cuDNN autotune)
        cfg = DistillConfig(max_steps=n, batch_size=batch, seed=0)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        distill_finetune(net, net, data, cfg, teacher_logits=logits, device=dev)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    per_step = (times[1] - times[0]) / (steps - 2)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor()
    return {"device": str(dev), "name": name, "autocast": str(autocast_dtype(dev)),
            "step_s": per_step, "steps": steps, "batch": batch,
            "torch_threads": torch.get_num_threads()}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "host_gpu.json")
    cfg = p.parse_args(argv)
    import torch

    rows = [step_seconds("cpu", cfg.steps, cfg.batch)]
    note = None
    if torch.cuda.is_available():
        rows.append(step_seconds("cuda", cfg.steps, cfg.batch))
    else:
        note = f"torch {torch.__version__} sees no CUDA device here: CPU row only"
    print(f"{'device':8s} {'name':40s} {'autocast':16s} {'step ms':>8s} {'vs cpu':>7s}")
    for r in rows:
        print(f"{r['device']:8s} {str(r['name'])[:40]:40s} {r['autocast']:16s}"
              f" {1000 * r['step_s']:8.1f} {rows[0]['step_s'] / r['step_s']:6.2f}x")  # fmt: skip
    if note:
        print(note)
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    cfg.out.write_text(json.dumps({
        "benchmark": "distillation fine-tune step, demo net 32x32, cpu vs cuda",
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0]},
        "rows": rows, "note": note,
    }, indent=2))  # fmt: skip
    print(f"wrote {cfg.out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
