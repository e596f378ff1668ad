#!/usr/bin/env bash
# The serving peer for benchmarks/bench_serve.py --peer infinity: infinity-emb in its own
# environment, .venv-infinity (it needs sentence-transformers < 4, so transformers < 5, and
# numpy < 2, none of which fit the project's own environment). Used only by that benchmark.
#
# torch is installed first and then held by a constraint: the machine's local CPU build of
# torch 2.13.0 (infinity-emb asks only torch >= 2.2.1); an unpinned torch would pull a CUDA
# build of several GB. TORCH_SPEC overrides it, as in setup_reference_env.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-infinity
INFINITY_VERSION=0.0.78
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import infinity_emb, sentence_transformers" 2>/dev/null \
   && [ -x "$VENV/bin/infinity_emb" ]; then
  exit 0
fi
python3 -m venv "$VENV"
# pip here warns about every configured local index it skips: keep that noise out of logs,
# but not pip's exit status (pipefail).
PIP="pip_quiet $VENV/bin/python -m pip --disable-pip-version-check -q"
pip_quiet() { "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }
$PIP install "${TORCH_SPEC:-torch==2.13.0}"
TORCH_VERSION=$("$VENV/bin/python" -W ignore -c "import torch; print(torch.__version__.split('+')[0])")
CONSTRAINTS=$(mktemp)
trap 'rm -f "$CONSTRAINTS"' EXIT
printf 'torch==%s\ntransformers<5\n' "$TORCH_VERSION" > "$CONSTRAINTS"
# [torch]: the PyTorch engine (sentence-transformers); [server]: the CLI and REST API.
$PIP install -c "$CONSTRAINTS" "infinity-emb[server,torch]==$INFINITY_VERSION" \
  transformers==4.57.6 sentence-transformers==3.4.1
"$VENV/bin/python" -c "import infinity_emb, torch, transformers, sentence_transformers as st; print('infinity env: infinity-emb', infinity_emb.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__, 'sentence-transformers', st.__version__)"
