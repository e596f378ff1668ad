"""Document identity in the Qdrant indexer: the report matches the store, duplicates are
reported (the last record wins, wholly), no stale chunk survives, unchanged = whole document."""

from __future__ import annotations

import json
import warnings

import pytest
from qdrant_client import models

from llm2vec_rag.integrations import _qdrant_config as qc
from llm2vec_rag.integrations.qdrant import QdrantIndexer
from tiny import CORPUS

LONG = " ".join(CORPUS)


@pytest.fixture
def ix(tiny_encoder):
    indexer = QdrantIndexer(tiny_encoder, path=":memory:", chunk_size=16, chunk_overlap=4,
                            batch_size=4)
    yield indexer
    indexer.close()


def stored(ix) -> dict[str, list[tuple[int, str]]]:
    """doc_id -> sorted [(chunk, text)] of what the collection holds."""
    points, _ = ix.client.scroll(ix.collection, limit=10_000, with_payload=True)
    out: dict[str, list] = {}
    for p in points:
        out.setdefault(p.payload["doc_id"], []).append((p.payload["chunk"],
                                                        p.payload["page_content"]))
    return {k: sorted(v) for k, v in out.items()}


def expect(ix, text) -> list[tuple[int, str]]:
    return list(enumerate(ix.chunker.chunk(text)))


def test_int_and_str_ids_are_one_document_reported_as_a_duplicate(ix):
    report = ix.index([{"id": 1, "text": CORPUS[0]}, {"id": "1", "text": CORPUS[1]},
                       {"id": 2, "text": CORPUS[2]}], show_progress=False)
    assert (report.documents, report.indexed, report.duplicates) == (3, 2, 1)
    assert stored(ix) == {"1": expect(ix, CORPUS[1]), "2": expect(ix, CORPUS[2])}
    assert report.chunks == ix.count()
    where, why = report.duplicate_examples[0]
    assert where == "items[1]" and "'1'" in why and "items[0]" in why
    assert "1 duplicate ids: the last record of each kept" in str(report)


@pytest.mark.parametrize("gap", [0, 12], ids=["same-batch", "later-batch"])
def test_same_id_twice_the_last_wins_wholly_and_no_stale_chunk_survives(ix, gap):
    filler = [{"id": f"f{i}", "text": CORPUS[i % len(CORPUS)]} for i in range(gap)]
    docs = [{"id": "a", "text": LONG}, *filler, {"id": "a", "text": CORPUS[3]}]
    assert len(ix.chunker.chunk(LONG)) > 3
    report = ix.index(docs, show_progress=False)
    held = stored(ix)
    assert held["a"] == expect(ix, CORPUS[3])  # not one chunk of the long first version
    assert report.duplicates == 1 and report.indexed == len(held) == 1 + len({
        d["id"] for d in filler})
    assert report.chunks == ix.count()
    # Re-runs and prune keep exactly that (duplicates are resolved in reading order, so the
    # first version may be rewritten and replaced again); the long text never comes back.
    again = ix.index(docs, prune=True, show_progress=False)
    assert stored(ix) == held and again.duplicates == 1
    assert again.indexed + again.unchanged == len(held) and again.indexed <= 1
    assert all(h.metadata["doc_id"] != "a" or h.text == CORPUS[3]
               for h in ix.search(LONG, k=50))


def test_duplicate_after_an_unchanged_first_occurrence(ix):
    ix.index([{"id": "a", "text": LONG}], show_progress=False)
    docs = [{"id": "a", "text": LONG}] + [{"id": f"f{i}", "text": t} for i, t in
                                          enumerate(CORPUS[:6])] + [{"id": "a", "text": "x y"}]
    report = ix.index(docs, show_progress=False)
    assert (report.unchanged, report.indexed, report.duplicates) == (0, 7, 1)
    assert stored(ix)["a"] == [(0, "x y")]
    assert report.pruned == len(ix.chunker.chunk(LONG)) - 1


def test_same_content_twice_is_a_duplicate_written_once(ix):
    report = ix.index([{"id": "a", "text": CORPUS[0]}, {"id": "a", "text": CORPUS[0]}],
                      show_progress=False)
    assert (report.indexed, report.duplicates, report.chunks) == (1, 1, 1) and ix.count() == 1


def test_two_jsonl_files_with_overlapping_ids(ix, tmp_path):
    for name, offset in (("a.jsonl", 0), ("b.jsonl", 100)):
        with open(tmp_path / name, "w", encoding="utf-8") as f:
            for i in range(6):
                f.write(json.dumps({"id": i, "text": f"{CORPUS[i]} {offset + i}"}) + "\n")
    report = ix.index(tmp_path, show_progress=False)
    assert (report.documents, report.indexed, report.duplicates) == (12, 6, 6)
    assert len(stored(ix)) == 6 == report.indexed and report.chunks == ix.count()
    text = str(report)
    assert "b.jsonl:1" in text and "a.jsonl:1" in text and "id_scope='file'" in text

    scoped = QdrantIndexer(ix.encoder, "scoped", client=ix.client, chunk_size=16)
    report = scoped.index(tmp_path, id_scope="file", show_progress=False)
    assert (report.indexed, report.duplicates) == (12, 0)
    assert "a.jsonl#0" in stored(scoped) and "b.jsonl#5" in stored(scoped)
    assert scoped.index(tmp_path, id_scope="file", show_progress=False).unchanged == 12
    with pytest.raises(ValueError, match="id_scope"):
        scoped.index(tmp_path, id_scope="folder", show_progress=False)


def test_unchanged_means_every_chunk(ix):
    ix.index([{"id": "a", "text": LONG}], show_progress=False)
    n = len(ix.chunker.chunk(LONG))
    ix.client.delete(ix.collection, points_selector=models.PointIdsList(
        points=[qc.point_id("a", 1)]), wait=True)  # a run killed between writes, say
    report = ix.index([{"id": "a", "text": LONG}], show_progress=False)
    assert (report.unchanged, report.indexed) == (0, 1)
    assert stored(ix)["a"] == expect(ix, LONG) and ix.count() == n


def test_stale_chunks_left_by_an_older_version_are_found_and_deleted(ix):
    """A store where a document has chunks past its own count (what a duplicate id left
    before this fix): the re-run sees them, rewrites the document and deletes them."""
    ix.index([{"id": "a", "text": CORPUS[0]}], show_progress=False)
    vec = ix.encoder.encode_documents(["stale"], normalize=True)[0].tolist()
    ix.client.upsert(ix.collection, [models.PointStruct(
        id=qc.point_id("a", c), vector=vec,
        payload=qc.payload("a", c, 5, "stale", {}, "old")) for c in (1, 2, 3, 4)], wait=True)
    report = ix.index([{"id": "a", "text": CORPUS[0]}], show_progress=False)
    assert (report.unchanged, report.indexed, report.pruned) == (0, 1, 4)
    assert stored(ix) == {"a": expect(ix, CORPUS[0])}


def test_unusable_ids_are_named(ix, tmp_path):
    with pytest.raises(TypeError, match=r"items\[0\].*'id'.*bool"):
        ix.index([{"id": True, "text": "x"}], show_progress=False)
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"id": 1.5, "text": "x"}) + "\n"
                 + json.dumps({"id": [1], "text": "y"}) + "\n"
                 + json.dumps({"id": 7, "text": "z"}) + "\n", encoding="utf-8")
    report = ix.index(f, show_progress=False)
    assert (report.indexed, report.skipped) == (1, 2)
    assert report.skipped_examples[0][0] == f"{f}:1" and "float" in report.skipped_examples[0][1]


def test_max_text_tokens_comes_from_the_real_template(tiny_encoder):
    enc, tok = tiny_encoder, tiny_encoder.tokenizer
    special = len(tok("a")["input_ids"]) - len(tok("a", add_special_tokens=False)["input_ids"])
    assert enc.max_text_tokens() == enc.config.max_length - special
    ins = "Represent this passage"
    assert enc.max_text_tokens(ins) < enc.max_text_tokens()
    for instruction in (None, ins):
        room = enc.max_text_tokens(instruction)
        word = next(w for w in CORPUS[0].split()
                    if len(tok(f"{w} {w}", add_special_tokens=False)["input_ids"]) == 2)
        text = " ".join([word] * room)
        assert len(tok(text, add_special_tokens=False)["input_ids"]) == room
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # exactly the budget: no truncation warning
            enc.encode([text], instruction=instruction)
        with pytest.warns(UserWarning, match="truncated"):
            enc.encode([text + " " + word], instruction=instruction)
    QdrantIndexer(enc, path=":memory:", chunk_size=enc.max_text_tokens()).close()
    with pytest.raises(ValueError, match=f"chunk_size <= {enc.max_text_tokens()}"):
        QdrantIndexer(enc, path=":memory:", chunk_size=enc.max_text_tokens() + 1)


def test_cli_id_scope_flag(tiny_model_dir, tmp_path, capsys):
    from llm2vec_rag.cli import main

    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("a.jsonl", "b.jsonl"):
        (docs / name).write_text("".join(json.dumps({"id": i, "text": f"{name} {CORPUS[i]}"})
                                         + "\n" for i in range(3)), encoding="utf-8")
    flags = ["--model", tiny_model_dir(), "--device", "cpu", "--qdrant-path",
             str(tmp_path / "q"), "--chunk-size", "32", "--no-progress"]
    assert main(["index", str(docs), *flags, "--collection", "g"]) == 0
    err = capsys.readouterr().err
    assert "6 documents (3 indexed, 0 unchanged, 3 duplicate ids" in err and "--id-scope" in err
    assert main(["index", str(docs), *flags, "--collection", "f", "--id-scope", "file"]) == 0
    assert "6 documents (6 indexed, 0 unchanged)" in capsys.readouterr().err
