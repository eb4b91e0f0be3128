#!/usr/bin/env bash
# One command for a machine with GPUs: install what is missing, prepare the data, run
# `runner gpu-check` (about 8 minutes on one H100; every part has a time cap).
#
#   bash benchmarks/gpu_check.sh                       # the check; report under $PRETRAINBENCH_HOME/gpu-check/
#   bash benchmarks/gpu_check.sh --out DIR             # any `runner gpu-check` option is passed on
#   bash benchmarks/gpu_check.sh --record-reference    # the first GPU run: store the loss curve
#   TORCH_INDEX_URL=<a PyTorch CUDA wheel index> bash benchmarks/gpu_check.sh
#       (pyproject's torch from PyPI is the CUDA 13.0 build, which needs driver >= 580; an older
#       driver wants the same release from a CUDA 12.x index)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if ! "$PY" -c "import torch, runner" >/dev/null 2>&1; then
  echo "gpu_check: installing the project with its training extra into .venv …" >&2
  "$PY" -m venv .venv
  PY=$PWD/.venv/bin/python
  "$PY" -m pip install --quiet --upgrade pip
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    torch_pin=$(sed -n 's/.*"torch==\([^"]*\)".*/\1/p' pyproject.toml)
    "$PY" -m pip install --quiet "torch==${torch_pin}" --index-url "$TORCH_INDEX_URL"
  fi
  "$PY" -m pip install --quiet -e '.[train]'
fi

# the tokenizer and the offline corpus (skips what is already valid); without network the
# check still runs and its loss-curve part says what is missing
"$PY" -m runner.cli setup || echo "gpu_check: runner setup failed; continuing" >&2

exec "$PY" -m runner.cli gpu-check "$@"
