#!/usr/bin/env bash
# The main job end to end on a fresh machine: install everything, then index real news
# articles into the embedded Qdrant store with SmolLM2-135M as an LLM2Vec encoder and
# answer queries. Extra arguments go to examples/rag_demo.py (e.g. --limit 300).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/python examples/rag_demo.py "$@"
