"""``Encoder``: the public contract that code using an encoder relies on.

The indexer, the pool, Ray workers, the server and the exporters depend on this surface
only, never on private methods; ``LLM2Vec`` and ``OnnxLLM2Vec`` implement it through
``BaseEncoder``, and any object with these members works too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .config import EncoderConfig


@runtime_checkable
class Encoder(Protocol):
    config: EncoderConfig
    tokenizer: Any
    dim: int
    source: str  # what the vectors come from: stores compare it to avoid mixing encoders

    def encode(self, texts: str | Sequence[str],
               instruction: str | Sequence[str] | None = None, batch_size: int = ...,
               normalize: bool = False, show_progress: bool | None = None,
               max_batch_tokens: int | None = ...) -> np.ndarray: ...

    def encode_queries(self, queries: str | Sequence[str], instruction: str | None = None,
                       **encode_kwargs: Any) -> np.ndarray: ...

    def encode_documents(self, documents: str | Sequence[str], instruction: str | None = None,
                         **encode_kwargs: Any) -> np.ndarray: ...

    def max_text_tokens(self, instruction: str | None = None) -> int: ...

    def count_tokens(self, texts: str | Sequence[str],
                     instruction: str | Sequence[str] | None = None) -> list[int]: ...


@runtime_checkable
class BatchEncoder(Encoder, Protocol):
    """An ``Encoder`` whose forward pass over one padded batch is callable on its own: the
    ONNX exporter and the engine benchmark compare engines on the same batches with it
    (``BaseEncoder.forward_batch``: ``Preprocessor.batches`` rows -> float32 ``[B, D]``)."""

    preprocessor: Any

    def forward_batch(self, batch: Any) -> np.ndarray: ...
