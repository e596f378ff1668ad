"""Hybrid collections: a named dense and a named BM25 sparse vector per point, fused in Qdrant.

Layout of a collection written with ``hybrid=True``:

- dense vector ``"dense"`` (the encoder's, cosine by default) and sparse vector ``"bm25"``
  (:class:`~llm2vec_rag.integrations.sparse.BM25SparseEncoder` weights, ``Modifier.IDF``);
- the same ids, payload and bookkeeping as a dense collection.

A collection indexed without ``hybrid`` keeps one unnamed dense vector, as before; it is
searched in ``dense`` mode only. Search modes: ``dense``, ``sparse`` and ``hybrid``, the
last one fused by Qdrant's Query API (each side prefetched, then ``FusionQuery`` with
``rrf``, reciprocal rank fusion, by default, or ``dbsf``, distribution-based score fusion).

LangChain's ``QdrantVectorStore`` reads such a collection with ``vector_name="dense"``,
``sparse_vector_name="bm25"``; LlamaIndex's with ``dense_vector_name="dense"``,
``sparse_vector_name="bm25"`` (see docs/integrations.md).
"""

from __future__ import annotations

from typing import Any

from llm2vec_rag.errors import UsageError

DENSE = "dense"
SPARSE = "bm25"
RECORD = "llm2vec_rag_sparse"  # collection metadata: the BM25 settings of its sparse vectors
MODES = ("dense", "sparse", "hybrid")
FUSIONS = ("rrf", "dbsf")
PREFETCH_FACTOR = 4  # each side prefetches k * this many candidates for the fusion (min 50)

__all__ = ["DENSE", "SPARSE", "MODES", "FUSIONS", "check_layout", "check_mode",
           "collection_config", "layout", "point_vector", "query_args"]


def check_mode(mode: str, fusion: str) -> None:
    """Clear errors for a mode or fusion the search does not know."""
    if mode not in MODES:
        raise UsageError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if fusion not in FUSIONS:
        raise UsageError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")


def collection_config(dense: Any) -> dict[str, Any]:
    """``create_collection`` arguments of a hybrid collection, given the dense ``VectorParams``."""
    from .sparse import sparse_vector_params

    return {"vectors_config": {DENSE: dense},
            "sparse_vectors_config": {SPARSE: sparse_vector_params()}}


def layout(vectors: Any, sparse_vectors: Any, collection: str) -> tuple[str, Any]:
    """``("dense", params)`` for a collection with one unnamed dense vector, ``("hybrid",
    params)`` for ours with ``dense`` + ``bm25``; a clear error for any other layout."""
    if isinstance(vectors, dict) and list(vectors) == [""]:
        vectors = vectors[""]  # langchain-qdrant's spelling of the unnamed vector
    if not isinstance(vectors, dict):
        return "dense", vectors
    if DENSE in vectors and SPARSE in (sparse_vectors or {}):
        return "hybrid", vectors[DENSE]
    raise UsageError(
        f"Collection {collection!r} uses named vectors {sorted(vectors)} (sparse: "
        f"{sorted(sparse_vectors or {})}): it was not written by llm2vec-rag, which writes "
        f"either one unnamed dense vector or, with hybrid=True, {DENSE!r} + {SPARSE!r}. Choose "
        f"another collection; nothing was written.")


def point_vector(dense: Any, sparse: Any = None) -> Any:
    """A point's ``vector=``: the dense list alone, or the named pair of a hybrid point."""
    values = dense.tolist() if hasattr(dense, "tolist") else [float(x) for x in dense]
    return values if sparse is None else {DENSE: values, SPARSE: sparse}


def check_layout(kind: str, mode: str) -> None:
    """Refuse ``sparse`` / ``hybrid`` search on a collection without BM25 vectors."""
    if mode != "dense" and kind != "hybrid":
        raise UsageError(
            f"mode={mode!r} needs a BM25 sparse vector per point, but this collection holds "
            f"dense vectors only (indexed without hybrid): search it with mode='dense', or "
            f"re-index it into a new collection with hybrid=True (llm2vec-rag index --hybrid)")


def query_args(kind: str, mode: str, fusion: str, k: int, dense: Any = None, sparse: Any = None,
               query_filter: Any = None, search_params: Any = None) -> dict[str, Any]:
    """``client.query_points`` keyword arguments for one search (``kind``: the layout)."""
    from qdrant_client import models

    check_layout(kind, mode)
    using = DENSE if kind == "hybrid" else None
    if mode == "dense":
        return dict(query=dense, using=using, limit=k, query_filter=query_filter,
                    search_params=search_params)
    if mode == "sparse":
        return dict(query=sparse, using=SPARSE, limit=k, query_filter=query_filter)
    depth = max(50, k * PREFETCH_FACTOR)
    method = models.Fusion.RRF if fusion == "rrf" else models.Fusion.DBSF
    return dict(prefetch=[models.Prefetch(query=dense, using=DENSE, limit=depth,
                                          filter=query_filter, params=search_params),
                          models.Prefetch(query=sparse, using=SPARSE, limit=depth,
                                          filter=query_filter)],
                query=models.FusionQuery(fusion=method), limit=k)
