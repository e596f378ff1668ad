"""Late chunking in the indexers: QdrantIndexer(late_chunking=True), `index --late-chunking`
and index_dataset(late_chunking=True) store late-chunked vectors for the very chunks (ids,
payloads) naive chunking stores; the hash records the mode, so toggling it re-embeds."""

from __future__ import annotations

import numpy as np
import pytest
from qdrant_client import QdrantClient

from llm2vec_rag.cli import main
from llm2vec_rag.integrations.chunking import TokenChunker
from llm2vec_rag.integrations.qdrant import QdrantIndexer
from tiny import CORPUS

LONG = " ".join(CORPUS)  # several 32-token chunks
DOCS = [{"id": "long", "text": LONG, "lang": "en"},
        {"id": "short", "text": CORPUS[3], "lang": "en"},
        {"id": "mixed", "text": " ".join(CORPUS[4:8]), "lang": "fr"}]


def stored(client: QdrantClient, collection: str = "kb") -> dict:
    found, _ = client.scroll(collection, limit=10_000, with_payload=True, with_vectors=True)
    return {str(p.id): (p.payload, np.array(p.vector, dtype=np.float32)) for p in found}


def indexer(encoder, path: str, late: bool) -> QdrantIndexer:
    return QdrantIndexer(encoder, "kb", path=path, chunk_size=32, chunk_overlap=8,
                         batch_size=4, late_chunking=late)


def test_same_points_with_late_chunked_vectors(tiny_encoder, tmp_path):
    with indexer(tiny_encoder, str(tmp_path / "naive"), False) as ix:
        ix.index(DOCS, show_progress=False)
        naive = stored(ix.client)
    with indexer(tiny_encoder, str(tmp_path / "late"), True) as ix:
        report = ix.index(DOCS, show_progress=False)
        late = stored(ix.client)
        chunker = ix.chunker
    assert report.chunks == len(late) == len(naive) > 3
    assert late.keys() == naive.keys()
    for pid, (payload, vector) in late.items():
        want = {k: v for k, v in naive[pid][0].items() if k != "doc_hash"}
        assert {k: v for k, v in payload.items() if k != "doc_hash"} == want
        np.testing.assert_allclose(np.linalg.norm(vector), 1.0, atol=1e-5)
    # each chunk's vector is encode_chunks of its span in the whole document
    spans = chunker.spans(LONG)
    want = tiny_encoder.encode_chunks(LONG, spans, normalize=True,
                                      instruction=tiny_encoder.config.document_instruction)
    got = sorted((p["metadata"]["chunk"], v) for p, v in late.values()
                 if p["metadata"]["doc_id"] == "long")
    assert len(got) == len(spans)
    np.testing.assert_allclose(np.stack([v for _, v in got]), want, atol=1e-5)
    # a one-chunk document: its span is the whole text, so late equals naive
    for pid, (payload, vector) in late.items():
        if payload["metadata"]["doc_id"] == "short":
            np.testing.assert_allclose(vector, naive[pid][1], atol=1e-5)
        elif payload["metadata"]["doc_id"] == "long":
            assert np.abs(vector - naive[pid][1]).max() > 1e-4  # context changes it


def test_reruns_skip_and_toggling_re_embeds(tiny_encoder, tmp_path):
    path = str(tmp_path / "q")
    with indexer(tiny_encoder, path, True) as ix:
        first = ix.index(DOCS, show_progress=False)
        again = ix.index(DOCS, show_progress=False)
        late = stored(ix.client)
    assert (first.indexed, again.indexed, again.unchanged) == (3, 0, 3)
    with indexer(tiny_encoder, path, False) as ix:
        naive_run = ix.index(DOCS, show_progress=False)
        naive = stored(ix.client)
    assert (naive_run.indexed, naive_run.unchanged, naive_run.pruned) == (3, 0, 0)
    assert naive.keys() == late.keys()
    changed = [pid for pid in late if np.abs(late[pid][1] - naive[pid][1]).max() > 1e-4]
    assert changed  # the vectors really were re-embedded
    with indexer(tiny_encoder, path, True) as ix:
        back = ix.index(DOCS, show_progress=False)
        assert back.indexed == 3
        for pid, (_, vector) in stored(ix.client).items():
            np.testing.assert_allclose(vector, late[pid][1], atol=1e-5)


def test_resume_and_prune(tiny_encoder, tmp_path):
    """A run that stopped after the first document resumes with it unchanged; a changed
    document replaces its chunks (stale ones deleted); prune drops documents gone."""
    path = str(tmp_path / "q")
    with indexer(tiny_encoder, path, True) as ix:
        ix.index(DOCS[:1], show_progress=False)
        resumed = ix.index(DOCS, show_progress=False)
        assert (resumed.unchanged, resumed.indexed) == (1, 2)
        shorter = [{**DOCS[0], "text": " ".join(CORPUS[:3])}, DOCS[1]]
        after = ix.index(shorter, prune=True, show_progress=False)
        points = stored(ix.client)
    assert after.indexed == 1 and after.unchanged == 1 and after.pruned > 0
    assert {p["metadata"]["doc_id"] for p, _ in points.values()} == {"long", "short"}
    n = TokenChunker(tiny_encoder.tokenizer, 32, 8).chunk
    # the stale chunks of the shortened document, then every chunk of the one gone
    assert after.pruned == len(n(LONG)) - len(n(shorter[0]["text"])) + len(n(DOCS[2]["text"]))


def test_chunker_spans_are_the_chunks(tiny_encoder):
    chunker = TokenChunker(tiny_encoder.tokenizer, 20, 5, late=True)
    spans = chunker.spans(LONG)
    assert [LONG[a:b] for a, b in spans] == chunker.chunk(LONG)
    assert chunker.spans("short text") == [(0, 10)]


def test_cli_index_late_chunking(tiny_model_dir, tmp_path, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "long.txt").write_text(LONG, encoding="utf-8")
    (docs / "short.txt").write_text(CORPUS[2], encoding="utf-8")
    store = str(tmp_path / "q")
    flags = ["--model", tiny_model_dir(), "--device", "cpu", "--collection", "kb",
             "--qdrant-path", store, "--chunk-size", "32", "--no-progress"]
    assert main(["index", str(docs), *flags, "--late-chunking"]) == 0
    assert "2 documents (2 indexed" in capsys.readouterr().err
    assert main(["index", str(docs), *flags, "--late-chunking"]) == 0
    assert "2 unchanged" in capsys.readouterr().err
    assert main(["index", str(docs), *flags]) == 0  # naive now: re-embedded
    assert "2 documents (2 indexed" in capsys.readouterr().err


@pytest.mark.slow  # a Ray cluster: about a minute on 2 cores
@pytest.mark.timeout(900)  # a cluster that never reports back fails instead of hanging
def test_ray_index_dataset_late_chunking_matches_the_indexer(tiny_model_dir, tiny_encoder,
                                                             tmp_path):
    ray = pytest.importorskip("ray")
    from llm2vec_rag.integrations.ray import index_dataset

    ray_store, ix_store = str(tmp_path / "ray"), str(tmp_path / "ix")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        report = index_dataset(ray.data.from_items(DOCS), tiny_model_dir("llama"),
                               collection="kb", path=ray_store, chunk_size=32,
                               chunk_overlap=8, batch_size=4, late_chunking=True)
    finally:
        ray.shutdown()
    with indexer(tiny_encoder, ix_store, True) as ix:
        single = ix.index(DOCS, show_progress=False)
        want = stored(ix.client)
    client = QdrantClient(path=ray_store)
    try:
        got = stored(client)
    finally:
        client.close()
    assert report.chunks == single.chunks and got.keys() == want.keys()
    for pid in got:
        assert got[pid][0] == want[pid][0]  # payload, doc_hash (late flag) included
        np.testing.assert_allclose(got[pid][1], want[pid][1], atol=1e-5)


def test_an_encoder_without_encode_chunks_is_refused_before_any_write(tiny_encoder, tmp_path):
    class Plain:  # the encoder surface the indexer needs, but no late chunking
        def __init__(self, inner):
            self.inner = inner
            self.config, self.dim, self.tokenizer = inner.config, inner.dim, inner.tokenizer

        def encode(self, *args, **kwargs):
            return self.inner.encode(*args, **kwargs)

        def encode_queries(self, *args, **kwargs):
            return self.inner.encode_queries(*args, **kwargs)

        def encode_documents(self, *args, **kwargs):
            return self.inner.encode_documents(*args, **kwargs)

        def max_text_tokens(self, instruction=None):
            return self.inner.max_text_tokens(instruction)

    with pytest.raises(TypeError, match="encode_chunks"):
        indexer(Plain(tiny_encoder), str(tmp_path / "q"), True)
    assert not (tmp_path / "q").exists()
    indexer(Plain(tiny_encoder), str(tmp_path / "ok"), False).close()  # naive still works
