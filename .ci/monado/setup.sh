#!/usr/bin/env bash
# Build (once per machine) a Debian 13 (trixie) chroot with Monado, the OpenXR loader, lavapipe
# Vulkan and a Python that has numpy + pyopenxr, for vrfer's OpenXR tests.
#
# Why a chroot: Debian 12 has no Monado package, and trixie's libopenxr_monado.so needs
# glibc >= 2.38, so the OpenXR *client* (the Python process under test) must run inside it.
#
# Usage: .ci/monado/setup.sh [ROOT]       (root required; idempotent; ~1.6 GB)
# ROOT defaults to $VRFER_MONADO_ROOT or /var/cache/vrfer-monado-root. A finished build leaves
# ROOT/.vrfer-ready holding RECIPE below; bump RECIPE when this script changes what it installs.
# Nothing stays mounted when this script exits, whatever way it exits.
set -euo pipefail
RECIPE=3
ROOT=${1:-${VRFER_MONADO_ROOT:-/var/cache/vrfer-monado-root}}
HERE=$(cd "$(dirname "$0")" && pwd)
PYOPENXR=pyopenxr==1.1.6501
export DEBIAN_FRONTEND=noninteractive

[ "$(id -u)" = 0 ] || { echo "setup.sh: needs root (debootstrap, chroot, mount)" >&2; exit 2; }
mkdir -p "$(dirname "$ROOT")"
# One builder at a time per machine; a second caller waits, then finds the stamp.
exec 9>"$ROOT.lock"
flock 9
# ... and never while with-monado.sh runs a test in it: the unmount on exit would pull its mounts.
exec 8>"$ROOT.run.lock"
flock 8
if [ "$(cat "$ROOT/.vrfer-ready" 2>/dev/null)" = "$RECIPE" ]; then
  echo "monado chroot ready at $ROOT (cached)"; exit 0
fi
T0=$(date +%s)

# shellcheck source=mounts.sh
. "$HERE/mounts.sh"
trap 'unmount_all "$ROOT"' EXIT

command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null; }
if [ ! -x "$ROOT/usr/bin/apt-get" ]; then
  unmount_all "$ROOT"
  # A half-built root from an interrupted run: safe to remove only because nothing is mounted.
  if [ -e "$ROOT" ] && ! grep -q " $ROOT/" /proc/mounts; then rm -rf --one-file-system "$ROOT"; fi
  debootstrap --variant=minbase --include=ca-certificates trixie "$ROOT" >/dev/null
fi
mount_system "$ROOT"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
# Carry over locally trusted CAs (a TLS-intercepting proxy, if any) so apt and pip work inside.
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
  cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
  chroot "$ROOT" update-ca-certificates >/dev/null
fi
# pyopenxr imports PyOpenGL at import time; numpy and pytest come from Debian, not PyPI.
# platformdirs: vrfer.core.paths. gcc, make and libopenxr-dev build vrfer's native face-tracking layer and its C test client.
PKGS="monado-service libopenxr1-monado libopenxr-loader1 mesa-vulkan-drivers libegl1 libegl-mesa0
      python3 python3-venv python3-pip python3-numpy python3-opengl python3-pytest
      python3-platformdirs gcc libc6-dev make libopenxr-dev"
# shellcheck disable=SC2086
if ! chroot "$ROOT" dpkg-query -W $PKGS >/dev/null 2>&1; then
  chroot "$ROOT" apt-get update -qq
  chroot "$ROOT" apt-get install -y -qq --no-install-recommends $PKGS >/dev/null
  chroot "$ROOT" apt-get clean
fi
if ! chroot "$ROOT" /opt/venv/bin/python -c "import xr" 2>/dev/null; then
  chroot "$ROOT" python3 -m venv --system-site-packages /opt/venv
  # pyopenxr is pure Python with its loader bundled; its other requirement (glfw) is unused here.
  if ! chroot "$ROOT" /opt/venv/bin/pip install -q --no-deps "$PYOPENXR"; then
    # No PyPI: copy the host's installed copy (same pinned version) if there is one.
    SRC=$(python3 -c "import xr, os; print(os.path.dirname(xr.__file__))" 2>/dev/null || true)
    [ -n "$SRC" ] || { echo "setup.sh: cannot install $PYOPENXR" >&2; exit 1; }
    SITE=$(chroot "$ROOT" /opt/venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    cp -a "$SRC" "$ROOT$SITE/"
  fi
fi
chroot "$ROOT" /opt/venv/bin/python -c "import xr, numpy, pytest"
echo "$RECIPE" >"$ROOT/.vrfer-ready"
echo "monado chroot ready at $ROOT in $(( $(date +%s) - T0 )) s:" \
     "monado $(chroot "$ROOT" dpkg-query -W -f='${Version}' monado-service)," \
     "$(du -sh --one-file-system "$ROOT" | cut -f1)"
