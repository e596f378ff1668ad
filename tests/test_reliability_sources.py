"""Issue 31 (4, 6, 12): what the indexer reads - two folders sharing file names, a FIFO, a
deeply nested JSONL line, metadata keys the indexer owns."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from llm2vec_rag.integrations.qdrant import QdrantIndexer
from llm2vec_rag.integrations.sources import Skipped, iter_documents
from tiny import CORPUS


def bounded(fn, seconds: float = 60):
    """fn() in a thread; fails (instead of hanging the suite) if it has not returned."""
    out: list = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds}s"
    return out[0]


@pytest.fixture
def ix(tiny_encoder):
    indexer = QdrantIndexer(tiny_encoder, path=":memory:")
    yield indexer
    indexer.close()


def test_two_folders_with_the_same_file_name_keep_both(ix, tmp_path):
    for name, text in (("a", CORPUS[0]), ("b", CORPUS[1])):
        (tmp_path / "src" / name).mkdir(parents=True)
        (tmp_path / "src" / name / "README.md").write_text(text, encoding="utf-8")
        (tmp_path / "src" / name / "r.jsonl").write_text(
            json.dumps({"text": text + " again"}) + "\n", encoding="utf-8")
    a, b = tmp_path / "src" / "a", tmp_path / "src" / "b"
    ids = sorted(d.id for d in iter_documents([a, b]))
    assert ids == ["a/README.md", "a/r.jsonl:1", "b/README.md", "b/r.jsonl:1"]
    assert sorted(d.id for d in iter_documents([a, b], id_scope="file")) == ids
    report = ix.index([a, b], show_progress=False)
    assert (report.indexed, report.duplicates, ix.count()) == (4, 0, 4)
    # one folder alone keeps the ids relative to it, as collections written before rely on
    assert sorted(d.id for d in iter_documents(a)) == ["README.md", "r.jsonl:1"]
    assert sorted(d.id for d in iter_documents([a])) == ["README.md", "r.jsonl:1"]


def test_cli_indexes_two_folders_sharing_names(tiny_model_dir, tmp_path, capsys):
    from llm2vec_rag.cli import main

    for name, text in (("a", CORPUS[2]), ("b", CORPUS[3])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "README.md").write_text(text, encoding="utf-8")
    assert main(["index", str(tmp_path / "a"), str(tmp_path / "b"), "--model",
                 tiny_model_dir(), "--qdrant-path", str(tmp_path / "q"), "--device", "cpu",
                 "--no-progress"]) == 0
    assert "2 indexed" in capsys.readouterr().err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_in_the_folder_is_skipped_not_read(ix, tmp_path):
    (tmp_path / "a.txt").write_text(CORPUS[0], encoding="utf-8")
    os.mkfifo(tmp_path / "pipe.txt")
    os.mkfifo(tmp_path / "pipe.jsonl")
    report = bounded(lambda: ix.index(tmp_path, show_progress=False))
    assert (report.indexed, report.skipped) == (1, 2)
    assert all("not a regular file" in why for _, why in report.skipped_examples)
    given = bounded(lambda: list(iter_documents([tmp_path / "pipe.txt"])))
    assert isinstance(given[0], Skipped) and "FIFO" in given[0].reason


def test_a_deeply_nested_jsonl_line_is_one_skipped_line(ix, tmp_path):
    deep = '{"text": "x", "m": ' + "[" * 5000 + "]" * 5000 + "}"
    lines = [json.dumps({"id": "a", "text": CORPUS[0]}), deep,
             json.dumps({"id": "b", "text": CORPUS[1]})]
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = ix.index(tmp_path / "d.jsonl", show_progress=False)
    assert (report.indexed, report.skipped, ix.count()) == (2, 1, 2)
    where, why = report.skipped_examples[0]
    assert where.endswith("d.jsonl:2") and "nested too deeply" in why


def test_metadata_keys_the_indexer_owns_are_not_overwritten(ix, tmp_path):
    rows = [{"id": "a", "text": CORPUS[0], "doc_id": "theirs"},
            {"id": "b", "text": CORPUS[1], "chunk": 7},
            {"id": "c", "text": CORPUS[2], "doc_id": "c"},  # the same id: accepted
            {"id": "d", "text": CORPUS[3], "lang": "en"}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows),
                                      encoding="utf-8")
    report = ix.index(tmp_path / "m.jsonl", show_progress=False)
    assert (report.indexed, report.skipped) == (2, 2)
    reasons = dict(report.skipped_examples)
    assert "'doc_id' is the indexer's own" in reasons[f"{tmp_path / 'm.jsonl'}:1"]
    assert "--id-field doc_id" in reasons[f"{tmp_path / 'm.jsonl'}:1"]
    assert "'chunk'" in reasons[f"{tmp_path / 'm.jsonl'}:2"]
    with pytest.raises(ValueError, match=r"items\[0\]: metadata key 'doc_id'"):
        ix.index([rows[0]], show_progress=False)
    # the user's own id under doc_id: name it as the id field
    assert ix.index([{"doc_id": "x", "text": CORPUS[4]}], id_field="doc_id",
                    show_progress=False).indexed == 1
    assert ix.search(CORPUS[4], k=1)[0].metadata["doc_id"] == "x"
    assert Path(tmp_path / "m.jsonl").exists()
