"""A model's saved ``query_instruction`` (llm2vec_config.json, the last folder of the chain
wins) reaches every query path: encode_queries, the indexer's and the CLI's search, LangChain
embed_query and LlamaIndex query embeddings. The server's '<id>-query' model reads the same
config (tests/test_serve.py, served from a folder saved with an instruction)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from llm2vec_rag import LLM2Vec
from llm2vec_rag.config import EncoderConfig
from llm2vec_rag.default_model import DEFAULT_ADAPTERS, QUERY_INSTRUCTION
from tiny import CORPUS

SAVED = "Given a question, find the passage that answers it"
QUERY = "which store answers nearest neighbour queries?"


def test_bundled_model_ships_the_paper_query_instruction():
    assert QUERY_INSTRUCTION == ("Given a web search query, retrieve relevant passages that "
                                 "answer the query")
    # from_pretrained reads the chain's configs in order: the last adapter has the final say
    assert EncoderConfig.read_dict(DEFAULT_ADAPTERS[-1])["query_instruction"] == QUERY_INSTRUCTION
    for adapter in DEFAULT_ADAPTERS:
        assert EncoderConfig.read_dict(adapter).get("query_instruction") == QUERY_INSTRUCTION


@pytest.fixture(scope="module")
def saved(tiny_model_dir, tmp_path_factory):
    """A tiny model folder whose llm2vec_config.json holds a query instruction."""
    folder = str(tmp_path_factory.mktemp("with-instruction"))
    LLM2Vec.from_pretrained(tiny_model_dir(), query_instruction=SAVED).save_pretrained(folder)
    with open(os.path.join(folder, "llm2vec_config.json"), encoding="utf-8") as f:
        assert json.load(f)["query_instruction"] == SAVED
    encoder = LLM2Vec.from_pretrained(folder, device="cpu")
    want = encoder.encode([QUERY], instruction=SAVED)[0]
    assert not np.allclose(want, encoder.encode([QUERY])[0], atol=1e-3)  # it matters
    return folder, encoder, want


def unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def test_saved_instruction_reaches_every_query_path(saved, tmp_path, capsys):
    from llm2vec_rag.cli import main
    from llm2vec_rag.integrations.langchain import LLM2VecEmbeddings as LangChainEmbeddings
    from llm2vec_rag.integrations.llamaindex import LLM2VecEmbeddings as LlamaEmbeddings
    from llm2vec_rag.integrations.qdrant import QdrantIndexer

    folder, encoder, want = saved
    assert encoder.config.query_instruction == SAVED
    np.testing.assert_allclose(encoder.encode_queries([QUERY])[0], want, atol=1e-5)
    np.testing.assert_allclose(LangChainEmbeddings(encoder=encoder).embed_query(QUERY), want,
                               atol=1e-5)
    # LlamaIndex normalises by default, as HuggingFaceEmbedding does
    np.testing.assert_allclose(LlamaEmbeddings(encoder=encoder).get_query_embedding(QUERY),
                               want / np.linalg.norm(want), atol=1e-5)

    docs = CORPUS[:4]
    doc_vecs = encoder.encode_documents(docs, normalize=True)
    expected = {t: float(unit(want) @ v) for t, v in zip(docs, doc_vecs)}
    store = str(tmp_path / "q")
    with QdrantIndexer(encoder, "kb", path=store) as indexer:
        indexer.index(docs, show_progress=False)
        for hit in indexer.search(QUERY, k=4):
            assert hit.score == pytest.approx(expected[hit.text], abs=1e-4)

    assert main(["search", QUERY, "--model", folder, "--device", "cpu", "--collection", "kb",
                 "--qdrant-path", store, "-k", "4", "--json"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(hits) == 4
    for hit in hits:
        assert hit["score"] == pytest.approx(expected[hit["text"]], abs=1e-4)
