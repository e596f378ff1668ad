"""The bundled default domain model: small half-precision adapters that load on the real
SmolLM2 GGUF, beat the causal baseline on Lee, and serve the CLI when no --model is given."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from safetensors.torch import load_file

from llm2vec_rag.default_model import DEFAULT_ADAPTERS, GGUF_NAME, load_default_model

DATA_DIR = os.path.join(os.path.dirname(__file__), "..", "data", "gensim")
TEXTS = ["Bushfires threaten homes west of Sydney.", "The Reserve Bank left rates on hold."]


@pytest.mark.parametrize("adapter", DEFAULT_ADAPTERS, ids=os.path.basename)
def test_bundled_adapters_are_small_half_precision_lora(adapter):
    weights = os.path.join(adapter, "adapter_model.safetensors")
    assert os.path.getsize(weights) < 6 * 2**20
    tensors = load_file(weights)
    assert tensors and {str(t.dtype) for t in tensors.values()} == {"torch.float16"}
    with open(os.path.join(adapter, "adapter_config.json"), encoding="utf-8") as f:
        config = json.load(f)
    assert config["base_model_name_or_path"] == GGUF_NAME  # no path of the training machine
    assert os.path.isfile(os.path.join(adapter, "training_config.yaml"))


@pytest.fixture(scope="module")
def default_model(smollm2_gguf):
    return load_default_model(device="cpu")


@pytest.mark.slow
def test_default_model_beats_the_causal_baseline_on_lee(default_model, smollm2_gguf):
    from llm2vec_rag import LLM2Vec
    from llm2vec_rag.training import lee_spearman

    if not os.path.isfile(os.path.join(DATA_DIR, "lee.cor")):
        pytest.skip("gensim test data missing: run scripts/fetch_data.sh")
    causal = LLM2Vec.from_pretrained(smollm2_gguf, enable_bidirectional=False, device="cpu")
    trained, baseline = lee_spearman(default_model, DATA_DIR), lee_spearman(causal, DATA_DIR)
    assert trained > baseline + 0.02, (trained, baseline)


@pytest.mark.slow
def test_cli_without_model_uses_the_default_model(default_model, tmp_path):
    from llm2vec_rag.cli import main

    src, out = tmp_path / "in.txt", tmp_path / "out.npy"
    src.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    assert main(["encode", str(src), "-o", str(out)]) == 0
    np.testing.assert_allclose(np.load(out), default_model.encode(TEXTS), atol=1e-5)
    assert main(["encode", str(src), "--onnx"]) == 2  # an ONNX folder must be named
