"""The dynamic batcher in-process: merging, order, budgets, overload, errors, shutdown."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from llm2vec_rag import Encoder, LLM2Vec
from llm2vec_rag.batcher import (
    MAX_CRASHES,
    Batcher,
    BatchStats,
    Closed,
    InputTooLong,
    Overloaded,
    WorkerCrashed,
)

TEXTS = ["the quick brown fox", "a contrastive loss pulls positive pairs together",
         "Qdrant stores vectors", "", "weather in Montreal is cold in winter and warm in summer",
         "numbers like 3.14 and 42"]


def requests():
    """Mixed requests: (texts, instruction) with one instruction, per-text ones and none."""
    return [(TEXTS[:2], None), ([TEXTS[2]], "Represent the topic"), (TEXTS[3:], None),
            (TEXTS[:3], ["Retrieve passages", None, "Represent the topic"]), ([TEXTS[5]], None)]


def test_count_tokens_is_part_of_the_encoder_protocol(tiny_encoder):
    assert isinstance(tiny_encoder, Encoder)
    counts = tiny_encoder.count_tokens(TEXTS[:3])
    ids = [len(tiny_encoder.tokenizer(t)["input_ids"]) for t in TEXTS[:3]]
    assert counts == ids
    with_ins = tiny_encoder.count_tokens(TEXTS[:1], "Represent the topic")
    assert with_ins[0] > counts[0]
    assert tiny_encoder.count_tokens(["word " * 600])[0] > tiny_encoder.config.max_length


def test_queued_requests_merge_into_one_encode_call_with_their_own_vectors(tiny_encoder):
    seen: list[BatchStats] = []
    batcher = Batcher(tiny_encoder, max_batch_tokens=10_000, max_wait_ms=0, on_batch=seen.append,
                      start=False)
    futures = [batcher.submit(texts, ins, normalize=i % 2 == 0)
               for i, (texts, ins) in enumerate(requests())]
    batcher.start()  # everything is already queued: one merged call
    results = [f.result(timeout=60) for f in futures]
    batcher.close()
    assert [s.requests for s in seen] == [5]
    assert seen[0].texts == sum(len(t) for t, _ in requests())
    for i, ((texts, ins), result) in enumerate(zip(requests(), results)):
        expected = tiny_encoder.encode(texts, instruction=ins, normalize=i % 2 == 0)
        np.testing.assert_allclose(result.vectors, expected, atol=1e-5)
        assert result.tokens == tiny_encoder.count_tokens(texts, ins)
    assert batcher.merged_batches == 1 and batcher.requests == 5


def test_token_budget_splits_batches_and_keeps_order(tiny_encoder):
    seen: list[BatchStats] = []
    per_request = sum(tiny_encoder.count_tokens(TEXTS[:2]))
    batcher = Batcher(tiny_encoder, max_batch_tokens=2 * per_request, max_wait_ms=0,
                      on_batch=seen.append, start=False)
    futures = [batcher.submit(TEXTS[:2]) for _ in range(5)]
    batcher.start()
    results = [f.result(timeout=60) for f in futures]
    batcher.close()
    assert [s.requests for s in seen] == [2, 2, 1]
    assert all(s.tokens <= 2 * per_request for s in seen)
    for r in results:
        np.testing.assert_allclose(r.vectors, tiny_encoder.encode(TEXTS[:2]), atol=1e-5)


def test_no_merge_runs_one_request_per_call(tiny_encoder):
    seen: list[BatchStats] = []
    batcher = Batcher(tiny_encoder, merge=False, on_batch=seen.append, start=False)
    futures = [batcher.submit(t) for t, _ in requests()]
    batcher.start()
    [f.result(timeout=60) for f in futures]
    batcher.close()
    assert [s.requests for s in seen] == [1] * len(futures)


def test_full_queue_raises_overloaded_and_loses_nothing(tiny_encoder):
    batcher = Batcher(tiny_encoder, max_queue=3, start=False)
    futures = [batcher.submit([f"text {i}"]) for i in range(3)]
    with pytest.raises(Overloaded, match="max-queue 3") as err:
        batcher.submit(["one too many"])
    assert err.value.retry_after >= 1
    assert batcher.queue_depth == 3
    batcher.start()
    for i, f in enumerate(futures):
        np.testing.assert_allclose(f.result(timeout=60).vectors,
                                   tiny_encoder.encode([f"text {i}"]), atol=1e-5)
    batcher.close()


def test_a_bad_request_fails_alone(tiny_encoder):
    batcher = Batcher(tiny_encoder, start=False)
    good = batcher.submit(["fine text"])
    too_long = batcher.submit(["short", "word " * 600], truncate=False)
    huge_instruction = batcher.submit(["text"], instruction="word " * 600)  # no room for text
    also_good = batcher.submit(["another fine text"], instruction="Represent the topic")
    batcher.start()
    with pytest.raises(InputTooLong) as err:
        too_long.result(timeout=60)
    assert err.value.index == 1 and err.value.limit == tiny_encoder.config.max_length
    with pytest.raises(ValueError, match="instruction"):
        huge_instruction.result(timeout=60)
    np.testing.assert_allclose(good.result(timeout=60).vectors,
                               tiny_encoder.encode(["fine text"]), atol=1e-5)
    np.testing.assert_allclose(also_good.result(timeout=60).vectors,
                               tiny_encoder.encode(["another fine text"],
                                                   instruction="Represent the topic"), atol=1e-5)
    batcher.close()


def test_asyncio_callers_and_close_drains_then_refuses(tiny_encoder):
    batcher = Batcher(tiny_encoder, max_wait_ms=20)

    async def main():
        return await asyncio.gather(*(batcher.embed([t]) for t in TEXTS))

    results = asyncio.run(main())
    for t, r in zip(TEXTS, results):
        np.testing.assert_allclose(r.vectors, tiny_encoder.encode([t]), atol=1e-5)
    assert batcher.batches < len(TEXTS)  # concurrent awaits were merged
    pending = [batcher.submit([t]) for t in TEXTS]
    batcher.close()  # answers what was queued ...
    assert all(f.result(timeout=0).vectors.shape == (1, tiny_encoder.dim) for f in pending)
    with pytest.raises(Closed):  # ... and refuses new work
        batcher.submit(["late"])


def test_batcher_rejects_bad_settings(tiny_encoder):
    for kwargs in ({"max_batch_tokens": 0}, {"max_queue": 0}, {"max_wait_ms": -1}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            Batcher(tiny_encoder, start=False, **kwargs)


class RecordingEncoder(LLM2Vec):
    """The real tiny encoder, recording what the batcher asks of it; ``crash`` makes the next
    encode call raise a ``BaseException`` (an error outside any one request's handling)."""

    def __init__(self, other: LLM2Vec) -> None:
        super().__init__(other.model, other.tokenizer, other.config)
        self.tokenized: list[str] = []
        self.crash = 0

    def tokenize(self, texts, instruction=None):
        self.tokenized += list(texts)
        return super().tokenize(texts, instruction)

    def encode(self, *args, **kwargs):
        raise AssertionError("the batcher must encode the rows it tokenized, not texts")

    def encode_tokenized(self, encoded, batch_size=32, max_batch_tokens=None):
        if self.crash:
            self.crash -= 1
            raise KeyboardInterrupt("simulated worker crash")
        return super().encode_tokenized(encoded, batch_size, max_batch_tokens)


def test_two_requests_over_the_budget_both_answer_and_later_ones_too(tiny_encoder):
    """Issue 31 (7): the second request, carried into the next batch, used to be admitted a
    second time (``Future in unexpected state``) and the worker died; every later request hung."""
    per_request = sum(tiny_encoder.count_tokens(TEXTS[:2]))
    batcher = Batcher(tiny_encoder, max_batch_tokens=per_request + 1, max_wait_ms=0,
                      start=False)
    first, second = batcher.submit(TEXTS[:2]), batcher.submit(TEXTS[:2])
    batcher.start()
    expected = tiny_encoder.encode(TEXTS[:2])
    for f in (first, second):
        np.testing.assert_allclose(f.result(timeout=30).vectors, expected, atol=1e-5)
    later = batcher.submit(TEXTS[4:])
    np.testing.assert_allclose(later.result(timeout=30).vectors,
                               tiny_encoder.encode(TEXTS[4:]), atol=1e-5)
    assert batcher.healthy and batcher.batches == 3 and batcher.crashes == 0
    batcher.close()


def test_each_request_is_tokenized_once_and_its_rows_encoded(tiny_encoder):
    encoder = RecordingEncoder(tiny_encoder)
    batcher = Batcher(encoder, max_wait_ms=0, start=False)
    futures = [batcher.submit(texts, ins) for texts, ins in requests()]
    batcher.start()
    results = [f.result(timeout=60) for f in futures]
    batcher.close()
    assert encoder.tokenized == [t for texts, _ in requests() for t in texts]
    for (texts, ins), result in zip(requests(), results):
        np.testing.assert_allclose(result.vectors, tiny_encoder.encode(texts, instruction=ins),
                                   atol=1e-5)
        assert result.tokens == tiny_encoder.count_tokens(texts, ins)


def test_a_worker_crash_fails_its_requests_and_the_worker_restarts(tiny_encoder):
    encoder = RecordingEncoder(tiny_encoder)
    encoder.crash = 1
    batcher = Batcher(encoder, max_wait_ms=0, start=False)
    held = [batcher.submit([t]) for t in TEXTS[:2]]
    batcher.start()
    for f in held:
        with pytest.raises(WorkerCrashed, match="KeyboardInterrupt.*retry"):
            f.result(timeout=30)
    after = batcher.submit([TEXTS[2]])  # the restarted worker answers
    np.testing.assert_allclose(after.result(timeout=30).vectors,
                               tiny_encoder.encode([TEXTS[2]]), atol=1e-5)
    assert batcher.healthy and batcher.crashes == 1
    batcher.close()


def test_a_worker_that_keeps_crashing_gives_up_and_turns_unhealthy(tiny_encoder):
    encoder = RecordingEncoder(tiny_encoder)
    encoder.crash = MAX_CRASHES
    batcher = Batcher(encoder, max_wait_ms=0, merge=False)
    for _ in range(MAX_CRASHES):
        with pytest.raises(WorkerCrashed):
            batcher.submit([TEXTS[0]]).result(timeout=30)
    deadline = time.monotonic() + 10
    while batcher.healthy and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not batcher.healthy and "crashes" in batcher.failed
    with pytest.raises(WorkerCrashed, match="stopped"):
        batcher.submit([TEXTS[0]])
    batcher.close()


class HeldEncoder(LLM2Vec):
    """The real tiny encoder whose forward passes wait for ``release``: a batch is "running"
    for as long as a test needs (``entered`` is set once one started); ``calls`` counts them."""

    def __init__(self, other: LLM2Vec) -> None:
        super().__init__(other.model, other.tokenizer, other.config)
        self.entered, self.release = threading.Event(), threading.Event()
        self.calls = 0

    def encode_tokenized(self, encoded, batch_size=32, max_batch_tokens=None):
        self.calls += 1
        self.entered.set()
        assert self.release.wait(60)
        return super().encode_tokenized(encoded, batch_size, max_batch_tokens)


def test_abort_fails_every_unanswered_request_at_once_while_a_batch_runs(tiny_encoder):
    """The server's forced stop (a second Ctrl-C): requests in the running batch, the one
    carried over the budget and the queued one all fail with ``Closed`` (503) without waiting
    for the forward pass; its late results are dropped without crashing the worker, and no
    further forward pass runs."""
    encoder = HeldEncoder(tiny_encoder)
    per_request = sum(tiny_encoder.count_tokens(TEXTS[:2]))
    batcher = Batcher(encoder, max_batch_tokens=per_request + 1, max_wait_ms=50, start=False)
    running, carried, queued = (batcher.submit(TEXTS[:2]) for _ in range(3))
    batcher.start()
    assert encoder.entered.wait(30)
    deadline = time.monotonic() + 10  # the worker carries the second while the first runs
    while batcher.queue_depth and time.monotonic() < deadline:
        time.sleep(0.01)
    batcher.abort("forced stop")
    for future in (running, carried, queued):
        assert isinstance(future.exception(timeout=0), Closed)
        assert "forced stop" in str(future.exception())
    with pytest.raises(Closed):
        batcher.submit(["late"])
    encoder.release.set()
    batcher.close(timeout=30)
    assert batcher.stopped and batcher.crashes == 0 and encoder.calls == 1
