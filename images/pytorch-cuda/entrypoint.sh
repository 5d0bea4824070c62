#!/usr/bin/env bash
# Start JupyterLab (never without a token), or run any other command given.
#   lab                      JupyterLab on 0.0.0.0:8888 (token from JUPYTER_TOKEN, else a random one, printed)
#   serve model CONFIG ...   a model service (jupyter-flow serve model ...)
#   doctor [--require-gpu]   the GPU self-check
set -euo pipefail
case "${1:-lab}" in
  lab)
    shift || true
    if [ -z "${JUPYTER_TOKEN:-}" ]; then
      JUPYTER_TOKEN=$(python -c 'import secrets; print(secrets.token_hex(24))')
      export JUPYTER_TOKEN
      echo "JupyterLab token (set JUPYTER_TOKEN to choose one): ${JUPYTER_TOKEN}"
    fi
    python /opt/jupyter-flow/images/pytorch-cuda/gpu_check.py || true
    exec jupyter lab --ip=0.0.0.0 --port="${JUPYTER_PORT:-8888}" --no-browser \
      --IdentityProvider.token="${JUPYTER_TOKEN}" --ServerApp.root_dir="${JUPYTER_ROOT:-/work}" "$@"
    ;;
  serve|doctor|run|batch|validate|export)
    exec jupyter-flow "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
