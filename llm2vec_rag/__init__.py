"""llm2vec-rag: decoder LLMs as text encoders (LLM2Vec), trained, exported, used for RAG.

Imports are lazy so that torch-free users (the ONNX Runtime encoder) never load torch.
"""

from __future__ import annotations

import importlib

from .config import POOLING_MODES, EncoderConfig
from .errors import SetupError, UsageError

__all__ = ["LLM2Vec", "EncoderConfig", "EncoderSpec", "Encoder", "load_encoder", "POOLING_MODES",
           "is_bidirectional", "make_bidirectional", "UsageError", "SetupError"]
__version__ = "0.1.0"

_LAZY = {"LLM2Vec": ".model", "is_bidirectional": ".bidirectional",
         "make_bidirectional": ".bidirectional", "EncoderSpec": ".spec", "load_encoder": ".spec",
         "Encoder": ".protocol"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'llm2vec_rag' has no attribute {name!r}")
