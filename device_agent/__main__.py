"""``python -m device_agent`` == ``hadmc-device``."""

from device_agent.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
