"""The bundled default domain model: small half-precision adapters that load on the real
SmolLM2 GGUF, retrieve better than the unsupervised stages, keep Lee at 0.60 or more, and serve
the CLI when no --model is given."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from safetensors.torch import load_file

from llm2vec_rag.default_model import (
    DEFAULT_ADAPTERS,
    GGUF_NAME,
    UNSUPERVISED_ADAPTERS,
    load_default_model,
)

REPO = os.path.join(os.path.dirname(__file__), "..")
DATA_DIR = os.path.join(REPO, "data", "gensim")
TEXTS = ["Bushfires threaten homes west of Sydney.", "The Reserve Bank left rates on hold."]


@pytest.mark.parametrize("adapter", DEFAULT_ADAPTERS, ids=os.path.basename)
def test_bundled_adapters_are_small_half_precision_lora(adapter):
    weights = os.path.join(adapter, "adapter_model.safetensors")
    # r=8 (MNTP, SimCSE): 4.9 MB; the supervised soup, r=16 + 16: 19.6 MB
    assert os.path.getsize(weights) < 20 * 2**20
    tensors = load_file(weights)
    assert tensors and {str(t.dtype) for t in tensors.values()} == {"torch.float16"}
    with open(os.path.join(adapter, "adapter_config.json"), encoding="utf-8") as f:
        config = json.load(f)
    assert config["base_model_name_or_path"] == GGUF_NAME  # no path of the training machine
    if not os.path.isfile(os.path.join(adapter, "soup.json")):
        assert os.path.isfile(os.path.join(adapter, "training_config.yaml"))
        return
    with open(os.path.join(adapter, "soup.json"), encoding="utf-8") as f:
        ingredients = json.load(f)["adapters"]
    for ingredient in ingredients:  # each run's settings and log ship with the repository
        for name in ("training_config.yaml", "training_log.csv", "adapter_model.safetensors"):
            assert os.path.isfile(os.path.join(REPO, ingredient["path"], name)), ingredient


@pytest.fixture(scope="module")
def first_use(smollm2_gguf, tmp_path_factory):
    """``llm2vec-rag encode`` of 14 texts on first use: an empty model cache of its own, so
    the GGUF is parsed, the adapters merged and the cache entry written. The noise and the
    bit-for-bit tests both read this one run (each first use costs a GGUF parse and three
    merges)."""
    import subprocess
    import sys

    path = os.path.join(DATA_DIR, "lee_background.cor")
    if not os.path.isfile(path):
        pytest.skip("gensim test data missing: run scripts/fetch_data.sh")
    with open(path, encoding="latin-1") as f:
        texts = [line.strip() for line in f if line.strip()][:12] + ["hello world", ""]
    folder = tmp_path_factory.mktemp("first-use")
    src, out, cache = folder / "texts.jsonl", folder / "built.npy", folder / "cache"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    env = {**os.environ, "LLM2VEC_RAG_CACHE": str(cache), "OMP_WAIT_POLICY": "PASSIVE",
           "PYTHONWARNINGS": ""}
    done = subprocess.run([sys.executable, "-m", "llm2vec_rag.cli", "encode", str(src), "-o",
                           str(out), "--device", "cpu"],
                          capture_output=True, text=True, timeout=900, env=env)
    return {"done": done, "src": src, "out": out, "cache": cache, "env": env,
            "texts": len(texts)}


@pytest.fixture(scope="module")
def default_model(first_use):
    """The default model in this process, read from the entry the first-use run wrote (linked
    into the session's cache, which the other test files then reuse too)."""
    import shutil

    from llm2vec_rag.cache import cache_root

    fused = first_use["cache"] / "fused"
    entries = [e for e in fused.iterdir() if e.is_dir()] if fused.is_dir() else []
    for entry in entries:
        linked = os.path.join(cache_root(), "fused", entry.name)
        if not os.path.exists(linked):
            shutil.copytree(entry, linked, copy_function=os.link)
    return load_default_model(device="cpu")


def lee_retrieval_set(folder) -> str:
    """The 50 Lee evaluation documents (never trained on) as a BEIR folder: each document's
    first sentence is the query for the rest of it (48 documents have two sentences or more)."""
    from test_retrieval import write_beir

    from llm2vec_rag.training.data import _SENTENCE_END
    from llm2vec_rag.training.evaluate import read_lee

    corpus, queries, qrels = {}, {}, []
    for i, doc in enumerate(read_lee(DATA_DIR)[0]):
        first, *rest = _SENTENCE_END.split(doc)
        if rest:
            corpus[f"d{i}"], queries[f"q{i}"] = ("", " ".join(rest)), first
            qrels.append((f"q{i}", f"d{i}", 1))
    return str(write_beir(folder, corpus, queries, qrels))


@pytest.mark.slow
def test_default_model_retrieves_better_than_the_unsupervised_stages(default_model,
                                                                     smollm2_gguf, tmp_path):
    """The supervised stage is for retrieval: on held-out news (the Lee documents, first
    sentence -> the rest) it beats MNTP + SimCSE with the same instruction (measured nDCG@10
    0.9319 vs 0.8607), and it keeps Lee's document similarity above the unsupervised stages'
    0.5885 (measured 0.6060; the retrieval-only run alone fell to 0.5655:
    benchmarks/results/issue14/NOTES.md, "A soup of two runs")."""
    from llm2vec_rag import LLM2Vec
    from llm2vec_rag.default_model import QUERY_INSTRUCTION
    from llm2vec_rag.training import lee_spearman
    from llm2vec_rag.training.retrieval import evaluate_beir

    if not os.path.isfile(os.path.join(DATA_DIR, "lee.cor")):
        pytest.skip("gensim test data missing: run scripts/fetch_data.sh")
    folder = lee_retrieval_set(tmp_path / "lee-beir")
    unsupervised = LLM2Vec.from_pretrained(smollm2_gguf, adapters=UNSUPERVISED_ADAPTERS,
                                           device="cpu")
    trained = evaluate_beir(default_model, folder)  # the model's own query instruction
    before = evaluate_beir(unsupervised, folder, instruction=QUERY_INSTRUCTION)
    assert trained["queries"] == 48
    assert trained["ndcg@10"] > before["ndcg@10"] + 0.03, (trained, before)
    assert lee_spearman(default_model, DATA_DIR) >= 0.60  # measured 0.6060


@pytest.mark.slow
def test_the_cached_cli_encode_gives_the_uncached_vectors_bit_for_bit(first_use):
    """The fused-model cache is a speed-up only: the second ``llm2vec-rag encode`` (reading the
    entry) writes the same bits as an uncached one. With the entry's weights read as views
    into its mapped file (8 bytes past a 64-byte boundary), the empty text's vector was
    5.7e-6 away under OMP_WAIT_POLICY=PASSIVE (what the command sets); read into memory of
    their own, like the uncached load's, they are the same bits."""
    import subprocess
    import sys

    assert first_use["done"].returncode == 0, first_use["done"].stderr[-3000:]
    folder = first_use["out"].parent

    def encode(name: str, *flags: str) -> np.ndarray:
        out = folder / f"{name}.npy"
        done = subprocess.run([sys.executable, "-m", "llm2vec_rag.cli", "encode",
                               str(first_use["src"]), "-o", str(out), "--device", "cpu",
                               *flags],
                              capture_output=True, text=True, timeout=900, env=first_use["env"])
        assert done.returncode == 0, done.stderr[-3000:]
        return np.load(out)

    built = np.load(first_use["out"])  # the first run built the entry
    assert (first_use["cache"] / "fused").is_dir()
    cached, uncached = encode("cached"), encode("uncached", "--no-cache")
    np.testing.assert_array_equal(built, uncached)
    np.testing.assert_array_equal(cached, uncached)


@pytest.mark.slow
def test_cli_without_model_uses_the_default_model(default_model, tmp_path):
    from llm2vec_rag.cli import main

    src, out = tmp_path / "in.txt", tmp_path / "out.npy"
    src.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    assert main(["encode", str(src), "-o", str(out)]) == 0
    np.testing.assert_allclose(np.load(out), default_model.encode(TEXTS), atol=1e-5)
    assert main(["encode", str(src), "--onnx"]) == 2  # an ONNX folder must be named


RATE_CUT_LINE = 245  # lee_background.cor: "The Reserve Bank has cut official interest rates..."
PYTHON_NOTE = "How to sort a list in Python: use sorted() or list.sort()."


@pytest.mark.slow
def test_default_query_instruction_finds_the_central_bank_article(default_model):
    """Short queries without the shipped instruction match the short off-topic note (measured:
    "interest rate cut" scored the note 0.45 and the article 0.07); with it the article wins."""
    from llm2vec_rag.default_model import QUERY_INSTRUCTION

    path = os.path.join(DATA_DIR, "lee_background.cor")
    if not os.path.isfile(path):
        pytest.skip("gensim test data missing: run scripts/fetch_data.sh")
    with open(path, encoding="latin-1") as f:
        lines = [line.strip() for line in f]
    assert "Reserve Bank has cut official interest rates" in lines[RATE_CUT_LINE - 1]
    docs = [lines[RATE_CUT_LINE - 1], lines[0], lines[1], lines[10], PYTHON_NOTE]
    assert default_model.config.query_instruction == QUERY_INSTRUCTION
    d = default_model.encode_documents(docs, normalize=True)
    q = default_model.encode_queries(["interest rate cut", "central bank decision"],
                                     normalize=True)
    scores = q @ d.T
    assert list(scores.argmax(axis=1)) == [0, 0], scores


@pytest.mark.slow
def test_loading_the_default_model_prints_no_library_noise(first_use):
    """First use (empty model cache: GGUF parse, adapter merges, cache write) prints only our
    own lines: no GGUF/shard progress bars, no FutureWarning from peft's adapter loading.
    (One of the 12 articles is longer than 512 tokens: our truncation notice, one line.)"""
    done = first_use["done"]
    assert done.returncode == 0, done.stderr
    assert os.listdir(first_use["cache"])  # the first-load path ran
    assert done.stderr.strip().splitlines() == [
        "llm2vec-rag encode: warning: 1 of 14 texts exceed max_length=512 tokens and were "
        "truncated.",
        f"encoded {first_use['texts']} texts -> {first_use['out']} (dim 576)"], done.stderr
