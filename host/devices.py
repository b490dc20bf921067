"""``open_device``: pick the ``hadmc.device.hal.Device`` implementation from a ``--device`` value.

- ``None`` (or ``"local"``): start an agent on loopback (``host.local_agent.LocalDevice``);
- ``"sim:<profile>"``: ``hadmc.device.hal_sim.SimulatedDevice`` (an estimate, labelled simulated);
- ``"host:port"`` or ``"[v6addr]:port"``: ``host.device_client.RemoteDevice``.

A device that cannot be reached at open raises ``DeviceError("unreachable", ...)``, a malformed
address or unknown profile ``host.errors.UsageError`` (``bad_address`` / ``unknown_profile``),
each with a one-line message, so the CLI can print it without a traceback.

Also here: GetInfo / Provenance messages as plain dicts (``device_info_to_dict``,
``provenance_to_dict``), the shapes ``Device.info()`` and ``Measurement.provenance`` carry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hadmc.device.hal import Device, DeviceError
from host.errors import UsageError

LOCAL_ALIASES = ("", "local")


def parse_address(address: str) -> tuple[str, int]:
    """Split "host:port" / "[::1]:port"; raises UsageError("bad_address") with the form."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(
            f"bad device address {address!r}: expected host:port (e.g. 192.168.1.20:50051), "
            "sim:<profile> (e.g. sim:raspberry-pi-4), or nothing for a local agent",
            "bad_address",
        )
    if host.startswith("[") != host.endswith("]"):
        raise UsageError(
            f"bad device address {address!r}: unbalanced brackets around the host", "bad_address"
        )
    return host, int(port_text)


def open_device(
    address: str | None,
    token: str | None = None,
    *,
    tls_ca: str | Path | None = None,
    timeout_s: float = 10.0,
    retries: int = 2,
    backoff_s: float = 0.25,
    check: bool = True,
    **local_kwargs: Any,
) -> Device:
    """Open the device named by ``address``; with ``check``, verify a remote one answers.

    ``check`` calls GetInfo once (with ``retries``), so a wrong address or token fails here,
    before any compression work, rather than at the first measurement.
    """
    if address is None or address.strip() in LOCAL_ALIASES:
        from host.local_agent import LocalDevice

        return LocalDevice(
            token=token, timeout_s=timeout_s, retries=retries, backoff_s=backoff_s, **local_kwargs
        )
    address = address.strip()
    if address.startswith("sim:"):
        from hadmc.device.hal_sim import SimulatedDevice
        from profiles import ProfileError

        profile = address[len("sim:") :]
        if not profile:
            raise UsageError(
                "sim: needs a profile name, e.g. sim:raspberry-pi-4", "unknown_profile"
            )
        try:
            return SimulatedDevice(profile)
        except ProfileError as exc:
            unknown = str(exc).startswith("unknown device profile")
            raise UsageError(str(exc), "unknown_profile" if unknown else "bad_input") from None
    parse_address(address)
    from host.device_client import RemoteDevice

    device = RemoteDevice(
        address,
        token=token,
        tls_ca=tls_ca,
        timeout_s=timeout_s,
        retries=retries,
        backoff_s=backoff_s,
    )
    if check:
        try:
            device.info()
        except DeviceError:
            device.close()
            raise
    return device
