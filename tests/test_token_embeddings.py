"""encode(output_value="token_embeddings"): the text's own token vectors, from the same
forward pass and positions as the sentence vector (PyTorch, ONNX Runtime, pool, encode_iter)."""

from __future__ import annotations

import numpy as np
import pytest

from llm2vec_rag import LLM2Vec

TEXTS = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Qdrant stores vectors.",
    "a",
    "Large language models can be turned into strong text encoders with bidirectional "
    "attention, and their token states carry context from both sides.",
    "Numbers like 3.14, 42 and 1e-5 appear in scientific writing.",
]


@pytest.fixture(scope="module", params=["left", "right"])
def encoder(request, tiny_model_dir):
    return LLM2Vec.from_pretrained(tiny_model_dir("llama"), padding_side=request.param)


@pytest.mark.parametrize("instruction", [None, "Represent the passage for retrieval"])
@pytest.mark.parametrize("batch_size", [1, 2, 32])
def test_mean_of_token_vectors_is_the_sentence_vector(encoder, instruction, batch_size):
    tokens = encoder.encode(TEXTS, instruction=instruction, batch_size=batch_size,
                            output_value="token_embeddings")
    sentences = encoder.encode(TEXTS, instruction=instruction, batch_size=batch_size)
    assert isinstance(tokens, list) and len(tokens) == len(TEXTS)
    for text, t, s in zip(TEXTS, tokens, sentences):
        assert t.dtype == np.float32 and t.shape[1] == encoder.dim
        # the text's own tokens only: no instruction, BOS or padding
        n_text = len(encoder.tokenizer(text, add_special_tokens=False)["input_ids"])
        assert t.shape[0] == n_text
        np.testing.assert_allclose(t.mean(axis=0), s, atol=1e-5)


def test_tokens_do_not_depend_on_batching(encoder):
    alone = [encoder.encode(t, output_value="token_embeddings")[0] for t in TEXTS]
    together = encoder.encode(TEXTS, batch_size=3, output_value="token_embeddings")
    for a, b in zip(alone, together):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_offsets_name_each_tokens_characters(tiny_encoder):
    for instruction in (None, "Represent the passage"):
        tokens, offsets = tiny_encoder.encode(TEXTS, instruction=instruction,
                                              output_value="token_embeddings",
                                              return_offsets=True)
        for text, t, off in zip(TEXTS, tokens, offsets):
            assert off.shape == (len(t), 2) and off.dtype == np.int64
            assert (off[:, 0] < off[:, 1]).all() and (np.diff(off[:, 0]) > 0).all()
            pieces = [text[a:b] for a, b in off]
            assert "".join(pieces).replace(" ", "") == text.replace(" ", "")


def test_normalize_applies_to_each_token(tiny_encoder):
    plain = tiny_encoder.encode(TEXTS[:2], output_value="token_embeddings")
    unit = tiny_encoder.encode(TEXTS[:2], output_value="token_embeddings", normalize=True)
    for p, u in zip(plain, unit):
        np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(u, p / np.linalg.norm(p, axis=1, keepdims=True), atol=1e-6)


def test_long_texts_are_truncated_like_encode(tiny_model_dir):
    encoder = LLM2Vec.from_pretrained(tiny_model_dir("llama"), max_length=8)
    with pytest.warns(UserWarning, match="truncated"):
        tokens, offsets = encoder.encode(TEXTS[0], output_value="token_embeddings",
                                         return_offsets=True)
    assert tokens[0].shape[0] == 8 - 1  # max_length minus BOS
    assert offsets[0][0, 0] == 0  # the start of the text is kept
    with pytest.warns(UserWarning, match="truncated"):
        np.testing.assert_allclose(tokens[0].mean(axis=0), encoder.encode(TEXTS[0])[0],
                                   atol=1e-5)


def test_eos_pooling_leaves_the_appended_eos_out(tiny_model_dir):
    encoder = LLM2Vec.from_pretrained(tiny_model_dir("llama"), pooling="eos")
    tokens = encoder.encode(TEXTS[1], output_value="token_embeddings")[0]
    assert tokens.shape[0] == len(encoder.tokenizer(TEXTS[1], add_special_tokens=False)
                                  ["input_ids"])


def test_empty_text_has_no_tokens(tiny_encoder):
    tokens, offsets = tiny_encoder.encode(["", "a"], output_value="token_embeddings",
                                          return_offsets=True)
    assert tokens[0].shape == (0, tiny_encoder.dim) and offsets[0].shape == (0, 2)
    assert tokens[1].shape[0] == 1


def test_encode_iter_streams_token_embeddings(tiny_encoder):
    chunks = list(tiny_encoder.encode_iter(iter(TEXTS), chunk_size=2,
                                           output_value="token_embeddings"))
    assert [len(c) for c in chunks] == [2, 2, 1]
    want = tiny_encoder.encode(TEXTS, output_value="token_embeddings")
    for got, w in zip([t for c in chunks for t in c], want):
        np.testing.assert_allclose(got, w, atol=1e-5)


def test_bad_options_are_named(tiny_encoder):
    with pytest.raises(ValueError, match="output_value"):
        tiny_encoder.encode(TEXTS, output_value="tokens")
    with pytest.raises(ValueError, match="return_offsets"):
        tiny_encoder.encode(TEXTS, return_offsets=True)
    with pytest.raises(ValueError, match="float32"):
        tiny_encoder.encode(TEXTS, output_value="token_embeddings", precision="int8")


def test_onnx_token_outputs_match_pytorch(llama, llama_onnx):
    from llm2vec_rag.export import OnnxLLM2Vec

    onnx = OnnxLLM2Vec.from_pretrained(llama_onnx, provider="cpu")
    for instruction in (None, "Represent the passage"):
        got, got_off = onnx.encode(TEXTS, instruction=instruction, batch_size=2,
                                   output_value="token_embeddings", return_offsets=True)
        want, want_off = llama.encode(TEXTS, instruction=instruction, batch_size=2,
                                      output_value="token_embeddings", return_offsets=True)
        sentences = onnx.encode(TEXTS, instruction=instruction)
        for g, w, go, wo, s in zip(got, want, got_off, want_off, sentences):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, atol=1e-4)
            np.testing.assert_array_equal(go, wo)
            np.testing.assert_allclose(g.mean(axis=0), s, atol=1e-5)


def test_pool_returns_the_same_token_embeddings(tiny_model_dir):
    encoder = LLM2Vec.from_pretrained(tiny_model_dir("llama"), device="cpu")
    want = encoder.encode(TEXTS, output_value="token_embeddings", normalize=True)
    with encoder.start_multi_process_pool(["cpu"], min_texts=1, chunk_size=2,
                                          threads_per_worker=1) as pool:
        got, offsets = encoder.encode(TEXTS, pool=pool, output_value="token_embeddings",
                                      normalize=True, return_offsets=True)
    for g, w, o in zip(got, want, offsets):
        np.testing.assert_allclose(g, w, atol=1e-5)
        assert len(o) == len(g)


@pytest.mark.parametrize("arch,kind", [("qwen2", "bytelevel"), ("gemma", "whitespace")])
def test_other_tokenizers_keep_the_invariant_and_the_offsets(tiny_model_dir, arch, kind):
    """Byte-level BPE without BOS (SmolLM2/Qwen-like; a token carries its leading space) and
    Gemma's BOS: offsets stay inside the text, the mean stays the sentence vector."""
    encoder = LLM2Vec.from_pretrained(tiny_model_dir(arch, kind))
    for instruction in (None, "Represent the passage"):
        tokens, offsets = encoder.encode(TEXTS, instruction=instruction,
                                         output_value="token_embeddings", return_offsets=True)
        sentences = encoder.encode(TEXTS, instruction=instruction)
        for text, t, off, s in zip(TEXTS, tokens, offsets, sentences):
            np.testing.assert_allclose(t.mean(axis=0), s, atol=1e-5)
            assert off.min() >= 0 and off.max() <= len(text) and off[-1, 1] == len(text)
            assert text[off[0, 0]: off[-1, 1]].strip() == text.strip()


@pytest.mark.slow
def test_smollm2_mean_of_tokens_is_the_sentence_vector(smollm2):
    texts = TEXTS[:3]
    tokens, offsets = smollm2.encode(texts, output_value="token_embeddings",
                                     return_offsets=True)
    for text, t, off, s in zip(texts, tokens, offsets, smollm2.encode(texts)):
        np.testing.assert_allclose(t.mean(axis=0), s, atol=1e-4)
        assert off[-1, 1] == len(text)
    spans = [(0, len(texts[0]))]
    np.testing.assert_allclose(smollm2.encode_chunks(texts[0], spans),
                               smollm2.encode(texts[0]), atol=1e-4)


def test_an_export_without_token_outputs_says_to_re_export(llama_onnx, tmp_path):
    """A folder exported before token outputs existed: sentence vectors still work, token
    embeddings and late chunking name the missing output and the fix."""
    import shutil

    import onnx

    from llm2vec_rag.export import OnnxLLM2Vec

    old = tmp_path / "old"
    shutil.copytree(llama_onnx, old)
    graph = onnx.load(str(old / "model.onnx"))
    del graph.graph.output[1:]
    onnx.save(graph, str(old / "model.onnx"))
    encoder = OnnxLLM2Vec.from_pretrained(old, provider="cpu")
    assert encoder.encode(TEXTS[:2]).shape == (2, encoder.dim)
    with pytest.raises(ValueError, match="re-export"):
        encoder.encode(TEXTS[:2], output_value="token_embeddings")
    with pytest.raises(ValueError, match="token_embeddings"):
        encoder.encode_chunks(TEXTS[0], [(0, 5)])
