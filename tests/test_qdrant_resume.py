"""An indexing process killed with SIGKILL mid-run, then re-run: exactly the expected points."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from qdrant_client import QdrantClient

from llm2vec_rag.integrations import _qdrant_config as qc
from tiny import CORPUS

N_DOCS = 60
CHUNK = 16

SCRIPT = rf"""
import sys, time
from llm2vec_rag import LLM2Vec
from llm2vec_rag.integrations.qdrant import QdrantIndexer
from tiny import CORPUS

model_dir, store, throttle = sys.argv[1], sys.argv[2], float(sys.argv[3])

def docs():
    for i in range({N_DOCS}):
        text = " ".join(CORPUS[j % len(CORPUS)] for j in range(i, i + 1 + i % 4))
        print(f"doc {{i}}", flush=True)
        time.sleep(throttle)
        yield {{"id": f"doc-{{i}}", "text": text, "n": i}}

enc = LLM2Vec.from_pretrained(model_dir, device="cpu")
with QdrantIndexer(enc, "kb", path=store, chunk_size={CHUNK}, batch_size=8) as ix:
    print(ix.index(docs(), show_progress=False), flush=True)
"""


def run(model_dir, store, throttle, kill_after=None):
    env = {**os.environ, "PYTHONPATH": os.path.dirname(__file__)}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, model_dir, store, str(throttle)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if kill_after is None:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        return out
    for line in proc.stdout:
        if line.strip() == f"doc {kill_after}":
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=30)
    proc.stdout.close()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return None


def expected_points(tokenizer) -> dict[str, str]:
    from llm2vec_rag.integrations.chunking import TokenChunker

    chunker = TokenChunker(tokenizer, CHUNK)
    out = {}
    for i in range(N_DOCS):
        text = " ".join(CORPUS[j % len(CORPUS)] for j in range(i, i + 1 + i % 4))
        for c, piece in enumerate(chunker.chunk(text)):
            out[qc.point_id(f"doc-{i}", c)] = piece
    return out


def stored(store) -> dict[str, str]:
    client = QdrantClient(path=store)
    try:
        points, _ = client.scroll("kb", limit=100_000, with_payload=True)
        return {str(p.id): p.payload["page_content"] for p in points}
    finally:
        client.close()


def test_sigkill_mid_run_then_rerun_gives_exactly_the_expected_points(tiny_model_dir,
                                                                      tiny_encoder, tmp_path):
    store = str(tmp_path / "qdrant")
    want = expected_points(tiny_encoder.tokenizer)
    assert len(want) > N_DOCS  # several documents span several chunks

    run(tiny_model_dir(), store, throttle=0.03, kill_after=40)
    partial = stored(store)
    assert 0 < len(partial) < len(want), "the kill should land mid-run"
    assert set(partial) <= set(want)

    start = time.perf_counter()
    out = run(tiny_model_dir(), store, throttle=0.0)
    assert time.perf_counter() - start < 120
    assert "unchanged" in out
    final = stored(store)
    assert final == want  # no duplicates, nothing lost, every text where it belongs
    resumed = int(out.split("(")[1].split(" indexed")[0])
    assert resumed < N_DOCS  # documents finished before the kill were not embedded again
