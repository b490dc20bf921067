"""Simulated device: an analytic roofline estimate from a device profile.

ONLY for trying the tool without a board (``--device sim:raspberry-pi-4``): nothing is run,
nothing is timed. Every result says so: ``source="simulated"``, ``energy_status="simulated"``,
``device="sim:<profile>"`` and a provenance entry "analytic estimate from profile <name>".
Never mix simulated numbers with measured ones in a comparison.

Model (per inference, batch of the artifact's input shape):

    compute_s  = 2 * MACs / (peak_gflops_fp32 * 1e9 * threads/cores * COMPUTE_EFFICIENCY * precision_speedup)
    memory_s   = bytes_moved / (memory_bandwidth_gbs * 1e9 * BANDWIDTH_EFFICIENCY)
    latency_s  = max(compute_s, memory_s) + OVERHEAD_MS[runtime] / 1000
    bytes_moved = weight bytes (params x bytes per parameter at that precision) + 2 x activation bytes
    peak_memory_mib = RUNTIME_BASE_MIB[runtime] + (weight bytes + activation bytes) / 2**20
    power_w   = idle + utilisation * (max - idle),  utilisation = threads / cores
    energy_mj = power_w * latency_ms

The efficiency and overhead constants are approximate: batch-1 convolutions of small CNNs on
mobile CPUs typically reach 10-30 % of theoretical peak FLOP/s and ~50 % of theoretical DRAM
bandwidth; runtimes add tens of microseconds per call.
"""

from __future__ import annotations

import math
from typing import Any

from hadmc.device.hal import ArtifactSpec, Device, DeviceError, Measurement, MeasureOptions
from profiles import DeviceProfile, load_profile

# Approximate fraction of theoretical peak reached by batch-1 CNN inference on a CPU.
COMPUTE_EFFICIENCY = 0.2
# Approximate fraction of theoretical DRAM bandwidth reached by streaming reads.
BANDWIDTH_EFFICIENCY = 0.5
# Approximate per-inference runtime overhead (session run call, input copy), milliseconds.
OVERHEAD_MS = {"onnxruntime": 0.05, "litert": 0.03}
# Approximate resident size of a process that loaded the runtime, before the model, MiB.
RUNTIME_BASE_MIB = {"onnxruntime": 30.0, "litert": 12.0}
# Bytes per weight at each precision; "mixed" assumes about half the weights stay fp32.
BYTES_PER_PARAM = {"fp32": 4.0, "fp16": 2.0, "int8": 1.0, "mixed": 2.5}
# Live activations are estimated as the input tensor times this expansion factor: small
# MobileNet-style nets widen 1-3 input channels to 16-32 channels at full resolution.
ACTIVATION_EXPANSION = 16.0
BYTES_PER_ACTIVATION = {"fp32": 4.0, "fp16": 2.0, "int8": 1.0, "mixed": 2.0}


def precision_speedup(profile: DeviceProfile, precision: str) -> float:
    """Compute throughput relative to fp32 at ``precision`` on this profile."""
    if precision == "fp32":
        return 1.0
    if precision == "fp16":
        return profile.fp16_speedup
    if precision == "int8":
        return profile.int8_speedup
    if precision == "mixed":
        # Part int8, part float: the geometric mean is a neutral middle; approximate.
        return math.sqrt(profile.int8_speedup)
    raise DeviceError("invalid_model", f"unknown precision {precision!r}")


class SimulatedDevice(Device):
    """``hadmc.device.hal.Device`` that estimates instead of measuring (see module docstring)."""

    def __init__(self, profile_name: str) -> None:
        # An unknown name raises profiles.ProfileError (a ValueError) listing the known ones.
        self.profile: DeviceProfile = load_profile(profile_name)
        self.name = f"sim:{self.profile.name}"

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": "simulated",
            "profile": self.profile.to_dict(),
            "arch": self.profile.arch,
            "cpu": self.profile.cpu,
            "cores": self.profile.cores,
            "ram_mib": self.profile.ram_mib,
            "runtimes": list(self.profile.runtimes),
            "power_sources": ["simulated"],
            "note": "analytic estimate; no board is involved",
        }

    def health(self) -> bool:
        return True

    def estimate(self, artifact: ArtifactSpec, threads: int = 1) -> dict[str, float]:
        """The roofline terms behind :meth:`measure`, for inspection and tests."""
        if artifact.macs is None or artifact.macs <= 0:
            raise DeviceError(
                "invalid_model",
                "the simulated device needs ArtifactSpec.macs (multiply-accumulates per "
                "inference, e.g. from hadmc.compress.pruning.count_macs_params)",
            )
        if artifact.runtime not in self.profile.runtimes:
            raise DeviceError(
                "runtime_unavailable",
                f"{artifact.runtime!r} not in profile {self.profile.name} runtimes "
                f"{list(self.profile.runtimes)}",
            )
        if artifact.precision not in BYTES_PER_PARAM:
            raise DeviceError("invalid_model", f"unknown precision {artifact.precision!r}")
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        p = self.profile
        used_cores = min(threads, p.cores)
        speedup = precision_speedup(p, artifact.precision)
        flops_per_s = (
            p.peak_gflops_fp32 * 1e9 * (used_cores / p.cores) * COMPUTE_EFFICIENCY * speedup
        )
        compute_s = 2.0 * artifact.macs / flops_per_s

        if artifact.params is not None:
            weight_bytes = artifact.params * BYTES_PER_PARAM[artifact.precision]
        elif artifact.path.exists():
            # No parameter count: the serialized file is dominated by the weights.
            weight_bytes = float(artifact.path.stat().st_size)
        else:
            raise DeviceError(
                "invalid_model", "need ArtifactSpec.params or an existing artifact file"
            )
        input_elems = math.prod(artifact.input_shape)
        activation_bytes = (
            input_elems * ACTIVATION_EXPANSION * BYTES_PER_ACTIVATION[artifact.precision]
        )
        bytes_moved = weight_bytes + 2.0 * activation_bytes
        memory_s = bytes_moved / (p.memory_bandwidth_gbs * 1e9 * BANDWIDTH_EFFICIENCY)
        overhead_ms = OVERHEAD_MS.get(artifact.runtime, 0.05)
        latency_ms = max(compute_s, memory_s) * 1e3 + overhead_ms
        utilisation = used_cores / p.cores
        power_w = p.idle_power_w + utilisation * (p.max_power_w - p.idle_power_w)
        peak_memory_mib = (
            RUNTIME_BASE_MIB.get(artifact.runtime, 30.0) + (weight_bytes + activation_bytes) / 2**20
        )
        return {
            "compute_ms": compute_s * 1e3,
            "memory_ms": memory_s * 1e3,
            "overhead_ms": overhead_ms,
            "latency_ms": latency_ms,
            "weight_bytes": weight_bytes,
            "activation_bytes": activation_bytes,
            "bytes_moved": bytes_moved,
            "precision_speedup": speedup,
            "utilisation": utilisation,
            "power_w": power_w,
            "energy_mj": power_w * latency_ms,  # W x ms = mJ
            "peak_memory_mib": peak_memory_mib,
            "bound": "compute" if compute_s >= memory_s else "memory",
        }

    def measure(
        self,
        artifact: ArtifactSpec,
        options: MeasureOptions,
        reference: ArtifactSpec | None = None,
    ) -> Measurement:
        """The estimate; with ``reference`` the ratio of the two estimates (there is no drift
        to cancel in a model, so pairing changes nothing but the fields it fills)."""
        accel = options.target.split(":", 1)[-1] if options.target else ""
        if accel not in ("", "cpu", "xnnpack"):
            raise DeviceError(
                "runtime_unavailable",
                f"{self.name}: a sim: profile models the board's CPU only, not {options.target}",
            )
        est = self.estimate(artifact, options.threads)
        lat = est["latency_ms"]
        p = self.profile
        paired: dict[str, Any] = {}
        if reference is not None:
            ref_ms = self.estimate(reference, options.threads)["latency_ms"]
            ratio = lat / ref_ms
            paired = {
                "reference_latency_ms_p50": ref_ms,
                "latency_ratio": ratio,
                "latency_ratio_ci95": (ratio, ratio),
            }
        return Measurement(
            **paired,
            latency_ms_p50=lat,
            latency_ms_mean=lat,
            latency_ms_min=lat,
            latency_ms_p90=lat,
            latency_ms_p99=lat,
            latency_ms_std=0.0,
            latency_cv=0.0,
            n_runs=0,  # nothing was run
            load_ms=0.0,  # not modelled
            first_inference_ms=lat,
            peak_memory_mib=est["peak_memory_mib"],
            energy_mj=est["energy_mj"],
            power_w=est["power_w"],
            energy_status="simulated",
            energy_source=(
                f"simulated: (idle {p.idle_power_w} W + utilisation x (max {p.max_power_w} W"
                f" - idle)) x latency, profile {p.name}"
            ),
            source="simulated",
            device=self.name,
            upload_bytes=0,
            provenance={
                "method": f"analytic estimate from profile {p.name}",
                "source": "simulated",
                "profile": p.to_dict(),
                "runtime": artifact.runtime,
                "precision": artifact.precision,
                "threads": options.threads,
                "input_shape": list(artifact.input_shape),
                "macs": artifact.macs,
                "params": artifact.params,
                "constants": {
                    "compute_efficiency": COMPUTE_EFFICIENCY,
                    "bandwidth_efficiency": BANDWIDTH_EFFICIENCY,
                    "activation_expansion": ACTIVATION_EXPANSION,
                },
                "estimate": est,
            },
        )
