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
- ``config_sentence_transformers.json``: the ``query``/``document`` prompts (the encoder
  config's instructions, joined to the text with one space as LLM2Vec does) and cosine
  similarity.

``config.json`` keeps ``is_causal: false``, so transformers loads the decoder bidirectional.
The tokenizer is saved with right padding: transformers then numbers positions from 0 for
every text, as LLM2Vec's own position ids do.

What sentence-transformers cannot express (README, "Coming from sentence-transformers"):
without a prompt, mean pooling includes BOS; a prompt's length is measured on the prompt
alone, so a tokenizer that keeps the joining space as its own token (byte-level BPE)
drops the text's first token from pooling; ``weighted_mean`` weights count from BOS;
``eos`` pooling does not append EOS.
"""

from __future__ import annotations

import json
import os
import warnings

from .config import EncoderConfig

# Our pooling name -> (sentence-transformers' Pooling mode, whether the prompt is pooled).
ST_POOLING = {"mean": ("mean", False), "weighted_mean": ("weightedmean", False),
              "last": ("lasttoken", True), "bos": ("cls", True), "eos": ("lasttoken", True)}
_LEGACY_KEYS = {"cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens",
                "weightedmean": "pooling_mode_weightedmean_tokens",
                "lasttoken": "pooling_mode_lasttoken"}
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
    files = {
        "modules.json": [
            {"idx": 0, "name": "0", "path": "",
             "type": "sentence_transformers.base.modules.transformer.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling",
             "type": "sentence_transformers.sentence_transformer.modules.pooling.Pooling"},
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
    os.makedirs(os.path.join(folder, "1_Pooling"), exist_ok=True)
    written = []
    for name, content in files.items():
        path = os.path.join(folder, name)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(content, f, indent=2)
        written.append(path)
    _pad_right(folder)
    return written


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
