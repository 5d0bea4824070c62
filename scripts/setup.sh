#!/usr/bin/env bash
# Create .venv and install jupyter-flow with every extra. Safe to run again: it only
# reinstalls when pyproject.toml changed. TORCH_SPEC picks the torch build
# (default torch==2.13.0, the CPU build these machines keep on disk).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet "$TORCH_SPEC"
  .venv/bin/python -m pip install --quiet -e '.[all,test]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
