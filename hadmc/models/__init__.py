"""Demo models: a MobileNetV2-style CNN (default) and a small ResNet, training and caching.

``load_demo`` trains the demo model once per (model, data config, training config, seed) and
caches the weights under :func:`default_cache_dir`, so later runs and tests skip training.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from hadmc.data import DIGITS_DATA_VERSION, DataSplits, load_digits_splits
from hadmc.models.mobilenet import MobileNetV2Small
from hadmc.models.resnet import ResNetSmall
from hadmc.models.train import evaluate_accuracy, seed_everything, train_classifier
from hadmc.stats import binomial_ci95

__all__ = [
    "DEMOS",
    "DEMO_MODEL",
    "MODEL_NAMES",
    "DemoConfig",
    "build_model",
    "default_cache_dir",
    "evaluate_accuracy",
    "load_demo",
    "train_classifier",
]

DEMO_MODEL = "mobilenetv2_small"
MODEL_NAMES = ("mobilenetv2_small", "resnet_small")
# Bump when the architecture or training code changes in a way that invalidates cached weights
# (3: trained on the augmented, source-disjoint digits splits; the data's own version is also
# part of the key, via DemoConfig.data_version).
CACHE_VERSION = 3


# The demos (``--demo``): the same net and digits at two input sizes. "standard" (the default)
# is 48x48: ~107 M MACs, fp32 p50 2.58 ms in ONNX Runtime at batch 1 and 1 thread on a 2-core
# AMD EPYC (2026-12-03), where per-call overhead (~0.1 ms) no longer caps the speedups that
# pruning and int8 can show; a Pi-class board takes tens of ms. 32x32 took 1.09 ms there and
# 64x64 4.3 ms, but 64 costs 2.6x 48's time per training step (3.1 s against 1.2 s at batch
# 64, 2 threads), too slow for a default search of about 10 minutes. "tiny" is the earlier
# 32x32 demo, kept for fast tests and quick looks.
DEMOS: dict[str, int] = {"standard": 48, "tiny": 32}  # name -> image size


def build_model(name: str, num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """A freshly initialised model by name: "mobilenetv2_small" | "resnet_small".

    mobilenetv2_small is MobileNetV2 at width 1.5 with a 640-wide last conv: on 32x32 inputs
    ~47 M MACs, ~2.0 M params (MACs grow with the input area: see ``DEMOS``).
    """
    if name == "mobilenetv2_small":
        return MobileNetV2Small(num_classes, in_channels, width_mult=1.5, last_channels=640)
    if name == "resnet_small":
        return ResNetSmall(num_classes, in_channels)
    raise ValueError(f"unknown model {name!r}; known: {list(MODEL_NAMES)}")


@dataclass(frozen=True)
class DemoConfig:
    """Everything that determines the demo's trained weights (part of the cache key)."""

    model: str = DEMO_MODEL
    image_size: int = 32
    # 4 epochs over the 1898 augmented training images: 116 steps, 1.4x the 81 steps of the
    # earlier 5 epochs over 1039 originals.
    epochs: int = 4
    lr: float = 3e-3
    batch_size: int = 64
    seed: int = 0
    version: int = CACHE_VERSION
    # The splits the weights were trained on: weights from other splits could have seen
    # today's test sources, so they must never be served from the cache.
    data_version: int = DIGITS_DATA_VERSION

    def key(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return f"{self.model}-{hashlib.sha256(blob).hexdigest()[:16]}"


def default_cache_dir() -> Path:
    """$HADMC_CACHE_DIR if set, else ~/.cache/hadmc."""
    env = os.environ.get("HADMC_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hadmc"


def _atomic_write(path: Path, write) -> None:  # type: ignore[no-untyped-def]
    """Write via a temp file in the same directory + os.replace, so a concurrent reader or a
    killed run never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _ci(accuracy: float, n: int) -> list[float]:
    lo, hi = binomial_ci95(round(accuracy * n), n)
    return [round(lo, 5), round(hi, 5)]


def load_demo(
    cache_dir: Path | None = None, *, seed: int = 0, progress: bool = False,
    demo: str = "standard",
) -> tuple[nn.Module, DataSplits]:
    """The trained demo model (eval mode) and its data; trains and caches on first use.
    ``demo``: a name of ``DEMOS``."""
    if demo not in DEMOS:
        raise ValueError(f"unknown demo {demo!r}; known: {', '.join(DEMOS)}")
    cfg = DemoConfig(seed=seed, image_size=DEMOS[demo])
    data = load_digits_splits(image_size=cfg.image_size, seed=seed)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    weights = cache / f"{cfg.key()}.pt"
    seed_everything(seed)
    model = build_model(cfg.model, data.num_classes, data.input_shape[0])
    if weights.is_file():
        try:
            model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            return model.eval(), data
        except (RuntimeError, OSError, EOFError, ValueError):
            pass  # corrupt or stale cache entry: retrain and overwrite it
    t0 = time.perf_counter()
    val_acc = train_classifier(
        model, data, epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, seed=seed,
        progress=progress,
    )  # fmt: skip
    train_seconds = round(time.perf_counter() - t0, 2)
    test_acc = evaluate_accuracy(model, data.x_test, data.y_test)
    meta = {
        **asdict(cfg),
        "val_accuracy": val_acc,
        "test_accuracy": test_acc,
        # Counts and intervals, so the cached numbers say how precise they are.
        "val_accuracy_ci95": _ci(val_acc, len(data.x_val)),
        "test_accuracy_ci95": _ci(test_acc, len(data.x_test)),
        "split_sizes": {k: len(getattr(data, f"x_{k}")) for k in ("train", "val", "calib", "test")},
        "train_seconds": train_seconds,
        "torch_threads": torch.get_num_threads(),
    }
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    _atomic_write(weights, lambda p: torch.save(state, p))
    _atomic_write(
        weights.with_suffix(".json"), lambda p: Path(p).write_text(json.dumps(meta, indent=2))
    )
    return model.eval(), data
