#!/usr/bin/env bash
# One supervised run on top of the default model: SmolLM2-135M-Instruct -> MNTP -> SimCSE ->
# supervised contrastive training on pairs mined from Debian's dictionaries, the Linux man
# pages, gensim's Wikipedia sample and the Lee background articles (judged by
# all-MiniLM-L6-v2: scripts/mine_pairs.sh); then Lee and the two held-out retrieval sets
# (the Debian Reference and the Bash manual, never trained on) before and after, with and
# without the query instruction.
#
#   bash scripts/train_supervised_model.sh bf16=true     # 3 min of mining, 360 steps at
#     15-20 s a step in bf16 on 2 AMD EPYC cores (112 min), ~15 min eval: Lee 0.5655,
#     held-out nDCG@10 0.626 / 0.506 (the second run of the bundled soup)
#   MINER=bundled MINE_ARGS=--dtype=bfloat16 SYMMETRIC_PAIRS=0 MAX_STEPS=200 \
#     bash scripts/train_supervised_model.sh bf16=true     # the soup's first run (Lee 0.5995)
#   The bundled adapter is the soup of both: scripts/train_supervised_soup.sh.
#   MAX_STEPS=2 SAVE_STEPS=1 SKIP_EVAL=1 bash scripts/train_supervised_model.sh   # smoke run
#
# Re-running resumes the supervised stage from its last checkpoint (every SAVE_STEPS steps).
# Environment (defaults):
#   OUT=out/supervised-model   MAX_STEPS=360   SAVE_STEPS=40
#   PAIRS=data/pairs/pairs.jsonl, mined first when missing (scripts/mine_pairs.sh with
#     MAX_PER_DATASET=2000, MINER=minilm and MINE_ARGS as extra arguments: 9,940 pairs,
#     1,169 of them symmetric)
#   FROM_SCRATCH=0: start from the bundled MNTP + SimCSE adapters (themselves trained by
#     scripts/train_default_model.sh, ~2 h); FROM_SCRATCH=1 retrains those first.
#   BUNDLE_TO: also write the shipped form (float16, no checkpoints or machine paths) there.
#   QUERY_INSTRUCTION: the model's default query instruction, written into the adapter.
#   PAIR_INSTRUCTIONS=single: every asymmetric pair trains with QUERY_INSTRUCTION (the
#     instruction users get by default; symmetric pairs, document halves, keep none); =mined
#     keeps the per-kind instructions the pairs were mined with (MINER=bundled writes them).
#   SYMMETRIC_PAIRS=1: train on the symmetric pairs too (halves of the Lee background
#     articles, consecutive Wikipedia passages); =0 leaves them out.
#   SKIP_BOOTSTRAP=1, SKIP_EVAL=1.   Extra arguments: key=value overrides for the stage.
# Outputs in $OUT: supervised/ (adapter, checkpoint-*, training_log.csv, loss_curve.png),
# results.jsonl (one JSON line per evaluation).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/supervised-model}
PAIRS=${PAIRS:-data/pairs/pairs.jsonl}
CLI=.venv/bin/llm2vec-rag
[ "${SKIP_BOOTSTRAP:-0}" = 1 ] || bash scripts/bootstrap.sh
QUERY_INSTRUCTION=${QUERY_INSTRUCTION:-$($CLI default-model query-instruction)}
export QUERY_INSTRUCTION  # the evaluation (scripts/eval_model.sh) uses the one trained with
bash scripts/fetch_pairs_data.sh >/dev/null
# shellcheck disable=SC2086  # MINE_ARGS: several arguments
[ -f "$PAIRS" ] || OUT="$PAIRS" MAX_PER_DATASET=${MAX_PER_DATASET:-2000} \
  bash scripts/mine_pairs.sh ${MINE_ARGS:-}
mkdir -p "$OUT"
GGUF=$($CLI default-model gguf)
if [ "${FROM_SCRATCH:-0}" = 1 ]; then
  SKIP_BOOTSTRAP=1 .venv/bin/python examples/train_domain_model.py --out "$OUT/unsupervised" \
    --skip-eval
  MNTP=$OUT/unsupervised/bundle/mntp SIMCSE=$OUT/unsupervised/bundle/simcse
else
  read -r MNTP SIMCSE < <($CLI default-model unsupervised-adapters)
fi
TRAIN_PAIRS=$OUT/pairs-train.jsonl
SELECT=(--instructions "${PAIR_INSTRUCTIONS:-single}")
[ "${SYMMETRIC_PAIRS:-1}" = 1 ] || SELECT+=(--no-symmetric)
$CLI train select-pairs "$PAIRS" -o "$TRAIN_PAIRS" "${SELECT[@]}"
$CLI train supervised --config supervised-cpu "model=$GGUF" "adapters=[$MNTP, $SIMCSE]" \
  "data=[$TRAIN_PAIRS]" "output_dir=$OUT/supervised" "max_steps=${MAX_STEPS:-360}" \
  "save_steps=${SAVE_STEPS:-40}" save_total_limit=5 logging_steps=5 report_to=none \
  adapter_dtype=float16 "query_instruction=$QUERY_INSTRUCTION" "$@"
if [ -n "${BUNDLE_TO:-}" ]; then
  $CLI train bundle "$OUT/supervised" -o "$BUNDLE_TO" --base "$GGUF" \
    --query-instruction "$QUERY_INSTRUCTION"
fi
[ "${SKIP_EVAL:-0}" = 1 ] && exit 0
RESULTS=$OUT/results.jsonl
: > "$RESULTS"
RESULTS=$RESULTS SETTING=before bash scripts/eval_model.sh --adapter "$MNTP" --adapter "$SIMCSE"
RESULTS=$RESULTS SETTING=after bash scripts/eval_model.sh --adapter "$MNTP" --adapter "$SIMCSE" \
  --adapter "$OUT/supervised"
