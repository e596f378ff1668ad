"""``compile=True``: the inductor-compiled forward gives the eager vectors, across shapes."""

from __future__ import annotations

import numpy as np
import pytest

from llm2vec_rag import LLM2Vec

TEXTS = ["a b c", "the quick brown fox jumps over the lazy dog " * 3, "x", "two words"]


@pytest.mark.slow
def test_compiled_encoder_matches_eager_across_shapes(tiny_model_dir):
    eager = LLM2Vec.from_pretrained(tiny_model_dir("llama"))
    compiled = LLM2Vec.from_pretrained(tiny_model_dir("llama"), compile=True)
    assert compiled.spec.options.get("compile") is True  # pool workers compile too
    for batch_size in (4, 1, 3):  # new batch sizes and lengths: dynamic shapes, no failure
        np.testing.assert_allclose(compiled.encode(TEXTS, batch_size=batch_size),
                                   eager.encode(TEXTS, batch_size=batch_size), atol=1e-5)
