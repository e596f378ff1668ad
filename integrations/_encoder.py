"""What the framework adapters share: loading an encoder by name and checking options.

Thread safety is the encoder's own (BaseEncoder serialises its calls), so async methods and
the indexer's executor threads can share one encoder.
"""

from __future__ import annotations

from typing import Any

ENCODE_KWARGS = ("batch_size", "normalize", "show_progress", "max_batch_tokens")
BACKENDS = ("torch", "onnx")


def load_encoder(model_name: str, adapters: list[str] | None = None, backend: str = "torch",
                 **model_kwargs: Any):
    """``LLM2Vec.from_pretrained`` (torch) or ``OnnxLLM2Vec.from_pretrained`` (onnx)."""
    if backend == "onnx":
        if adapters:
            raise ValueError("adapters cannot be applied to an ONNX export: fuse them before "
                             "exporting (llm2vec-rag export fuse), then pass the export folder")
        from llm2vec_rag.export import OnnxLLM2Vec

        return OnnxLLM2Vec.from_pretrained(model_name, **model_kwargs)
    if backend != "torch":
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    from llm2vec_rag import LLM2Vec

    return LLM2Vec.from_pretrained(model_name, adapters=list(adapters or []), **model_kwargs)


def check_encode_kwargs(encode_kwargs: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(encode_kwargs) - set(ENCODE_KWARGS))
    if unknown:
        raise ValueError(f"encode_kwargs: unknown key(s) {unknown}; allowed: {list(ENCODE_KWARGS)}")
    return dict(encode_kwargs)


def check_encoder(encoder: Any) -> Any:
    """Any object with the BaseEncoder surface (LLM2Vec, OnnxLLM2Vec, or a compatible one)."""
    missing = [a for a in ("encode", "encode_queries", "encode_documents", "dim")
               if not hasattr(encoder, a)]
    if missing:
        raise TypeError(f"encoder must be an llm2vec_rag encoder (LLM2Vec or OnnxLLM2Vec); "
                        f"{type(encoder).__name__} lacks {missing}")
    return encoder
