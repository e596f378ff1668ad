#!/usr/bin/env bash
# Real evaluation/training text, offline: gensim's test corpora (Lee news set with human
# similarity ratings, Lee background articles, a Wikipedia sample) from the gensim wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=data/gensim
[ -f "$DEST/lee.cor" ] && exit 0
TMP=$(mktemp -d)
python3 -m pip download -q --no-deps --only-binary=:all: gensim==4.4.0 -d "$TMP" 2>&1 \
  | { grep -v "^WARNING: Location" || true; }
mkdir -p "$DEST"
python3 - "$TMP" "$DEST" <<'PY'
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "gensim-*.whl"))[0]
wanted = ["lee.cor", "lee_background.cor", "similarities0-1.txt", "wordsim353.tsv",
          "simlex999.txt", "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"]
with zipfile.ZipFile(wheel) as z:
    for name in wanted:
        with z.open(f"gensim/test/test_data/{name}") as src, \
                open(os.path.join(sys.argv[2], name), "wb") as dst:
            dst.write(src.read())
PY
rm -rf "$TMP"
echo "gensim test data in $DEST"
