#!/usr/bin/env bash
# Create .venv and install crisiswatch with its development tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
echo "==> installing (CPU-only PyTorch first, so nothing pulls a CUDA build)"
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e '.[dev]'
echo "==> ready: .venv/bin/crisiswatch --help"
