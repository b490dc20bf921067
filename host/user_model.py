"""Load the user's model (``--model pkg.module:factory`` or ``model.pt``) and data (``--data``).

A ``.pt`` file must hold a whole pickled ``nn.Module`` (``torch.save(model, path)``); loading one
runs pickled code, so only load files you trust (said in ``--help``). A factory is imported and
called with no arguments and must return the *trained* ``nn.Module`` (or an untrained one whose
weights ``--weights state_dict.pt`` brings).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class UserModelError(ValueError):
    """The model or data argument cannot be used; the message says why."""


def _import(module_name: str, spec: str) -> Any:
    """``pkg.module`` as ``python -m`` users expect (the working directory is importable), or a
    ``path/to/file.py``. Import errors and errors inside the module become one line."""
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise UserModelError(f"--model {spec}: file not found: {path}")
            loader_spec = importlib.util.spec_from_file_location(path.stem, path)
            if loader_spec is None or loader_spec.loader is None:
                raise UserModelError(f"--model {spec}: cannot load {path}")
            module = importlib.util.module_from_spec(loader_spec)
            loader_spec.loader.exec_module(module)
            return module
        if "" not in sys.path and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())  # as `python -m` does
        return importlib.import_module(module_name)
    except UserModelError:
        raise
    except ImportError as exc:
        raise UserModelError(
            f"cannot import {module_name!r} for --model {spec}: {exc} (the module must be on "
            "PYTHONPATH or in the working directory; or pass path/to/file.py:factory)"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - SyntaxError etc. in the user's module
        log.debug("importing %s failed", module_name, exc_info=True)
        raise UserModelError(
            f"--model {spec}: importing {module_name} raised {type(exc).__name__}: {exc} "
            "(--log-level DEBUG for the traceback)"
        ) from exc


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
    module_name, _, attr = spec.rpartition(":")
    module = _import(module_name, spec)
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise UserModelError(f"{module_name!r} has no callable {attr!r}")
    try:
        obj = factory()
    except Exception as exc:  # noqa: BLE001 - the user's code: one line, traceback on DEBUG
        log.debug("--model %s raised", spec, exc_info=True)
        raise UserModelError(
            f"--model {spec} raised {type(exc).__name__}: {exc} (--log-level DEBUG for the "
            "traceback)"
        ) from exc
    if not isinstance(obj, nn.Module):
        raise UserModelError(f"{spec} returned a {type(obj).__name__}, not an nn.Module")
    return obj.eval()


def load_weights(model: Any, path: str, spec: str) -> Any:
    """``--weights``: a state_dict (``torch.save(model.state_dict(), path)``) loaded into the
    factory's model; a file that does not fit the model is one line naming what differs."""
    import torch

    if not Path(path).is_file():
        raise UserModelError(f"--weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a whole pickled model, or not a torch file
        raise UserModelError(
            f"--weights {path}: not a state_dict ({type(exc).__name__}); save it with "
            "torch.save(model.state_dict(), path)"
        ) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a checkpoint dict that holds one
    if not isinstance(state, dict):
        raise UserModelError(f"--weights {path} holds a {type(state).__name__}, not a state_dict")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
        raise UserModelError(f"--weights {path} does not fit --model {spec}: {first}") from exc
    return model.eval()


def load_model_and_data(
    model_spec: str | None,
    data_path: str | None,
    *,
    seed: int = 0,
    progress: bool = False,
    weights: str | None = None,
    image_size: int | None = None,
    mean: Any = None,
    std: Any = None,
    demo: str = "standard",
) -> tuple[Any, Any, str]:
    """(model, DataSplits, label). No model: the demo (trained once, cached). ``data_path``:
    an .npz file, an image folder, or ``pkg.module:factory`` (``hadmc.image_folder``)."""
    from hadmc.data import load_npz
    from hadmc.image_folder import load_data_factory, load_image_folder
    from hadmc.models import DEMO_MODEL, load_demo

    if model_spec is None:
        if data_path is not None:
            raise UserModelError("--data needs --model (the demo model brings its own data)")
        model, data = load_demo(seed=seed, progress=progress, demo=demo)
        size = data.input_shape[-1]
        return model.eval(), data, f"demo:{DEMO_MODEL} ({demo}, {size}x{size})"
    if data_path is None:
        raise UserModelError(
            "--model needs --data: file.npz (x_train, y_train, x_val, y_val), an image folder, "
            "or pkg.module:factory"
        )
    folder_only = [f for f, v in (("--image-size", image_size), ("--mean", mean), ("--std", std))
                   if v is not None]  # fmt: skip
    path = Path(data_path)
    if path.is_dir():
        data = load_image_folder(path, image_size=image_size, mean=mean, std=std, seed=seed)
    elif folder_only:
        raise UserModelError(f"{', '.join(folder_only)} apply to image folders; --data {data_path} is not one")
    elif path.is_file():
        data = load_npz(path, seed=seed)
    elif re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", data_path):
        data = load_data_factory(data_path, seed=seed)
    else:
        raise UserModelError(f"data file or folder not found: {data_path}")
    model = load_user_model(model_spec)
    if weights is not None:
        model = load_weights(model, weights, model_spec)
    check_model_fits_data(model, data)
    return model, data, model_spec


def check_model_fits_data(model: Any, data: Any) -> None:
    """One forward pass on one training image, before anything is pruned or exported: the
    channels fit the first layer and every label fits the model's outputs."""
    import torch

    x = torch.as_tensor(data.x_train[:1])
    try:
        with torch.no_grad():
            out = model.eval()(x)
    except Exception as exc:  # noqa: BLE001 - a shape mismatch comes as many types
        first = next((m for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
        if first is not None and first.in_channels != x.shape[1]:
            raise UserModelError(
                f"the data has {x.shape[1]} channels but the model's first layer takes "
                f"{first.in_channels}"
            ) from exc
        raise UserModelError(
            f"the model cannot run on the data's images {tuple(x.shape[1:])}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc
    n_out = int(out.shape[-1])
    labels = [data.y_train, data.y_val] + [getattr(data, "y_test", None)]
    top = max(int(y.max()) for y in labels if y is not None and len(y))
    low = min(int(y.min()) for y in labels if y is not None and len(y))
    if top >= n_out or low < 0:
        raise UserModelError(
            f"labels run from {low} to {top} but the model has {n_out} outputs "
            f"(labels must be 0..{n_out - 1})"
        )


def near_chance(accuracy: float, n: int, num_classes: int) -> bool:
    """Whether a baseline accuracy is no better than guessing: within a tenth of the way from
    chance to perfect, or not above chance at 95 % confidence on ``n`` images."""
    from hadmc.stats import binomial_ci95

    chance = 1.0 / max(2, num_classes)
    low = binomial_ci95(round(accuracy * n), n)[0] if n > 0 else 0.0
    return accuracy <= chance + 0.1 * (1.0 - chance) or low <= chance
