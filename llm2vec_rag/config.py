"""The encoder settings that travel with a model folder as ``llm2vec_config.json``."""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, dataclass, fields

CONFIG_NAME = "llm2vec_config.json"

POOLING_MODES = ("mean", "weighted_mean", "eos", "last", "bos")
# Names the reference implementation writes into its llm2vec_config.json.
_POOLING_ALIASES = {"eos_token": "eos", "last_token": "last", "bos_token": "bos"}
# llm2vec 0.2.3's other encoder keys (its from_pretrained kwargs and llm2vec_config.json),
# mapped by resolve_reference_keys.
REFERENCE_KEYS = ("skip_instruction", "doc_max_length")


def check_pooling(pooling: str) -> str:
    """Accept our names and the reference's (``eos_token`` ...); reject anything else clearly."""
    pooling = _POOLING_ALIASES.get(pooling, pooling)
    if pooling not in POOLING_MODES:
        raise ValueError(
            f"Unknown pooling {pooling!r}. Choose one of {', '.join(POOLING_MODES)} "
            "(mean is the LLM2Vec default)."
        )
    return pooling


@dataclass
class EncoderConfig:
    """How texts become vectors; everything except the network weights.

    ``query_instruction`` / ``document_instruction`` are the defaults of
    ``encode_queries`` / ``encode_documents``: LLM2Vec models are trained with an
    instruction on the query side only.
    """

    pooling: str = "mean"
    max_length: int = 512
    query_instruction: str | None = None
    document_instruction: str | None = None

    def __post_init__(self) -> None:
        self.pooling = check_pooling(self.pooling)
        if not isinstance(self.max_length, int) or self.max_length < 2:
            raise ValueError(f"max_length must be an integer >= 2, got {self.max_length!r}")

    def save(self, folder: str | os.PathLike) -> None:
        with open(os.path.join(folder, CONFIG_NAME), "w", encoding="utf-8") as f:
            json.dump(asdict(self), f, indent=2)

    @classmethod
    def read_dict(cls, folder: str | os.PathLike) -> dict:
        """Known keys of a folder's llm2vec_config.json, or {} when there is none.

        Also reads the reference's keys (``pooling_mode``), so published McGill-NLP
        folders keep their settings.
        """
        path = os.path.join(folder, CONFIG_NAME)
        if not os.path.isfile(path):
            return {}
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
        if "pooling_mode" in raw and "pooling" not in raw:
            raw["pooling"] = raw["pooling_mode"]
        known = {f.name for f in fields(cls)}
        return {k: v for k, v in raw.items() if k in known}


def read_reference_keys(folder: str | os.PathLike) -> dict:
    """``skip_instruction`` / ``doc_max_length`` of a folder written by llm2vec 0.2.3."""
    path = os.path.join(folder, CONFIG_NAME)
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    return {k: raw[k] for k in REFERENCE_KEYS if raw.get(k) is not None}


def resolve_reference_keys(settings: dict, reference: dict, special_tokens: int) -> dict:
    """``settings`` (pooling, max_length, ...) after llm2vec 0.2.3's ``skip_instruction`` and
    ``doc_max_length`` (in ``reference``); a value with no equivalent here is an error.

    - ``skip_instruction=True`` (its default) is what every encode here does; ``False``
      pools the instruction and BOS too, which changes nothing for eos/last/bos pooling and
      has no equivalent for mean pooling.
    - ``doc_max_length``: the reference cuts each text to that many tokens (at a word
      boundary) before adding the instruction; here one limit, ``max_length``, covers
      special tokens + instruction + text. It becomes ``max_length = doc_max_length +
      special_tokens`` when that is smaller: the same cut for texts without instruction
      (to the token rather than the word), with a warning saying so.
    """
    settings = dict(settings)
    pooling = check_pooling(settings.get("pooling", "mean"))
    skip = reference.get("skip_instruction")
    if skip is not None and not isinstance(skip, bool):
        raise TypeError(f"skip_instruction must be True or False, got {skip!r}")
    if skip is False and pooling in ("mean", "weighted_mean"):
        raise ValueError(
            f"skip_instruction=False with {pooling} pooling (llm2vec 0.2.3: pool the "
            "instruction and BOS with the text) has no equivalent in llm2vec-rag, which pools "
            "the text's own tokens only. Use skip_instruction=True (the reference's default, "
            "how LLM2Vec models were trained), or put the instruction inside the text.")
    doc = reference.get("doc_max_length")
    if doc is not None:
        if not isinstance(doc, int) or isinstance(doc, bool) or doc < 1:
            raise ValueError(f"doc_max_length must be an integer >= 1, got {doc!r}")
        max_length = settings.get("max_length", EncoderConfig.max_length)
        if doc + special_tokens < max_length:
            settings["max_length"] = doc + special_tokens
            warnings.warn(
                f"doc_max_length={doc} (llm2vec 0.2.3: each text cut to {doc} tokens at a word "
                f"boundary, the instruction not counted) is mapped onto max_length="
                f"{doc + special_tokens} (instruction + text + {special_tokens} special "
                f"tokens, cut at a token): the same for texts without instruction. Pass "
                f"max_length= to choose the limit yourself (it replaces a saved "
                f"doc_max_length).",
                stacklevel=3)
    return settings
