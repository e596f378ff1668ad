#!/usr/bin/env bash
# Lee similarity and the three held-out retrieval sets (the Debian Reference, the Bash manual
# and the Debian FAQ's questions, never trained on; built here when missing) for SmolLM2-135M
# plus the adapters given, with the model's query instruction: one JSON line each, labelled
# with SETTING, appended to RESULTS and printed.
#   RESULTS=out/x/results.jsonl SETTING=soup bash scripts/eval_model.sh --adapter A --adapter B
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS=${RESULTS:?RESULTS=file.jsonl} SETTING=${SETTING:?SETTING=label}
QUERY_INSTRUCTION=${QUERY_INSTRUCTION:-$(.venv/bin/python -c \
  "from llm2vec_rag.default_model import QUERY_INSTRUCTION as Q; print(Q)")}
HELDOUT=(data/heldout/debian-reference data/heldout/bash-reference data/heldout/debian-faq)
CLI=.venv/bin/llm2vec-rag
.venv/bin/python benchmarks/build_heldout.py --ensure "${HELDOUT[@]}"
GGUF=$(.venv/bin/python -c "from llm2vec_rag.default_model import smollm2_gguf; print(smollm2_gguf())")
mkdir -p "$(dirname "$RESULTS")"
$CLI eval --model "$GGUF" "$@" --device cpu --batch-size 16 \
  | sed "s/^{/{\"setting\": \"$SETTING\", /" | tee -a "$RESULTS"
for heldout in "${HELDOUT[@]}"; do
  $CLI eval --beir "$heldout" --instruction "$QUERY_INSTRUCTION" --model "$GGUF" "$@" \
    --device cpu --batch-size 16 | sed "s/^{/{\"setting\": \"$SETTING\", /" | tee -a "$RESULTS"
done
