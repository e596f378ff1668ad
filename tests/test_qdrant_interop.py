"""Collections written by QdrantIndexer, queried with LangChain's and LlamaIndex's own stores."""

from __future__ import annotations

import pytest

from llm2vec_rag.integrations.qdrant import QdrantIndexer
from tiny import CORPUS

QI = "Given a web search query, retrieve relevant passages that answer the query"
DOCS = [{"id": f"doc-{i}", "text": t, "lang": "fr" if i == 8 else "en"}
        for i, t in enumerate(CORPUS)]


@pytest.fixture
def indexed(tiny_encoder, tmp_path):
    ix = QdrantIndexer(tiny_encoder, "kb", path=str(tmp_path / "qdrant"))
    ix.index(DOCS, show_progress=False)
    yield ix
    ix.close()


def test_langchain_qdrant_reads_our_collection(indexed, tiny_encoder):
    from langchain_qdrant import QdrantVectorStore

    from llm2vec_rag.integrations.langchain import LLM2VecEmbeddings

    store = QdrantVectorStore(client=indexed.client, collection_name="kb",
                              embedding=LLM2VecEmbeddings(encoder=tiny_encoder))
    query = "Which database answers nearest neighbour queries?"
    theirs = store.similarity_search_with_score(query, k=3)
    ours = indexed.search(query, k=3)
    assert [d.page_content for d, _ in theirs] == [h.text for h in ours]
    assert [s for _, s in theirs] == pytest.approx([h.score for h in ours], abs=1e-4)
    doc = theirs[0][0]
    assert doc.metadata["doc_id"] == ours[0].metadata["doc_id"]
    assert doc.metadata["lang"] in ("en", "fr") and doc.metadata["chunk"] == 0
    from qdrant_client import models

    only_fr = models.Filter(must=[models.FieldCondition(
        key="metadata.lang", match=models.MatchValue(value="fr"))])
    fr = store.similarity_search(query, k=5, filter=only_fr)
    assert [d.page_content for d in fr] == [CORPUS[8]]
    retriever = store.as_retriever(search_kwargs={"k": 1})
    assert retriever.invoke(CORPUS[3])[0].page_content == CORPUS[3]


def test_llamaindex_qdrant_reads_our_collection(indexed, tiny_encoder):
    from llama_index.core import VectorStoreIndex
    from llama_index.core.vector_stores import MetadataFilter, MetadataFilters
    from llama_index.vector_stores.qdrant import QdrantVectorStore

    from llm2vec_rag.integrations.llamaindex import LLM2VecEmbedding

    store = QdrantVectorStore(client=indexed.client, collection_name="kb")
    index = VectorStoreIndex.from_vector_store(store, embed_model=LLM2VecEmbedding(
        encoder=tiny_encoder))
    query = "Which database answers nearest neighbour queries?"
    theirs = index.as_retriever(similarity_top_k=3).retrieve(query)
    ours = indexed.search(query, k=3)
    assert [n.node.get_content() for n in theirs] == [h.text for h in ours]
    assert [n.score for n in theirs] == pytest.approx([h.score for h in ours], abs=1e-4)
    node = theirs[0].node
    assert node.ref_doc_id == ours[0].metadata["doc_id"] and node.node_id == ours[0].id
    assert node.metadata["lang"] in ("en", "fr")
    fr = index.as_retriever(similarity_top_k=5, filters=MetadataFilters(
        filters=[MetadataFilter(key="metadata.lang", value="fr")])).retrieve(query)
    assert [n.node.get_content() for n in fr] == [CORPUS[8]]
    # LlamaIndex can manage the documents we wrote: delete one by its ref_doc_id
    store.delete(ref_doc_id="doc-3")
    assert indexed.count() == len(CORPUS) - 1


def test_we_read_a_collection_langchain_wrote(tiny_encoder):
    from langchain_qdrant import QdrantVectorStore

    from llm2vec_rag.integrations.langchain import LLM2VecEmbeddings

    store = QdrantVectorStore.from_texts(
        CORPUS, LLM2VecEmbeddings(encoder=tiny_encoder), location=":memory:",
        collection_name="lc", metadatas=[{"i": i} for i in range(len(CORPUS))])
    ix = QdrantIndexer(tiny_encoder, "lc", client=store.client)
    hit = ix.search(CORPUS[5], k=1)[0]
    assert hit.text == CORPUS[5] and hit.metadata == {"i": 5}
