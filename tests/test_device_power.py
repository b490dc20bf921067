"""Power readers against fake sysfs trees (this machine has no sensors)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from device_agent import power

PMIC_OUTPUT = """\
     3V7_WL_SW_A current(0)=0.10000000A
       3V3_SYS_A current(1)=0.20000000A
        1V8_SYS_A current(2)=0.50000000A
     3V7_WL_SW_V volt(8)=3.70000000V
       3V3_SYS_V volt(9)=3.30000000V
        1V8_SYS_V volt(10)=1.80000000V
     EXT5V_V volt(24)=5.10000000V
"""


def write(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{value}\n")


def test_ina3221_total_channel_and_sum(tmp_path: Path) -> None:
    hw = tmp_path / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
    for n, label, mv, ma in [(1, "VDD_IN", 5000, 1200), (2, "VDD_CPU_GPU_CV", 5000, 400)]:
        write(hw / f"in{n}_label", label)
        write(hw / f"in{n}_input", mv)
        write(hw / f"curr{n}_input", ma)
    (reader,) = power.discover(tmp_path, pmic_command=None)
    assert reader.kind == "ina3221"
    assert reader.read_power_w() == pytest.approx(6.0)  # VDD_IN is the board total
    (hw / "in1_label").write_text("VDD_SOC\n")
    assert reader.read_power_w() == pytest.approx(6.0 + 2.0)  # disjoint rails: summed
    for f in hw.glob("*"):
        f.unlink()
    write(hw / "power1_input", 3_500_000)  # uW
    assert reader.read_power_w() == pytest.approx(3.5)


def test_rapl_energy_with_wraparound(tmp_path: Path) -> None:
    zone = tmp_path / "sys/class/powercap/intel-rapl:0"
    write(zone / "max_energy_range_uj", 1_000_000_000)
    write(zone / "energy_uj", 999_000_000)
    write(tmp_path / "sys/class/powercap/intel-rapl:0:0/energy_uj", 5)  # sub-zone: skipped
    (reader,) = power.discover(tmp_path, pmic_command=None)
    assert reader.kind == "rapl" and reader.is_counter
    meter = power.EnergyMeter(reader)
    meter.start()
    time.sleep(0.05)
    write(zone / "energy_uj", 2_000_000)  # wrapped: 1 J to the top + 2 J = 3 J
    mean_w, energy_j, seconds = meter.stop()
    assert energy_j == pytest.approx(3.0)
    assert mean_w == pytest.approx(3.0 / seconds)


def test_power_supply_power_now_and_current_voltage(tmp_path: Path) -> None:
    bat = tmp_path / "sys/class/power_supply/BAT0"
    write(bat / "power_now", 7_250_000)
    ac = tmp_path / "sys/class/power_supply/AC"
    write(ac / "online", 1)  # no power reading: not a sensor
    usb = tmp_path / "sys/class/power_supply/usb"
    write(usb / "current_now", 500_000)  # 0.5 A
    write(usb / "voltage_now", 5_000_000)  # 5 V
    readers = power.discover(tmp_path, pmic_command=None)
    assert [Path(r.path).name for r in readers] == ["BAT0", "usb"]
    assert readers[0].read_power_w() == pytest.approx(7.25)
    assert readers[1].read_power_w() == pytest.approx(2.5)


def test_pi5_pmic_parsing_and_meter(tmp_path: Path) -> None:
    expected = 0.1 * 3.7 + 0.2 * 3.3 + 0.5 * 1.8  # EXT5V has no current: skipped
    assert power.parse_pmic_adc(PMIC_OUTPUT) == pytest.approx(expected)
    calls: list[tuple[str, ...]] = []

    def runner(cmd: tuple[str, ...]) -> str:
        calls.append(tuple(cmd))
        return PMIC_OUTPUT

    (reader,) = power.discover(tmp_path, pmic_runner=runner)
    assert reader.kind == "pi5_pmic"
    meter = power.EnergyMeter(reader, interval_s=0.005)
    assert meter.idle_power_w(0.02) == pytest.approx(expected)
    meter.start()
    time.sleep(0.03)
    mean_w, energy_j, seconds = meter.stop()
    assert mean_w == pytest.approx(expected)
    assert energy_j == pytest.approx(expected * seconds)
    assert calls[0] == ("vcgencmd", "pmic_read_adc") and len(calls) > 3
    with pytest.raises(ValueError):
        power.parse_pmic_adc("garbage")


def test_no_sensor_found(tmp_path: Path) -> None:
    assert power.discover(tmp_path, pmic_command=None) == []
