#!/usr/bin/env bash
# Installs everything latent-vla needs on a fresh Debian/Ubuntu machine, into ./.venv.
# System: FFmpeg (LeRobot's video decoding), Mesa EGL (headless MuJoCo rendering), Chromium (report screenshots).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
if command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends \
    ffmpeg libegl1 libegl-mesa0 libgl1-mesa-dri libgles2 chromium >/dev/null
fi
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"latent-vla needs Python 3.11, found {sys.version}"'
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
echo "latent-vla installed in $(pwd)/.venv"
