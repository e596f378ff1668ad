"""LangChain ``Embeddings`` backed by an LLM2Vec encoder (PyTorch or ONNX Runtime).

    from llm2vec_rag.integrations.langchain import LLM2VecEmbeddings
    emb = LLM2VecEmbeddings(model_name="McGill-NLP/LLM2Vec-Sheared-LLaMA-mntp",
                            adapters=["McGill-NLP/LLM2Vec-Sheared-LLaMA-mntp-supervised"],
                            query_instruction="Given a web search query, retrieve relevant "
                                              "passages that answer the query",
                            model_kwargs={"device": "cuda"}, encode_kwargs={"batch_size": 64})

Queries get the query instruction, documents none (as LLM2Vec models were trained); both
default to the encoder's own config. ``encode_kwargs`` / ``query_encode_kwargs`` and
``show_progress`` work as in langchain-huggingface's ``HuggingFaceEmbeddings``, in
sentence-transformers' spellings (``normalize_embeddings``, ``show_progress_bar``,
``prompt_name``...) or ours. Async methods run the encoder in the loop's default
executor, so they never block the event loop.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any, Literal

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field, model_validator

from llm2vec_rag.errors import UsageError
from llm2vec_rag.spec import load_encoder

from ._encoder import check_encode_kwargs, check_encoder, check_text_list

try:  # langchain-qdrant's interface for the sparse side of its QdrantVectorStore
    from langchain_qdrant import SparseEmbeddings as _SparseEmbeddings
except ImportError:  # without it, BM25SparseEmbeddings explains what to install
    _SparseEmbeddings = object


class LLM2VecEmbeddings(BaseModel, Embeddings):
    """LLM2Vec text embeddings for LangChain: by ``model_name`` or an already built ``encoder``."""

    model_name: str | None = None
    """Hub id, local folder, or .gguf path (or an ONNX export folder with backend="onnx" for
    ONNX Runtime, backend="openvino" for OpenVINO)."""
    adapters: list[str] = Field(default_factory=list)
    """LoRA adapters applied in order (torch backend)."""
    backend: Literal["torch", "onnx", "openvino"] = "torch"
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Passed to ``from_pretrained``: pooling, max_length, device, dtype, gguf_file, ..."""
    encode_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Passed to ``encode`` for documents (and queries, unless ``query_encode_kwargs``):
    batch_size, normalize (normalize_embeddings), show_progress (show_progress_bar),
    max_batch_tokens, prompt_name, prompt, truncate_dim."""
    query_encode_kwargs: dict[str, Any] = Field(default_factory=dict)
    """For queries instead of ``encode_kwargs`` when not empty (as HuggingFaceEmbeddings)."""
    show_progress: bool = False
    """A progress bar (overridden by show_progress / show_progress_bar in the kwargs)."""
    query_instruction: str | None = None
    """None: the encoder's ``config.query_instruction``; "" forces no instruction."""
    document_instruction: str | None = None
    """None: the encoder's ``config.document_instruction`` (normally none)."""
    encoder: Any = Field(default=None, exclude=True, repr=False)

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    @model_validator(mode="after")
    def _build_encoder(self) -> LLM2VecEmbeddings:
        self.encode_kwargs = check_encode_kwargs(self.encode_kwargs)
        self.query_encode_kwargs = check_encode_kwargs(self.query_encode_kwargs,
                                                       "query_encode_kwargs")
        if self.encoder is None:
            if not self.model_name:
                raise UsageError("LLM2VecEmbeddings needs model_name= (hub id, folder or .gguf "
                                 "path) or encoder= (an LLM2Vec / OnnxLLM2Vec)")
            self.encoder = load_encoder(self.model_name, self.adapters, self.backend,
                                        **self.model_kwargs)
        check_encoder(self.encoder)
        return self

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Documents, batched through the encoder, without instruction by default."""
        texts = check_text_list(texts, "embed_documents")
        if not texts:
            return []
        vecs = self.encoder.encode_documents(texts, instruction=self.document_instruction,
                                             **self._kwargs(self.encode_kwargs))
        return vecs.tolist()

    def _kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {"show_progress": self.show_progress, **kwargs}

    def embed_query(self, text: str) -> list[float]:
        """One query, with the query instruction."""
        if not isinstance(text, str):
            raise TypeError(f"embed_query expects a string, got {type(text).__name__}")
        kwargs = self.query_encode_kwargs or self.encode_kwargs
        vecs = self.encoder.encode_queries([text], instruction=self.query_instruction,
                                           **self._kwargs(kwargs))
        return vecs[0].tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        loop = asyncio.get_running_loop()
        texts = check_text_list(texts, "aembed_documents")
        return await loop.run_in_executor(None, functools.partial(self.embed_documents, texts))

    async def aembed_query(self, text: str) -> list[float]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(self.embed_query, text))


class BM25SparseEmbeddings(_SparseEmbeddings):
    """BM25 sparse vectors for ``langchain_qdrant.QdrantVectorStore`` (``sparse_embedding=``,
    ``retrieval_mode=RetrievalMode.HYBRID`` or ``SPARSE``): the same vectors our indexer
    stores. The collection's sparse vector needs Qdrant's IDF modifier
    (``sparse_vector_params()`` of ``llm2vec_rag.integrations.sparse``)."""

    def __init__(self, encoder: Any = None, **bm25_kwargs: Any) -> None:
        if _SparseEmbeddings is object:
            raise ImportError("BM25SparseEmbeddings is langchain-qdrant's SparseEmbeddings: "
                              "pip install langchain-qdrant")
        from .sparse import BM25SparseEncoder

        self.encoder = encoder if encoder is not None else BM25SparseEncoder(**bm25_kwargs)

    def embed_documents(self, texts: list[str]) -> list[Any]:
        """BM25 term weights of each text."""
        return [_to_langchain(v) for v in self.encoder.encode_documents(
            check_text_list(texts, "embed_documents"))]

    def embed_query(self, text: str) -> Any:
        """Weight 1 per distinct term (Qdrant applies IDF)."""
        if not isinstance(text, str):
            raise TypeError(f"embed_query expects a string, got {type(text).__name__}")
        return _to_langchain(self.encoder.encode_queries([text])[0])


def _to_langchain(vector: Any) -> Any:
    from langchain_qdrant import SparseVector

    return SparseVector(indices=list(vector.indices), values=list(vector.values))
