"""Bundled device profiles load, validate and fail clearly on unknown names."""

from __future__ import annotations

import pytest

import profiles
from profiles import DeviceProfile, ProfileError, list_profiles, load_profile

REQUIRED = {"raspberry-pi-4", "raspberry-pi-5", "jetson-nano", "jetson-orin-nano", "x86-laptop"}


def test_required_profiles_are_bundled() -> None:
    assert REQUIRED <= set(list_profiles())


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_profile_values_are_sane(name: str) -> None:
    p = load_profile(name)
    assert isinstance(p, DeviceProfile)
    assert p.name == name
    assert p.cores >= 1
    assert p.peak_gflops_fp32 > 1.0
    assert p.int8_speedup >= 1.0 and p.fp16_speedup >= 1.0
    assert p.memory_bandwidth_gbs > 1.0
    assert p.ram_mib >= 1024
    assert 0 <= p.idle_power_w < p.max_power_w
    assert "onnxruntime" in p.runtimes
    assert p.to_dict()["runtimes"] == list(p.runtimes)


def test_known_datasheet_values() -> None:
    # Spot-check a few numbers against their cited sources.
    assert load_profile("raspberry-pi-4").memory_bandwidth_gbs == pytest.approx(12.8)
    assert load_profile("jetson-nano").memory_bandwidth_gbs == pytest.approx(25.6)
    assert load_profile("jetson-orin-nano").cores == 6
    assert load_profile("raspberry-pi-5").peak_gflops_fp32 == pytest.approx(4 * 2.4 * 16)


def test_every_number_has_a_source_comment() -> None:
    from importlib import resources

    for name in list_profiles():
        text = resources.files(profiles).joinpath(f"{name}.toml").read_text()
        lines = text.splitlines()
        for i, line in enumerate(lines):
            key = line.split("=")[0].strip()
            if key in {"peak_gflops_fp32", "memory_bandwidth_gbs", "idle_power_w", "int8_speedup"}:
                preceding = lines[max(0, i - 6) : i]
                assert any(c.lstrip().startswith("#") for c in preceding), (name, key)


def test_unknown_profile_lists_available() -> None:
    with pytest.raises(ProfileError) as info:
        load_profile("commodore-64")
    msg = str(info.value)
    assert "commodore-64" in msg and "raspberry-pi-4" in msg and "x86-laptop" in msg
    assert isinstance(info.value, ValueError)


def test_validation_rejects_bad_values() -> None:
    good = load_profile("raspberry-pi-4").to_dict()
    with pytest.raises(ProfileError, match="peak_gflops_fp32"):
        profiles._validate({**good, "peak_gflops_fp32": 0}, "t")
    with pytest.raises(ProfileError, match="missing"):
        profiles._validate({k: v for k, v in good.items() if k != "ram_mib"}, "t")
    with pytest.raises(ProfileError, match="unknown keys"):
        profiles._validate({**good, "turbo": 1}, "t")
    with pytest.raises(ProfileError, match="idle_power_w"):
        profiles._validate({**good, "idle_power_w": 50.0}, "t")
