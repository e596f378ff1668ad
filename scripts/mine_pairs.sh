#!/usr/bin/env bash
# Mine the supervised training pairs from the training sources only: Debian's dictionaries
# (FOLDOC, GCIDE, Jargon File, WordNet), the Linux man pages, gensim's Wikipedia sample (titles,
# sections and consecutive passages) and the halves of gensim's 300 Lee background news
# articles (lee_background.cor, the corpus the MNTP and SimCSE stages train on; never lee.cor,
# the 50 documents of the Lee evaluation).
# NOT the Debian Reference (the held-out set, benchmarks/build_heldout.py) and never Python's
# documentation. Hard negatives and the consistency filter come from the bundled MNTP + SimCSE
# adapters (the model the supervised stage starts from; MINER_ARGS="--model M --adapter A"
# mines with another encoder).
#   MAX_PER_DATASET=600 by default; 2000 with --dtype bfloat16 (train_supervised_model.sh): 3,830
#   pairs in 19.5 min on 2 CPU cores, 919 of them symmetric (206 Lee background halves, 713
#   Wikipedia passages); without those two sources (the bundled model's pairs) 2,908 in 4.5
#   min. Extra arguments go to `llm2vec-rag train pairs`.
# Output: data/pairs/pairs.jsonl and data/pairs/pairs.report.json (counts per source/filter).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/fetch_pairs_data.sh >/dev/null
OUT=${OUT:-data/pairs/pairs.jsonl}
mkdir -p "$(dirname "$OUT")"
if [ -n "${MINER_ARGS:-}" ]; then
  read -r -a MINER <<< "$MINER_ARGS"
else  # one argument per line: paths with spaces stay whole
  mapfile -t MINER < <(.venv/bin/python -c "from llm2vec_rag.default_model import \
UNSUPERVISED_ADAPTERS as A, smollm2_gguf; print('--model', smollm2_gguf(), \
*(f'--adapter\n{a}' for a in A), sep='\n')")
fi
.venv/bin/llm2vec-rag train pairs "${MINER[@]}" \
  data/debian/usr/share/dictd data/debian/usr/share/man \
  data/gensim/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2 \
  data/gensim/lee_background.cor \
  -o "$OUT" --report "${OUT%.jsonl}.report.json" \
  --max-per-dataset "${MAX_PER_DATASET:-600}" --max-words 96 --max-length 128 \
  --num-negatives 1 --consistency-k 10 --batch-size 64 --device cpu "$@" >/dev/null
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(json.dumps(
  {'written': r['written'], 'datasets': r['datasets'], 'seconds': r['seconds']}, indent=1))" \
  "${OUT%.jsonl}.report.json"
