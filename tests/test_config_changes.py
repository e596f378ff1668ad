"""Settings changed after loading (``model.config.max_length = ...``, ``.pooling = ...``)
take effect on the next call, or are refused clearly; never silently ignored."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from llm2vec_rag import LLM2Vec
from tiny import CORPUS

LONG = " ".join(CORPUS)


@pytest.fixture
def fresh(tiny_model_dir):
    return LLM2Vec.from_pretrained(tiny_model_dir("llama"))


def test_max_length_and_pooling_take_effect(fresh, tiny_model_dir):
    before = fresh.encode([LONG, CORPUS[0]])
    fresh.config.max_length = 8
    short = LLM2Vec.from_pretrained(tiny_model_dir("llama"), max_length=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # truncation warnings: expected
        np.testing.assert_array_equal(fresh.encode([LONG, CORPUS[0]]),
                                      short.encode([LONG, CORPUS[0]]))
        assert not np.allclose(fresh.encode([LONG])[0], before[0])
    assert fresh.max_text_tokens() == short.max_text_tokens() < 8
    fresh.config.pooling = "eos_token"  # the reference's name, normalised on assignment
    assert fresh.config.pooling == "eos"
    eos = LLM2Vec.from_pretrained(tiny_model_dir("llama"), max_length=8, pooling="eos")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_array_equal(fresh.encode(CORPUS[:3]), eos.encode(CORPUS[:3]))
    assert fresh.count_tokens(["a b"]) == [eos.count_tokens(["a b"])[0]]  # EOS appended
    fresh.config.max_length, fresh.config.pooling = 512, "mean"  # and back
    np.testing.assert_allclose(fresh.encode([LONG, CORPUS[0]]), before, atol=1e-6)


def test_bad_assignments_are_refused(fresh):
    with pytest.raises(ValueError, match="Unknown pooling 'max'"):
        fresh.config.pooling = "max"
    with pytest.raises(ValueError, match="max_length must be an integer >= 2"):
        fresh.config.max_length = "64"
    with pytest.raises(TypeError, match="query_instruction must be a string"):
        fresh.config.query_instruction = 3
    assert fresh.config.pooling == "mean" and fresh.config.max_length == 512


def test_a_pool_started_before_a_change_refuses(fresh):
    fresh.config.max_length = 8
    with fresh.start_multi_process_pool(["cpu"], threads_per_worker=1, min_texts=1) as pool:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            np.testing.assert_allclose(fresh.encode([LONG, CORPUS[1]], pool=pool),
                                       fresh.encode([LONG, CORPUS[1]]), atol=1e-5)
        fresh.config.pooling = "last"
        with pytest.raises(ValueError, match="changed .* after this pool started"):
            fresh.encode(CORPUS[:2], pool=pool)
