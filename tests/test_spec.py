"""EncoderSpec: a small picklable description that rebuilds the same encoder in any process;
per-text instructions (what merged server batches and the reference's input need)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from llm2vec_rag import Encoder, EncoderSpec, LLM2Vec, load_encoder


def test_spec_rebuilds_the_same_encoder(tiny_model_dir):
    enc = LLM2Vec.from_pretrained(tiny_model_dir("llama"), pooling="weighted_mean",
                                  max_length=64, query_instruction="Find it")
    spec = pickle.loads(pickle.dumps(enc.spec))
    assert len(pickle.dumps(enc.spec)) < 2000  # a description, never weights
    assert spec == EncoderSpec.from_json(spec.to_json())
    again = spec.load()
    assert again.config == enc.config and again.source == enc.source
    texts = ["a fox", "the river bank is cold in winter"]
    np.testing.assert_allclose(again.encode_queries(texts), enc.encode_queries(texts), atol=1e-6)
    assert isinstance(again, Encoder)


def test_spec_option_override_and_checks(tiny_model_dir):
    spec = EncoderSpec(tiny_model_dir("llama"), options={"device": "cpu"})
    assert spec.replace(device="cuda:1").options["device"] == "cuda:1"
    assert spec.options == {"device": "cpu"}
    with pytest.raises(ValueError, match="backend"):
        EncoderSpec("m", backend="tf")
    with pytest.raises(ValueError, match="fuse them"):
        EncoderSpec("onnx-folder", adapters=("a",), backend="onnx")
    with pytest.raises(TypeError, match="plain data"):
        EncoderSpec("m", options={"device": object()})
    with pytest.raises(ValueError, match="non-empty"):
        EncoderSpec("")


def test_load_encoder_by_name(tiny_model_dir):
    enc = load_encoder(tiny_model_dir("llama"), pooling="bos")
    assert enc.config.pooling == "bos" and enc.spec.options["pooling"] == "bos"


def test_per_text_instructions_equal_separate_calls(tiny_encoder):
    texts = ["a fox", "the river bank", "cold winter", ""]
    instructions = ["Find it", None, "Retrieve passages about weather", "Find it"]
    together = tiny_encoder.encode(texts, instruction=instructions, batch_size=3)
    for i, (t, ins) in enumerate(zip(texts, instructions)):
        alone = tiny_encoder.encode([t], instruction=ins)
        np.testing.assert_allclose(together[i], alone[0], atol=1e-5)


def test_per_text_instruction_errors(tiny_encoder):
    with pytest.raises(ValueError, match="2 items for 3 texts"):
        tiny_encoder.encode(["a", "b", "c"], instruction=["x", "y"])
    with pytest.raises(TypeError, match=r"instruction\[1\] is int"):
        tiny_encoder.encode(["a", "b"], instruction=["x", 3])


def test_forward_batch_is_public_and_the_old_name_still_works(tiny_encoder):
    from llm2vec_rag.protocol import BatchEncoder

    assert isinstance(tiny_encoder, BatchEncoder)
    texts = ["a fox", "the river bank is cold in winter"]
    encoded = tiny_encoder.preprocessor.encode(texts, None)
    [batch] = list(tiny_encoder.preprocessor.batches(encoded, 8, 4096))
    got = tiny_encoder.forward_batch(batch)  # [B, D], rows in batch.index order
    np.testing.assert_allclose(got[np.argsort(batch.index)], tiny_encoder.encode(texts),
                               atol=1e-6)
    np.testing.assert_array_equal(tiny_encoder._forward_batch(batch), got)


def test_spec_of_a_name_a_spec_or_an_encoder(tiny_model_dir):
    folder = tiny_model_dir("llama")
    by_name = EncoderSpec.of(folder, ["a1"], pooling="bos")
    assert by_name == EncoderSpec(folder, ("a1",), "torch", {"pooling": "bos"})
    assert EncoderSpec.of(by_name, device="cpu").options == {"pooling": "bos", "device": "cpu"}
    assert EncoderSpec.of("onnx-dir", backend="onnx").backend == "onnx"
    loaded = LLM2Vec.from_pretrained(folder, pooling="bos")
    assert EncoderSpec.of(loaded) == loaded.spec
    with pytest.raises(TypeError, match="loaded by name"):
        EncoderSpec.of(object())
    assert load_encoder(EncoderSpec.of(folder, pooling="bos")).config.pooling == "bos"
