#!/usr/bin/env bash
# Run a command inside the vrfer Monado chroot while a headless monado-service is up
# (null compositor, simulated HMD, lavapipe Vulkan).
#
# Usage: .ci/monado/with-monado.sh SRC_DIR command...
#   SRC_DIR is bind-mounted at /src and the command runs there, with the chroot's
#   /opt/venv/bin first on PATH. ROOT is $VRFER_MONADO_ROOT or /var/cache/vrfer-monado-root
#   (build it with setup.sh). Runs are serialised per machine (one service, one socket).
#   Every mount made here is undone on exit, and monado-service is stopped.
set -uo pipefail
ROOT=${VRFER_MONADO_ROOT:-/var/cache/vrfer-monado-root}
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$1" && pwd); shift
[ "$(id -u)" = 0 ] || { echo "with-monado.sh: needs root (chroot, mount)" >&2; exit 2; }
[ -f "$ROOT/.vrfer-ready" ] || { echo "with-monado.sh: no chroot at $ROOT; run .ci/monado/setup.sh" >&2; exit 2; }
exec 9>"$ROOT.run.lock"
flock 9
# shellcheck source=mounts.sh
. "$HERE/mounts.sh"
SVC=
cleanup() {
  if [ -n "$SVC" ]; then kill "$SVC" 2>/dev/null; wait "$SVC" 2>/dev/null; fi
  unmount_all "$ROOT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mount_system "$ROOT"
mkdir -p "$ROOT/src" "$ROOT/tmp/xdg"; chmod 700 "$ROOT/tmp/xdg"
mountpoint -q "$ROOT/src" || mount --bind "$SRC" "$ROOT/src"
ENVV=(XDG_RUNTIME_DIR=/tmp/xdg XR_RUNTIME_JSON=/usr/share/openxr/1/openxr_monado.json
      XRT_COMPOSITOR_NULL=1 SIMULATED_ENABLE=1 XRT_NO_STDIN=1 IPC_EXIT_ON_DISCONNECT=0
      VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.json VRFER_IN_MONADO_CHROOT=1
      PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin HOME=/tmp PYTHONDONTWRITEBYTECODE=1)
rm -f "$ROOT/tmp/xdg/monado_comp_ipc"
setsid chroot "$ROOT" /usr/bin/env -i "${ENVV[@]}" monado-service >"$ROOT/tmp/monado-service.log" 2>&1 </dev/null &
SVC=$!
for _ in $(seq 100); do [ -S "$ROOT/tmp/xdg/monado_comp_ipc" ] && break; sleep 0.1; done
if [ ! -S "$ROOT/tmp/xdg/monado_comp_ipc" ]; then
  echo "monado-service did not start:" >&2; cat "$ROOT/tmp/monado-service.log" >&2; exit 1
fi
chroot "$ROOT" /usr/bin/env -i "${ENVV[@]}" /bin/sh -c 'cd /src && exec "$@"' sh "$@"
