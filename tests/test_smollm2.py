"""The real SmolLM2-135M weights (GGUF, dequantized): load, bidirectionality, invariance."""

from __future__ import annotations

import numpy as np
import pytest

from llm2vec_rag import LLM2Vec, is_bidirectional

pytestmark = pytest.mark.slow

TEXTS = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Qdrant stores vectors.",
    "A contrastive loss pulls positive pairs together and pushes negatives apart, while "
    "masked next token prediction adapts a decoder to attend to future tokens.",
    "Numbers like 3.14 and 42!",
    "weather in Montreal",
]


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_gguf_loads_bidirectional(smollm2):
    assert smollm2.dim == 576
    assert smollm2.model.config.num_hidden_layers == 30
    assert is_bidirectional(smollm2.model)


def test_gguf_model_saves_and_reloads(smollm2, tmp_path):
    smollm2.save_pretrained(tmp_path / "smollm2")
    reloaded = LLM2Vec.from_pretrained(tmp_path / "smollm2")
    assert rel_diff(reloaded.encode(TEXTS), smollm2.encode(TEXTS)) <= 1e-5


def test_real_weights_invariance(smollm2, smollm2_gguf):
    ref = smollm2.encode(TEXTS, batch_size=len(TEXTS))
    for batch_size in (1, 2):
        assert rel_diff(smollm2.encode(TEXTS, batch_size=batch_size), ref) <= 1e-4
    right = LLM2Vec.from_pretrained(smollm2_gguf, padding_side="right")
    assert rel_diff(right.encode(TEXTS), ref) <= 1e-4
    assert rel_diff(smollm2.encode(TEXTS[::-1])[::-1], ref) <= 1e-4
