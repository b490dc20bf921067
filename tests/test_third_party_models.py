"""Architectures this project did not write, end to end: a search on the local agent.

- EfficientNet-B0 from ``efficientnet-pytorch`` in its default configuration (the
  memory-efficient Swish, a custom ``torch.autograd.Function``; squeeze-excite blocks with
  1x1-conv gates; depthwise convs; drop-connect residuals);
- DenseNet from MONAI (``monai.networks.nets.DenseNet``: dense concatenation, transition
  layers).

Both need only torch. Each is saved by a user-side factory file, searched with a tiny budget
(random strategy, 2 candidates, 1 fine-tune step, short measurements) on a real local agent,
and must end with measured, physically pruned and exported candidates.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from host.search import add_search_arguments, run_search
from host.store import ResultsStore

pytestmark = pytest.mark.slow

FACTORIES = {
    "efficientnet_b0": (
        "from efficientnet_pytorch import EfficientNet\n"
        "def make():\n"
        "    return EfficientNet.from_name('efficientnet-b0', in_channels=1, num_classes=10,\n"
        "                                  image_size=16)\n"
    ),
    "monai_densenet": (
        "from monai.networks.nets import DenseNet\n"
        "def make():\n"
        "    return DenseNet(spatial_dims=2, in_channels=1, out_channels=10, init_features=16,\n"
        "                    growth_rate=8, block_config=(2, 2, 2))\n"
    ),
}


@pytest.fixture(scope="module")
def digits_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hadmc.data import load_digits_splits

    data = load_digits_splits(image_size=16, seed=0)
    path = tmp_path_factory.mktemp("data") / "digits16.npz"
    keep = {"train": 128, "val": 48, "test": 48}  # tiny: plumbing, not accuracy
    np.savez(path, **{
        f"{k}_{split}": getattr(data, f"{k}_{split}")[:n]
        for split, n in keep.items() for k in ("x", "y")
    })  # fmt: skip
    return path


@pytest.mark.parametrize("arch", sorted(FACTORIES))
def test_third_party_model_searches_end_to_end(
    arch: str, digits_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.set_num_threads(1)
    monkeypatch.setenv("HADMC_CACHE_DIR", str(tmp_path / "cache"))
    factory = tmp_path / f"{arch}.py"
    factory.write_text(FACTORIES[arch])
    out = tmp_path / "run"
    parser = argparse.ArgumentParser()
    add_search_arguments(parser)
    args = parser.parse_args([
        "--model", f"{factory}:make", "--data", str(digits_npz), "--out", str(out),
        "--strategy", "random", "--surrogate", "off", "--episodes", "2", "--finetune-steps", "1",
        "--max-accuracy-drop", "none", "--num-runs", "5", "--min-secs", "0.05",
        "--warmup-min-secs", "0", "--host-threads", "1",
        "--int8-probe", "off",  # 5 more int8 exports of each net; test_int8_probe covers it
    ])  # fmt: skip
    code = run_search(args, {"quiet": True})
    assert code in (0, 3)  # 3: no working model (an untrained net), still a finished search
    with ResultsStore(out) as store:
        rows = store.candidates()
        info = store.run_info()
    assert len(rows) == 2 and all(r.status == "measured" for r in rows), [r.error for r in rows]
    base = info["baseline"]
    for r in rows:
        m = r.metrics
        assert Path(r.artifact_path).is_file() and m["latency_ms_p50_paired"] > 0
        assert m["macs"] < 0.9 * base["macs"] and m["params"] < base["params"]  # channels went
    assert info["config"]["layer_groups"] > 5 and info["config"]["unprunable_groups"] == []
    assert json.loads((out / "report.json").read_text())["counts"]["measured"] == 2
