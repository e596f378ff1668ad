"""``dtype="bf16-autocast"``: fp32 weights, bf16 matmuls under ``torch.autocast``; the norms,
pooling and normalisation stay fp32, and the encoder's identity says which one made a vector."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from llm2vec_rag import EncoderSpec, LLM2Vec
from llm2vec_rag.cli import main
from llm2vec_rag.integrations.identity import identity_of, same_encoder

TEXTS = ["The quick brown fox jumps over the lazy dog.", "Qdrant stores vectors.",
         "the river bank is cold in winter and the fox sleeps"]


@pytest.fixture(scope="module")
def pair(tiny_model_dir):
    folder = tiny_model_dir("llama")
    return (LLM2Vec.from_pretrained(folder, device="cpu", dtype="float32"),
            LLM2Vec.from_pretrained(folder, device="cpu", dtype="bf16-autocast"))


def test_vectors_close_to_fp32_but_not_identical(pair):
    fp32, autocast = pair
    a, b = fp32.encode(TEXTS, normalize=True), autocast.encode(TEXTS, normalize=True)
    assert b.dtype == np.float32
    cosine = (a * b).sum(1)
    assert cosine.min() > 0.99, cosine
    assert not np.array_equal(a, b)  # the matmuls really ran in bf16


def test_weights_stay_fp32_matmuls_bf16_norms_and_pooling_fp32(pair):
    _, autocast = pair
    assert {p.dtype for p in autocast.model.parameters()} == {torch.float32}
    seen: dict[str, torch.dtype] = {}
    hooks = [m.register_forward_hook(lambda mod, i, out, n=name: seen.__setitem__(n, out.dtype))
             for name, m in autocast.model.named_modules()
             if name.endswith(("q_proj", "down_proj", "input_layernorm")) or name == "norm"]
    try:
        vectors = autocast.module(torch.tensor([[5, 6, 7]]), torch.ones(1, 3, dtype=torch.long),
                                  torch.ones(1, 3, dtype=torch.long))
    finally:
        for h in hooks:
            h.remove()
    assert vectors.dtype == torch.float32  # pooling output
    assert {d for n, d in seen.items() if n.endswith(("q_proj", "down_proj"))} == {torch.bfloat16}
    assert {d for n, d in seen.items() if n.endswith("layernorm") or n == "norm"} == {
        torch.float32}
    with torch.inference_mode():  # what forward_tokens (token vectors) returns
        hidden = autocast.module.hidden_states(torch.tensor([[5, 6]]), torch.ones(1, 2).long())
    assert hidden.dtype == torch.float32


def test_identity_differs_from_fp32_so_a_fp32_collection_refuses_it(pair):
    fp32, autocast = pair
    assert '"autocast": "bfloat16"' in autocast.source and '"dtype": "float32"' in autocast.source
    assert "autocast" not in fp32.source
    mine, theirs = identity_of(autocast), identity_of(fp32)
    assert mine.content_id != theirs.content_id
    assert not same_encoder(theirs.record(), mine)
    assert same_encoder(mine.record(), identity_of(autocast))


def test_option_round_trips_through_spec(pair):
    _, autocast = pair
    spec = pickle.loads(pickle.dumps(autocast.spec))
    assert spec == EncoderSpec.from_json(spec.to_json())
    assert spec.options["dtype"] == "bf16-autocast"
    again = spec.load()
    assert again.autocast == torch.bfloat16 and again.source == autocast.source
    np.testing.assert_allclose(again.encode(TEXTS), autocast.encode(TEXTS), atol=1e-6)


def test_cli_dtype_bf16_autocast(tiny_model_dir, tmp_path, pair):
    _, autocast = pair
    src = tmp_path / "texts.txt"
    src.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    out = tmp_path / "vecs.npy"
    assert main(["encode", str(src), "-o", str(out), "--model", tiny_model_dir("llama"),
                 "--device", "cpu", "--dtype", "bf16-autocast"]) == 0
    np.testing.assert_allclose(np.load(out), autocast.encode(TEXTS), atol=1e-6)


def test_unknown_dtype_names_the_choices(tiny_model_dir):
    with pytest.raises(ValueError, match="bf16-autocast"):
        LLM2Vec.from_pretrained(tiny_model_dir("llama"), device="cpu", dtype="bf17")
