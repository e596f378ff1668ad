"""The sentence-transformers / TEI description of a saved LLM2Vec folder.

``LLM2Vec.save_pretrained`` (and so ``export fuse``) writes these files beside the weights,
so that ``SentenceTransformer(folder)`` (and tools that read the same files, like TEI or
LangChain's ``HuggingFaceEmbeddings``) use LLM2Vec's pooling and prompts instead of
guessing mean pooling with BOS and no prompts:

- ``modules.json``: sentence-transformers' own ``Transformer`` + ``Pooling`` modules (no
  custom code, no ``trust_remote_code``);
- ``sentence_bert_config.json``: ``max_seq_length``, and the text modality only, which
  switches off the chat template (sentence-transformers 6 otherwise turns plain texts into
  chat messages for a tokenizer that has one: a system prompt and role markers);
- ``1_Pooling/config.json``: the pooling mode, ``include_prompt: false`` so the
  instruction (and the BOS before it) is not pooled; in the older ``pooling_mode_*`` keys
  that both sentence-transformers 6 and TEI read;
- for mean pooling with a tokenizer that prepends BOS (Llama, Mistral, Gemma), a
  ``1_Router`` instead of the Pooling module in ``modules.json``: sentence-transformers
  excludes only a prompt's tokens from pooling, so a text without a prompt (a document)
  would average BOS too. The ``document`` route (also the default) weights the BOS id 0 with
  sentence-transformers' ``WordWeights`` (its vocabulary is written as token ids, so no other
  token's string can match) before mean pooling; the ``query`` route pools without the
  prompt, whose length already covers BOS. ``encode_document``/``encode`` and
  ``encode_query`` then give LLM2Vec's vectors; ``encode(texts, prompt_name="query")``
  without ``task="query"`` takes the default route and gives the query vector times a
  positive factor (same direction: identical after normalisation and in any ranking);
- ``config_sentence_transformers.json``: the ``query``/``document`` prompts (the encoder
  config's instructions, joined to the text with one space as LLM2Vec does) and cosine
  similarity.

``config.json`` keeps ``is_causal: false``, so transformers loads the decoder bidirectional,
and gains ``use_bidirectional_attention: true``, the flag TEI (and transformers' Gemma
family) read for Llama, Mistral, Qwen3 and Gemma3.
The tokenizer is saved with right padding: transformers then numbers positions from 0 for
every text, as LLM2Vec's own position ids do.

What sentence-transformers cannot express (docs/compatibility.md): a prompt's length is
measured on the prompt alone, so a tokenizer that keeps the joining space as its own token
(byte-level BPE) drops the text's first token from pooling;
``weighted_mean`` weights count from BOS; ``eos`` pooling does not append EOS.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings

from .config import EncoderConfig

# Our pooling name -> (sentence-transformers' Pooling mode, whether the prompt is pooled).
ST_POOLING = {"mean": ("mean", False), "weighted_mean": ("weightedmean", False),
              "last": ("lasttoken", True), "bos": ("cls", True), "eos": ("lasttoken", True)}
_LEGACY_KEYS = {"cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens",
                "weightedmean": "pooling_mode_weightedmean_tokens",
                "lasttoken": "pooling_mode_lasttoken"}
_ST = "sentence_transformers."
_POOLING_TYPE = _ST + "sentence_transformer.modules.pooling.Pooling"
_ROUTER = "1_Router"
ST_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
            os.path.join("1_Pooling", "config.json"))


def st_prompt(instruction: str | None) -> str:
    """The prompt that, prepended to a text, gives LLM2Vec's ``instruction + " " + text``."""
    instruction = (instruction or "").strip()
    return instruction + " " if instruction else ""


def st_prompts(config: EncoderConfig) -> dict[str, str]:
    """Every named instruction (query, document and ``config.prompts``) as an ST prompt."""
    return {name: st_prompt(text) for name, text in config.all_prompts().items()}


def write_st_files(folder: str | os.PathLike, config: EncoderConfig, dim: int) -> list[str]:
    """Write the sentence-transformers files for ``config`` into ``folder``; their paths."""
    mode, include_prompt = ST_POOLING[config.pooling]
    if config.pooling == "eos":
        warnings.warn("eos pooling: sentence-transformers cannot append the EOS token, so "
                      "SentenceTransformer(folder) pools the text's last token instead "
                      "(its vectors differ); use LLM2Vec.from_pretrained(folder) for this model",
                      stacklevel=3)
    # The older key names: sentence-transformers 6 reads them without a warning, TEI reads them.
    pooling = {"word_embedding_dimension": dim,
               **{key: key == _LEGACY_KEYS[mode] for key in _LEGACY_KEYS.values()},
               "include_prompt": include_prompt}
    bos = _prepended_bos(folder) if config.pooling == "mean" else None
    second = ({"idx": 1, "name": "1", "path": _ROUTER, "type": _ST + "base.modules.router.Router"}
              if bos is not None else
              {"idx": 1, "name": "1", "path": "1_Pooling", "type": _POOLING_TYPE})
    files = {
        "modules.json": [
            {"idx": 0, "name": "0", "path": "",
             "type": "sentence_transformers.base.modules.transformer.Transformer"},
            second,
        ],
        "sentence_bert_config.json": {
            "transformer_task": "feature-extraction",
            "max_seq_length": config.max_length,
            "modality_config": {"text": {"method": "forward",
                                         "method_output_name": "last_hidden_state"}},
            "module_output_name": "token_embeddings",
        },
        os.path.join("1_Pooling", "config.json"): pooling,
        "config_sentence_transformers.json": {
            "model_type": "SentenceTransformer", "prompts": st_prompts(config),
            "default_prompt_name": None, "similarity_fn_name": "cosine",
        },
    }
    router = os.path.join(folder, _ROUTER)
    if bos is not None:
        files.update(_router_files(dim, *bos))
    elif os.path.isdir(router):  # a layout this function wrote for an earlier config
        shutil.rmtree(router)
    written = []
    for name, content in files.items():
        path = os.path.join(folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(content, f, indent=2)
        written.append(path)
    _mark_bidirectional(folder)
    _pad_right(folder)
    return written


def _router_files(dim: int, bos_id: int, vocab_size: int) -> dict[str, dict]:
    """The ``1_Router`` files: documents (the default route) weight BOS 0 before mean pooling,
    queries pool without their prompt (which includes BOS)."""
    pooling = {"embedding_dimension": dim, "pooling_mode": "mean", "include_prompt": False}
    return {
        os.path.join(_ROUTER, "router_config.json"): {
            "types": {"query_0_Pooling": _POOLING_TYPE,
                      "document_0_WordWeights":
                          _ST + "sentence_transformer.modules.word_weights.WordWeights",
                      "document_1_Pooling": _POOLING_TYPE},
            "structure": {"query": ["query_0_Pooling"],
                          "document": ["document_0_WordWeights", "document_1_Pooling"]},
            "parameters": {"default_route": "document", "allow_empty_key": True,
                           "route_mappings": {}},
        },
        os.path.join(_ROUTER, "query_0_Pooling", "config.json"): pooling,
        os.path.join(_ROUTER, "document_1_Pooling", "config.json"): pooling,
        # Ids as the vocabulary's "words": WordWeights also matches lower-cased words, so real
        # token strings could give another token BOS's weight.
        os.path.join(_ROUTER, "document_0_WordWeights", "config.json"): {
            "vocab": [str(i) for i in range(vocab_size)], "word_weights": {str(bos_id): 0.0},
            "unknown_word_weight": 1.0},
    }


def _prepended_bos(folder: str | os.PathLike) -> tuple[int, int] | None:
    """(BOS id, vocabulary size) when the saved tokenizer puts BOS before every text."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError):  # no tokenizer saved here: nothing to route
        return None
    bos = tokenizer.bos_token_id
    ids = tokenizer("a")["input_ids"]
    if bos is None or not ids or ids[0] != bos:
        return None
    return bos, max(len(tokenizer), bos + 1)


def _mark_bidirectional(folder: str | os.PathLike) -> None:
    """``is_causal: false`` for transformers, ``use_bidirectional_attention: true`` for TEI,
    at the top level and in a text sub-config, in the saved ``config.json``."""
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    for part in (cfg, cfg.get("text_config")):
        if isinstance(part, dict):
            part["is_causal"] = False
            part["use_bidirectional_attention"] = True
    with open(path, "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)


def _pad_right(folder: str | os.PathLike) -> None:
    """Right padding in the saved tokenizer: LLM2Vec pads itself, sentence-transformers and TEI
    use the tokenizer's side, and right padding keeps transformers' default positions exact."""
    path = os.path.join(folder, "tokenizer_config.json")
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    cfg["padding_side"] = "right"
    with open(path, "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2, ensure_ascii=False)
