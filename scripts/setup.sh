#!/usr/bin/env bash
# Create .venv and install jupyter-flow with every extra. Safe to run again: it only
# reinstalls when pyproject.toml changed. Settings (environment variables):
#   TORCH_SPEC  the torch build (default torch==2.13.0, the CPU build these machines keep on disk)
#   EXTRAS      the extras to install (default all,test)
#   VENV_ARGS   extra arguments for `python -m venv` (the image uses --system-site-packages
#               to keep the CUDA torch of its base image)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
EXTRAS=${EXTRAS:-all,test}
VENV_ARGS=${VENV_ARGS:-}
stamp=.venv/.installed-$( (cat pyproject.toml; echo "$TORCH_SPEC $EXTRAS") | sha256sum | cut -c1-16)
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv $VENV_ARGS .venv
fi
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet "$TORCH_SPEC"
  .venv/bin/python -m pip install --quiet -e ".[$EXTRAS]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
