#!/usr/bin/env bash
# Reproduce the bundled default domain model from scratch: set up (scripts/bootstrap.sh), then
# SmolLM2-135M-Instruct -> MNTP -> SimCSE on gensim's Wikipedia sample + Lee background
# articles with the mntp-cpu / simcse-cpu presets (~2 h on 2 CPU cores), then the Lee ablation.
# Outputs in out/default-model/: runs mntp/ and simcse/ (checkpoints, logs), bundle/ (the
# shipped float16 adapters), results.json. Add --bundle-to llm2vec_rag/models/smollm2-135m-llm2vec
# to replace the package's copy.
# Extra arguments go to examples/train_domain_model.py, e.g. --mntp max_steps=5 --simcse max_steps=5
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/python examples/train_domain_model.py "$@"
