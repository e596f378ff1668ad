#!/usr/bin/env bash
# Text with structure for `llm2vec-rag train pairs`, offline and without root: Debian's
# dictionaries (dictd: FOLDOC, GCIDE, the Jargon File, WordNet), the Linux man pages and the
# Debian Reference, unpacked with dpkg-deb into data/debian/usr/share/... Plus gensim's
# Wikipedia sample (scripts/fetch_data.sh). Python's documentation (python3.*-doc) is NOT
# fetched: it is reserved for held-out evaluation and must not be used for training or tuning.
#   wordnet: its data ships in wordnet-base; dict-wn is the same WordNet 3.0 as a dictd database.
#   debian-reference-en, bash-doc (the Bash Reference Manual) and debian-faq: only for the
#   held-out retrieval sets (benchmarks/build_heldout.py), never for training.
#   perl-doc (Perl's manual pages as POD: the Perl FAQ's questions and answers, tutorials)
#   unpacks into data/perl-doc, apart, so that its man pages stay out of the man-page source.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=data/debian
PACKAGES=(dict-foldoc dict-gcide dict-jargon dict-wn wordnet-base manpages manpages-dev
          debian-reference-en bash-doc debian-faq perl-doc)
# The argument `faq` fetches instead the documentation of software whose FAQ is a Markdown or
# reStructuredText file with one question per heading (SOURCES=faq scripts/mine_pairs.sh),
# into data/faq. None is documentation of Python or of a Python library.
FAQ_PACKAGES=(apt-listbugs afl++-doc alot-doc borgbackup-doc btrbk ceres-solver-doc
              charliecloud-doc clang-16-doc copyq-doc emscripten-doc glances-doc highway-doc
              ironic-doc khal-doc kitty-doc llvm-16-doc lmod-doc mercurial-evolve
              nextcloud-desktop-doc phpmyadmin pocl-doc puppetdb-doc rmlint-doc supervisor-doc
              ycm-cmake-modules zoneminder-doc)
# Package names as arguments fetch only those (scripts/fetch_wordnet.sh: wordnet-base).
if [ "${1:-}" = faq ]; then PACKAGES=("${FAQ_PACKAGES[@]}"); DEST=data/faq
elif [ $# -gt 0 ]; then PACKAGES=("$@"); fi
bash scripts/fetch_data.sh
# .complete lists the .deb files unpacked so far: fetch only the packages it lacks.
MISSING=()
for p in "${PACKAGES[@]}"; do
  grep -q "^${p}_" "$DEST/.complete" 2>/dev/null || MISSING+=("$p")
done
if [ ${#MISSING[@]} = 0 ]; then echo "Debian text already in $DEST"; exit 0; fi
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null \
  || { echo "needs apt-get and dpkg-deb (a Debian/Ubuntu system)" >&2; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && apt-get download "${MISSING[@]}") \
  || { echo "apt-get download failed: run 'apt-get update' (as root) or check the names" >&2
       exit 1; }
mkdir -p "$DEST"
for deb in "$TMP"/*.deb; do
  case $(basename "$deb") in
    perl-doc_*) dpkg-deb -x "$deb" data/perl-doc ;;
    *) dpkg-deb -x "$deb" "$DEST" ;;
  esac
done
ls "$TMP"/*.deb | xargs -n1 basename >> "$DEST/.complete"
[ "$DEST" = data/faq ] && { du -sh "$DEST"; exit 0; }
du -sh "$DEST/usr/share/dictd" "$DEST/usr/share/man" "$DEST/usr/share/debian-reference"
