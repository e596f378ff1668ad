"""The encoder settings that travel with a model folder as ``llm2vec_config.json``."""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, dataclass, field, fields

from .errors import UsageError

CONFIG_NAME = "llm2vec_config.json"
# What dtype=None / "auto" means on a CPU, for every load in the process (float32,
# bf16-autocast, bfloat16, ...); unset: the CPU's default (model.default_cpu_dtype).
DTYPE_ENV = "LLM2VEC_RAG_DTYPE"

POOLING_MODES = ("mean", "weighted_mean", "eos", "last", "bos")
# Names the reference implementation writes into its llm2vec_config.json.
POOLING_ALIASES = {"eos_token": "eos", "last_token": "last", "bos_token": "bos"}
_POOLING_ALIASES = POOLING_ALIASES  # earlier name
# llm2vec 0.2.3's other encoder keys (its from_pretrained kwargs and llm2vec_config.json),
# mapped by resolve_reference_keys.
REFERENCE_KEYS = ("skip_instruction", "doc_max_length")


def check_prompts(prompts: object) -> dict[str, str]:
    """Named instructions: strings by string names, not "query"/"document" (those are
    ``query_instruction`` / ``document_instruction``)."""
    if prompts is None:
        return {}
    if not isinstance(prompts, dict):
        raise TypeError(f"prompts must be a dict of name -> instruction, got "
                        f"{type(prompts).__name__}")
    for name, text in prompts.items():
        if not isinstance(name, str) or not isinstance(text, str):
            raise TypeError(f"prompts[{name!r}] must map a string name to a string, got "
                            f"{type(text).__name__}")
        if name in INSTRUCTION_PROMPTS:
            raise UsageError(f"prompts[{name!r}]: the {name!r} prompt is "
                             f"{INSTRUCTION_PROMPTS[name]}; set that instead (from_pretrained("
                             f"prompts=...) does it for you)")
    return prompts


def split_prompts(prompts: dict[str, str] | None, query_instruction: str | None,
                  document_instruction: str | None) -> tuple[str | None, str | None, dict]:
    """sentence-transformers' ``prompts={"query": ..., "document": ..., other...}`` as
    (query_instruction, document_instruction, the other prompts)."""
    if prompts is None:
        return query_instruction, document_instruction, {}
    if not isinstance(prompts, dict):
        raise TypeError(f"prompts must be a dict of name -> instruction, got "
                        f"{type(prompts).__name__}")
    out = {"query": query_instruction, "document": document_instruction}
    for name in INSTRUCTION_PROMPTS:
        if name in prompts:
            if out[name] is not None and out[name].strip() != prompts[name].strip():
                raise UsageError(f"prompts[{name!r}] and {INSTRUCTION_PROMPTS[name]} disagree "
                                 f"({prompts[name]!r} vs {out[name]!r}): pass one of them")
            out[name] = prompts[name]
    extra = {k: v for k, v in prompts.items() if k not in INSTRUCTION_PROMPTS}
    return out["query"], out["document"], check_prompts(extra)


def check_pooling(pooling: str) -> str:
    """Accept our names and the reference's (``eos_token`` ...); reject anything else clearly."""
    pooling = POOLING_ALIASES.get(pooling, pooling)
    if pooling not in POOLING_MODES:
        raise UsageError(
            f"Unknown pooling {pooling!r}. Choose one of {', '.join(POOLING_MODES)} "
            "(mean is the LLM2Vec default)."
        )
    return pooling


# The prompt names that are the config's two instructions (sentence-transformers' names).
INSTRUCTION_PROMPTS = {"query": "query_instruction", "document": "document_instruction"}


@dataclass
class EncoderConfig:
    """How texts become vectors; everything except the network weights.

    ``query_instruction`` / ``document_instruction`` are the defaults of
    ``encode_queries`` / ``encode_documents``: LLM2Vec models are trained with an
    instruction on the query side only. ``prompts`` holds further named instructions
    (``encode(..., prompt_name=...)``); the names "query" and "document" are the two above.
    ``matryoshka_dims``: the output sizes the model was trained to be cut to (largest first;
    None: not trained for truncation), so ``encode(..., truncate_dim=d)`` can warn.

    Every assignment is checked, so ``model.config.pooling = "eos"`` after loading is
    validated at once, and encoders read the config at each call (it takes effect).
    """

    pooling: str = "mean"
    max_length: int = 512
    query_instruction: str | None = None
    document_instruction: str | None = None
    prompts: dict[str, str] = field(default_factory=dict)
    matryoshka_dims: list[int] | None = None

    def __setattr__(self, name: str, value) -> None:
        if name == "pooling":
            value = check_pooling(value)
        elif name == "max_length":
            if not isinstance(value, int) or isinstance(value, bool) or value < 2:
                raise UsageError(f"max_length must be an integer >= 2, got {value!r}")
        elif name in INSTRUCTION_PROMPTS.values():
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a string or None, got {type(value).__name__}")
        elif name == "prompts":
            value = check_prompts(value)
        elif name == "matryoshka_dims" and value is not None:
            if not isinstance(value, (list, tuple)) or not all(
                    isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in value):
                raise UsageError(f"matryoshka_dims must be a list of integers >= 1 or None, "
                                 f"got {value!r}")
            value = sorted(set(value), reverse=True) or None
        object.__setattr__(self, name, value)

    def prompt(self, name: str) -> str:
        """The instruction named ``name`` ("query", "document" or a key of ``prompts``)."""
        check_prompts(self.prompts)  # the dict may have been changed in place
        if name in INSTRUCTION_PROMPTS:
            return getattr(self, INSTRUCTION_PROMPTS[name]) or ""
        if name not in self.prompts:
            raise UsageError(f"prompt_name={name!r} is not a configured prompt; known: "
                             f"{sorted({*INSTRUCTION_PROMPTS, *self.prompts})}. Add it with "
                             f"from_pretrained(..., prompts={{{name!r}: '...'}}) or "
                             f"model.config.prompts[{name!r}] = '...'")
        return self.prompts[name]

    def all_prompts(self) -> dict[str, str]:
        """Every named instruction, "query" and "document" included ("" for none)."""
        return {name: self.prompt(name) for name in (*INSTRUCTION_PROMPTS, *self.prompts)}

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
        raise UsageError(
            f"skip_instruction=False with {pooling} pooling (llm2vec 0.2.3: pool the "
            "instruction and BOS with the text) has no equivalent in llm2vec-rag, which pools "
            "the text's own tokens only. Use skip_instruction=True (the reference's default, "
            "how LLM2Vec models were trained), or put the instruction inside the text.")
    doc = reference.get("doc_max_length")
    if doc is not None:
        if not isinstance(doc, int) or isinstance(doc, bool) or doc < 1:
            raise UsageError(f"doc_max_length must be an integer >= 1, got {doc!r}")
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
