"""Every loader option given on the command line reaches the encoder that each process builds.

The flags go through the one mapping (``llm2vec_rag.flags.spec_from_args``) of the command
that uses them (serve, index --ray, encode), then a real pool worker, a real Ray actor and the
real server app build their encoder from that spec. Each is compared with an encoder built
directly with the same options: the vectors (adapters, dtype, pooling, max_length, the
query instruction inside the actor), the config and the source; ``--cache`` must leave its
fused entry in the cache folder the worker sees.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from llm2vec_rag import LLM2Vec
from llm2vec_rag.cli import build_parser
from llm2vec_rag.flags import spec_from_args
from llm2vec_rag.pool import EncodePool
from tiny import CORPUS, make_lora_adapter

MAX_LENGTH = 12  # shorter than most texts below, so truncation shows in the vectors
TEXTS = [" ".join(CORPUS[:3]), CORPUS[4], "hi"]
QUERY = "Find the passage"
DOCUMENT = "Passage"


@pytest.fixture(scope="module")
def adapter(tiny_model_dir, tmp_path_factory):
    base = tiny_model_dir("llama")
    return make_lora_adapter(base, str(tmp_path_factory.mktemp("spec-adapter") / "a"), 3)


def flags(model: str, adapter: str) -> list[str]:
    return ["--model", model, "--adapter", adapter, "--cache", "--dtype", "float32",
            "--pooling", "weighted_mean", "--max-length", str(MAX_LENGTH), "--device", "cpu"]


@pytest.fixture(scope="module")
def direct(tiny_model_dir, adapter):
    """The encoder the flags describe, built directly (uncached, so the entries counted
    below are the workers' own)."""
    return LLM2Vec.from_pretrained(tiny_model_dir("llama"), adapters=[adapter],
                                   pooling="weighted_mean", max_length=MAX_LENGTH,
                                   dtype="float32", device="cpu", query_instruction=QUERY,
                                   document_instruction=DOCUMENT)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("LLM2VEC_RAG_CACHE", str(folder))  # spawned workers inherit it
    return folder


def cached_entries(cache_dir) -> int:
    fused = cache_dir / "fused"
    return sum(p.is_dir() for p in fused.iterdir()) if fused.exists() else 0


def test_one_mapping_keeps_every_option(tiny_model_dir, adapter):
    model = tiny_model_dir("llama")
    parser = build_parser()
    serve = spec_from_args(parser.parse_args(
        ["serve", *flags(model, adapter), "--query-instruction", QUERY,
         "--document-instruction", DOCUMENT]))
    ray = spec_from_args(parser.parse_args(["index", "docs", "--ray", *flags(model, adapter)]))
    encode = spec_from_args(parser.parse_args(["encode", *flags(model, adapter)]))
    assert serve.adapters == ray.adapters == encode.adapters == (adapter,)
    common = {"cache": True, "dtype": "float32", "pooling": "weighted_mean",
              "max_length": MAX_LENGTH, "device": "cpu"}
    assert ray.options == encode.options == common  # index --ray used to drop --cache
    assert serve.options == {**common, "query_instruction": QUERY,
                             "document_instruction": DOCUMENT}


def test_a_pool_worker_builds_the_encoder_the_flags_describe(tiny_model_dir, adapter, direct,
                                                            cache_dir):
    args = build_parser().parse_args(["encode", *flags(tiny_model_dir("llama"), adapter)])
    with EncodePool(spec_from_args(args), ["cpu"], min_texts=1) as pool:
        got = pool.encode(TEXTS, None)
    np.testing.assert_allclose(got, direct.encode(TEXTS), atol=1e-5)
    assert cached_entries(cache_dir) == 1  # --cache reached the worker


def test_a_ray_actor_builds_the_encoder_the_flags_describe(tiny_model_dir, adapter, direct,
                                                          cache_dir):
    ray = pytest.importorskip("ray")
    from llm2vec_rag.integrations.ray import EmbedBatch

    args = build_parser().parse_args(["index", "docs", "--ray",
                                      *flags(tiny_model_dir("llama"), adapter)])
    spec = spec_from_args(args, query_instruction=QUERY)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"LLM2VEC_RAG_CACHE": str(cache_dir)}})
    try:
        actor = ray.remote(EmbedBatch).options(num_cpus=1).remote(
            spec, kind="query", normalize=False)
        out = ray.get(actor.__call__.remote({"text": np.array(TEXTS)}), timeout=300)
    finally:
        ray.shutdown()
    np.testing.assert_allclose(out["embedding"], direct.encode_queries(TEXTS), atol=1e-5)
    assert cached_entries(cache_dir) == 1


def test_the_server_builds_the_encoder_the_flags_describe(tiny_model_dir, adapter, direct,
                                                         cache_dir):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from llm2vec_rag.serve.app import ServeSettings, create_app

    args = build_parser().parse_args(
        ["serve", *flags(tiny_model_dir("llama"), adapter), "--query-instruction", QUERY,
         "--document-instruction", DOCUMENT])
    app = create_app(spec_from_args(args).load, ServeSettings(model_name="m"))
    with TestClient(app) as client:
        deadline = time.monotonic() + 120
        while client.get("/health").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert client.get("/health").status_code == 200
        built = app.state.llm2vec.encoder
        # TEXTS exceed --max-length: ask for the cut that encode_queries makes (TEI's rule)
        answer = client.post("/v1/embeddings", json={"model": "m", "input": TEXTS,
                                                     "input_type": "query", "truncate": True})
    assert built.config == direct.config and built.source == direct.source
    assert answer.status_code == 200, answer.text
    got = np.array([row["embedding"] for row in answer.json()["data"]])
    want = direct.encode_queries(TEXTS, normalize=True)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert cached_entries(cache_dir) == 1
