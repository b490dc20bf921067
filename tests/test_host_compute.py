"""--host-device: auto picks CUDA only when torch sees it, wrong requests are one line, and the
CPU path of the fine-tune is unchanged by the device plumbing (tests run on the CPU)."""

from __future__ import annotations

import pytest
import torch

from hadmc.host_compute import HostDeviceError, autocast_dtype, resolve_host_device


def test_auto_and_cpu_resolve_here() -> None:
    want = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert str(resolve_host_device("auto")) == want
    assert str(resolve_host_device(None)) == want
    assert str(resolve_host_device("CPU")) == "cpu"
    assert autocast_dtype(torch.device("cpu")) is None  # no mixed precision on the CPU


def test_auto_takes_cuda_when_torch_sees_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert str(resolve_host_device("auto")) == "cuda:0"
    assert str(resolve_host_device("cuda:1")) == "cuda:1"
    with pytest.raises(HostDeviceError, match="has 2 CUDA device"):
        resolve_host_device("cuda:2")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a CPU-only machine")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0"])
def test_cuda_without_cuda_is_one_line(spec: str) -> None:
    with pytest.raises(HostDeviceError) as exc:
        resolve_host_device(spec)
    msg = str(exc.value)
    assert "torch sees no CUDA device" in msg and "--host-device cpu" in msg and "\n" not in msg


def test_nonsense_is_refused() -> None:
    with pytest.raises(HostDeviceError, match="expected auto, cpu, cuda or cuda:N"):
        resolve_host_device("tpu")


def test_search_refuses_a_missing_gpu_before_anything_runs(tmp_path, monkeypatch) -> None:
    import argparse

    from host.search import EXIT_USAGE, add_search_arguments, run_search

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    parser = argparse.ArgumentParser()
    add_search_arguments(parser)
    args = parser.parse_args(["--host-device", "cuda", "--device", "sim:raspberry-pi-4",
                              "--out", str(tmp_path / "r")])  # fmt: skip
    assert run_search(args, {"quiet": True}) == EXIT_USAGE
    assert not (tmp_path / "r").exists()


def test_fine_tune_on_the_cpu_device_matches_the_default() -> None:
    """The device argument must not change the CPU result (same seed, same steps)."""
    from hadmc.compress.distill import DistillConfig, distill_finetune
    from hadmc.data import load_digits_splits
    from hadmc.models import build_model

    torch.manual_seed(0)
    data = load_digits_splits(image_size=8, seed=0)
    net = build_model("mobilenetv2_small", num_classes=10, in_channels=1).eval()
    cfg = DistillConfig(max_steps=3, batch_size=32, seed=0)
    a = distill_finetune(net, net, data, cfg).model
    b = distill_finetune(net, net, data, cfg, device=torch.device("cpu")).model
    for (na, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(pa, pb), na
    assert next(b.parameters()).device.type == "cpu"
    assert any(not torch.equal(pa, pn) for pa, pn in zip(a.state_dict().values(),
               net.state_dict().values(), strict=True))  # fmt: skip  # it did train
