"""The BM25 sparse encoder: terms, weights, stable ids, Qdrant's IDF scoring, and its LangChain /
LlamaIndex faces."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from qdrant_client import QdrantClient, models

from llm2vec_rag.integrations.sparse import BM25SparseEncoder, sparse_vector_params, term_id

DOCS = ["tar --listed-incremental=FILE makes incremental backups",
        "ls -l lists files in the long format",
        "Running the backup runs tar",
        "the a an of"]


@pytest.fixture(scope="module")
def bm25():
    return BM25SparseEncoder()


def weights(vector) -> dict[int, float]:
    return dict(zip(vector.indices, vector.values))


def test_terms_are_stemmed_lowercased_without_stopwords(bm25):
    terms = bm25.terms(DOCS)
    assert terms[0][:3] == ["tar", "list", "increment"]  # option flags split and stemmed
    assert "l" in terms[1] and "the" not in terms[1]  # single letters stay, stopwords go
    assert terms[2] == ["run", "backup", "run", "tar"]
    assert terms[3] == []
    assert BM25SparseEncoder(None, None).terms(["The Running"]) == [["the", "running"]]


def test_document_weights_are_bm25_term_frequencies(bm25):
    vec = bm25.encode_documents([DOCS[2]])[0]
    k1, b, n = 1.2, 0.75, 4  # "run" twice, "backup" and "tar" once, 4 terms
    norm = k1 * (1 - b + b * n / 128.0)
    assert weights(vec) == pytest.approx({term_id("run"): 2 * (k1 + 1) / (2 + norm),
                                          term_id("backup"): (k1 + 1) / (1 + norm),
                                          term_id("tar"): (k1 + 1) / (1 + norm)})
    assert list(vec.indices) == sorted(vec.indices)
    assert bm25.encode_documents([DOCS[3]])[0].indices == []  # only stopwords: empty, valid
    query = bm25.encode_queries(["running runs tar"])[0]
    assert weights(query) == {term_id("run"): 1.0, term_id("tar"): 1.0}


def test_term_ids_are_crc32_stable_across_processes():
    assert term_id("run") == 1349952704  # zlib.crc32(b"run"): no vocabulary, no hash seed
    code = ("from llm2vec_rag.integrations.sparse import BM25SparseEncoder;"
            "print(BM25SparseEncoder().encode_queries(['Running tar'])[0].indices)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONHASHSEED": "123"}).stdout
    assert out.strip() == str(sorted([term_id("run"), term_id("tar")]))


def test_qdrant_applies_idf_and_a_growing_collection_needs_no_reencoding(bm25):
    client = QdrantClient(":memory:")
    client.create_collection("s", vectors_config={},
                             sparse_vectors_config={"bm25": sparse_vector_params()})
    docs = ["apple common words", "banana common", "cherry common common"]
    vectors = bm25.encode_documents(docs)
    client.upsert("s", [models.PointStruct(id=i, vector={"bm25": v})
                        for i, v in enumerate(vectors)])
    query = bm25.encode_queries(["banana common"])[0]

    def expected(n_docs: int, df_banana: int, df_common: int) -> list[float]:
        idf = [math.log(1 + (n_docs - n + 0.5) / (n + 0.5)) for n in (df_banana, df_common)]
        return [idf[0] * weights(v).get(term_id("banana"), 0.0)
                + idf[1] * weights(v).get(term_id("common"), 0.0) for v in vectors]

    hits = client.query_points("s", query=query, using="bm25", limit=3).points
    assert [h.id for h in hits][0] == 1  # the rare term decides
    scores = {h.id: h.score for h in hits}
    assert [scores[i] for i in range(3)] == pytest.approx(expected(3, 1, 3), rel=1e-5)
    client.upsert("s", [models.PointStruct(id=3, vector={"bm25": bm25.encode_documents(
        ["durian"])[0]})])  # the collection grows; stored vectors stay as they are
    scores = {h.id: h.score for h in client.query_points("s", query=query, using="bm25",
                                                         limit=4).points}
    assert [scores[i] for i in range(3)] == pytest.approx(expected(4, 1, 3), rel=1e-5)


def test_bad_input_is_a_clear_error(bm25):
    with pytest.raises(TypeError, match="single string: wrap it in a list"):
        bm25.encode_documents("tar")
    with pytest.raises(TypeError, match=r"texts\[1\] must be a string, got int"):
        bm25.encode_queries(["tar", 3])
    with pytest.raises(ValueError, match="language='klingon' has no Snowball stemmer"):
        BM25SparseEncoder("klingon")
    with pytest.raises(ValueError, match=r"b must be a number in \[0, 1\]"):
        BM25SparseEncoder(b=2)


def test_langchain_sparse_embeddings_are_the_same_vectors(bm25):
    from langchain_qdrant import SparseEmbeddings, SparseVector

    from llm2vec_rag.integrations.langchain import BM25SparseEmbeddings

    emb = BM25SparseEmbeddings()
    assert isinstance(emb, SparseEmbeddings)
    docs = emb.embed_documents(DOCS[:2])
    assert all(isinstance(v, SparseVector) for v in docs)
    assert [weights(v) for v in docs] == [weights(v) for v in bm25.encode_documents(DOCS[:2])]
    assert weights(emb.embed_query("Running tar")) == weights(
        bm25.encode_queries(["Running tar"])[0])


def test_llamaindex_sparse_functions_are_the_same_vectors(bm25):
    from llm2vec_rag.integrations.llamaindex import bm25_sparse_functions

    doc_fn, query_fn = bm25_sparse_functions()
    indices, values = doc_fn(DOCS[:2])
    assert [dict(zip(i, v)) for i, v in zip(indices, values)] == [
        weights(v) for v in bm25.encode_documents(DOCS[:2])]
    indices, values = query_fn(["Running tar"])
    assert dict(zip(indices[0], values[0])) == weights(bm25.encode_queries(["Running tar"])[0])
