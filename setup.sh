#!/usr/bin/env bash
# Set up mrsolve in ./.venv: the package with every extra, and the system libraries the
# napari (Qt) tests need under a virtual display. Used by the README and by .ci/run.
#   MRSOLVE_TORCH   torch requirement to install first (default: "torch", which brings the
#                   CUDA build on GPU machines; CI sets torch==2.13.0, a CPU build)
set -euo pipefail
cd "$(dirname "$0")"

qt_libs=(xvfb libgl1-mesa-dri libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0
  libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libegl1
  libdbus-1-3 libfontconfig1)
if ! command -v Xvfb >/dev/null 2>&1 || ! ldconfig -p | grep -q libxcb-cursor.so.0; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq "${qt_libs[@]}" >/dev/null
  else
    echo "note: the GUI tests need Xvfb and Qt's xcb libraries: apt-get install ${qt_libs[*]}" >&2
  fi
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "${MRSOLVE_TORCH:-torch}"
.venv/bin/python -m pip install -q -e ".[dev,distributed,gui]"
echo "mrsolve is set up in .venv (activate it with: . .venv/bin/activate)"
