"""``llm2vec-rag serve``: OpenAI- and TEI-compatible embedding endpoints (extra ``[serve]``).

``create_app(load, ServeSettings(...))`` builds the FastAPI app; the dynamic batching it
relies on lives in the core (``llm2vec_rag.batcher``), so this package is routes and schemas.
"""

from __future__ import annotations


def __getattr__(name: str):
    if name in ("create_app", "ServeSettings"):
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module 'llm2vec_rag.serve' has no attribute {name!r}")
