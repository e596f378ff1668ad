"""Argument mistakes fail before any model loads; the speed flags reach the encoder."""

from __future__ import annotations

import numpy as np
import pytest

from llm2vec_rag import LLM2Vec
from llm2vec_rag.cli import main

MISSING_MODEL = "/nonexistent/model-folder"  # loading it would fail with a model error


def test_unknown_pooling_is_an_argument_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["encode", "-", "--model", MISSING_MODEL, "--pooling", "maxx"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'maxx'" in err and "weighted_mean" in err


def test_reference_pooling_names_still_accepted(tiny_model_dir, tmp_path):
    src = tmp_path / "t.txt"
    src.write_text("hello world\n", encoding="utf-8")
    out = tmp_path / "v.npy"
    assert main(["encode", str(src), "-o", str(out), "--model", tiny_model_dir("llama"),
                 "--pooling", "last_token"]) == 0
    expected = LLM2Vec.from_pretrained(tiny_model_dir("llama"), pooling="last").encode(
        ["hello world"])
    np.testing.assert_allclose(np.load(out), expected, atol=1e-6)


def test_search_of_a_missing_collection_fails_before_loading(tmp_path, capsys):
    store = tmp_path / "q"
    assert main(["search", "x", "--model", MISSING_MODEL, "--qdrant-path", str(store),
                 "--collection", "nope"]) == 2
    err = capsys.readouterr().err
    assert "No collection 'nope'" in err and "llm2vec-rag index" in err
    assert MISSING_MODEL not in err  # the model was never touched


def test_encode_token_budget_and_cache_flags(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LLM2VEC_RAG_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "t.txt"
    texts = ["a short one", "a somewhat longer text " * 5, "mid length text here"]
    src.write_text("\n".join(texts) + "\n", encoding="utf-8")
    out = tmp_path / "v.npy"
    assert main(["encode", str(src), "-o", str(out), "--model", tiny_model_dir("llama"),
                 "--max-batch-tokens", "16", "--cache"]) == 0
    expected = LLM2Vec.from_pretrained(tiny_model_dir("llama")).encode(texts)
    np.testing.assert_allclose(np.load(out), expected, atol=1e-5)
    assert len(list((tmp_path / "cache" / "fused").glob("*/model.safetensors"))) == 1
