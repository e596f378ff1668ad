#!/usr/bin/env bash
# WordNet 3.0 (Debian's wordnet-base: data.noun/verb/adj/adv with example sentences, *.exc),
# unpacked without root into data/debian/usr/share/wordnet, for `llm2vec-rag eval --word-level`
# (llm2vec_rag.training.wordnet). Add debian-reference-en for benchmarks/late_chunking.py.
set -euo pipefail
cd "$(dirname "$0")/.."
exec bash scripts/fetch_pairs_data.sh wordnet-base "$@"
