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
stamp=.venv/.installed-$( (cat pyproject.toml examples/pyproject.toml; echo "$TORCH_SPEC $EXTRAS") | sha256sum | cut -c1-16)
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv $VENV_ARGS .venv
fi
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet "$TORCH_SPEC"
  .venv/bin/python -m pip install --quiet -e ".[$EXTRAS]"
  # the example services, models and samples the notebooks and tests use (not in the package)
  .venv/bin/python -m pip install --quiet --no-deps -e examples
  rm -f .venv/.installed-*
  touch "$stamp"
fi
# The JupyterLab extension: built by the install above; built again here when its sources
# changed since (a pull, an edit), and the environment then serves that build.
ext_hash=$(cat labextension/package.json labextension/yarn.lock $(find labextension/src labextension/style labextension/schema -type f | sort) | sha256sum | cut -c1-16)
ext_stamp=.venv/.labextension-$ext_hash
if [ ! -f "$ext_stamp" ]; then
  if ls .venv/.labextension-* >/dev/null 2>&1; then
    (cd labextension && PATH="$PWD/../.venv/bin:$PATH" jlpm install --immutable >/dev/null && PATH="$PWD/../.venv/bin:$PATH" jlpm build >/dev/null)
    served=$(.venv/bin/python -c "import sys; print(sys.prefix)")/share/jupyter/labextensions/jupyter-flow
    rm -rf "$served"
    ln -s "$PWD/jupyter_flow/labextension" "$served"
  fi
  rm -f .venv/.labextension-*
  touch "$ext_stamp"
fi
