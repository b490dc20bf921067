"""SimulatedDevice: roofline numbers from the profile, labelled simulated, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from hadmc.device import hal_sim
from hadmc.device.hal import ArtifactSpec, Device, DeviceError, MeasureOptions
from hadmc.device.hal_sim import SimulatedDevice
from profiles import ProfileError


def spec(
    precision: str = "fp32",
    macs: int | None = 6_000_000,
    params: int | None = 150_000,
    runtime: str = "onnxruntime",
) -> ArtifactSpec:
    return ArtifactSpec(
        path=Path("/nonexistent/model.onnx"),
        format="onnx",
        runtime=runtime,
        input_name="input",
        input_shape=(1, 1, 32, 32),
        precision=precision,
        macs=macs,
        params=params,
    )


def test_measure_matches_hand_computed_roofline() -> None:
    dev = SimulatedDevice("raspberry-pi-4")
    assert isinstance(dev, Device) and dev.health()
    m = dev.measure(spec(), MeasureOptions(threads=1))
    # compute: 2 * 6e6 / (48e9 * 1/4 * 0.2) = 5.0 ms ; memory: 731072 B / 6.4e9 B/s = 0.114 ms
    assert m.latency_ms_p50 == pytest.approx(5.0 + 0.05)
    # power: 2.7 + 0.25 * (6.4 - 2.7) = 3.625 W ; energy = W x ms = mJ
    assert m.power_w == pytest.approx(3.625)
    assert m.energy_mj == pytest.approx(3.625 * 5.05)
    # memory: 30 MB runtime + (600000 + 65536) B
    assert m.peak_memory_mib == pytest.approx(30.0 + 665536 / 2**20)
    assert m.source == "simulated" and m.energy_status == "simulated"
    assert m.device == "sim:raspberry-pi-4"
    assert "analytic estimate from profile raspberry-pi-4" in m.provenance["method"]
    assert m.n_runs == 0


def test_int8_faster_threads_scale_and_faster_board() -> None:
    dev = SimulatedDevice("raspberry-pi-4")
    opts = MeasureOptions(threads=1)
    fp32 = dev.measure(spec("fp32"), opts).latency_ms_p50
    int8 = dev.measure(spec("int8"), opts).latency_ms_p50
    assert int8 < fp32
    assert (fp32 - 0.05) / (int8 - 0.05) == pytest.approx(1.8)  # profile int8_speedup
    four = dev.measure(spec("fp32"), MeasureOptions(threads=4)).latency_ms_p50
    assert four < fp32
    pi5 = SimulatedDevice("raspberry-pi-5").measure(spec("fp32"), opts).latency_ms_p50
    assert pi5 < fp32


def test_memory_bound_when_few_macs() -> None:
    est = SimulatedDevice("jetson-nano").estimate(spec(macs=1000, params=5_000_000))
    assert est["bound"] == "memory"
    assert est["latency_ms"] == pytest.approx(est["memory_ms"] + hal_sim.OVERHEAD_MS["onnxruntime"])


def test_missing_macs_is_a_clear_error() -> None:
    with pytest.raises(DeviceError, match="macs") as info:
        SimulatedDevice("x86-laptop").measure(spec(macs=None), MeasureOptions())
    assert info.value.code == "invalid_model"


def test_params_fall_back_to_file_size(tmp_path: Path) -> None:
    f = tmp_path / "m.onnx"
    f.write_bytes(b"\0" * 4096)
    s = spec(params=None)
    s.path = f
    est = SimulatedDevice("x86-laptop").estimate(s)
    assert est["weight_bytes"] == 4096
    s.path = tmp_path / "missing.onnx"
    with pytest.raises(DeviceError, match="params"):
        SimulatedDevice("x86-laptop").estimate(s)


def test_unknown_profile_and_runtime() -> None:
    with pytest.raises(ProfileError, match="available"):
        SimulatedDevice("nope")
    with pytest.raises(DeviceError) as info:
        SimulatedDevice("raspberry-pi-4").measure(spec(runtime="tensorrt"), MeasureOptions())
    assert info.value.code == "runtime_unavailable"


def test_info_is_labelled_simulated() -> None:
    info = SimulatedDevice("jetson-orin-nano").info()
    assert info["source"] == "simulated" and info["cores"] == 6
