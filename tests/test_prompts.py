"""sentence-transformers' habits: named prompts (``prompts=``, ``prompt_name=``, ``prompt=``)
and ``model.similarity``, checked against the real sentence-transformers package."""

from __future__ import annotations

import numpy as np
import pytest

from llm2vec_rag import LLM2Vec
from llm2vec_rag.similarity import SIMILARITY_FUNCTIONS, similarity, similarity_pairwise
from tiny import CORPUS

st = pytest.importorskip("sentence_transformers")

# No ':' : the tiny tokenizers map it to <unk> (see test_st_format.py).
QUERY, OTHER = "Given a question retrieve the answer", "Find a passage on the same topic"


@pytest.fixture(scope="module")
def prompted(tiny_model_dir):
    return LLM2Vec.from_pretrained(tiny_model_dir("qwen2"), prompts={
        "query": QUERY + " ", "document": "", "same_topic": OTHER})


def test_named_prompts_are_instructions(prompted):
    assert prompted.config.query_instruction == QUERY + " "
    assert prompted.prompts == {"query": QUERY + " ", "document": "", "same_topic": OTHER}
    texts = CORPUS[:3]
    np.testing.assert_array_equal(prompted.encode(texts, prompt_name="query"),
                                  prompted.encode(texts, instruction=QUERY))
    np.testing.assert_array_equal(prompted.encode(texts, prompt_name="query"),
                                  prompted.encode_queries(texts))
    np.testing.assert_array_equal(prompted.encode(texts, prompt_name="same_topic"),
                                  prompted.encode(texts, instruction=OTHER))
    np.testing.assert_array_equal(prompted.encode_queries(texts, prompt_name="same_topic"),
                                  prompted.encode(texts, prompt=OTHER))
    np.testing.assert_array_equal(prompted.encode(texts, prompt_name="document"),
                                  prompted.encode(texts))


def test_prompt_errors(prompted):
    with pytest.raises(ValueError, match="prompt_name='nope' is not a configured prompt.*"
                                         "same_topic"):
        prompted.encode("x", prompt_name="nope")
    with pytest.raises(ValueError, match="instruction and prompt_name were both given"):
        prompted.encode("x", instruction="a", prompt_name="query")
    with pytest.raises(ValueError, match="prompts\\['query'\\] and query_instruction disagree"):
        LLM2Vec.from_pretrained(prompted.model.name_or_path, prompts={"query": "a"},
                                query_instruction="b")
    with pytest.raises(ValueError, match="the 'query' prompt is query_instruction"):
        prompted.config.prompts = {"query": "x"}
    with pytest.raises(TypeError, match="prompts must be a dict"):
        prompted.config.prompts = ["x"]


def test_sentence_transformers_gets_every_prompt(prompted, tmp_path):
    prompted.save_pretrained(tmp_path / "st")
    model = st.SentenceTransformer(str(tmp_path / "st"), device="cpu")
    assert model.prompts["same_topic"] == OTHER + " "
    for name in ("query", "same_topic"):
        np.testing.assert_allclose(model.encode(CORPUS[:3], prompt_name=name),
                                   prompted.encode(CORPUS[:3], prompt_name=name), atol=1e-4)
    again = LLM2Vec.from_pretrained(tmp_path / "st")
    assert again.prompts == prompted.prompts


@pytest.mark.parametrize("fn", SIMILARITY_FUNCTIONS)
def test_similarity_matches_sentence_transformers(fn):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 16)).astype(np.float32), rng.normal(size=(3, 16)).astype(
        np.float32)
    st_fn = st.SimilarityFunction.to_similarity_fn(fn)
    np.testing.assert_allclose(similarity(a, b, fn), st_fn(a, b).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(similarity(a[0], b, fn), st_fn(a[0], b).numpy(), atol=1e-5)
    pair_fn = st.SimilarityFunction.to_similarity_pairwise_fn(fn)
    np.testing.assert_allclose(similarity_pairwise(a[:3], b, fn), pair_fn(a[:3], b).numpy(),
                               rtol=1e-5, atol=1e-5)


def test_model_similarity_defaults_to_cosine(prompted):
    q, d = prompted.encode_queries(CORPUS[:2]), prompted.encode_documents(CORPUS[:3])
    scores = prompted.similarity(q, d)
    assert prompted.similarity_fn_name == "cosine" and scores.shape == (2, 3)
    np.testing.assert_allclose(scores, st.util.cos_sim(q, d).numpy(), atol=1e-6)
    prompted_dot = LLM2Vec(prompted.model, prompted.tokenizer)
    prompted_dot.similarity_fn_name = "dot"
    np.testing.assert_allclose(prompted_dot.similarity(q, d), q @ d.T, rtol=1e-5)
    with pytest.raises(ValueError, match="different dimensions"):
        prompted.similarity(q, d[:, :8])
    with pytest.raises(ValueError, match="similarity_fn_name must be one of"):
        similarity(q, d, "maxsim")
