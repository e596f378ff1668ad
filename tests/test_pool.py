"""The multi-process encode pool: same vectors as one process, order restored, small inputs
stay local, and a dead or broken worker gives a clear error instead of a hang."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from llm2vec_rag import EncoderSpec, LLM2Vec
from llm2vec_rag.pool import EncodePool, PoolError
from tiny import CORPUS

TEXTS = [" ".join(CORPUS[j % len(CORPUS)] for j in range(i, i + 1 + i % 5)) for i in range(70)]


@pytest.fixture(scope="module")
def encoder(tiny_model_dir):
    return LLM2Vec.from_pretrained(tiny_model_dir("llama"), device="cpu",
                                   query_instruction="Find the passage")


@pytest.fixture(scope="module")
def pool(encoder):
    with encoder.start_multi_process_pool(["cpu", "cpu"], threads_per_worker=1,
                                          chunk_size=8, min_texts=4) as pool:
        yield pool


def test_pool_gives_the_same_vectors_in_input_order(encoder, pool):
    assert pool.dim == encoder.dim
    alone = encoder.encode(TEXTS, batch_size=4)
    calls = pool.calls
    pooled = encoder.encode(TEXTS, batch_size=4, pool=pool)
    assert pool.calls == calls + 1  # the workers did the work
    np.testing.assert_allclose(pooled, alone, atol=1e-5)
    # per-text instructions travel with their chunk; normalisation happens once, in the parent
    ins = ["Find the passage" if i % 3 else None for i in range(len(TEXTS))]
    np.testing.assert_allclose(encoder.encode(TEXTS, instruction=ins, normalize=True, pool=pool),
                               encoder.encode(TEXTS, instruction=ins, normalize=True), atol=1e-5)
    np.testing.assert_allclose(encoder.encode_queries(TEXTS[:9], pool=pool),
                               encoder.encode_queries(TEXTS[:9]), atol=1e-5)


def test_small_inputs_skip_the_pool(encoder, pool):
    calls = pool.calls
    out = encoder.encode(TEXTS[:3], pool=pool)
    assert pool.calls == calls
    np.testing.assert_allclose(out, encoder.encode(TEXTS[:3]), atol=1e-6)
    assert pool.encode([]).shape == (0, encoder.dim)


def test_a_killed_worker_raises_instead_of_hanging(tiny_model_dir):
    spec = EncoderSpec(tiny_model_dir("llama"), options={"device": "cpu"})
    pool = EncodePool(spec, ["cpu", "cpu"], threads_per_worker=1, chunk_size=4)
    victim = pool._procs[1]
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(10)
    start = time.monotonic()
    with pytest.raises(PoolError, match=r"worker 1 \(cpu\) died .*SIGKILL"):
        pool.encode(TEXTS)
    assert time.monotonic() - start < 10
    assert all(not p.is_alive() for p in pool._procs)  # the survivor was stopped too
    with pytest.raises(PoolError, match="closed"):
        pool.encode(TEXTS)


def test_a_worker_that_cannot_load_reports_why(tmp_path, tiny_encoder):
    with pytest.raises(PoolError, match="could not build its encoder.*no-such-model"):
        EncodePool(EncoderSpec(str(tmp_path / "no-such-model")), ["cpu"])
    tiny_encoder_copy = LLM2Vec(tiny_encoder.model, tiny_encoder.tokenizer)  # no spec
    with pytest.raises(ValueError, match="objects in memory"):
        tiny_encoder_copy.start_multi_process_pool(["cpu"])
    with pytest.raises(ValueError, match="devices"):
        EncodePool(EncoderSpec("m"), [])
