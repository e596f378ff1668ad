"""Chunk vectors for the indexers: each chunk alone, or late-chunked in its document.

One function for every writer (``QdrantIndexer``, the Ray actors and the Ray driver), so
naive and late chunking store the same chunks (same ids, texts and payloads) and differ only
in the vectors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llm2vec_rag.errors import UsageError


def check_late_chunking(encoder, chunker) -> None:
    """Before any write: late chunking needs ``encode_chunks`` and a tokenizer with offsets."""
    if not getattr(chunker, "late", False):
        return
    if not callable(getattr(encoder, "encode_chunks", None)):
        raise TypeError(f"late_chunking=True needs an encoder with encode_chunks (LLM2Vec, "
                        f"OnnxLLM2Vec); {type(encoder).__name__} has none: index without late "
                        f"chunking, or pass one of those")
    chunker.spans("a b")  # raises, naming the fix, when the tokenizer gives no offsets


def embed_chunks(encoder, docs: Sequence[tuple[str, Sequence[str]]], chunker, *,
                 batch_size: int = 32, max_batch_tokens: int | None = None,
                 show_progress: bool = False) -> np.ndarray:
    """Normalised float32 ``(total chunks, dim)`` vectors of ``docs`` (``(text, chunks)``
    pairs, chunks from ``chunker.chunk(text)``), in order. ``chunker.late``: each chunk is
    pooled from a forward pass over its whole document (``encoder.encode_chunks``), with the
    document instruction, as ``encode_documents`` would apply it."""
    texts = [c for _, chunks in docs for c in chunks]
    if not texts:
        return np.zeros((0, encoder.dim), np.float32)
    if not getattr(chunker, "late", False):
        return encoder.encode_documents(texts, normalize=True, show_progress=show_progress,
                                        batch_size=batch_size,
                                        max_batch_tokens=max_batch_tokens)
    spans = []
    for i, (text, chunks) in enumerate(docs):
        found = chunker.spans(text)
        if [text[a:b] for a, b in found] != list(chunks):
            raise UsageError(f"document {i}: its chunks are not the chunker's chunks of its "
                             "text, so late chunking cannot place them (chunked with other "
                             "settings?)")
        spans.append(found)
    vectors = encoder.encode_chunks([text for text, _ in docs], spans,
                                    instruction=encoder.config.document_instruction,
                                    normalize=True, batch_size=batch_size,
                                    max_batch_tokens=max_batch_tokens,
                                    show_progress=show_progress)
    return np.concatenate(vectors).astype(np.float32, copy=False)
