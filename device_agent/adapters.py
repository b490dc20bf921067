"""Runtime adapters: the board's one interface to an inference runtime.

One adapter per row of the runtime table shared with the host (``protos.runtimes``). Each has
the three jobs of a runtime on the board:

- ``probe``: is it installed, which version, without importing it (``device_agent.runtimes``:
  the idle agent never imports a runtime);
- ``prepare``: import it (``load``, what the zygote preloads), open the model on a backend
  (an execution provider or a delegate) and resolve the inputs to feed;
- ``run``: a zero-argument inference call with random inputs bound once, the thing timed.

``placement`` (nodes per provider, after the timed window) is offered where the runtime can
tell. The worker looks an adapter up by the runtime's name and never branches on it, so a new
runtime is one adapter here plus its row in ``protos.runtimes``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from device_agent import measure as m
from device_agent import runtimes


class RuntimeAdapter:
    name = ""

    def probe(self) -> runtimes.RuntimeStatus:
        return runtimes.detect(self.name)

    def load(self) -> None:
        """Import the runtime (ImportError when it is missing)."""
        raise NotImplementedError

    def prepare(
        self, path: str, threads: int, specs: list[m.InputSpec], backend: str,
        options: dict[str, str],
    ) -> tuple[Any, list[m.InputSpec], dict[str, Any]]:  # fmt: skip
        """(handle, resolved inputs, {runtime_version, execution_provider}); raises
        ``measure.ModelLoadError`` / ``BadInputError`` / ``TargetUnavailableError``."""
        raise NotImplementedError

    def run(self, handle: Any, specs: list[m.InputSpec], seed: int = 0) -> Callable[[], Any]:
        raise NotImplementedError

    def placement(
        self, path: str, backend: str, options: dict[str, str], specs: list[m.InputSpec]
    ) -> dict[str, int]:
        """Nodes per provider on a non-default backend; empty where the runtime cannot say."""
        return {}


class OnnxRuntimeAdapter(RuntimeAdapter):
    name = "onnxruntime"
    default_backend = "CPUExecutionProvider"

    def load(self) -> None:
        import onnxruntime

        try:  # telemetry writes a device id under ~/.cache on some builds: off
            onnxruntime.disable_telemetry_events()
        except AttributeError:  # builds without telemetry
            pass

    def prepare(self, path, threads, specs, backend, options):
        return m.prepare_ort(path, threads, specs, backend or self.default_backend, options)

    def run(self, handle, specs, seed=0):
        rng = np.random.default_rng(seed)
        feeds = {s.name: m.random_input(s, rng) for s in specs}
        return lambda: handle.run(None, feeds)

    def placement(self, path, backend, options, specs):
        if backend in ("", self.default_backend):
            return {}
        return m.node_placement(path, backend, options, specs)


class LiteRTAdapter(RuntimeAdapter):
    name = "litert"

    def load(self) -> None:
        import ai_edge_litert.interpreter  # noqa: F401

    def prepare(self, path, threads, specs, backend, options):
        return m.prepare_litert(path, threads, specs, backend)

    def run(self, handle, specs, seed=0):
        # Inputs copied once; invoke() is what is timed, as benchmark_model does.
        rng = np.random.default_rng(seed)
        arrays = [m.random_input(s, rng) for s in specs]
        for d, a in zip(handle.get_input_details(), arrays, strict=True):
            handle.set_tensor(d["index"], a.astype(d["dtype"]))
        return handle.invoke


ADAPTERS: dict[str, RuntimeAdapter] = {a.name: a for a in (OnnxRuntimeAdapter(), LiteRTAdapter())}


def adapter(name: str) -> RuntimeAdapter:
    try:
        return ADAPTERS[name]
    except KeyError:
        raise ValueError(f"no runtime adapter for {name!r}; known {sorted(ADAPTERS)}") from None
