#!/usr/bin/env bash
# Create .venv and install crisiswatch with its development tools. Safe to run again: when
# pyproject.toml has not changed since the last install, it does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.crisiswatch-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && .venv/bin/python -c 'import api.cli' 2>/dev/null; then
  echo "==> .venv is up to date with pyproject.toml"
  exit 0
fi
echo "==> installing (no PyTorch: the service runs its models on ONNX Runtime)"
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'
echo "$want" > "$stamp"
echo "==> ready: .venv/bin/crisiswatch --help"
