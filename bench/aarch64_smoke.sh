#!/usr/bin/env bash
# The board's install, proven on aarch64 without a board: an arm64 Debian root run under
# qemu-user, the wheel's [device] extra installed inside it (no torch), the agent started
# there, and fp32 + int8 ONNX models profiled from this (x86-64) host over loopback.
#
# Run by hand, as root, on a Debian/Ubuntu host with access to deb.debian.org and the package
# index; not in CI (debootstrap + emulated pip take 10-20 minutes). Usage:
#   sudo bench/aarch64_smoke.sh            # ROOT=/var/tmp/hadmc-arm64 PORT=50071 to change
#
# Under emulation onnxruntime's cpuinfo reads /sys and crashes the worker when it sees the
# host's (x86) /sys; this script mounts /proc only, never /sys, inside the root, and points
# --sysfs-root at an empty tree, so cpuinfo falls back cleanly. The agent types such a crash
# as WORKER_CRASHED if it happens anyway.
set -euo pipefail
ROOT="${ROOT:-/var/tmp/hadmc-arm64}"
PORT="${PORT:-50071}"
SUITE="${SUITE:-bookworm}"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
# The host side (models, hadmc-host) runs this checkout's code, installed or not.
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap qemu-user-static binfmt-support
if [ ! -x "$ROOT/usr/bin/python3" ]; then
  debootstrap --arch=arm64 --include=python3,python3-venv,python3-pip,ca-certificates \
    "$SUITE" "$ROOT" http://deb.debian.org/debian
fi

# The wheel, exactly as the README tells a user to build it.
rm -rf "$ROOT/opt/dist" && mkdir -p "$ROOT/opt/dist"
(cd "$REPO" && pip wheel --no-deps -q . -w "$ROOT/opt/dist")
WHEEL="$(cd "$ROOT/opt/dist" && ls hadmc-*-py3-none-any.whl)"

mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
# A host behind a TLS-inspecting proxy trusts its CA in the system bundle; the root must too,
# or pip inside it fails with CERTIFICATE_VERIFY_FAILED.
HOST_CA=/etc/ssl/certs/ca-certificates.crt
CERT_OPT=""
if [ -f "$HOST_CA" ]; then
  cp "$HOST_CA" "$ROOT/etc/ssl/certs/hadmc-host-ca.crt"
  cp "$HOST_CA" "$ROOT/etc/ssl/certs/ca-certificates.crt"  # where inherited *_CA_* variables point
  CERT_OPT="--cert /etc/ssl/certs/hadmc-host-ca.crt"
fi
trap 'kill "${AGENT_PID:-0}" 2>/dev/null || true; umount "$ROOT/proc" 2>/dev/null || true' EXIT

t0=$(date +%s)
chroot "$ROOT" /bin/sh -c "python3 -m venv /opt/hadmc && /opt/hadmc/bin/pip install -q $CERT_OPT '/opt/dist/$WHEEL[device]'"
echo "device extra installed in $(( $(date +%s) - t0 )) s (emulated)"
if chroot "$ROOT" /opt/hadmc/bin/python -c "import torch" 2>/dev/null; then
  echo "FAIL: torch is importable on the board" >&2
  exit 1
fi

mkdir -p "$ROOT/tmp/emptysys"
chroot "$ROOT" /opt/hadmc/bin/hadmc-device --port "$PORT" --cache-dir /tmp/hadmc-cache \
  --sysfs-root /tmp/emptysys --no-prewarm > /tmp/hadmc-arm64-agent.log 2>&1 &
AGENT_PID=$!
for _ in $(seq 1 120); do
  grep -q HADMC_DEVICE_LISTENING /tmp/hadmc-arm64-agent.log && break
  sleep 1
done
grep HADMC_DEVICE_LISTENING /tmp/hadmc-arm64-agent.log

# fp32 and int8 (onnxruntime's own quantizer) models, built on the host.
WORK="$(mktemp -d)"
(cd "$REPO/tests" && python - "$WORK" <<'PY'
import sys
from pathlib import Path
from agent_helpers import onnx_cnn
from onnxruntime.quantization import QuantType, quantize_dynamic
work = Path(sys.argv[1])
(work / "fp32.onnx").write_bytes(onnx_cnn(seed=0))
quantize_dynamic(str(work / "fp32.onnx"), str(work / "int8.onnx"), weight_type=QuantType.QInt8)
PY
)
hadmc-host devices --device "127.0.0.1:$PORT"
for model in fp32 int8; do
  # exit status 0 only when the board measured the model
  hadmc-host profile "$WORK/$model.onnx" --device "127.0.0.1:$PORT" --json > "$WORK/$model.json"
  echo "$model: $(head -c 300 "$WORK/$model.json")"
done
echo "aarch64 smoke: OK"
