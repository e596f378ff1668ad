#!/usr/bin/env bash
# Mine the supervised training pairs from the training sources only: Debian's dictionaries
# (FOLDOC, GCIDE, Jargon File, WordNet), the Linux man pages and gensim's Wikipedia sample.
# NOT the Debian Reference (the held-out set, benchmarks/build_heldout.py) and never Python's
# documentation. Hard negatives and the consistency filter come from the bundled default model.
#   MAX_PER_DATASET=600 (default) took ~10 min on 2 CPU cores; extra arguments go to
#   `llm2vec-rag train pairs` (e.g. --model M --adapter A to mine with another encoder).
# Output: data/pairs/pairs.jsonl and data/pairs/pairs.report.json (counts per source/filter).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/fetch_pairs_data.sh >/dev/null
OUT=${OUT:-data/pairs/pairs.jsonl}
mkdir -p "$(dirname "$OUT")"
.venv/bin/llm2vec-rag train pairs \
  data/debian/usr/share/dictd data/debian/usr/share/man \
  data/gensim/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2 \
  -o "$OUT" --report "${OUT%.jsonl}.report.json" \
  --max-per-dataset "${MAX_PER_DATASET:-600}" --max-words 96 --max-length 128 \
  --num-negatives 1 --consistency-k 10 --batch-size 64 --device cpu "$@" >/dev/null
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(json.dumps(
  {'written': r['written'], 'datasets': r['datasets'], 'seconds': r['seconds']}, indent=1))" \
  "${OUT%.jsonl}.report.json"
