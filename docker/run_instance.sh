#!/usr/bin/env bash
# VNN-COMP interface: run_instance.sh v1 CATEGORY ONNX VNNLIB RESULTS TIMEOUT
# Verifies one instance with `planecut verify` and writes the VNN-COMP result file RESULTS.
#
# The configuration is chosen from CATEGORY (the benchmark's name):
#   1. docker/configs/CATEGORY.yaml, if such a file exists (per-benchmark tuning);
#   2. otherwise the preset that fits the benchmark family, verifier/presets/NAME.yaml:
#      acasxu* -> input_split; mnist*, eran* -> fully_connected;
#      oval*, cifar*, marabou*, verivital*, resnet* -> convolutional;
#   3. otherwise (e.g. test) no --config: planecut picks a preset from the model's shape.
# Environment: PLANECUT_PYTHON (default python3), PLANECUT_DEVICE (default auto),
# PLANECUT_DRY_RUN=1 prints the command instead of running it.
# Exits 0 when RESULTS was written (whatever the verdict), planecut's exit code otherwise.
set -euo pipefail

usage() { echo "usage: $0 v1 CATEGORY ONNX VNNLIB RESULTS TIMEOUT" >&2; exit 2; }
[ "$#" -eq 6 ] || usage
[ "$1" = "v1" ] || { echo "$0: unsupported interface version '$1' (expected v1)" >&2; exit 2; }
CATEGORY="$2"
ONNX="$3"
VNNLIB="$4"
RESULTS="$5"
TIMEOUT="$6"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PLANECUT_PYTHON:-python3}"

preset_for() {
    case "$1" in
        acasxu*|acas_xu*) echo input_split ;;
        mnist*|eran*) echo fully_connected ;;
        oval*|cifar*|marabou*|verivital*|resnet*) echo convolutional ;;
        *) echo "" ;;
    esac
}

CONFIG=""
if [ -f "$REPO/docker/configs/$CATEGORY.yaml" ]; then
    CONFIG="$REPO/docker/configs/$CATEGORY.yaml"
else
    PRESET="$(preset_for "$CATEGORY")"
    if [ -n "$PRESET" ] && [ -f "$REPO/verifier/presets/$PRESET.yaml" ]; then
        CONFIG="$REPO/verifier/presets/$PRESET.yaml"
    fi
fi

CMD=("$PYTHON" -m planecut verify "$ONNX" "$VNNLIB" --timeout "$TIMEOUT"
     --result-file "$RESULTS" --device "${PLANECUT_DEVICE:-auto}")
if [ -n "$CONFIG" ]; then
    CMD+=(--config "$CONFIG")
fi

if [ "${PLANECUT_DRY_RUN:-0}" = "1" ]; then
    printf '%s\n' "${CMD[*]}"
    exit 0
fi

rm -f "$RESULTS"
rc=0
"${CMD[@]}" || rc=$?
if [ -f "$RESULTS" ]; then
    exit 0
fi
echo "$0: planecut wrote no result file (exit code $rc)" >&2
if [ "$rc" -eq 0 ]; then
    rc=1
fi
exit "$rc"
