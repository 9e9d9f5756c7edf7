#!/usr/bin/env bash
# attnkit's GPU check in one call (about 8.5 minutes at most on one H100/H200; no network; the machine's own
# torch and triton). Writes JSON + markdown into OUT_DIR (≤ 8 files) and prints a one-screen summary; see
# gpu_check.py.
#
#   benchmarks/gpu_check.sh OUT_DIR            # on the GPU machine
#   benchmarks/gpu_check.sh OUT_DIR --dry-run  # same steps on CPU, tiny shapes, Triton's interpreter (CI)
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: $0 OUT_DIR [--dry-run]" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
# --no-deps: keep the machine's torch / triton; --no-build-isolation: no network for build requirements.
if ! "$PYTHON" -c "import attnkit.kernels.attention" 2>/dev/null || [ "${ATTNKIT_REINSTALL:-1}" = 1 ]; then
    "$PYTHON" -m pip install --quiet --no-deps --no-build-isolation -e . >&2
fi
exec "$PYTHON" benchmarks/gpu_check.py "$@"
