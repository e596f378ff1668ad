"""Helpers shared by the export tests (no tests here).

Exports take seconds each, so each distinct export is done once per test session and
cached by name; test modules wrap ``exported`` in their own fixtures.
"""

from __future__ import annotations

import numpy as np

QUERY_INSTRUCTION = "Given a question, retrieve passages that answer it"
TEXTS = [
    "Qdrant stores vectors and payloads.",
    "a",
    "The weather in Montreal is cold in winter and warm in summer, with rain in spring and "
    "long, bright evenings when the quick brown fox jumps over the lazy dog.",
    "émoji 🚀 naïve café 日本語",
    "",
    "Large language models can be turned into strong text encoders.",
]

_CACHE: dict[str, str] = {}


def exported(tmp_path_factory, source: str, name: str, **kwargs) -> str:
    """``export_onnx(source, <tmp>/name, **kwargs)``, once per session."""
    if name not in _CACHE:
        from llm2vec_rag.export import export_onnx

        out = tmp_path_factory.mktemp("onnx") / name
        export_onnx(source, out, **kwargs)
        _CACHE[name] = str(out)
    return _CACHE[name]


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def leftovers(parent) -> list[str]:
    """Hidden staging folders an export may have left in ``parent``."""
    return sorted(p.name for p in parent.iterdir() if ".partial-" in p.name or ".old-" in p.name)
