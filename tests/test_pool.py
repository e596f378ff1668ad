"""The multi-process encode pool: same vectors as one process, order restored, small inputs
stay local, and a dead or broken worker gives a clear error instead of a hang."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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


def test_a_bad_call_raises_its_error_and_the_pool_stays_usable(encoder, pool):
    """Issue 31 (11, 12): one call whose input a worker rejects (an instruction with no room
    for text) closed the whole pool."""
    with pytest.raises(ValueError, match="instruction takes"):
        encoder.encode(TEXTS, instruction="word " * 600, pool=pool)
    calls = pool.calls
    np.testing.assert_allclose(encoder.encode(TEXTS, pool=pool), encoder.encode(TEXTS),
                               atol=1e-5)
    assert pool.calls == calls + 1 and "running" in repr(pool)
    with pytest.raises(ValueError, match="batch_size"):  # checked before dispatch
        encoder.encode(TEXTS, batch_size=0, pool=pool)
    assert pool.encode(TEXTS[:5]).shape == (5, encoder.dim)


PARENT = """
import sys, time
from llm2vec_rag import EncoderSpec
from llm2vec_rag.pool import EncodePool
{guard}
    pool = EncodePool(EncoderSpec({model!r}, options={{"device": "cpu"}}), ["cpu", "cpu"],
                      threads_per_worker=1)
    print(" ".join(str(p.pid) for p in pool._procs), flush=True)
    time.sleep(600)
"""


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGTERM"])
def test_workers_die_with_a_parent_killed_by_a_signal(tiny_model_dir, tmp_path, signal_name):
    """Issue 31 (11): workers of a parent killed outside a ``with`` block (SIGKILL, or
    SIGTERM: Python's default action ends the process without its atexit hooks) ran
    forever."""
    psutil = pytest.importorskip("psutil")
    script = tmp_path / "parent.py"
    script.write_text(PARENT.format(guard='if __name__ == "__main__":',
                                    model=tiny_model_dir("llama")))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                              stderr=subprocess.DEVNULL, env=env)
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2, "the pool did not start"
        workers = [psutil.Process(p) for p in pids]
        assert all(w.is_running() for w in workers)
        parent.send_signal(getattr(signal, signal_name))
        assert parent.wait(10) == -getattr(signal, signal_name)
        gone, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, f"workers outlived their parent: {[w.pid for w in alive]}"
    finally:
        parent.kill()
        for p in psutil.Process().children(recursive=True):
            p.kill()


def test_a_script_without_a_main_guard_is_told_so(tiny_model_dir, tmp_path):
    """Issue 31 (13): the error blamed memory ("fewer workers or a smaller batch_size")."""
    script = tmp_path / "no_guard.py"
    script.write_text(PARENT.format(guard="if True:", model=tiny_model_dir("llama"))
                      .replace("time.sleep(600)", "pool.close()"))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode != 0
    assert 'no `if __name__ == "__main__":` guard' in out.stderr
    assert "PoolError" in out.stderr and "smaller batch_size" not in out.stderr
