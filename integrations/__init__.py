"""llm2vec_rag.integrations: LangChain and LlamaIndex embeddings, a Qdrant store and indexer.

Each submodule imports its framework itself, so installing one extra is enough:
``llm2vec_rag.integrations.langchain`` (``[langchain]``), ``.llamaindex`` (``[llamaindex]``),
``.qdrant`` / ``.store`` (``[qdrant]``), ``.sparse`` (BM25 for hybrid search, ``[sparse]``).
"""

from __future__ import annotations

import importlib

__all__ = ["ChunkOptions", "CollectionOptions", "Columns", "Connection", "QdrantIndexer",
           "QdrantStore", "Workers", "WriteOptions"]

_WHERE = {"QdrantIndexer": ".qdrant", "IndexReport": ".qdrant", "Hit": ".qdrant",
          "QdrantStore": ".store", "Connection": ".options", "CollectionOptions": ".options",
          "ChunkOptions": ".options", "WriteOptions": ".options", "Workers": ".options",
          "Columns": ".options"}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module 'llm2vec_rag.integrations' has no attribute {name!r}")
