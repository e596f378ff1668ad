"""The shared encode path: shapes, invariance, instructions, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from llm2vec_rag import LLM2Vec

TEXTS = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Qdrant stores vectors.",
    "A contrastive loss pulls positive pairs together and pushes negatives apart, while "
    "masked next token prediction adapts a decoder to attend to future tokens.",
    "hi",
    "Numbers like 3.14, 42 and 1e-5 appear in scientific writing and code.",
    "weather in Montreal is cold in winter",
    "Python, Rust and C++",
]


def test_shape_dtype_and_order(tiny_encoder):
    out = tiny_encoder.encode(TEXTS)
    assert out.shape == (len(TEXTS), tiny_encoder.dim) and out.dtype == np.float32
    for i, t in enumerate(TEXTS):
        np.testing.assert_allclose(tiny_encoder.encode([t])[0], out[i], atol=1e-5)


@pytest.mark.parametrize("batch_size", [1, 2, 3, 7, 64])
def test_invariant_to_batch_size(tiny_encoder, batch_size):
    ref = tiny_encoder.encode(TEXTS, batch_size=len(TEXTS))
    out = tiny_encoder.encode(TEXTS, batch_size=batch_size)
    assert np.abs(out - ref).max() <= 1e-5


def test_invariant_to_neighbours_and_token_budget(tiny_encoder):
    ref = tiny_encoder.encode(TEXTS)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(TEXTS))
    shuffled = tiny_encoder.encode([TEXTS[i] for i in perm] + ["filler " * 40], batch_size=4)
    assert np.abs(shuffled[: len(TEXTS)] - ref[perm]).max() <= 1e-5
    budget = tiny_encoder.encode(TEXTS, max_batch_tokens=40)
    assert np.abs(budget - ref).max() <= 1e-5


@pytest.mark.parametrize("arch", ["llama", "mistral", "gemma", "qwen2"])
@pytest.mark.parametrize("pooling", ["mean", "weighted_mean", "eos", "last", "bos"])
def test_invariant_to_padding_side(tiny_model_dir, arch, pooling):
    folder = tiny_model_dir(arch)
    left = LLM2Vec.from_pretrained(folder, pooling=pooling, padding_side="left")
    right = LLM2Vec.from_pretrained(folder, pooling=pooling, padding_side="right")
    for instruction in (None, "Retrieve passages"):
        a = left.encode(TEXTS, instruction=instruction, batch_size=4)
        b = right.encode(TEXTS, instruction=instruction, batch_size=4)
        assert np.abs(a - b).max() <= 1e-5


def test_instruction_is_attended_but_not_pooled(tiny_model_dir):
    model = LLM2Vec.from_pretrained(tiny_model_dir("llama", "bytelevel"))
    plain = model.encode(TEXTS)
    a = model.encode(TEXTS, instruction="Retrieve passages")
    b = model.encode(TEXTS, instruction="Classify the sentiment")
    assert np.abs(a - plain).max() > 1e-4 and np.abs(a - b).max() > 1e-4
    batch = model.preprocessor.encode(["weather in Montreal"], "Retrieve passages")[0]
    text_ids = model.tokenizer([" weather in Montreal"], add_special_tokens=False)["input_ids"][0]
    assert batch.ids[batch.embed_start: batch.embed_end] == text_ids


def test_instruction_whitespace_is_stripped(tiny_encoder):
    a = tiny_encoder.encode(TEXTS, instruction="Retrieve passages")
    b = tiny_encoder.encode(TEXTS, instruction="  Retrieve passages \n")
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(tiny_encoder.encode(TEXTS, instruction="  "),
                                  tiny_encoder.encode(TEXTS))


def test_queries_and_documents_use_configured_instructions(tiny_model_dir):
    model = LLM2Vec.from_pretrained(tiny_model_dir("llama"), query_instruction="Retrieve passages")
    np.testing.assert_array_equal(model.encode_queries(TEXTS),
                                  model.encode(TEXTS, instruction="Retrieve passages"))
    np.testing.assert_array_equal(model.encode_documents(TEXTS), model.encode(TEXTS))
    np.testing.assert_array_equal(model.encode_queries(TEXTS, instruction="Other"),
                                  model.encode(TEXTS, instruction="Other"))


def test_normalize(tiny_encoder):
    out = tiny_encoder.encode(TEXTS, normalize=True)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


def test_encode_iter_streams_in_order(tiny_encoder):
    ref = tiny_encoder.encode(TEXTS)
    chunks = list(tiny_encoder.encode_iter(iter(TEXTS), chunk_size=3))
    assert [len(c) for c in chunks] == [3, 3, 1]
    assert np.abs(np.concatenate(chunks) - ref).max() <= 1e-5
    with pytest.raises(TypeError):
        next(tiny_encoder.encode_iter("one string"))


def test_empty_list_and_single_string(tiny_encoder):
    assert tiny_encoder.encode([]).shape == (0, tiny_encoder.dim)
    assert tiny_encoder.encode("hello").shape == (1, tiny_encoder.dim)


@pytest.mark.parametrize("bad,match", [
    (None, "texts must be"), (["ok", None], r"texts\[1\] is NoneType"),
    (["ok", 3], r"texts\[1\] is int"), ([["nested"]], "nested lists"), (42, "texts must be"),
])
def test_bad_input_names_the_item(tiny_encoder, bad, match):
    with pytest.raises(TypeError, match=match):
        tiny_encoder.encode(bad)


def test_bad_instruction_type(tiny_encoder):
    with pytest.raises(TypeError, match="instruction"):
        tiny_encoder.encode(["x"], instruction=5)
    with pytest.raises(TypeError, match="instruction"):
        tiny_encoder.encode(["x"], instruction={"a": 1})


@pytest.mark.parametrize("kind", ["whitespace", "bytelevel"])
def test_empty_and_whitespace_text_are_deterministic(tiny_model_dir, kind):
    model = LLM2Vec.from_pretrained(tiny_model_dir("qwen2", kind))  # qwen2: no BOS token
    out = model.encode(["", "   ", "", "\n"], instruction=None)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[0], out[2])
    again = model.encode(["", "x"], instruction="Retrieve passages")
    assert np.isfinite(again).all()


def test_truncation_warns_once_per_call(tiny_model_dir):
    model = LLM2Vec.from_pretrained(tiny_model_dir("llama"), max_length=16)
    long = ["the quick brown fox " * 20] * 5
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = model.encode(long + ["short"])
    messages = [str(w.message) for w in caught if "truncated" in str(w.message)]
    assert len(messages) == 1 and "5 of 6" in messages[0]
    assert np.isfinite(out).all()
    ids = model.preprocessor.encode(long[:1], "Retrieve passages")[0].ids
    assert len(ids) == 16


def test_instruction_longer_than_max_length(tiny_model_dir):
    model = LLM2Vec.from_pretrained(tiny_model_dir("llama"), max_length=8)
    with pytest.raises(ValueError, match="instruction takes"):
        model.encode(["x"], instruction="the quick brown fox jumps over the lazy dog near it")


UNUSUAL = [
    "Ünïcødé façade naïve 😀🚀👩‍👩‍👧", "مرحبا بالعالم", "שלום עולם", "日本語のテキスト",
    "!@#$%^&*()", "before !@#$%^&*() after", "<s></s><unk>", "\t\n\r", "a" * 300,
    "{{ json: [1,2,3] }} ;; -- /* */ \\ \" '",
]


def test_unusual_text_is_just_text(tiny_model_dir):
    model = LLM2Vec.from_pretrained(tiny_model_dir("llama", "bytelevel"))
    out = model.encode(UNUSUAL)
    assert np.isfinite(out).all()
    one_by_one = np.stack([model.encode([t])[0] for t in UNUSUAL])
    assert np.abs(out - one_by_one).max() <= 1e-5
    # The reference implementation splits on "!@#$%^&*()"; here it is ordinary text.
    assert np.abs(model.encode(["before !@#$%^&*() after"]) - model.encode(["after"])).max() > 1e-4


def test_bad_arguments(tiny_encoder):
    with pytest.raises(ValueError, match="batch_size"):
        tiny_encoder.encode(["x"], batch_size=0)
