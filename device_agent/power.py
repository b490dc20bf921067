"""Power sensors of edge boards, each read from a configurable root so tests use fake trees.

Two kinds of sensor:
- instantaneous power (W): Jetson INA3221 hwmon, ``/sys/class/power_supply``, Raspberry Pi 5
  PMIC (``vcgencmd pmic_read_adc``). Energy over a window = mean of samples taken by a thread
  during the window x window length.
- energy counter (J): Intel RAPL powercap ``energy_uj``, which wraps at
  ``max_energy_range_uj``. Energy = counter delta over exactly the window.

``discover`` finds what exists; ``EnergyMeter`` turns any reader into (mean W, J, s) over a
window. No sensor -> the caller reports ``status="unavailable"``, never 0 W.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

CommandRunner = Callable[[Sequence[str]], str]


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


@dataclass
class PowerReader:
    """Base: ``kind``/``path`` identify the sensor; subclasses implement one read method."""

    kind: str
    path: str
    readable: bool = True
    detail: str = ""
    is_counter: bool = False
    # Sampling period of instantaneous sensors: a sysfs read costs microseconds, but spawning
    # vcgencmd costs ~10 ms of CPU, which would perturb the timed runs if done every 10 ms.
    sample_interval_s: float = 0.01

    def read_power_w(self) -> float:  # instantaneous sensors
        raise NotImplementedError

    def read_energy_j(self) -> float:  # counters
        raise NotImplementedError

    def counter_range_j(self) -> float:
        raise NotImplementedError

    @property
    def source(self) -> str:
        return f"{self.kind}:{self.path}"


class Ina3221Reader(PowerReader):
    """Jetson INA3221 hwmon dir: ``in<N>_input`` (mV) x ``curr<N>_input`` (mA) per channel,
    or ``power<N>_input`` (uW). The channel labelled VDD_IN (board input) is the total when
    present; otherwise channels are summed (rails are then disjoint)."""

    def _channels(self) -> dict[str, float]:
        root = Path(self.path)
        watts: dict[str, float] = {}
        for p in sorted(root.glob("power*_input")):
            n = p.name[len("power") : -len("_input")]
            watts[self._label(root, n)] = _read_int(p) / 1e6
        for v in sorted(root.glob("in*_input")):
            n = v.name[len("in") : -len("_input")]
            c = root / f"curr{n}_input"
            label = self._label(root, n)
            if c.exists() and label not in watts:
                watts[label] = _read_int(v) * _read_int(c) / 1e6  # mV * mA = uW
        return watts

    @staticmethod
    def _label(root: Path, n: str) -> str:
        lab = root / f"in{n}_label"
        return lab.read_text().strip() if lab.exists() else f"channel{n}"

    def read_power_w(self) -> float:
        watts = self._channels()
        if not watts:
            raise OSError(f"no INA3221 channels under {self.path}")
        for label, w in watts.items():
            if label.upper() in ("VDD_IN", "VIN_SYS_5V0", "POM_5V_IN"):
                return w
        return sum(watts.values())


class RaplReader(PowerReader):
    """Intel RAPL powercap zone (package): cumulative ``energy_uj`` with wrap-around."""

    def __init__(self, path: str, **kw: object) -> None:
        super().__init__("rapl", path, is_counter=True, **kw)  # type: ignore[arg-type]

    def read_energy_j(self) -> float:
        return _read_int(Path(self.path) / "energy_uj") / 1e6

    def counter_range_j(self) -> float:
        return _read_int(Path(self.path) / "max_energy_range_uj") / 1e6


class PowerSupplyReader(PowerReader):
    """``/sys/class/power_supply/<X>``: ``power_now`` (uW) or ``current_now`` (uA) x
    ``voltage_now`` (uV)."""

    def read_power_w(self) -> float:
        root = Path(self.path)
        if (root / "power_now").exists():
            return _read_int(root / "power_now") / 1e6
        return _read_int(root / "current_now") * _read_int(root / "voltage_now") / 1e12


_PMIC_LINE = re.compile(r"^\s*(\S+)_([AV])\s+(?:current|volt)\(\d+\)=([-+0-9.eE]+)[AV]\s*$")


def parse_pmic_adc(text: str) -> float:
    """Total W from ``vcgencmd pmic_read_adc``: sum over rails of current(A) x voltage(V);
    rails with only one of the two are skipped."""
    amps: dict[str, float] = {}
    volts: dict[str, float] = {}
    for line in text.splitlines():
        m = _PMIC_LINE.match(line)
        if m:
            (amps if m.group(2) == "A" else volts)[m.group(1)] = float(m.group(3))
    rails = amps.keys() & volts.keys()
    if not rails:
        raise ValueError("no rail with both current and voltage in pmic_read_adc output")
    return sum(amps[r] * volts[r] for r in rails)


def _run_command(cmd: Sequence[str]) -> str:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=True, timeout=5).stdout


class Pi5PmicReader(PowerReader):
    """Raspberry Pi 5 PMIC ADC via ``vcgencmd pmic_read_adc``; runner injectable for tests."""

    def __init__(
        self, command: Sequence[str], runner: CommandRunner = _run_command, **kw: object
    ) -> None:
        kw.setdefault("sample_interval_s", 0.2)
        super().__init__("pi5_pmic", " ".join(command), **kw)  # type: ignore[arg-type]
        self.command = tuple(command)
        self.runner = runner

    def read_power_w(self) -> float:
        return parse_pmic_adc(self.runner(self.command))


PMIC_COMMAND = ("vcgencmd", "pmic_read_adc")


def discover(
    root: Path = Path("/"),
    pmic_command: Sequence[str] | None = PMIC_COMMAND,
    pmic_runner: CommandRunner = _run_command,
) -> list[PowerReader]:
    """Every sensor found under ``root``, best first (board input before rails)."""
    found: list[PowerReader] = []
    for hw in sorted(root.glob("sys/bus/i2c/drivers/ina3221*/*/hwmon/hwmon*")):
        found.append(Ina3221Reader("ina3221", str(hw)))
    for zone in sorted(root.glob("sys/class/powercap/intel-rapl:*")):
        if zone.name.count(":") != 1:  # sub-zones (core, uncore) are inside the package
            continue
        energy = zone / "energy_uj"
        try:
            energy.read_text()
            found.append(RaplReader(str(zone)))
        except PermissionError:
            found.append(RaplReader(str(zone), readable=False, detail="energy_uj needs root"))
        except OSError:
            continue
    for ps in sorted(root.glob("sys/class/power_supply/*")):
        if (ps / "power_now").exists() or (
            (ps / "current_now").exists() and (ps / "voltage_now").exists()
        ):
            found.append(PowerSupplyReader("power_supply", str(ps)))
    if pmic_command and (pmic_runner is not _run_command or shutil.which(pmic_command[0])):
        found.append(Pi5PmicReader(pmic_command, pmic_runner))
    return found


class EnergyMeter:
    """Mean power and energy over one window from one reader.

    ``start()``/``stop()`` bracket exactly the timed runs. Counters are read at both ends
    (wrap-around corrected once, which holds for windows far shorter than the wrap period);
    instantaneous sensors are sampled every ``interval_s`` by a thread.
    """

    def __init__(self, reader: PowerReader, interval_s: float | None = None) -> None:
        self.reader = reader
        self.interval_s = reader.sample_interval_s if interval_s is None else interval_s
        self._samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._e0 = 0.0

    def idle_power_w(self, seconds: float = 0.2) -> float:
        """Baseline before the window: mean over ``seconds`` of doing nothing."""
        if self.reader.is_counter:
            e0, t0 = self.reader.read_energy_j(), time.perf_counter()
            time.sleep(seconds)
            return self._delta(e0, self.reader.read_energy_j()) / (time.perf_counter() - t0)
        samples = [self.reader.read_power_w()]
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            time.sleep(self.interval_s)
            samples.append(self.reader.read_power_w())
        return sum(samples) / len(samples)

    def _delta(self, e0: float, e1: float) -> float:
        return e1 - e0 if e1 >= e0 else e1 + self.reader.counter_range_j() - e0

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._samples.append(self.reader.read_power_w())

    def start(self) -> None:
        self._t0 = time.perf_counter()
        if self.reader.is_counter:
            self._e0 = self.reader.read_energy_j()
        else:
            self._samples = [self.reader.read_power_w()]
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()

    def stop(self) -> tuple[float, float, float]:
        """(mean power W, energy J, window s) since ``start()``."""
        if self.reader.is_counter:
            energy_j = self._delta(self._e0, self.reader.read_energy_j())
            seconds = time.perf_counter() - self._t0
            return energy_j / seconds, energy_j, seconds
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._samples.append(self.reader.read_power_w())
        seconds = time.perf_counter() - self._t0
        mean_w = sum(self._samples) / len(self._samples)
        return mean_w, mean_w * seconds, seconds
