"""encode_chunks: late chunking from one forward pass, windows for long documents."""

from __future__ import annotations

import numpy as np
import pytest

from llm2vec_rag import LLM2Vec
from llm2vec_rag.late_chunking import plan_windows

DOC = ("Qdrant stores vectors and payloads. It answers nearest neighbour queries quickly. "
       "The weather in Montreal is cold in winter and warm in summer.")
OTHER = "The quick brown fox jumps over the lazy dog near the river bank."


def sentence_spans(text: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for i, ch in enumerate(text):
        if ch == "." and (i + 1 == len(text) or text[i + 1] == " "):
            spans.append((start, i + 1))
            start = i + 2
    return spans


@pytest.mark.parametrize("pooling", ["mean", "weighted_mean", "eos", "last", "bos"])
@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_a_span_over_the_whole_text_equals_encode(tiny_model_dir, pooling, padding_side):
    encoder = LLM2Vec.from_pretrained(tiny_model_dir("llama"), pooling=pooling,
                                      padding_side=padding_side)
    for instruction in (None, "Represent the passage"):
        got = encoder.encode_chunks([DOC, OTHER], [[(0, len(DOC))], [(0, len(OTHER))]],
                                    instruction=instruction)
        want = encoder.encode([DOC, OTHER], instruction=instruction)
        np.testing.assert_allclose(np.concatenate(got), want, atol=1e-5)


def test_mean_chunk_is_the_mean_of_its_token_vectors(tiny_encoder):
    spans = sentence_spans(DOC)
    chunks = tiny_encoder.encode_chunks(DOC, spans)
    tokens, offsets = tiny_encoder.encode(DOC, output_value="token_embeddings",
                                          return_offsets=True)
    assert chunks.shape == (len(spans), tiny_encoder.dim) and chunks.dtype == np.float32
    for (start, end), vector in zip(spans, chunks):
        inside = (offsets[0][:, 0] < end) & (offsets[0][:, 1] > start)
        np.testing.assert_allclose(vector, tokens[0][inside].mean(axis=0), atol=1e-5)


def test_spans_do_not_depend_on_batch_size(tiny_encoder):
    docs = [DOC, OTHER, DOC + " " + OTHER]
    spans = [sentence_spans(d) for d in docs]
    one = tiny_encoder.encode_chunks(docs, spans, batch_size=1)
    many = tiny_encoder.encode_chunks(docs, spans, batch_size=32)
    for a, b in zip(one, many):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_a_chunk_carries_its_documents_context(tiny_encoder):
    """The same sentence gets another vector when a distant sentence changes: the context is
    really attended to; naive chunking would give the same vector."""
    first = "Qdrant stores vectors and payloads."
    middle = " " + OTHER + " " + DOC + " "  # ~60 tokens between the chunk and the change
    a = tiny_encoder.encode_chunks(first + middle + "Cold winters.", [(0, len(first))])
    b = tiny_encoder.encode_chunks(first + middle + "Python code.", [(0, len(first))])
    naive = tiny_encoder.encode(first)
    assert np.abs(a - b).max() > 1e-3
    assert np.abs(a - naive).max() > 1e-3


def test_long_documents_are_covered_by_windows(tiny_model_dir):
    """max_length 16 (BOS + 15 text tokens per window): each sentence is pooled from the window
    that holds it with the most context, i.e. equals mean pooling that window's own text."""
    long_doc = " ".join([DOC, OTHER, DOC, OTHER])
    spans = sentence_spans(long_doc)
    short = LLM2Vec.from_pretrained(tiny_model_dir("llama"), max_length=16)
    got = short.encode_chunks(long_doc, spans)
    offsets = np.array(short.tokenizer(long_doc, add_special_tokens=False,
                                       return_offsets_mapping=True)["offset_mapping"])
    windows = plan_windows(len(offsets), 15)  # default overlap: a quarter of a window
    assert len(windows) > 3
    checked = 0
    for (start, end), vector in zip(spans, got):
        inside = np.flatnonzero((offsets[:, 0] < end) & (offsets[:, 1] > start))
        s, e = inside[0], inside[-1] + 1
        holding = [w for w in windows if w[0] <= s and e <= w[1]]
        if not holding:
            continue
        a, b = max(holding, key=lambda w: min(s - w[0], w[1] - e))
        window_text = long_doc[offsets[a][0]: offsets[b - 1][1]]
        tokens = short.encode(window_text, output_value="token_embeddings")[0]
        assert len(tokens) == b - a
        np.testing.assert_allclose(vector, tokens[s - a: e - a].mean(axis=0), atol=1e-5)
        checked += 1
    assert checked >= 4
    # a chunk longer than a window is split over windows, each token from its most central one
    everything = short.encode_chunks(long_doc, [(0, len(long_doc))])
    states = {w: short.encode(long_doc[offsets[w[0]][0]: offsets[w[1] - 1][1]],
                              output_value="token_embeddings")[0] for w in windows}
    picked = [states[w][t - w[0]] for t in range(len(offsets))
              for w in [max((w for w in windows if w[0] <= t < w[1]),
                            key=lambda w, t=t: min(t - w[0], w[1] - 1 - t))]]
    np.testing.assert_allclose(everything[0], np.mean(picked, axis=0), atol=1e-5)


def test_window_plan_overlaps_and_covers():
    assert plan_windows(10, 16) == [(0, 10)]
    windows = plan_windows(100, 16, 4)
    assert windows[0] == (0, 16) and windows[-1] == (84, 100)
    for (_, b0), (a1, b1) in zip(windows, windows[1:]):
        assert b0 - a1 >= 4 and b1 - a1 == 16
    with pytest.raises(ValueError, match="overlap"):
        plan_windows(100, 16, 16)


def test_window_overlap_argument_changes_nothing_for_short_documents(tiny_encoder):
    spans = sentence_spans(DOC)
    np.testing.assert_allclose(tiny_encoder.encode_chunks(DOC, spans, window_overlap=0),
                               tiny_encoder.encode_chunks(DOC, spans), atol=1e-6)


def test_bad_spans_are_named(tiny_encoder):
    with pytest.raises(ValueError, match=r"documents\[1\]: spans\[0\] = \(5, 500\)"):
        tiny_encoder.encode_chunks([DOC, OTHER], [[(0, 5)], [(5, 500)]])
    with pytest.raises(ValueError, match="non-empty"):
        tiny_encoder.encode_chunks(DOC, [(3, 3)])
    with pytest.raises(TypeError, match=r"spans\[1\]"):
        tiny_encoder.encode_chunks(DOC, [(0, 3), "ab"])
    with pytest.raises(ValueError, match="one list of"):
        tiny_encoder.encode_chunks([DOC, OTHER], [[(0, 5)]])
    with pytest.raises(ValueError, match="holds no token"):
        tiny_encoder.encode_chunks("a    b", [(2, 4)])
    with pytest.raises(ValueError, match="window_overlap"):
        tiny_encoder.encode_chunks(DOC, [(0, 5)], window_overlap=-1)


def test_documents_without_spans_cost_nothing(tiny_encoder):
    out = tiny_encoder.encode_chunks([DOC, ""], [[(0, 6)], []])
    assert out[1].shape == (0, tiny_encoder.dim)


def test_normalize(tiny_encoder):
    out = tiny_encoder.encode_chunks(DOC, sentence_spans(DOC), normalize=True)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_onnx_late_chunking_matches_pytorch(llama, llama_onnx):
    from llm2vec_rag.export import OnnxLLM2Vec

    onnx = OnnxLLM2Vec.from_pretrained(llama_onnx, provider="cpu")
    spans = sentence_spans(DOC)
    np.testing.assert_allclose(onnx.encode_chunks(DOC, spans), llama.encode_chunks(DOC, spans),
                               atol=1e-4)


@pytest.mark.parametrize("pooling", ["mean", "eos"])
def test_byte_level_tokenizer_without_bos(tiny_model_dir, pooling):
    """SmolLM2-like tokenizers: tokens carry their leading space and no BOS is added."""
    encoder = LLM2Vec.from_pretrained(tiny_model_dir("qwen2", "bytelevel"), pooling=pooling)
    for instruction in (None, "Represent the passage"):
        got = encoder.encode_chunks(DOC, [(0, len(DOC))], instruction=instruction)
        np.testing.assert_allclose(got, encoder.encode(DOC, instruction=instruction),
                                   atol=1e-5)
    spans = sentence_spans(DOC)
    assert encoder.encode_chunks(DOC, spans).shape == (len(spans), encoder.dim)


def test_the_encode_pages_snippet_runs(tiny_encoder):
    """docs/encode.md's token-embeddings snippet, as written, on a tiny model."""
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "encode.md").read_text("utf-8")
    section = page.split("## Token embeddings and late chunking", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope = {"model": tiny_encoder}
    exec(compile(code, "docs/encode.md", "exec"), scope)
    assert scope["chunks"].shape == (2, tiny_encoder.dim)
    assert [len(a) for a in scope["many"]] == [2, 1]
    assert scope["offsets"][0][-1, 1] == len(scope["doc"])
    doc, (start, end) = scope["doc"], scope["spans"][0]
    assert doc[start:end] == "Qdrant stores vectors."
