#!/usr/bin/env bash
# Set up (or reuse) .venv at the repository root with everything napari-hinet needs.
# Used by both README commands: scripts/demo.sh and .ci/run. Safe to run again.
#
# Usage: bash scripts/setup.sh [EXTRA]      EXTRA: pip extra to install, e.g. "testing";
#                                          default "export" (model exchange, docs/sharing.md)
#
# Steps:
#   1. Debian packages for Qt/napari under a virtual X server (only those missing;
#      needs root or sudo; set HINET_SKIP_APT=1 to skip).
#   2. .venv at the repository root (created if missing).
#   3. torch FIRST, in its own pip call, pinned (default torch==2.13.0).
#      Pick another build with environment variables, e.g. a CUDA 12.6 build:
#        HINET_TORCH_SPEC="torch==2.13.0" \
#        HINET_TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 bash scripts/setup.sh
#      (pip then installs from that index; see https://pytorch.org/get-started/locally/).
#   4. the package itself, NON-editable (`pip install ".[EXTRA]"`), so a file missing
#      from the wheel (such as the napari manifest) shows up. A .venv that already holds
#      an editable install of napari-hinet keeps it editable (developer setup);
#      HINET_EDITABLE=1 forces an editable install.
#   Never pass -U/--upgrade here: it would replace the torch chosen in step 3.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."   # repository root
EXTRA="${1:-export}"   # "testing" includes "export"
SECONDS=0

# ---------------------------------------------------------------- 1. Debian packages
# xvfb xauth: virtual X server and xvfb-run; Mesa GL libs: software OpenGL for napari's
# canvas; libxcb-*/libxkbcommon-x11-0/libx11-xcb1: Qt 6's xcb platform plugin;
# libdbus/fontconfig/freetype/glib + a font: QtGui. (See docs in README "Headless".)
APT_PKGS=(
  xvfb xauth
  libgl1-mesa-dri libglx-mesa0 libgl1 libegl1 libopengl0
  libxkbcommon0 libxkbcommon-x11-0 libx11-xcb1 libxcb1 libxcb-cursor0
  libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
  libxcb-render-util0 libxcb-shape0 libxcb-xfixes0 libxcb-xkb1
  libxcb-sync1 libxcb-shm0 libxcb-glx0
  libdbus-1-3 libfontconfig1 libfreetype6 libglib2.0-0 fonts-dejavu-core
)

apt_install() {   # apt_install PKG...: install what is not installed yet
  local missing=() sudo=""
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then sudo="sudo"; else
      echo "WARNING: not root and no sudo; cannot install: ${missing[*]}" >&2; return 0
    fi
  fi
  echo "== apt: installing ${#missing[@]} packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

if [ "${HINET_SKIP_APT:-0}" != "1" ]; then
  if command -v dpkg-query >/dev/null && command -v apt-get >/dev/null; then
    apt_install "${APT_PKGS[@]}"
  else
    echo "NOTE: not a Debian/Ubuntu system; install Xvfb and the Qt/OpenGL libraries yourself." >&2
  fi
fi

# ---------------------------------------------------------------- 2. .venv
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv with $("$PY" --version 2>&1)"
  if ! "$PY" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    echo "== python venv support missing; installing python3-venv"
    apt_install python3-venv
    "$PY" -m venv .venv
  fi
fi
VPY=.venv/bin/python
PIP=("$VPY" -m pip install -q --disable-pip-version-check)

# ---------------------------------------------------------------- 3. torch first
TORCH_SPEC="${HINET_TORCH_SPEC:-torch==2.13.0}"
TORCH_ARGS=()
[ -n "${HINET_TORCH_INDEX_URL:-}" ] && TORCH_ARGS+=(--index-url "$HINET_TORCH_INDEX_URL")
echo "== pip: $TORCH_SPEC ${TORCH_ARGS[*]}"
"${PIP[@]}" "${TORCH_ARGS[@]}" "$TORCH_SPEC"

# ---------------------------------------------------------------- 4. the package
TARGET="."
[ -n "$EXTRA" ] && TARGET=".[$EXTRA]"
EDITABLE="${HINET_EDITABLE:-}"
if [ -z "$EDITABLE" ]; then
  EDITABLE=$("$VPY" - <<'EOF' 2>/dev/null || echo 0
import json
from importlib import metadata
try:
    info = json.loads(metadata.distribution("napari-hinet").read_text("direct_url.json") or "{}")
except metadata.PackageNotFoundError:
    info = {}
print(1 if info.get("dir_info", {}).get("editable") else 0)
EOF
)
fi
if [ "$EDITABLE" = "1" ]; then
  echo "== pip: -e $TARGET (editable)"
  "${PIP[@]}" -e "$TARGET"
else
  echo "== pip: $TARGET"
  "${PIP[@]}" "$TARGET"
fi
"$VPY" -c "import torch, napari_hinet; print('   torch', torch.__version__, '| napari-hinet', napari_hinet.__version__)"
echo "== setup done in ${SECONDS}s (.venv at $(pwd)/.venv)"
