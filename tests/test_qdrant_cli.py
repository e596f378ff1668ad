"""``llm2vec-rag index`` / ``llm2vec-rag search`` through the real CLI entry point."""

from __future__ import annotations

import json

from llm2vec_rag.cli import main
from tiny import CORPUS


def test_index_then_search(tiny_model_dir, tmp_path, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i, text in enumerate(CORPUS[:6]):
        (docs / f"{i}.txt").write_text(text, encoding="utf-8")
    (docs / "bad.txt").write_bytes(b"\xff\xfe\x00bad")
    store = str(tmp_path / "q")
    flags = ["--model", tiny_model_dir(), "--device", "cpu", "--collection", "kb",
             "--qdrant-path", store]
    assert main(["index", str(docs), *flags, "--chunk-size", "32", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "6 documents (6 indexed" in err and "1 skipped" in err and "bad.txt: not UTF-8" in err

    assert main(["search", CORPUS[3], *flags, "-k", "2", "--json"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(hits) == 2 and hits[0]["text"] == CORPUS[3]
    assert hits[0]["metadata"]["doc_id"] == "3.txt" and hits[0]["rank"] == 1

    assert main(["search", CORPUS[3], *flags, "--filter", "doc_id=5.txt"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 2 and "5.txt#0" in out  # one hit: rank line + snippet line

    (docs / "5.txt").unlink()
    assert main(["index", str(docs), *flags, "--chunk-size", "32", "--no-progress",
                 "--prune"]) == 0
    err = capsys.readouterr().err
    assert "5 unchanged" in err and "1 pruned" in err


def test_clear_errors(tiny_model_dir, tmp_path, capsys):
    flags = ["--model", tiny_model_dir(), "--qdrant-path", str(tmp_path / "q")]
    assert main(["index", str(tmp_path / "missing"), *flags]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["search", "x", *flags, "--collection", "none"]) == 2
    assert "No collection 'none'" in capsys.readouterr().err
    assert main(["search", "x", *flags, "--filter", "oops"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
