"""The option groups of the Qdrant store, the indexer and the Ray indexer.

Small dataclasses instead of twenty keyword arguments: where the store is
(:class:`Connection`), how a new collection is built and searched (:class:`CollectionOptions`),
how documents are cut (:class:`ChunkOptions`) and how they are embedded and written
(:class:`WriteOptions`); for the Ray indexer also its actors (:class:`Workers`) and the
dataset's columns (:class:`Columns`). The flat keywords that ``QdrantIndexer`` and
``index_dataset`` took before (``path=``, ``chunk_size=``, ``quantization=``,
``concurrency=``, ``text_column=``...) still work: :func:`split_keywords` maps each onto its
group.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from llm2vec_rag.errors import UsageError


@dataclass
class Connection:
    """Where the store is: an embedded folder (``path``, or ``":memory:"``), a server
    (``url`` + ``api_key``, default ``$QDRANT_API_KEY``), or a ready ``client``. ``retries``
    with exponential ``backoff`` apply to a server's connection errors only."""

    path: str | None = None
    url: str | None = None
    api_key: str | None = field(default=None, repr=False)  # never printed
    timeout: float | None = None
    retries: int = 5
    backoff: float = 0.5
    client: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.url and self.path:
            raise UsageError("give either path= (embedded store) or url= (Qdrant server), "
                             "not both")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int):
            raise TypeError(f"retries must be an integer, got {self.retries!r}")
        if self.retries < 0 or self.backoff < 0:
            raise UsageError(f"retries and backoff must be >= 0, got retries={self.retries}, "
                             f"backoff={self.backoff}")
        if self.url and self.api_key is None:
            self.api_key = os.environ.get("QDRANT_API_KEY")

    @property
    def where(self) -> str:
        """The store as a user named it, for messages (never the API key)."""
        return self.url or self.path or "./qdrant_data"


@dataclass
class CollectionOptions:
    """How a new collection is built (``distance``, ``on_disk``, ``hnsw``, ``quantization``,
    ``shard_number``, ``replication_factor``, ``payload_indexes``, ``hybrid``: a BM25 sparse
    vector beside the dense one, made by ``sparse_encoder`` or a default
    ``BM25SparseEncoder``; see ``hybrid``) and searched (``rescore``, ``oversampling`` over
    quantized vectors). See ``_qdrant_config`` for accepted values."""

    distance: Any = "cosine"
    on_disk: bool = False
    hnsw: dict | Any = None
    quantization: Any = None
    shard_number: int | None = None
    replication_factor: int | None = None
    payload_indexes: list[str] | dict[str, str] | None = None
    rescore: bool = True
    oversampling: float | None = None
    hybrid: bool = False
    sparse_encoder: Any = field(default=None, repr=False)


@dataclass
class ChunkOptions:
    """Token windows: ``size`` tokens, ``overlap`` shared (default: size / 8, at most 32);
    ``late``: each chunk's vector pooled in its whole document's context (late chunking)."""

    size: int = 256
    overlap: int | None = None
    late: bool = False


@dataclass
class WriteOptions:
    """Chunks per embed/upload group (and per encode batch), and the padded-token budget of
    one encode batch (None: the encoder's own)."""

    batch_size: int = 64
    max_batch_tokens: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int):
            raise TypeError(f"batch_size must be an integer, got {self.batch_size!r}")
        if self.batch_size < 1:
            raise UsageError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass
class Workers:
    """The Ray indexer's embedding actors: ``concurrency`` of them with ``num_gpus`` /
    ``num_cpus`` each, ``threads`` torch threads each (None: torch's default),
    ``encode_batch_size`` rows per forward pass; ``prepare_num_cpus`` per reading and
    chunking task."""

    concurrency: int = 1
    num_gpus: float = 0
    num_cpus: float = 1
    threads: int | None = None
    encode_batch_size: int = 32
    prepare_num_cpus: float = 0.5


@dataclass
class Columns:
    """Where a Ray dataset's rows keep the document: ``text``, ``id`` (optional: the text's
    hash, as in the indexer) and ``metadata`` (a dict/JSON column; None: the other columns)."""

    text: str = "text"
    id: str = "id"
    metadata: str | None = None


# The flat keywords of QdrantIndexer / index_dataset: keyword -> (group, field).
KEYWORDS: dict[str, tuple[type, str]] = {
    **{f.name: (Connection, f.name) for f in dataclasses.fields(Connection)},
    **{f.name: (CollectionOptions, f.name) for f in dataclasses.fields(CollectionOptions)},
    "chunk_size": (ChunkOptions, "size"), "chunk_overlap": (ChunkOptions, "overlap"),
    "late_chunking": (ChunkOptions, "late"),
    "batch_size": (WriteOptions, "batch_size"),
    "max_batch_tokens": (WriteOptions, "max_batch_tokens"),
    **{f.name: (Workers, f.name) for f in dataclasses.fields(Workers) if f.name != "threads"},
    "threads_per_worker": (Workers, "threads"),
    "text_column": (Columns, "text"), "id_column": (Columns, "id"),
    "metadata_column": (Columns, "metadata"),
}


def split_keywords(keywords: dict[str, Any], groups: dict[type, Any | None],
                   caller: str) -> dict[type, Any]:
    """Each group in ``groups`` (given object or None) completed with the flat ``keywords``
    that belong to it. A keyword also set in a given group object, or unknown, is an error."""
    values: dict[type, dict[str, Any]] = {cls: {} for cls in groups}
    for key, value in keywords.items():
        cls, name = KEYWORDS.get(key, (None, None))
        if cls not in groups:
            raise TypeError(f"{caller}() got an unexpected keyword argument {key!r}")
        if groups[cls] is not None:
            raise TypeError(f"{caller}(): {key}= and {_arg(cls)}= both given; set "
                            f"{_arg(cls)}.{name} instead")
        values[cls][name] = value
    return {cls: given if given is not None else cls(**values[cls])
            for cls, given in groups.items()}


def _arg(cls: type) -> str:
    return {Connection: "connection", CollectionOptions: "options", ChunkOptions: "chunking",
            WriteOptions: "writing", Workers: "workers", Columns: "columns"}[cls]
