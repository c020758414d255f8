#!/usr/bin/env bash
# VNN-COMP interface: run_instance.sh v1 CATEGORY ONNX VNNLIB RESULTS TIMEOUT
# Verifies one instance with `planecut verify` and writes the VNN-COMP result file RESULTS.
#
# The configuration is planecut's own choice (`preset: auto`): it picks a preset from the
# model and the property (free input dimensions, activation kinds, size, spec rows; see
# auto_preset in verifier/config.py). CATEGORY (the benchmark's name) is only logged: nothing
# is chosen by name, so an unseen benchmark is handled like a known one.
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
# planecut reads gzipped files itself (.onnx.gz, .vnnlib.gz): no unzip step. VNN-COMP 2023
# names x.onnx where only x.onnx.gz is shipped; then the .gz file is passed on.
[ -e "$ONNX" ] || [ ! -f "$ONNX.gz" ] || ONNX="$ONNX.gz"
[ -e "$VNNLIB" ] || [ ! -f "$VNNLIB.gz" ] || VNNLIB="$VNNLIB.gz"

PYTHON="${PLANECUT_PYTHON:-python3}"

echo "$0: category $CATEGORY (not used to configure): $ONNX $VNNLIB" >&2
CMD=("$PYTHON" -m planecut verify "$ONNX" "$VNNLIB" --timeout "$TIMEOUT"
     --result-file "$RESULTS" --device "${PLANECUT_DEVICE:-auto}")

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
