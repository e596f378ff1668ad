"""LlamaIndex ``BaseEmbedding`` backed by an LLM2Vec encoder (PyTorch or ONNX Runtime).

    from llama_index.core import Settings
    from llm2vec_rag.integrations.llamaindex import LLM2VecEmbedding
    Settings.embed_model = LLM2VecEmbedding(model_name="path/or/hub-id", embed_batch_size=32)

Queries get ``query_instruction``, texts (documents) ``text_instruction``; both default to
the encoder's config (LLM2Vec: an instruction for queries, none for documents). Batches
follow ``embed_batch_size``; async methods run in an executor thread. As LlamaIndex's
``HuggingFaceEmbedding``: vectors are normalised by default (``normalize=True``), and
``device`` / ``max_length`` are fields (given when loading by name; read from the encoder
when one is passed in); ``model_name`` names the model even when built from an encoder.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from typing import Any

from llama_index.core.base.embeddings.base import DEFAULT_EMBED_BATCH_SIZE, BaseEmbedding
from pydantic import Field, PrivateAttr

from llm2vec_rag.errors import UsageError
from llm2vec_rag.spec import load_encoder

from ._encoder import check_encode_kwargs, check_encoder, check_text_list


class LLM2VecEmbeddings(BaseEmbedding):
    """LLM2Vec embeddings for LlamaIndex: by ``model_name`` or an already built ``encoder``."""

    adapters: list[str] = Field(default_factory=list, description="LoRA adapters, in order")
    backend: str = Field(default="torch", description="torch | onnx | openvino")
    model_kwargs: dict[str, Any] = Field(default_factory=dict,
                                         description="for from_pretrained: device, dtype ...")
    encode_kwargs: dict[str, Any] = Field(default_factory=dict,
                                          description="for encode: normalize, max_batch_tokens")
    query_instruction: str | None = Field(default=None, description="None: encoder config")
    text_instruction: str | None = Field(default=None, description="None: encoder config")
    normalize: bool = Field(default=True, description="unit vectors, as HuggingFaceEmbedding")
    device: str | None = Field(default=None, description="cpu, cuda, cuda:1 ... (None: auto)")
    max_length: int | None = Field(default=None, gt=1,
                                   description="tokens per text (None: the model's config)")
    _encoder: Any = PrivateAttr()

    def __init__(self, model_name: str | None = None, *, encoder: Any = None,
                 embed_batch_size: int = DEFAULT_EMBED_BATCH_SIZE, **kwargs: Any) -> None:
        if encoder is None and not model_name:
            raise UsageError("LLM2VecEmbeddings needs model_name= (hub id, folder or .gguf "
                             "path) or encoder= (an LLM2Vec / OnnxLLM2Vec)")
        super().__init__(model_name=model_name or _model_name(encoder),
                         embed_batch_size=embed_batch_size, **kwargs)
        self.encode_kwargs = check_encode_kwargs(self.encode_kwargs)
        if "batch_size" in self.encode_kwargs:
            raise UsageError("set embed_batch_size=, not encode_kwargs['batch_size']")
        if "normalize" in self.encode_kwargs:
            if "normalize" in self.model_fields_set and \
                    self.encode_kwargs["normalize"] != self.normalize:
                raise UsageError("normalize= and encode_kwargs['normalize'] disagree: give one")
            self.normalize = bool(self.encode_kwargs.pop("normalize"))
        if encoder is None:
            encoder = load_encoder(model_name, self.adapters, self.backend,
                                   **self._load_kwargs())
        else:
            for name in ("device", "max_length"):
                if getattr(self, name) is not None:
                    raise UsageError(f"{name}= applies when loading by model_name; this "
                                     f"encoder is already built (for max_length set "
                                     f"encoder.config.max_length)")
        self._encoder = check_encoder(encoder)
        self.device = _device(encoder)
        self.max_length = int(encoder.config.max_length)

    def _load_kwargs(self) -> dict[str, Any]:
        kwargs = dict(self.model_kwargs)
        for name in ("device", "max_length"):
            value = getattr(self, name)
            if value is None:
                continue
            if kwargs.get(name) not in (None, value):
                raise UsageError(f"{name}={value!r} and model_kwargs[{name!r}]="
                                 f"{kwargs[name]!r} disagree: give one")
            kwargs[name] = value
        return kwargs

    @classmethod
    def class_name(cls) -> str:
        return "LLM2VecEmbeddings"

    @property
    def encoder(self) -> Any:
        return self._encoder

    def _encode(self, method: str, texts: list[str], instruction: str | None) -> list[list[float]]:
        kwargs = {"batch_size": self.embed_batch_size, "show_progress": False,
                  "normalize": self.normalize, **self.encode_kwargs}
        vecs = getattr(self._encoder, method)(list(texts), instruction=instruction, **kwargs)
        return vecs.tolist()

    def get_text_embedding_batch(self, texts: list[str], show_progress: bool = False,
                                 **kwargs: Any) -> list[list[float]]:
        """LlamaIndex's batching, after refusing one string (it would embed each character)."""
        texts = check_text_list(texts, "get_text_embedding_batch")
        return super().get_text_embedding_batch(texts, show_progress=show_progress, **kwargs)

    async def aget_text_embedding_batch(self, texts: list[str], show_progress: bool = False,
                                        **kwargs: Any) -> list[list[float]]:
        texts = check_text_list(texts, "aget_text_embedding_batch")
        return await super().aget_text_embedding_batch(texts, show_progress=show_progress,
                                                       **kwargs)

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._encode("encode_queries", [query], self.query_instruction)[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._encode("encode_documents", [text], self.text_instruction)[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return self._encode("encode_documents", texts, self.text_instruction)

    async def _run(self, fn, *args):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(fn, *args))

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await self._run(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return await self._run(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return await self._run(self._get_text_embeddings, texts)


def _model_name(encoder: Any) -> str:
    """What the encoder was loaded from (its spec, or the model in its source), else its
    class name."""
    spec = getattr(encoder, "spec", None)
    if spec is not None:
        return str(spec.model)
    source = str(getattr(encoder, "source", "") or "")
    try:
        source = str(json.loads(source).get("model") or "")
    except (ValueError, AttributeError):
        pass
    return source or type(encoder).__name__


def _device(encoder: Any) -> str | None:
    device = getattr(encoder, "device", None)
    if device is not None:
        return str(device)
    provider = getattr(encoder, "provider", None)  # ONNX Runtime
    if provider is None:
        return None
    return "cpu" if provider == "CPUExecutionProvider" else f"cuda:{encoder.device_id}"


def bm25_sparse_functions(encoder: Any = None, **bm25_kwargs: Any
                          ) -> tuple[Callable[[list[str]], tuple], Callable[[list[str]], tuple]]:
    """``(sparse_doc_fn, sparse_query_fn)`` for LlamaIndex's ``QdrantVectorStore(
    enable_hybrid=True, ...)``: BM25 weights for documents, term presence for queries (the
    vectors our indexer stores). Each maps texts to ``(indices per text, values per text)``.
    A collection LlamaIndex creates gets no IDF modifier: create it with our indexer
    (``hybrid=True``) or pass ``sparse_config=sparse_vector_params()``."""
    from .sparse import BM25SparseEncoder

    bm25 = encoder if encoder is not None else BM25SparseEncoder(**bm25_kwargs)

    def unpack(vectors: list[Any]) -> tuple[list[list[int]], list[list[float]]]:
        return [list(v.indices) for v in vectors], [list(v.values) for v in vectors]

    def doc_fn(texts: list[str]) -> tuple[list[list[int]], list[list[float]]]:
        return unpack(bm25.encode_documents(texts))

    def query_fn(texts: list[str]) -> tuple[list[list[int]], list[list[float]]]:
        return unpack(bm25.encode_queries(texts))

    return doc_fn, query_fn


LLM2VecEmbedding = LLM2VecEmbeddings

__all__ = ["LLM2VecEmbeddings", "LLM2VecEmbedding", "bm25_sparse_functions"]
