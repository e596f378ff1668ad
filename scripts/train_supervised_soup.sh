#!/usr/bin/env bash
# One command for the bundled supervised adapter: two supervised runs from the same MNTP +
# SimCSE model (scripts/train_supervised_model.sh), summed into one adapter (a model soup,
# `llm2vec-rag train soup`: 1 x the first run + 0.7 x the second), then Lee and the two held-out
# retrieval sets (scripts/eval_model.sh).
#   run-200: pairs judged by MNTP + SimCSE (MINER=bundled), no symmetric
#     pairs, 200 steps: Lee 0.5995, retrieval 0.445 / 0.249 (67 min of training in bf16)
#   run-360: pairs judged by all-MiniLM-L6-v2, symmetric pairs in, 360
#     steps: retrieval 0.626 / 0.506 but Lee 0.5655 (112 min)
#   soup: Lee 0.606, retrieval 0.623 / 0.490 (benchmarks/results/issue14/NOTES.md, "A soup of two runs")
#
#   BUNDLE_TO=llm2vec_rag/models/smollm2-135m-llm2vec/supervised \
#     bash scripts/train_supervised_soup.sh bf16=true     # ~3 h on 2 CPU cores
#
# Re-running resumes each run from its last checkpoint, and skips mining when the pairs exist.
# Environment (defaults): OUT=out/supervised-soup   WEIGHTS="1 0.7"   BUNDLE_TO (unset)
# Extra arguments: key=value overrides for both runs' supervised stage.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/supervised-soup}
read -r -a WEIGHTS <<< "${WEIGHTS:-1 0.7}"
RUN1=$OUT/run-200 RUN2=$OUT/run-360
OUT=$RUN1 PAIRS=$RUN1/pairs.jsonl MINER=bundled MINE_ARGS=--dtype=bfloat16 SYMMETRIC_PAIRS=0 \
  MAX_STEPS=200 SKIP_EVAL=1 bash scripts/train_supervised_model.sh "$@"
OUT=$RUN2 PAIRS=$RUN2/pairs.jsonl MINER=minilm SYMMETRIC_PAIRS=1 MAX_STEPS=360 SKIP_EVAL=1 \
  SKIP_BOOTSTRAP=1 bash scripts/train_supervised_model.sh "$@"
GGUF=$(.venv/bin/llm2vec-rag default-model gguf)
read -r MNTP SIMCSE < <(.venv/bin/llm2vec-rag default-model unsupervised-adapters)
.venv/bin/llm2vec-rag train soup --model "$GGUF" --adapter "$MNTP" --adapter "$SIMCSE" \
  --device cpu "$RUN1/supervised" "$RUN2/supervised" --weights "${WEIGHTS[@]}" \
  -o "$OUT/soup" --adapter-dtype float16
RESULTS=$OUT/results.jsonl
: > "$RESULTS"
RESULTS=$RESULTS SETTING=soup bash scripts/eval_model.sh --adapter "$MNTP" --adapter "$SIMCSE" \
  --adapter "$OUT/soup"
if [ -n "${BUNDLE_TO:-}" ]; then  # the shipped form: the base named by file name, no PEFT card
  .venv/bin/llm2vec-rag train bundle "$OUT/soup" -o "$BUNDLE_TO" --base "$GGUF" \
    --keep-instruction
fi
