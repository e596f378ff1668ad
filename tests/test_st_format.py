"""A saved folder loads in the real sentence-transformers (and LangChain's HuggingFaceEmbeddings)
with LLM2Vec's pooling, prompts and bidirectional attention."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from llm2vec_rag import LLM2Vec

st = pytest.importorskip("sentence_transformers")
pytestmark = pytest.mark.compat

TEXTS = ["The quick brown fox jumps over the lazy dog near the river bank.",
         "Qdrant stores vectors and payloads", "hello", "a b c d e f g h i j k l m n o p"]
# No ':' : the tiny tokenizers map it to <unk>, a special token sentence-transformers strips
# from the end of a prompt when it measures the prompt's length.
INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
CHAT_TEMPLATE = ("{% for m in messages %}<s>{{ m['role'] }} {{ m['content'] }}</s>"
                 "{% endfor %}{% if add_generation_prompt %}<s>assistant{% endif %}")


def saved(tmp_path, model_dir, name="st", chat_template=False, **kwargs):
    encoder = LLM2Vec.from_pretrained(model_dir, query_instruction=INSTRUCTION, **kwargs)
    if chat_template:
        encoder.tokenizer.chat_template = CHAT_TEMPLATE
    folder = tmp_path / name
    encoder.save_pretrained(folder)
    return encoder, str(folder)


def load_st(folder):
    return st.SentenceTransformer(folder, device="cpu")


def test_files_and_bidirectional_config(tmp_path, tiny_model_dir):
    _, folder = saved(tmp_path, tiny_model_dir("llama"))
    for name in ("modules.json", "sentence_bert_config.json",
                 "config_sentence_transformers.json", "1_Pooling/config.json"):
        assert os.path.isfile(os.path.join(folder, name)), name
    with open(os.path.join(folder, "config.json")) as f:
        saved_config = json.load(f)
    # transformers reads is_causal; TEI reads use_bidirectional_attention (Llama, Mistral, ...)
    assert saved_config["is_causal"] is False
    assert saved_config["use_bidirectional_attention"] is True
    model = load_st(folder)
    assert model.prompts["query"] == INSTRUCTION + " " and model.similarity_fn_name == "cosine"
    assert model.max_seq_length == 512
    poolings = [m for m in model.modules() if type(m).__name__ == "Pooling"]
    assert poolings and all(p.include_prompt is False for p in poolings)
    backbone = model[0].model
    assert backbone.config.is_causal is False
    ids = torch.tensor([[5, 6, 7, 8]])
    changed = ids.clone()
    changed[0, 3] = 9
    with torch.no_grad():  # a later token changes an earlier token's state: bidirectional
        a, b = (backbone(input_ids=x).last_hidden_state[0, 0] for x in (ids, changed))
    assert not torch.allclose(a, b)


def test_mean_matches_without_bos(tmp_path, tiny_model_dir):
    """Qwen2-style tokenizer (no BOS): identical with and without a prompt."""
    encoder, folder = saved(tmp_path, tiny_model_dir("qwen2"))
    model = load_st(folder)
    np.testing.assert_allclose(model.encode(TEXTS), encoder.encode(TEXTS), atol=1e-5)
    np.testing.assert_allclose(model.encode(TEXTS, prompt_name="query"),
                               encoder.encode_queries(TEXTS), atol=1e-5)
    np.testing.assert_allclose(model.encode_query(TEXTS), encoder.encode_queries(TEXTS),
                               atol=1e-4)
    np.testing.assert_allclose(model.encode_document(TEXTS), encoder.encode_documents(TEXTS),
                               atol=1e-4)


@pytest.mark.parametrize("arch,kind", [("llama", "whitespace"), ("llama", "bytelevel"),
                                       ("mistral", "whitespace"), ("gemma", "whitespace")])
def test_mean_with_bos(tmp_path, tiny_model_dir, arch, kind):
    """Tokenizers that prepend BOS: documents (no prompt) and queries give LLM2Vec's vectors,
    BOS not pooled in either (sentence-transformers alone would average BOS for documents)."""
    encoder, folder = saved(tmp_path, tiny_model_dir(arch, kind))
    assert encoder.tokenizer("hello")["input_ids"][0] == encoder.tokenizer.bos_token_id
    model = load_st(folder)
    docs = encoder.encode_documents(TEXTS)
    queries = encoder.encode_queries(TEXTS)
    np.testing.assert_allclose(model.encode_document(TEXTS), docs, atol=1e-5)
    np.testing.assert_allclose(model.encode(TEXTS), docs, atol=1e-5)
    if kind == "bytelevel":  # prompts: the documented joining-space limit, not a BOS matter
        return
    np.testing.assert_allclose(model.encode_query(TEXTS), queries, atol=1e-5)
    np.testing.assert_allclose(model.encode(TEXTS, prompt_name="query", task="query"), queries,
                               atol=1e-5)
    # A prompt without task="query" takes the default (document) route: same direction.
    np.testing.assert_allclose(model.encode(TEXTS, prompt_name="query", normalize_embeddings=True),
                               encoder.encode_queries(TEXTS, normalize=True), atol=1e-5)


def test_bos_folder_loads_in_transformers_and_llm2vec(tmp_path, tiny_model_dir):
    """The saved flags keep transformers and our loader (which proves bidirectionality)
    working, with the same vectors."""
    import transformers

    encoder, folder = saved(tmp_path, tiny_model_dir("llama"))
    backbone = transformers.AutoModel.from_pretrained(folder)
    assert backbone.config.is_causal is False
    assert backbone.config.use_bidirectional_attention is True
    again = LLM2Vec.from_pretrained(folder)  # raises if the probe finds it causal
    np.testing.assert_allclose(again.encode_documents(TEXTS), encoder.encode_documents(TEXTS),
                               atol=1e-5)
    np.testing.assert_allclose(again.encode_queries(TEXTS), encoder.encode_queries(TEXTS),
                               atol=1e-5)


def test_resaving_without_bos_route_drops_it(tmp_path, tiny_model_dir):
    """Saving a last-pooling model over a mean-pooling folder leaves no stale router behind."""
    _, folder = saved(tmp_path, tiny_model_dir("llama"))
    assert os.path.isdir(os.path.join(folder, "1_Router"))
    encoder = LLM2Vec.from_pretrained(folder, pooling="last")
    encoder.save_pretrained(folder)
    assert not os.path.isdir(os.path.join(folder, "1_Router"))
    np.testing.assert_allclose(load_st(folder).encode(TEXTS), encoder.encode(TEXTS), atol=1e-5)


@pytest.mark.parametrize("pooling", ["last", "bos"])
def test_token_poolings_match(tmp_path, tiny_model_dir, pooling):
    encoder, folder = saved(tmp_path, tiny_model_dir("llama"), pooling=pooling)
    model = load_st(folder)
    np.testing.assert_allclose(model.encode(TEXTS), encoder.encode(TEXTS), atol=1e-4)
    np.testing.assert_allclose(model.encode_query(TEXTS), encoder.encode_queries(TEXTS),
                               atol=1e-4)


def test_chat_template_switched_off(tmp_path, tiny_model_dir):
    """sentence-transformers 6 renders plain texts as chat messages for a tokenizer with a
    chat template; the saved modality config keeps them plain texts."""
    encoder, folder = saved(tmp_path, tiny_model_dir("qwen2"), chat_template=True)
    model = load_st(folder)
    assert model.tokenizer.chat_template  # still there for generation
    features = model[0].preprocess(["hello world"])
    assert features["modality"] == "text"
    assert features["input_ids"][0].tolist() == encoder.tokenizer("hello world")["input_ids"]
    np.testing.assert_allclose(model.encode(TEXTS), encoder.encode(TEXTS), atol=1e-4)


def test_eos_pooling_warns(tmp_path, tiny_model_dir):
    with pytest.warns(UserWarning, match="cannot append the EOS"):
        saved(tmp_path, tiny_model_dir("llama"), pooling="eos")


def test_fused_folder_loads(tmp_path, tiny_model_dir):
    from llm2vec_rag.export import fuse_adapters

    out = fuse_adapters(tiny_model_dir("qwen2"), tmp_path / "fused",
                        query_instruction=INSTRUCTION)
    encoder = LLM2Vec.from_pretrained(out)
    model = load_st(str(out))
    np.testing.assert_allclose(model.encode_query(TEXTS), encoder.encode_queries(TEXTS),
                               atol=1e-4)


def test_langchain_huggingface_embeddings(tmp_path, tiny_model_dir):
    hf = pytest.importorskip("langchain_huggingface")
    encoder, folder = saved(tmp_path, tiny_model_dir("qwen2"))
    emb = hf.HuggingFaceEmbeddings(model_name=folder, model_kwargs={"device": "cpu"},
                                   query_encode_kwargs={"prompt_name": "query"})
    np.testing.assert_allclose(emb.embed_documents(TEXTS), encoder.encode_documents(TEXTS),
                               atol=1e-4)
    np.testing.assert_allclose(emb.embed_query(TEXTS[0]), encoder.encode_queries(TEXTS[0])[0],
                               atol=1e-4)


@pytest.mark.slow
def test_smollm2_difference(tmp_path, smollm2):
    """The real weights: chat template off, and the size of what ST cannot express
    (docs/coming-from.md)."""
    from llm2vec_rag.training.evaluate import read_lee

    docs = read_lee()[0][:16]
    folder = tmp_path / "smol"
    smollm2.config.query_instruction = INSTRUCTION
    try:
        smollm2.save_pretrained(folder)
    finally:
        smollm2.config.query_instruction = None
    model = load_st(str(folder))
    ids = model[0].preprocess(["hello world"])["input_ids"][0].tolist()
    assert ids == smollm2.tokenizer("hello world")["input_ids"]  # 2 tokens, not a chat
    ours, theirs = smollm2.encode(docs, normalize=True), model.encode(docs,
                                                                      normalize_embeddings=True)
    q_ours = smollm2.encode(docs, instruction=INSTRUCTION, normalize=True)
    q_theirs = model.encode(docs, prompt_name="query", normalize_embeddings=True)
    report = {"no_prompt_max_abs": float(np.abs(ours - theirs).max()),
              "no_prompt_min_cos": float((ours * theirs).sum(1).min()),
              "prompt_max_abs": float(np.abs(q_ours - q_theirs).max()),
              "prompt_min_cos": float((q_ours * q_theirs).sum(1).min())}
    print("smollm2 sentence-transformers vs LLM2Vec (unit vectors):", report)
    assert report["no_prompt_max_abs"] < 1e-4  # no BOS in SmolLM2's tokenizer: identical
    assert report["prompt_min_cos"] > 0.9
