"""Where host-side torch runs: ``--host-device auto|cpu|cuda[:N]``.

Fine-tuning (the search's dominant cost), the teacher's logits, BN re-estimation and the
sensitivity table run on the chosen device. Pruning (torch-pruning traces on the CPU) and
every export run on the CPU, and a model always comes back to the CPU before it is exported,
so the artifact does not depend on where it was fine-tuned.

Mixed precision where it is safe: on a CUDA device that supports bfloat16, the fine-tune's
forward pass and loss run under ``torch.autocast(dtype=torch.bfloat16)``. bf16 keeps fp32's
exponent range, so no loss scaling is needed and the optimiser's weights stay fp32. fp16
autocast (older GPUs) would need a GradScaler and can overflow the distillation KL at high
temperature, so those GPUs fine-tune in fp32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

HOST_DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


class HostDeviceError(ValueError):
    """The requested host device does not exist here; the message says what does."""


def resolve_host_device(spec: str | None = "auto"):
    """``torch.device`` for ``spec``: ``auto`` takes CUDA device 0 when torch sees one."""
    import torch

    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise HostDeviceError(
                f"--host-device {spec}: torch sees no CUDA device (torch {torch.__version__}, "
                f"CUDA build: {torch.version.cuda or 'none'}); use --host-device cpu or auto"
            )
        index = 0 if spec == "cuda" else spec.partition(":")[2]
        if not str(index).isdigit() or int(index) >= torch.cuda.device_count():
            raise HostDeviceError(
                f"--host-device {spec}: this machine has {torch.cuda.device_count()} CUDA "
                f"device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}"
            )
        return torch.device(f"cuda:{int(index)}")
    raise HostDeviceError(f"--host-device {spec!r}: expected {HOST_DEVICE_CHOICES}")


def autocast_dtype(device) -> object | None:
    """The autocast dtype for fine-tuning on ``device``: bfloat16 on CUDA that supports it,
    else None (full fp32; see the module docstring)."""
    import torch

    if getattr(device, "type", str(device)) != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else None


@contextlib.contextmanager
def autocast(device) -> Iterator[None]:
    """Mixed precision for a forward pass and loss on ``device`` where safe, else nothing."""
    import torch

    dtype = autocast_dtype(device)
    if dtype is None:
        yield
        return
    with torch.autocast(device_type="cuda", dtype=dtype):
        yield
