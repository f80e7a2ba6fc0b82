#!/usr/bin/env bash
# Set up vrfer on a fresh Debian 12 / Python 3.11 machine; safe to run again (it skips what is done).
#   1. Qt's system libraries and Xvfb (apt, when run as root and something is missing)
#   2. .venv with python3.11
#   3. torch 2.13.0 first (so pip takes the local CPU wheel), then vrfer with its extras
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3.11}"
VENV="${VENV:-.venv}"
APT_PACKAGES=(libegl1 libgl1 libfontconfig1 libxkbcommon0 libglib2.0-0 libdbus-1-3 fonts-dejavu-core
              libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 xvfb)

say() { echo "setup: $*" >&2; }

# --- 1. system packages ----------------------------------------------------------------------
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if ! command -v "$PYTHON" >/dev/null 2>&1; then
        missing+=(python3.11 python3.11-venv)
    elif ! "$PYTHON" -c "import ensurepip, venv" >/dev/null 2>&1; then
        missing+=(python3.11-venv)
    fi
fi
if ((${#missing[@]})); then
    if [ "$(id -u)" = 0 ]; then
        say "installing ${missing[*]}"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    else
        say "warning: missing system packages: ${missing[*]}"
        say "         install them with: sudo apt-get install -y ${missing[*]}"
    fi
fi
command -v "$PYTHON" >/dev/null 2>&1 || { say "error: $PYTHON not found (Debian 12: apt-get install python3.11 python3.11-venv)"; exit 2; }

# --- 2. virtual environment ------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    say "creating $VENV with $PYTHON"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
fi

# --- 2b. the native OpenXR face layer (optional; `vrfer openxr install-layer` registers it) -----
if command -v cc >/dev/null 2>&1 && command -v make >/dev/null 2>&1 \
        && grep -qs XR_FB_face_tracking2 /usr/include/openxr/openxr.h; then
    make -s -C openxr_layer || say "warning: the OpenXR layer did not build (make -C openxr_layer)"
else
    say "OpenXR layer not built: it needs cc, make and OpenXR headers >= 1.0.34 (Debian 13: apt-get install gcc make libopenxr-dev)"
fi

# --- 3. packages: skipped when pyproject.toml has not changed since the last full install -------
stamp="$VENV/.vrfer-setup"
want="$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-64)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/vrfer" ]; then
    say "$VENV is up to date"
    exit 0
fi
"$VENV/bin/python" -m pip install --upgrade --quiet pip
say "installing torch 2.13.0 (CPU)"
"$VENV/bin/python" -m pip install --quiet "torch==2.13.0"
say "installing vrfer with the train, openxr, dev and bundle extras"
"$VENV/bin/python" -m pip install --quiet -e '.[train,openxr,dev,bundle]'
"$VENV/bin/python" -m pip check
echo "$want" > "$stamp"
say "done: $VENV/bin/vrfer"
