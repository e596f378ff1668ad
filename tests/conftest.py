"""Shared fixtures: tiny random models (built once per session) and the real SmolLM2 GGUF."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from tiny import make_tiny_model  # noqa: E402

# The suite checks vectors to 1e-5 (against the reference, ONNX, sentence-transformers, pinned
# values): float32 wherever a test leaves the dtype to the default, subprocesses included. The
# default itself (bf16 on CPUs with native bf16) is tested in test_dtype_default.py.
os.environ["LLM2VEC_RAG_DTYPE"] = "float32"

# The files whose tests claim compatibility with an upstream package: marked `compat`, the
# selection scripts/compat.sh runs against the newest and the declared minimum releases.
COMPAT_FILES = {
    "test_st_format.py",        # sentence-transformers, TEI layout, langchain-huggingface
    "test_pinned_vectors.py",   # torch, transformers, tokenizers: the vectors themselves
    "test_bidirectional.py",    # transformers' is_causal switch
    "test_loading.py",          # transformers, peft, huggingface_hub
    "test_hub_errors.py",       # huggingface_hub's HTTP stack (httpx, httpx2)
    "test_langchain.py",        # langchain-core
    "test_llamaindex.py",       # llama-index-core
    "test_qdrant.py",           # qdrant-client
    "test_qdrant_interop.py",   # qdrant-client with LangChain's and LlamaIndex's stores
    "test_qdrant_store.py",     # qdrant-client, LangChain and LlamaIndex writing one collection
    "test_mteb.py",             # mteb
    "test_ray.py",              # ray[data]
    "test_ray_edges.py",        # ray[data]: a cluster that feeds its actors, dies with its driver
}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """Factory: ``tiny_model_dir(arch="llama", kind="whitespace")`` -> folder (cached)."""
    built: dict[tuple[str, str], str] = {}

    def get(arch: str = "llama", kind: str = "whitespace") -> str:
        if (arch, kind) not in built:
            folder = tmp_path_factory.mktemp(f"tiny-{arch}-{kind}")
            built[(arch, kind)] = make_tiny_model(str(folder), arch, kind)
        return built[(arch, kind)]

    return get


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model_dir):
    """A bidirectional tiny Llama encoder with mean pooling (read-only: do not mutate)."""
    from llm2vec_rag import LLM2Vec

    return LLM2Vec.from_pretrained(tiny_model_dir("llama"))


@pytest.fixture(scope="session")
def smollm2_gguf():
    from llm2vec_rag.default_model import smollm2_gguf as locate

    try:
        return locate()
    except FileNotFoundError as err:
        pytest.skip(str(err))


@pytest.fixture(scope="session")
def smollm2(smollm2_gguf):
    """The real SmolLM2-135M-Instruct weights as a bidirectional encoder (loaded once)."""
    from llm2vec_rag import LLM2Vec

    return LLM2Vec.from_pretrained(smollm2_gguf)


@pytest.fixture(scope="module")
def llama(tiny_model_dir):
    """The tiny Llama encoder the export tests compare ONNX Runtime against."""
    from test_export_common import QUERY_INSTRUCTION

    from llm2vec_rag import LLM2Vec

    return LLM2Vec.from_pretrained(tiny_model_dir("llama"), query_instruction=QUERY_INSTRUCTION)


@pytest.fixture(scope="module")
def llama_onnx(tmp_path_factory, tiny_model_dir):
    """Its fp32 ONNX export (done once per session)."""
    from test_export_common import QUERY_INSTRUCTION, exported

    return exported(tmp_path_factory, tiny_model_dir("llama"), "llama-mean",
                    query_instruction=QUERY_INSTRUCTION)


@pytest.fixture(scope="session", autouse=True)
def _private_model_cache(tmp_path_factory):
    """The fused-model cache of this test session, never the user's ~/.cache."""
    if "LLM2VEC_RAG_CACHE" not in os.environ:
        os.environ["LLM2VEC_RAG_CACHE"] = str(tmp_path_factory.mktemp("model-cache"))
    yield


@pytest.fixture(scope="module")
def served_dir(tiny_model_dir, tmp_path_factory):
    """A tiny Llama folder for the server tests (query instruction, short max_length)."""
    from serve_util import save_served_model

    return save_served_model(tiny_model_dir("llama"), str(tmp_path_factory.mktemp("served")))


@pytest.fixture(scope="module")
def reference(served_dir):
    """The served folder loaded in-process: what every server answer must equal."""
    from llm2vec_rag import LLM2Vec

    return LLM2Vec.from_pretrained(served_dir)


# Tests whose failure mode is a hang - a server that never answers, worker processes or a
# cluster that never report back, a process group that never forms - get a tighter limit
# than pyproject's global ``timeout``, so a hang fails within minutes with its stacks.
# (Seconds per test, fixtures included; a test's own ``@pytest.mark.timeout`` wins.)
# The limits leave room for a loaded machine (measured: 10-15x slower than idle when several
# suites share 2 cores); a hang still fails within minutes instead of never.
HANG_LIMITS_S = {
    "test_serve.py": 600,
    "test_serve_batcher.py": 600,
    "test_serve_clients.py": 600,
    "test_serve_edges.py": 600,
    "test_serve_late_chunking.py": 600,
    "test_reliability_server_errors.py": 600,
    "test_pool.py": 600,
    "test_qdrant_resume.py": 600,
    "test_ray.py": 900,
    "test_spec_reaches_workers.py": 900,
    "test_ray_edges.py": 900,
    "test_training_distributed.py": 1200,
}


# Tests left out of the development lane (`pytest -m "not slow"`) beside those that load the
# real SmolLM2 weights: each took a minute or more on 2 CPU cores (a Ray cluster, processes
# killed and resumed, further ONNX exports). CI (`scripts/run_tests.sh`) runs them all.
# A file name marks the whole file, "file::test" one test (parametrized variants included).
SLOW = {
    "test_ray.py",
    "test_ray_edges.py",
    "test_qdrant_resume.py::test_sigkill_mid_run_then_rerun_gives_exactly_the_expected_points",
    "test_export_onnx.py::test_fp16_variant_stays_close",
    "test_export_onnx.py::test_checks_catch_a_causal_graph",
    "test_export_onnx.py::test_second_arch_eos_pooling_external_data",
    "test_export_onnx.py::test_cli_exports_int8_static_with_calibration",
    "test_pool.py::test_a_worker_that_cannot_load_reports_why",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in COMPAT_FILES:
            item.add_marker(pytest.mark.compat)
        if {item.path.name, f"{item.path.name}::{item.originalname}"} & SLOW:
            item.add_marker(pytest.mark.slow)
        limit = HANG_LIMITS_S.get(item.path.name)
        if limit and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(limit))
