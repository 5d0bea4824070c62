#!/usr/bin/env bash
# Run the test suite in .venv. pytest's exit code 5 (no tests collected) is a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p test-artifacts
# frontend unit tests of the JupyterLab extension
(cd labextension && ../.venv/bin/jlpm install --immutable >/dev/null && ../.venv/bin/jlpm test) || exit 1
# lint and types: the next person inherits a clean baseline
.venv/bin/ruff check jupyter_flow examples tests benchmarks || exit 1
.venv/bin/mypy || exit 1
.venv/bin/python -m pytest -ra "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "no tests were collected: failing" >&2
  exit 1
fi
exit "$rc"
