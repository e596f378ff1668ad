"""QdrantIndexer on the embedded store: chunking, ids, re-runs, pruning, sources, bad input."""

from __future__ import annotations

import json
import logging
import os
import time
import uuid

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from llm2vec_rag.integrations import _qdrant_config as qc
from llm2vec_rag.integrations.chunking import TokenChunker
from llm2vec_rag.integrations.qdrant import QdrantIndexer
from tiny import CORPUS

LONG = " ".join(CORPUS)  # ~170 tokens of the tiny tokenizer


def all_points(ix: QdrantIndexer) -> dict[str, dict]:
    points, _ = ix.client.scroll(ix.collection, limit=10_000, with_payload=True)
    return {str(p.id): p.payload for p in points}


@pytest.fixture
def ix(tiny_encoder):
    indexer = QdrantIndexer(tiny_encoder, path=":memory:", chunk_size=32, chunk_overlap=8,
                            batch_size=8)
    yield indexer
    indexer.close()


def test_chunker_windows_in_model_tokens(tiny_encoder):
    tok = tiny_encoder.tokenizer
    chunks = TokenChunker(tok, size=20, overlap=5).chunk(LONG)
    n_tokens = len(tok(LONG, add_special_tokens=False)["input_ids"])
    assert len(chunks) == -(-(n_tokens - 5) // 15)  # ceil((n - overlap) / step)
    for a, b in zip(chunks, chunks[1:]):
        ids_a = tok(a, add_special_tokens=False)["input_ids"]
        assert len(ids_a) <= 20
        assert a in LONG  # exact slices of the original text
        tail = tok(a, add_special_tokens=False)["input_ids"][-5:]
        assert tok(b, add_special_tokens=False)["input_ids"][:5] == tail  # 5 shared tokens
    assert TokenChunker(tok, size=20).chunk("short text") == ["short text"]
    with pytest.raises(ValueError, match="overlap"):
        TokenChunker(tok, size=10, overlap=10)
    with pytest.raises(ValueError, match="size"):
        TokenChunker(tok, size=0)


def test_index_and_search_texts(ix):
    report = ix.index(CORPUS + [LONG, "   "], show_progress=False)
    assert (report.documents, report.indexed, report.skipped) == (13, 13, 1)
    assert report.chunks == ix.count() == 12 + len(ix.chunker.chunk(LONG))
    assert report.seconds > 0 and "empty" in report.skipped_examples[0][1]
    hits = ix.search(CORPUS[4], k=3)
    assert hits[0].text == CORPUS[4] and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert hits[0].score >= hits[1].score >= hits[2].score
    assert hits[0].metadata == {"doc_id": qc_text_id(CORPUS[4]), "chunk": 0}


def qc_text_id(text: str) -> str:
    from llm2vec_rag.integrations.sources import text_id

    return text_id(text)


def test_ids_are_deterministic_and_reruns_skip_unchanged(ix):
    docs = [{"id": f"d{i}", "text": t, "lang": "en"} for i, t in enumerate(CORPUS[:4])]
    docs.append({"id": "long", "text": LONG, "lang": "mixed"})
    first = ix.index(docs, show_progress=False)
    points = all_points(ix)
    n_long = len(ix.chunker.chunk(LONG))
    expected = {qc.point_id(f"d{i}", 0) for i in range(4)}
    expected |= {qc.point_id("long", c) for c in range(n_long)}
    assert set(points) == expected
    assert qc.point_id("d0", 0) == str(uuid.uuid5(qc.NAMESPACE, "d0\x1f0"))
    again = ix.index(docs, show_progress=False)
    assert (again.unchanged, again.indexed, again.chunks) == (5, 0, 0)
    assert all_points(ix) == points and first.chunks == len(points)


def test_another_encoder_of_the_same_dim_re_embeds_instead_of_mixing(ix, tiny_model_dir):
    from llm2vec_rag import LLM2Vec

    docs = [{"id": f"d{i}", "text": t} for i, t in enumerate(CORPUS[:4])]
    ix.index(docs, show_progress=False)
    causal = LLM2Vec.from_pretrained(tiny_model_dir("llama"), enable_bidirectional=False)
    assert causal.dim == ix.encoder.dim and causal.source != ix.encoder.source
    other = QdrantIndexer(causal, path=":memory:", chunk_size=32, chunk_overlap=8,
                          client=ix.client)
    report = other.index(docs, show_progress=False)
    assert (report.indexed, report.unchanged) == (4, 0)
    points, _ = ix.client.scroll(ix.collection, limit=100, with_vectors=True)
    stored = sorted((p.payload["page_content"], p.vector) for p in points)
    expected = causal.encode_documents([t for t, _ in stored], normalize=True)
    np.testing.assert_allclose([v for _, v in stored], expected, atol=1e-5)
    assert other.index(docs, show_progress=False).unchanged == 4


def test_changed_document_replaces_its_chunks_and_prune_removes_gone_ones(ix):
    ix.index([{"id": "a", "text": LONG}, {"id": "b", "text": CORPUS[0]},
              {"id": "c", "text": CORPUS[1]}], show_progress=False)
    n_long = len(ix.chunker.chunk(LONG))
    assert n_long > 2
    report = ix.index([{"id": "a", "text": CORPUS[2]}, {"id": "b", "text": CORPUS[0]}],
                      prune=True, show_progress=False)
    assert (report.indexed, report.unchanged) == (1, 1)
    assert report.pruned == (n_long - 1) + 1  # stale chunks of a, and all of c
    points = all_points(ix)
    assert set(points) == {qc.point_id("a", 0), qc.point_id("b", 0)}
    assert points[qc.point_id("a", 0)]["page_content"] == CORPUS[2]


def test_filters_on_metadata(ix):
    ix.index([{"id": str(i), "text": t, "lang": "fr" if i == 8 else "en", "n": i}
              for i, t in enumerate(CORPUS)], show_progress=False)
    hits = ix.search(CORPUS[0], k=20, filter={"lang": "fr"})
    assert [h.metadata["n"] for h in hits] == [8]
    hits = ix.search(CORPUS[0], k=20, filter={"n": [1, 2]})
    assert sorted(h.metadata["n"] for h in hits) == [1, 2]
    flt = models.Filter(must_not=[models.FieldCondition(key="metadata.lang",
                                                        match=models.MatchValue(value="en"))])
    assert [h.metadata["n"] for h in ix.search(CORPUS[0], filter=flt)] == [8]
    with pytest.raises(TypeError, match="filter"):
        ix.search("x", filter="lang=fr")


def test_folder_with_bad_files_is_reported_not_fatal(ix, tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text(CORPUS[0], encoding="utf-8")
    (tmp_path / "sub" / "b.md").write_text("# Title\n\n" + CORPUS[1], encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("Caf\xe9 cr\xe8me".encode("latin-1"))
    os.symlink(tmp_path / "missing.txt", tmp_path / "broken.txt")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / "docs.jsonl").write_text(
        json.dumps({"id": "j1", "text": CORPUS[2], "author": "x"}) + "\n"
        + "{not json\n" + json.dumps({"title": "no text"}) + "\n", encoding="utf-8")
    report = ix.index(tmp_path, show_progress=False)
    assert (report.documents, report.skipped) == (3, 4)
    reasons = " | ".join(f"{s}: {r}" for s, r in report.skipped_examples)
    assert "latin1.txt: not UTF-8" in reasons and "broken.txt: unreadable" in reasons
    assert "invalid JSON" in reasons and "'text'" in reasons
    meta = {h.metadata["doc_id"]: h.metadata for h in ix.search("x", k=10)}
    assert set(meta) == {"a.txt", "sub/b.md", "j1"}
    assert meta["j1"]["author"] == "x" and meta["a.txt"]["source"] == str(tmp_path / "a.txt")
    assert "skipped" in str(report)


def test_one_per_line(ix, tmp_path):
    f = tmp_path / "corpus.cor"
    f.write_text("\n".join(CORPUS[:3]) + "\n\n", encoding="utf-8")
    report = ix.index(f, one_per_line=True, show_progress=False)
    assert report.documents == 3
    assert ix.search(CORPUS[1], k=1)[0].metadata["line"] == 2


def test_bad_input_is_named(ix, tiny_encoder):
    with pytest.raises(TypeError, match=r"items\[1\].*'text'"):
        ix.index([{"id": "1", "text": "ok"}, {"id": "2", "body": "no text"}],
                 show_progress=False)
    with pytest.raises(FileNotFoundError, match="list of texts"):
        ix.index("this is a text, not a path", show_progress=False)
    with pytest.raises(TypeError, match="wrap one dict"):
        ix.index({"id": "1", "text": "x"}, show_progress=False)
    with pytest.raises(ValueError, match="chunk_size"):
        QdrantIndexer(tiny_encoder, path=":memory:", chunk_size=10_000)
    with pytest.raises(ValueError, match="distance"):
        QdrantIndexer(tiny_encoder, path=":memory:", distance="hamming")
    with pytest.raises(ValueError, match="No collection"):
        QdrantIndexer(tiny_encoder, "nothing-here", path=":memory:").search("x")


@pytest.mark.parametrize("existing", [
    models.VectorParams(size=32, distance=models.Distance.COSINE),
    models.VectorParams(size=64, distance=models.Distance.EUCLID),
    {"text-dense": models.VectorParams(size=64, distance=models.Distance.COSINE)},
])
def test_collection_from_another_model_is_refused_untouched(tiny_encoder, existing):
    client = QdrantClient(location=":memory:")
    client.create_collection("docs", vectors_config=existing)
    vector = ([0.1] * existing.size if isinstance(existing, models.VectorParams)
              else {"text-dense": [0.1] * 64})
    client.upsert("docs", [models.PointStruct(id=1, vector=vector, payload={"k": "v"})])
    ix = QdrantIndexer(tiny_encoder, client=client)
    with pytest.raises(ValueError, match="Nothing was written|nothing was written"):
        ix.index(CORPUS, show_progress=False)
    assert client.count("docs").count == 1
    assert client.get_collection("docs").config.params.vectors == existing


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
def test_server_down_gives_bounded_retries_then_clear_error(tiny_encoder, caplog,
                                                            monkeypatch):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("QDRANT_API_KEY", "secret-key-123")
    ix = QdrantIndexer(tiny_encoder, url=f"http://127.0.0.1:{port}", retries=2, backoff=0.05,
                       timeout=2)
    start = time.perf_counter()
    with caplog.at_level(logging.WARNING), pytest.raises(ConnectionError) as err:
        ix.index(CORPUS, show_progress=False)
    assert time.perf_counter() - start < 20
    assert "after 3 attempts" in str(err.value) and "resumes" in str(err.value)
    assert len([r for r in caplog.records if "retry" in r.getMessage()]) == 2
    assert "secret-key-123" not in str(err.value) + caplog.text
    assert "secret-key-123" not in repr(ix.__dict__.get("_create_args"))


def test_collection_options_are_built_for_servers():
    assert qc.quantization("scalar").scalar.type == models.ScalarType.INT8
    assert isinstance(qc.quantization("binary"), models.BinaryQuantization)
    assert qc.hnsw({"m": 32, "ef_construct": 200}).m == 32
    assert qc.payload_indexes(["lang", "metadata.year"]) == {
        "metadata.lang": "keyword", "metadata.year": "keyword"}
    assert qc.payload_indexes({"year": "integer"}) == {"metadata.year": "integer"}
    with pytest.raises(ValueError, match="schema"):
        qc.payload_indexes({"year": "int"})
    with pytest.raises(ValueError, match="quantization"):
        qc.quantization("pq")
    assert qc.distance("dot") == models.Distance.DOT


def test_options_accepted_by_the_embedded_store(tiny_encoder, tmp_path):
    with QdrantIndexer(tiny_encoder, path=str(tmp_path / "q"), on_disk=True,
                       hnsw={"m": 8}, quantization="scalar", payload_indexes=["lang"],
                       distance="dot") as ix:
        ix.index(CORPUS[:3], show_progress=False)
        assert ix.client.get_collection("docs").config.params.vectors.distance == "Dot"
    with QdrantIndexer(tiny_encoder, path=str(tmp_path / "q"), distance="dot") as ix:
        assert ix.count() == 3 and ix.search(CORPUS[1], k=1)[0].text == CORPUS[1]
