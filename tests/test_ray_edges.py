"""Issue 31 (5, 9, 11, 12) on a real local Ray cluster: texts that are not texts, a pool that
asks for every CPU, a metadata column that is not an object, and a SIGKILLed driver."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import numpy as np
import psutil
import pytest

ray = pytest.importorskip("ray")

from llm2vec_rag import LLM2Vec  # noqa: E402
from llm2vec_rag.integrations import (  # noqa: E402
    ChunkOptions,
    Columns,
    Connection,
    Workers,
    WriteOptions,
)
from llm2vec_rag.integrations.qdrant import QdrantIndexer  # noqa: E402
from llm2vec_rag.integrations.ray import embed_dataset, index_dataset  # noqa: E402
from tiny import CORPUS  # noqa: E402


def bounded(fn, seconds: float):
    """fn() in a thread; fails (instead of hanging the suite) if it has not returned."""
    out: list = []
    errors: list = []

    def run():
        try:
            out.append(fn())
        except BaseException as err:  # noqa: BLE001 - re-raised below
            errors.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds}s: it waits forever"
    if errors:
        raise errors[0]
    return out[0]


def test_a_sigkilled_driver_takes_the_local_cluster_it_started_with_it():
    """(11) ray.init's processes outlived a SIGKILLed driver; init_ray's watchdog ends them."""
    driver = ("import psutil, sys, time\n"
              "from llm2vec_rag.integrations.ray_pool import init_ray\n"
              "init_ray(num_cpus=1, include_dashboard=False, log_to_driver=False)\n"
              "kids = [p.pid for p in psutil.Process().children(recursive=True)]\n"
              "print('KIDS', *kids, flush=True)\n"
              "time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", driver], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "RAY_ADDRESS": ""})
    kids: list[psutil.Process] = []
    try:
        line = bounded(proc.stdout.readline, 180)
        assert line.startswith("KIDS"), line
        kids = [psutil.Process(int(p)) for p in line.split()[1:]]
        assert any("raylet" in " ".join(k.cmdline()) for k in kids)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        gone, alive = psutil.wait_procs(kids, timeout=60)
        assert not alive, [" ".join(p.cmdline())[:80] for p in alive]
    finally:
        for kid in kids:  # whatever happened, leave nothing behind
            try:
                kid.kill()
            except psutil.Error:
                pass
        proc.kill()
        proc.stdout.close()


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return tiny_model_dir("llama")


def test_embed_dataset_skips_texts_that_are_not_texts(cluster, model):
    """(5) None and NaN were embedded as the strings "None" and "nan"."""
    import pandas as pd

    frame = pd.DataFrame({"text": [CORPUS[0], None, float("nan"), "  ", CORPUS[1]],
                          "i": range(5)})  # a column with missing values, as pandas reads it
    rows = [{"text": CORPUS[2], "i": 5}, {"text": None, "i": 6}]
    encoder = LLM2Vec.from_pretrained(model, device="cpu")
    for ds, kept, texts in ((ray.data.from_pandas(frame), [0, 4], [CORPUS[0], CORPUS[1]]),
                            (ray.data.from_items(rows), [5], [CORPUS[2]])):
        out = sorted(embed_dataset(ds, model, batch_size=8).take_all(), key=lambda r: r["i"])
        assert [r["i"] for r in out] == kept
        want = encoder.encode_documents(texts, normalize=True)
        np.testing.assert_allclose(np.stack([r["embedding"] for r in out]), want, atol=1e-5)


def test_a_metadata_column_that_is_not_an_object_skips_that_row(cluster, model, tmp_path):
    """(12) one row whose metadata was a list or not JSON aborted the whole Ray run."""
    rows = [{"id": f"d{i}", "text": CORPUS[i], "meta": json.dumps({"lang": "en"})}
            for i in range(4)]
    rows += [{"id": "list", "text": CORPUS[5], "meta": "[1, 2]"},
             {"id": "broken", "text": CORPUS[6], "meta": "{not json"}]
    report = index_dataset(ray.data.from_items(rows), model, collection="kb",  # the groups
                           connection=Connection(path=str(tmp_path / "q")),
                           chunking=ChunkOptions(16), writing=WriteOptions(4),
                           workers=Workers(concurrency=1, threads=1),
                           columns=Columns(metadata="meta"))
    assert (report.indexed, report.skipped) == (4, 2)
    reasons = " ".join(why for _, why in report.skipped_examples)
    assert "must hold a JSON object" in reasons and "not valid JSON" in reasons


def test_as_many_workers_as_cpus_finishes(cluster, model, tmp_path, capsys):
    """(9) `index DIR --ray --workers 2` on 2 CPUs waited forever: the actors held every CPU
    and the chunking tasks feeding them got none."""
    from llm2vec_rag.cli import main

    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(40):
        (folder / f"n{i}.md").write_text(CORPUS[i % len(CORPUS)] + f" note {i}",
                                         encoding="utf-8")
    args = ["index", str(folder), "--model", model, "--qdrant-path", str(tmp_path / "q"),
            "--chunk-size", "16", "--batch-size", "4", "--no-progress", "--ray",
            "--workers", "2"]
    assert bounded(lambda: main(args), 600) == 0
    assert "40 indexed" in capsys.readouterr().err
    with QdrantIndexer(LLM2Vec.from_pretrained(model, device="cpu"),
                       path=str(tmp_path / "q")) as ix:
        assert len({p["doc_id"] for p in ix.store.bookkeeping().values()}) == 40
