"""Build a held-out retrieval set (BEIR format) from a manual nothing trains on.

Three sources, all fetched by ``scripts/fetch_pairs_data.sh``:

- the Debian Reference (``debian-reference-en``, plain text): the main held-out set;
- the Bash Reference Manual (``bash-doc``, Texinfo HTML): a second domain, the reference
  manual of a programming language (the Debian Reference is a system administration guide),
  with long sections (532 words on average: most are cut at the 512-token limit);
- the Debian FAQ (``debian-faq``, plain text like the Debian Reference): questions ("How do I
  report a bug in Debian?") -> the paragraphs that answer them, the shape of a technical
  question-answering set.

Why the Debian Reference: nothing trains or tunes on it. The training sources are dictionaries
(FOLDOC, GCIDE, the Jargon File, WordNet), the Linux man pages and gensim's Wikipedia sample;
the Debian Reference is a separate book (Osamu Aoki's system administration guide for
Debian) whose text appears in none of them (checked: ``--check-overlap``), while its topic
(using a Debian system) is close enough to the man pages to ask for domain transfer.

Queries are the headings of its numbered sections ("Using SMART to predict hard disk
failure"), each relevant to its own section's text (score 1). Every section with at least
``--min-words`` words is a document, its title the chapter's ("System tips"), never the
heading itself. Headings that occur twice are not queries (they would have two answers).

The Bash manual is cut the same way: every section, subsection and subsubsection heading
("Looping Constructs") is a query for its own text, titled with its chapter ("Basic Shell
Features"); navigation lines, the table of contents, the licence and the indexes are left out.
Bash's own man page is not in the ``manpages`` package, so it is not in the training pairs.

    python benchmarks/build_heldout.py --ensure data/heldout/debian-reference \
        data/heldout/bash-reference data/heldout/debian-faq   # each from its recipe
    python benchmarks/build_heldout.py            # -> data/heldout/debian-reference/
    python benchmarks/build_heldout.py --source data/debian/usr/share/doc/bash/bashref.html \
        --out data/heldout/bash-reference
    python benchmarks/build_heldout.py --join-wrapped-headings --questions-only \
        --source data/debian/usr/share/doc/debian/FAQ/debian-faq.en.txt.gz \
        --out data/heldout/debian-faq
    llm2vec-rag eval --beir data/heldout/debian-reference
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import sys
from collections import Counter
from html.parser import HTMLParser

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ROOT  # noqa: E402

SOURCE = "data/debian/usr/share/debian-reference/debian-reference.en.txt.gz"
# The named sets: folder name -> (source under the checkout, build options). ``ensure``
# builds a missing one (scripts/eval_model.sh, benchmarks/gate.py and the benchmarks).
RECIPES = {
    "debian-reference": (SOURCE, {}),
    "bash-reference": ("data/debian/usr/share/doc/bash/bashref.html", {}),
    "debian-faq": ("data/debian/usr/share/doc/debian/FAQ/debian-faq.en.txt.gz",
                   {"join_wrapped": True, "questions_only": True}),
}
HEADING = re.compile(r"^((?:\d+|[A-Z])(?:\.\d+)+)\. (\S.*)$")
CHAPTER = re.compile(r"^(?:Chapter \d+|Appendix [A-Z])\. (\S.*)$")


def sections(path: str, join_wrapped: bool = False) -> list[dict]:
    """[{"id", "heading", "chapter", "text"}] in book order, tables and the TOC left out.
    ``join_wrapped``: a heading's unindented continuation lines belong to it (the Debian
    FAQ's questions wrap at 70 columns; the Debian Reference set was built without this, so
    4 of its 410 headings end at their line's end and its scores stay comparable)."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = f.read().replace("\xa0", " ").split("\n")
    start = next(i for i, line in enumerate(lines) if CHAPTER.match(line))
    out, chapter, current = [], "", None
    for line in lines[start:]:
        chap, head = CHAPTER.match(line), HEADING.match(line)
        if (join_wrapped and current is not None and not current["lines"] and line.strip()
                and not line[:1].isspace() and not chap and not head):
            current["heading"] += " " + line.strip()
            continue
        if chap or head:
            if current:
                out.append(current)
            current = None
            if chap:
                chapter = chap.group(1).strip()
            else:
                current = {"id": head.group(1), "heading": head.group(2).strip(),
                           "chapter": chapter, "lines": []}
            continue
        if current is not None and not line.strip().startswith(("+-", "|")):
            current["lines"].append(line)
    if current:
        out.append(current)
    for s in out:
        s["text"] = re.sub(r"\s+", " ", "\n".join(s.pop("lines"))).strip()
    return out


class _TexinfoSections(HTMLParser):
    """Sections of a one-page Texinfo HTML manual (``makeinfo --html --no-split``)."""

    CHAPTER = {"chapter", "appendix", "unnumbered"}
    SECTION = {"section", "appendixsec", "subsection", "subsubsection", "unnumberedsec",
               "node-heading"}
    SKIP = {"header", "contents", "footnotes-segment"}  # navigation, TOC, footnotes

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[dict] = []
        self.chapter = ""
        self.heading: tuple[str, list[str]] | None = None  # (kind, text parts) while inside
        self.skip_depth = 0  # > 0 inside a skipped <div> (counts nested divs)
        self.anchor = False  # inside a copiable-anchor link (a pilcrow)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        cls = dict(attrs).get("class") or ""
        if tag == "div" and (self.skip_depth or cls in self.SKIP):
            self.skip_depth += 1
        elif tag == "a" and "copiable-anchor" in cls:
            self.anchor = True
        elif re.fullmatch(r"h[1-6]", tag) and cls in self.CHAPTER | self.SECTION:
            self.heading = (cls, [])

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self.skip_depth:
            self.skip_depth -= 1
        elif tag == "a":
            self.anchor = False
        elif re.fullmatch(r"h[1-6]", tag) and self.heading:
            kind, parts = self.heading
            self.heading = None
            number, _, name = "".join(parts).strip().partition(" ")
            if not re.fullmatch(r"(?:\d+|[A-Z])(?:\.\d+)*", number):  # an unnumbered heading
                number, name = f"u{len(self.sections)}", "".join(parts).strip()
            name = re.sub(r"^Appendix [A-Z] ", "", name).strip()
            if kind in self.CHAPTER:
                self.chapter = name
            self.sections.append({"id": number, "heading": name, "chapter": self.chapter,
                                  "kind": kind, "parts": []})

    def handle_data(self, data: str) -> None:
        if self.heading:
            self.heading[1].append(data)
        elif not self.skip_depth and not self.anchor and self.sections:
            self.sections[-1]["parts"].append(data)


def html_sections(path: str, skip_chapters: str = r"License|Index") -> list[dict]:
    """[{"id", "heading", "chapter", "text"}] of a Texinfo HTML manual: sections below chapter
    level (a chapter's own text is no document, as in the Debian Reference), chapters whose
    name matches ``skip_chapters`` (licence, indexes) left out."""
    parser = _TexinfoSections()
    with open(path, encoding="utf-8") as f:
        parser.feed(f.read())
    out = []
    for s in parser.sections:
        if s.pop("kind") in parser.CHAPTER or re.search(skip_chapters, s["chapter"]):
            continue
        s["text"] = re.sub(r"\s+", " ", "".join(s.pop("parts")).replace("\xa0", " ")).strip()
        out.append(s)
    return out


def write_beir_set(out_dir: str, corpus: list[tuple[str, str, str]],
                   queries: list[tuple[str, str, str]]) -> str:
    """A BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv) of ``(id, title, text)``
    documents and ``(query id, text, relevant document id)`` queries; the SHA-256 of its
    files, so a result names the exact set it was measured on."""
    os.makedirs(os.path.join(out_dir, "qrels"), exist_ok=True)
    with open(os.path.join(out_dir, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for doc_id, title, text in corpus:
            f.write(json.dumps({"_id": doc_id, "title": title, "text": text},
                               ensure_ascii=False) + "\n")
    with open(os.path.join(out_dir, "queries.jsonl"), "w", encoding="utf-8") as f:
        for query_id, text, _ in queries:
            f.write(json.dumps({"_id": query_id, "text": text}, ensure_ascii=False) + "\n")
    with open(os.path.join(out_dir, "qrels", "test.tsv"), "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for query_id, _, doc_id in queries:
            f.write(f"{query_id}\t{doc_id}\t1\n")
    digest = hashlib.sha256()
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
        with open(os.path.join(out_dir, name), "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


def build(source: str, out_dir: str, min_words: int = 20, join_wrapped: bool = False,
          questions_only: bool = False) -> dict:
    """``questions_only``: only headings that end in "?" are queries; every section stays a
    document (the rest are distractors)."""
    if not os.path.isfile(source):
        raise SystemExit(f"{source} not found: run scripts/fetch_pairs_data.sh")
    name = os.path.basename(source).split(".")[0]
    if source.lower().endswith((".html", ".htm")):
        found = html_sections(source)
    else:
        found = sections(source, join_wrapped)
        name = "debref" if name == "debian-reference" else name
    docs = [s for s in found if len(s["text"].split()) >= min_words]
    counts = Counter(s["heading"].lower() for s in docs)
    queries = [s for s in docs if counts[s["heading"].lower()] == 1
               and (not questions_only or s["heading"].endswith("?"))]
    digest = write_beir_set(
        out_dir, [(f"{name}-{s['id']}", s["chapter"], s["text"]) for s in docs],
        [(f"q-{s['id']}", s["heading"], f"{name}-{s['id']}") for s in queries])
    return {"folder": out_dir, "documents": len(docs), "queries": len(queries),
            "dropped_duplicate_headings": sum(n for n in counts.values() if n > 1),
            "words_per_document": round(sum(len(s["text"].split()) for s in docs) / len(docs), 1),
            "sha256": digest}


def ensure(folders: list[str]) -> None:
    """Build each named set (``RECIPES``) whose folder has no corpus.jsonl yet; a folder
    with another name must already be a BEIR set."""
    for folder in folders:
        if os.path.isfile(os.path.join(folder, "corpus.jsonl")):
            continue
        recipe = RECIPES.get(os.path.basename(os.path.normpath(folder)))
        if recipe is None:
            raise SystemExit(f"{folder}: no corpus.jsonl, and not a set this script builds "
                             f"({', '.join(RECIPES)}); build it or pass an existing BEIR folder")
        source, options = recipe
        print(json.dumps(build(os.path.join(ROOT, source), folder, **options)))


def shingles(text: str, n: int = 12) -> set[str]:
    words = re.sub(r"\W+", " ", text.lower()).split()
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


def check_overlap(out_dir: str, pairs_files: list[str], n: int = 12) -> dict:
    """How many held-out documents share an n-word run with any training pair (should be ~0)."""
    train: set[str] = set()
    for path in pairs_files:
        with open(path, encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                for t in [r["query"], r["positive"], *r.get("negatives", [])]:
                    train |= shingles(t, n)
    hits, total = 0, 0
    with open(os.path.join(out_dir, "corpus.jsonl"), encoding="utf-8") as f:
        for line in f:
            total += 1
            hits += bool(shingles(json.loads(line)["text"], n) & train)
    return {"documents": total, f"sharing_a_{n}_word_run_with_training": hits}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=SOURCE, help="debian-reference.en.txt.gz, or a "
                        "one-page Texinfo HTML manual such as bashref.html "
                        "(scripts/fetch_pairs_data.sh)")
    parser.add_argument("--out", default="data/heldout/debian-reference")
    parser.add_argument("--min-words", type=int, default=20)
    parser.add_argument("--join-wrapped-headings", action="store_true",
                        help="plain-text books: a heading's unindented next lines continue it "
                        "(the Debian FAQ's questions)")
    parser.add_argument("--questions-only", action="store_true",
                        help="only headings ending in '?' are queries; all sections documents")
    parser.add_argument("--check-overlap", nargs="*", default=None, metavar="PAIRS_JSONL",
                        help="also count held-out documents that share text with these files")
    parser.add_argument("--ensure", nargs="+", metavar="FOLDER",
                        help=f"instead: build these named sets ({', '.join(RECIPES)}) where "
                        "missing, each from its own source and options")
    args = parser.parse_args()
    if args.ensure:
        ensure(args.ensure)
        return
    report = build(args.source, args.out, args.min_words, args.join_wrapped_headings,
                   args.questions_only)
    if args.check_overlap:
        report["overlap"] = check_overlap(args.out, args.check_overlap)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
