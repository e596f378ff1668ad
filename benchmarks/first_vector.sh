#!/usr/bin/env bash
# Seconds to the first vector: `llm2vec-rag encode one.txt` with the default model, cache warm,
# in a fresh process, RUNS times each:
#   A: the cache entry as built now (its bidirectionality proof recorded: no probe forward pass)
#   B: the same entry with the proof removed (the probe runs on every load, as before)
# Usage: bash benchmarks/first_vector.sh [RUNS]   (work folder: $WORKDIR, default out/first-vector)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
WORKDIR=${WORKDIR:-out/first-vector}
CLI=.venv/bin/llm2vec-rag
rm -rf "$WORKDIR" && mkdir -p "$WORKDIR"
echo "hello world" > "$WORKDIR/one.txt"
LLM2VEC_RAG_CACHE=$WORKDIR/cache-A $CLI encode "$WORKDIR/one.txt" -o "$WORKDIR/A.npy" 2>/dev/null
cp -r "$WORKDIR/cache-A" "$WORKDIR/cache-B"
entry=$(ls -d "$WORKDIR"/cache-B/fused/*/)
rm "${entry}bidirectional_proof.json"
.venv/bin/python - "${entry}llm2vec_rag_cache.json" <<'PY'
import json, sys
manifest = json.load(open(sys.argv[1]))
manifest["files"].pop("bidirectional_proof.json")
json.dump(manifest, open(sys.argv[1], "w"))
PY
echo "# mode seconds load-average"
for _ in $(seq "$RUNS"); do
  for mode in A B; do
    start=$(date +%s.%N)
    LLM2VEC_RAG_CACHE=$WORKDIR/cache-$mode $CLI encode "$WORKDIR/one.txt" \
      -o "$WORKDIR/$mode.npy" 2>/dev/null
    end=$(date +%s.%N)
    echo "$mode $(echo "$end - $start" | bc) $(cut -d' ' -f1 /proc/loadavg)"
  done
done
.venv/bin/python -c "import numpy as np; print('# vectors of A and B identical:', \
np.array_equal(np.load('$WORKDIR/A.npy'), np.load('$WORKDIR/B.npy')))"
