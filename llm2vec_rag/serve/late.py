"""Late chunking over HTTP: a request's inputs are the consecutive chunks of one document.

The field is ``late_chunking`` (Jina's embeddings API uses the same name and meaning) on
``/v1/embeddings`` and ``/embed``. The chunks are joined with one space into the document,
which is encoded in one pass (``encode_chunks``; windows beyond ``max_length``), and each
returned vector is its chunk pooled in that whole-document context, in input order.
"""

from __future__ import annotations

import numpy as np

JOIN = " "


def document_and_spans(chunks: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """The document the chunks make, and each chunk's character span in it."""
    spans, start = [], 0
    for chunk in chunks:
        spans.append((start, start + len(chunk)))
        start += len(chunk) + len(JOIN)
    return JOIN.join(chunks), spans


def late_chunk(encoder, chunks: list[str], instruction: str,
               normalize: bool) -> tuple[np.ndarray, int]:
    """``(vectors, tokens)``: one vector per chunk and the document's tokens (for usage).
    Blocking: call it from a worker thread."""
    document, spans = document_and_spans(chunks)
    vectors = encoder.encode_chunks(document, spans, instruction=instruction or None,
                                    normalize=normalize, show_progress=False)
    return vectors, int(encoder.count_tokens(document, instruction or None)[0])
