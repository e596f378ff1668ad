"""LangChain LLM2VecEmbeddings: the langchain-tests conformance suites plus our own checks."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from llm2vec_rag.integrations.langchain import LLM2VecEmbeddings

QI = "Given a web search query, retrieve relevant passages that answer the query"


class TestLLM2VecEmbeddingsUnit(EmbeddingsUnitTests):
    """Standard unit suite, building the model by name (the tiny model folder)."""

    @pytest.fixture(autouse=True)
    def _model_dir(self, tiny_model_dir):
        type(self).model_dir = tiny_model_dir()

    @property
    def embeddings_class(self):
        return LLM2VecEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"model_name": self.model_dir, "model_kwargs": {"device": "cpu"}}


# The project runs pytest-asyncio in strict mode: mark the class so the suite's two async
# tests run; the mark is inert (apart from a warning, silenced) on its sync tests.
@pytest.mark.asyncio(loop_scope="function")
@pytest.mark.filterwarnings("ignore:The test <Function:pytest.PytestWarning")
class TestLLM2VecEmbeddingsIntegration(EmbeddingsIntegrationTests):
    """Standard integration suite, run offline on an already built encoder."""

    @pytest.fixture(autouse=True)
    def _encoder(self, tiny_encoder):
        type(self).encoder = tiny_encoder

    @property
    def embeddings_class(self):
        return LLM2VecEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"encoder": self.encoder}


def test_query_gets_instruction_documents_do_not(tiny_encoder):
    emb = LLM2VecEmbeddings(encoder=tiny_encoder, query_instruction=QI)
    text = "Qdrant stores vectors and payloads"
    q = np.array(emb.embed_query(text))
    d = np.array(emb.embed_documents([text])[0])
    np.testing.assert_allclose(q, tiny_encoder.encode([text], instruction=QI)[0], atol=1e-5)
    np.testing.assert_allclose(d, tiny_encoder.encode([text])[0], atol=1e-5)
    assert not np.allclose(q, d, atol=1e-3)  # the instruction changes the query vector


def test_encode_kwargs_and_document_instruction(tiny_encoder):
    emb = LLM2VecEmbeddings(encoder=tiny_encoder, encode_kwargs={"normalize": True,
                                                                  "batch_size": 2},
                            document_instruction="Represent the passage")
    texts = ["one short text", "a second, somewhat longer text about the river bank", "x"]
    got = np.array(emb.embed_documents(texts))
    want = tiny_encoder.encode(texts, instruction="Represent the passage", normalize=True)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert emb.embed_documents([]) == []


def test_bad_arguments_are_named(tiny_encoder):
    with pytest.raises(ValueError, match="model_name"):
        LLM2VecEmbeddings()
    with pytest.raises(ValueError, match="unknown key 'device'"):
        LLM2VecEmbeddings(encoder=tiny_encoder, encode_kwargs={"device": "cpu"})
    with pytest.raises(ValueError, match="query_encode_kwargs: unknown key 'precision'.*quantiz"):
        LLM2VecEmbeddings(encoder=tiny_encoder, query_encode_kwargs={"precision": "int8"})
    with pytest.raises(ValueError, match="'normalize_embeddings' and 'normalize' are the same"):
        LLM2VecEmbeddings(encoder=tiny_encoder, encode_kwargs={"normalize_embeddings": True,
                                                                "normalize": False})
    with pytest.raises(ValueError, match="backend"):
        LLM2VecEmbeddings(model_name="x", backend="tensorflow")
    with pytest.raises(TypeError, match="string"):
        LLM2VecEmbeddings(encoder=tiny_encoder).embed_query(["not", "a", "string"])


class SlowEncoder:
    """Our own encoder, slowed down, recording which thread runs it (not a framework mock)."""

    def __init__(self, encoder, delay: float) -> None:
        self.inner, self.delay, self.threads = encoder, delay, []
        self.dim, self.config, self.tokenizer = encoder.dim, encoder.config, encoder.tokenizer

    def encode(self, *a, **kw):
        return self.inner.encode(*a, **kw)

    def encode_queries(self, *a, **kw):
        self.threads.append(threading.get_ident())
        time.sleep(self.delay)
        return self.inner.encode_queries(*a, **kw)

    def encode_documents(self, *a, **kw):
        self.threads.append(threading.get_ident())
        time.sleep(self.delay)
        return self.inner.encode_documents(*a, **kw)


def test_async_methods_do_not_block_the_event_loop(tiny_encoder):
    slow = SlowEncoder(tiny_encoder, delay=0.3)
    emb = LLM2VecEmbeddings(encoder=slow)

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        docs, query = await asyncio.gather(emb.aembed_documents(["a b", "c d"]),
                                           emb.aembed_query("a b"))
        task.cancel()
        return docs, query, ticks

    docs, query, ticks = asyncio.run(main())
    assert ticks >= 10, f"the loop only ticked {ticks} times during 0.6 s of encoding"
    assert threading.get_ident() not in slow.threads
    assert len(docs) == 2 and len(query) == tiny_encoder.dim
    np.testing.assert_allclose(query, emb.embed_query("a b"), atol=1e-6)


def test_in_a_langchain_vector_store(tiny_encoder):
    from tiny import CORPUS

    store = InMemoryVectorStore(embedding=LLM2VecEmbeddings(encoder=tiny_encoder))
    store.add_texts(CORPUS, metadatas=[{"i": i} for i in range(len(CORPUS))])
    hit = store.similarity_search(CORPUS[3], k=1)[0]
    assert hit.page_content == CORPUS[3] and hit.metadata == {"i": 3}


def test_sentence_transformers_spellings_as_huggingface_embeddings(tmp_path, tiny_model_dir,
                                                                   capsys):
    """The kwargs a HuggingFaceEmbeddings user writes give the vectors HuggingFaceEmbeddings
    gives on the same saved folder (qwen2: no BOS, so sentence-transformers matches LLM2Vec)."""
    hf = pytest.importorskip("langchain_huggingface")
    from llm2vec_rag import LLM2Vec

    folder = str(tmp_path / "st")
    LLM2Vec.from_pretrained(tiny_model_dir("qwen2"), query_instruction=QI).save_pretrained(folder)
    texts = ["one short text", "a second, somewhat longer text about the river bank", "x"]
    kwargs = dict(model_kwargs={"device": "cpu"},
                  encode_kwargs={"normalize_embeddings": True, "batch_size": 2},
                  query_encode_kwargs={"prompt_name": "query", "normalize_embeddings": True})
    theirs = hf.HuggingFaceEmbeddings(model_name=folder, **kwargs)
    ours = LLM2VecEmbeddings(model_name=folder, **kwargs)
    np.testing.assert_allclose(ours.embed_documents(texts), theirs.embed_documents(texts),
                               atol=1e-4)
    np.testing.assert_allclose(ours.embed_query(texts[1]), theirs.embed_query(texts[1]),
                               atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(ours.embed_documents(texts), axis=1), 1, atol=1e-5)
    # Without query_encode_kwargs, queries use encode_kwargs and the configured instruction.
    plain = LLM2VecEmbeddings(model_name=folder, encode_kwargs={"show_progress_bar": True})
    np.testing.assert_allclose(plain.embed_query(texts[1]),
                               ours.encoder.encode_queries(texts[1])[0], atol=1e-5)
    capsys.readouterr()
    plain.embed_documents(texts)
    assert "encode" in capsys.readouterr().err  # the bar was asked for, and shown
    quiet = LLM2VecEmbeddings(encoder=plain.encoder, show_progress=False)
    quiet.embed_documents(texts * 100)  # long enough for the automatic bar: off as asked
    assert "encode" not in capsys.readouterr().err
    loud = LLM2VecEmbeddings(encoder=plain.encoder, show_progress=True)
    loud.embed_documents(texts)
    assert "encode" in capsys.readouterr().err
