#!/usr/bin/env bash
# The reference implementation (llm2vec 0.2.3, pins transformers 4.44.2) in its own
# environment, .venv-ref, used only by the parity tests and side-by-side benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-ref
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import llm2vec" 2>/dev/null; then
  exit 0
fi
python3 -m venv "$VENV"
# pip here warns about every configured local index it skips: keep that noise out of logs,
# but not pip's exit status (pipefail).
PIP="pip_quiet $VENV/bin/python -m pip --disable-pip-version-check -q"
pip_quiet() { "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }
$PIP install "${TORCH_SPEC:-torch==2.13.0}"
TORCH_VERSION=$("$VENV/bin/python" -c "import torch; print(torch.__version__.split('+')[0])")
CONSTRAINTS=$(mktemp)
echo "torch==$TORCH_VERSION" > "$CONSTRAINTS"
$PIP install -c "$CONSTRAINTS" llm2vec==0.2.3 transformers==4.44.2 gguf accelerate
rm -f "$CONSTRAINTS"
"$VENV/bin/python" -c "import llm2vec, transformers; print('reference env: llm2vec', transformers.__version__)"
