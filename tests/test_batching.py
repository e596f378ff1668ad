"""Token-budget batching: bounded padding by default, every text once, vectors unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from llm2vec_rag.encoder import CPU_MAX_BATCH_TOKENS

TEXTS = [("word " * n).strip() for n in (1, 40, 3, 25, 7, 60, 2, 12, 33, 5, 18, 9)]


@pytest.mark.parametrize("budget", [8, 64, 150, 10_000])
@pytest.mark.parametrize("batch_size", [1, 4, 32])
def test_batches_respect_rows_and_budget_and_cover_every_text(tiny_encoder, budget, batch_size):
    pre = tiny_encoder.preprocessor
    encoded = pre.encode(TEXTS)
    seen = []
    for batch in pre.batches(encoded, batch_size, budget):
        rows, width = batch.input_ids.shape
        assert rows <= batch_size
        assert rows * width <= budget or rows == 1  # one text longer than the budget: alone
        seen += batch.index.tolist()
    assert sorted(seen) == list(range(len(TEXTS)))


def test_budget_cuts_padding(tiny_encoder):
    pre = tiny_encoder.preprocessor
    encoded = pre.encode(TEXTS)
    padded = {b: sum(x.input_ids.size for x in pre.batches(encoded, 32, b)) for b in (None, 64)}
    real = sum(len(e.ids) for e in encoded)
    assert padded[None] == len(TEXTS) * max(len(e.ids) for e in encoded)  # one wide batch
    assert real <= padded[64] < padded[None]


def test_default_budget_is_the_encoders_and_leaves_vectors_unchanged(tiny_encoder):
    assert tiny_encoder.max_batch_tokens == CPU_MAX_BATCH_TOKENS
    pre = tiny_encoder.preprocessor
    default = tiny_encoder.encode(TEXTS)
    unbounded = tiny_encoder.encode(TEXTS, max_batch_tokens=10**9)
    tight = tiny_encoder.encode(TEXTS, max_batch_tokens=30)
    assert len(list(pre.batches(pre.encode(TEXTS), 32, 30))) > 1
    np.testing.assert_allclose(default, unbounded, atol=1e-5)
    np.testing.assert_allclose(tight, unbounded, atol=1e-5)


def test_bad_budget(tiny_encoder):
    with pytest.raises(ValueError, match="max_batch_tokens"):
        tiny_encoder.encode(["x"], max_batch_tokens=0)
