"""LlamaIndex LLM2VecEmbeddings: sync/async query, text and batch; embed_batch_size; retrieval."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding

from llm2vec_rag.integrations.llamaindex import LLM2VecEmbedding, LLM2VecEmbeddings
from tiny import CORPUS

QI = "Given a web search query, retrieve relevant passages that answer the query"


class RecordingEncoder:
    """Our tiny encoder, recording the batches it is asked for (not a framework mock)."""

    def __init__(self, encoder) -> None:
        self.inner, self.calls = encoder, []
        self.dim, self.config, self.tokenizer = encoder.dim, encoder.config, encoder.tokenizer

    def encode(self, *a, **kw):
        return self.inner.encode(*a, **kw)

    def encode_queries(self, texts, **kw):
        self.calls.append(("query", len(texts), kw.get("batch_size")))
        return self.inner.encode_queries(texts, **kw)

    def encode_documents(self, texts, **kw):
        self.calls.append(("text", len(texts), kw.get("batch_size")))
        return self.inner.encode_documents(texts, **kw)


def test_is_a_base_embedding_with_alias(tiny_encoder):
    assert LLM2VecEmbedding is LLM2VecEmbeddings
    emb = LLM2VecEmbedding(encoder=tiny_encoder)
    assert isinstance(emb, BaseEmbedding) and emb.class_name() == "LLM2VecEmbeddings"


def test_query_text_and_batch_sync_and_async(tiny_encoder):
    emb = LLM2VecEmbeddings(encoder=tiny_encoder, query_instruction=QI,
                            text_instruction="Represent the passage")
    texts = CORPUS[:5]
    want_q = tiny_encoder.encode([texts[0]], instruction=QI, normalize=True)[0]
    want_t = tiny_encoder.encode(texts, instruction="Represent the passage", normalize=True)
    np.testing.assert_allclose(emb.get_query_embedding(texts[0]), want_q, atol=1e-5)
    np.testing.assert_allclose(emb.get_text_embedding(texts[1]), want_t[1], atol=1e-5)
    np.testing.assert_allclose(emb.get_text_embedding_batch(texts), want_t, atol=1e-5)

    async def run():
        return await asyncio.gather(emb.aget_query_embedding(texts[0]),
                                    emb.aget_text_embedding(texts[1]),
                                    emb.aget_text_embedding_batch(texts))

    q, t, batch = asyncio.run(run())
    np.testing.assert_allclose(q, want_q, atol=1e-5)
    np.testing.assert_allclose(t, want_t[1], atol=1e-5)
    np.testing.assert_allclose(batch, want_t, atol=1e-5)


def test_default_instructions_come_from_the_encoder(tiny_encoder):
    emb = LLM2VecEmbeddings(encoder=tiny_encoder)
    np.testing.assert_allclose(emb.get_query_embedding("a river bank"),
                               tiny_encoder.encode_queries(["a river bank"], normalize=True)[0],
                               atol=1e-5)


def test_embed_batch_size_is_honoured(tiny_encoder):
    rec = RecordingEncoder(tiny_encoder)
    emb = LLM2VecEmbeddings(encoder=rec, embed_batch_size=4)
    out = emb.get_text_embedding_batch(CORPUS[:10])
    assert len(out) == 10
    assert [(n, bs) for kind, n, bs in rec.calls] == [(4, 4), (4, 4), (2, 4)]
    rec.calls.clear()
    asyncio.run(emb.aget_text_embedding_batch(CORPUS[:10]))
    assert sorted(n for _, n, _ in rec.calls) == [2, 4, 4]


def test_bad_arguments(tiny_encoder):
    with pytest.raises(ValueError, match="model_name"):
        LLM2VecEmbeddings()
    with pytest.raises(ValueError, match="embed_batch_size"):
        LLM2VecEmbeddings(encoder=tiny_encoder, encode_kwargs={"batch_size": 8})
    with pytest.raises(TypeError, match="lacks"):
        LLM2VecEmbeddings(encoder=object())


def test_by_model_name_and_retrieval(tiny_model_dir):
    emb = LLM2VecEmbeddings(model_name=tiny_model_dir(), model_kwargs={"device": "cpu"})
    index = VectorStoreIndex.from_documents([Document(text=t, metadata={"i": i})
                                             for i, t in enumerate(CORPUS)], embed_model=emb)
    hits = index.as_retriever(similarity_top_k=2).retrieve(CORPUS[6])
    assert hits[0].node.get_content() == CORPUS[6] and hits[0].node.metadata["i"] == 6


def test_huggingface_embedding_fields(tiny_encoder, tiny_model_dir):
    """normalize=True by default, device / max_length fields, a real model_name."""
    emb = LLM2VecEmbeddings(encoder=tiny_encoder)
    assert emb.normalize is True and emb.device == "cpu" and emb.max_length == 512
    assert emb.model_name == tiny_model_dir("llama")  # not "LLM2Vec"
    np.testing.assert_allclose(np.linalg.norm(emb.get_text_embedding_batch(CORPUS[:3]), axis=1),
                               1.0, atol=1e-5)
    raw = LLM2VecEmbeddings(encoder=tiny_encoder, normalize=False)
    np.testing.assert_allclose(raw.get_text_embedding(CORPUS[0]),
                               tiny_encoder.encode(CORPUS[0])[0], atol=1e-5)
    st_spelling = LLM2VecEmbeddings(encoder=tiny_encoder,
                                    encode_kwargs={"normalize_embeddings": False})
    assert st_spelling.normalize is False
    short = LLM2VecEmbeddings(model_name=tiny_model_dir("llama"), device="cpu", max_length=16)
    assert short.encoder.config.max_length == 16 and short.device == "cpu"
    with pytest.raises(ValueError, match="max_length= applies when loading by model_name"):
        LLM2VecEmbeddings(encoder=tiny_encoder, max_length=16)
    with pytest.raises(ValueError, match="normalize= and encode_kwargs"):
        LLM2VecEmbeddings(encoder=tiny_encoder, normalize=True,
                          encode_kwargs={"normalize": False})
    with pytest.raises(ValueError, match="device='cpu' and model_kwargs"):
        LLM2VecEmbeddings(model_name=tiny_model_dir("llama"), device="cpu",
                          model_kwargs={"device": "meta"})

