"""``model.similarity``: sentence-transformers' similarity functions, in NumPy.

Same names and conventions as ``sentence_transformers.SimilarityFunction``: ``cosine``
(the default), ``dot``, and the negated distances ``euclidean`` and ``manhattan`` (higher is
closer for all four). One vector (1-D) counts as one row. NumPy, so the ONNX Runtime
encoder has it without torch.
"""

from __future__ import annotations

import numpy as np

from .errors import UsageError

SIMILARITY_FUNCTIONS = ("cosine", "dot", "euclidean", "manhattan")


def _rows(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise UsageError(f"{name} must be one vector or a 2-D array of vectors, got shape "
                         f"{x.shape}")
    return x


def _check(a: np.ndarray, b: np.ndarray, fn: str) -> None:
    if fn not in SIMILARITY_FUNCTIONS:
        raise UsageError(f"similarity_fn_name must be one of {', '.join(SIMILARITY_FUNCTIONS)}, "
                         f"got {fn!r}")
    if a.shape[1] != b.shape[1]:
        raise UsageError(f"the vectors have different dimensions ({a.shape[1]} and "
                         f"{b.shape[1]}): were they made by the same model and truncate_dim?")


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def similarity(a, b, fn: str = "cosine") -> np.ndarray:
    """``(n, m)`` float32: ``fn`` of every row of ``a`` against every row of ``b``."""
    a, b = _rows(a, "a"), _rows(b, "b")
    _check(a, b, fn)
    if fn == "cosine":
        return _unit(a) @ _unit(b).T
    if fn == "dot":
        return a @ b.T
    if fn == "euclidean":
        squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
        return -np.sqrt(np.maximum(squared, 0))
    return -np.abs(a[:, None, :] - b[None, :, :]).sum(-1)


def similarity_pairwise(a, b, fn: str = "cosine") -> np.ndarray:
    """``(n,)`` float32: ``fn`` of ``a[i]`` against ``b[i]``."""
    a, b = _rows(a, "a"), _rows(b, "b")
    _check(a, b, fn)
    if len(a) != len(b):
        raise UsageError(f"pairwise similarity needs as many rows in a as in b, got {len(a)} "
                         f"and {len(b)}")
    if fn == "cosine":
        return (_unit(a) * _unit(b)).sum(1)
    if fn == "dot":
        return (a * b).sum(1)
    if fn == "euclidean":
        return -np.linalg.norm(a - b, axis=1)
    return -np.abs(a - b).sum(1)
