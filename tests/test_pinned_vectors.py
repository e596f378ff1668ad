"""Reference vectors pinned in a file: a new release of torch, transformers, tokenizers or
huggingface_hub must not silently move what this project encodes.

The tiny model is built without random numbers or tokenizer training (a fixed word-level
vocabulary, weights from a closed formula), so the pinned values depend only on the code that
loads and runs it. ``python tests/test_pinned_vectors.py --write`` re-pins them (only after a
change to the vectors that is intended and explained in the commit).
"""

from __future__ import annotations

import json
import math
import os
import sys

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.compat

PINNED = os.path.join(os.path.dirname(__file__), "reference", "pinned_vectors.json")
TEXTS = ["the quick brown fox jumps over the lazy dog", "vectors and payloads in a store",
         "hello"]
INSTRUCTION = "retrieve passages that answer the query"
WORDS = ("the quick brown fox jumps over lazy dog vectors and payloads in a store hello "
         "retrieve passages that answer query").split()
TOLERANCE = 1e-5


def build_fixed_model(folder: str) -> str:
    """A 2-layer Llama (adds BOS) whose tokenizer and weights involve no randomness."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {tok: i for i, tok in enumerate(["<unk>", "<s>", "</s>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        model_input_names=["input_ids", "attention_mask"])
    config = transformers.LlamaConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        bos_token_id=1, eos_token_id=2)
    model = transformers.AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for i, (_, param) in enumerate(sorted(model.named_parameters())):
            if param.dim() > 1:
                n = torch.arange(param.numel(), dtype=torch.float64)
                values = 0.2 * torch.sin(n * 0.37 * (i + 1) + i) + 0.05 * math.cos(i)
                param.copy_(values.reshape(param.shape).to(param.dtype))
    os.makedirs(folder, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_vectors(folder: str) -> dict[str, list]:
    from llm2vec_rag import LLM2Vec

    encoder = LLM2Vec.from_pretrained(build_fixed_model(folder), query_instruction=INSTRUCTION)
    return {"token_ids": [encoder.tokenizer(t)["input_ids"] for t in TEXTS],
            "documents": encoder.encode_documents(TEXTS).tolist(),
            "queries": encoder.encode_queries(TEXTS).tolist()}


def smollm2_vectors(encoder) -> dict[str, list]:
    return {"token_ids": [encoder.tokenizer(t)["input_ids"] for t in TEXTS],
            "documents": encoder.encode_documents(TEXTS).tolist(),
            "queries": encoder.encode(TEXTS, instruction=INSTRUCTION).tolist()}


def pinned(name: str) -> dict[str, list]:
    with open(PINNED, encoding="utf-8") as f:
        return json.load(f)[name]


def assert_unmoved(now: dict[str, list], then: dict[str, list]) -> None:
    assert now["token_ids"] == then["token_ids"], "tokenization changed"
    for key in ("documents", "queries"):
        old = np.array(then[key])
        # relative to the largest component: SmolLM2's reach ~27, where fp32 itself rounds ~2e-6
        moved = float(np.abs(np.array(now[key]) - old).max() / max(1.0, np.abs(old).max()))
        assert moved <= TOLERANCE, f"{key} moved by {moved:.2e} (> {TOLERANCE}, relative)"


def test_tiny_vectors_unmoved(tmp_path):
    assert_unmoved(tiny_vectors(str(tmp_path / "fixed")), pinned("tiny_llama"))


@pytest.mark.slow
def test_smollm2_vectors_unmoved(smollm2):
    assert_unmoved(smollm2_vectors(smollm2), pinned("smollm2"))


if __name__ == "__main__" and "--write" in sys.argv:
    import tempfile

    from llm2vec_rag import LLM2Vec
    from llm2vec_rag.default_model import smollm2_gguf

    with tempfile.TemporaryDirectory() as tmp:
        result = {"tiny_llama": tiny_vectors(os.path.join(tmp, "fixed")),
                  "smollm2": smollm2_vectors(LLM2Vec.from_pretrained(smollm2_gguf()))}
    with open(PINNED, "w", encoding="utf-8") as f:
        json.dump(result, f)
    print("pinned", PINNED)
