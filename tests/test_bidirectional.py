"""config.is_causal=False makes every supported decoder bidirectional, and the probe knows."""

from __future__ import annotations

import pytest
import torch
import transformers
from transformers import AutoModel

from llm2vec_rag import is_bidirectional, make_bidirectional

ARCHS = {
    "llama": "LlamaConfig", "mistral": "MistralConfig", "qwen2": "Qwen2Config",
    "qwen3": "Qwen3Config", "gemma": "GemmaConfig", "gemma2": "Gemma2Config",
    "gemma3": "Gemma3TextConfig", "phi3": "Phi3Config",
}
NO_SDPA = {"gemma2"}  # transformers 5 refuses SDPA for Gemma2 (soft-capping): eager only


def tiny(arch: str, attn: str, causal: bool):
    config = getattr(transformers, ARCHS[arch])(
        vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=64,
        pad_token_id=0, bos_token_id=1, eos_token_id=2)
    if not causal:
        make_bidirectional(config)
    config._attn_implementation = attn
    torch.manual_seed(0)
    return AutoModel.from_config(config).eval()


CASES = [(a, i) for a in ARCHS for i in ("eager", "sdpa") if not (i == "sdpa" and a in NO_SDPA)]


@pytest.mark.parametrize("arch,attn", CASES)
def test_flag_makes_model_bidirectional(arch, attn):
    assert is_bidirectional(tiny(arch, attn, causal=False))


@pytest.mark.parametrize("arch,attn", CASES)
def test_probe_detects_causal_model(arch, attn):
    assert not is_bidirectional(tiny(arch, attn, causal=True))


def test_probe_catches_flag_only_on_attention_modules():
    """The trap DESIGN.md warns about: module flags alone leave the mask causal."""
    model = tiny("llama", "eager", causal=True)
    for module in model.modules():
        if hasattr(module, "is_causal"):
            module.is_causal = False
    assert not is_bidirectional(model)


def test_loader_refuses_a_model_that_stays_causal(tiny_model_dir, monkeypatch):
    """A model whose transformers code ignores the flag is an error, not a silent fallback."""
    import llm2vec_rag.loading as loading
    from llm2vec_rag import LLM2Vec

    monkeypatch.setattr(loading, "make_bidirectional", lambda config: config)
    with pytest.raises(RuntimeError, match="still causal"):
        LLM2Vec.from_pretrained(tiny_model_dir("llama"))


def test_causal_baseline_on_purpose(tiny_model_dir):
    from llm2vec_rag import LLM2Vec

    causal = LLM2Vec.from_pretrained(tiny_model_dir("llama"), enable_bidirectional=False)
    assert not is_bidirectional(causal.model)
    bidir = LLM2Vec.from_pretrained(tiny_model_dir("llama"))
    assert is_bidirectional(bidir.model)
    text = ["The quick brown fox jumps over the lazy dog"]
    assert abs(causal.encode(text) - bidir.encode(text)).max() > 1e-3


def test_enable_bidirectional_none_is_refused_not_read_as_causal(tiny_model_dir):
    """None is falsy: read as a flag it would load the causal baseline without a word."""
    from llm2vec_rag import LLM2Vec

    with pytest.raises(TypeError, match="enable_bidirectional must be True or False"):
        LLM2Vec.from_pretrained(tiny_model_dir("llama"), enable_bidirectional=None)
