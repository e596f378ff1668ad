"""The encoder settings that travel with a model folder as ``llm2vec_config.json``."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields

CONFIG_NAME = "llm2vec_config.json"

POOLING_MODES = ("mean", "weighted_mean", "eos", "last", "bos")
# Names the reference implementation writes into its llm2vec_config.json.
_POOLING_ALIASES = {"eos_token": "eos", "last_token": "last", "bos_token": "bos"}


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
        from .files import read_json_object

        raw = read_json_object(path, "Fix it, or delete it and pass the settings (pooling, "
                                     "max_length, instructions) as arguments")
        if "pooling_mode" in raw and "pooling" not in raw:
            raw["pooling"] = raw["pooling_mode"]
        known = {f.name for f in fields(cls)}
        return {k: v for k, v in raw.items() if k in known}
