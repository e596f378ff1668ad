"""``benchmarks/build_heldout.py`` on a small book in the Debian Reference / Debian FAQ text
layout: wrapped questions are joined only when asked (the Debian Reference set stays as it was
scored), ``--questions-only`` keeps every section as a document."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import pytest

BOOK = """The Example FAQ

Chapter 1. Packages

1.1. How do I install a package that is not in the
archive?

    Build it from source with the packaging tools, then install the
    resulting file with the package manager like any other package.

1.2. Package pinning

    Pinning keeps a package at one version while the rest of the
    system follows the newer release of the distribution.

Chapter 2. Support

2.1. Where do I report a bug?

    Report it with the bug reporting tool, which asks for the package
    name and collects the versions of everything it depends on.
"""


def load():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "build_heldout.py"
    spec = importlib.util.spec_from_file_location("build_heldout", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read(folder: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (folder / name).read_text().splitlines()]


def test_wrapped_questions_join_and_questions_only_keeps_all_documents(tmp_path):
    source = tmp_path / "example-faq.en.txt.gz"
    with gzip.open(source, "wt", encoding="utf-8") as f:
        f.write(BOOK)
    build = load().build
    report = build(str(source), str(tmp_path / "faq"), min_words=10, join_wrapped=True,
                   questions_only=True)
    queries = read(tmp_path / "faq", "queries.jsonl")
    assert [q["text"] for q in queries] == [
        "How do I install a package that is not in the archive?", "Where do I report a bug?"]
    corpus = read(tmp_path / "faq", "corpus.jsonl")
    assert [d["_id"] for d in corpus] == ["example-faq-1.1", "example-faq-1.2", "example-faq-2.1"]
    assert corpus[0]["title"] == "Packages"
    assert corpus[0]["text"].startswith("Build it from source")  # the wrap is not body text
    assert (report["documents"], report["queries"]) == (3, 2)
    qrels = (tmp_path / "faq" / "qrels" / "test.tsv").read_text().splitlines()[1:]
    assert qrels == ["q-1.1\texample-faq-1.1\t1", "q-2.1\texample-faq-2.1\t1"]

    build(str(source), str(tmp_path / "plain"), min_words=10)  # as the Debian Reference
    plain = read(tmp_path / "plain", "queries.jsonl")
    assert plain[0]["text"] == "How do I install a package that is not in the"
    assert len(plain) == 3


def test_ensure_builds_a_named_set_from_its_recipe_and_refuses_other_names(tmp_path):
    module = load()
    source = tmp_path / "example-faq.en.txt.gz"
    with gzip.open(source, "wt", encoding="utf-8") as f:
        f.write(BOOK)
    options = module.RECIPES["debian-faq"][1]
    module.RECIPES["debian-faq"] = (str(source), options)  # this module copy only
    folder = tmp_path / "sets" / "debian-faq"
    module.ensure([str(folder)])
    assert [q["text"] for q in read(folder, "queries.jsonl")] == [
        "How do I install a package that is not in the archive?", "Where do I report a bug?"]
    (folder / "queries.jsonl").write_text("kept\n")
    module.ensure([str(folder)])  # present: left as it is
    assert (folder / "queries.jsonl").read_text() == "kept\n"
    with pytest.raises(SystemExit, match="not a set this script builds"):
        module.ensure([str(tmp_path / "sets" / "mine")])
