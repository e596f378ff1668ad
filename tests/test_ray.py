"""The Ray Data path on a real local cluster: embed_dataset gives the encoder's vectors,
index_dataset writes the very collection QdrantIndexer writes (and each skips what the other
stored), skipped rows and duplicate ids are reported as the indexer reports them, and a
SIGKILLed actor still ends with exactly the expected points."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import numpy as np
import psutil
import pytest

ray = pytest.importorskip("ray")

from qdrant_client import QdrantClient  # noqa: E402

from llm2vec_rag import LLM2Vec  # noqa: E402
from llm2vec_rag.integrations.qdrant import QdrantIndexer  # noqa: E402
from llm2vec_rag.integrations.ray import embed_dataset, index_dataset  # noqa: E402
from tiny import CORPUS  # noqa: E402

CHUNK = 16


def docs(n: int, start: int = 0, suffix: str = "") -> list[dict]:
    return [{"id": f"doc-{i}", "text": " ".join(CORPUS[j % len(CORPUS)]
                                                 for j in range(i, i + 1 + i % 4)) + suffix,
             "n": i, "lang": "en" if i % 2 else "fr"} for i in range(start, start + n)]


@pytest.fixture(scope="module")
def cluster():
    tests = os.path.dirname(__file__)  # workers import this module's helpers (_slow)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": tests}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return tiny_model_dir("llama")


@pytest.fixture(scope="module")
def encoder(model):
    return LLM2Vec.from_pretrained(model, device="cpu")


def points(store: str, collection: str = "kb") -> dict:
    client = QdrantClient(path=store)
    try:
        found, _ = client.scroll(collection, limit=100_000, with_payload=True,
                                 with_vectors=True)
        return {str(p.id): (p.payload, np.array(p.vector)) for p in found}
    finally:
        client.close()


def test_embed_dataset_adds_the_encoders_vectors(cluster, model, encoder):
    rows = docs(20)
    out = embed_dataset(ray.data.from_items(rows), model, concurrency=1,
                        batch_size=8).take_all()
    got = {r["id"]: r["embedding"] for r in out}
    assert set(got) == {r["id"] for r in rows} and out[0]["lang"] in ("en", "fr")
    want = encoder.encode_documents([r["text"] for r in rows], normalize=True)
    np.testing.assert_allclose(np.stack([got[r["id"]] for r in rows]), want, atol=1e-5)
    queries = embed_dataset(ray.data.from_items([{"q": "a fox"}]), model, text_column="q",
                            kind="query", normalize=False).take_all()
    np.testing.assert_allclose(queries[0]["embedding"], encoder.encode_queries(["a fox"])[0],
                               atol=1e-5)
    with pytest.raises(ValueError, match="concurrency"):
        embed_dataset(ray.data.from_items(rows), model, concurrency=0)


def test_ray_and_the_indexer_write_the_same_collection(cluster, model, encoder, tmp_path):
    rows = docs(30)
    ray_store, ix_store = str(tmp_path / "ray"), str(tmp_path / "ix")
    report = index_dataset(ray.data.from_items(rows), model, collection="kb", path=ray_store,
                           chunk_size=CHUNK, batch_size=8)
    with QdrantIndexer(encoder, "kb", path=ix_store, chunk_size=CHUNK, batch_size=8) as ix:
        single = ix.index(rows, show_progress=False)
    assert (report.documents, report.indexed, report.chunks) == (
        single.documents, single.indexed, single.chunks) == (30, 30, single.chunks)
    a, b = points(ray_store), points(ix_store)
    assert a.keys() == b.keys() and len(a) == single.chunks
    for pid in a:
        assert a[pid][0] == b[pid][0]  # payload: text, metadata, doc_hash, chunk numbers
        np.testing.assert_allclose(a[pid][1], b[pid][1], atol=1e-5)

    # each path skips what the other stored; a change is re-embedded by either
    again = index_dataset(ray.data.from_items(rows), model, collection="kb", path=ix_store,
                          chunk_size=CHUNK, batch_size=8)
    assert (again.unchanged, again.indexed, again.chunks) == (30, 0, 0)
    changed = rows[:5] + [{**rows[5], "text": "A short replacement."}] + rows[6:]
    with QdrantIndexer(encoder, "kb", path=ray_store, chunk_size=CHUNK, batch_size=8) as ix:
        assert ix.index(rows, show_progress=False).unchanged == 30
    after = index_dataset(ray.data.from_items(changed), model, collection="kb",
                          path=ray_store, chunk_size=CHUNK, batch_size=8)
    assert (after.indexed, after.unchanged) == (1, 29)
    got = points(ray_store)
    doc5 = [p for p in got.values() if p[0]["doc_id"] == "doc-5"]
    assert [p[0]["page_content"] for p in doc5] == ["A short replacement."]
    assert after.pruned == sum(1 for p in a.values() if p[0]["doc_id"] == "doc-5") - 1


def test_bad_rows_and_duplicate_ids_are_reported_like_the_indexer(cluster, model, encoder,
                                                                   tmp_path):
    rows = docs(6) + [{"id": "empty", "text": "  "}, {"id": "no-text", "body": "x"},
                      {**docs(1, 2)[0], "text": "The later record of doc-2 wins."}]
    report = index_dataset(ray.data.from_items(rows), model, collection="kb",
                           path=str(tmp_path / "s"), chunk_size=CHUNK, batch_size=4)
    with QdrantIndexer(encoder, "kb", path=str(tmp_path / "t"), chunk_size=CHUNK,
                       batch_size=4) as ix:
        single = ix.index(rows[:7] + rows[8:], show_progress=False)  # a dict without text
    assert (report.skipped, report.duplicates, report.documents) == (2, 1, 7)
    assert (single.duplicates, single.indexed, single.chunks) == (
        report.duplicates, report.indexed, report.chunks)
    assert any("empty text" in why for _, why in report.skipped_examples)
    assert points(str(tmp_path / "s")).keys() == points(str(tmp_path / "t")).keys()
    doc2 = [p for p in points(str(tmp_path / "s")).values() if p[0]["doc_id"] == "doc-2"]
    assert [p[0]["page_content"] for p in doc2] == ["The later record of doc-2 wins."]


def _slow(row: dict) -> dict:
    time.sleep(0.05)
    return row


def _actor_pids() -> list[int]:
    out = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if "EmbedAndWrite" in " ".join(proc.cmdline()):
                out.append(proc.pid)
        except psutil.Error:
            continue
    return out


def test_a_sigkilled_actor_is_restarted_and_the_points_are_exact(cluster, model, encoder,
                                                                 tmp_path):
    """The kill lands at a defined point: after the run's own actor has delivered its first
    batch (its points are in the store) and long before the last one (the rows are slowed).

    It used to wait a fixed 1.5 s after *any* EmbedAndWrite process appeared: an actor of an
    earlier test, still being torn down, matched at once, so the kill could hit that exiting
    process (ProcessLookupError) or miss the run entirely, depending on timing.
    """
    rows, store = docs(120), str(tmp_path / "k")
    result: dict = {}

    def run():
        try:
            result["report"] = index_dataset(
                ray.data.from_items(rows).map(_slow), model, collection="kb", path=store,
                chunk_size=CHUNK, batch_size=8)
        except BaseException as err:  # noqa: BLE001 - asserted below
            result["error"] = err

    earlier = set(_actor_pids())  # other runs' actors, possibly still exiting
    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 120
    while thread.is_alive() and _stored_rows(store) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    victims = [p for p in _actor_pids() if p not in earlier]
    written = _stored_rows(store)
    assert thread.is_alive() and written > 0, f"no kill point: {written} points, {result}"
    assert len(victims) == 1, f"expected this run's one actor, found {victims}"
    os.kill(victims[0], signal.SIGKILL)
    replacements: set[int] = set()
    deadline = time.monotonic() + 180
    while thread.is_alive() and time.monotonic() < deadline:
        replacements |= {p for p in _actor_pids() if p not in earlier and p != victims[0]}
        thread.join(0.1)
    assert not thread.is_alive(), "the run did not end within 180 s of the kill"
    assert "error" not in result, result.get("error")
    assert replacements, "the killed actor was never restarted"
    report = result["report"]
    with QdrantIndexer(encoder, "kb", path=str(tmp_path / "ref"), chunk_size=CHUNK) as ix:
        want = ix.index(rows, show_progress=False)
    got, ref = points(store), points(str(tmp_path / "ref"))
    assert written < len(ref)  # killed mid-run
    assert got.keys() == ref.keys() and len(got) == want.chunks == report.chunks
    assert report.documents == report.indexed == 120
    assert all(got[p][0] == ref[p][0] for p in got)


DRIVER = r"""
import sys, time
import ray
from llm2vec_rag.integrations.ray import index_dataset
from test_ray import docs, _slow

model, store, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
         runtime_env={"env_vars": {"PYTHONPATH": sys.path[0] or "."}})
report = index_dataset(ray.data.from_items(docs(n)).map(_slow), model, collection="kb",
                       path=store, chunk_size=16, batch_size=8)
print("REPORT", report.documents, report.indexed, report.unchanged, report.chunks, flush=True)
"""


def _stored_rows(store: str) -> int:
    """Points the embedded store has persisted so far (its SQLite file, read-only)."""
    import sqlite3

    db = os.path.join(store, "collection", "kb", "storage.sqlite")
    if not os.path.isfile(db):
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute("SELECT COUNT(*) FROM points").fetchone()[0]
    except sqlite3.Error:
        return 0


def _run_driver(model: str, store: str, n: int, kill: bool = False):
    import subprocess
    import sys

    tests = os.path.dirname(__file__)
    env = {**os.environ, "PYTHONPATH": tests}
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, model, store, str(n)], cwd=tests,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if not kill:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-3000:]
        return [int(x) for x in out.split("REPORT")[1].split()]
    me = psutil.Process(proc.pid)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and _stored_rows(store) < 20:  # mid-run
        time.sleep(0.1)
    kids = me.children(recursive=True)  # its Ray cluster: ended with it, by pid
    assert proc.poll() is None, "the driver finished before the kill"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    proc.stdout.close()
    proc.stderr.close()
    for kid in kids:
        try:
            kid.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(kids, timeout=30)
    return None


def test_a_killed_driver_resumes_without_loss_or_duplicates(model, encoder, tmp_path):
    store, n = str(tmp_path / "d"), 150
    _run_driver(model, store, n, kill=True)
    partial = points(store)
    assert partial, "nothing was written before the kill"
    documents, indexed, unchanged, chunks = _run_driver(model, store, n)
    with QdrantIndexer(encoder, "kb", path=str(tmp_path / "ref"), chunk_size=CHUNK) as ix:
        want = ix.index(docs(n), show_progress=False)
    got, ref = points(store), points(str(tmp_path / "ref"))
    assert got.keys() == ref.keys() and all(got[p][0] == ref[p][0] for p in got)
    assert documents == n and indexed + unchanged == n  # nothing lost
    assert unchanged > 0 and indexed > 0  # it resumed mid-way
    assert len(got) == want.chunks


def test_cli_index_with_ray_matches_the_plain_cli(cluster, model, tmp_path, capsys):
    from llm2vec_rag.cli import main

    folder = tmp_path / "docs"
    folder.mkdir()
    for i, text in enumerate(CORPUS[:4]):
        (folder / f"note{i}.md").write_text(text * 3, encoding="utf-8")
    (folder / "bad.txt").write_bytes(b"\xff\xfe not utf-8")
    (folder / "recs.jsonl").write_text("\n".join(
        json.dumps({"id": i, "text": CORPUS[i], "lang": "en"}) for i in range(5)) + "\n")
    common = [str(folder), "--model", model, "--collection", "kb", "--chunk-size", "16",
              "--no-progress"]
    assert main(["index", *common, "--qdrant-path", str(tmp_path / "a"), "--ray",
                 "--workers", "1"]) == 0
    ray_report = capsys.readouterr().err
    assert main(["index", *common, "--qdrant-path", str(tmp_path / "b")]) == 0
    plain_report = capsys.readouterr().err
    import re

    def counts(err: str) -> str:  # the report line, without its timing
        return re.search(r"^\d+ documents .*? skipped", err, re.M).group(0)

    assert counts(ray_report) == counts(plain_report)
    assert "1 skipped" in ray_report and "not UTF-8" in ray_report
    a, b = points(str(tmp_path / "a")), points(str(tmp_path / "b"))
    assert a.keys() == b.keys() and all(a[p][0] == b[p][0] for p in a) and len(a) > 9
