#!/usr/bin/env bash
# Seconds to the first vector, checkout against checkout: the second `llm2vec-rag encode one.txt`
# with the default model (its cache entry warm), in a fresh process, RUNS rounds; each round
# runs every variant once, in the order given, so a change in the machine's load falls on all.
#
# Usage: bash benchmarks/first_vector_trees.sh RUNS LABEL=TREE[:VAR=VALUE] ...
#   TREE: a checkout with its own .venv (the package installed editable from that checkout);
#   VAR=VALUE: one environment variable for that variant.
# Example (before = main's checkout in ../main):
#   bash benchmarks/first_vector_trees.sh 5 before=../main after-active=.:OMP_WAIT_POLICY=ACTIVE after=.
# Prints one line per run: label, wall seconds, CPU seconds (user + system), 1-minute load
# average at the end of the run; then the median wall and CPU per label, and whether every
# variant wrote the same vectors. Work folder: $WORKDIR (default out/first-vector-trees).
# INPUT=file encodes that file (one text per line) instead of the one line "hello world".
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=$1
shift
WORKDIR=${WORKDIR:-out/first-vector-trees}
rm -rf "$WORKDIR" && mkdir -p "$WORKDIR"
if [[ -n "${INPUT:-}" ]]; then cp "$INPUT" "$WORKDIR/one.txt"; else echo "hello world" > "$WORKDIR/one.txt"; fi
WORKDIR=$(cd "$WORKDIR" && pwd)

declare -a LABELS TREES ENVS
for spec in "$@"; do
  label=${spec%%=*}
  rest=${spec#*=}
  tree=${rest%%:*}
  env=""
  [[ "$rest" == *:* ]] && env=${rest#*:}
  LABELS+=("$label")
  TREES+=("$(cd "$tree" && pwd)")
  ENVS+=("$env")
done

run() {  # run INDEX: one encode of one.txt by variant INDEX; prints "wall cpu"
  local i=$1
  local tree=${TREES[$i]} label=${LABELS[$i]}
  (cd "$WORKDIR" && env ${ENVS[$i]} LLM2VEC_RAG_CACHE="$WORKDIR/cache-$label" \
    /usr/bin/time -f "%e %U %S" -o "$WORKDIR/time-$label" \
    "$tree/.venv/bin/llm2vec-rag" encode one.txt -o "vectors-$label.npy" 2>/dev/null)
  awk '{printf "%s %.2f", $1, $2 + $3}' "$WORKDIR/time-$label"
}

for i in "${!LABELS[@]}"; do run "$i" > /dev/null; done  # build each variant's cache entry
echo "# label wall_s cpu_s load_average"
for _ in $(seq "$RUNS"); do
  for i in "${!LABELS[@]}"; do
    echo "${LABELS[$i]} $(run "$i") $(cut -d' ' -f1 /proc/loadavg)"
  done
done | tee "$WORKDIR/runs.txt"
echo "# medians: label wall_s cpu_s"
for label in "${LABELS[@]}"; do
  wall=$(awk -v l="$label" '$1 == l {print $2}' "$WORKDIR/runs.txt" | sort -n | \
    awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')
  cpu=$(awk -v l="$label" '$1 == l {print $3}' "$WORKDIR/runs.txt" | sort -n | \
    awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')
  echo "$label $wall $cpu"
done
"${TREES[0]}/.venv/bin/python" - "$WORKDIR" "${LABELS[@]}" <<'PY'
import sys
import numpy as np
folder, labels = sys.argv[1], sys.argv[2:]
vectors = [np.load(f"{folder}/vectors-{label}.npy") for label in labels]
print("# same vectors from every variant:", all(np.array_equal(vectors[0], v) for v in vectors))
PY
