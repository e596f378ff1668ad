"""llm2vec_rag.integrations: LangChain and LlamaIndex embeddings, and a Qdrant indexer.

Each submodule imports its framework itself, so installing one extra is enough:
``llm2vec_rag.integrations.langchain`` (``[langchain]``), ``.llamaindex`` (``[llamaindex]``),
``.qdrant`` (``[qdrant]``), ``.sparse`` (BM25 for hybrid search, ``[sparse]``).
"""

from __future__ import annotations

import importlib

__all__ = ["QdrantIndexer"]


def __getattr__(name: str):
    if name in ("QdrantIndexer", "IndexReport", "Hit"):
        return getattr(importlib.import_module(".qdrant", __name__), name)
    raise AttributeError(f"module 'llm2vec_rag.integrations' has no attribute {name!r}")
