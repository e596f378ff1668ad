#!/usr/bin/env bash
# Install everything (scripts/bootstrap.sh), build the reference llm2vec environment for the
# parity tests unless SKIP_REFERENCE=1, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
if [ "${SKIP_REFERENCE:-0}" != "1" ]; then
  bash scripts/setup_reference_env.sh
fi
.venv/bin/ruff check .
bash scripts/lint_imports.sh
set +e
.venv/bin/python -m pytest -q -rs "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: treating as a failure" >&2
  exit 1
fi
exit "$rc"
