"""Load the user's model (``--model pkg.module:factory`` or ``model.pt``) and data (``--data``).

A ``.pt`` file must hold a whole pickled ``nn.Module`` (``torch.save(model, path)``); loading one
runs pickled code, so only load files you trust (said in ``--help``). A factory is imported and
called with no arguments and must return an ``nn.Module``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any


class UserModelError(ValueError):
    """The model or data argument cannot be used; the message says why."""


def load_user_model(spec: str) -> Any:
    """``pkg.module:factory`` -> factory(); ``path.pt`` -> the pickled module."""
    import torch
    from torch import nn

    if spec.endswith((".pt", ".pth")):
        path = Path(spec)
        if not path.is_file():
            raise UserModelError(f"model file not found: {path}")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad input
            raise UserModelError(f"cannot load {path}: {exc}") from exc
        if not isinstance(obj, nn.Module):
            raise UserModelError(
                f"{path} holds a {type(obj).__name__}, not an nn.Module; save the whole model "
                "with torch.save(model, path), or pass a factory as pkg.module:function"
            )
        return obj.eval()
    if ":" not in spec:
        raise UserModelError(f"--model {spec!r}: expected pkg.module:factory or a .pt/.pth file")
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserModelError(f"cannot import {module_name!r}: {exc}") from exc
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise UserModelError(f"{module_name!r} has no callable {attr!r}")
    obj = factory()
    if not isinstance(obj, nn.Module):
        raise UserModelError(f"{spec} returned a {type(obj).__name__}, not an nn.Module")
    return obj.eval()


def load_model_and_data(
    model_spec: str | None, data_path: str | None, *, seed: int = 0, progress: bool = False
) -> tuple[Any, Any, str]:
    """(model, DataSplits, label). No model: the demo (trained once, cached)."""
    from hadmc.data import load_npz
    from hadmc.models import DEMO_MODEL, load_demo

    if model_spec is None:
        if data_path is not None:
            raise UserModelError("--data needs --model (the demo model brings its own data)")
        model, data = load_demo(seed=seed, progress=progress)
        return model.eval(), data, f"demo:{DEMO_MODEL}"
    if data_path is None:
        raise UserModelError("--model needs --data file.npz (x_train, y_train, x_val, y_val)")
    if not Path(data_path).is_file():
        raise UserModelError(f"data file not found: {data_path}")
    data = load_npz(data_path, seed=seed)
    return load_user_model(model_spec), data, model_spec
