"""What the framework adapters share: checking an encoder and encode options.

Loading by name is ``llm2vec_rag.spec.load_encoder``, shared with the CLI.

Thread safety is the encoder's own (BaseEncoder serialises its calls), so async methods and
the indexer's executor threads can share one encoder.
"""

from __future__ import annotations

from typing import Any

from llm2vec_rag.errors import UsageError
from llm2vec_rag.preprocess import check_count

ENCODE_KWARGS = ("batch_size", "normalize", "show_progress", "max_batch_tokens", "prompt_name",
                 "prompt", "truncate_dim")
# sentence-transformers' spellings, as HuggingFaceEmbeddings users write encode_kwargs.
ST_SPELLINGS = {"normalize_embeddings": "normalize", "show_progress_bar": "show_progress"}


def check_encode_kwargs(encode_kwargs: dict[str, Any],
                        field: str = "encode_kwargs") -> dict[str, Any]:
    """``encode_kwargs`` in our names (sentence-transformers' spellings translated)."""
    if not isinstance(encode_kwargs, dict):
        raise TypeError(f"{field} must be a dict, got {type(encode_kwargs).__name__}")
    out: dict[str, Any] = {}
    given: dict[str, str] = {}  # our name -> the spelling it came as
    for key, value in encode_kwargs.items():
        ours = ST_SPELLINGS.get(key, key)
        if ours not in ENCODE_KWARGS:
            hint = (" (the frameworks want float vectors: quantize in the store instead, e.g. "
                    "QdrantIndexer(quantization=...))" if key == "precision" else "")
            raise UsageError(f"{field}: unknown key {key!r}{hint}; allowed: "
                             f"{list(ENCODE_KWARGS)} (or sentence-transformers' "
                             f"{list(ST_SPELLINGS)})")
        if ours in out and out[ours] != value:
            raise UsageError(f"{field}: {given[ours]!r} and {key!r} are the same setting with "
                             f"different values; give one")
        out[ours], given[ours] = value, key
    if "batch_size" in out:
        check_count(f"{field}['batch_size']", out["batch_size"])
    if "max_batch_tokens" in out:
        check_count(f"{field}['max_batch_tokens']", out["max_batch_tokens"], optional=True)
    return out


def check_text_list(texts: Any, method: str) -> list[str]:
    """The list a batch method takes: one string would be split into its characters."""
    if isinstance(texts, (str, bytes, bytearray)):
        raise TypeError(f"{method} expects a list of strings, got one {type(texts).__name__} "
                        f"(it would embed each character): wrap it in a list, e.g. "
                        f"{method}([text])")
    return list(texts)


def check_encoder(encoder: Any) -> Any:
    """Any object with the BaseEncoder surface (LLM2Vec, OnnxLLM2Vec, or a compatible one)."""
    missing = [a for a in ("encode", "encode_queries", "encode_documents", "dim")
               if not hasattr(encoder, a)]
    if missing:
        raise TypeError(f"encoder must be an llm2vec_rag encoder (LLM2Vec or OnnxLLM2Vec); "
                        f"{type(encoder).__name__} lacks {missing}")
    return encoder
