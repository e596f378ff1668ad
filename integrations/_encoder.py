"""What the framework adapters share: checking an encoder and encode options.

Loading by name is ``llm2vec_rag.spec.load_encoder``, shared with the CLI.

Thread safety is the encoder's own (BaseEncoder serialises its calls), so async methods and
the indexer's executor threads can share one encoder.
"""

from __future__ import annotations

from typing import Any

from llm2vec_rag.preprocess import check_count

ENCODE_KWARGS = ("batch_size", "normalize", "show_progress", "max_batch_tokens")


def check_encode_kwargs(encode_kwargs: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(encode_kwargs) - set(ENCODE_KWARGS))
    if unknown:
        raise ValueError(f"encode_kwargs: unknown key(s) {unknown}; allowed: {list(ENCODE_KWARGS)}")
    if "batch_size" in encode_kwargs:
        check_count("encode_kwargs['batch_size']", encode_kwargs["batch_size"])
    if "max_batch_tokens" in encode_kwargs:
        check_count("encode_kwargs['max_batch_tokens']", encode_kwargs["max_batch_tokens"],
                    optional=True)
    return dict(encode_kwargs)


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
