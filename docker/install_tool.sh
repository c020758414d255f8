#!/usr/bin/env bash
# VNN-COMP interface: install_tool.sh v1
# Installs planecut (with its MIP extra) from this repository into the Python that
# PLANECUT_PYTHON names (default: python3). Run once per machine/image; idempotent.
set -euo pipefail

usage() { echo "usage: $0 v1" >&2; exit 2; }
[ "$#" -eq 1 ] || usage
[ "$1" = "v1" ] || { echo "$0: unsupported interface version '$1' (expected v1)" >&2; exit 2; }

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PLANECUT_PYTHON:-python3}"

echo "installing planecut from $REPO with $PYTHON" >&2
"$PYTHON" -m pip install --upgrade pip
"$PYTHON" -m pip install "${REPO}[mip]"
"$PYTHON" -m planecut --version
