"""QdrantStore, the public store under the indexer: option groups, reads and writes, search by
vector; collections shared with LangChain and LlamaIndex; one encoder per collection,
recognised by content."""

from __future__ import annotations

import shutil

import pytest
from qdrant_client import QdrantClient

from llm2vec_rag.integrations import (
    ChunkOptions,
    CollectionOptions,
    Connection,
    QdrantIndexer,
    QdrantStore,
    WriteOptions,
)
from llm2vec_rag.integrations.identity import ENCODER_ID, identity_of
from tiny import CORPUS


def test_option_groups_and_the_flat_keywords_build_the_same_indexer(tiny_encoder):
    flat = QdrantIndexer(tiny_encoder, "c", path=":memory:", chunk_size=32, chunk_overlap=4,
                         batch_size=8, quantization="scalar", retries=2)
    grouped = QdrantIndexer(tiny_encoder, "c", connection=Connection(path=":memory:",
                                                                     retries=2),
                            options=CollectionOptions(quantization="scalar"),
                            chunking=ChunkOptions(32, 4), writing=WriteOptions(8))
    for ix in (flat, grouped):
        assert (ix.chunker.size, ix.chunker.overlap, ix.batch_size) == (32, 4, 8)
        assert ix.store.options.quantization == "scalar"
        assert ix.store.connection.retries == 2 and ix.retries == 0  # local: no retries
        ix.close()
    with pytest.raises(TypeError, match="chunk_size= and chunking= both given"):
        QdrantIndexer(tiny_encoder, chunk_size=8, chunking=ChunkOptions(8))
    with pytest.raises(TypeError, match="unexpected keyword argument 'chunk_sise'"):
        QdrantIndexer(tiny_encoder, path=":memory:", chunk_sise=8)
    with pytest.raises(ValueError, match="either path= .* or url="):
        Connection(path="x", url="http://127.0.0.1:1")


def test_the_ray_indexers_flat_keywords_map_onto_its_groups(tiny_encoder):
    from llm2vec_rag.integrations import Columns, Workers
    from llm2vec_rag.integrations.options import split_keywords

    groups = {Connection: None, ChunkOptions: None, WriteOptions: None, Workers: None,
              Columns: None}
    flat = split_keywords(dict(path="q", chunk_size=16, batch_size=4, concurrency=2,
                               num_cpus=0.75, threads_per_worker=1, encode_batch_size=8,
                               prepare_num_cpus=0.25, text_column="body", id_column="key",
                               metadata_column="meta"), groups, "index_dataset")
    assert flat[Workers] == Workers(concurrency=2, num_cpus=0.75, threads=1,
                                    encode_batch_size=8, prepare_num_cpus=0.25)
    assert flat[Columns] == Columns(text="body", id="key", metadata="meta")
    assert (flat[ChunkOptions].size, flat[WriteOptions].batch_size) == (16, 4)
    with pytest.raises(TypeError, match="concurrency= and workers= both given"):
        split_keywords({"concurrency": 2}, {**groups, Workers: Workers()}, "index_dataset")
    with pytest.raises(TypeError, match="unexpected keyword argument 'concurrency'"):
        QdrantIndexer(tiny_encoder, path=":memory:", concurrency=2)  # the Ray indexer's only


def test_store_reads_writes_and_searches_by_vector(tiny_encoder):
    with QdrantIndexer(tiny_encoder, path=":memory:") as ix:
        ix.index([{"id": f"d{i}", "text": t} for i, t in enumerate(CORPUS)],
                 show_progress=False)
        store = QdrantStore(ix.collection, client=ix.client)
        identity = identity_of(tiny_encoder)
        recorded = store.ensure(identity.dim, identity.record(), create=False)
        assert recorded[ENCODER_ID] == identity.content_id != ""
        vec = tiny_encoder.encode_queries([CORPUS[3]], normalize=True)[0]
        hits = store.search(vec, k=2)
        assert len(hits) == 2 and hits[0].payload["doc_id"] == "d3"
        assert store.search(vec, k=1, filter={"doc_id": "d5"})[0].payload["doc_id"] == "d5"
        assert store.count() == len(CORPUS) == len(store.bookkeeping())
        assert {p["doc_id"] for _, p in store.scroll(["doc_id"])} == {
            f"d{i}" for i in range(len(CORPUS))}
        assert store.prune(lambda doc_id: doc_id != "d0") == 1
        assert store.count() == len(CORPUS) - 1
        store.delete_collection()
        assert not store.exists() and ix.count() == 0


def _foreign_writers(client: QdrantClient, collection: str, tiny_encoder) -> None:
    """LlamaIndex and LangChain write three documents each into the same collection."""
    from langchain_core.documents import Document
    from langchain_qdrant import QdrantVectorStore as LangChainStore
    from llama_index.core import Document as LlamaDocument
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.vector_stores.qdrant import QdrantVectorStore as LlamaStore

    from llm2vec_rag.integrations.langchain import LLM2VecEmbeddings
    from llm2vec_rag.integrations.llamaindex import LLM2VecEmbedding

    LangChainStore(client=client, collection_name=collection,
                   embedding=LLM2VecEmbeddings(encoder=tiny_encoder)).add_documents(
        [Document(page_content=t, metadata={"by": "langchain"}) for t in CORPUS[:3]])
    store = LlamaStore(client=client, collection_name=collection)
    VectorStoreIndex.from_documents(
        [LlamaDocument(text=t, doc_id=f"li-{i}") for i, t in enumerate(CORPUS[3:6])],
        storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=LLM2VecEmbedding(encoder=tiny_encoder))


def test_prune_and_reindex_leave_other_tools_points_alone(tiny_encoder, tmp_path):
    """Issue 31 (1): LlamaIndex's payloads carry doc_id too; prune deleted them."""
    with QdrantIndexer(tiny_encoder, "shared", path=str(tmp_path / "q")) as ix:
        ix.index([{"id": f"ours-{i}", "text": t} for i, t in enumerate(CORPUS[6:9])],
                 show_progress=False)
        _foreign_writers(ix.client, "shared", tiny_encoder)
        assert ix.count() == 9
        report = ix.index([{"id": "ours-0", "text": CORPUS[6]}], prune=True,
                          show_progress=False)
        assert (report.unchanged, report.pruned) == (1, 2)
        points, _ = ix.client.scroll("shared", limit=100, with_payload=True)
        kept = sorted(p.payload.get("doc_id") or p.payload["metadata"].get("by")
                      for p in points)
        assert kept == ["langchain"] * 3 + ["li-0", "li-1", "li-2", "ours-0"]
        again = ix.index([{"id": "ours-0", "text": CORPUS[6]}], prune=True,
                         show_progress=False)
        assert (again.unchanged, again.pruned) == (1, 0) and ix.count() == 7


def test_partial_reindex_with_another_encoder_is_refused_not_mixed(tiny_encoder,
                                                                  tiny_model_dir):
    """Issue 31 (3): a partial re-index with another encoder of the same dim mixed models."""
    from llm2vec_rag import LLM2Vec

    docs = [{"id": f"d{i}", "text": t} for i, t in enumerate(CORPUS[:8])]
    causal = LLM2Vec.from_pretrained(tiny_model_dir("llama"), enable_bidirectional=False)
    with QdrantIndexer(tiny_encoder, path=":memory:") as ix:
        ix.index(docs, show_progress=False)
        other = QdrantIndexer(causal, client=ix.client)
        with pytest.raises(ValueError, match=r"6 other documents .*'d2'.*mixes two models"):
            other.index(docs[:2], show_progress=False)
        for searcher in (ix, other, QdrantIndexer(tiny_encoder, client=ix.client)):
            with pytest.raises(ValueError, match="holds vectors of two encoders"):
                searcher.search(CORPUS[0])
        report = other.index(docs[:2], prune=True, show_progress=False)
        assert (report.unchanged, report.pruned) == (2, 6) and ix.count() == 2
        assert other.search(CORPUS[0], k=1)[0].text == CORPUS[0]  # one encoder again
        with pytest.raises(ValueError, match="written by the encoder"):
            QdrantIndexer(tiny_encoder, client=ix.client).search(CORPUS[0])


def test_a_moved_model_is_the_same_encoder(tiny_model_dir, tmp_path):
    """The collection knows its encoder by content: a moved checkout neither re-embeds nor
    refuses; a record written before content ids (path only) is accepted and upgraded."""
    from llm2vec_rag import LLM2Vec

    first = shutil.copytree(tiny_model_dir("llama"), tmp_path / "checkout-a" / "model")
    enc = LLM2Vec.from_pretrained(str(first))
    docs = [{"id": f"d{i}", "text": t} for i, t in enumerate(CORPUS[:5])]
    store = str(tmp_path / "q")
    with QdrantIndexer(enc, path=store) as ix:
        ix.index(docs, show_progress=False)
        ix.store.record({ENCODER_ID: None})  # a record as older versions wrote it
    moved = shutil.move(str(tmp_path / "checkout-a"), tmp_path / "checkout-b")
    enc = LLM2Vec.from_pretrained(str(moved / "model"))
    with QdrantIndexer(enc, path=store) as ix:
        with pytest.raises(ValueError, match="written by the encoder"):
            ix.search(CORPUS[0])  # an old record whose files are gone cannot be verified
    shutil.copytree(moved, tmp_path / "checkout-a")  # the old path exists again
    with QdrantIndexer(enc, path=store) as ix:
        assert ix.search(CORPUS[0], k=1)[0].text == CORPUS[0]
        report = ix.index(docs, show_progress=False)
        assert (report.unchanged, report.indexed) == (5, 0)
        assert ix.store.recorded[ENCODER_ID] == identity_of(enc).content_id
    shutil.rmtree(tmp_path / "checkout-a")  # now the record carries the content id
    with QdrantIndexer(enc, path=store) as ix:
        assert ix.search(CORPUS[1], k=1)[0].text == CORPUS[1]
        assert ix.index(docs, show_progress=False).unchanged == 5


def test_a_locked_embedded_store_names_its_folder_and_the_way_out(tiny_encoder, tiny_model_dir,
                                                                 tmp_path, capsys,
                                                                 monkeypatch):
    """The message said "None" and the Python url= to a command-line user."""
    from llm2vec_rag.cli import main

    monkeypatch.chdir(tmp_path)
    holder = QdrantClient(path="qdrant_data")  # the default folder, held by another client
    try:
        with pytest.raises(RuntimeError) as err:
            QdrantIndexer(tiny_encoder)
        message = str(err.value)
        assert str(tmp_path / "qdrant_data") in message and "None" not in message
        assert "another process" in message and "url=" in message
        (tmp_path / "a.txt").write_text(CORPUS[0], encoding="utf-8")
        assert main(["index", "a.txt", "--model", tiny_model_dir(), "--device", "cpu",
                     "--no-progress"]) == 1
        cli = capsys.readouterr().err
        assert str(tmp_path / "qdrant_data") in cli and "--qdrant-url" in cli
        assert "None" not in cli and " url=" not in cli
    finally:
        holder.close()


def test_the_option_groups_snippet_of_the_docs_runs(tiny_encoder, tmp_path, monkeypatch):
    import re
    import textwrap
    from pathlib import Path

    page = Path(__file__).resolve().parents[1] / "docs" / "integrations.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.S)
    block = textwrap.dedent(next(b for b in blocks if "QdrantStore(" in b))
    monkeypatch.chdir(tmp_path)
    namespace = {"model": tiny_encoder}
    exec(compile(block, "docs/integrations.md", "exec"), namespace)  # noqa: S102
    hits = namespace["hits"]
    assert hits[0].payload["page_content"] == "Bushfires threaten homes west of Sydney."
    assert namespace["ix"].store.options.quantization == "scalar"
    assert namespace["ix"].chunker.size == 64
