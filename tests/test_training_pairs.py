"""``train pairs``: pairs mined from small real-format files (Markdown, reStructuredText, a
dictd database, man pages, MediaWiki XML, JSONL, Q:/A: text, one document a line), hard
negatives and the consistency filter with a tiny real encoder, the report, and errors that
name file and line."""

from __future__ import annotations

import gzip
import json
import re

import numpy as np
import pytest

from llm2vec_rag.cli import main
from llm2vec_rag.training.data import load_examples
from llm2vec_rag.training.pair_sources import SYMMETRIC, extract
from llm2vec_rag.training.pairs import PairSettings, build_pairs
from tiny import make_tiny_bert

MARKDOWN = """---
title: front matter is skipped
---
# Vector search

Vector search finds the documents whose embeddings are closest to the embedding of a query.

## Installation

Install the package with pip and download the default model before the first search.

```bash
# not a heading: a shell comment inside a code fence
pip install vector-search
```

## How do I rebuild the index?

Run the rebuild command; it reads every document again and writes a new collection.

Distances
---------

Cosine similarity compares the angle between two vectors and ignores their lengths.

## Empty

## Distance metrics

Cosine similarity compares the angle between two vectors and ignores their length.
"""

RST = """=========
Lexicon
=========

Introduction
============

A lexicon lists the words of a language with their meanings and :func:`examples`.

.. toctree::
   :maxdepth: 2

   chapter1

Word classes
------------

Nouns name things, verbs name actions and adjectives describe the qualities of nouns.
"""

ENTRIES = [  # (headword, entry text) as dictd stores them
    ("bit", "bit\n\n   <unit> The smallest unit of {information}: a binary digit, zero or "
            "one, stored in one cell of memory.\n\n   (1996-01-01)\n"),
    ("byte", "byte\n\n   <unit> A group of eight {bit}s, the smallest addressable unit of "
             "memory on most modern computers.\n"),
    ("nibble", "nibble\nnybble\n\n   <unit> Half a {byte}: four bits, one hexadecimal digit, "
               "the amount a single hex character can show.\n"),
]

MAN = r""".\" Copyright comment
.TH FROB 1 2024-01-01 "Test pages"
.SH NAME
frob \- rearrange the lines of a file at random
.SH SYNOPSIS
.B frob
.RI [ file ]
.SH DESCRIPTION
.B frob
reads
.IR file ,
shuffles its lines and writes them to standard output \(em it never changes
the file itself.
.SH SEE ALSO
.BR shuf (1)
"""

WIKI = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/">
<page><title>Glacier</title><ns>0</ns><revision><text>A '''glacier''' is a persistent body of \
dense [[ice]] that is constantly moving downhill under its own weight over many years.
== Formation ==
Glaciers form where the accumulation of snow exceeds its melting and sublimation over \
many centuries.
== References ==
{{reflist}} and a long enough line of words to pass the filter for length here.
</text></revision></page>
<page><title>Ice age</title><ns>0</ns><revision><text>#REDIRECT [[Glacier]]</text>
</revision></page>
</mediawiki>
"""


def b64(n: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    out = ""
    while True:
        out = alphabet[n % 64] + out
        n //= 64
        if n == 0:
            return out


def write_dictd(folder, name="tinydict", compress=True):
    data, index = b"", []
    for headword, entry in ENTRIES:
        raw = entry.encode()
        index.append(f"{headword}\t{b64(len(data))}\t{b64(len(raw))}")
        data += raw
    index.insert(0, f"00-database-info\t{b64(0)}\t{b64(3)}")  # metadata: skipped
    index.append(f"nybble\t{b64(data.index(b'nibble'))}\t{b64(len(ENTRIES[2][1]))}")
    (folder / f"{name}.index").write_text("\n".join(index) + "\n", encoding="utf-8")
    if compress:
        with gzip.open(folder / f"{name}.dict.dz", "wb") as f:
            f.write(data)
    else:
        (folder / f"{name}.dict").write_bytes(data)
    return folder / f"{name}.index"


@pytest.fixture
def corpus(tmp_path):
    src = tmp_path / "corpus"
    (src / "man1").mkdir(parents=True)
    (src / "guide.md").write_text(MARKDOWN, encoding="utf-8")
    (src / "lexicon.rst").write_text(RST, encoding="utf-8")
    write_dictd(src)
    with gzip.open(src / "man1" / "frob.1.gz", "wt", encoding="utf-8") as f:
        f.write(MAN)
    with gzip.open(src / "man1" / "unfrob.1.gz", "wt", encoding="utf-8") as f:
        f.write(".so man1/frob.1\n")  # an alias page: no pairs
    (src / "wiki.xml").write_text(WIKI, encoding="utf-8")
    (src / "faq.txt").write_text(
        "Q: Can I search without a GPU?\nA: Yes, the default model runs on two CPU cores at a "
        "few hundred tokens per second.\n\nQ: Where are vectors stored?\nA: In a Qdrant "
        "collection, embedded on disk or on a server.\n", encoding="utf-8")
    (src / "articles.jsonl").write_text(json.dumps(
        {"title": "Tides", "text": "Tides are the rise and fall of sea levels caused by the "
                                   "gravity of the moon and the sun."}) + "\n", encoding="utf-8")
    (src / "notes.bin").write_bytes(b"\x00")  # not a known format: skipped in a folder walk
    return src


def by_query(pairs):
    return {p.query: p for p in pairs}


def test_each_format_gives_its_structural_pairs(corpus):
    md = by_query(extract(str(corpus / "guide.md")))
    assert md["Vector search"].positive.startswith("Vector search finds the documents")
    assert md["Vector search: Installation"].positive.startswith("Install the package")
    assert "not a heading" in md["Vector search: Installation"].positive  # code kept, no split
    assert md["How do I rebuild the index?"].kind == "qa"
    assert md["Vector search: Distances"].positive.startswith("Cosine similarity")  # setext h2
    assert md["Vector search"].source == f"{corpus / 'guide.md'}:4"
    rst = by_query(extract(str(corpus / "lexicon.rst")))
    assert rst["Lexicon: Introduction"].positive == (
        "A lexicon lists the words of a language with their meanings and examples.")
    assert rst["Introduction: Word classes"].positive.startswith("Nouns name things")
    terms = by_query(extract(str(corpus / "tinydict.index")))
    assert set(terms) == {"bit", "byte", "nibble", "nybble"}
    assert terms["bit"].positive == ("<unit> The smallest unit of information: a binary digit, "
                                     "zero or one, stored in one cell of memory.")
    assert terms["nybble"].positive == terms["nibble"].positive  # an alias of the same entry
    assert terms["bit"].dataset == "dict-tinydict" and terms["bit"].kind == "definition"
    (man,) = extract(str(corpus / "man1" / "frob.1.gz"))
    assert man.query == "frob - rearrange the lines of a file at random"
    assert man.positive == ("frob reads file, shuffles its lines and writes them to standard "
                            "output - it never changes the file itself.")
    assert extract(str(corpus / "man1" / "unfrob.1.gz")) == []
    wiki = by_query(p for p in extract(str(corpus / "wiki.xml")) if p.kind != SYMMETRIC)
    assert set(wiki) == {"Glacier", "Glacier: Formation"}  # no redirect, no References
    assert wiki["Glacier"].positive.startswith("A glacier is a persistent body of dense ice")
    (passages,) = [p for p in extract(str(corpus / "wiki.xml")) if p.kind == SYMMETRIC]
    assert passages.query == wiki["Glacier"].positive  # the lead -> the passage after it
    assert passages.positive == wiki["Glacier: Formation"].positive
    faq = by_query(extract(str(corpus / "faq.txt")))
    assert faq["Where are vectors stored?"].positive.startswith("In a Qdrant collection")


POD = """=head1 NAME

vecfaq - Frequently asked questions about vector search

=head1 DESCRIPTION

This section answers questions about indexes.

=head2 How do I rebuild an index?
X<rebuild> X<index, rebuild>

Run C<vecsearch --rebuild>: it reads every document again. Use C<< $index->rebuild() >>
from code, and see L<vecsearch/OPTIONS> or L<the manual|vecsearch> for E<lt>optionsE<gt>.

    vecsearch --rebuild docs/

=over 4

=item * Old points are dropped.

=back

=begin html

<p>Not prose.</p>

=end html

=for comment
Not prose either.

=cut

sub not_documentation { 1 }

=head2 Why are B<my> results empty?

The collection has no points yet.

=cut
"""


def test_pod_headings_give_sections_and_questions_give_qa_pairs(tmp_path):
    path = tmp_path / "vecfaq.pod"
    path.write_text(POD, encoding="utf-8")
    pod = by_query(extract(str(path)))
    assert set(pod) == {"NAME", "DESCRIPTION", "How do I rebuild an index?",
                        "Why are my results empty?"}
    rebuild = pod["How do I rebuild an index?"]
    assert rebuild.kind == "qa" and rebuild.dataset == "faq"
    assert rebuild.source == f"{path}:9"
    assert rebuild.positive == (
        "Run vecsearch --rebuild: it reads every document again. Use $index->rebuild() from "
        "code, and see vecsearch OPTIONS or the manual for <options>. vecsearch --rebuild "
        "docs/ Old points are dropped.")  # no index entries, no html block, no code after =cut
    assert pod["Why are my results empty?"].positive == "The collection has no points yet."
    assert "Not prose" not in rebuild.positive
    assert pod["DESCRIPTION"].kind == "heading"


def test_gzipped_markdown_and_sphinx_sources_are_read_as_their_markup(tmp_path, corpus):
    """Debian ships documentation gzipped, and Sphinx's HTML keeps its sources as .rst.txt."""
    with gzip.open(tmp_path / "FAQ.md.gz", "wt", encoding="utf-8") as f:
        f.write(MARKDOWN)
    (tmp_path / "faq.rst.txt").write_text(RST, encoding="utf-8")
    assert extract(str(tmp_path / "FAQ.md.gz"))[0].query == "Vector search"
    assert by_query(extract(str(tmp_path / "FAQ.md.gz"))).keys() == by_query(
        extract(str(corpus / "guide.md"))).keys()
    assert [p.positive for p in extract(str(tmp_path / "faq.rst.txt"))] == [
        p.positive for p in extract(str(corpus / "lexicon.rst"))]


def test_filters_are_counted_per_dataset(corpus, tmp_path):
    out = tmp_path / "pairs.jsonl"
    report = build_pairs([str(corpus)], str(out), settings=PairSettings(
        num_negatives=0, consistency_k=0, min_words=5))
    headings = report["datasets"]["headings"]
    # "Empty" and "Lexicon" have no text of their own; "Distance metrics" repeats "Distances"
    # up to one word: not a duplicate, both kept
    assert headings == {"extracted": 8, "too_short": 2, "written": 6}
    definitions = report["datasets"]["dict-tinydict"]
    assert definitions == {"extracted": 4, "duplicate": 1, "written": 3}  # nybble = nibble
    assert report["sources"][str(corpus)]["files"] == 8  # notes.bin and the .dict.dz are not mined
    assert report["sources"][str(corpus)]["files_without_pairs"] == 1  # the .so alias
    assert report["written"] == sum(d["written"] for d in report["datasets"].values())
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == report["written"] and all(r["negatives"] == [] for r in rows)
    assert {r["instruction"] for r in rows if r["dataset"] == "man"} == {
        "Given a summary of a command or function, retrieve its manual page description"}


def test_mined_negatives_skip_near_duplicates_and_load_in_the_supervised_reader(
        corpus, tmp_path, tiny_encoder):
    strict = PairSettings(num_negatives=1, consistency_k=0, min_words=5, duplicate_cosine=0.99,
                          duplicate_overlap=0.6, max_negative_ratio=0.99)
    loose = PairSettings(num_negatives=1, consistency_k=0, min_words=5, duplicate_cosine=2.0,
                         duplicate_overlap=2.0, max_negative_ratio=100.0)
    runs = {}
    for name, settings in (("strict", strict), ("loose", loose)):
        out = tmp_path / f"{name}.jsonl"
        report = build_pairs([str(corpus)], str(out), tiny_encoder, settings)
        runs[name] = load_examples([str(out)], num_negatives=1)  # the supervised reader
        assert len(runs[name]) == report["written"] > 0
    assert report["datasets"]["man"]["no_negative"] == 1  # a one-pair dataset has no pool
    for e in runs["strict"]:
        pos, neg = tiny_encoder.encode_documents([e.positive, e.negatives[0]], normalize=True)
        q = tiny_encoder.encode_queries([e.query], instruction=e.instruction, normalize=True)[0]
        words = [set(re.sub(r"\W+", " ", t.lower()).split()) for t in (e.positive, e.negatives[0])]
        assert e.negatives[0] != e.positive and float(pos @ neg) <= 0.99 + 1e-6
        assert len(words[0] & words[1]) / len(words[0] | words[1]) <= 0.6
        assert float(q @ neg) <= 0.99 * float(q @ pos) + 1e-6
    loose_negatives = {e.query: e.negatives[0] for e in runs["loose"]}
    assert any(loose_negatives[e.query] != e.negatives[0] for e in runs["strict"])


def test_consistency_keeps_the_pairs_whose_positive_ranks_in_the_top_k(corpus, tmp_path,
                                                                       tiny_encoder):
    k = 2
    pairs = [p for p in extract(str(corpus / "guide.md")) + extract(str(corpus / "lexicon.rst"))
             if p.dataset == "headings" and len(p.positive.split()) >= 5]
    docs = tiny_encoder.encode_documents([p.positive for p in pairs], normalize=True)
    queries = tiny_encoder.encode_queries(
        [p.query for p in pairs], normalize=True,
        instruction="Given a section heading, retrieve the section it introduces")
    ranks = [(np.argsort(-(queries[i] @ docs.T), kind="stable")[:k]) for i in range(len(pairs))]
    expected = {pairs[i].query for i in range(len(pairs)) if i in ranks[i]}
    out = tmp_path / "pairs.jsonl"
    report = build_pairs([str(corpus / "guide.md"), str(corpus / "lexicon.rst")], str(out),
                         tiny_encoder, PairSettings(num_negatives=0, consistency_k=k,
                                                    min_words=5))
    kept = {json.loads(line)["query"] for line in out.read_text(encoding="utf-8").splitlines()
            if json.loads(line)["dataset"] == "headings"}
    assert kept == expected and 0 < len(kept) < len(pairs)
    assert report["datasets"]["headings"]["inconsistent"] == len(pairs) - len(expected)


def test_cli_mines_a_folder_with_the_named_model(corpus, tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "cli.jsonl"
    rc = main(["train", "pairs", str(corpus), "-o", str(out), "--model",
               tiny_model_dir("llama"), "--device", "cpu", "--consistency-k", "0",
               "--min-words", "5", "--instruction", "", "--report", str(tmp_path / "r.json")])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0 and report["written"] == len(load_examples([str(out)], 1))
    assert json.loads((tmp_path / "r.json").read_text())["written"] == report["written"]
    assert all("instruction" not in json.loads(line) for line in out.open())


@pytest.mark.parametrize("case", ["index", "past_end", "no_dict", "jsonl", "xml", "format"])
def test_bad_input_names_the_file_and_line(tmp_path, case, capsys):
    if case in ("index", "past_end", "no_dict"):
        index = write_dictd(tmp_path, compress=False)
        lines = index.read_text().splitlines()
        if case == "index":
            lines[2] = "byte\tB?D\tx"
            match = f"{index}:3: expected headword<TAB>offset<TAB>length"
        elif case == "past_end":
            lines[2] = f"byte\t{b64(0)}\t{b64(10_000)}"
            match = f"{index}:3: entry 'byte' ends at byte 10000, past the end"
        else:
            (tmp_path / "tinydict.dict").unlink()
            match = "no tinydict.dict or .dict.dz beside it"
        index.write_text("\n".join(lines) + "\n")
        path = index
    elif case == "jsonl":
        path = tmp_path / "a.jsonl"
        path.write_text('{"title": "x", "text": "y"}\n{"name": "z"}\n')
        match = f"{path}:2: needs 'title' and 'text'"
    elif case == "xml":
        path = tmp_path / "w.xml"
        path.write_text("<mediawiki>\n<page><title>x</title>\n</mediawiki>\n")
        match = f"{path}:3: not valid XML"
    else:
        path = tmp_path / "data.csv"
        path.write_text("a,b\n")
        match = f"{path}: not a format pairs are mined from"
    with pytest.raises(ValueError, match=match.replace("?", r"\?")):
        build_pairs([str(path)], str(tmp_path / "out.jsonl"),
                    settings=PairSettings(num_negatives=0, consistency_k=0))
    assert not (tmp_path / "out.jsonl").exists()  # nothing half-written
    rc = main(["train", "pairs", str(path), "-o", str(tmp_path / "o.jsonl"),
               "--num-negatives", "0", "--consistency-k", "0"])
    assert rc == 2 and str(path) in capsys.readouterr().err


NEWS = ("The council approved the new bridge on Monday. Construction starts in spring. The "
        "mayor said the bridge would cut travel times. Residents welcomed the decision.\n"
        "\n"
        "A single sentence has no second half to pair with its first one at all.\n"
        "Heavy rain flooded the valley overnight. Roads were closed near the river. Crews "
        "pumped water from homes. More rain is expected on Friday.\n")


def test_documents_give_their_two_halves_as_symmetric_pairs(tmp_path):
    cor = tmp_path / "news.cor"
    cor.write_text(NEWS, encoding="utf-8")
    first, second = extract(str(cor))  # the one-sentence document gives nothing
    assert first.query == ("The council approved the new bridge on Monday. Construction "
                           "starts in spring.")
    assert first.positive == ("The mayor said the bridge would cut travel times. Residents "
                              "welcomed the decision.")  # cut at the sentence nearest the middle
    assert (first.kind, first.dataset, first.source) == (SYMMETRIC, "documents", f"{cor}:1")
    assert second.source == f"{cor}:4" and second.positive.startswith("Crews pumped water")
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text(json.dumps({"text": NEWS.splitlines()[0], "id": 7}) + "\n",
                     encoding="utf-8")
    (pair,) = extract(str(jsonl))
    assert (pair.query, pair.positive) == (first.query, first.positive)
    jsonl.write_text(json.dumps({"text": 3}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=f"{re.escape(str(jsonl))}:1: field 'text' must be"):
        extract(str(jsonl))


def _article(title: str, topic: str) -> str:
    lead = f"The {topic} is described here in a lead paragraph with enough words to be kept."
    sections = "".join(f"== Part {k} ==\nThis part {k} of the {topic} article goes on about "
                       f"the {topic} in a paragraph of its own for the filter.\n"
                       for k in (1, 2))
    return (f"<page><title>{title}</title><ns>0</ns><revision><text>{lead}\n{sections}"
            "</text></revision></page>")


def test_symmetric_pairs_have_no_instruction_and_no_negative_from_their_document(
        tmp_path, tiny_encoder):
    wiki = tmp_path / "wiki.xml"
    topics = ["river", "mountain", "desert", "forest"]
    wiki.write_text("<mediawiki>" + "".join(_article(t.title(), t) for t in topics)
                    + "</mediawiki>", encoding="utf-8")
    out = tmp_path / "pairs.jsonl"
    report = build_pairs([str(wiki)], str(out), tiny_encoder, PairSettings(
        num_negatives=1, consistency_k=0, min_words=5, max_words=12, max_query_words=5,
        duplicate_cosine=2.0, duplicate_overlap=2.0, max_negative_ratio=100.0))
    # the long queries of symmetric pairs are cut, not dropped; "Title: Part k" ones are short
    assert report["datasets"]["wiki-passages"] == {"extracted": 8, "written": 8}
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    passages = [r for r in rows if r["dataset"] == "wiki-passages"]
    article_of = {}
    for p in extract(str(wiki)):
        article_of[p.positive[:40]] = p.source
    for r in passages:
        assert r["instruction"] == "" and len(r["query"].split()) <= 12
        assert article_of[r["negatives"][0][:40]] != r["source"]  # another article's passage
    loaded = load_examples([str(out)], num_negatives=1,
                           default_instruction="Given a web search query, retrieve passages")
    assert {e.instruction for e in loaded if e.dataset == "wiki-passages"} == {""}
    assert {e.instruction for e in loaded if e.dataset == "wiki-sections"} == {
        "Given a section heading, retrieve the section it introduces"}


def test_a_bert_sentence_encoder_mines_pairs(corpus, tmp_path, capsys):
    """A BERT-style encoder (what scripts/mine_pairs.sh's all-MiniLM-L6-v2 miner is) loads
    through LLM2Vec.from_pretrained: mean pooling over the text's own tokens ([CLS] and [SEP]
    left out), the same vector however the batch is padded; then it mines from the CLI."""
    import torch
    import transformers

    from llm2vec_rag import LLM2Vec

    folder = make_tiny_bert(str(tmp_path / "bert"))
    texts = ["Glaciers form where snow accumulates.", "Tides are the rise and fall of seas "
             "caused by the moon, the sun and the rotation of the earth."]
    encoder = LLM2Vec.from_pretrained(folder, device="cpu")
    got = encoder.encode(texts)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    bert = transformers.BertModel.from_pretrained(folder).eval()
    for text, vec in zip(texts, got):
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            hidden = bert(input_ids=ids).last_hidden_state[0]  # [T, D], no padding
        np.testing.assert_allclose(vec, hidden[1:-1].mean(0).numpy(), atol=1e-5)
    out = tmp_path / "bert.jsonl"
    assert main(["train", "pairs", str(corpus), "-o", str(out), "--model", folder, "--device",
                 "cpu", "--min-words", "5", "--instruction", "", "--consistency-k", "0",
                 # a random tiny BERT puts every text close together: no near-duplicate skips
                 "--duplicate-cosine", "2", "--max-negative-ratio", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    examples = load_examples([str(out)], 1)
    assert report["written"] == len(examples) > 0, report
    assert all(e.negatives[0] != e.positive for e in examples)
