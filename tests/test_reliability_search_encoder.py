"""The collection records which encoder wrote it; search with another one is refused."""

from __future__ import annotations

import pytest

from llm2vec_rag import LLM2Vec
from llm2vec_rag.cli import main
from llm2vec_rag.integrations.qdrant import QdrantIndexer
from tiny import CORPUS


def test_search_with_another_encoder_is_refused(tiny_encoder, tiny_model_dir):
    causal = LLM2Vec.from_pretrained(tiny_model_dir("llama"), enable_bidirectional=False)
    assert causal.dim == tiny_encoder.dim and causal.source != tiny_encoder.source
    with QdrantIndexer(tiny_encoder, path=":memory:") as ix:
        ix.index(CORPUS, show_progress=False)
        meta = ix.client.get_collection(ix.collection).config.metadata
        assert meta["llm2vec_rag_encoder"] == tiny_encoder.source
        other = QdrantIndexer(causal, client=ix.client)
        with pytest.raises(ValueError, match="written by the encoder.*allow_other_encoder"):
            other.search(CORPUS[0])
        assert len(other.search(CORPUS[0], k=3, allow_other_encoder=True)) == 3
        other.index(CORPUS, show_progress=False)  # re-embeds, and records the new encoder
        assert other.search(CORPUS[0], k=1)[0].text == CORPUS[0]
        with pytest.raises(ValueError, match="written by the encoder"):
            QdrantIndexer(tiny_encoder, client=ix.client).search(CORPUS[0])
        with pytest.raises(TypeError, match="k must be an integer"):
            other.search("x", k=1.5)


def test_cli_search_refuses_and_the_flag_overrides(tiny_model_dir, tmp_path, capsys):
    (tmp_path / "a.txt").write_text(CORPUS[0], encoding="utf-8")
    store = ["--qdrant-path", str(tmp_path / "q"), "--device", "cpu"]
    assert main(["index", str(tmp_path / "a.txt"), "--model", tiny_model_dir(), *store,
                 "--no-progress"]) == 0
    other = ["--model", tiny_model_dir("llama", "bytelevel"), *store]  # same dim, other model
    capsys.readouterr()
    assert main(["search", "x", *other]) == 2
    assert "--allow-other-encoder" in capsys.readouterr().err
    assert main(["search", "x", *other, "--allow-other-encoder"]) == 0


def test_dtype_is_part_of_the_source(tiny_model_dir):
    """bf16 and fp32 vectors of one model are never mixed in one collection silently."""
    import json

    import torch

    fp32 = LLM2Vec.from_pretrained(tiny_model_dir("llama"), dtype="float32")
    bf16 = LLM2Vec.from_pretrained(tiny_model_dir("llama"), dtype="bfloat16")
    assert json.loads(fp32.source)["dtype"] == "float32"
    assert json.loads(bf16.source)["dtype"] == "bfloat16"
    with QdrantIndexer(fp32, path=":memory:") as ix:
        ix.index(CORPUS, show_progress=False)
        other = QdrantIndexer(bf16, client=ix.client)
        with pytest.raises(ValueError, match="written by the encoder"):
            other.search(CORPUS[0])
        report = other.index(CORPUS, show_progress=False)  # re-embeds in bf16
        assert report.indexed == len(CORPUS)
        assert ix.client.get_collection(ix.collection).config.metadata[
            "llm2vec_rag_encoder"] == bf16.source
    fp32.model.to(torch.bfloat16)  # a cast after loading counts too
    assert fp32.source == bf16.source
