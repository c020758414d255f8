#!/usr/bin/env bash
# VNN-COMP interface: prepare_instance.sh v1 CATEGORY ONNX VNNLIB
# Checks that the model and the property exist and warms up the Python imports (torch,
# onnxruntime, planecut) so that the timed run_instance.sh does not pay for a cold file cache.
# Exits 0 when the instance can be run, 1 when a file is missing. Gzipped files are fine, and
# FILE stands for FILE.gz when only that exists (as run_instance.sh does; no unzip step).
set -euo pipefail

usage() { echo "usage: $0 v1 CATEGORY ONNX VNNLIB" >&2; exit 2; }
[ "$#" -eq 4 ] || usage
[ "$1" = "v1" ] || { echo "$0: unsupported interface version '$1' (expected v1)" >&2; exit 2; }
CATEGORY="$2"
ONNX="$3"
VNNLIB="$4"

PYTHON="${PLANECUT_PYTHON:-python3}"

for f in "$ONNX" "$VNNLIB"; do
    if [ ! -f "$f" ] && [ ! -f "$f.gz" ]; then
        echo "$0: $f: no such file" >&2
        exit 1
    fi
done

echo "preparing $CATEGORY: $ONNX $VNNLIB" >&2
"$PYTHON" -c "import torch, onnx, onnxruntime, planecut.verifier.api, planecut.vnnlib.parse" \
    || { echo "$0: planecut does not import with $PYTHON" >&2; exit 1; }
exit 0
