"""Loading: folders, adapters in order, the McGill-NLP layout, save/reload, clear errors."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

from llm2vec_rag import EncoderConfig, LLM2Vec
from tiny import make_lora_adapter

TEXTS = ["The quick brown fox jumps over the lazy dog.", "Qdrant stores vectors.", "hi"]


def lora_delta(adapter_dir: str) -> dict[str, torch.Tensor]:
    """Expected weight change per module, computed from the saved adapter file alone."""
    from safetensors.torch import load_file

    cfg = json.load(open(os.path.join(adapter_dir, "adapter_config.json")))
    weights = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    scale = cfg["lora_alpha"] / cfg["r"]
    out = {}
    for key, a in weights.items():
        if "lora_A" in key:
            b = weights[key.replace("lora_A", "lora_B")]
            module = key.split("base_model.model.")[-1].split(".lora_A")[0]
            out[module + ".weight"] = scale * (b @ a)
    return out


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    base = tiny_model_dir("llama")
    root = tmp_path_factory.mktemp("adapters")
    return (base, make_lora_adapter(base, str(root / "a"), 1),
            make_lora_adapter(base, str(root / "b"), 2))


def test_adapters_are_merged_in_order(adapters):
    base, a, b = adapters
    plain = LLM2Vec.from_pretrained(base)
    merged = LLM2Vec.from_pretrained(base, adapters=[a, b])
    state, ref = merged.model.state_dict(), plain.model.state_dict()
    da, db = lora_delta(a), lora_delta(b)
    assert da, "adapter has no LoRA weights"
    for key, delta in da.items():
        torch.testing.assert_close(state[key], ref[key] + delta + db[key], atol=1e-5, rtol=1e-4)
    assert np.abs(merged.encode(TEXTS) - plain.encode(TEXTS)).max() > 1e-3
    assert not any("lora" in k for k in state), "adapters must be merged, not left as layers"


def test_save_and_reload(adapters, tmp_path):
    base, a, b = adapters
    model = LLM2Vec.from_pretrained(base, adapters=[a, b], pooling="weighted_mean",
                                    max_length=64, query_instruction="Find passages")
    model.save_pretrained(tmp_path / "saved")
    assert os.path.isfile(tmp_path / "saved" / "model.safetensors")
    reloaded = LLM2Vec.from_pretrained(tmp_path / "saved")
    assert reloaded.config == model.config
    np.testing.assert_allclose(reloaded.encode_queries(TEXTS), model.encode_queries(TEXTS),
                               atol=1e-5)
    override = LLM2Vec.from_pretrained(tmp_path / "saved", pooling="mean")
    assert override.config.pooling == "mean" and override.config.max_length == 64


def test_mcgill_layout(adapters, tmp_path):
    """A "-mntp" folder: adapter + tokenizer + llm2vec_config naming the real base model."""
    base, a, b = adapters
    mntp = tmp_path / "LLM2Vec-tiny-mntp"
    shutil.copytree(a, mntp)  # the same weights as adapter a
    cfg_path = mntp / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = base
    cfg_path.write_text(json.dumps(cfg))
    LLM2Vec.from_pretrained(base).tokenizer.save_pretrained(mntp)
    (mntp / "llm2vec_config.json").write_text(json.dumps({"pooling_mode": "weighted_mean"}))
    published = LLM2Vec.from_pretrained(mntp, adapters=[b])
    assert published.config.pooling == "weighted_mean"
    explicit = LLM2Vec.from_pretrained(base, adapters=[a, b], pooling="weighted_mean")
    np.testing.assert_allclose(published.encode(TEXTS), explicit.encode(TEXTS), atol=1e-5)


def test_adapter_for_another_base_model(adapters, tmp_path):
    from tiny import make_tiny_model

    _, a, _ = adapters
    other = make_tiny_model(str(tmp_path / "wider"), "llama", hidden=96)
    with pytest.raises(ValueError, match="does not fit this base model.*trained for"):
        LLM2Vec.from_pretrained(other, adapters=[a])


def test_missing_model_folder():
    with pytest.raises(FileNotFoundError, match="does not exist.*hub id"):
        LLM2Vec.from_pretrained("./no/such/model")


def test_missing_adapter(tiny_model_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LLM2Vec.from_pretrained(tiny_model_dir("llama"), adapters=[str(tmp_path / "nope")])
    with pytest.raises(FileNotFoundError, match="not a PEFT/LoRA adapter"):
        LLM2Vec.from_pretrained(tiny_model_dir("llama"), adapters=[str(tmp_path)])


def test_unknown_pooling(tiny_model_dir):
    with pytest.raises(ValueError, match="Unknown pooling 'max'.*mean"):
        LLM2Vec.from_pretrained(tiny_model_dir("llama"), pooling="max")


def test_reference_pooling_names_accepted():
    assert EncoderConfig(pooling="eos_token").pooling == "eos"
    with pytest.raises(ValueError, match="max_length"):
        EncoderConfig(max_length=0)


def test_folder_without_weights_is_refused(tiny_model_dir, tmp_path):
    """A config without weights would load as a random model: refuse it."""
    folder = tmp_path / "config-only"
    folder.mkdir()
    for name in os.listdir(tiny_model_dir("llama")):
        if not name.endswith(".safetensors"):
            src = os.path.join(tiny_model_dir("llama"), name)
            (folder / name).write_bytes(open(src, "rb").read())
    with pytest.raises((ValueError, OSError)):
        LLM2Vec.from_pretrained(folder)
