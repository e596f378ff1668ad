"""What the framework adapters share: loading an encoder by name, and one lock per encoder.

The lock serialises calls into one encoder from executor threads (async methods, the
indexer): Hugging Face fast tokenizers are not safe to call concurrently.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

ENCODE_KWARGS = ("batch_size", "normalize", "show_progress", "max_batch_tokens")
BACKENDS = ("torch", "onnx")

_locks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_locks_guard = threading.Lock()


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


def encoder_lock(encoder: Any) -> threading.Lock:
    """The one lock for ``encoder``, shared by every adapter that wraps it."""
    with _locks_guard:
        try:
            return _locks.setdefault(encoder, threading.Lock())
        except TypeError:  # not weak-referenceable: fall back to an attribute
            lock = getattr(encoder, "_llm2vec_rag_lock", None)
            if lock is None:
                lock = threading.Lock()
                encoder._llm2vec_rag_lock = lock
            return lock
