"""Silent misuse is refused: arguments that used to encode nothing, or the wrong thing."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from llm2vec_rag.cli import main


@pytest.mark.parametrize("chunk_size, error", [(0, ValueError), (-3, ValueError),
                                               (1.5, TypeError), ("8", TypeError)])
def test_encode_iter_refuses_a_bad_chunk_size_at_once(tiny_encoder, chunk_size, error):
    with pytest.raises(error, match="chunk_size must be"):
        tiny_encoder.encode_iter(["a", "b"], chunk_size=chunk_size)  # no next() needed
    chunks = list(tiny_encoder.encode_iter(["a", "b", "c"], chunk_size=np.int64(2)))
    assert [len(c) for c in chunks] == [2, 1]


@pytest.mark.parametrize("name, value, error", [
    ("batch_size", 1.5, TypeError), ("batch_size", True, TypeError),
    ("batch_size", 0, ValueError), ("batch_size", -1, ValueError),
    ("max_batch_tokens", 1.5, TypeError), ("max_batch_tokens", False, TypeError),
    ("max_batch_tokens", 0, ValueError)])
def test_encode_refuses_bad_batch_sizes(tiny_encoder, name, value, error):
    with pytest.raises(error, match=f"{name} must be"):
        tiny_encoder.encode(["a", "b"], **{name: value})
    with pytest.raises(error, match=f"{name} must be"):
        tiny_encoder.encode([], **{name: value})  # even with nothing to encode


def test_onnx_encoder_shares_the_checks(llama_onnx):
    from llm2vec_rag.export.runtime import OnnxLLM2Vec

    onnx = OnnxLLM2Vec.from_pretrained(llama_onnx)
    with pytest.raises(TypeError, match="batch_size must be an integer >= 1, got float 1.5"):
        onnx.encode(["a"], batch_size=1.5)
    with pytest.raises(ValueError, match="chunk_size must be >= 1, got 0"):
        onnx.encode_iter(["a"], chunk_size=0)


def test_langchain_embed_documents_refuses_one_string(tiny_encoder):
    from llm2vec_rag.integrations.langchain import LLM2VecEmbeddings

    emb = LLM2VecEmbeddings(encoder=tiny_encoder)
    with pytest.raises(TypeError, match=r"got one str .*wrap it in a list, e\.g\. "
                                        r"embed_documents\(\[text\]\)"):
        emb.embed_documents("abc")
    with pytest.raises(TypeError, match="aembed_documents expects a list of strings"):
        asyncio.run(emb.aembed_documents("abc"))
    assert len(emb.embed_documents(["abc"])) == 1
    with pytest.raises(TypeError, match=r"encode_kwargs\['batch_size'\] must be an integer"):
        LLM2VecEmbeddings(encoder=tiny_encoder, encode_kwargs={"batch_size": 1.5})


def test_llamaindex_batch_refuses_one_string(tiny_encoder):
    from llm2vec_rag.integrations.llamaindex import LLM2VecEmbeddings

    emb = LLM2VecEmbeddings(encoder=tiny_encoder)
    with pytest.raises(TypeError, match="get_text_embedding_batch expects a list of strings"):
        emb.get_text_embedding_batch("abc")
    with pytest.raises(TypeError, match="aget_text_embedding_batch expects a list of strings"):
        asyncio.run(emb.aget_text_embedding_batch("abc"))
    assert len(emb.get_text_embedding_batch(["a", "b", "c"])) == 3


def test_upper_case_jsonl_is_read_as_jsonl(tiny_encoder, tiny_model_dir, tmp_path):
    src = tmp_path / "UP.JSONL"
    src.write_text('{"text": "hello world"}\n{"text": "second text"}\n', encoding="utf-8")
    out = tmp_path / "v.jsonl"
    assert main(["encode", str(src), "-o", str(out), "--model", tiny_model_dir("llama")]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in rows] == ["hello world", "second text"]
    np.testing.assert_allclose(np.array([r["embedding"] for r in rows]),
                               tiny_encoder.encode(["hello world", "second text"]), atol=1e-5)


def test_training_data_upper_case_jsonl(tmp_path):
    from llm2vec_rag.training.data import load_texts

    src = tmp_path / "T.JSONL"
    src.write_text('{"text": "one"}\n{"text": "two"}\n', encoding="utf-8")
    assert load_texts([str(src)]) == ["one", "two"]
