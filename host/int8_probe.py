"""The int8 probe: which precision stages lose with int8 on *this* device, measured at setup.

A runtime's int8 kernels do not win everywhere: on some ops (or some CPUs) an int8 stage costs
more in Quantize/Dequantize and slower kernels than it saves, and a model quantized there is
slower than one that keeps that stage float, sometimes slower than fp32 (issue 10 measured
mixed int8 candidates of a third-party net at 0.300 ms against a 0.264 ms fp32 baseline). The
search must not learn that from candidates; it is measured once, before the search:

1. the unpruned model at int8 in every stage (post-training quantization, no fine-tune), and
   the same with stage ``s`` left float, for every stage ``s``; each timed paired with the fp32
   baseline (one interleaved window, ``Measurement.latency_ratio`` and its 95 % interval);
2. stage ``s`` is *excluded from int8* when leaving it float is faster than all-int8 beyond
   noise: the upper end of its ratio's interval is below the lower end of all-int8's;
3. int8 is dropped altogether when all-int8 is slower than fp32 beyond noise (its ratio's
   interval above 1) and no single float stage fixes it.

The exclusions go to ``QuantizationPass(int8_excluded_groups=...)``, which canonicalises every
joint action (the stored value, the cache key, the surrogate's features and the artifact agree):
an excluded group is fp32 whatever a strategy proposed. The probe is saved in the run
directory (``int8_probe.json``) and a resumed run reuses it, so its candidates keep their keys.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PROBE_FILE = "int8_probe.json"


@dataclass
class StageTiming:
    float_stage: int | None  # None: every stage int8
    latency_ratio: float  # candidate / fp32 baseline, paired
    latency_ratio_ci95: tuple[float, float]


@dataclass
class Int8Probe:
    stages: list[int]  # precision stage of every layer group
    timings: list[StageTiming] = field(default_factory=list)
    excluded_stages: list[int] = field(default_factory=list)
    int8_dropped: bool = False  # all-int8 slower than fp32 and no float stage fixes it

    def excluded_groups(self) -> list[int]:
        return [g for g, s in enumerate(self.stages) if s in self.excluded_stages]

    def summary(self) -> str:
        """One setup line."""
        alls = self.timings[0]
        text = f"int8 probe: all-int8 {1 / alls.latency_ratio:.2f}x fp32"
        if self.int8_dropped:
            return text + "; int8 loses on this device, so the search keeps every stage float"
        if not self.excluded_stages:
            return text + "; every stage gains from int8"
        return text + (f"; stage(s) {', '.join(map(str, self.excluded_stages))} lose with int8 "
                       "and stay float")  # fmt: skip

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> Int8Probe:
        d = json.loads(text)
        timings = [StageTiming(t["float_stage"], t["latency_ratio"], tuple(t["latency_ratio_ci95"]))
                   for t in d["timings"]]  # fmt: skip
        return cls(d["stages"], timings, list(d["excluded_stages"]), bool(d["int8_dropped"]))


def decide(stages: Sequence[int], timings: Sequence[StageTiming]) -> Int8Probe:
    """The exclusion rule of the module docstring; ``timings[0]`` is all-int8."""
    alls, rest = timings[0], timings[1:]
    excluded = sorted(t.float_stage for t in rest
                      if t.float_stage is not None
                      and t.latency_ratio_ci95[1] < alls.latency_ratio_ci95[0])  # fmt: skip
    best_rest = min((t.latency_ratio_ci95[0] for t in rest), default=alls.latency_ratio_ci95[0])
    dropped = alls.latency_ratio_ci95[0] > 1.0 and best_rest > 1.0
    if dropped:  # every stage float: the quantization head's int8 always becomes fp32
        excluded = sorted(set(stages))
    return Int8Probe(list(stages), list(timings), excluded, dropped)


def run_probe(
    model: Any,
    data: Any,
    groups: Sequence[Any],
    stages: Sequence[int],
    measure: Callable[[Any], Any],
) -> Int8Probe:
    """Export and time the patterns of the module docstring. ``measure(export_result)`` times
    one ONNX artifact paired with the baseline and returns the ``Measurement``."""
    from hadmc.compress.onnx_export import export_onnx
    from hadmc.search.candidate import example_input_for

    example = example_input_for(data.input_shape)
    timings: list[StageTiming] = []
    with tempfile.TemporaryDirectory() as tmp:
        for float_stage in [None, *sorted(set(stages))]:
            float_modules = [name for g, s in zip(groups, stages, strict=True)
                             if s == float_stage for name in g.module_names]  # fmt: skip
            path = Path(tmp) / f"probe-{'all' if float_stage is None else float_stage}.onnx"
            out = export_onnx(model, path, example, precision="int8", calib_x=data.x_calib,
                              float_modules=float_modules)  # fmt: skip
            m = measure(out)
            if m.latency_ratio is None or m.latency_ratio_ci95 is None:
                raise ValueError("the int8 probe needs paired timing (--paired-latency on)")
            timings.append(StageTiming(float_stage, float(m.latency_ratio),
                                       tuple(map(float, m.latency_ratio_ci95))))  # fmt: skip
    return decide(stages, timings)


def load_or_run(run_dir: Path, resumed: bool, run: Callable[[], Int8Probe]) -> Int8Probe:
    """A resumed run's saved probe, else a new one (saved)."""
    path = run_dir / PROBE_FILE
    if resumed and path.is_file():
        return Int8Probe.from_json(path.read_text())
    probe = run()
    path.write_text(probe.to_json())
    return probe


def probe_for_search(
    run: Any, device: Any, info: dict[str, Any], options: Any, reference: Any
) -> tuple[Int8Probe | None, tuple[Any, ...]]:
    """The probe of one search (``host.search_run.SearchRun`` at setup, after the baseline)
    and its passes, the quantization pass carrying the exclusions. No probe where it does not
    apply: ``--int8-probe off``, no int8 choice, one precision for the whole model (LiteRT), a
    simulated device (nothing is measured), or candidates not timed paired with the baseline.
    A resumed run reuses its saved probe."""
    from hadmc.compress.passes.quantization_pass import (
        PER_GROUP_PRECISION,
        QuantizationPass,
        precision_stages,
    )
    from hadmc.device.hal import ArtifactSpec

    cfg = run.cfg
    quant = next((p for p in run.passes if type(p) is QuantizationPass), None)
    if (cfg.int8_probe != "on" or quant is None or "int8" not in run.precisions
            or not PER_GROUP_PRECISION[cfg.runtime] or cfg.paired_latency != "on"
            or info.get("source") == "simulated"):  # fmt: skip
        return None, run.passes

    def measure(e: Any) -> Any:
        spec = ArtifactSpec(path=Path(e.path), format=e.format, runtime=cfg.runtime,
                            input_name=e.input_name, input_shape=tuple(e.input_shape),
                            input_dtype=e.input_dtype, precision=e.precision)  # fmt: skip
        return device.measure(spec, options, reference=reference)

    stages = precision_stages(len(run.groups), cfg.runtime)
    if not (run.resumed and (run.run_dir / PROBE_FILE).is_file()):
        run._say(f"setup: int8 probe, {len(set(stages)) + 1} paired measurements "
                 "(which stages lose with int8 here)")  # fmt: skip
    from hadmc.compress.onnx_export import ExportError

    try:
        probe = load_or_run(run.run_dir, run.resumed,
                            lambda: run_probe(run.model, run.data, run.groups, stages, measure))
    except (ExportError, ValueError) as exc:
        # The model itself exports (its baseline did); an int8 pattern that does not is a
        # reason to search without exclusions, not to stop: candidates fail on their own.
        run._say(f"setup: int8 probe skipped ({str(exc).splitlines()[0][:200]})")
        return None, run.passes
    run._say(f"setup: {probe.summary()}")
    excluded = probe.excluded_groups()
    if not excluded:
        return probe, run.passes
    passes = tuple(QuantizationPass(quant.precisions, excluded) if p is quant else p
                   for p in run.passes)  # fmt: skip
    return probe, passes
