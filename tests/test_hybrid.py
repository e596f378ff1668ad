"""Hybrid collections: a dense and a BM25 vector per chunk, searched dense, sparse or fused in
Qdrant; the same ids, hashes, idempotence and pruning as dense collections."""

from __future__ import annotations

import json

import pytest
from qdrant_client.hybrid.fusion import DEFAULT_RANKING_CONSTANT_K

from llm2vec_rag.cli import main
from llm2vec_rag.integrations.hybrid import DENSE, SPARSE
from llm2vec_rag.integrations.qdrant import QdrantIndexer
from llm2vec_rag.integrations.sparse import BM25SparseEncoder
from tiny import CORPUS

DOCS = [{"id": f"doc-{i}", "text": t, "lang": "fr" if i == 8 else "en"}
        for i, t in enumerate(CORPUS)]


@pytest.fixture
def hybrid(tiny_encoder, tmp_path):
    ix = QdrantIndexer(tiny_encoder, "kb", path=str(tmp_path / "q"), hybrid=True)
    ix.index(DOCS, show_progress=False)
    yield ix
    ix.close()


def test_hybrid_points_carry_both_vectors_with_the_dense_ones_unchanged(hybrid, tiny_encoder,
                                                                        tmp_path):
    info = hybrid.client.get_collection("kb").config.params
    assert set(info.vectors) == {DENSE} and set(info.sparse_vectors) == {SPARSE}
    assert info.sparse_vectors[SPARSE].modifier.value == "idf"
    with QdrantIndexer(tiny_encoder, "plain", path=str(tmp_path / "p")) as dense:
        dense.index(DOCS, show_progress=False)
        plain = {str(p.id): p for p in dense.client.scroll("plain", limit=100,
                                                           with_vectors=True)[0]}
    points = hybrid.client.scroll("kb", limit=100, with_vectors=True)[0]
    assert len(points) == len(CORPUS) and {str(p.id) for p in points} == set(plain)
    bm25 = BM25SparseEncoder()
    for p in points:  # same ids and payload (hashes) as a dense run, dense vector identical
        assert p.vector[DENSE] == pytest.approx(plain[str(p.id)].vector, abs=1e-6)
        assert p.payload == plain[str(p.id)].payload
        expected = bm25.encode_documents([p.payload["page_content"]])[0]
        assert p.vector[SPARSE].indices == expected.indices
    # dense mode on the hybrid collection = the dense collection's search
    with QdrantIndexer(tiny_encoder, "plain", path=str(tmp_path / "p")) as dense:
        want = [(h.id, round(h.score, 5)) for h in dense.search(CORPUS[3], k=5)]
    assert [(h.id, round(h.score, 5)) for h in hybrid.search(CORPUS[3], k=5,
                                                            mode="dense")] == want


def test_reindexing_is_idempotent_and_prunes(hybrid):
    again = hybrid.index(DOCS, show_progress=False)
    assert again.unchanged == len(DOCS) and again.chunks == 0
    changed = [*DOCS[:-2], {**DOCS[-2], "text": "Zebra crossings need ferrous paint."}]
    report = hybrid.index(changed, prune=True, show_progress=False)
    assert report.chunks == 1 and report.pruned == 1
    assert hybrid.count() == len(DOCS) - 1
    hit = hybrid.search("ferrous zebra", k=1, mode="sparse")[0]
    assert hit.metadata["doc_id"] == DOCS[-2]["id"]


def test_sparse_mode_finds_exact_terms_and_filters_apply(hybrid):
    hits = hybrid.search("Montreal weather", k=3, mode="sparse")
    assert hits[0].text == CORPUS[4] and len(hits) == 1  # only one chunk has those terms
    assert [h.metadata["doc_id"] for h in hybrid.search("recherche apprennent", k=3,
                                                         mode="sparse")] == ["doc-8"]
    assert hybrid.search("recherche apprennent", k=3, mode="sparse", filter={"lang": "en"}) == []
    # stemming: "modeles" and "models" share the stem "model"
    assert {h.metadata["doc_id"] for h in hybrid.search("modeles", k=3, mode="sparse")} == {
        "doc-2", "doc-8"}


@pytest.mark.parametrize("fusion", ["rrf", "dbsf"])
def test_hybrid_mode_fuses_the_dense_and_sparse_rankings(hybrid, fusion):
    query = "Qdrant answers nearest neighbour queries"
    fused = hybrid.search(query, k=5, mode="hybrid", fusion=fusion)
    dense = hybrid.search(query, k=50, mode="dense")
    sparse = hybrid.search(query, k=50, mode="sparse")
    assert fused[0].text == CORPUS[3]
    if fusion == "rrf":  # Qdrant's RRF: sum over lists of 1 / (rank + K), rank from 1
        score: dict[str, float] = {}
        for hits in (dense, sparse):
            for rank, h in enumerate(hits, 1):
                score[h.id] = score.get(h.id, 0.0) + 1 / (rank + DEFAULT_RANKING_CONSTANT_K - 1)
        want = sorted(score.values(), reverse=True)[:5]
        assert [h.score for h in fused] == pytest.approx(want, rel=1e-5)
    assert hybrid.search(query, k=5)[0].score == pytest.approx(
        hybrid.search(query, k=5, mode="hybrid")[0].score)  # hybrid is the default here


def test_dense_collections_keep_working_and_refuse_sparse_search(tiny_encoder, tmp_path):
    where = str(tmp_path / "q")
    with QdrantIndexer(tiny_encoder, "old", path=where) as ix:
        ix.index(DOCS, show_progress=False)
        assert ix.search(CORPUS[2], k=1)[0].text == CORPUS[2]  # default: dense
        for mode in ("sparse", "hybrid"):
            with pytest.raises(ValueError, match=r"dense vectors only .* --hybrid"):
                ix.search("x", mode=mode)
        with pytest.raises(ValueError, match="mode must be one of dense, sparse, hybrid"):
            ix.search("x", mode="bm25")
    with QdrantIndexer(tiny_encoder, "old", path=where, hybrid=True) as ix:
        with pytest.raises(ValueError, match=r"dense vectors only .*Nothing was written"):
            ix.index([{"id": "new", "text": "new text"}], show_progress=False)
        assert ix.count() == len(DOCS)


def test_an_indexer_without_hybrid_adopts_a_hybrid_collection(hybrid, tiny_encoder):
    where = hybrid.store.where
    hybrid.close()
    with QdrantIndexer(tiny_encoder, "kb", path=where) as ix:  # no hybrid flag
        report = ix.index([*DOCS, {"id": "extra", "text": "Gzip compresses tarballs."}],
                          show_progress=False)
        assert report.chunks == 1 and report.unchanged == len(DOCS)
        assert ix.search("tarballs", k=1, mode="sparse")[0].metadata["doc_id"] == "extra"
        with pytest.raises(ValueError, match="BM25 vectors made with"):
            QdrantIndexer(tiny_encoder, "kb", client=ix.client,
                          sparse_encoder=BM25SparseEncoder(k1=2.0)).search("x")


def test_cli_index_hybrid_and_search_modes(tiny_model_dir, tmp_path, capsys):
    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(json.dumps(d) for d in DOCS), encoding="utf-8")
    flags = ["--model", tiny_model_dir(), "--device", "cpu", "--collection", "kb",
             "--qdrant-path", str(tmp_path / "q")]
    assert main(["index", str(docs), *flags, "--hybrid", "--no-progress"]) == 0
    capsys.readouterr()
    for mode in ("sparse", "hybrid", "dense"):
        assert main(["search", "shells sea shore", *flags, "--mode", mode, "--fusion", "dbsf",
                     "-k", "2", "--json"]) == 0
        hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert len(hits) == (1 if mode == "sparse" else 2)  # one chunk has these terms
        if mode != "dense":
            assert hits[0]["metadata"]["doc_id"] == "doc-11"
    flags[-3] = "plain"
    assert main(["index", str(docs), *flags, "--no-progress"]) == 0
    assert main(["search", "x", *flags, "--mode", "hybrid"]) == 2
    assert "re-index it into a new collection with hybrid=True" in capsys.readouterr().err


# -- interop: LangChain's and LlamaIndex's Qdrant stores, hybrid, both directions -----------
QUERY = "shells sea shore Montreal"  # exact terms of two documents


def test_langchain_searches_our_hybrid_collection(hybrid, tiny_encoder):
    from langchain_qdrant import QdrantVectorStore, RetrievalMode

    from llm2vec_rag.integrations.langchain import BM25SparseEmbeddings, LLM2VecEmbeddings

    def store(mode):
        return QdrantVectorStore(client=hybrid.client, collection_name="kb",
                                 embedding=LLM2VecEmbeddings(encoder=tiny_encoder),
                                 sparse_embedding=BM25SparseEmbeddings(), retrieval_mode=mode,
                                 vector_name=DENSE, sparse_vector_name=SPARSE)

    theirs = store(RetrievalMode.SPARSE).similarity_search_with_score(QUERY, k=3)
    ours = hybrid.search(QUERY, k=3, mode="sparse")
    assert [d.page_content for d, _ in theirs] == [h.text for h in ours]
    assert [s for _, s in theirs] == pytest.approx([h.score for h in ours], rel=1e-5)
    fused = store(RetrievalMode.HYBRID).similarity_search_with_score(QUERY, k=3)
    rrf: dict[str, float] = {}  # LangChain fuses its top k of each side with Qdrant's RRF
    for hits in (hybrid.search(QUERY, k=3, mode="dense"), ours):
        for rank, h in enumerate(hits, 1):
            rrf[h.text] = rrf.get(h.text, 0.0) + 1 / (rank + DEFAULT_RANKING_CONSTANT_K - 1)
    assert [s for _, s in fused] == pytest.approx(sorted(rrf.values(), reverse=True)[:3])
    assert CORPUS[11] in {d.page_content for d, _ in fused}
    assert {d.metadata["doc_id"] for d, _ in fused} <= {f"doc-{i}" for i in range(12)}
    dense = store(RetrievalMode.DENSE).similarity_search_with_score(CORPUS[3], k=3)
    assert [d.page_content for d, _ in dense] == [h.text for h in hybrid.search(
        CORPUS[3], k=3, mode="dense")]


def test_we_search_a_hybrid_collection_langchain_wrote(tiny_encoder):
    from langchain_qdrant import QdrantVectorStore, RetrievalMode
    from qdrant_client import models

    from llm2vec_rag.integrations.langchain import BM25SparseEmbeddings, LLM2VecEmbeddings

    store = QdrantVectorStore.from_texts(
        CORPUS, LLM2VecEmbeddings(encoder=tiny_encoder), location=":memory:",
        collection_name="lc", metadatas=[{"i": i} for i in range(len(CORPUS))],
        sparse_embedding=BM25SparseEmbeddings(), retrieval_mode=RetrievalMode.HYBRID,
        vector_name=DENSE, sparse_vector_name=SPARSE,
        sparse_vector_params={"modifier": models.Modifier.IDF})
    ix = QdrantIndexer(tiny_encoder, "lc", client=store.client)
    hits = ix.search(QUERY, k=2)  # hybrid: the collection has both vectors
    assert {h.text for h in hits} == {CORPUS[4], CORPUS[11]}
    sparse = ix.search("sea shells", k=1, mode="sparse")[0]
    assert sparse.text == CORPUS[11] and sparse.metadata == {"i": 11}
    assert ix.search(CORPUS[5], k=1, mode="dense")[0].text == CORPUS[5]


def test_llamaindex_searches_our_hybrid_collection(hybrid, tiny_encoder):
    from llama_index.core import VectorStoreIndex
    from llama_index.vector_stores.qdrant import QdrantVectorStore

    from llm2vec_rag.integrations.llamaindex import LLM2VecEmbedding, bm25_sparse_functions

    doc_fn, query_fn = bm25_sparse_functions()
    store = QdrantVectorStore(client=hybrid.client, collection_name="kb", enable_hybrid=True,
                              dense_vector_name=DENSE, sparse_vector_name=SPARSE,
                              sparse_doc_fn=doc_fn, sparse_query_fn=query_fn)
    index = VectorStoreIndex.from_vector_store(store, embed_model=LLM2VecEmbedding(
        encoder=tiny_encoder))
    fused = index.as_retriever(similarity_top_k=3, sparse_top_k=3,
                               vector_store_query_mode="hybrid").retrieve(QUERY)
    assert CORPUS[11] in {n.node.get_content() for n in fused}  # LlamaIndex fuses itself
    assert {n.node.ref_doc_id for n in fused} <= {f"doc-{i}" for i in range(12)}
    sparse = index.as_retriever(similarity_top_k=2, sparse_top_k=2,
                                vector_store_query_mode="sparse").retrieve(QUERY)
    assert [n.node.get_content() for n in sparse] == [
        h.text for h in hybrid.search(QUERY, k=2, mode="sparse")]


def test_we_search_a_hybrid_collection_llamaindex_wrote(tiny_encoder):
    from llama_index.core import Document, StorageContext, VectorStoreIndex
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    from llm2vec_rag.integrations.llamaindex import LLM2VecEmbedding, bm25_sparse_functions
    from llm2vec_rag.integrations.sparse import sparse_vector_params

    client = QdrantClient(":memory:")
    doc_fn, query_fn = bm25_sparse_functions()
    store = QdrantVectorStore(client=client, collection_name="li", enable_hybrid=True,
                              dense_vector_name=DENSE, sparse_vector_name=SPARSE,
                              sparse_doc_fn=doc_fn, sparse_query_fn=query_fn,
                              sparse_config=sparse_vector_params())
    VectorStoreIndex.from_documents(
        [Document(text=t, doc_id=f"d{i}") for i, t in enumerate(CORPUS)],
        storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=LLM2VecEmbedding(encoder=tiny_encoder))
    ix = QdrantIndexer(tiny_encoder, "li", client=client)
    assert {h.text for h in ix.search(QUERY, k=2)} == {CORPUS[4], CORPUS[11]}
    hit = ix.search("sea shells", k=1, mode="sparse")[0]
    assert hit.text == CORPUS[11]
    assert ix.search(CORPUS[5], k=1, mode="dense")[0].text == CORPUS[5]


def test_ray_writes_the_same_hybrid_collection(tiny_model_dir, tiny_encoder, tmp_path):
    ray = pytest.importorskip("ray")
    from qdrant_client import QdrantClient

    from llm2vec_rag.integrations.ray import index_dataset

    ray_store, ix_store = str(tmp_path / "ray"), str(tmp_path / "ix")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        report = index_dataset(ray.data.from_items(DOCS), tiny_model_dir("llama"),
                               collection="kb", path=ray_store, batch_size=4, hybrid=True)
    finally:
        ray.shutdown()
    with QdrantIndexer(tiny_encoder, "kb", path=ix_store, batch_size=4, hybrid=True) as ix:
        single = ix.index(DOCS, show_progress=False)
    assert (report.indexed, report.chunks) == (single.indexed, single.chunks) == (12, 12)

    def read(store):
        client = QdrantClient(path=store)
        try:
            return {str(p.id): p for p in client.scroll("kb", limit=100, with_vectors=True)[0]}
        finally:
            client.close()

    a, b = read(ray_store), read(ix_store)
    assert a.keys() == b.keys()
    for pid in a:
        assert a[pid].payload == b[pid].payload
        assert a[pid].vector[SPARSE] == b[pid].vector[SPARSE]
        assert a[pid].vector[DENSE] == pytest.approx(b[pid].vector[DENSE], abs=1e-5)


def test_the_docs_hybrid_snippet_runs(tiny_model_dir, tmp_path):
    import re
    import subprocess
    import sys
    from pathlib import Path

    page = Path(__file__).resolve().parents[1] / "docs" / "integrations.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.S)
    block = next(b for b in blocks if "hybrid=True" in b)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "tar.txt").write_text("tar --listed-incremental=FILE makes "
                                               "incremental backups.")
    script = (f"from llm2vec_rag import LLM2Vec\nmodel = LLM2Vec.from_pretrained("
              f"{tiny_model_dir()!r})\n{block}\nprint(hits[0].text)\n")
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "listed-incremental" in run.stdout
